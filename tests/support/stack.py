"""The core services started in this process on real loopback ports, as the tests' system under test."""

from __future__ import annotations

import asyncio
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from ai_guesser.app import GuesserSettings, create_app as create_guesser
from ai_secretary.app import SecretarySettings, create_app as create_secretary
from ai_systemanalitic.app import AnalystSettings, create_app as create_analyst


# The sample directory: smirnovanton, petrovaelena and ivanovsergey (Telegram id 100003) are employees.
USERS_FILE = Path(__file__).resolve().parents[2] / "services/ai-secretary/users.example.yaml"
# The sample knowledge base `make run` loads: answers cite its documents.
KNOWLEDGE = Path(__file__).resolve().parents[2] / "services/ai-systemanalitic/knowledge"


@dataclass
class Service:
    name: str
    factory: Callable[[], web.Application]
    server: TestServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = TestServer(self.factory(), host="127.0.0.1", port=self.port or None)
        await self.server.start_server()
        self.port = self.server.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None


@dataclass
class Stack:
    database_url: str
    services: dict[str, Service] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.services[name].url

    @property
    def secretary(self) -> str:
        return self.url("secretary")

    async def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            await service.stop()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_stack(
    database_url: str,
    *,
    llm: dict[str, Any] | None = None,
    secretary: dict[str, Any] | None = None,
    analyst_settings: dict[str, Any] | None = None,
    common: dict[str, Any] | None = None,
) -> Stack:
    """Guesser, analyst and secretary; `llm` settings go to both LLM services (offline by default)."""
    llm = {"llm_provider": "offline", **(llm or {})}
    common = common or {}
    stack = Stack(database_url)
    guesser = Service("guesser", lambda: create_guesser(GuesserSettings(**common, **llm)), port=free_port())
    analyst = Service("analyst", lambda: create_analyst(AnalystSettings(**common, **llm, **_analyst_db(database_url), **(analyst_settings or {}))), port=free_port())
    secretary_settings = {
        "database_url": database_url,
        "users_file": str(USERS_FILE),
        "guesser_url": guesser.url,
        "analyst_url": analyst.url,
        **common,
        **(secretary or {}),
    }
    main = Service("secretary", lambda: create_secretary(SecretarySettings(**secretary_settings)), port=free_port())
    for service in (guesser, analyst, main):
        stack.services[service.name] = service
        await service.start()
    await asyncio.gather(*(wait_ready(service.url) for service in (guesser, analyst, main)))
    return stack


def _analyst_db(database_url: str) -> dict[str, Any]:
    # The analyst keeps its knowledge base in PostgreSQL when its settings have a database.
    return {"database_url": database_url} if "database_url" in AnalystSettings.model_fields else {}


async def wait_ready(base_url: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{base_url}/health/ready") as response:
                    if response.status == 200:
                        return
                    body = await response.text()
            except aiohttp.ClientError as exc:
                body = str(exc)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{base_url} not ready: {body}")
            await asyncio.sleep(0.1)
