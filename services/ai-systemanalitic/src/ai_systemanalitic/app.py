"""ai-systemanalitic: what must be done, where, with links to the materials."""

from __future__ import annotations

from aiohttp import web
from aiohttp_pydantic.oas.typing import r200, r400, r502, r503, r504
from pydantic import BaseModel, Field, model_validator

from multyworkemon_common.app import create_service_app, finish_app
from multyworkemon_common.contract import AnalyticsPlan, Channel, ErrorResponse, PreparedAnalytics
from multyworkemon_common.errors import json_response
from multyworkemon_common.llm import LLMSettings, StructuredAsker, attach_llm
from multyworkemon_common.prompts import saved_prompt
from multyworkemon_common.views import ContractView

from .prompt import DEFAULT_PROMPT

SERVICE = "ai-systemanalitic"
ASKER = web.AppKey("asker", StructuredAsker)
PROMPT = web.AppKey("prompt", str)

Responses = r200[PreparedAnalytics] | r400[ErrorResponse] | r502[ErrorResponse] | r503[ErrorResponse] | r504[ErrorResponse]


class AnalystSettings(LLMSettings):
    port: int = 8002


class AnalyticsRequest(BaseModel):
    context: str = Field(min_length=1, description="The guesser's description of the request's context")
    request: str = Field(min_length=1, description="The request text, or the whole discussion so far")
    channel: Channel | None = Field(None, description="Where the request came from; the default reply action follows it")
    username: str | None = None
    department: str | None = None
    position: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _accept_seed_alias(cls, data):
        # The seed names this parameter both `context` and `preparedcontext`.
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if value is not None}
            if not data.get("context") and data.get("preparedcontext"):
                data["context"] = data["preparedcontext"]
        return data


class PrepareAnalyticsView(ContractView):
    async def get(
        self,
        request: str,
        context: str | None = None,
        preparedcontext: str | None = None,
        channel: Channel | None = None,
        username: str | None = None,
        department: str | None = None,
        position: str | None = None,
    ) -> Responses:
        """What must be done and where, with the knowledge-base sources it relies on.

        `context` (the seed also calls it `preparedcontext`) is required.

        Tags: analytics
        """
        fields = {"request": request, "context": context, "preparedcontext": preparedcontext, "channel": channel,
                  "username": username, "department": department, "position": position}
        return await self._prepare(AnalyticsRequest.model_validate(fields))

    async def post(self, body: AnalyticsRequest) -> Responses:
        """The same as GET, with the fields in a JSON body.

        Tags: analytics
        """
        return await self._prepare(body)

    async def _prepare(self, fields: AnalyticsRequest) -> web.Response:
        app = self.request.app
        payload = fields.model_dump(exclude_none=True)
        plan = await app[ASKER].ask(app[PROMPT], payload, AnalyticsPlan)
        answer = PreparedAnalytics(**plan.model_dump(), sources=[])
        return json_response(answer.model_dump())


def create_app(settings: AnalystSettings | None = None) -> web.Application:
    settings = settings or AnalystSettings()
    app = create_service_app(SERVICE, settings)
    app[ASKER] = attach_llm(app, settings)
    app[PROMPT] = saved_prompt(settings, DEFAULT_PROMPT)
    app.router.add_view("/prepare-analititcs", PrepareAnalyticsView)
    # The contract's spelling stays; the correct spelling is an alias.
    app.router.add_view("/prepare-analytics", PrepareAnalyticsView)
    return finish_app(app, "ai-systemanalitic API")
