"""Fixtures of the communicator's tests: the core stack with the users directory, and the real peers."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.jira_api import JiraAPI
from support.communicator import DEPARTMENTS
from support.mail import MailPeers
from support.stack import start_stack, wait_ready
from support.telegram_api import TelegramAPI

ROOT = Path(__file__).resolve().parents[2]
USERS = ROOT / "services/ai-secretary/users.example.yaml"


@pytest.fixture
async def core(database_url):
    """Guesser, analyst and secretary (offline model) with the example users directory."""
    running = await start_stack(database_url, secretary={"users_file": str(USERS)})
    for name in ("guesser", "analyst"):
        await wait_ready(running.url(name))  # the counted-failure tests must not see a start-up hiccup
    yield running
    await running.stop()


@pytest.fixture
def mail():
    peers = MailPeers()
    yield peers
    peers.stop()


@pytest.fixture
async def telegram():
    server = await TelegramAPI().start()
    yield server
    await server.close()


@pytest.fixture
async def jira():
    server = await JiraAPI().start()
    yield server
    await server.close()


@pytest.fixture
def departments_file(tmp_path):
    path = tmp_path / "departments.yaml"
    path.write_text(DEPARTMENTS, encoding="utf-8")
    return str(path)
