"""One message from any channel: ask the secretary, carry out the action, reply, record what was done.

Every step may be repeated safely: the secretary answers the same message id with the stored
answer and the actions already recorded for it, and what was done is not done twice.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from multyworkemon_common.context import trace
from multyworkemon_common.contract import ACTION_CLARIFY, SIDE_ACTIONS, AnalysisResponse
from multyworkemon_common.errors import UpstreamError
from multyworkemon_common.logging import get_logger
from multyworkemon_common.metrics import ServiceMetrics

from .actions import Actions
from .messages import ActionOutcome, Failure, Inbound, upstream_failure
from .secretary import Secretary

log = get_logger("ai_communicator.handling")
# From arrival to reply can include a secretary outage: buckets up to an hour.
REPLY_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
APOLOGY = (
    "Извините, не получилось обработать ваше сообщение: попытки закончились ошибкой. "
    "Попробуйте, пожалуйста, написать его иначе или повторить позже."
)


@dataclass
class Handled:
    answer: AnalysisResponse
    text: str  # what the user was sent
    outcome: ActionOutcome | None = None
    repeated: bool = False  # answered before; nothing was sent again


class ChannelMetrics:
    """The series agreed in docs/metrics.md."""

    def __init__(self, metrics: ServiceMetrics):
        self.received = metrics.counter("mw_channel_messages_received_total", "Messages read from the mailbox, the bot or the web chat")
        self.processed = metrics.counter("mw_channel_messages_processed_total", "Messages answered (the reply was sent)")
        self.failed = metrics.counter("mw_channel_messages_failed_total", "Failed attempts to handle a message")
        self.retried = metrics.counter("mw_channel_messages_retried_total", "Attempts that were retries of an earlier failure")
        self.poison = metrics.counter("mw_channel_poison_messages_total", "Messages set aside after failing every try")
        self.connected = metrics.gauge("mw_channel_connected", "1 while the channel is connected, else 0")
        self.reply_duration = metrics.histogram(
            "mw_channel_reply_duration_seconds", "From a message's arrival to its reply being sent", buckets=REPLY_BUCKETS
        )
        self.actions = metrics.counter("mw_actions_total", "Actions carried out, by action and outcome")

    def answered(self, channel: str, arrived: float) -> None:
        self.processed.inc({"channel": channel})
        self.reply_duration.observe({"channel": channel}, max(0.0, time.time() - arrived))


@dataclass
class RetryBook:
    """Attempts and the next try of each failing message, in memory (the mailbox and Telegram keep the messages)."""

    max_attempts: int
    base_seconds: float
    max_seconds: float
    _entries: dict[Any, tuple[int, int, float]] = field(default_factory=dict)  # key -> (counted, tries, due)

    def seen(self, key: Any) -> bool:
        return key in self._entries

    def due(self, key: Any) -> bool:
        entry = self._entries.get(key)
        return entry is None or entry[2] <= time.monotonic()

    def failed(self, key: Any, failure: Failure) -> bool:
        """Note a failure; True when the message has used up its attempts."""
        counted, tries, _ = self._entries.get(key, (0, 0, 0.0))
        counted += 0 if failure.outage else 1
        tries += 1
        self._entries[key] = (counted, tries, time.monotonic() + self.delay(tries))
        return counted >= self.max_attempts

    def delay(self, tries: int) -> float:
        # Exponential with jitter, so replicas and messages do not retry in lockstep.
        return min(self.max_seconds, self.base_seconds * 2 ** (tries - 1)) * random.uniform(0.8, 1.0)

    def forget(self, key: Any) -> None:
        self._entries.pop(key, None)

    def seconds_to_next(self) -> float | None:
        if not self._entries:
            return None
        return max(0.0, min(entry[2] for entry in self._entries.values()) - time.monotonic())

    def keep_only(self, keys: set) -> None:
        """Drop entries of messages that went away (read or deleted elsewhere)."""
        for key in list(self._entries):
            if key not in keys:
                del self._entries[key]


def compose(answer: AnalysisResponse, note: str = "", *, sources: bool = True) -> str:
    """The text a user gets: the answer, what was done, and (unless the channel shows them
    itself) the sources as links."""
    parts = [answer.response.strip()]
    if note:
        parts.append(note)
    if sources and answer.sources and answer.action not in (ACTION_CLARIFY,):
        parts.append("Источники:\n" + "\n".join(f"[{n}] {s.title}: {s.url}" for n, s in enumerate(answer.sources, start=1)))
    return "\n\n".join(parts)


def rated_turn(answer: AnalysisResponse) -> int | None:
    """The turn a user may rate under this answer: a final answer, not a clarifying question."""
    return answer.turn_id if answer.action != ACTION_CLARIFY else None


class MessageHandler:
    def __init__(self, secretary: Secretary, actions: Actions, metrics: ChannelMetrics):
        self.secretary = secretary
        self.actions = actions
        self.metrics = metrics

    async def attempt(self, message: Inbound) -> Handled:
        """handle() for the pollers: a bug is a counted failure too, so its message ends up set
        aside instead of crashing the poller over and over."""
        try:
            return await self.handle(message)
        except Failure:
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("unexpected error while handling a message", labels={"channel": message.channel})
            raise Failure(f"unexpected {type(exc).__name__}", outage=False) from exc

    async def handle(self, message: Inbound) -> Handled:
        """Raises Failure when the message must be tried again.

        One request id per message: every log line and every call for it carries the same one.
        """
        with trace():
            return await self._handle(message)

    async def _handle(self, message: Inbound) -> Handled:
        try:
            answer = await self.secretary.analyze(message)
        except UpstreamError as exc:
            raise upstream_failure(exc) from exc
        if answer.silent:
            # An operator holds the conversation: the message is stored for them, the bot says nothing.
            log.info("conversation held by an operator; not answering", labels={"channel": message.channel, "turn_id": str(answer.turn_id)})
            return Handled(answer, "", repeated=True)
        done = {record.action: record for record in answer.done_actions}
        reply_action = answer.reply_action or answer.action
        if reply_action in done and message.channel != "direct":
            # A message seen again (a restart, another replica, a lost \Seen flag): already answered.
            log.info("message answered before; not sending again", labels={"channel": message.channel, "turn_id": str(answer.turn_id)})
            return Handled(answer, "", repeated=True)

        outcome = None
        if answer.action in SIDE_ACTIONS:
            earlier = done.get(answer.action)
            if earlier is not None:
                outcome = ActionOutcome(answer.action, "done", earlier.external_id, earlier.detail or "")
            else:
                outcome = await self._side_action(answer, message)
        text = compose(answer, outcome.note if outcome else "", sources=not message.links_apart)
        try:
            sent_id = await message.reply(text, rated_turn(answer))
        except Failure as exc:
            self.metrics.actions.inc({"action": reply_action, "outcome": "failed"})
            await self.secretary.report(answer.turn_id, reply_action, "failed", detail=str(exc))
            raise
        self.metrics.actions.inc({"action": reply_action, "outcome": "done"})
        await self.secretary.report(answer.turn_id, reply_action, "done", sent_id, f"replied on {message.channel}")
        return Handled(answer, text, outcome)

    async def _side_action(self, answer: AnalysisResponse, message: Inbound) -> ActionOutcome:
        try:
            outcome = await self.actions.carry_out(answer, message)
        except Failure as exc:
            self.metrics.actions.inc({"action": answer.action, "outcome": "failed"})
            await self.secretary.report(answer.turn_id, answer.action, "failed", detail=str(exc))
            raise
        self.metrics.actions.inc({"action": answer.action, "outcome": outcome.status})
        await self.secretary.report(answer.turn_id, answer.action, outcome.status, outcome.external_id, outcome.note)
        return outcome
