"""Fixtures of the knowledge-base tests: the sample documents in a real PostgreSQL, the analyst on a port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ai_systemanalitic.app import AnalystSettings, create_app, knowledge_base, load_knowledge, migrate
from ai_systemanalitic.knowledge import KnowledgeBase
from multyworkemon_common.database import Database
from support.stack import Service, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "services/ai-systemanalitic/knowledge"


async def open_knowledge(database_url: str) -> tuple[KnowledgeBase, Database]:
    settings = AnalystSettings(database_url=database_url)
    await migrate(settings)
    database = Database(settings)
    return knowledge_base(settings, database), database


@pytest.fixture
async def knowledge(database_url) -> AsyncIterator[KnowledgeBase]:
    """An empty, migrated knowledge base with the service's default search settings."""
    base, database = await open_knowledge(database_url)
    yield base
    await database.close()


@pytest.fixture
async def samples(knowledge) -> KnowledgeBase:
    """The knowledge base holding the sample set that `make run` loads."""
    await load_knowledge(knowledge, SAMPLES)
    return knowledge


@pytest.fixture
async def start_analyst() -> AsyncIterator[Callable]:
    """Start analysts with given settings on real ports (ready before they are handed over, unless ready=False)."""
    started: list[Service] = []

    async def start(ready: bool = True, **settings) -> Service:
        service = Service("analyst", lambda: create_app(AnalystSettings(**settings)), port=free_port())
        await service.start()
        started.append(service)
        if ready:
            await wait_ready(service.url)
        return service

    yield start
    for service in started:
        await service.stop()
