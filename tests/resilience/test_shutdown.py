"""SIGTERM on a real service process with requests in flight: drain, refuse new work, exit in time."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from support.client import AS_A_SERVICE
import pytest
from multyworkemon_common.http import ServiceClient
from multyworkemon_common.metrics import ServiceMetrics

from resilience.processes import start_service

FIELDS = {"username": "u", "department": "d", "position": "p", "request": "Срез авторизаций кошельков за март"}


def llm_env(openai_server, **extra: str) -> dict[str, str]:
    return {"LLM_PROVIDER": "openai", "LLM_BASE_URL": openai_server.base_url, "LLM_API_KEY": "sk-placeholder", **extra}


async def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(openai_server, tmp_path):
    openai_server.delay = 1.5  # every request is still waiting for the LLM when the signal comes
    service = await start_service("ai_guesser", llm_env(openai_server, SHUTDOWN_TIMEOUT="10"), tmp_path)
    try:
        async with aiohttp.ClientSession(headers=AS_A_SERVICE) as session:
            async def ask() -> int:
                async with session.post(f"{service.url}/get-context", json=FIELDS) as response:
                    await response.read()
                    return response.status

            in_flight = [asyncio.create_task(ask()) for _ in range(8)]
            while len(openai_server.requests) < 8:  # all of them reached the LLM
                await asyncio.sleep(0.02)
            signalled = time.monotonic()
            service.terminate()
            await asyncio.sleep(0.3)

            # Nothing new is accepted: the listener is closed, so a probe or a new caller is refused.
            async with aiohttp.ClientSession(headers=AS_A_SERVICE) as fresh:
                with pytest.raises(aiohttp.ClientConnectorError):
                    async with fresh.get(f"{service.url}/health/ready"):
                        pass
                with pytest.raises(aiohttp.ClientConnectorError):
                    async with fresh.post(f"{service.url}/get-context", json=FIELDS):
                        pass

            statuses = await asyncio.gather(*in_flight)
        assert statuses == [200] * 8, "the requests in flight finish with their answers"
        assert await service.wait(timeout=10) == 0
        assert time.monotonic() - signalled < 5, "exits as soon as the in-flight requests are done"
        log = service.log()
        assert "shutting down: draining in-flight requests" in log, "readiness turned false (on_shutdown ran)"
        assert log.count('"request served"') >= 8
    finally:
        service.terminate()
        await service.wait(timeout=15)


async def test_a_request_longer_than_the_grace_period_does_not_hold_the_exit(openai_server, tmp_path):
    openai_server.delay = 30  # a hung LLM
    service = await start_service("ai_guesser", llm_env(openai_server, SHUTDOWN_TIMEOUT="1", LLM_TIMEOUT="60"), tmp_path)
    try:
        async with aiohttp.ClientSession(headers=AS_A_SERVICE) as session:
            stuck = asyncio.create_task(session.post(f"{service.url}/get-context", json=FIELDS))
            while not openai_server.requests:
                await asyncio.sleep(0.02)
            signalled = time.monotonic()
            service.terminate()
            assert await service.wait(timeout=10) == 0
            assert time.monotonic() - signalled < 4, "the grace period (1 s) bounds the exit"
            with pytest.raises(aiohttp.ClientError):
                await stuck  # the connection is closed; the caller (the secretary) retries or reports 503
    finally:
        service.terminate()
        await service.wait(timeout=15)


async def test_a_call_on_a_keep_alive_connection_the_peer_resets_is_sent_again():
    """What a rolling update does to a caller (seen in tests/cluster as 502s): the old pod, going
    away, drops its idle keep-alive connections, and a POST just sent on one of them fails with a
    reset. ServiceClient sends it again on a new connection: the calls between services are idempotent."""
    answers = b'{"ok": true}'
    served: list[int] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection, requests = len(served), 0
        served.append(0)
        while head := await reader.readuntil(b"\r\n\r\n"):
            if connection == 0 and requests == 1:
                writer.transport.abort()  # the second request on the first connection: reset, unread
                return
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(answers), answers))
            await writer.drain()
            requests += 1
            served[connection] = requests

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    client = ServiceClient("peer", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}",
                           metrics=ServiceMetrics("test", "0"))
    try:
        assert await client.post_json("/x", {"n": 1}) == {"ok": True}
        # Large enough to be still on its way when the reset comes: "Can not write request body".
        assert await client.post_json("/x", {"n": 2, "text": "x" * 4_000_000}) == {"ok": True}, "sent again"
        assert served == [1, 1], "the second call went over a new connection"
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
