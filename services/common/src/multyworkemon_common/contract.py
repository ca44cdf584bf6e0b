"""The seed contract's enums and bodies (../shared/seeds/MultyWorkemon-README.md), in one place."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["email", "tg", "direct"]
CHANNELS: tuple[str, ...] = ("email", "tg", "direct")

ACTION_CLARIFY = "уточнить"
ACTION_REPLY_MESSAGE = "ответить сообщением"
ACTION_JIRA = "создать jira-task"
ACTION_TELEGRAM_EMPLOYEE = "написать в telegram сотруднику"
ACTION_REPLY_EMAIL = "ответить на письмо"
ACTION_DEPARTMENT_MAILING = "написать в рассылку департамента"
Action = Literal[
    "уточнить",
    "ответить сообщением",
    "создать jira-task",
    "написать в telegram сотруднику",
    "ответить на письмо",
    "написать в рассылку департамента",
]
ACTIONS: tuple[str, ...] = (
    ACTION_CLARIFY,
    ACTION_REPLY_MESSAGE,
    ACTION_JIRA,
    ACTION_TELEGRAM_EMPLOYEE,
    ACTION_REPLY_EMAIL,
    ACTION_DEPARTMENT_MAILING,
)


class ErrorResponse(BaseModel):
    """Every error any service answers."""

    error: str
    message: str
    statusCode: int


class Source(BaseModel):
    """A knowledge-base document an answer relies on."""

    title: str
    url: str
    score: float = 0.0


class ContextDecision(BaseModel):
    """The guesser's answer (contract: ContextResponse) and the shape its LLM must produce."""

    is_enough: bool = Field(description="true только если информации достаточно, чтобы понять предметную область и что нужно пользователю")
    response: str = Field(min_length=1, description="если is_enough=false: один уточняющий вопрос пользователю; если true: краткое описание контекста запроса")


class AnalyticsPlan(BaseModel):
    """What the analyst's LLM must produce: the answer and the action to take."""

    is_enough: bool = Field(description="true если можно дать ответ, что и где сделать")
    response: str = Field(min_length=1, description="ответ пользователю: что сделать, где, со ссылками на источники [n]")
    action: Action = Field(description="действие, которое нужно выполнить")


class PreparedAnalytics(AnalyticsPlan):
    """The analyst's API answer (contract: ContextResponse plus action and sources)."""

    sources: list[Source] = []


class AnalysisResponse(BaseModel):
    """The secretary's answer (contract: AnalysisResponse)."""

    model_config = ConfigDict(populate_by_name=True)

    is_enough: bool
    request: str
    action: Action
    question: str
    response: str
    context_response: str = Field(alias="context-response")
    conversation_id: int | None = None
    turn_id: int | None = None
    sources: list[Source] = []
