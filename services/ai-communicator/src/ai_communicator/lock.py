"""One poller per channel across replicas: a PostgreSQL session-level advisory lock.

The replica holding the lock polls; the others stand by and serve the web chat. The lock lives
on a dedicated connection: when the holder dies its connection closes, PostgreSQL releases the
lock and a standby takes it within LOCK_RETRY_SECONDS. The holder checks its connection and stops
polling as soon as it is lost, so two pollers overlap at most for that check's interval (and
the secretary's message_id idempotency covers even that).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import asyncpg

from multyworkemon_common.database import CONNECTION_ERRORS
from multyworkemon_common.logging import get_logger

log = get_logger("ai_communicator.lock")

HOLDING, STANDBY, STARTING, UNREACHABLE = "holding", "standby", "starting", "unreachable"


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"ai-communicator:poller:{name}".encode()).digest()[:8], "big", signed=True)


class PollerLock:
    """Runs `work` only while this replica holds the lock named `name` (always, without a database)."""

    def __init__(self, dsn: str, name: str, retry_seconds: float = 5.0):
        self.dsn = dsn
        self.name = name
        self.key = lock_key(name)
        self.retry_seconds = retry_seconds
        self.state = STARTING

    async def run(self, work: Callable[[], Awaitable[None]]) -> None:
        if not self.dsn:
            self.state = HOLDING
            await work()
            return
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(self.dsn, timeout=self.retry_seconds * 2)
                while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", self.key):
                    self.state = STANDBY
                    await asyncio.sleep(self.retry_seconds)
                self.state = HOLDING
                log.info("this replica polls the channel now", labels={"lock": self.name})
                await self._work_while_held(connection, work)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                self.state = UNREACHABLE
                log.warning("poller lock lost or database unreachable; standing by", error=f"{type(exc).__name__}: {exc}", labels={"lock": self.name})
            except Exception:  # noqa: BLE001 - a bug in the poller: give the lock back, start again
                self.state = STARTING
                log.exception("the poller failed; starting it again", labels={"lock": self.name})
            finally:
                if connection is not None:
                    connection.terminate()  # closing the session releases the lock at once
            await asyncio.sleep(self.retry_seconds)

    async def _work_while_held(self, connection: asyncpg.Connection, work: Callable[[], Awaitable[None]]) -> None:
        lost = asyncio.Event()
        # Told at once when the server ends the session; the periodic check covers a silent network.
        connection.add_termination_listener(lambda _connection: lost.set())
        task = asyncio.create_task(work())
        watch = asyncio.create_task(lost.wait())
        try:
            while True:
                done, _ = await asyncio.wait({task, watch}, timeout=self.retry_seconds, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    task.result()  # work returns only by failing; let the caller log it and retry
                    raise RuntimeError("the poller stopped")
                if watch in done:
                    raise ConnectionResetError("the lock's database session ended")
                # Still ours? A lost connection means PostgreSQL has released the lock. (asyncio.timeout,
                # not wait_for: on Python 3.11 wait_for loses a cancellation that arrives just as the
                # query ends, and the poller then outlives the shutdown that cancelled it.)
                async with asyncio.timeout(self.retry_seconds):
                    await connection.fetchval("SELECT 1")
        finally:
            task.cancel()
            watch.cancel()
            await asyncio.gather(task, watch, return_exceptions=True)
