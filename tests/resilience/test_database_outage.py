"""PostgreSQL stops under load and comes back: 503s in the contract's shape, not ready, recovery by itself,
and every answer the secretary gave (200) is in the database."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg

from support.client import AS_A_SERVICE, is_error_response
from support.stack import start_stack

REQUEST = "Нужен срез авторизаций кошельков за март по дням"


async def test_postgres_outage_under_load(stoppable_postgres):
    url = await stoppable_postgres.create_database("outage")
    # Limits are tested on their own; here every worker sends as fast as it is answered.
    stack = await start_stack(url, secretary={"database_timeout": 1.0, "rate_limit_per_minute": 0})
    answers: list[tuple[float, int, dict, str]] = []
    readiness: list[tuple[float, int]] = []
    running = True

    async def user(number: int, session: aiohttp.ClientSession) -> None:
        sent = 0
        while running:
            sent += 1
            message_id = f"user{number}-{sent}"
            fields = {"channel": "tg", "username": f"user{number}", "request": REQUEST, "message_id": message_id}
            async with session.post(f"{stack.secretary}/analyze-request", json=fields) as response:
                answers.append((time.monotonic(), response.status, await response.json(content_type=None), message_id))
            await asyncio.sleep(0.02)

    async def probe(session: aiohttp.ClientSession) -> None:
        while running:
            async with session.get(f"{stack.secretary}/health/ready") as response:
                readiness.append((time.monotonic(), response.status))
            await asyncio.sleep(0.1)

    try:
        async with aiohttp.ClientSession(headers=AS_A_SERVICE) as session:
            workers = [asyncio.create_task(user(n, session)) for n in range(10)] + [asyncio.create_task(probe(session))]
            await asyncio.sleep(1.5)
            await stoppable_postgres.stop()
            stopped = time.monotonic()
            await asyncio.sleep(3)
            await stoppable_postgres.start()
            started = time.monotonic()
            # Nobody restarts the secretary: it must notice by itself.
            for _ in range(150):
                if readiness and readiness[-1][0] > started and readiness[-1][1] == 200:
                    break
                await asyncio.sleep(0.1)
            recovered = time.monotonic()
            await asyncio.sleep(1.5)
            running = False
            await asyncio.gather(*workers)
    finally:
        await stack.stop()

    assert any(status == 503 for when, status in readiness if stopped < when < started), "not ready while the database is away"
    assert readiness[-1][1] == 200, "ready again by itself"
    assert recovered - started < 10, f"recovered {recovered - started:.1f} s after the database came back"

    statuses = {status for _, status, _, _ in answers}
    assert statuses <= {200, 503}, f"only answers and 503s, never a 500: {statuses}"
    outage = [body for when, status, body, _ in answers if status == 503]
    assert outage and all(is_error_response(body, 503) for body in outage), "503 in the ErrorResponse shape"
    assert any(status == 200 for when, status, _, _ in answers if when < stopped)
    assert any(status == 200 for when, status, _, _ in answers if when > recovered), "answers again after the outage"

    acknowledged = {mid: body for _, status, body, mid in answers if status == 200}
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT id, message_id, status, response FROM turns WHERE message_id = any($1::text[])", list(acknowledged)
        )
    finally:
        await connection.close()
    stored = {row["message_id"]: row for row in rows}
    missing = [mid for mid in acknowledged if mid not in stored]
    assert not missing, f"acknowledged but not stored: {missing[:5]}"
    for mid, body in acknowledged.items():
        assert stored[mid]["status"] == "answered" and stored[mid]["id"] == body["turn_id"]
        assert stored[mid]["response"] == body["response"]
