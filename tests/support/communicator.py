"""The communicator started in this process on a real loopback port, and reading its metrics."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from ai_communicator.app import CommunicatorSettings, create_app
from ai_communicator.channels.web import HANDLER
from ai_communicator.handling import Inbound
from support.stack import Service, free_port, wait_ready

# Who is told about whose requests (the departments of services/ai-secretary/users.example.yaml).
EMPLOYEE_CHAT = 555001
DEPARTMENTS = f"""
departments:
  Департамент клиентского сервиса:
    telegram_chat_id: {EMPLOYEE_CHAT}
    contact: Ирина Соколова
    mailing_list: client-service@mw.test
default:
  contact: дежурный аналитик
  mailing_list: helpdesk-all@mw.test
"""

# Quick retries so the fault tests finish in seconds; the production defaults are in settings.py.
FAST = {
    "max_attempts": 3,
    "retry_base_seconds": 0.2,
    "retry_max_seconds": 0.8,
    "lock_retry_seconds": 0.3,
    "telegram_poll_timeout": 2,
    "imap_poll_seconds": 0.5,
}


async def start_communicator(secretary_url: str, *, ready: bool = True, **settings: Any) -> Service:
    values = {"secretary_url": secretary_url, **FAST, **settings}
    service = Service("communicator", lambda: create_app(CommunicatorSettings(**values)), port=free_port())
    await service.start()
    if ready:
        await wait_ready(service.url)
    return service


async def metric(base_url: str, name: str, **labels: str) -> float:
    """The value of one series from /metrics (0 when it is not there yet)."""
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def record_inbound(communicator: Service) -> list[Inbound]:
    """Every message as a channel hands it over (who sent it, verified or not, the thread), from now on."""
    handler = communicator.server.app[HANDLER]
    seen: list[Inbound] = []
    attempt = handler.attempt

    async def recording(message: Inbound):
        seen.append(message)
        return await attempt(message)

    handler.attempt = recording
    return seen
