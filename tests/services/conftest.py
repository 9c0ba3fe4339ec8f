"""Fixtures of the state-store tests: a real redis-server and stores built on it.

Every test gets its own key prefix, so tests sharing the session's server never see each
other's keys; the keys are deleted when the test ends.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio
from redis.exceptions import RedisError

from nextflow_k8s_service.models import RunRecord, RunStatus, utcnow
from nextflow_k8s_service.services.event_log import (
    MAX_BYTES_PER_RUN,
    MAX_ENTRIES_PER_RUN,
    MAX_LOG_LINES_PER_RUN,
    EventLog,
    MemoryEventLog,
)
from nextflow_k8s_service.services.redis_event_log import RedisEventLog
from nextflow_k8s_service.services.redis_store import RedisStateStore
from nextflow_k8s_service.services.state_store import MemoryStateStore, StateStore
from tests.redis_server import RedisServer

StoreFactory = Callable[..., StateStore]
RedisStoreFactory = Callable[..., RedisStateStore]

_run_numbers = itertools.count(1)


def new_run(batch_count: int = 3) -> RunRecord:
    """A pending local run with an id no other test in this process uses."""
    run_id = f"r{next(_run_numbers):011x}"
    return RunRecord(run_id=run_id, batch_count=batch_count, executor="local")


def finished(run: RunRecord, status: RunStatus = RunStatus.SUCCEEDED) -> RunRecord:
    """`run` ended with `status`, now."""
    return run.model_copy(update={"status": status, "finished_at": utcnow()})


# Takes ARGV[1] milliseconds off the TTL of every key in KEYS, deleting those it runs out; one
# script, so every key sees the same instant (the server's clock stands still inside a script).
_ADVANCE = """
local step = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then
    if ttl <= step then redis.call('DEL', key) else redis.call('PEXPIRE', key, ttl - step) end
  end
end
"""


class RedisClock:
    """The clock of the Redis store's leases, under the test's control.

    Every lease, pause and retention of the Redis backends is a key's expiry (`PX`/`PEXPIRE`,
    kept by the server's clock; the store reads no clock of its own), so taking `seconds` off
    the TTL of every key under the test's prefix is exactly what `seconds` of waiting would do.
    A test uses long leases (30 s) and moves time on, so a loaded machine cannot make it flake.
    The server's own clock keeps running meanwhile: a test stops 1 s short of an expiry (more
    than a loaded machine takes between two calls), never 0.1 s.
    """

    def __init__(self, client: redis.asyncio.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def advance(self, seconds: float) -> None:
        keys = [key async for key in self._client.scan_iter(match=f"{self._prefix}*")]
        if keys:
            await self._client.eval(_ADVANCE, len(keys), *keys, round(seconds * 1000))


@pytest.fixture
def redis_prefix() -> str:
    return f"test:{secrets.token_hex(6)}:"


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client of the session's server, to look at keys behind the store's back."""
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def redis_clock(redis_client: redis.asyncio.Redis, redis_prefix: str) -> RedisClock:
    """Moves time on for this test's keys (see `RedisClock`)."""
    return RedisClock(redis_client, redis_prefix)


@pytest.fixture
async def make_redis_store(
    redis_server: RedisServer, redis_prefix: str
) -> AsyncIterator[RedisStoreFactory]:
    """Build `RedisStateStore`s sharing this test's prefix (replicas of one deployment)."""
    stores: list[RedisStateStore] = []

    def make(
        *,
        url: str | None = None,
        history_limit: int = 5,
        ttl_minutes: float = 30.0,
        lease_seconds: float = 30.0,
        owner_id: str | None = None,
    ) -> RedisStateStore:
        store = RedisStateStore.from_url(
            url or redis_server.url,
            prefix=redis_prefix,
            history_limit=history_limit,
            ttl_minutes=ttl_minutes,
            lease_seconds=lease_seconds,
            owner_id=owner_id,
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()
    cleaner = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    with suppress(RedisError, OSError):
        keys = [key async for key in cleaner.scan_iter(match=f"{redis_prefix}*")]
        if keys:
            await cleaner.delete(*keys)
    await cleaner.aclose()


@dataclass
class Backend:
    """One replica's view of the state: its run store and its event log."""

    store: StateStore
    events: EventLog


BackendFactory = Callable[..., Backend]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_backend(request: pytest.FixtureRequest) -> BackendFactory:
    """Build replicas of either kind with the same keyword arguments (the contract suite).
    In memory there is one replica per store; with Redis every call is another replica."""
    if request.param == "redis":
        factory: RedisStoreFactory = request.getfixturevalue("make_redis_store")
        prefix: str = request.getfixturevalue("redis_prefix")

        def make_redis(
            *,
            max_entries: int = MAX_ENTRIES_PER_RUN,
            max_bytes: int = MAX_BYTES_PER_RUN,
            max_lines: int = MAX_LOG_LINES_PER_RUN,
            **kwargs: Any,
        ) -> Backend:
            store = factory(**kwargs)
            events = RedisEventLog(
                redis=store.client,
                prefix=prefix,
                lease_seconds=kwargs.get("lease_seconds", 30.0),
                max_entries=max_entries,
                max_bytes=max_bytes,
                max_lines=max_lines,
            )
            return Backend(store=store, events=events)

        return make_redis

    def make(
        *,
        history_limit: int = 5,
        ttl_minutes: float = 30.0,
        lease_seconds: float = 30.0,
        owner_id: str | None = None,
        max_entries: int = MAX_ENTRIES_PER_RUN,
        max_bytes: int = MAX_BYTES_PER_RUN,
        max_lines: int = MAX_LOG_LINES_PER_RUN,
    ) -> Backend:
        del lease_seconds  # one process: nothing to lease
        store = MemoryStateStore(
            history_limit=history_limit,
            ttl_minutes=ttl_minutes,
            owner_id=owner_id,
            events=MemoryEventLog(
                max_entries=max_entries, max_bytes=max_bytes, max_lines=max_lines
            ),
        )
        return Backend(store=store, events=store.events)

    return make


@pytest.fixture
def make_store(make_backend: BackendFactory) -> StoreFactory:
    """Build stores of either kind with the same keyword arguments."""

    def make(**kwargs: Any) -> StateStore:
        return make_backend(**kwargs).store

    return make
