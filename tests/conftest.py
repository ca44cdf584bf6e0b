"""Fixtures shared by the whole suite: a real PostgreSQL, a fresh database per test, the core stack."""

from __future__ import annotations

import os

import pytest

from support.client import SUITE_TOKEN

# Services refuse to start without a service token: every service this suite starts, in this
# process or as a child process, shares this one unless a test names another.
os.environ["SERVICE_TOKEN"] = SUITE_TOKEN
os.environ.pop("ALLOW_INSECURE", None)

from support.openai_wire import OpenAIWireServer
from support.postgres import PostgresServer
from support.stack import start_stack


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
async def database_url(postgres):
    url = await postgres.create_database()
    yield url
    await postgres.drop_database(url)


@pytest.fixture
async def openai_server():
    server = await OpenAIWireServer().start()
    yield server
    await server.close()


@pytest.fixture
async def stack(database_url):
    """The three core services on the offline model."""
    running = await start_stack(database_url)
    yield running
    await running.stop()
