"""A local HTTP server that speaks the OpenAI wire format (chat completions, embeddings), for our client
(multyworkemon_common.llm.openai_wire) and, in tests/core/test_openai_wire_peer.py, the real `openai` one.

Each chat request takes the next scripted behaviour from the queue (an answer text, an HTTP error,
a delay, a hostile body); with the queue empty it answers with `default(request_body) -> text`.
Embeddings are deterministic vectors of the words of each text (`word_vector`), or the next
scripted behaviour.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from support.loopback import LoopbackServer


@dataclass
class Reply:
    text: str | None = None  # the assistant message content
    status: int = 200  # non-200: an OpenAI-style error body with this status
    delay: float = 0.0  # seconds before answering (a hang when longer than the client's timeout)
    raw: str | None = None  # a body that is not even JSON
    respond: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None  # any answer at all (an endless body)


EMBEDDING_DIMENSIONS = 256
# Words the test embeddings model holds for the same meaning, the way a real one would.
SYNONYMS = {"top": "попол", "topup": "попол", "depos": "попол", "зачис": "попол"}
_WORDS = re.compile(r"[a-zа-яё0-9]+")


def word_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A unit vector of the text's words (their first five letters, synonyms joined), hashed into the dimensions.

    Texts sharing words point the same way, the first words (a page's title and tags) most: a real
    model's vectors say what a text is about, which is all the tests need of them.
    """
    vector = [0.0] * dimensions
    words = [word for word in _WORDS.findall(text.lower().replace("ё", "е")) if len(word) >= 3]
    for position, word in enumerate(words):
        key = SYNONYMS.get(word[:5], word[:5])
        vector[int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % dimensions] += 1 / (1 + position / 10)
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


@dataclass
class OpenAIWireServer(LoopbackServer):
    default: Callable[[dict[str, Any]], str] = lambda body: json.dumps({"is_enough": True, "response": "ok", "action": "ответить сообщением"})
    script: deque = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0  # applied to every default answer (the benchmark's slow LLM)
    embed: Callable[[str, int], list[float]] = word_vector
    embedding_script: deque = field(default_factory=deque)  # Reply(status=...) for the next embeddings calls
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)

    @staticmethod
    async def _scripted(request: web.Request, reply: Reply) -> web.StreamResponse | None:
        """The reply's answer when it is not the endpoint's usual one (an error, a hostile body); None otherwise."""
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.respond is not None:
            return await reply.respond(request)
        if reply.raw is not None:
            return web.Response(text=reply.raw, status=reply.status, content_type="application/json")
        if reply.status != 200:
            error = {"error": {"message": f"scripted error {reply.status}", "type": "server_error", "code": None}}
            return web.json_response(error, status=reply.status)
        return None

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"body": body, "headers": dict(request.headers)})
        reply = self.script.popleft() if self.script else Reply(text=self.default(body), delay=self.delay)
        if (scripted := await self._scripted(request, reply)) is not None:
            return scripted
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply.text}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        })

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.embedding_requests.append({"body": body, "headers": dict(request.headers)})
        reply = self.embedding_script.popleft() if self.embedding_script else Reply()
        if (scripted := await self._scripted(request, reply)) is not None:
            return scripted
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        vectors = [self.embed(text, body.get("dimensions") or EMBEDDING_DIMENSIONS) for text in texts]
        if body.get("encoding_format") == "base64":  # the client's default when it is not told
            vectors = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
        return web.json_response({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "model": body.get("model", "test-embeddings"),
            "usage": {"prompt_tokens": sum(len(t.split()) for t in texts), "total_tokens": sum(len(t.split()) for t in texts)},
        })
