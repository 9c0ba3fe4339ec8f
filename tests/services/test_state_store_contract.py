"""The StateStore contract: the same tests against MemoryStateStore and RedisStateStore."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from nextflow_k8s_service.models import LogLine, RelayMessage, RunRecord, RunStatus, utcnow
from nextflow_k8s_service.services.state_store import RECENT_LOG_LINES

if TYPE_CHECKING:
    from tests.services.conftest import Relay, StoreFactory


def new_run(batch_count: int = 3) -> RunRecord:
    return RunRecord(run_id=_fresh_id(), batch_count=batch_count, executor="local")


_counter = iter(range(1, 1_000_000))


def _fresh_id() -> str:
    return f"r{next(_counter):011x}"


def finished(run: RunRecord, status: RunStatus = RunStatus.SUCCEEDED) -> RunRecord:
    return run.model_copy(update={"status": status, "finished_at": utcnow()})


def log_lines(count: int, start: int = 0) -> list[LogLine]:
    return [
        LogLine(timestamp=utcnow(), source="GENERATE (1)", message=f"line {i}")
        for i in range(start, start + count)
    ]


async def eventually(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    """Await `condition()` until it holds; polls because expiry in a store sends no event."""
    async with asyncio.timeout(within):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)


async def test_exactly_one_of_40_concurrent_acquires_wins(make_store: StoreFactory) -> None:
    store = make_store()
    runs = [new_run() for _ in range(40)]

    results = await asyncio.gather(*(store.acquire(run) for run in runs))

    winners = [result for result in results if result.acquired]
    assert len(winners) == 1
    winner = winners[0].run
    assert winner.owner == store.owner_id
    assert {result.run.run_id for result in results} == {winner.run_id}
    assert await store.get_active() == winner


async def test_a_loser_gets_the_active_run_with_its_batch_count(make_store: StoreFactory) -> None:
    store = make_store()
    first = new_run(batch_count=2)
    await store.acquire(first)

    result = await store.acquire(new_run(batch_count=9))

    assert not result.acquired
    assert result.run.run_id == first.run_id
    assert result.run.batch_count == 2


async def test_update_applies_only_to_the_active_run_and_keeps_its_owner(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run
    stranger = new_run()

    assert not await store.update(stranger.model_copy(update={"status": RunStatus.RUNNING}))
    assert await store.update(
        run.model_copy(update={"status": RunStatus.RUNNING, "owner": None, "event_seq": 7})
    )

    active = await store.get_active()
    assert active is not None
    assert (active.run_id, active.status, active.event_seq) == (run.run_id, RunStatus.RUNNING, 7)
    assert active.owner == store.owner_id


async def test_finish_applies_only_to_the_active_run(make_store: StoreFactory) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run

    assert not await store.finish(finished(new_run()))
    assert await store.get_active() == run

    assert await store.finish(finished(run))
    assert await store.get_active() is None
    assert not await store.finish(finished(run, RunStatus.FAILED)), "finished twice"
    assert not await store.update(run), "a late update of a finished run was applied"
    assert [r.status for r in await store.history(10)] == [RunStatus.SUCCEEDED]


async def test_a_finished_run_frees_the_lock(make_store: StoreFactory) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run
    await store.finish(finished(run))

    result = await store.acquire(new_run())

    assert result.acquired
    assert result.run.run_id != run.run_id


async def test_history_is_newest_first_and_bounded(make_store: StoreFactory) -> None:
    store = make_store(history_limit=3)
    ids = []
    for _ in range(5):
        run = (await store.acquire(new_run())).run
        assert await store.finish(finished(run))
        ids.append(run.run_id)

    assert [r.run_id for r in await store.history(10)] == ids[::-1][:3]
    assert [r.run_id for r in await store.history(2)] == ids[::-1][:2]
    assert await store.get_run(ids[0]) is None, "a run beyond the history limit is remembered"


async def test_history_forgets_runs_after_the_retention(make_store: StoreFactory) -> None:
    store = make_store(ttl_minutes=0.01)  # 0.6 s
    run = (await store.acquire(new_run())).run
    await store.finish(finished(run))
    assert [r.run_id for r in await store.history(5)] == [run.run_id]

    async def forgotten() -> bool:
        return await store.history(5) == [] and await store.get_run(run.run_id) is None

    await eventually(forgotten, within=5.0)


async def test_a_run_that_finished_before_the_retention_is_not_listed(
    make_store: StoreFactory,
) -> None:
    store = make_store(ttl_minutes=1.0)
    run = (await store.acquire(new_run())).run
    old = run.model_copy(
        update={"status": RunStatus.FAILED, "finished_at": utcnow() - timedelta(minutes=2)}
    )

    assert await store.finish(old)

    assert await store.history(5) == []


async def test_get_run_finds_the_active_and_finished_runs(make_store: StoreFactory) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run

    assert await store.get_run(run.run_id) == run
    done = finished(run, RunStatus.CANCELLED).model_copy(update={"message": "cancelled by admin"})
    await store.finish(done)

    remembered = await store.get_run(run.run_id)
    assert remembered is not None
    assert (remembered.status, remembered.message) == (RunStatus.CANCELLED, "cancelled by admin")
    assert remembered.finished_at == done.finished_at
    assert await store.get_run(new_run().run_id) is None


async def test_recent_logs_keep_the_last_200_lines_of_the_active_run(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run
    lines = log_lines(250)

    await store.append_logs(run.run_id, lines[:120])
    await store.append_logs(run.run_id, lines[120:])
    await store.append_logs(new_run().run_id, log_lines(3, start=1000))

    assert await store.recent_logs(run.run_id) == lines[-RECENT_LOG_LINES:]


async def test_recent_logs_start_empty_for_a_new_run(make_store: StoreFactory) -> None:
    store = make_store()
    old = (await store.acquire(new_run())).run
    await store.append_logs(old.run_id, log_lines(5))
    await store.finish(finished(old))

    await store.append_logs(old.run_id, log_lines(2, start=5))
    new = (await store.acquire(new_run())).run

    assert await store.recent_logs(new.run_id) == []
    assert await store.recent_logs(old.run_id) == []
    fresh = log_lines(2, start=100)
    await store.append_logs(new.run_id, fresh)
    assert await store.recent_logs(new.run_id) == fresh


async def test_renew_holds_for_the_owner_of_the_active_run_only(make_store: StoreFactory) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run

    assert await store.renew(run.run_id)
    assert not await store.renew(new_run().run_id)
    await store.finish(finished(run))
    assert not await store.renew(run.run_id)


async def test_a_run_whose_owner_lives_is_no_orphan(make_store: StoreFactory) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run

    assert await store.claim_orphan() is None
    assert await store.get_active() == run


async def test_publish_reaches_each_subscriber_exactly_once(
    make_store: StoreFactory, relay: Relay
) -> None:
    store = make_store()
    inboxes = [relay.subscribe(store), relay.subscribe(store)]
    await relay.until_delivering(store, inboxes, within=10.0)
    sent = [
        RelayMessage(kind="event", run_id="r0000000000a", event_seq=seq, type="log")
        for seq in range(1, 6)
    ]

    await relay.publish(store, sent)

    for inbox in inboxes:
        assert await relay.collect(inbox) == sent


async def test_check_reports_ok(make_store: StoreFactory) -> None:
    assert (await make_store().check()).ok
