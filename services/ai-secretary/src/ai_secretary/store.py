"""Everything the secretary keeps in PostgreSQL: users, conversations, turns, action results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from pydantic import BaseModel, Field

from multyworkemon_common.contract import ActionRecord, DiscussionTurn, PersonInfo
from multyworkemon_common.database import CONNECTION_ERRORS, Database, DatabaseUnavailable
from multyworkemon_common.errors import ApiError

UNKNOWN_DEPARTMENT = "не указано"
UNKNOWN_POSITION = "не указана"


def unstorable_text() -> ApiError:
    # PostgreSQL text cannot hold NUL characters; they carry no meaning in a message, so say so plainly.
    return ApiError(400, "Text must not contain NUL (\\u0000) characters")


# How each channel's sender is matched to the directory: only by what that channel vouches for.
# A Telegram handle is never matched to a directory username, an e-mail only to an e-mail.
_MATCH_BY_CHANNEL = {
    "email": "lower(email) = lower($1)",
    "tg": "telegram_id::text = $1 OR ($2 <> '' AND lower(telegram_username) = lower($2))",
    "direct": "username = $1 OR lower(email) = lower($1)",
}
_PERSON_COLUMNS = "username, display_name, department, position, email, telegram_id, telegram_username"


# The message's conversation (the thread's one still waiting for an answer, or one an operator
# holds; else a new one) and the message stored in it, in one round trip instead of three.
# It runs after the thread's lock, so it sees any conversation a message before it started.
_JOIN_OR_START = """
WITH found AS (
    SELECT * FROM conversations WHERE username = $1 AND channel = $2 AND thread IS NOT DISTINCT FROM $4
    AND (taken_by IS NOT NULL OR (status = 'clarifying' AND updated_at > now() - make_interval(secs => $3)))
    ORDER BY updated_at DESC LIMIT 1 FOR UPDATE
),
started AS (
    INSERT INTO conversations (username, channel, thread, status)
    SELECT $1, $2, $4, 'open' WHERE NOT EXISTS (SELECT FROM found)
    RETURNING *
),
conversation AS (SELECT * FROM found UNION ALL SELECT * FROM started),
turn AS (
    INSERT INTO turns (conversation_id, channel, username, message_id, request_id, request, department, position, status)
    SELECT id, $2, $1, $5, $6, $7, $8, $9, 'processing' FROM conversation
    RETURNING *
)
SELECT conversation::conversations, turn::turns FROM conversation, turn
"""


class UserEntry(BaseModel):
    """One person of the users directory YAML (services/ai-secretary/users.example.yaml)."""

    username: str = Field(min_length=1)
    display_name: str | None = None
    department: str = UNKNOWN_DEPARTMENT
    position: str = UNKNOWN_POSITION
    email: str | None = None
    telegram_id: int | None = None
    telegram_username: str | None = None


class UsersFile(BaseModel):
    users: list[UserEntry] = []


def sender_key(channel: str, username: str) -> str:
    """Whom a stranger's conversations and quota belong to: the channel and its normalised sender."""
    return f"{channel}:{username.strip().lstrip('@').casefold()}"


class Store:
    def __init__(self, database: Database):
        self.database = database

    async def _pool(self) -> asyncpg.Pool:
        return await self.database.pool()

    # The users directory.
    async def load_users(self, path: Path) -> int:
        directory = UsersFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        rows = [
            (u.username, u.display_name, u.department, u.position, u.email, u.telegram_id, (u.telegram_username or "").lstrip("@") or None)
            for u in directory.users
        ]
        pool = await self._pool()
        await pool.executemany(
            """INSERT INTO users (username, display_name, department, position, email, telegram_id, telegram_username)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (username) DO UPDATE SET display_name = EXCLUDED.display_name,
                 department = EXCLUDED.department, position = EXCLUDED.position, email = EXCLUDED.email,
                 telegram_id = EXCLUDED.telegram_id, telegram_username = EXCLUDED.telegram_username, updated_at = now()""",
            rows,
        )
        return len(rows)

    async def find_person(self, channel: str, sender: str, handle: str | None = None) -> PersonInfo:
        """The directory's entry for a channel's sender; a stranger keyed by channel and sender (never an error)."""
        args = (sender, (handle or "").lstrip("@")) if channel == "tg" else (sender,)
        row = await self._run(
            "fetchrow", f"SELECT {_PERSON_COLUMNS} FROM users WHERE {_MATCH_BY_CHANNEL[channel]} ORDER BY username LIMIT 1", *args
        )
        if row is None:
            return PersonInfo(
                username=sender_key(channel, sender), department=UNKNOWN_DEPARTMENT, position=UNKNOWN_POSITION,
                email=sender if channel == "email" else None, known=False,
            )
        return PersonInfo(**{k: row[k] for k in PersonInfo.model_fields if k != "known"}, known=True)

    async def get_user(self, name: str) -> dict[str, Any] | None:
        """By user name, e-mail address, Telegram user name (with or without @) or Telegram id."""
        row = await self._run(
            "fetchrow",
            f"""SELECT {_PERSON_COLUMNS}
               FROM users
               WHERE username = $1 OR lower(email) = lower($1) OR lower(telegram_username) = lower(ltrim($1, '@'))
                  OR telegram_id::text = $1
               ORDER BY username = $1 DESC LIMIT 1""",
            name,
        )
        return dict(row) if row else None

    # Turns and conversations.
    async def turn_by_message(self, channel: str, username: str, message_id: str) -> asyncpg.Record | None:
        return await self._run(
            "fetchrow", "SELECT * FROM turns WHERE channel = $1 AND username = $2 AND message_id = $3", channel, username, message_id
        )

    async def open_turn(
        self, *, channel: str, person: PersonInfo, thread: str | None, message_id: str | None, request_id: str,
        request: str, ttl_seconds: int, reuse_turn_id: int | None,
    ) -> tuple[asyncpg.Record, asyncpg.Record, list[asyncpg.Record]]:
        """Store the message before anything else happens; return (conversation, turn, earlier turns).

        The message joins the user's conversation in this channel thread while it waits for an
        answer to a clarifying question younger than `ttl_seconds`; otherwise it starts a new one.
        """
        pool = await self._pool()
        try:
            async with pool.acquire() as connection, connection.transaction():
                if reuse_turn_id is not None:
                    turn = await connection.fetchrow(
                        """UPDATE turns SET status = 'processing', request_id = $2, error = NULL, error_status = NULL,
                           created_at = now() WHERE id = $1 RETURNING *""",
                        reuse_turn_id, request_id,
                    )
                    conversation = await connection.fetchrow("SELECT * FROM conversations WHERE id = $1 FOR UPDATE", turn["conversation_id"])
                else:
                    # Serialise one user's messages in one thread so that two at once join one conversation.
                    await connection.execute(
                        "SELECT pg_advisory_xact_lock(hashtext($1))", f"{person.username}\x1f{channel}\x1f{thread or ''}"
                    )
                    conversation, turn = await connection.fetchrow(
                        _JOIN_OR_START, person.username, channel, float(ttl_seconds), thread,
                        message_id, request_id, request, person.department, person.position,
                    )
                    if conversation["status"] == "open" and conversation["taken_by"] is None:
                        return conversation, turn, []  # a new conversation: nothing earlier to read
                earlier = await connection.fetch(
                    "SELECT * FROM turns WHERE conversation_id = $1 AND id < $2 AND status = 'answered' ORDER BY id",
                    conversation["id"], turn["id"],
                )
                return conversation, turn, earlier
        except asyncpg.UniqueViolationError:
            # The same message arrived twice at once: the other copy is being processed.
            raise ApiError(409, "This message is already being processed; ask again shortly for its answer") from None
        except asyncpg.CharacterNotInRepertoireError:
            raise unstorable_text() from None
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(exc) from exc

    async def finish_turn(self, turn_id: int, conversation_id: int, conversation_status: str, clarified: bool, **fields: Any) -> None:
        fields["timings"] = json.dumps(fields.get("timings", {}))
        fields["sources"] = json.dumps(fields.get("sources", []), ensure_ascii=False)
        columns = list(fields)
        assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(columns, start=2))
        count = len(columns) + 1
        # One statement, so atomic on its own: one round trip instead of four (BEGIN, two UPDATEs, COMMIT).
        await self._run(
            "execute",
            f"""WITH turn AS (UPDATE turns SET status = 'answered', answered_at = now(), {assignments} WHERE id = $1)
                UPDATE conversations SET status = ${count + 2}, updated_at = now(),
                  clarifications = clarifications + CASE WHEN ${count + 3} THEN 1 ELSE 0 END WHERE id = ${count + 1}""",
            turn_id, *fields.values(), conversation_id, conversation_status, clarified,
        )

    async def earlier_turns(self, conversation_id: int, turn_id: int) -> list[asyncpg.Record]:
        """The answered turns of a conversation before this one, oldest first."""
        return await self._run(
            "fetch", "SELECT * FROM turns WHERE conversation_id = $1 AND id < $2 AND status = 'answered' ORDER BY id",
            conversation_id, turn_id,
        )

    async def done_actions(self, turn_id: int) -> list[ActionRecord]:
        rows = await self._run(
            "fetch", "SELECT action, status, external_id, detail FROM action_results WHERE turn_id = $1 AND status = 'done' ORDER BY id",
            turn_id,
        )
        return [ActionRecord(**dict(row)) for row in rows]

    async def close_thread(self, username: str, channel: str, thread: str) -> int:
        """Close the thread's conversations that are still open or waiting for an answer."""
        closed = await self._run(
            "fetch",
            """UPDATE conversations SET status = 'closed', updated_at = now()
               WHERE username = $1 AND channel = $2 AND thread = $3 AND status IN ('open', 'clarifying') RETURNING id""",
            username, channel, thread,
        )
        return len(closed)

    async def fail_turn(self, turn_id: int, status: int, error: str, timings: dict[str, float]) -> None:
        await self._run(
            "execute",
            "UPDATE turns SET status = 'failed', error_status = $2, error = $3, timings = $4 WHERE id = $1",
            turn_id, status, error, json.dumps(timings),
        )

    async def record_action_result(self, turn_id: int, action: str, status: str, external_id: str | None, detail: str | None) -> int | None:
        return await self._run(
            "fetchval",
            """INSERT INTO action_results (turn_id, action, status, external_id, detail)
               SELECT id, $2, $3, $4, $5 FROM turns WHERE id = $1 RETURNING id""",
            turn_id, action, status, external_id, detail,
        )

    async def rate_turn(self, owner: str, channel: str, rating: str, turn_id: int | None, reply_id: str | None) -> tuple[int, str | None] | None:
        """Store a rating on an answered turn of `owner` in `channel`: (turn id, the rating before),
        or None when there is no such turn of theirs (another person's turn looks the same)."""
        turn = "$4" if turn_id is not None else (
            "(SELECT a.turn_id FROM action_results a WHERE a.external_id = $4 AND a.status = 'done' ORDER BY a.id DESC LIMIT 1)"
        )
        row = await self._run(
            "fetchrow",
            f"""WITH old AS (SELECT id, feedback FROM turns WHERE id = {turn} AND username = $1 AND channel = $2
                             AND status = 'answered' FOR UPDATE)
                UPDATE turns t SET feedback = $3, feedback_at = now() FROM old WHERE t.id = old.id
                RETURNING t.id, old.feedback AS before""",
            owner, channel, rating, turn_id if turn_id is not None else reply_id,
        )
        return (row["id"], row["before"]) if row else None

    # Operators.
    async def take(self, conversation_id: int, operator: str | None) -> asyncpg.Record | None:
        """Take a conversation over (operator) or hand it back to the bot (None)."""
        return await self._run(
            "fetchrow", "UPDATE conversations SET taken_by = $2, updated_at = now() WHERE id = $1 RETURNING *",
            conversation_id, operator,
        )

    async def conversation_channel(self, conversation_id: int) -> str | None:
        return await self._run("fetchval", "SELECT channel FROM conversations WHERE id = $1", conversation_id)

    async def operator_turn(self, conversation_id: int, operator: str, text: str, request_id: str, action: str) -> tuple[asyncpg.Record, asyncpg.Record] | None:
        """Store an operator's reply as a turn of a conversation they hold: (conversation, turn), or
        None when the conversation does not exist or is not theirs."""
        pool = await self._pool()
        try:
            async with pool.acquire() as connection, connection.transaction():
                conversation = await connection.fetchrow(
                    "SELECT * FROM conversations WHERE id = $1 AND taken_by = $2 FOR UPDATE", conversation_id, operator
                )
                if conversation is None:
                    return None
                last = await connection.fetchrow(
                    "SELECT department, position FROM turns WHERE conversation_id = $1 ORDER BY id DESC LIMIT 1", conversation_id
                )
                turn = await connection.fetchrow(
                    """INSERT INTO turns (conversation_id, channel, username, request_id, request, department, position, status,
                         is_enough, action, question, response, operator, answered_at)
                       VALUES ($1, $2, $3, $4, '', $5, $6, 'answered', true, $7, '', $8, $9, now()) RETURNING *""",
                    conversation_id, conversation["channel"], conversation["username"], request_id,
                    last["department"] if last else UNKNOWN_DEPARTMENT, last["position"] if last else UNKNOWN_POSITION,
                    action, text, operator,
                )
                await connection.execute(
                    "UPDATE conversations SET status = 'answered', updated_at = now() WHERE id = $1", conversation_id
                )
                return conversation, turn
        except asyncpg.CharacterNotInRepertoireError:
            raise unstorable_text() from None
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(exc) from exc

    async def recipient(self, conversation: asyncpg.Record) -> tuple[str | None, str | None]:
        """Where an operator's reply goes: (the user's e-mail address, the message it answers)."""
        last = await self._run(
            "fetchrow",
            "SELECT message_id FROM turns WHERE conversation_id = $1 AND request <> '' ORDER BY id DESC LIMIT 1", conversation["id"],
        )
        address = await self._run("fetchval", "SELECT email FROM users WHERE username = $1", conversation["username"])
        if address is None and conversation["channel"] == "email":
            address = conversation["username"].partition(":")[2]  # a stranger: keyed by the address they wrote from
        return address, last["message_id"] if last else None

    async def thread_replies(self, channel: str, username: str, thread: str, after: int) -> list[dict]:
        """Operators' replies in a user's thread after a turn id, oldest first (the web chat polls them)."""
        rows = await self._run(
            "fetch",
            """SELECT t.id, t.response, t.created_at FROM turns t JOIN conversations c ON c.id = t.conversation_id
               WHERE c.channel = $1 AND c.username = $2 AND c.thread = $3 AND t.operator IS NOT NULL AND t.id > $4
               ORDER BY t.id LIMIT 50""",
            channel, username, thread, after,
        )
        return [{"turn_id": r["id"], "text": r["response"], "at": r["created_at"].isoformat()} for r in rows]

    # Reading for operators and the web chat.
    async def list_conversations(self, username: str | None, channel: str | None, status: str | None, limit: int, offset: int) -> tuple[int, list[dict]]:
        where, args = [], []
        # "failed": a message of it could not be answered; "operator": an operator holds it.
        special = {"failed": "EXISTS (SELECT 1 FROM turns f WHERE f.conversation_id = c.id AND f.status = 'failed')",
                   "operator": "c.taken_by IS NOT NULL"}
        if status in special:
            where.append(special[status])
            status = None
        for column, value in (("username", username), ("channel", channel), ("status", status)):
            if value is not None:
                args.append(value)
                where.append(f"c.{column} = ${len(args)}")
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        total = await self._run("fetchval", f"SELECT count(*) FROM conversations c {condition}", *args)
        rows = await self._run(
            "fetch",
            f"""SELECT c.*, (SELECT count(*) FROM turns t WHERE t.conversation_id = c.id) AS turns,
                  (SELECT t.request FROM turns t WHERE t.conversation_id = c.id AND t.request <> '' ORDER BY t.id DESC LIMIT 1) AS last_request
                FROM conversations c {condition} ORDER BY c.updated_at DESC, c.id DESC
                LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}""",
            *args, limit, offset,
        )
        return total, [_jsonable(r) for r in rows]

    async def get_conversation(self, conversation_id: int) -> dict | None:
        conversation = await self._run("fetchrow", "SELECT * FROM conversations WHERE id = $1", conversation_id)
        if conversation is None:
            return None
        turns = await self._run("fetch", "SELECT * FROM turns WHERE conversation_id = $1 ORDER BY id", conversation_id)
        results = await self._run(
            "fetch",
            "SELECT a.* FROM action_results a JOIN turns t ON t.id = a.turn_id WHERE t.conversation_id = $1 ORDER BY a.id",
            conversation_id,
        )
        by_turn: dict[int, list[dict]] = {}
        for result in results:
            by_turn.setdefault(result["turn_id"], []).append(_jsonable(result))
        body = _jsonable(conversation)
        body["turns"] = [{**_jsonable(t), "action_results": by_turn.get(t["id"], [])} for t in turns]
        return body

    async def _run(self, method: str, query: str, *args):
        """Run one pool method (fetch, fetchrow, fetchval, execute); a lost database becomes a 503."""
        try:
            return await getattr(await self._pool(), method)(query, *args)
        except asyncpg.CharacterNotInRepertoireError:
            raise unstorable_text() from None
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(exc) from exc


def discussion_of(turns: list[asyncpg.Record]) -> list[DiscussionTurn]:
    """Stored turns as the discussion: each request, then what the system answered or asked."""
    discussion: list[DiscussionTurn] = []
    for turn in turns:
        if turn["request"]:  # an operator's turn has none
            discussion.append(DiscussionTurn(role="user", text=turn["request"]))
        if turn["response"]:
            discussion.append(DiscussionTurn(role="assistant", text=turn["response"]))
    return discussion


def _jsonable(record: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif key in ("timings", "sources") and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out
