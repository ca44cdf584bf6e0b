"""The secretary's business logic: one message in, one answer (and the action to take) out."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from multyworkemon_common.context import request_id_var
from multyworkemon_common.contract import (
    ACTION_CLARIFY,
    ACTION_REPLY_EMAIL,
    ACTION_REPLY_MESSAGE,
    ACTION_TELEGRAM_EMPLOYEE,
    SIDE_ACTIONS,
    AnalysisResponse,
    AnalyticsRequest,
    AnalyzeRequest,
    ContextRequest,
    ContextResponse,
    DiscussionTurn,
    FeedbackRequest,
    FeedbackResult,
    PersonInfo,
    PreparedAnalytics,
    Source,
    discussion_text,
)
from multyworkemon_common.errors import ApiError
from multyworkemon_common.http import ServiceClient
from multyworkemon_common.logging import get_logger
from multyworkemon_common.metrics import ServiceMetrics
from multyworkemon_common.ratelimit import RateLimiter

from .store import Store, discussion_of

log = get_logger("ai_secretary.pipeline")

ESCALATION_TEXT = (
    "Не получилось уточнить запрос автоматически, поэтому я передаю его сотруднику вашего департамента: "
    "он свяжется с вами. Вся переписка сохранена."
)
UNVERIFIED_ESCALATION_TEXT = (
    "Не получилось уточнить запрос автоматически. Напишите, пожалуйста, в поддержку вашего департамента: "
    "вся переписка сохранена."
)
NOT_ON_BEHALF = (
    "Действия от вашего имени (задача в Jira, сообщение коллеге, рассылка) я выполняю только для сотрудников "
    "из справочника, чья личность подтверждена каналом: письмо с проверенной подписью домена, Telegram-аккаунт "
    "из справочника или вход в веб-чат через корпоративный SSO. Поэтому здесь только ответ."
)


@dataclass
class PipelineSettings:
    conversation_ttl_seconds: int
    max_clarifications: int
    stale_processing_seconds: int


def reply_action(channel: str, action: str | None = None) -> str:
    """The reply on a message's own channel (a clarifying question is one too); the one place that decides it."""
    if action == ACTION_CLARIFY:
        return ACTION_CLARIFY
    return ACTION_REPLY_EMAIL if channel == "email" else ACTION_REPLY_MESSAGE


def final_action(proposed: Any, fields: AnalyzeRequest, person: PersonInfo) -> tuple[str, bool]:
    """The action of a final answer, and whether an action on the user's behalf was refused.

    Acting for someone (a Jira task, a note to a colleague, a mailing) needs both a sender the
    channel authenticated and a person in the directory; everything else is a reply on the
    message's own channel, whatever the model said about replying.
    """
    if proposed not in SIDE_ACTIONS:
        return reply_action(fields.channel), False
    if fields.verified and person.known:
        return proposed, False
    return reply_action(fields.channel), True


class Pipeline:
    def __init__(
        self, store: Store, guesser: ServiceClient, analyst: ServiceClient, metrics: ServiceMetrics,
        settings: PipelineSettings, rate_limiter: RateLimiter,
    ):
        self.store = store
        self.guesser = guesser
        self.analyst = analyst
        self.settings = settings
        self.rate_limiter = rate_limiter
        self._outcomes = metrics.counter("mw_pipeline_outcomes_total", "Answers given, by channel and action")
        self._errors = metrics.counter("mw_pipeline_errors_total", "Requests that failed, by channel and stage")
        self._duplicates = metrics.counter("mw_pipeline_duplicates_total", "Repeated messages answered from storage")
        self._feedback = metrics.counter("mw_feedback_total", "Ratings of answers by their users (a changed rating counts again)")

    async def analyze(self, fields: AnalyzeRequest) -> AnalysisResponse:
        person = await self.store.find_person(fields.channel, fields.username, fields.handle)
        # One quota per person, however the name was spelt or on whichever channel they write.
        self.rate_limiter.check(person.username)
        person = person.model_copy(update={"department": fields.department or person.department, "position": fields.position or person.position})

        reuse_turn_id = None
        if fields.message_id:
            existing = await self.store.turn_by_message(fields.channel, person.username, fields.message_id)
            if existing is not None:
                if existing["status"] == "answered":
                    self._duplicates.inc({"channel": fields.channel})
                    return await self._stored_answer(existing, fields, person)
                age = time.time() - existing["created_at"].timestamp()
                if existing["status"] == "processing" and age < self.settings.stale_processing_seconds:
                    raise ApiError(409, "This message is already being processed; ask again shortly for its answer")
                reuse_turn_id = existing["id"]  # failed before (or abandoned): try it again

        conversation, turn, earlier = await self.store.open_turn(
            channel=fields.channel, person=person, thread=fields.thread, message_id=fields.message_id or None,
            request_id=request_id_var.get(), request=fields.request, ttl_seconds=self.settings.conversation_ttl_seconds,
            reuse_turn_id=reuse_turn_id,
        )
        discussion = [*discussion_of(earlier), DiscussionTurn(role="user", text=fields.request)]
        if conversation["taken_by"]:
            # An operator holds this conversation: the message is theirs to answer, the bot says nothing.
            await self.store.finish_turn(
                turn["id"], conversation["id"], conversation["status"], False, action=reply_action(fields.channel), response="",
            )
            return AnalysisResponse(
                is_enough=False, request=discussion[0].text, action=reply_action(fields.channel), question="", response="",
                context_response="", conversation_id=conversation["id"], turn_id=turn["id"], reply_action=reply_action(fields.channel),
                person=person, discussion=discussion, silent=True,
            )
        timings: dict[str, float] = {}
        started = time.perf_counter()
        try:
            answer, record, status, clarified = await self._decide(fields, person, conversation, discussion, timings)
        except ApiError as exc:
            timings["total_ms"] = _ms(started)
            self._errors.inc({"channel": fields.channel, "stage": getattr(exc, "upstream", "secretary")})
            await self.store.fail_turn(turn["id"], exc.status, exc.message, timings)
            log.warning("request failed; the message is stored", error=exc.message, labels={"turn_id": str(turn["id"])})
            raise
        timings["total_ms"] = _ms(started)
        await self.store.finish_turn(turn["id"], conversation["id"], status, clarified, timings=timings, **record)
        self._outcomes.inc({"channel": fields.channel, "action": answer.action})
        return answer.model_copy(update={
            "conversation_id": conversation["id"], "turn_id": turn["id"], "request": discussion[0].text,
            "reply_action": reply_action(fields.channel, answer.action), "person": person,
            "discussion": [*discussion, DiscussionTurn(role="assistant", text=answer.response)],
        })

    async def rate(self, body: FeedbackRequest) -> FeedbackResult:
        """Store a user's rating of one of their own answers; 404 for any other turn."""
        person = await self.store.find_person(body.channel, body.username, body.handle)
        rated = await self.store.rate_turn(person.username, body.channel, body.rating, body.turn_id, body.reply_id)
        if rated is None:
            raise ApiError(404, "No such answer of yours to rate")
        turn_id, before = rated
        if before != body.rating:
            self._feedback.inc({"channel": body.channel, "rating": body.rating})
        return FeedbackResult(turn_id=turn_id, rating=body.rating, changed=before != body.rating)

    async def _decide(
        self, fields: AnalyzeRequest, person: PersonInfo, conversation, discussion: list[DiscussionTurn], timings: dict[str, float]
    ) -> tuple[AnalysisResponse, dict, str, bool]:
        # A first message is just the request; a longer discussion travels as turns, and `request`
        # carries it as text for peers that implement only the seed.
        request_text = discussion_text(discussion) if len(discussion) > 1 else fields.request
        discussion = discussion if len(discussion) > 1 else []
        step = time.perf_counter()
        guess = await self.guesser.call("/get-context", ContextRequest(
            username=person.username, department=person.department, position=person.position,
            request=request_text, discussion=discussion,
        ), ContextResponse)
        timings["guesser_ms"] = _ms(step)
        record: dict[str, Any] = {"guesser_is_enough": guess.is_enough, "guesser_response": guess.response}

        if not guess.is_enough:
            return self._not_enough(guess.response, [], fields, person, conversation, record)

        step = time.perf_counter()
        plan = await self.analyst.call("/prepare-analititcs", AnalyticsRequest(
            context=guess.response, request=request_text, channel=fields.channel, username=person.username,
            department=person.department, position=person.position, discussion=discussion,
        ), PreparedAnalytics)
        timings["analyst_ms"] = _ms(step)
        sources = [s for s in plan.sources if s.url]
        record.update(analyst_response=plan.response, analyst_action=plan.action, sources=[s.model_dump() for s in sources])
        if not plan.is_enough:
            return self._not_enough(plan.response, sources, fields, person, conversation, record)
        action, refused = final_action(plan.action, fields, person)
        response = f"{plan.response}\n\n{NOT_ON_BEHALF}" if refused else plan.response
        return self._answer(True, action, "", response, sources, record), record, "answered", False

    def _not_enough(
        self, question: str, sources: list[Source], fields: AnalyzeRequest, person: PersonInfo, conversation, record: dict
    ) -> tuple[AnalysisResponse, dict, str, bool]:
        if conversation["clarifications"] < self.settings.max_clarifications:
            return self._answer(False, ACTION_CLARIFY, question, question, sources, record), record, "clarifying", True
        # Enough rounds of questions: bring in a human instead of asking again.
        action, refused = final_action(ACTION_TELEGRAM_EMPLOYEE, fields, person)
        text = UNVERIFIED_ESCALATION_TEXT if refused else ESCALATION_TEXT
        return self._answer(False, action, "", text, sources, record), record, "escalated", False

    @staticmethod
    def _answer(is_enough: bool, action: str, question: str, response: str, sources: list[Source], record: dict) -> AnalysisResponse:
        record.update(is_enough=is_enough, action=action, question=question, response=response)
        return AnalysisResponse(
            is_enough=is_enough, request="", action=action, question=question, response=response,
            context_response=response, sources=sources,
        )

    async def _stored_answer(self, turn, fields: AnalyzeRequest, person: PersonInfo) -> AnalysisResponse:
        earlier = await self.store.earlier_turns(turn["conversation_id"], turn["id"])
        discussion = discussion_of([*earlier, turn])
        return AnalysisResponse(
            is_enough=turn["is_enough"], request=discussion[0].text, action=turn["action"], question=turn["question"] or "",
            response=turn["response"], context_response=turn["response"], conversation_id=turn["conversation_id"],
            turn_id=turn["id"], sources=[Source.model_validate(s) for s in _json_list(turn["sources"])],
            reply_action=reply_action(fields.channel, turn["action"]), person=person, discussion=discussion,
            done_actions=await self.store.done_actions(turn["id"]), repeated=True, silent=not turn["response"],
        )


def _json_list(value: Any) -> list:
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, list) else []


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)
