"""The secretary's business logic: one message in, one answer (and the action to take) out."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from multyworkemon_common.context import request_id_var
from multyworkemon_common.contract import (
    ACTION_CLARIFY,
    ACTION_DEPARTMENT_MAILING,
    ACTION_JIRA,
    ACTION_REPLY_EMAIL,
    ACTION_REPLY_MESSAGE,
    ACTION_TELEGRAM_EMPLOYEE,
    AnalysisResponse,
    Channel,
    Source,
)
from multyworkemon_common.errors import ApiError
from multyworkemon_common.http import ServiceClient
from multyworkemon_common.logging import get_logger
from multyworkemon_common.metrics import ServiceMetrics

from .store import Person, Store

log = get_logger("ai_secretary.pipeline")

ESCALATION_TEXT = (
    "Не получилось уточнить запрос автоматически, поэтому я передаю его сотруднику вашего департамента: "
    "он свяжется с вами. Вся переписка сохранена."
)


class AnalyzeRequest(BaseModel):
    channel: Channel
    username: str = Field(min_length=1, max_length=256)
    request: str = Field(min_length=1, max_length=100_000)
    department: str | None = Field(None, max_length=512, description="Overrides the users directory")
    position: str | None = Field(None, max_length=512, description="Overrides the users directory")
    message_id: str | None = Field(None, max_length=512, description="The channel's id of the message, for idempotency")


@dataclass
class PipelineSettings:
    conversation_ttl_seconds: int
    max_clarifications: int
    stale_processing_seconds: int


def reply_action(channel: str) -> str:
    return ACTION_REPLY_EMAIL if channel == "email" else ACTION_REPLY_MESSAGE


def normalise_action(proposed: Any, channel: str) -> str:
    """The action of a final answer: the analyst's when it acts for the user, else a reply on the message's own channel.

    Whatever the model said about replying, a reply goes back where the message came from.
    """
    if proposed in (ACTION_JIRA, ACTION_TELEGRAM_EMPLOYEE, ACTION_DEPARTMENT_MAILING):
        return proposed
    return reply_action(channel)


def discussion_text(earlier: list[Any], current: str) -> str:
    """The whole thread as the guesser and analyst see it: request, each question and each answer."""
    if not earlier:
        return current
    lines = [f"Исходное обращение: {earlier[0]['request']}"]
    for turn in earlier:
        if turn is not earlier[0]:
            lines.append(f"Ответ пользователя: {turn['request']}")
        if turn["question"]:
            lines.append(f"Уточняющий вопрос: {turn['question']}")
    lines.append(f"Ответ пользователя: {current}")
    return "\n".join(lines)


class Pipeline:
    def __init__(self, store: Store, guesser: ServiceClient, analyst: ServiceClient, metrics: ServiceMetrics, settings: PipelineSettings):
        self.store = store
        self.guesser = guesser
        self.analyst = analyst
        self.settings = settings
        self._outcomes = metrics.counter("mw_pipeline_outcomes_total", "Answers given, by channel and action")
        self._errors = metrics.counter("mw_pipeline_errors_total", "Requests that failed, by channel and stage")
        self._duplicates = metrics.counter("mw_pipeline_duplicates_total", "Repeated messages answered from storage")

    async def analyze(self, fields: AnalyzeRequest) -> AnalysisResponse:
        reuse_turn_id = None
        if fields.message_id:
            existing = await self.store.turn_by_message(fields.channel, fields.message_id)
            if existing is not None:
                if existing["status"] == "answered":
                    self._duplicates.inc({"channel": fields.channel})
                    return await self._stored_answer(existing)
                age = time.time() - existing["created_at"].timestamp()
                if existing["status"] == "processing" and age < self.settings.stale_processing_seconds:
                    raise ApiError(409, "This message is already being processed; ask again shortly for its answer")
                reuse_turn_id = existing["id"]  # failed before (or abandoned): try it again

        person = await self.store.find_person(fields.username)
        person = Person(
            person.username, fields.department or person.department, fields.position or person.position, person.known
        )
        conversation, turn, earlier = await self.store.open_turn(
            channel=fields.channel, person=person, message_id=fields.message_id or None, request_id=request_id_var.get(),
            request=fields.request, ttl_seconds=self.settings.conversation_ttl_seconds, reuse_turn_id=reuse_turn_id,
        )
        timings: dict[str, float] = {}
        started = time.perf_counter()
        try:
            answer, record, status, clarified = await self._decide(fields, person, conversation, earlier, timings)
        except ApiError as exc:
            timings["total_ms"] = _ms(started)
            self._errors.inc({"channel": fields.channel, "stage": getattr(exc, "upstream", "secretary")})
            await self.store.fail_turn(turn["id"], exc.status, exc.message, timings)
            log.warning("request failed; the message is stored", error=exc.message, labels={"turn_id": str(turn["id"])})
            raise
        timings["total_ms"] = _ms(started)
        await self.store.finish_turn(turn["id"], conversation["id"], status, clarified, timings=timings, **record)
        self._outcomes.inc({"channel": fields.channel, "action": answer.action})
        answer.conversation_id = conversation["id"]
        answer.turn_id = turn["id"]
        answer.request = earlier[0]["request"] if earlier else fields.request
        return answer

    async def _decide(self, fields: AnalyzeRequest, person: Person, conversation, earlier, timings: dict[str, float]) -> tuple[AnalysisResponse, dict, str, bool]:
        discussion = discussion_text(earlier, fields.request)
        step = time.perf_counter()
        guess = await self.guesser.post_json(
            "/get-context",
            {"username": person.username, "department": person.department, "position": person.position, "request": discussion},
        )
        timings["guesser_ms"] = _ms(step)
        guess_enough, guess_text = _decision(guess, self.guesser.name)
        record: dict[str, Any] = {"guesser_is_enough": guess_enough, "guesser_response": guess_text}

        if not guess_enough:
            if conversation["clarifications"] >= self.settings.max_clarifications:
                # Enough rounds of questions: bring in a human instead of asking again.
                return self._answer(False, ACTION_TELEGRAM_EMPLOYEE, "", ESCALATION_TEXT, [], record), record, "escalated", False
            return self._answer(False, ACTION_CLARIFY, guess_text, guess_text, [], record), record, "clarifying", True

        step = time.perf_counter()
        plan = await self.analyst.post_json(
            "/prepare-analititcs",
            {"context": guess_text, "request": discussion, "channel": fields.channel, "username": person.username,
             "department": person.department, "position": person.position},
        )
        timings["analyst_ms"] = _ms(step)
        plan_enough, plan_text = _decision(plan, self.analyst.name)
        sources = [Source.model_validate(s) for s in plan.get("sources") or [] if isinstance(s, dict) and s.get("url")]
        record.update(analyst_response=plan_text, analyst_action=str(plan.get("action")), sources=[s.model_dump() for s in sources])
        if not plan_enough:
            if conversation["clarifications"] >= self.settings.max_clarifications:
                return self._answer(False, ACTION_TELEGRAM_EMPLOYEE, "", ESCALATION_TEXT, sources, record), record, "escalated", False
            return self._answer(False, ACTION_CLARIFY, plan_text, plan_text, sources, record), record, "clarifying", True
        action = normalise_action(plan.get("action"), fields.channel)
        return self._answer(True, action, "", plan_text, sources, record), record, "answered", False

    @staticmethod
    def _answer(is_enough: bool, action: str, question: str, response: str, sources: list[Source], record: dict) -> AnalysisResponse:
        record.update(is_enough=is_enough, action=action, question=question, response=response)
        return AnalysisResponse(
            is_enough=is_enough, request="", action=action, question=question, response=response,
            context_response=response, sources=sources,
        )

    async def _stored_answer(self, turn) -> AnalysisResponse:
        first = await self.store.first_request(turn["conversation_id"])
        sources = [Source.model_validate(s) for s in _json_list(turn["sources"])]
        return AnalysisResponse(
            is_enough=turn["is_enough"], request=first or turn["request"], action=turn["action"], question=turn["question"] or "",
            response=turn["response"], context_response=turn["response"], conversation_id=turn["conversation_id"],
            turn_id=turn["id"], sources=sources,
        )


def _decision(body: dict[str, Any], upstream: str) -> tuple[bool, str]:
    is_enough, text = body.get("is_enough"), body.get("response")
    if not isinstance(is_enough, bool) or not isinstance(text, str) or not text.strip():
        raise ApiError(502, f"{upstream} answered without is_enough and response")
    return is_enough, text.strip()


def _json_list(value: Any) -> list:
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, list) else []


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)
