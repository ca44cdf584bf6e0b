"""ai-secretary: the orchestrator. Keeps users and conversations, asks the guesser, then the analyst."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

from aiohttp import web
from aiohttp_pydantic.oas.typing import r200, r201, r400, r404, r409, r413, r429, r502, r503, r504
from pydantic import BaseModel, Field

from multyworkemon_common.app import METRICS, READINESS_CHECKS, create_service_app, finish_app
from multyworkemon_common.contract import (
    ActionRecord, AnalysisResponse, AnalyzeRequest, Channel, CloseThread, DatabaseId, ErrorResponse, FeedbackRequest, FeedbackResult,
    OperatorReply, OperatorReplyStored, TakeOver, ThreadReplies,
)
from multyworkemon_common.database import Database, apply_migrations, attach_schema
from multyworkemon_common.errors import ApiError
from multyworkemon_common.responses import json_response
from multyworkemon_common.http import ServiceClient
from multyworkemon_common.logging import get_logger
from multyworkemon_common.ratelimit import RateLimiter
from multyworkemon_common.settings import DatabaseSettings
from multyworkemon_common.views import ContractView

from multyworkemon_common.context import request_id_var

from .pipeline import Pipeline, PipelineSettings, reply_action
from .store import Store

SERVICE = "ai-secretary"
MIGRATIONS = Path(str(files("ai_secretary") / "migrations"))
PIPELINE = web.AppKey("pipeline", Pipeline)
STORE = web.AppKey("store", Store)
log = get_logger("ai_secretary")

AnalyzeResponses = (
    r200[AnalysisResponse] | r400[ErrorResponse] | r409[ErrorResponse] | r413[ErrorResponse] | r429[ErrorResponse]
    | r502[ErrorResponse] | r503[ErrorResponse] | r504[ErrorResponse]
)


class SecretarySettings(DatabaseSettings):
    port: int = 8000
    guesser_url: str = "http://localhost:8001"
    analyst_url: str = "http://localhost:8002"
    upstream_timeout: float = 120.0  # longer than the LLM's own retries together
    conversation_ttl_seconds: int = 86_400  # how long a clarifying question waits for its answer
    max_clarifications: int = 3  # then a human is brought in
    stale_processing_seconds: int = 180  # a message stuck "processing" this long may be tried again
    users_file: str = ""  # YAML users directory loaded at start
    # Per user (any channel): a burst, then this many analysed messages a minute; 0 turns the limit off.
    rate_limit_per_minute: float = 30.0
    rate_limit_burst: int = 10


class AnalyzeView(ContractView):
    async def get(
        self,
        channel: Channel,
        username: str,
        request: str,
        department: str | None = None,
        position: str | None = None,
        message_id: str | None = None,
        thread: str | None = None,
        verified: bool = False,
        handle: str | None = None,
    ) -> AnalyzeResponses:
        """Analyse a message: is there enough context, what to do, the answer or a clarifying question.

        Tags: analysis
        """
        fields = AnalyzeRequest.model_validate({
            "channel": channel, "username": username, "request": request, "department": department,
            "position": position, "message_id": message_id, "thread": thread, "verified": verified, "handle": handle,
        })
        return await self._analyze(fields)

    async def post(self, body: AnalyzeRequest) -> AnalyzeResponses:
        """The same as GET, with the fields in a JSON body (a long e-mail does not fit a URL).

        Tags: analysis
        """
        return await self._analyze(body)

    async def _analyze(self, fields: AnalyzeRequest) -> web.Response:
        answer = await self.request.app[PIPELINE].analyze(fields)
        return json_response(answer.model_dump(by_alias=True))


class ConversationPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[dict]


class ConversationsView(ContractView):
    async def get(
        self,
        username: str | None = None,
        channel: Channel | None = None,
        status: Literal["open", "clarifying", "answered", "escalated", "closed", "failed", "operator"] | None = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        offset: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0,
    ) -> r200[ConversationPage] | r400[ErrorResponse] | r503[ErrorResponse]:
        """Conversations, newest first, filtered by user, channel and status (`failed`: a message of it
        could not be answered; `operator`: an operator holds it).

        Tags: conversations
        """
        total, items = await self.request.app[STORE].list_conversations(username, channel, status, limit, offset)
        return json_response({"total": total, "limit": limit, "offset": offset, "items": items})


class ConversationView(ContractView):
    async def get(self, conversation_id: DatabaseId, /) -> r200[dict] | r404[ErrorResponse] | r503[ErrorResponse]:
        """One conversation with every turn and the actions carried out.

        Tags: conversations
        """
        body = await self.request.app[STORE].get_conversation(conversation_id)
        if body is None:
            raise ApiError(404, f"Conversation {conversation_id} does not exist")
        return json_response(body)


class ClosedThreads(BaseModel):
    closed: int = Field(description="How many conversations were closed (0: none was open)")


class CloseThreadView(ContractView):
    async def post(self, body: CloseThread) -> r200[ClosedThreads] | r400[ErrorResponse] | r503[ErrorResponse]:
        """Close the conversation open in a channel thread: the user's next message starts a new one.

        Tags: conversations
        """
        store = self.request.app[STORE]
        person = await store.find_person(body.channel, body.username)
        closed = await store.close_thread(person.username, body.channel, body.thread)
        return json_response({"closed": closed})


class ActionResultView(ContractView):
    async def post(self, turn_id: DatabaseId, /, body: ActionRecord) -> r201[dict] | r400[ErrorResponse] | r404[ErrorResponse] | r503[ErrorResponse]:
        """Record what the communicator did with a turn's action.

        Tags: conversations
        """
        result_id = await self.request.app[STORE].record_action_result(turn_id, body.action, body.status, body.external_id, body.detail)
        if result_id is None:
            raise ApiError(404, f"Turn {turn_id} does not exist")
        return json_response({"id": result_id, "turn_id": turn_id}, status=201)


class FeedbackView(ContractView):
    async def put(self, body: FeedbackRequest) -> r200[FeedbackResult] | r400[ErrorResponse] | r404[ErrorResponse] | r503[ErrorResponse]:
        """Rate an answer (👍 up, 👎 down) for the person it was given to; sending again changes the rating.

        Tags: conversations
        """
        result = await self.request.app[PIPELINE].rate(body)
        return json_response(result.model_dump())


class TakeView(ContractView):
    async def post(self, conversation_id: DatabaseId, /, body: TakeOver) -> r200[dict] | r400[ErrorResponse] | r404[ErrorResponse] | r503[ErrorResponse]:
        """An operator takes the conversation over: the bot stays silent there until it is handed back.

        Tags: operators
        """
        return await _take(self.request, conversation_id, body.operator)


class ReleaseView(ContractView):
    async def post(self, conversation_id: DatabaseId, /, body: TakeOver) -> r200[dict] | r400[ErrorResponse] | r404[ErrorResponse] | r503[ErrorResponse]:
        """Hand the conversation back to the bot.

        Tags: operators
        """
        return await _take(self.request, conversation_id, None)


async def _take(request: web.Request, conversation_id: int, operator: str | None) -> web.Response:
    row = await request.app[STORE].take(conversation_id, operator)
    if row is None:
        raise ApiError(404, f"Conversation {conversation_id} does not exist")
    log.info("conversation taken over" if operator else "conversation handed back", labels={"conversation_id": str(conversation_id)})
    return json_response({"id": row["id"], "taken_by": row["taken_by"]})


class OperatorReplyView(ContractView):
    async def post(
        self, conversation_id: DatabaseId, /, body: OperatorReply
    ) -> r201[OperatorReplyStored] | r400[ErrorResponse] | r409[ErrorResponse] | r503[ErrorResponse]:
        """Store an operator's reply as a turn; the answer says where the communicator delivers it.

        Tags: operators
        """
        store = self.request.app[STORE]
        channel = await store.conversation_channel(conversation_id)
        action = reply_action(channel or "direct")
        stored = channel and await store.operator_turn(conversation_id, body.operator, body.text, request_id_var.get(), action)
        if stored is None:
            raise ApiError(409, "Take the conversation over first: it is not held by this operator")
        conversation, turn = stored
        address, in_reply_to = await store.recipient(conversation)
        reply = OperatorReplyStored(
            turn_id=turn["id"], conversation_id=conversation["id"], channel=conversation["channel"], action=action, thread=conversation["thread"],
            address=address, in_reply_to=in_reply_to,
        )
        return json_response(reply.model_dump(), status=201)


class ThreadRepliesView(ContractView):
    async def get(
        self, channel: Channel, username: str, thread: str, after: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0,
    ) -> r200[ThreadReplies] | r400[ErrorResponse] | r503[ErrorResponse]:
        """Operators' replies in a user's thread after a turn id (the web chat polls these).

        Tags: operators
        """
        store = self.request.app[STORE]
        person = await store.find_person(channel, username)
        return json_response({"items": await store.thread_replies(channel, person.username, thread, after)})


class UserView(ContractView):
    async def get(self, username: str, /) -> r200[dict] | r404[ErrorResponse] | r503[ErrorResponse]:
        """A person from the users directory, by user name, e-mail or Telegram user name.

        Tags: users
        """
        user = await self.request.app[STORE].get_user(username)
        if user is None:
            raise ApiError(404, f"User {username} is not in the directory")
        return json_response(user)


async def migrate(settings: SecretarySettings) -> list[str]:
    return await apply_migrations(settings.database_url.get_secret_value(), SERVICE, MIGRATIONS)


def create_app(settings: SecretarySettings | None = None) -> web.Application:
    settings = settings or SecretarySettings()
    # Every endpoint needs the service token: the communicator is the public face, and it vouches
    # for who a message is from.
    app = create_service_app(SERVICE, settings)
    metrics = app[METRICS]
    database = Database(settings, metrics)
    store = Store(database)
    token = settings.service_token.get_secret_value()
    guesser = ServiceClient("ai-guesser", settings.guesser_url, metrics=metrics, token=token, timeout=settings.upstream_timeout)
    analyst = ServiceClient("ai-systemanalitic", settings.analyst_url, metrics=metrics, token=token, timeout=settings.upstream_timeout)
    app[STORE] = store
    app[PIPELINE] = Pipeline(
        store, guesser, analyst, metrics,
        PipelineSettings(settings.conversation_ttl_seconds, settings.max_clarifications, settings.stale_processing_seconds),
        RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
    )

    async def prepare() -> None:
        if settings.migrate_on_start:
            await migrate(settings)
        if settings.users_file:
            count = await store.load_users(Path(settings.users_file))
            log.info("users directory loaded", labels={"users": str(count)})

    async def upstream_clients(_app: web.Application):
        yield
        await guesser.close()
        await analyst.close()

    app.cleanup_ctx.append(upstream_clients)
    app[READINESS_CHECKS]["database"] = attach_schema(app, database, SERVICE, MIGRATIONS, prepare)
    app.router.add_view("/analyze-request", AnalyzeView)
    app.router.add_view("/conversations", ConversationsView)
    app.router.add_view("/conversations/close", CloseThreadView)
    app.router.add_view("/conversations/{conversation_id}", ConversationView)
    app.router.add_view("/turns/{turn_id}/action-result", ActionResultView)
    app.router.add_view("/feedback", FeedbackView)
    app.router.add_view("/conversations/{conversation_id}/take", TakeView)
    app.router.add_view("/conversations/{conversation_id}/release", ReleaseView)
    app.router.add_view("/conversations/{conversation_id}/operator-reply", OperatorReplyView)
    app.router.add_view("/threads/replies", ThreadRepliesView)
    app.router.add_view("/users/{username}", UserView)
    return finish_app(app, "ai-secretary API")
