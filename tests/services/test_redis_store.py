"""What only the Redis store has: owner tokens, leases and epochs, orphans, TTLs, generations,
outages of Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis.asyncio

from nextflow_k8s_service.errors import LeaseLostError, StartsPausedError, StoreUnavailableError
from nextflow_k8s_service.models import RunEvent, RunRecord, RunStatus
from nextflow_k8s_service.services.event_log import Cursor
from nextflow_k8s_service.services.redis_event_log import RedisEventLog
from nextflow_k8s_service.services.redis_store import RedisStateStore
from tests.redis_server import RedisServer
from tests.services.conftest import finished, new_run

if TYPE_CHECKING:
    from tests.services.conftest import RedisClock, RedisStoreFactory

pytestmark = pytest.mark.redis


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

    assert not await other.release(run.run_id, run.epoch)
    with pytest.raises(LeaseLostError):
        await other.renew(run.run_id, run.epoch)
    assert not await owner.release(new_run().run_id, run.epoch), "released another run id"
    assert not await owner.release(run.run_id, run.epoch + 1), "released under another epoch"

    assert await redis_client.get(lock) == owner.owner_id
    assert 0 < await redis_client.pttl(lock) <= 20_000, "a non-owner renewed the lease"
    assert await other.claim_orphan() is None
    await owner.renew(run.run_id, run.epoch)
    assert await redis_client.pttl(lock) > 20_000


async def test_a_released_run_is_handed_over_at_once_under_a_new_epoch(
    make_redis_store: RedisStoreFactory,
) -> None:
    owner, other = make_redis_store(), make_redis_store()
    run = (await owner.acquire(new_run())).run

    assert await owner.release(run.run_id, run.epoch)

    assert not (await other.acquire(new_run())).acquired, "the released run is still active"
    claimed = await other.claim_orphan()
    assert claimed is not None
    assert (claimed.run_id, claimed.owner) == (run.run_id, other.owner_id)
    assert claimed.epoch > run.epoch
    with pytest.raises(LeaseLostError) as refused:
        await owner.renew(run.run_id, run.epoch)
    assert not refused.value.data_lost


async def test_an_owner_that_stops_renewing_loses_its_run_and_every_write(
    make_redis_store: RedisStoreFactory,
    redis_client: redis.asyncio.Redis,
    redis_prefix: str,
    redis_clock: RedisClock,
) -> None:
    dead = make_redis_store(lease_seconds=30.0)
    alive = make_redis_store(lease_seconds=30.0)
    dead_log = RedisEventLog(redis=dead.client, prefix=redis_prefix, lease_seconds=30.0)
    run = (await dead.acquire(new_run())).run
    assert await alive.claim_orphan() is None, "claimed a run whose lease is live"
    await redis_clock.advance(29.0)
    assert await alive.claim_orphan() is None, "claimed before the lease ran out"

    await redis_clock.advance(1.1)
    orphan = await alive.claim_orphan()

    assert orphan is not None, "the lease ran out but the run was not claimed"
    claimed = [orphan]
    assert (claimed[0].run_id, claimed[0].owner) == (run.run_id, alive.owner_id)
    assert await redis_client.get(f"{redis_prefix}active-run") == alive.owner_id
    assert (await alive.get_active()) == claimed[0]
    stale_writes: list[Callable[[], Awaitable[object]]] = [
        lambda: dead.renew(run.run_id, run.epoch),
        lambda: dead.update(run),
        lambda: dead.finish(finished(run), []),
        lambda: dead_log.append(run.run_id, [status(run)], epoch=run.epoch),
    ]
    for write in stale_writes:
        with pytest.raises(LeaseLostError) as refused:
            await write()
        assert not refused.value.data_lost
    await alive.renew(run.run_id, claimed[0].epoch)
    assert await alive.claim_orphan() is None, "claimed twice"
    assert await dead_log.read(run.run_id) == []

    refused_start = await dead.acquire(new_run())
    assert not refused_start.acquired
    assert refused_start.run.run_id == run.run_id

    await alive.finish(finished(claimed[0], RunStatus.UNKNOWN), [status(run)])
    assert (await dead.acquire(new_run())).acquired


async def test_an_owner_that_renews_keeps_its_run(
    make_redis_store: RedisStoreFactory, redis_clock: RedisClock
) -> None:
    owner = make_redis_store(lease_seconds=30.0)
    other = make_redis_store(lease_seconds=30.0)
    run = (await owner.acquire(new_run())).run

    for _ in range(8):  # eighty seconds, more than two and a half leases
        await owner.renew(run.run_id, run.epoch)
        await redis_clock.advance(10.0)  # the heartbeat's period (lease / 3)
        assert await other.claim_orphan() is None

    assert (await owner.get_active()) == run


async def test_every_key_expires(
    make_redis_store: RedisStoreFactory,
    redis_client: redis.asyncio.Redis,
    redis_prefix: str,
) -> None:
    store = make_redis_store()
    events = RedisEventLog(redis=store.client, prefix=redis_prefix, lease_seconds=30)
    run = (await store.acquire(new_run())).run
    keys = await assert_every_key_expires(redis_client, redis_prefix)
    assert {"active-run", "state", "epoch", "generation", "runs"} <= keys

    await events.append(run.run_id, [status(run)], epoch=run.epoch)
    await events.request_cancel(run.run_id)
    keys = await assert_every_key_expires(redis_client, redis_prefix)
    assert {f"events:{run.run_id}", f"events-meta:{run.run_id}"} <= keys

    await store.update(run.model_copy(update={"status": RunStatus.RUNNING}))
    await assert_every_key_expires(redis_client, redis_prefix)
    await store.renew(run.run_id, run.epoch)
    await assert_every_key_expires(redis_client, redis_prefix)

    await store.finish(finished(run), [status(run)], floor=1)
    keys = await assert_every_key_expires(redis_client, redis_prefix)
    assert {f"run:{run.run_id}", "history", f"events:{run.run_id}"} <= keys
    assert not {"active-run", "state"} & keys
    ttl_ms = await redis_client.pttl(f"{redis_prefix}events:{run.run_id}")
    assert ttl_ms > 29 * 60_000, "a finished run's log is not kept for the retention"

    await store.release(run.run_id, run.epoch)
    await store.claim_orphan()
    await store.history(5)
    await assert_every_key_expires(redis_client, redis_prefix)


def status(run: RunRecord) -> RunEvent:
    return RunEvent(type="status", run_id=run.run_id, data={"status": "running"})


# --- outages --------------------------------------------------------------------------------


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test alone, which it may stop and restart."""
    server = RedisServer.start(tmp_path / "redis")
    yield server
    server.stop()


async def test_a_redis_restart_is_survived(own_redis_server: RedisServer) -> None:
    store = RedisStateStore.from_url(
        own_redis_server.url, prefix="outage:", history_limit=5, ttl_minutes=30, lease_seconds=2
    )
    events = RedisEventLog(redis=store.client, prefix="outage:", lease_seconds=2)
    try:
        run = (await store.acquire(new_run())).run
        own_redis_server.stop()

        operations: list[Callable[[], Awaitable[object]]] = [
            store.get_active,
            lambda: store.get_run(run.run_id),
            lambda: store.acquire(new_run()),
            lambda: store.update(run),
            lambda: store.renew(run.run_id, run.epoch),
            lambda: store.finish(finished(run), []),
            lambda: store.history(5),
            store.claim_orphan,
            store.check_generation,
            lambda: events.append(run.run_id, [status(run)], epoch=run.epoch),
            lambda: events.read(run.run_id),
            lambda: events.follow(Cursor(markers="0-0", run_id=run.run_id), block=0.1),
            lambda: events.request_cancel(run.run_id),
        ]
        for operation in operations:
            with pytest.raises(StoreUnavailableError):
                await operation()
        health = await store.check()
        assert not health.ok
        assert health.detail

        own_redis_server.resume()

        # The server came back empty (no persistence): the owner's writes say the run is lost
        # (not taken over), and starting a run pauses for one lease, as this replica knew the
        # store's generation before.
        assert await store.get_active() is None
        with pytest.raises(LeaseLostError) as lost:
            await store.renew(run.run_id, run.epoch)
        assert lost.value.data_lost
        with pytest.raises(StartsPausedError) as paused:
            await store.acquire(new_run())
        assert 0 < paused.value.retry_after <= 2.0
        back = await store.reestablish(run)
        assert back is not None and back.epoch > 0
        assert await events.append(run.run_id, [status(run)], epoch=back.epoch, floor=7) == 8
        assert (await store.check()).ok
    finally:
        await store.close()


async def test_a_replica_that_never_knew_the_store_is_not_paused(
    make_redis_store: RedisStoreFactory,
) -> None:
    assert (await make_redis_store().acquire(new_run())).acquired


async def test_every_replica_is_paused_after_another_noticed_the_loss(
    make_redis_store: RedisStoreFactory,
    redis_client: redis.asyncio.Redis,
    redis_prefix: str,
    redis_clock: RedisClock,
) -> None:
    noticing, other = make_redis_store(lease_seconds=30), make_redis_store(lease_seconds=30)
    await noticing.check_generation()
    await other.check_generation()
    await redis_client.delete(f"{redis_prefix}generation")  # what an empty restart does

    await noticing.check_generation()

    with pytest.raises(StartsPausedError):
        await other.acquire(new_run())
    await redis_clock.advance(29.0)
    with pytest.raises(StartsPausedError) as paused:
        await other.acquire(new_run())
    assert 0 < paused.value.retry_after <= 1.0

    await redis_clock.advance(1.1)  # one lease after the loss was noticed

    assert (await other.acquire(new_run())).acquired
