"""The LLM endpoint fails under load (500, 429, garbage, not JSON, hangs): through the whole pipeline the
callers get clear errors in bounded time, nothing is lost, no connection is left hanging, all stay ready."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg
import psutil
import pytest

from support.client import AS_A_SERVICE, get, is_error_response
from support.openai_wire import Reply
from support.stack import start_stack

USERS = 20
LLM = {"llm_provider": "openai", "llm_api_key": "sk-placeholder", "llm_timeout": 0.5, "llm_max_retries": 1, "llm_total_timeout": 3}
FAULTS = {
    # name: (the scripted reply, the status the secretary answers)
    "500": (Reply(status=500), 503),
    "429": (Reply(status=429), 503),
    "garbage": (Reply(text="Конечно! Вот ответ: да."), 502),
    "not json": (Reply(raw="<html>502 Bad Gateway</html>"), 502),
    "hang": (Reply(text="{}", delay=10), 504),
}


def connections_to(port: int) -> int:
    """Client sockets of this process (where the services run) still open to `port`."""
    return sum(1 for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED")


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_llm_faults_under_load(database_url, openai_server, fault):
    reply, expected = FAULTS[fault]
    stack = await start_stack(database_url, llm={**LLM, "llm_base_url": openai_server.base_url})
    try:
        openai_server.push(*[reply] * (USERS * 4))  # every attempt and repair of every request fails
        started = time.monotonic()
        async with aiohttp.ClientSession(headers=AS_A_SERVICE) as session:
            async def user(number: int) -> tuple[int, dict]:
                fields = {"channel": "tg", "username": f"user{number}", "request": "Срез авторизаций кошельков за март", "message_id": f"m{number}"}
                async with session.post(f"{stack.secretary}/analyze-request", json=fields) as response:
                    return response.status, await response.json(content_type=None)

            answers = await asyncio.gather(*(user(n) for n in range(USERS)))
        elapsed = time.monotonic() - started
        assert [status for status, _ in answers] == [expected] * USERS, answers[:3]
        assert all(is_error_response(body, expected) for _, body in answers)
        assert elapsed < 6, f"bounded: two attempts of at most 0.5 s and one back-off, took {elapsed:.1f} s"
        attempts = len(openai_server.requests)
        assert attempts <= USERS * 2, f"bounded retries: {attempts} LLM calls for {USERS} requests"

        # Nothing the users sent is lost: every message is stored with its error.
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch("SELECT status, error_status FROM turns")
        finally:
            await connection.close()
        assert len(rows) == USERS and {(r["status"], r["error_status"]) for r in rows} == {("failed", expected)}

        await asyncio.sleep(0.2)
        stub_port = int(openai_server.base_url.split(":")[2].split("/")[0])
        assert connections_to(stub_port) <= USERS, "timed-out calls close their connections instead of piling up"

        # The services stay ready and answer again as soon as the LLM does.
        openai_server.script.clear()
        for name in ("secretary", "guesser", "analyst"):
            status, _, _ = await get(f"{stack.url(name)}/health/ready")
            assert status == 200, f"{name} is still ready"
        status, body, _ = await get(f"{stack.secretary}/analyze-request", {"channel": "tg", "username": "after", "request": "Срез авторизаций кошельков"})
        assert status == 200 and body["is_enough"] is True
    finally:
        await stack.stop()
