"""`PipelineManager` built directly (with its keeper and relay) over an executor the test
drives event by event and a memory store the test can take down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.errors import (
    ExecutorOperationError,
    ExecutorStartError,
    ExecutorUnavailableError,
    ForbiddenError,
    NoActiveRunError,
    ReportNotFoundError,
    RunNotFoundError,
    ShuttingDownError,
    StoreUnavailableError,
)
from nextflow_k8s_service.executors.base import LogEmitted, StatusChanged
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import CheckResult, RunRecord, RunStatus, new_run_id
from nextflow_k8s_service.services import pipeline_manager
from nextflow_k8s_service.services.event_log import Cursor
from nextflow_k8s_service.services.event_relay import EventRelay
from nextflow_k8s_service.services.live_view import LiveView
from nextflow_k8s_service.services.pipeline_manager import PipelineManager
from nextflow_k8s_service.services.progress import ProgressTracker
from nextflow_k8s_service.services.reports import report_path
from nextflow_k8s_service.services.run_keeper import RunKeeper
from nextflow_k8s_service.utils.broadcaster import Broadcaster, Subscription
from tests.conftest import SettingsFactory
from tests.services.fakes import FlakyStore, QueueExecutor

TIMEOUT = 10


@dataclass
class Replica:
    manager: PipelineManager
    settings: Settings
    store: FlakyStore
    executor: QueueExecutor
    broadcaster: Broadcaster
    view: LiveView
    metrics: Metrics
    frames: Subscription

    async def until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The next frame of the stream that satisfies `predicate`."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                sent = await self.frames.next_frame()
                assert sent is not None, "the stream closed"
                frame: dict[str, Any] = json.loads(sent.text)
                if predicate(frame):
                    return frame


ReplicaFactory = Callable[..., Any]


@pytest.fixture
async def make_replica(make_settings: SettingsFactory) -> AsyncIterator[ReplicaFactory]:
    """Build the services of one replica, started; everything is closed at the end."""
    async with AsyncExitStack() as stack:

        async def make(
            *, store: FlakyStore | None = None, executor: QueueExecutor | None = None, **kw: Any
        ) -> Replica:
            settings = make_settings(**kw)
            store = store or FlakyStore()
            executor = executor or QueueExecutor()
            metrics = Metrics()
            view = LiveView()
            broadcaster = Broadcaster(max_clients=10, queue_frames=10_000, metrics=metrics)
            keeper = RunKeeper(
                settings=settings,
                store=store,
                events=store.events,
                executor=executor,
                metrics=metrics,
            )
            relay = EventRelay(
                events=store.events,
                store=store,
                view=view,
                broadcaster=broadcaster,
                on_cancel=keeper.on_cancel_requested,
                block=0.5,
            )
            manager = PipelineManager(
                settings=settings,
                store=store,
                events=store.events,
                executor=executor,
                keeper=keeper,
                relay=relay,
                metrics=metrics,
            )
            stack.push_async_callback(manager.aclose)
            await manager.start_background()
            frames = await stack.enter_async_context(broadcaster.subscribe(view.snapshot))
            return Replica(manager, settings, store, executor, broadcaster, view, metrics, frames)

        yield make


def _status(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["type"] == "status" and f["data"]["status"] == status


def _complete(frame: dict[str, Any]) -> bool:
    return bool(frame["type"] == "complete")


async def test_a_run_starts_streams_and_finishes(make_replica: ReplicaFactory) -> None:
    replica: Replica = await make_replica()
    outcome = await replica.manager.start(batch_count=2, triggered_by="test")
    run_id = outcome.run.run_id
    assert not outcome.attached and outcome.cancel_token
    assert outcome.run.status == RunStatus.QUEUED
    assert [spec.run_id for spec in replica.executor.started] == [run_id]
    await replica.until(_status("queued"))
    replica.executor.push(
        run_id,
        StatusChanged(RunStatus.RUNNING),
        LogEmitted("nextflow", "hello"),
    )
    await replica.until(_status("running"))
    log = await replica.until(lambda f: f["type"] == "log")
    assert [line["message"] for line in log["data"]["lines"]] == ["hello"]
    assert await replica.manager.get_status() == (True, await replica.store.get_active())
    replica.executor.push(run_id, StatusChanged(RunStatus.SUCCEEDED))
    complete = await replica.until(_complete)
    assert complete["data"]["status"] == "succeeded"
    active, last = await replica.manager.get_status()
    assert not active and last is not None and last.run_id == run_id
    assert (await replica.manager.get_run(run_id)).status == RunStatus.SUCCEEDED
    assert [run.run_id for run in await replica.manager.history(100)] == [run_id]
    assert b"nks_runs_started_total 1.0" in replica.metrics.render()


async def test_a_second_start_attaches_to_the_run_in_progress(
    make_replica: ReplicaFactory,
) -> None:
    replica: Replica = await make_replica()
    # Both pass the fast path before either acquires: the store decides, one attaches.
    first, second = await asyncio.gather(
        replica.manager.start(batch_count=1, triggered_by=None),
        replica.manager.start(batch_count=3, triggered_by=None),
    )
    assert [first.attached, second.attached] == [False, True]
    assert second.run.run_id == first.run.run_id and second.cancel_token is None
    later = await replica.manager.start(batch_count=2, triggered_by=None)
    assert later.attached and later.run.run_id == first.run.run_id
    assert len(replica.executor.started) == 1


@pytest.mark.parametrize(
    ("error", "raised", "message"),
    [
        (ExecutorStartError("quota exceeded"), ExecutorStartError, "quota exceeded"),
        (ExecutorUnavailableError("api down"), ExecutorUnavailableError, "api down"),
        (ValueError("boom"), ExecutorStartError, "the executor could not start the run: boom"),
    ],
)
async def test_a_launch_failure_records_the_run_failed_and_frees_the_lock(
    make_replica: ReplicaFactory, error: Exception, raised: type[Exception], message: str
) -> None:
    replica: Replica = await make_replica()
    replica.executor.start_error = error
    with pytest.raises(raised, match=message):
        await replica.manager.start(batch_count=1, triggered_by=None)
    error_frame = await replica.until(lambda f: f["type"] == "error")
    assert error_frame["data"] == {"stage": "start", "message": message}
    complete = await replica.until(_complete)
    assert complete["data"]["status"] == "failed"
    assert await replica.manager.get_active() is None
    (run,) = await replica.manager.history(5)
    assert run.status == RunStatus.FAILED and run.message == message
    # The lock is free again: the next start is a new run.
    replica.executor.start_error = None
    outcome = await replica.manager.start(batch_count=1, triggered_by=None)
    assert not outcome.attached and outcome.run.run_id != run.run_id


async def test_starts_are_refused_while_draining(make_replica: ReplicaFactory) -> None:
    replica: Replica = await make_replica()
    await replica.manager.aclose()
    with pytest.raises(ShuttingDownError):
        await replica.manager.start(batch_count=1, triggered_by=None)


async def test_cancel_with_the_token_ends_the_run_cancelled(make_replica: ReplicaFactory) -> None:
    replica: Replica = await make_replica()
    outcome = await replica.manager.start(batch_count=2, triggered_by=None)
    run_id = outcome.run.run_id
    replica.executor.push(run_id, StatusChanged(RunStatus.RUNNING))
    await replica.until(_status("running"))
    with pytest.raises(ForbiddenError):
        await replica.manager.cancel(cancel_token="wrong", admin_token=None)
    with pytest.raises(ForbiddenError):
        await replica.manager.cancel(cancel_token=None, admin_token="no admin token is set")
    final = await replica.manager.cancel(cancel_token=outcome.cancel_token, admin_token=None)
    assert final.status == RunStatus.CANCELLED and final.message == "cancelled on request"
    assert replica.executor.cancelled == [run_id]
    assert await replica.manager.get_active() is None
    with pytest.raises(NoActiveRunError):
        await replica.manager.cancel(cancel_token=outcome.cancel_token, admin_token=None)


async def test_the_admin_token_cancels_any_run(make_replica: ReplicaFactory) -> None:
    replica: Replica = await make_replica(admin_token="s3cret-admin-token")
    run_id = (await replica.manager.start(batch_count=1, triggered_by=None)).run.run_id
    final = await replica.manager.cancel(cancel_token=None, admin_token="s3cret-admin-token")
    assert final.run_id == run_id and final.status == RunStatus.CANCELLED


async def test_a_cancel_the_executor_never_confirms_is_forced(
    make_replica: ReplicaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_manager, "CANCEL_CONFIRM_SECONDS", 0.2)
    replica: Replica = await make_replica()
    replica.executor.confirm_cancel = False
    outcome = await replica.manager.start(batch_count=2, triggered_by=None)
    run_id = outcome.run.run_id
    replica.executor.push(run_id, StatusChanged(RunStatus.RUNNING))
    await replica.until(_status("running"))
    final = await replica.manager.cancel(cancel_token=outcome.cancel_token, admin_token=None)
    assert final.status == RunStatus.CANCELLED
    assert final.message == "cancelled on request; the executor did not confirm"
    complete = await replica.until(_complete)
    assert complete["data"]["status"] == "cancelled"
    assert await replica.manager.get_active() is None
    # The executor's late confirmation changes nothing: the run was finished exactly once.
    replica.executor.push(run_id, StatusChanged(RunStatus.CANCELLED))
    await replica.executor.following(run_id).wait()
    entries = await replica.store.events.read(run_id)
    assert [e.event.type for e in entries].count("complete") == 1


async def test_a_run_this_replica_does_not_follow_is_cancelled_through_the_log(
    make_replica: ReplicaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner of the run is gone (nobody answers the cancel marker): ended here."""
    monkeypatch.setattr(pipeline_manager, "CANCEL_CONFIRM_SECONDS", 0.2)
    replica: Replica = await make_replica(admin_token="s3cret-admin-token")
    foreign = RunRecord(
        run_id=new_run_id(),
        batch_count=1,
        triggered_by=None,
        executor="queue",
        progress=ProgressTracker(1).progress(),
    )
    assert (await replica.store.acquire(foreign)).acquired
    final = await replica.manager.cancel(cancel_token=None, admin_token="s3cret-admin-token")
    assert final.run_id == foreign.run_id and final.status == RunStatus.CANCELLED
    assert replica.executor.cancelled == []  # not this replica's run to stop
    markers = await replica.store.events.follow(Cursor(markers="0"), block=0)
    assert ("cancel", foreign.run_id) in [(m.kind, m.run_id) for m in markers.markers]


async def test_cancel_of_a_run_the_store_forgot_returns_the_run_it_cancelled(
    make_replica: ReplicaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keeping no history, the store forgets the run and its log as it ends: the relay never
    # sees its `complete`, the wait runs out, and the run is gone from the store.
    monkeypatch.setattr(pipeline_manager, "CANCEL_CONFIRM_SECONDS", 0.2)
    replica: Replica = await make_replica(store=FlakyStore(history_limit=0))
    outcome = await replica.manager.start(batch_count=1, triggered_by=None)
    final = await replica.manager.cancel(cancel_token=outcome.cancel_token, admin_token=None)
    assert final.run_id == outcome.run.run_id
    assert await replica.manager.get_active() is None


async def test_queries_of_unknown_runs_and_reports(make_replica: ReplicaFactory) -> None:
    replica: Replica = await make_replica()
    assert await replica.manager.get_status() == (False, None)
    assert (await replica.manager.readiness())["unclaimed_runs"].detail == "none"
    for bad in ("not-a-run-id", new_run_id()):
        with pytest.raises(RunNotFoundError):
            await replica.manager.get_run(bad)
        with pytest.raises(ReportNotFoundError):
            await replica.manager.get_report(bad)


async def test_a_succeeded_run_carries_its_report(make_replica: ReplicaFactory) -> None:
    replica: Replica = await make_replica()
    run_id = (await replica.manager.start(batch_count=1, triggered_by=None)).run.run_id
    path = report_path(replica.settings.results_root, run_id)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"totals": {"count": 3}, "batches": [{"batch": 1, "count": 3}]}))
    replica.executor.push(run_id, StatusChanged(RunStatus.SUCCEEDED))
    complete = await replica.until(_complete)
    assert complete["data"]["report"]["totals"] == {"count": 3}
    assert (await replica.manager.get_report(run_id))["totals"] == {"count": 3}


async def test_readiness_reports_each_check(make_replica: ReplicaFactory) -> None:
    executor = QueueExecutor()
    replica: Replica = await make_replica(executor=executor)
    run_id = (await replica.manager.start(batch_count=1, triggered_by=None)).run.run_id
    executor.orphans = [run_id, "nextflow-stray"]
    checks = await replica.manager.readiness()
    assert checks["state_store"].ok and checks["executor"].ok
    assert checks["unclaimed_runs"].detail == "unclaimed: nextflow-stray"
    executor.orphans = []
    assert (await replica.manager.readiness())["unclaimed_runs"].detail == "none"
    executor.orphans_error = ExecutorOperationError("forbidden", status=403)
    unclaimed = (await replica.manager.readiness())["unclaimed_runs"]
    assert unclaimed.ok and unclaimed.detail == "could not list: forbidden"


async def test_readiness_with_a_backend_that_does_not_answer(
    make_replica: ReplicaFactory,
) -> None:
    executor = QueueExecutor()
    replica: Replica = await make_replica(executor=executor)
    executor.check_gate = asyncio.Event()
    executor.orphans_gate = asyncio.Event()
    replica.store.outage.down = True
    checks = await replica.manager.readiness(deadline=0.1)
    assert not checks["state_store"].ok
    assert checks["executor"] == CheckResult(ok=False, detail="no answer within 0.1 s")
    # The unclaimed check never fails readiness.
    assert checks["unclaimed_runs"] == CheckResult(
        ok=True, detail="could not list: no answer within 0.1 s"
    )
    executor.orphans_gate.set()
    # Without the store it lists what it can.
    assert (await replica.manager.readiness())["unclaimed_runs"].detail == "none"
    executor.check_gate.set()
    replica.store.outage.down = False


async def test_a_store_outage_mid_run_loses_nothing(make_replica: ReplicaFactory) -> None:
    replica: Replica = await make_replica()
    run_id = (await replica.manager.start(batch_count=1, triggered_by=None)).run.run_id
    replica.executor.push(run_id, StatusChanged(RunStatus.RUNNING))
    await replica.until(_status("running"))
    replica.store.outage.down = True
    await replica.store.outage.refusal()  # the relay's read is refused
    replica.executor.push(run_id, LogEmitted("nextflow", "during the outage"))
    await replica.store.outage.refusal()  # so are the writer's appends
    replica.executor.push(run_id, StatusChanged(RunStatus.SUCCEEDED))
    replica.store.outage.down = False
    log = await replica.until(lambda f: f["type"] == "log")
    assert [line["message"] for line in log["data"]["lines"]] == ["during the outage"]
    assert (await replica.until(_complete))["data"]["status"] == "succeeded"
    assert (await replica.manager.get_run(run_id)).status == RunStatus.SUCCEEDED


async def test_a_start_during_a_store_outage_is_refused_cleanly(
    make_replica: ReplicaFactory,
) -> None:
    replica: Replica = await make_replica()
    replica.store.outage.down = True
    with pytest.raises(StoreUnavailableError):
        await replica.manager.start(batch_count=1, triggered_by=None)
    with pytest.raises(StoreUnavailableError):
        await replica.manager.cancel(cancel_token="x", admin_token=None)
    replica.store.outage.down = False
    assert replica.executor.started == []


async def test_shutdown_cancels_local_runs_and_records_them(make_replica: ReplicaFactory) -> None:
    replica: Replica = await make_replica()
    run_id = (await replica.manager.start(batch_count=1, triggered_by=None)).run.run_id
    replica.executor.push(run_id, StatusChanged(RunStatus.RUNNING))
    await replica.until(_status("running"))
    await replica.manager.aclose()
    run = await replica.store.get_run(run_id)
    assert run is not None and run.status == RunStatus.CANCELLED
    assert run.message == "cancelled: the service shut down"
