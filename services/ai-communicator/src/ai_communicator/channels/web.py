"""The web chat (channel `direct`): the page at / and the JSON endpoint it talks to."""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from aiohttp import web
from aiohttp_pydantic.oas.typing import r200, r400, r429, r502, r503
from pydantic import BaseModel, Field, StringConstraints

from multyworkemon_common.contract import AnalysisResponse, ErrorResponse
from multyworkemon_common.errors import ApiError
from multyworkemon_common.responses import json_response
from multyworkemon_common.logging import get_logger
from multyworkemon_common.views import ContractView

from ..handling import ChannelMetrics, MessageHandler
from ..messages import Failure, Inbound

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


class ChatMessage(BaseModel):
    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
    message_id: str | None = Field(
        None, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$",
        description="Chosen by the page once per message: sending it again returns the same answer",
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


class ChatView(ContractView):
    async def post(
        self, body: ChatMessage
    ) -> r200[ChatReply] | r400[ErrorResponse] | r429[ErrorResponse] | r502[ErrorResponse] | r503[ErrorResponse]:
        """Send a message from the web chat; the answer comes back once its action is carried out.

        Tags: chat
        """
        metrics = self.request.app[CHANNEL_METRICS]
        shown: list[str] = []

        async def show(text: str) -> None:
            shown.append(text)

        message = Inbound(
            channel=CHANNEL, username=body.username, text=body.message,
            message_id=f"web:{body.message_id}" if body.message_id else None, arrived=time.time(), reply=show,
            sender_label=body.username,
        )
        metrics.received.inc({"channel": CHANNEL})
        try:
            handled = await self.request.app[HANDLER].handle(message)
        except Failure as failure:
            metrics.failed.inc({"channel": CHANNEL})
            log.warning("web chat message not handled", error=str(failure), labels={"outage": str(failure.outage)})
            if failure.retry_after:
                raise ApiError(
                    429, f"Слишком много сообщений подряд; отправьте это ещё раз через {failure.retry_after} с",
                    headers={"Retry-After": failure.retry_after},
                ) from None
            if failure.outage:
                raise ApiError(503, "Сервис сейчас недоступен, сообщение не обработано; отправьте его ещё раз чуть позже") from None
            raise ApiError(502, "Сообщение не удалось обработать; отправьте его ещё раз или напишите иначе") from None
        metrics.answered(CHANNEL, message.arrived)
        outcome = handled.outcome
        return json_response({
            **handled.answer.model_dump(by_alias=True),
            "reply": handled.text,
            "action_result": outcome.__dict__ if outcome else None,
        })


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


def add_web_chat(app: web.Application, handler: MessageHandler, metrics: ChannelMetrics) -> None:
    app[HANDLER] = handler
    app[CHANNEL_METRICS] = metrics
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_view("/api/chat", ChatView)
