"""Per-key rate limits (a token bucket per user), so that one sender flooding cannot starve the others."""

from __future__ import annotations

import math
import time

from .errors import ApiError


class RateLimiter:
    """`burst` requests at once per key, refilled at `per_minute`; `per_minute <= 0` turns it off.

    Buckets live in this process (one replica's share of the limit); memory stays bounded because
    buckets that have refilled, which are the same as no bucket, are dropped when there are too many.
    """

    def __init__(self, per_minute: float, burst: int, *, max_keys: int = 100_000):
        self.enabled = per_minute > 0
        self._rate = per_minute / 60.0
        self._burst = max(1, burst)
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def check(self, key: str) -> None:
        """Take one token for `key`, or raise a 429 with Retry-After."""
        if not self.enabled:
            return
        now = time.monotonic()
        tokens, since = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - since) * self._rate)
        if tokens < 1:
            retry_after = max(1, math.ceil((1 - tokens) / self._rate))
            raise ApiError(
                429,
                f"Too many requests from this user; try again in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > self._max_keys:
            self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        full = [k for k, (tokens, since) in self._buckets.items() if tokens + (now - since) * self._rate >= self._burst]
        for key in full:
            del self._buckets[key]
        # Still too many senders at once: forget the oldest (they start again with a full bucket).
        for key in list(self._buckets)[: len(self._buckets) - self._max_keys * 9 // 10]:
            del self._buckets[key]
