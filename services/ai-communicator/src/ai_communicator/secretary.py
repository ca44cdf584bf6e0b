"""What the communicator asks the secretary: analyse a message, who a person is, what was done."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from multyworkemon_common.contract import AnalysisResponse
from multyworkemon_common.errors import UpstreamError
from multyworkemon_common.http import ServiceClient
from multyworkemon_common.logging import get_logger

log = get_logger("ai_communicator.secretary")


class Secretary:
    def __init__(self, client: ServiceClient):
        self.client = client

    async def analyze(self, channel: str, username: str, request: str, message_id: str | None) -> AnalysisResponse:
        payload: dict[str, Any] = {"channel": channel, "username": username, "request": request}
        if message_id:
            payload["message_id"] = message_id
        body = await self.client.post_json("/analyze-request", payload)
        try:
            return AnalysisResponse.model_validate(body)
        except ValueError:
            raise UpstreamError(502, self.client.name, "ai-secretary answered without the AnalysisResponse fields") from None

    async def person(self, username: str) -> dict[str, Any] | None:
        """The directory's entry (department, e-mail, ...), None for someone it does not know."""
        try:
            return await self.client.get_json(f"/users/{quote(username, safe='')}")
        except UpstreamError as exc:
            if exc.answered == 404:
                return None
            raise

    async def conversation(self, conversation_id: int) -> dict[str, Any]:
        return await self.client.get_json(f"/conversations/{conversation_id}")

    async def report(self, turn_id: int | None, action: str, status: str, external_id: str | None = None, detail: str | None = None) -> None:
        """Store what was done with a turn; a failure here is logged, never undoes what was done."""
        if turn_id is None:
            return
        payload = {"action": action, "status": status, "external_id": external_id, "detail": (detail or "")[:10_000] or None}
        try:
            await self.client.post_json(f"/turns/{turn_id}/action-result", payload)
        except UpstreamError as exc:
            log.warning("could not record an action result", error=exc.message, labels={"turn_id": str(turn_id), "action": action})

    async def close(self) -> None:
        await self.client.close()

    async def close_thread(self, channel: str, username: str, thread: str) -> int:
        """Close the conversations of a channel's thread ("Новый разговор", Telegram /new); how many.

        0 from a secretary without the endpoint (the seed's): its conversations are not threaded,
        so a new thread id alone is all there is to do.
        """
        try:
            body = await self.client.post_json("/conversations/close", {"channel": channel, "username": username, "thread": thread})
        except UpstreamError as exc:
            if exc.answered in (404, 405):
                return 0
            raise
        return int(body.get("closed") or 0)
