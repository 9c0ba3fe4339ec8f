"""The StateStore contract: the same tests against MemoryStateStore and RedisStateStore."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from nextflow_k8s_service.errors import LeaseLostError
from nextflow_k8s_service.models import RunEvent, RunRecord, RunStatus, utcnow
from tests.conftest import eventually
from tests.services.conftest import finished, new_run

if TYPE_CHECKING:
    from tests.services.conftest import BackendFactory, StoreFactory


def final_events(run: RunRecord) -> list[RunEvent]:
    return [
        RunEvent(type="status", run_id=run.run_id, data={"status": run.status.value}),
        RunEvent(type="complete", run_id=run.run_id, data={"status": run.status.value}),
    ]


async def test_exactly_one_of_40_concurrent_acquires_wins(make_store: StoreFactory) -> None:
    store = make_store()
    runs = [new_run() for _ in range(40)]

    results = await asyncio.gather(*(store.acquire(run) for run in runs))

    winners = [result for result in results if result.acquired]
    assert len(winners) == 1
    winner = winners[0].run
    assert winner.owner == store.owner_id
    assert winner.epoch > 0
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


async def test_update_is_fenced_by_the_epoch_and_keeps_the_owner(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run
    stranger = new_run()

    with pytest.raises(LeaseLostError) as not_active:
        await store.update(stranger.model_copy(update={"status": RunStatus.RUNNING}))
    assert not_active.value.data_lost
    with pytest.raises(LeaseLostError) as stale:
        await store.update(run.model_copy(update={"epoch": run.epoch + 1}))
    assert not stale.value.data_lost
    await store.update(run.model_copy(update={"status": RunStatus.RUNNING, "owner": None}))

    active = await store.get_active()
    assert active is not None
    assert (active.run_id, active.status, active.epoch) == (
        run.run_id,
        RunStatus.RUNNING,
        run.epoch,
    )
    assert active.owner == store.owner_id


async def test_every_acquire_takes_a_higher_epoch(make_store: StoreFactory) -> None:
    store = make_store()
    epochs = []
    for _ in range(3):
        run = (await store.acquire(new_run())).run
        epochs.append(run.epoch)
        await store.finish(finished(run), final_events(run))
    assert epochs == sorted(set(epochs))


async def test_finish_applies_only_under_the_active_epoch(make_store: StoreFactory) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run

    with pytest.raises(LeaseLostError):
        await store.finish(finished(new_run()), [])
    with pytest.raises(LeaseLostError):
        await store.finish(finished(run).model_copy(update={"epoch": run.epoch + 1}), [])
    assert await store.get_active() == run

    await store.finish(finished(run), final_events(run))
    assert await store.get_active() is None
    with pytest.raises(LeaseLostError):
        await store.finish(finished(run, RunStatus.FAILED), final_events(run))
    with pytest.raises(LeaseLostError):
        await store.update(run)
    assert [r.status for r in await store.history(10)] == [RunStatus.SUCCEEDED]


async def test_finish_appends_the_final_events_to_the_run_s_log(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend()
    run = (await backend.store.acquire(new_run())).run
    first = RunEvent(type="status", run_id=run.run_id, data={"status": "running"})
    assert await backend.events.append(run.run_id, [first], epoch=run.epoch) == 1

    last = await backend.store.finish(finished(run), final_events(run), floor=1)

    entries = await backend.events.read(run.run_id)
    assert last == 3
    assert [(e.id, e.event.type) for e in entries] == [
        (1, "status"),
        (2, "status"),
        (3, "complete"),
    ]


async def test_a_finished_run_frees_the_lock(make_store: StoreFactory) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run
    await store.finish(finished(run), final_events(run))

    result = await store.acquire(new_run())

    assert result.acquired
    assert result.run.run_id != run.run_id


async def test_history_is_newest_first_and_bounded(make_store: StoreFactory) -> None:
    store = make_store(history_limit=3)
    ids = []
    for _ in range(5):
        run = (await store.acquire(new_run())).run
        await store.finish(finished(run), final_events(run))
        ids.append(run.run_id)

    assert [r.run_id for r in await store.history(10)] == ids[::-1][:3]
    assert [r.run_id for r in await store.history(2)] == ids[::-1][:2]
    assert await store.get_run(ids[0]) is None, "a run beyond the history limit is remembered"


async def test_history_forgets_runs_after_the_retention(make_store: StoreFactory) -> None:
    store = make_store(ttl_minutes=0.01)  # 0.6 s
    run = (await store.acquire(new_run())).run
    await store.finish(finished(run), final_events(run))
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

    await store.finish(old, final_events(old))

    assert await store.history(5) == []


async def test_get_run_finds_the_active_and_finished_runs(make_store: StoreFactory) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run

    assert await store.get_run(run.run_id) == run
    done = finished(run, RunStatus.CANCELLED).model_copy(update={"message": "cancelled by admin"})
    await store.finish(done, final_events(done))

    remembered = await store.get_run(run.run_id)
    assert remembered is not None
    assert (remembered.status, remembered.message) == (RunStatus.CANCELLED, "cancelled by admin")
    assert remembered.finished_at == done.finished_at
    assert await store.get_run(new_run().run_id) is None


async def test_renew_holds_for_the_epoch_of_the_active_run_only(make_store: StoreFactory) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run

    await store.renew(run.run_id, run.epoch)
    with pytest.raises(LeaseLostError):
        await store.renew(run.run_id, run.epoch + 1)
    with pytest.raises(LeaseLostError):
        await store.renew(new_run().run_id, run.epoch)
    await store.finish(finished(run), final_events(run))
    with pytest.raises(LeaseLostError):
        await store.renew(run.run_id, run.epoch)


async def test_reestablish_only_puts_back_a_run_the_store_does_not_know(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run
    assert await store.reestablish(run) is None, "re-established over an active run"
    await store.finish(finished(run), final_events(run))
    assert await store.reestablish(run) is None, "re-established a finished run"

    lost = new_run().model_copy(update={"epoch": 41})
    back = await store.reestablish(lost)

    assert back is not None and back.epoch > 41
    active = await store.get_active()
    assert active is not None and (active.run_id, active.epoch) == (lost.run_id, back.epoch)


async def test_a_run_whose_owner_lives_is_no_orphan(make_store: StoreFactory) -> None:
    store = make_store()
    run = (await store.acquire(new_run())).run

    assert await store.claim_orphan() is None
    assert await store.get_active() == run


async def test_check_reports_ok(make_store: StoreFactory) -> None:
    assert (await make_store().check()).ok
