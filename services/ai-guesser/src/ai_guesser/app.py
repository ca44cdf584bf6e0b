"""ai-guesser: is the request clear enough, and if not, what to ask."""

from __future__ import annotations

from aiohttp import web
from aiohttp_pydantic.oas.typing import r200, r400, r502, r503, r504

from multyworkemon_common.app import attach_llm, create_service_app, finish_app
from multyworkemon_common.contract import ContextDecision, ContextRequest, ContextResponse, ErrorResponse
from multyworkemon_common.links import without_links
from multyworkemon_common.llm import LLMSettings, StructuredAsker
from multyworkemon_common.prompts import saved_prompt
from multyworkemon_common.responses import json_response
from multyworkemon_common.views import ContractView

from .prompt import DEFAULT_PROMPT

SERVICE = "ai-guesser"
ASKER = web.AppKey("asker", StructuredAsker)
PROMPT = web.AppKey("prompt", str)


class GuesserSettings(LLMSettings):
    port: int = 8001


class GetContextView(ContractView):
    async def get(
        self, username: str, department: str, position: str, request: str
    ) -> r200[ContextResponse] | r400[ErrorResponse] | r502[ErrorResponse] | r503[ErrorResponse] | r504[ErrorResponse]:
        """Decide whether the request is clear enough; if not, the clarifying question.

        Tags: context
        """
        return await self._decide(ContextRequest.model_validate(
            {"username": username, "department": department, "position": position, "request": request}
        ))

    async def post(
        self, body: ContextRequest
    ) -> r200[ContextResponse] | r400[ErrorResponse] | r502[ErrorResponse] | r503[ErrorResponse] | r504[ErrorResponse]:
        """The same as GET, with the fields in a JSON body (long requests do not fit a URL).

        Tags: context
        """
        return await self._decide(body)

    async def _decide(self, fields: ContextRequest) -> web.Response:
        app = self.request.app
        # The model reads the structured discussion when there is one; `request` would repeat it.
        payload = fields.model_dump(exclude={"request"} if fields.discussion else {"discussion"})
        decision = await app[ASKER].ask(app[PROMPT], payload, ContextDecision)
        # A clarifying question or a context never needs a link: none the model wrote reaches anyone.
        answer = ContextResponse(is_enough=decision.is_enough, response=without_links(decision.response))
        return json_response(answer.model_dump())


def create_app(settings: GuesserSettings | None = None) -> web.Application:
    settings = settings or GuesserSettings()
    app = create_service_app(SERVICE, settings)
    app[ASKER] = attach_llm(app, settings)
    app[PROMPT] = saved_prompt(settings, DEFAULT_PROMPT)
    app.router.add_view("/get-context", GetContextView)
    return finish_app(app, "ai-guesser API")


__all__ = ["create_app", "GuesserSettings"]
