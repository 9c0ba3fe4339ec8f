"""Per-client request budgets: a fixed window per (bucket, client).

`hit` answers None when the request may go ahead, or the seconds until the client's window
resets. The Redis implementation (`redis_store.RedisRateLimiter`) shares the budgets between
replicas; this in-memory one serves a single replica.
"""

from __future__ import annotations

import time
from typing import Protocol

MAX_TRACKED_CLIENTS = 100_000


class RateLimiter(Protocol):
    async def hit(self, bucket: str, client: str, *, limit: int, window: float) -> float | None:
        """Count one request; None if within `limit` per `window` seconds, else retry-after."""
        ...


class MemoryRateLimiter:
    """Fixed windows in a dict; expired windows are swept so memory stays bounded."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    async def hit(self, bucket: str, client: str, *, limit: int, window: float) -> float | None:
        if limit <= 0:
            return None
        now = time.monotonic()
        key = (bucket, client)
        reset_at, count = self._windows.get(key, (now + window, 0))
        if reset_at <= now:
            reset_at, count = now + window, 0
        if count >= limit:
            return reset_at - now
        if key not in self._windows and len(self._windows) >= MAX_TRACKED_CLIENTS:
            self._sweep(now)
        self._windows[key] = (reset_at, count + 1)
        return None

    def _sweep(self, now: float) -> None:
        self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        if len(self._windows) >= MAX_TRACKED_CLIENTS:
            # Under a flood of distinct addresses, forget the oldest half rather than grow.
            ordered = sorted(self._windows.items(), key=lambda item: item[1][0])
            self._windows = dict(ordered[len(ordered) // 2 :])
