"""The common part of the local servers that stand in for a peer (Telegram, Jira, an LLM, a proxy):
an aiohttp app on 127.0.0.1, a free port, started and closed by the test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class LoopbackServer:
    _server: TestServer | None = field(default=None, kw_only=True, repr=False)

    def routes(self, app: web.Application) -> None:
        """Add the peer's endpoints to the app."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    async def start(self) -> Self:
        app = web.Application()
        self.routes(app)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
