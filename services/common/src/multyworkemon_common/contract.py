"""Every request and answer that crosses the wire between our services, in one place.

The seed contract's enums and bodies (docs/contract/seed-README.md) plus the optional fields our
own services exchange; a peer that implements only the seed ignores the extra fields.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


REPLY_ACTIONS: tuple[str, ...] = (ACTION_CLARIFY, ACTION_REPLY_MESSAGE, ACTION_REPLY_EMAIL)
SIDE_ACTIONS: tuple[str, ...] = (ACTION_JIRA, ACTION_TELEGRAM_EMPLOYEE, ACTION_DEPARTMENT_MAILING)

# Ids are PostgreSQL bigints: anything larger is a bad parameter (400), not a database error.
DatabaseId = Annotated[int, Field(ge=1, le=2**63 - 1)]


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


class DiscussionTurn(BaseModel):
    """One message of a conversation: the user's words or what the system answered."""

    role: Literal["user", "assistant"]
    text: str


def users_words(discussion: list[DiscussionTurn], fallback: str) -> str:
    """What the user said in the whole discussion (the system's own questions name many topics)."""
    words = [turn.text for turn in discussion if turn.role == "user"]
    return "\n".join(words) if words else fallback


def discussion_text(discussion: list[DiscussionTurn]) -> str:
    """The discussion as one text, for a model or a peer that takes only the seed's `request` string."""
    labels = {"user": "Пользователь", "assistant": "MultyWorkemon"}
    return "\n".join(f"{labels[turn.role]}: {turn.text}" for turn in discussion)


class ContextRequest(BaseModel):
    """The guesser's request (seed: GET /get-context)."""

    username: str = Field(min_length=1, max_length=256)
    department: str = Field(min_length=1, max_length=512)
    position: str = Field(min_length=1, max_length=512)
    request: str = Field(min_length=1, max_length=200_000, description="The request text, or the whole discussion as text")
    discussion: list[DiscussionTurn] = Field(
        default_factory=list, max_length=200, description="The conversation so far, oldest first, ending with this message"
    )


class ContextDecision(BaseModel):
    """The guesser's answer (contract: ContextResponse) and the shape its LLM must produce."""

    is_enough: bool = Field(description="true только если информации достаточно, чтобы понять предметную область и что нужно пользователю")
    response: str = Field(min_length=1, description="если is_enough=false: один уточняющий вопрос пользователю; если true: краткое описание контекста запроса")


class ContextResponse(ContextDecision):
    """The guesser's API answer; `reasoning` repeats `response` for the original implementation's secretary."""

    reasoning: str = ""

    @model_validator(mode="after")
    def _reasoning_is_response(self) -> "ContextResponse":
        self.reasoning = self.response
        return self


class AnalyticsRequest(BaseModel):
    """The analyst's request (seed: GET /prepare-analititcs)."""

    context: str = Field(min_length=1, max_length=200_000, description="The guesser's description of the request's context")
    request: str = Field(min_length=1, max_length=200_000, description="The request text, or the whole discussion as text")
    channel: Channel | None = Field(None, description="Where the request came from")
    username: str | None = Field(None, max_length=256)
    department: str | None = Field(None, max_length=512)
    position: str | None = Field(None, max_length=512)
    discussion: list[DiscussionTurn] = Field(default_factory=list, max_length=200, description="As in the guesser's request")

    @model_validator(mode="before")
    @classmethod
    def _accept_seed_alias(cls, data):
        # The seed names this parameter both `context` and `preparedcontext`.
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if value is not None}
            if not data.get("context") and data.get("preparedcontext"):
                data["context"] = data["preparedcontext"]
            data.pop("preparedcontext", None)
        return data


class AnalyticsPlan(BaseModel):
    """What the analyst's LLM must produce: the answer and the action to take."""

    is_enough: bool = Field(description="true если можно дать ответ, что и где сделать")
    response: str = Field(min_length=1, description="ответ пользователю: что сделать, где, со ссылками на источники [n]")
    action: Action = Field(description="действие, которое нужно выполнить")


class PreparedAnalytics(AnalyticsPlan):
    """The analyst's API answer (contract: ContextResponse plus action and sources)."""

    sources: list[Source] = []
    reasoning: str = ""

    @model_validator(mode="after")
    def _reasoning_is_response(self) -> "PreparedAnalytics":
        self.reasoning = self.response
        return self


class AnalyzeRequest(BaseModel):
    """The secretary's request (seed: GET /analyze-request), sent by the communicator.

    The caller holds the service token and vouches for `username`: the communicator puts there who
    the channel says the sender is, never a name the sender typed.
    """

    channel: Channel
    username: str = Field(
        min_length=1, max_length=256,
        description="E-mail: the sender's address; tg: the Telegram user id; direct: the proxy's e-mail or anon:<id>",
    )
    request: str = Field(min_length=1, max_length=100_000)
    department: str | None = Field(None, max_length=512, description="Overrides the users directory")
    position: str | None = Field(None, max_length=512, description="Overrides the users directory")
    message_id: str | None = Field(
        None, max_length=512, description="The channel's id of the message; idempotent per channel and sender"
    )
    thread: str | None = Field(
        None, max_length=512, description="The channel's discussion thread; a clarification continues only within it"
    )
    verified: bool = Field(False, description="The channel authenticated the sender; actions on their behalf need it")
    handle: str | None = Field(None, max_length=256, description="The sender's Telegram user name, matched to the directory")


class PersonInfo(BaseModel):
    """Who a message is from, as the users directory knows them (known=false: a stranger)."""

    username: str
    display_name: str | None = None
    department: str
    position: str
    email: str | None = None
    known: bool


class ActionRecord(BaseModel):
    """What the communicator did with a turn's action."""

    action: str = Field(min_length=1, max_length=128)
    status: Literal["done", "failed"]
    external_id: str | None = Field(None, max_length=512, description="Jira issue key, message id, ...")
    detail: str | None = Field(None, max_length=10_000)


class CloseThread(BaseModel):
    """Close a channel thread's open conversation ("Новый разговор", Telegram /new)."""

    channel: Channel
    username: str = Field(min_length=1, max_length=256)
    thread: str = Field(min_length=1, max_length=512)


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
    # What the communicator needs to carry the answer out, so that it asks nothing else.
    reply_action: Action | None = Field(None, description="The reply on the message's own channel")
    person: PersonInfo | None = None
    discussion: list[DiscussionTurn] = Field(default_factory=list, description="The whole conversation, this answer included")
    done_actions: list[ActionRecord] = Field(default_factory=list, description="Actions already carried out for this turn")
    repeated: bool = Field(False, description="The same message was answered before; this is the stored answer")
    silent: bool = Field(False, description="An operator holds the conversation: the message is stored for them, nothing is sent")


Rating = Literal["up", "down"]


class FeedbackRequest(BaseModel):
    """A user's rating of an answer (👍 up, 👎 down), sent by the communicator for the answer's own sender.

    The answer is named by its turn id (web chat, Telegram) or by the Message-ID of the reply that
    carried it (e-mail: "1" or "2" in reply to our letter). Only the person the turn belongs to, as
    the channel identifies them, may rate it; anyone else gets 404.
    """

    channel: Channel
    username: str = Field(min_length=1, max_length=256, description="As in AnalyzeRequest: who the channel says the sender is")
    handle: str | None = Field(None, max_length=256, description="The sender's Telegram user name")
    rating: Rating
    turn_id: DatabaseId | None = None
    reply_id: str | None = Field(None, max_length=998, description="E-mail: the Message-ID of our reply being rated")

    @model_validator(mode="after")
    def _one_answer(self) -> "FeedbackRequest":
        if (self.turn_id is None) == (self.reply_id is None):
            raise ValueError("name the answer by exactly one of turn_id and reply_id")
        return self


class FeedbackResult(BaseModel):
    turn_id: int
    rating: Rating
    changed: bool = Field(description="false: the turn already had this rating")


class TakeOver(BaseModel):
    """An operator takes a conversation over (the bot stays silent there) or hands it back."""

    operator: str = Field(min_length=1, max_length=256, description="The operator's e-mail, as the console's proxy says")


class OperatorReply(TakeOver):
    """A reply an operator wrote in a conversation they hold."""

    text: str = Field(min_length=1, max_length=20_000)


class OperatorReplyStored(BaseModel):
    """The stored turn, and where the communicator must deliver it on the user's channel."""

    turn_id: int
    conversation_id: int
    channel: Channel
    action: Action = Field(description="The reply action on that channel, to record what was done under")
    thread: str | None = Field(None, description="tg: tg:<chat id>; email: the root Message-ID; direct: the page's conversation id")
    address: str | None = Field(None, description="The user's e-mail address (e-mail channel)")
    in_reply_to: str | None = Field(None, description="The channel's id of the user's last message")


class ThreadReply(BaseModel):
    turn_id: int
    text: str
    at: str


class ThreadReplies(BaseModel):
    """Operators' replies in a user's thread, oldest first."""

    items: list[ThreadReply]
