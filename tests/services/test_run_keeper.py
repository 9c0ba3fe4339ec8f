"""`RunKeeper` built directly: adopting or ending the runs other replicas left, cancel markers,
and shutdown in both executor modes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from nextflow_k8s_service.errors import ExecutorOperationError, ExecutorUnavailableError
from nextflow_k8s_service.executors.base import StatusChanged
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import RunEvent, RunRecord, RunStatus, new_run_id, utcnow
from nextflow_k8s_service.services import run_keeper
from nextflow_k8s_service.services.event_log import Cursor
from nextflow_k8s_service.services.progress import ProgressTracker
from nextflow_k8s_service.services.run_keeper import RunKeeper
from tests.conftest import SettingsFactory
from tests.services.fakes import FlakyStore, QueueExecutor

TIMEOUT = 10
KeeperFactory = Callable[..., RunKeeper]


@pytest.fixture
async def make_keeper(make_settings: SettingsFactory) -> AsyncIterator[KeeperFactory]:
    keepers: list[RunKeeper] = []

    def make(store: FlakyStore, executor: QueueExecutor, **kwargs: Any) -> RunKeeper:
        keeper = RunKeeper(
            settings=make_settings(),
            store=store,
            events=store.events,
            executor=executor,
            metrics=Metrics(),
            **kwargs,
        )
        keepers.append(keeper)
        return keeper

    yield make
    for keeper in keepers:
        await keeper.aclose()


async def _orphan(store: FlakyStore, *, log_at: str | None = None) -> RunRecord:
    """A run another replica started (and, with `log_at`, logged a line of), now claimable."""
    candidate = RunRecord(
        run_id=new_run_id(),
        batch_count=1,
        triggered_by=None,
        executor="queue",
        progress=ProgressTracker(1).progress(),
    )
    run = (await store.acquire(candidate)).run
    if log_at is not None:
        line = {"timestamp": log_at, "source": "nextflow", "message": "before the crash"}
        event = RunEvent(type="log", run_id=run.run_id, data={"lines": [line]}, run=run.detail())
        await store.events.append(run.run_id, [event], epoch=run.epoch)
    store.orphan = run
    return run


async def _ended(store: FlakyStore, run_id: str) -> RunRecord:
    """The record of run `run_id` once it ended (the end marker of the log says when)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            tail = await store.events.markers_tail()
            run = await store.get_run(run_id)
            if run is not None and run.status.terminal:
                return run
            await store.events.follow(Cursor(markers=tail), block=1.0)


async def test_an_orphan_the_executor_still_has_is_adopted_and_followed(
    make_keeper: KeeperFactory,
) -> None:
    store, executor = FlakyStore(), QueueExecutor()
    logged = utcnow().isoformat()
    run = await _orphan(store, log_at=logged)
    executor.adoptable.add(run.run_id)
    keeper = make_keeper(store, executor)
    await keeper.start()
    assert [(run_id, at.isoformat() if at else None) for run_id, at in executor.adopted] == [
        (run.run_id, logged)
    ]
    assert keeper.run_ids == {run.run_id}
    executor.push(run.run_id, StatusChanged(RunStatus.SUCCEEDED))
    assert (await _ended(store, run.run_id)).status == RunStatus.SUCCEEDED
    entries = await store.events.read(run.run_id)
    assert [e.id for e in entries] == [1, 2, 3]  # the ids go on after the earlier owner's


async def test_an_orphan_the_executor_lost_is_ended_unknown(make_keeper: KeeperFactory) -> None:
    store, executor = FlakyStore(), QueueExecutor()
    run = await _orphan(store)
    keeper = make_keeper(store, executor)
    await keeper.start()
    ended = await store.get_run(run.run_id)
    assert ended is not None and ended.status == RunStatus.UNKNOWN
    assert ended.message is not None and "stopped renewing its lease" in ended.message
    assert keeper.run_ids == set()


async def test_an_orphan_that_cannot_be_checked_is_left_for_later(
    make_keeper: KeeperFactory,
) -> None:
    store, executor = FlakyStore(), QueueExecutor()
    run = await _orphan(store)
    executor.adopt_error = ExecutorUnavailableError("api server down")
    keeper = make_keeper(store, executor)
    await keeper.start()
    active = await store.get_active()
    assert active is not None and active.run_id == run.run_id
    assert active.status == RunStatus.QUEUED and keeper.run_ids == set()


async def test_housekeeping_rides_out_a_store_outage(
    make_keeper: KeeperFactory, caplog: pytest.LogCaptureFixture
) -> None:
    store, executor = FlakyStore(), QueueExecutor()
    store.outage.down = True
    keeper = make_keeper(store, executor, housekeeping_interval=0.01)
    await keeper.start()  # does not fail: reconciles later
    await store.outage.refusal()  # housekeeping tried, and was refused
    store.outage.down = False
    run = await _orphan(store)
    executor.adoptable.add(run.run_id)
    async with asyncio.timeout(TIMEOUT):
        await executor.following(run.run_id).wait()
    assert keeper.run_ids == {run.run_id}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("state store unavailable at start-up" in w for w in warnings)
    assert any("housekeeping: state store unavailable" in w for w in warnings)


async def test_a_cancel_marker_cancels_a_run_this_replica_follows(
    make_keeper: KeeperFactory, caplog: pytest.LogCaptureFixture
) -> None:
    store, executor = FlakyStore(), QueueExecutor()
    run = await _orphan(store)
    executor.adoptable.add(run.run_id)
    keeper = make_keeper(store, executor)
    await keeper.start()
    keeper.on_cancel_requested("some-other-run")  # not this replica's: nothing happens
    executor.cancel_error = ExecutorOperationError("api server busy")
    keeper.on_cancel_requested(run.run_id)
    async with asyncio.timeout(TIMEOUT):
        await executor.cancel_asked.wait()
    await asyncio.sleep(0)  # the cancel task logs as its call raises, then ends
    assert any("could not cancel run" in r.getMessage() for r in caplog.records)
    executor.cancel_error = None
    keeper.on_cancel_requested(run.run_id)
    ended = await _ended(store, run.run_id)
    assert ended.status == RunStatus.CANCELLED and ended.message == "cancelled on request"
    assert executor.cancelled == [run.run_id]


async def test_shutdown_releases_runs_that_outlive_the_process(
    make_keeper: KeeperFactory,
) -> None:
    store, executor = FlakyStore(), QueueExecutor(runs_outlive_service=True)
    run = await _orphan(store)
    executor.adoptable.add(run.run_id)
    keeper = make_keeper(store, executor)
    await keeper.start()
    await keeper.aclose()
    assert [run_id for run_id, _ in store.released] == [run.run_id]
    assert executor.cancelled == []
    active = await store.get_active()
    assert active is not None and not active.status.terminal


async def test_shutdown_logs_a_local_run_that_will_not_stop(
    make_keeper: KeeperFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_keeper, "SHUTDOWN_CANCEL_SECONDS", 0.1)
    store, executor = FlakyStore(), QueueExecutor()
    executor.confirm_cancel = False
    run = await _orphan(store)
    executor.adoptable.add(run.run_id)
    keeper = make_keeper(store, executor)
    await keeper.start()
    await keeper.aclose()
    assert executor.cancelled == [run.run_id]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"run session run-{run.run_id} did not end after cancel"]
