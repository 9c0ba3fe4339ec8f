"""Fixtures of the state-store tests: a real redis-server and stores built on it.

Every test gets its own key prefix, so tests sharing the session's server never see each
other's keys; the keys are deleted when the test ends.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import suppress

import pytest
import redis.asyncio
from redis.exceptions import RedisError

from nextflow_k8s_service.models import RelayMessage
from nextflow_k8s_service.services.redis_store import RedisStateStore
from nextflow_k8s_service.services.state_store import MemoryStateStore, StateStore
from tests.redis_server import RedisServer

StoreFactory = Callable[..., StateStore]
RedisStoreFactory = Callable[..., RedisStateStore]


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


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    """Build stores of either kind with the same keyword arguments (the contract suite)."""
    if request.param == "redis":
        factory: RedisStoreFactory = request.getfixturevalue("make_redis_store")
        return factory

    def make(
        *,
        history_limit: int = 5,
        ttl_minutes: float = 30.0,
        lease_seconds: float = 30.0,
        owner_id: str | None = None,
    ) -> StateStore:
        del lease_seconds  # one process: nothing to lease
        return MemoryStateStore(
            history_limit=history_limit, ttl_minutes=ttl_minutes, owner_id=owner_id
        )

    return make


class Relay:
    """Subscribers run as tasks owned by the test (cancelled at its end), and the messages
    they yield, so that a test can tell "delivered once" from "delivered twice" or "lost".

    Subscribing has no event to await (pub/sub only works once the subscription is in place),
    so `until_delivering` publishes probes until every inbox has seen one; probes and the
    end marker are filtered out by `collect`.
    """

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def subscribe(self, store: StateStore) -> asyncio.Queue[RelayMessage]:
        inbox: asyncio.Queue[RelayMessage] = asyncio.Queue()

        async def pump() -> None:
            async for message in store.subscribe():
                inbox.put_nowait(message)

        self._tasks.append(asyncio.create_task(pump(), name=f"test-subscriber-{len(self._tasks)}"))
        return inbox

    async def until_delivering(
        self, publisher: StateStore, inboxes: list[asyncio.Queue[RelayMessage]], within: float
    ) -> None:
        async with asyncio.timeout(within):
            for inbox in inboxes:
                while True:
                    self._raise_if_a_subscriber_died()
                    await publisher.publish(_marker("probe"))
                    try:
                        message = await asyncio.wait_for(inbox.get(), 0.2)
                    except TimeoutError:
                        continue  # not subscribed yet (or reconnecting): probe again
                    if message.data.get("marker") == "probe":
                        break

    async def publish(self, publisher: StateStore, messages: list[RelayMessage]) -> None:
        """Publish `messages`, then the end marker that `collect` stops at."""
        for message in messages:
            await publisher.publish(message)
        await publisher.publish(_marker("end"))

    async def collect(
        self, inbox: asyncio.Queue[RelayMessage], within: float = 10.0
    ) -> list[RelayMessage]:
        """Messages received up to the end marker, probes skipped."""
        received: list[RelayMessage] = []
        async with asyncio.timeout(within):
            while True:
                self._raise_if_a_subscriber_died()
                try:
                    message = await asyncio.wait_for(inbox.get(), 1.0)
                except TimeoutError:
                    continue
                marker = message.data.get("marker")
                if marker == "end":
                    return received
                if marker != "probe":
                    received.append(message)

    def _raise_if_a_subscriber_died(self) -> None:
        for task in self._tasks:
            if task.done():
                raise AssertionError(f"{task.get_name()} ended: {task.exception()!r}")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        # A subscriber that died has already failed the test; only its clean-up is left.
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _marker(name: str) -> RelayMessage:
    return RelayMessage(kind="event", run_id=None, data={"marker": name})


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    helper = Relay()
    yield helper
    await helper.stop()
