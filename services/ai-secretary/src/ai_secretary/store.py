"""Everything the secretary keeps in PostgreSQL: users, conversations, turns, action results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from multyworkemon_common.database import CONNECTION_ERRORS, Database, DatabaseUnavailable
from multyworkemon_common.errors import ApiError

UNKNOWN_DEPARTMENT = "не указано"
UNKNOWN_POSITION = "не указана"


def unstorable_text() -> ApiError:
    # PostgreSQL text cannot hold NUL characters; they carry no meaning in a message, so say so plainly.
    return ApiError(400, "Text must not contain NUL (\\u0000) characters")


@dataclass
class Person:
    username: str
    department: str
    position: str
    known: bool


class Store:
    def __init__(self, database: Database):
        self.database = database

    async def _pool(self) -> asyncpg.Pool:
        return await self.database.pool()

    # The users directory.
    async def load_users(self, path: Path) -> int:
        entries = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("users", [])
        rows = [
            (
                str(u["username"]), u.get("display_name"), str(u.get("department") or UNKNOWN_DEPARTMENT),
                str(u.get("position") or UNKNOWN_POSITION), u.get("email"),
                int(u["telegram_id"]) if u.get("telegram_id") is not None else None, u.get("telegram_username"),
            )
            for u in entries
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

    async def find_person(self, name: str) -> Person:
        """The directory's entry for a sender; neutral defaults for strangers (never an error)."""
        user = await self.get_user(name)
        if user is None:
            return Person(name, UNKNOWN_DEPARTMENT, UNKNOWN_POSITION, known=False)
        return Person(user["username"], user["department"], user["position"], known=True)

    async def get_user(self, name: str) -> dict[str, Any] | None:
        """By user name, e-mail address, Telegram user name (with or without @) or Telegram id."""
        row = await self._run(
            "fetchrow",
            """SELECT username, display_name, department, position, email, telegram_id, telegram_username
               FROM users
               WHERE username = $1 OR lower(email) = lower($1) OR lower(telegram_username) = lower(ltrim($1, '@'))
                  OR telegram_id::text = $1
               ORDER BY username = $1 DESC LIMIT 1""",
            name,
        )
        return dict(row) if row else None

    # Turns and conversations.
    async def turn_by_message(self, channel: str, message_id: str) -> asyncpg.Record | None:
        return await self._run("fetchrow", "SELECT * FROM turns WHERE channel = $1 AND message_id = $2", channel, message_id)

    async def open_turn(
        self, *, channel: str, person: Person, message_id: str | None, request_id: str, request: str,
        ttl_seconds: int, reuse_turn_id: int | None,
    ) -> tuple[asyncpg.Record, asyncpg.Record, list[asyncpg.Record]]:
        """Store the message before anything else happens; return (conversation, turn, earlier turns).

        The message joins the user's conversation on this channel while it waits for an answer to a
        clarifying question younger than `ttl_seconds`; otherwise it starts a new conversation.
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
                    # Serialise one user's messages on one channel so that two at once join one conversation.
                    await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{person.username}\x1f{channel}")
                    conversation = await connection.fetchrow(
                        """SELECT * FROM conversations WHERE username = $1 AND channel = $2 AND status = 'clarifying'
                           AND updated_at > now() - make_interval(secs => $3) ORDER BY updated_at DESC LIMIT 1 FOR UPDATE""",
                        person.username, channel, float(ttl_seconds),
                    )
                    if conversation is None:
                        conversation = await connection.fetchrow(
                            "INSERT INTO conversations (username, channel, status) VALUES ($1, $2, 'open') RETURNING *",
                            person.username, channel,
                        )
                    turn = await connection.fetchrow(
                        """INSERT INTO turns (conversation_id, channel, username, message_id, request_id, request, department, position, status)
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'processing') RETURNING *""",
                        conversation["id"], channel, person.username, message_id, request_id, request, person.department, person.position,
                    )
                    if conversation["status"] == "open":
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

    async def first_request(self, conversation_id: int) -> str | None:
        return await self._run("fetchval", "SELECT request FROM turns WHERE conversation_id = $1 ORDER BY id LIMIT 1", conversation_id)

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

    # Reading for operators and the web chat.
    async def list_conversations(self, username: str | None, channel: str | None, status: str | None, limit: int, offset: int) -> tuple[int, list[dict]]:
        where, args = [], []
        for column, value in (("username", username), ("channel", channel), ("status", status)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        total = await self._run("fetchval", f"SELECT count(*) FROM conversations {condition}", *args)
        rows = await self._run(
            "fetch",
            f"""SELECT c.*, (SELECT count(*) FROM turns t WHERE t.conversation_id = c.id) AS turns
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


def _jsonable(record: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif key in ("timings", "sources") and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out
