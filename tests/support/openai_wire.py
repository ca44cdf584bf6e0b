"""A local HTTP server that speaks the OpenAI chat-completions wire format, for the real `openai` client.

Each request takes the next scripted behaviour from the queue (an answer text, an HTTP error, a
delay); with the queue empty it answers with `default(request_body) -> text`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Reply:
    text: str | None = None  # the assistant message content
    status: int = 200  # non-200: an OpenAI-style error body with this status
    delay: float = 0.0  # seconds before answering (a hang when longer than the client's timeout)
    raw: str | None = None  # a body that is not even JSON


@dataclass
class OpenAIWireServer:
    default: Callable[[dict[str, Any]], str] = lambda body: json.dumps({"is_enough": True, "response": "ok", "action": "ответить сообщением"})
    script: deque = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0  # applied to every default answer (the benchmark's slow LLM)
    _server: TestServer | None = None

    @property
    def base_url(self) -> str:
        return str(self._server.make_url("/v1"))

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def start(self) -> "OpenAIWireServer":
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"body": body, "headers": dict(request.headers)})
        reply = self.script.popleft() if self.script else Reply(text=self.default(body), delay=self.delay)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.raw is not None:
            return web.Response(text=reply.raw, status=reply.status, content_type="application/json")
        if reply.status != 200:
            error = {"error": {"message": f"scripted error {reply.status}", "type": "server_error", "code": None}}
            return web.json_response(error, status=reply.status)
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply.text}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        })
