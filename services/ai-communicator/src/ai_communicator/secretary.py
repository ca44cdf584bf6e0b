"""What the communicator asks the secretary: analyse a message, record what was done, close a thread."""

from __future__ import annotations

from multyworkemon_common.contract import ActionRecord, AnalysisResponse, AnalyzeRequest, CloseThread, FeedbackRequest, FeedbackResult, ThreadReplies
from multyworkemon_common.errors import UpstreamError
from multyworkemon_common.http import ServiceClient
from multyworkemon_common.logging import get_logger

from .messages import Inbound

log = get_logger("ai_communicator.secretary")


class Secretary:
    def __init__(self, client: ServiceClient):
        self.client = client

    async def analyze(self, message: Inbound) -> AnalysisResponse:
        """The answer with everything needed to carry it out: the person, the discussion, what was done."""
        request = AnalyzeRequest(
            channel=message.channel, username=message.username, request=message.text, message_id=message.message_id,
            thread=message.thread, verified=message.verified, handle=message.handle,
        )
        return await self.client.call("/analyze-request", request, AnalysisResponse)

    async def report(self, turn_id: int | None, action: str, status: str, external_id: str | None = None, detail: str | None = None) -> None:
        """Store what was done with a turn; a failure here is logged, never undoes what was done."""
        if turn_id is None:
            return
        record = ActionRecord(action=action, status=status, external_id=external_id, detail=(detail or "")[:10_000] or None)
        try:
            await self.client.post_json(f"/turns/{turn_id}/action-result", record.model_dump())
        except UpstreamError as exc:
            log.warning("could not record an action result", error=exc.message, labels={"turn_id": str(turn_id), "action": action})

    async def rate(self, request: FeedbackRequest) -> FeedbackResult | None:
        """Store a user's rating of their own answer; None when the secretary knows no such answer of theirs."""
        try:
            body = await self.client.request_json("PUT", "/feedback", payload=request.model_dump(exclude_none=True))
        except UpstreamError as exc:
            if exc.answered == 404:
                return None
            raise
        return FeedbackResult.model_validate(body)

    async def operator_replies(self, channel: str, username: str, thread: str, after: int) -> ThreadReplies:
        """Operators' replies in the user's thread after a turn id (the web chat polls them)."""
        body = await self.client.request_json(
            "GET", "/threads/replies", params={"channel": channel, "username": username, "thread": thread, "after": str(after)}
        )
        return ThreadReplies.model_validate(body)

    async def close(self) -> None:
        await self.client.close()

    async def close_thread(self, channel: str, username: str, thread: str) -> int:
        """Close the conversations of a channel's thread ("Новый разговор", Telegram /new); how many.

        0 from a secretary without the endpoint (the seed's): its conversations are not threaded,
        so a new thread id alone is all there is to do.
        """
        try:
            request = CloseThread(channel=channel, username=username, thread=thread)
            body = await self.client.post_json("/conversations/close", request.model_dump())
        except UpstreamError as exc:
            if exc.answered in (404, 405):
                return 0
            raise
        return int(body.get("closed") or 0)
