"""Request budgets shared by every replica: fixed windows in Redis (`RateLimiter`)."""

from __future__ import annotations

import logging

import redis.asyncio

from nextflow_k8s_service.errors import StoreUnavailableError
from nextflow_k8s_service.services import redis_scripts
from nextflow_k8s_service.services.redis_client import translated

logger = logging.getLogger(__name__)


class RedisRateLimiter:
    """`RateLimiter` whose windows live in Redis, so every replica spends one budget.

    Fails open: while Redis is unreachable requests are not limited (the run lock still is).
    """

    def __init__(self, *, redis: redis.asyncio.Redis, prefix: str) -> None:
        self._prefix = f"{prefix}rate:"
        self._hit = redis.register_script(redis_scripts.RATE_HIT)

    async def hit(self, bucket: str, client: str, *, limit: int, window: float) -> float | None:
        if limit <= 0:
            return None
        window_ms = max(1, int(window * 1000))
        try:
            with translated("rate limit"):
                hits, ttl_ms = await self._hit(
                    keys=[f"{self._prefix}{bucket}:{client}"], args=[window_ms]
                )
        except StoreUnavailableError as exc:
            logger.warning("rate limit not enforced, Redis unavailable: %s", exc)
            return None
        return None if int(hits) <= limit else int(ttl_ms) / 1000
