"""Keeping a channel running: the delays between reconnects, and the supervisor of a channel's poller.

Both the mail and the Telegram channel reconnect after a failure of their server; both pollers run
under a Supervisor that starts them again when a bug ends them, and says they are dead (liveness
fails, the orchestrator restarts the process) when they keep failing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from multyworkemon_common.logging import get_logger

log = get_logger("ai_communicator.reconnect")


class Reconnect:
    """Delays between attempts: doubling from `first` up to `ceiling`, from `first` again once one worked.

    Call `connected()` when a connection works; `wait()` after each failure.
    """

    def __init__(self, first: float = 1.0, ceiling: float = 60.0):
        self.first = first
        self.ceiling = ceiling
        self.failures = 0  # in a row, since the last connection that worked

    def connected(self) -> None:
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        # Jitter, so replicas and channels coming back after one outage do not knock at once.
        return min(self.ceiling, self.first * 2 ** (self.failures - 1)) * random.uniform(0.8, 1.0)

    async def wait(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay


class Supervisor:
    """Runs a channel's poller (which returns only by failing) and starts it again after a failure.

    A run that lasted longer than the longest delay counts as having worked. After `limit` failed
    runs in a row the poller counts as dead: `alive()` says so, and liveness fails.
    """

    def __init__(self, name: str, work: Callable[[], Awaitable[None]], restarts: Reconnect, limit: int):
        self.name = name
        self.work = work
        self.restarts = restarts
        self.limit = limit
        self._running_since: float | None = None  # None while waiting to start again

    async def run(self) -> None:
        while True:
            self._running_since = time.monotonic()
            try:
                await self.work()
                raise RuntimeError("the poller returned")
            except Exception:  # noqa: BLE001 - a bug in a poller must not end the channel for good
                if self._lasted() > self.restarts.ceiling:
                    self.restarts.connected()
                log.exception("the poller failed; starting it again", labels={"channel": self.name, "failures": str(self.restarts.failures + 1)})
            finally:
                self._running_since = None
            await self.restarts.wait()

    def _lasted(self) -> float:
        return 0.0 if self._running_since is None else time.monotonic() - self._running_since

    def alive(self, task: asyncio.Task | None) -> tuple[bool, str]:
        if task is not None and task.done():
            return False, "the poller task ended"
        if self.restarts.failures >= self.limit and self._lasted() <= self.restarts.ceiling:
            return False, f"the poller failed {self.restarts.failures} times in a row"
        return True, "running"
