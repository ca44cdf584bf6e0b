"""A reverse proxy on loopback in front of a real service: records every call and can stand in for
a failing peer (some calls answered with an error instead of forwarded) or for a signing-in proxy
such as oauth2-proxy (headers of its own added, the client's versions of them dropped).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
from aiohttp import web

from support.loopback import LoopbackServer

# Hop-by-hop, or describing a body aiohttp has already decoded.
_NOT_FORWARDED = {"host", "content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}


@dataclass
class Call:
    method: str
    path: str
    body: Any  # the JSON body, None without one
    headers: dict[str, str]


@dataclass
class Relay(LoopbackServer):
    target: str
    add_headers: dict[str, str] = field(default_factory=dict)
    # A status to answer instead of forwarding, or None to forward; changeable while running.
    fail: Callable[[Call], int | None] = lambda call: None
    calls: list[Call] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._forward)

    async def start(self) -> "Relay":
        self._session = aiohttp.ClientSession(auto_decompress=True)
        return await super().start()

    async def close(self) -> None:
        await super().close()
        if self._session is not None:
            await self._session.close()

    def to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]

    async def wait_calls(self, path: str, count: int = 1, timeout: float = 20.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        while len(self.to(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} was called {len(self.to(path))} times, expected {count}")
            await asyncio.sleep(0.05)
        return self.to(path)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED and k.lower() not in {h.lower() for h in self.add_headers}}
        headers.update(self.add_headers)
        try:
            body = json.loads(raw) if raw and request.content_type == "application/json" else None
        except ValueError:
            body = None
        call = Call(request.method, request.path, body, dict(request.headers))
        self.calls.append(call)
        status = self.fail(call)
        if status is not None:
            return web.json_response({"error": "Relay", "message": "failing on purpose", "statusCode": status}, status=status)
        async with self._session.request(request.method, self.target + request.path_qs, data=raw or None, headers=headers, allow_redirects=False) as answer:
            content = await answer.read()
            forwarded = [(k, v) for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED]
        response = web.Response(status=answer.status, body=content)
        for key, value in forwarded:
            response.headers.add(key, value)
        return response
