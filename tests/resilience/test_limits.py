"""Huge and malformed inputs get a 4xx in the contract's shape; slow clients and a flooding user
cannot starve the others."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg
import pytest

from multyworkemon_common.ratelimit import RateLimiter
from support.client import AS_A_SERVICE, get, is_error_response, post
from support.stack import start_stack

REQUEST = "Срез авторизаций кошельков за март по дням"


async def test_huge_and_malformed_inputs(stack):
    url = f"{stack.secretary}/analyze-request"

    async def chunks():  # 2.5 MB with no Content-Length: the limit holds while streaming
        for _ in range(40):
            yield b"x" * 65536

    cases = [
        ("a body over 1 MiB, sent chunked", post(url, data=chunks(), headers={**AS_A_SERVICE, "Content-Type": "application/json"}), 413),
        ("a query string over 64 KiB", get(url, {"channel": "tg", "username": "u", "request": "x" * 66_000}), 413),
        ("a request text over 100 000 characters", post(url, json={"channel": "tg", "username": "u", "request": "я" * 100_001}), 400),
        ("JSON nested 100 000 deep", post(url, data="[" * 100_000 + "]" * 100_000, headers={**AS_A_SERVICE, "Content-Type": "application/json"}), 400),
        ("a body that is not UTF-8", post(url, data=b'{"request": "\xff\xfe"}', headers={**AS_A_SERVICE, "Content-Type": "application/json"}), 400),
        ("a NUL character", post(url, json={"channel": "tg", "username": "u", "request": "a\x00b"}), 400),
        ("a NUL in a user name", get(f"{stack.secretary}/users/a%00b"), 400),
    ]
    for name, call, expected in cases:
        status, body, _ = await call
        assert status == expected and is_error_response(body, expected), f"{name}: {status} {body}"

    # Beyond what the HTTP parser reads (a 72 KiB request line, an 8 KiB header) the HTTP layer itself
    # answers 400 and closes the connection; the service goes on serving.
    async with aiohttp.ClientSession(headers=AS_A_SERVICE) as session:
        async with session.get(f"{url}?request={'x' * 100_000}") as response:
            assert response.status == 400
        async with session.get(f"{stack.secretary}/health/live", headers={"X-Big": "y" * 20_000}) as response:
            assert response.status == 400
    status, body, _ = await get(url, {"channel": "tg", "username": "u", "request": REQUEST})
    assert status == 200 and body["is_enough"] is True


async def test_slow_clients_do_not_starve_the_others(stack):
    host, port = "127.0.0.1", stack.services["secretary"].port
    slow: list[asyncio.StreamWriter] = []
    try:
        # 200 connections that send half a request line and stop, 20 that trickle a body byte by byte.
        for _ in range(200):
            _, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /analyze-request?channel=tg&user")
            slow.append(writer)
        for _ in range(20):
            _, writer = await asyncio.open_connection(host, port)
            writer.write(b"POST /analyze-request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            slow.append(writer)

        async def trickle() -> None:
            for _ in range(10):
                for writer in slow[200:]:
                    writer.write(b" ")
                await asyncio.sleep(0.1)

        trickling = asyncio.create_task(trickle())
        started = time.monotonic()
        answers = await asyncio.gather(*(
            get(f"{stack.secretary}/analyze-request", {"channel": "tg", "username": f"other{n}", "request": REQUEST}) for n in range(20)
        ))
        elapsed = time.monotonic() - started
        await trickling
        assert [status for status, _, _ in answers] == [200] * 20
        assert elapsed < 5, f"the other users waited {elapsed:.1f} s"
    finally:
        for writer in slow:
            writer.close()


async def test_a_flooding_user_gets_429_and_others_are_served(database_url):
    stack = await start_stack(database_url, secretary={"rate_limit_per_minute": 6, "rate_limit_burst": 5})
    try:
        url = f"{stack.secretary}/analyze-request"
        flood = [post(url, json={"channel": "tg", "username": "flooder", "request": REQUEST, "message_id": f"f{n}"}) for n in range(40)]
        others = [post(url, json={"channel": "email", "username": f"colleague{n}", "request": REQUEST}) for n in range(10)]
        answers = await asyncio.gather(*flood, *others)
        flooded, served = answers[:40], answers[40:]

        assert [status for status, _, _ in served] == [200] * 10, "the others are not starved"
        assert sum(status == 200 for status, _, _ in flooded) == 5, "the burst passes"
        limited = [(body, headers) for status, body, headers in flooded if status == 429]
        assert len(limited) == 35
        for body, headers in limited:
            assert is_error_response(body, 429) and "try again" in body["message"]
            assert 1 <= int(headers["Retry-After"]) <= 10
        # The limit is per person, whatever the letter case of the name (test_trust.py: and the spelling).
        status, _, headers = await post(url, json={"channel": "tg", "username": "FLOODER", "request": REQUEST})
        assert status == 429 and headers["Retry-After"]

        connection = await asyncpg.connect(database_url)
        try:
            stored = await connection.fetchval("SELECT count(*) FROM turns WHERE username = 'tg:flooder'")
        finally:
            await connection.close()
        assert stored == 5, "a refused message is not half-processed: the sender is told to send it again"
    finally:
        await stack.stop()


def test_rate_limiter_refills_and_stays_bounded(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("multyworkemon_common.ratelimit.time.monotonic", lambda: now[0])
    limiter = RateLimiter(per_minute=60, burst=2, max_keys=100)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(Exception) as refused:
        limiter.check("a")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    now[0] += 1.0  # one request a second comes back
    limiter.check("a")

    for n in range(1000):  # a thousand senders at once: memory stays bounded
        limiter.check(f"sender{n}")
    assert len(limiter._buckets) <= 100
    assert RateLimiter(per_minute=0, burst=1).enabled is False
