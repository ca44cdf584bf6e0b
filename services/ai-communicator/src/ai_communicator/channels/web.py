"""The web chat (channel `direct`): the page at / and the JSON endpoints it talks to.

Who is writing: the e-mail an authenticating proxy (oauth2-proxy) puts into WEB_IDENTITY_HEADER,
believed only when the TCP peer is one of WEB_TRUSTED_PROXIES (`verified`: the secretary may act in
that person's name). Otherwise the visitor is anonymous: a random id in an HttpOnly cookie, answers
and links only, and only that browser's own conversations.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

from aiohttp import web
from aiohttp_pydantic.oas.typing import r200, r400, r404, r429, r502, r503
from pydantic import BaseModel, Field, StringConstraints

from multyworkemon_common.app import SETTINGS
from multyworkemon_common.contract import AnalysisResponse, DatabaseId, ErrorResponse, FeedbackRequest, FeedbackResult, Rating, ThreadReplies
from multyworkemon_common.errors import ApiError, UpstreamError
from multyworkemon_common.logging import get_logger
from multyworkemon_common.ratelimit import RateLimiter
from multyworkemon_common.responses import json_response
from multyworkemon_common.views import ContractView

from ..handling import ChannelMetrics, MessageHandler
from ..messages import Failure, Inbound
from ..settings import CommunicatorSettings

log = get_logger("ai_communicator.web")
CHANNEL = "direct"
STATIC = Path(str(files("ai_communicator") / "static"))
HANDLER = web.AppKey("handler", MessageHandler)
CHANNEL_METRICS = web.AppKey("channel_metrics", ChannelMetrics)
# The page's own script and styles only; nothing inline, nothing from elsewhere.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
COOKIE = "mw_visitor"
COOKIE_MAX_AGE = 30 * 24 * 3600  # renewed on every call: a browser in use keeps its identity
ANONYMOUS = "anon:"
THREAD = r"^[A-Za-z0-9_-]{8,64}$"
RATE_LIMITED = "Слишком много сообщений подряд; отправьте это ещё раз через {} с"
_ANONYMOUS_ID = re.compile(r"^[0-9a-f]{32}$")
_EMAIL = re.compile(r"^[^@\s,;<>\"]{1,128}@[^@\s,;<>\"]{1,127}$")


class ChatMessage(BaseModel):
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
    message_id: str | None = Field(
        None, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$",
        description="Chosen by the page once per message: sending it again returns the same answer",
    )
    thread: str | None = Field(
        None, pattern=THREAD,
        description="The page's conversation; a clarifying question continues only within it",
    )


class ActionResult(BaseModel):
    action: str
    status: str
    external_id: str | None = None
    note: str = ""


class ChatReply(AnalysisResponse):
    """The secretary's AnalysisResponse plus what the user was told and what was done."""

    reply: str = Field(description="The text shown to the user: the answer and what was done")
    action_result: ActionResult | None = None
    rated_turn: int | None = Field(None, description="The turn to rate with 👍/👎 under this answer (none under a question)")


class ChatFeedback(BaseModel):
    turn_id: DatabaseId
    rating: Rating


class NewConversation(BaseModel):
    thread: str | None = Field(None, pattern=THREAD, description="The conversation to close")


class NewConversationReply(BaseModel):
    thread: str = Field(description="The new conversation's id, to send with the next messages")
    closed: int = Field(description="How many conversations the secretary closed")


class Visitor(BaseModel):
    mode: Literal["signed-in", "anonymous"]
    username: str | None = Field(None, description="The signed-in user's e-mail; never the anonymous id, which only the cookie holds")


@dataclass(frozen=True)
class Sender:
    """Who sent a request, as far as this service can tell."""

    username: str  # the proxy's e-mail, or anon:<128 random bits>
    verified: bool
    address: str  # the client's address: per-address limits for anonymous clients
    cookie: str | None  # the anonymous id to (re)set in the browser
    secure: bool  # the browser talks https: the cookie gets Secure


class WebIdentity:
    """The sender of a request, and the per-client rate limits."""

    def __init__(self, settings: CommunicatorSettings):
        self.header = settings.web_identity_header
        self.proxies = settings.web_trusted_networks()  # parsed once
        self.per_user = RateLimiter(settings.web_rate_per_minute, settings.web_rate_burst)
        self.per_address = RateLimiter(settings.web_peer_rate_per_minute, settings.web_peer_rate_burst)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)

    def sender(self, request: web.Request) -> Sender:
        peer = request.remote or ""
        via_proxy = self._trusted(peer)
        # Behind our proxy the client is the last hop the proxies did not add themselves.
        hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")] if via_proxy else []
        address = next((hop for hop in reversed(hops) if hop and not self._trusted(hop)), peer)
        secure = request.secure or (via_proxy and request.headers.get("X-Forwarded-Proto", "").lower() == "https")
        email = request.headers.get(self.header, "").strip().lower() if via_proxy else ""
        if _EMAIL.match(email):
            return Sender(email, True, address, None, secure)
        known = request.cookies.get(COOKIE, "")
        anonymous_id = known if _ANONYMOUS_ID.match(known) else secrets.token_hex(16)
        return Sender(ANONYMOUS + anonymous_id, False, address, anonymous_id, secure)

    def admitted(self, request: web.Request) -> Sender:
        """The sender of a request that asks the secretary for something, or a 429 when this client
        sends too fast (anonymous ones are limited per address too: a new cookie is free)."""
        sender = self.sender(request)
        try:
            if not sender.verified:
                self.per_address.check(sender.address)
            self.per_user.check(sender.username)
        except ApiError as exc:
            raise ApiError(429, RATE_LIMITED.format(exc.headers["Retry-After"]), headers=exc.headers) from None
        return sender


IDENTITY = web.AppKey("web_identity", WebIdentity)


def _remember(response: web.StreamResponse, sender: Sender) -> web.StreamResponse:
    if sender.cookie:
        response.set_cookie(
            COOKIE, sender.cookie, max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="Strict", secure=sender.secure,
        )
    return response


class ChatView(ContractView):
    async def post(
        self, body: ChatMessage
    ) -> r200[ChatReply] | r400[ErrorResponse] | r429[ErrorResponse] | r502[ErrorResponse] | r503[ErrorResponse]:
        """Send a message from the web chat; the answer comes back once its action is carried out.

        Tags: chat
        """
        app = self.request.app
        sender = app[IDENTITY].admitted(self.request)
        metrics = app[CHANNEL_METRICS]
        rated: list[int | None] = []

        async def show(text: str, turn_id: int | None) -> None:
            rated.append(turn_id)

        message = Inbound(
            channel=CHANNEL, username=sender.username,
            # One line ending: a lone \r never reaches a header built from the text (a mailing's Subject).
            text=body.message.replace("\r\n", "\n").replace("\r", "\n"),
            message_id=f"web:{body.message_id}" if body.message_id else None, arrived=time.time(), reply=show,
            sender_label=sender.username if sender.verified else "анонимный пользователь веб-чата",
            thread=body.thread, verified=sender.verified, links_apart=True,
        )
        metrics.received.inc({"channel": CHANNEL})
        try:
            # attempt(): a bug while handling is a 502 in the contract's shape, never a bare 500.
            handled = await app[HANDLER].attempt(message)
        except Failure as failure:
            metrics.failed.inc({"channel": CHANNEL})
            log.warning("web chat message not handled", error=str(failure), labels={"outage": str(failure.outage)})
            if failure.retry_after:
                raise ApiError(429, RATE_LIMITED.format(failure.retry_after), headers={"Retry-After": failure.retry_after}) from None
            if failure.outage:
                raise ApiError(503, "Сервис сейчас недоступен, сообщение не обработано; отправьте его ещё раз чуть позже") from None
            raise ApiError(502, "Сообщение не удалось обработать; отправьте его ещё раз или напишите иначе") from None
        metrics.answered(CHANNEL, message.arrived)
        outcome = handled.outcome
        answer = handled.answer.model_dump(by_alias=True)
        if not sender.verified and answer.get("person"):
            answer["person"] = None  # it names the anonymous id, which only the HttpOnly cookie may hold
        return _remember(json_response({
            **answer,
            "reply": handled.text,
            "action_result": outcome.__dict__ if outcome else None,
            "rated_turn": rated[-1] if rated else None,
        }), sender)


class FeedbackView(ContractView):
    async def put(
        self, body: ChatFeedback
    ) -> r200[FeedbackResult] | r400[ErrorResponse] | r404[ErrorResponse] | r429[ErrorResponse] | r502[ErrorResponse] | r503[ErrorResponse]:
        """Rate one of this visitor's answers (👍 up, 👎 down); rating again changes it.

        Tags: chat
        """
        app = self.request.app
        sender = app[IDENTITY].admitted(self.request)
        request = FeedbackRequest(channel=CHANNEL, username=sender.username, rating=body.rating, turn_id=body.turn_id)
        try:
            result = await app[HANDLER].secretary.rate(request)
        except UpstreamError as exc:
            log.warning("could not store web chat feedback", error=exc.message)
            raise ApiError(exc.status, "Оценку не удалось сохранить; попробуйте ещё раз чуть позже") from None
        if result is None:
            raise ApiError(404, "Такого ответа в ваших разговорах нет")
        return _remember(json_response(result.model_dump()), sender)


class NewConversationView(ContractView):
    async def post(
        self, body: NewConversation
    ) -> r200[NewConversationReply] | r400[ErrorResponse] | r429[ErrorResponse] | r502[ErrorResponse] | r503[ErrorResponse]:
        """"Новый разговор": close the page's conversation on the secretary and get a new conversation id.

        Tags: chat
        """
        app = self.request.app
        sender = app[IDENTITY].admitted(self.request)
        closed = 0
        if body.thread:
            try:
                closed = await app[HANDLER].secretary.close_thread(CHANNEL, sender.username, body.thread)
            except UpstreamError as exc:
                log.warning("could not close a web chat conversation", error=exc.message)
                raise ApiError(exc.status, "Не получилось закрыть разговор; попробуйте ещё раз чуть позже") from None
        reply = NewConversationReply(thread=secrets.token_urlsafe(24), closed=closed)
        return _remember(json_response(reply.model_dump()), sender)


class UpdatesView(ContractView):
    async def get(
        self, thread: Annotated[str, Field(pattern=THREAD)], after: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0,
    ) -> r200[ThreadReplies] | r400[ErrorResponse] | r502[ErrorResponse] | r503[ErrorResponse]:
        """What an operator wrote in this page's conversation after a turn id (the page polls this).

        Tags: chat
        """
        app = self.request.app
        sender = app[IDENTITY].sender(self.request)
        try:
            replies = await app[HANDLER].secretary.operator_replies(CHANNEL, sender.username, thread, after)
        except UpstreamError as exc:
            raise ApiError(exc.status, "Не получилось проверить новые сообщения") from None
        return _remember(json_response(replies.model_dump(), headers={"Cache-Control": "no-store"}), sender)


class VisitorView(ContractView):
    async def get(self) -> r200[Visitor]:
        """Who the chat takes the visitor for (shown on the page); gives an anonymous visitor its cookie.

        Tags: chat
        """
        sender = self.request.app[IDENTITY].sender(self.request)
        visitor = Visitor(mode="signed-in", username=sender.username) if sender.verified else Visitor(mode="anonymous")
        return _remember(json_response(visitor.model_dump(), headers={"Cache-Control": "no-store"}), sender)


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


def add_web_chat(app: web.Application, handler: MessageHandler, metrics: ChannelMetrics) -> None:
    settings = app[SETTINGS]
    app[HANDLER] = handler
    app[CHANNEL_METRICS] = metrics
    app[IDENTITY] = WebIdentity(settings)
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_view("/api/chat", ChatView)
    app.router.add_view("/api/chat/new", NewConversationView)
    app.router.add_view("/api/chat/feedback", FeedbackView)
    app.router.add_view("/api/chat/updates", UpdatesView)
    app.router.add_view("/api/me", VisitorView)

    async def say_mode(_app: web.Application) -> None:
        log.info("web chat identity", labels={"mode": settings.web_identity_mode})

    app.on_startup.append(say_mode)
