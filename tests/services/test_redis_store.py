"""What only the Redis store has: owner tokens, leases, orphans, TTLs, outages of Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis.asyncio

from nextflow_k8s_service.errors import StoreUnavailableError
from nextflow_k8s_service.models import LogLine, RelayMessage, RunRecord, RunStatus, utcnow
from nextflow_k8s_service.services.redis_store import RedisStateStore
from tests.redis_server import RedisServer

if TYPE_CHECKING:
    from tests.services.conftest import RedisStoreFactory, Relay

pytestmark = pytest.mark.redis

_counter = iter(range(1, 1_000_000))


def new_run() -> RunRecord:
    return RunRecord(run_id=f"r{next(_counter):011x}", batch_count=2, executor="local")


def finished(run: RunRecord, status: RunStatus = RunStatus.SUCCEEDED) -> RunRecord:
    return run.model_copy(update={"status": status, "finished_at": utcnow()})


async def eventually(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    """Await `condition()` until it holds; polls because a key's expiry sends no event."""
    async with asyncio.timeout(within):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)


async def assert_every_key_expires(client: redis.asyncio.Redis, prefix: str) -> set[str]:
    """Every key under `prefix` has a TTL; returns the key names without the prefix."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    ttls = {key: await client.pttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values()), f"keys without a TTL: {ttls}"
    return {key.removeprefix(prefix) for key in keys}


async def test_40_replicas_racing_start_exactly_one_run(
    make_redis_store: RedisStoreFactory, redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    stores = [make_redis_store() for _ in range(40)]

    results = await asyncio.gather(*(store.acquire(new_run()) for store in stores))

    winners = [(store, r.run) for store, r in zip(stores, results, strict=True) if r.acquired]
    assert len(winners) == 1
    store, run = winners[0]
    assert {r.run.run_id for r in results} == {run.run_id}
    assert {r.run.owner for r in results} == {store.owner_id}
    assert await redis_client.get(f"{redis_prefix}active-run") == store.owner_id


async def test_release_and_renew_by_a_non_owner_do_nothing(
    make_redis_store: RedisStoreFactory, redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    owner, other = make_redis_store(), make_redis_store()
    run = (await owner.acquire(new_run())).run
    lock = f"{redis_prefix}active-run"
    await redis_client.pexpire(lock, 20_000)

    assert not await other.release(run.run_id)
    assert not await other.renew(run.run_id)
    assert not await owner.release(new_run().run_id), "released under another run id"

    assert await redis_client.get(lock) == owner.owner_id
    assert 0 < await redis_client.pttl(lock) <= 20_000, "a non-owner renewed the lease"
    assert await other.claim_orphan() is None
    assert await owner.renew(run.run_id)
    assert await redis_client.pttl(lock) > 20_000


async def test_a_released_run_is_handed_over_at_once(
    make_redis_store: RedisStoreFactory,
) -> None:
    owner, other = make_redis_store(), make_redis_store()
    run = (await owner.acquire(new_run())).run

    assert await owner.release(run.run_id)

    assert not await owner.renew(run.run_id), "renewed a lease it gave up"
    assert not (await other.acquire(new_run())).acquired, "the released run is still active"
    claimed = await other.claim_orphan()
    assert claimed is not None
    assert (claimed.run_id, claimed.owner) == (run.run_id, other.owner_id)


async def test_an_owner_that_stops_renewing_loses_its_run_to_a_claimer(
    make_redis_store: RedisStoreFactory, redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    dead = make_redis_store(lease_seconds=1.0)
    alive = make_redis_store(lease_seconds=1.0)
    run = (await dead.acquire(new_run())).run
    acquired_at = time.monotonic()
    assert await alive.claim_orphan() is None, "claimed a run whose lease is live"

    claimed: list[RunRecord] = []

    async def claim() -> bool:
        orphan = await alive.claim_orphan()
        if orphan is not None:
            claimed.append(orphan)
        return bool(claimed)

    await eventually(claim, within=5.0)

    assert time.monotonic() - acquired_at >= 0.9, "claimed before the lease ran out"
    assert (claimed[0].run_id, claimed[0].owner) == (run.run_id, alive.owner_id)
    assert await redis_client.get(f"{redis_prefix}active-run") == alive.owner_id
    assert (await alive.get_active()) == claimed[0]
    assert not await dead.renew(run.run_id), "the dead owner got its run back"
    assert await alive.renew(run.run_id)
    assert await alive.claim_orphan() is None, "claimed twice"

    refused = await dead.acquire(new_run())
    assert not refused.acquired
    assert refused.run.run_id == run.run_id

    assert await alive.finish(finished(claimed[0], RunStatus.UNKNOWN))
    assert (await dead.acquire(new_run())).acquired


async def test_an_owner_that_renews_keeps_its_run(make_redis_store: RedisStoreFactory) -> None:
    owner = make_redis_store(lease_seconds=1.0)
    other = make_redis_store(lease_seconds=1.0)
    run = (await owner.acquire(new_run())).run

    deadline = time.monotonic() + 2.5  # two and a half leases
    while time.monotonic() < deadline:
        assert await owner.renew(run.run_id)
        assert await other.claim_orphan() is None
        await asyncio.sleep(0.3)  # the heartbeat's period (lease / 3): a cadence, not a wait

    assert (await owner.get_active()) == run


async def test_every_key_expires(
    make_redis_store: RedisStoreFactory,
    redis_client: redis.asyncio.Redis,
    redis_prefix: str,
) -> None:
    store = make_redis_store()
    run = (await store.acquire(new_run())).run
    keys = await assert_every_key_expires(redis_client, redis_prefix)
    assert {"active-run", "state"} <= keys

    line = LogLine(timestamp=utcnow(), source="controller", message="hello")
    await store.append_logs(run.run_id, [line])
    assert f"logs:{run.run_id}" in await assert_every_key_expires(redis_client, redis_prefix)

    await store.update(run.model_copy(update={"status": RunStatus.RUNNING}))
    await assert_every_key_expires(redis_client, redis_prefix)
    await store.renew(run.run_id)
    await assert_every_key_expires(redis_client, redis_prefix)

    await store.finish(finished(run))
    keys = await assert_every_key_expires(redis_client, redis_prefix)
    assert {f"run:{run.run_id}", "history"} <= keys
    assert not {"active-run", "state", f"logs:{run.run_id}"} & keys

    await store.release(run.run_id)
    await store.claim_orphan()
    await store.history(5)
    await assert_every_key_expires(redis_client, redis_prefix)


async def test_every_replica_receives_each_message_once(
    make_redis_store: RedisStoreFactory, relay: Relay
) -> None:
    publisher, other = make_redis_store(), make_redis_store()
    inboxes = [relay.subscribe(publisher), relay.subscribe(other)]
    await relay.until_delivering(publisher, inboxes, within=10.0)
    sent = [
        RelayMessage(kind="cancel", run_id="r00000000001", origin=other.owner_id),
        RelayMessage(kind="event", run_id="r00000000001", event_seq=1, type="status"),
    ]

    await relay.publish(other, sent)

    for inbox in inboxes:
        assert await relay.collect(inbox) == sent


# --- outages --------------------------------------------------------------------------------


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test alone, which it may stop and restart."""
    server = RedisServer.start(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
async def outage_store(own_redis_server: RedisServer) -> AsyncIterator[RedisStateStore]:
    store = RedisStateStore.from_url(
        own_redis_server.url,
        prefix="outage:",
        history_limit=5,
        ttl_minutes=30,
        lease_seconds=30,
    )
    yield store
    await store.close()


async def test_a_redis_restart_is_survived(
    own_redis_server: RedisServer,
    outage_store: RedisStateStore,
    relay: Relay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = outage_store
    caplog.set_level(logging.WARNING, logger="nextflow_k8s_service.services.redis_store")
    inbox = relay.subscribe(store)
    await relay.until_delivering(store, [inbox], within=10.0)
    run = (await store.acquire(new_run())).run

    own_redis_server.stop()

    line = LogLine(timestamp=utcnow(), source="controller", message="lost")
    operations: list[Callable[[], Awaitable[object]]] = [
        store.get_active,
        lambda: store.get_run(run.run_id),
        lambda: store.acquire(new_run()),
        lambda: store.update(run),
        lambda: store.renew(run.run_id),
        lambda: store.append_logs(run.run_id, [line]),
        lambda: store.recent_logs(run.run_id),
        lambda: store.finish(finished(run)),
        lambda: store.history(5),
        store.claim_orphan,
        lambda: store.publish(RelayMessage(kind="cancel", run_id=run.run_id)),
    ]
    for operation in operations:
        with pytest.raises(StoreUnavailableError):
            await operation()
    health = await store.check()
    assert not health.ok
    assert health.detail

    own_redis_server.resume()

    # The server came back empty (no persistence): the lease is lost and says so.
    assert await store.get_active() is None
    assert not await store.renew(run.run_id)
    assert (await store.acquire(new_run())).acquired
    assert (await store.check()).ok

    await relay.until_delivering(store, [inbox], within=20.0)
    sent = [RelayMessage(kind="event", run_id=run.run_id, event_seq=i) for i in (1, 2, 3)]
    await relay.publish(store, sent)
    assert await relay.collect(inbox) == sent
    assert any("relay subscription" in r.getMessage() for r in caplog.records), (
        "the relay lost its connection without a warning"
    )
