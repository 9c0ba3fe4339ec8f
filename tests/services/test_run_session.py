"""`RunSession` built directly: one run's executor events, pushed one by one, become its
event log and its record — through a lost lease, a store outage and a failing producer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nextflow_k8s_service.executors.base import LogEmitted, StatusChanged, TaskChanged
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import RunRecord, RunStatus, TaskState, new_run_id, utcnow
from nextflow_k8s_service.services.event_log import Cursor
from nextflow_k8s_service.services.log_streamer import MAX_LINES_PER_FRAME
from nextflow_k8s_service.services.progress import ProgressTracker
from nextflow_k8s_service.services.reports import report_path
from nextflow_k8s_service.services.run_session import RunSession
from tests.services.fakes import FlakyStore, QueueExecutor

TIMEOUT = 10

SessionFactory = Callable[..., Any]


async def _acquired(store: FlakyStore, batch_count: int = 1) -> RunRecord:
    candidate = RunRecord(
        run_id=new_run_id(),
        batch_count=batch_count,
        triggered_by=None,
        executor="queue",
        progress=ProgressTracker(batch_count).progress(),
    )
    result = await store.acquire(candidate)
    assert result.acquired
    return result.run


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.store = FlakyStore()
        self.executor = QueueExecutor()
        self.metrics = Metrics()
        self.results_root = tmp_path / "results"

    async def session(self, *, batch_count: int = 1, **kwargs: Any) -> RunSession:
        return RunSession(
            record=await _acquired(self.store, batch_count),
            executor=self.executor,
            store=self.store,
            events=self.store.events,
            metrics=self.metrics,
            results_root=self.results_root,
            renew_every=kwargs.pop("renew_every", 30.0),
            **kwargs,
        )

    async def types(self, run_id: str) -> list[str]:
        return [entry.event.type for entry in await self.store.events.read(run_id)]


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


async def _finish(session: RunSession) -> RunRecord | None:
    async with asyncio.timeout(TIMEOUT):
        return await session.run()


async def test_a_run_becomes_its_events_and_its_record(harness: Harness) -> None:
    session = await harness.session(batch_count=1)
    run_id = session.run_id
    started = utcnow()
    harness.executor.push(
        run_id,
        StatusChanged(RunStatus.RUNNING),
        StatusChanged(RunStatus.RUNNING),  # no change: no frame
        TaskChanged("GENERATE", 1, TaskState.RUNNING, started_at=started),
        TaskChanged("GENERATE", 1, TaskState.RUNNING, started_at=started),  # no change
        TaskChanged("UNKNOWN", 7, TaskState.RUNNING),  # not a task of this run
        *(LogEmitted("GENERATE (1)", f"line {n}") for n in range(MAX_LINES_PER_FRAME + 1)),
        TaskChanged("GENERATE", 1, TaskState.SUCCEEDED, finished_at=started + timedelta(seconds=2)),
        # A repeated terminal transition is a change of detail, not a second duration.
        TaskChanged("GENERATE", 1, TaskState.SUCCEEDED, exit_code=0),
        StatusChanged(RunStatus.SUCCEEDED, "done"),
    )
    final = await _finish(session)
    assert final is not None and final.status == RunStatus.SUCCEEDED and final.message == "done"
    assert final.progress.tasks["GENERATE (1)"] == TaskState.SUCCEEDED
    entries = await harness.store.events.read(run_id)
    types = [entry.event.type for entry in entries]
    assert types.count("status") == 2 and types.count("task") == 3
    assert types[-2:] == ["status", "complete"] and "progress" in types
    logs = [e.event.data["lines"] for e in entries if e.event.type == "log"]
    assert [len(lines) for lines in logs] == [MAX_LINES_PER_FRAME, 1]
    assert entries[-1].event.data["report"] is None  # no report.json was written
    stored = await harness.store.get_run(run_id)
    assert stored is not None and stored.status == RunStatus.SUCCEEDED
    assert await harness.store.get_active() is None
    metrics = harness.metrics.render().decode()
    assert 'nks_task_duration_seconds_count{process="GENERATE",state="succeeded"} 1.0' in metrics
    assert 'nks_runs_finished_total{status="succeeded"} 1.0' in metrics


async def test_output_is_sent_as_it_comes(harness: Harness) -> None:
    """With no delay allowed, each burst of lines is sent once handled, before the run ends."""
    session = await harness.session(log_interval=0.0)
    run_id = session.run_id
    task = asyncio.create_task(session.run())
    harness.executor.push(run_id, LogEmitted("nextflow", "one"), LogEmitted("x", "two"))
    cursor = Cursor(markers=await harness.store.events.markers_tail(), run_id=run_id)
    async with asyncio.timeout(TIMEOUT):
        while not (batch := await harness.store.events.follow(cursor, block=1.0)).entries:
            pass
    assert [line["message"] for line in batch.entries[0].event.data["lines"]] == ["one", "two"]
    assert not task.done()
    harness.executor.push(run_id, LogEmitted("nextflow", "three"))
    harness.executor.push(run_id, StatusChanged(RunStatus.FAILED, "exit 1"))
    async with asyncio.timeout(TIMEOUT):
        final = await task
    assert final is not None and final.status == RunStatus.FAILED
    entries = await harness.store.events.read(run_id)
    logs = [e.event.data["lines"] for e in entries if e.event.type == "log"]
    assert [[line["message"] for line in lines] for lines in logs] == [["one", "two"], ["three"]]


async def test_an_executor_that_stops_reporting_ends_the_run_unknown(harness: Harness) -> None:
    session = await harness.session()
    harness.executor.push(session.run_id, StatusChanged(RunStatus.RUNNING))
    harness.executor.stop_reporting(session.run_id)
    final = await _finish(session)
    assert final is not None and final.status == RunStatus.UNKNOWN
    assert final.message == "the executor stopped reporting on the run"


async def test_a_cancelled_run_says_why_and_stops_its_running_tasks(harness: Harness) -> None:
    session = await harness.session(batch_count=2)
    run_id = session.run_id
    now = utcnow()
    harness.executor.push(
        run_id,
        StatusChanged(RunStatus.RUNNING),
        TaskChanged("GENERATE", 1, TaskState.RUNNING, started_at=now),
        TaskChanged("GENERATE", 2, TaskState.RUNNING, started_at=now),
    )
    task = asyncio.create_task(session.run())
    await harness.executor.following(run_id).wait()
    session.cancel_message = "cancelled on request"
    harness.executor.push(
        run_id,
        TaskChanged("GENERATE", 1, TaskState.CANCELLED, finished_at=now, reason="SIGTERM"),
        StatusChanged(RunStatus.CANCELLED, "killed"),
    )
    async with asyncio.timeout(TIMEOUT):
        final = await task
    assert final is not None and final.status == RunStatus.CANCELLED
    assert final.message == "cancelled on request"
    records = {r.name: r for r in final.progress.task_records}
    assert records["GENERATE (1)"].reason == "cancelled on request"  # not the executor's
    assert records["GENERATE (2)"].state == TaskState.CANCELLED  # stopped at the finish
    assert records["GENERATE (2)"].reason == "cancelled on request"
    assert records["ANALYZE (1)"].state == TaskState.PENDING  # never started: stays


async def test_a_superseded_lease_stops_the_session_without_finishing(harness: Harness) -> None:
    session = await harness.session()
    run_id = session.run_id
    harness.executor.push(run_id, StatusChanged(RunStatus.RUNNING))
    task = asyncio.create_task(session.run())
    await harness.executor.following(run_id).wait()
    epoch = harness.store.supersede(run_id)  # another replica claimed the run
    harness.executor.push(run_id, LogEmitted("nextflow", "after the takeover"))
    async with asyncio.timeout(TIMEOUT):
        assert await task is None
    assert session.writer.lost.is_set()
    active = await harness.store.get_active()
    assert active is not None and active.epoch == epoch and active.status == RunStatus.QUEUED
    assert "complete" not in await harness.types(run_id)
    assert "nks_runs_finished_total{" not in harness.metrics.render().decode()


async def test_a_run_the_store_lost_is_re_established_and_goes_on(harness: Harness) -> None:
    session = await harness.session()
    run_id = session.run_id
    first_epoch = session.record.epoch
    harness.executor.push(run_id, StatusChanged(RunStatus.RUNNING))
    task = asyncio.create_task(session.run())
    await harness.executor.following(run_id).wait()
    # The store restarts empty: no active run, no history; it is down for a moment too.
    harness.store.lose_data()
    harness.store.outage.down = True
    harness.executor.push(run_id, LogEmitted("nextflow", "across the restart"))
    await harness.store.outage.refusal()
    harness.store.outage.down = False
    harness.executor.push(run_id, StatusChanged(RunStatus.SUCCEEDED))
    async with asyncio.timeout(TIMEOUT):
        final = await task
    assert final is not None and final.status == RunStatus.SUCCEEDED
    assert final.epoch > first_epoch
    types = await harness.types(run_id)
    assert types[-2:] == ["status", "complete"]


async def test_a_store_outage_delays_the_events_but_loses_none(harness: Harness) -> None:
    session = await harness.session()
    run_id = session.run_id
    task = asyncio.create_task(session.run())
    await harness.executor.following(run_id).wait()
    harness.store.outage.down = True
    harness.executor.push(
        run_id, StatusChanged(RunStatus.RUNNING), LogEmitted("nextflow", "kept while away")
    )
    await harness.store.outage.refusal()
    await harness.store.outage.refusal()  # retried, and refused again
    assert not task.done()
    harness.executor.push(run_id, StatusChanged(RunStatus.SUCCEEDED))
    harness.store.outage.down = False
    async with asyncio.timeout(TIMEOUT):
        final = await task
    assert final is not None and final.status == RunStatus.SUCCEEDED
    entries = await harness.store.events.read(run_id)
    assert [e.event.type for e in entries] == ["status", "log", "status", "complete"]
    assert [e.id for e in entries] == [1, 2, 3, 4]


async def test_a_failing_producer_ends_the_session_with_its_error(harness: Harness) -> None:
    session = await harness.session()
    report = report_path(harness.results_root, session.run_id)
    report.mkdir(parents=True)  # a directory where the report should be: unreadable
    harness.executor.push(session.run_id, StatusChanged(RunStatus.SUCCEEDED))
    with pytest.raises(IsADirectoryError):
        await _finish(session)
    assert "complete" not in await harness.types(session.run_id)


async def test_cancelling_the_session_stops_following_and_leaves_the_run(
    harness: Harness,
) -> None:
    session = await harness.session()
    run_id = session.run_id
    harness.executor.push(run_id, StatusChanged(RunStatus.RUNNING))
    task = asyncio.create_task(session.run())
    await harness.executor.following(run_id).wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    active = await harness.store.get_active()
    assert active is not None and active.run_id == run_id
    assert "complete" not in await harness.types(run_id)


async def test_a_start_that_failed_is_shown_and_finished(harness: Harness) -> None:
    session = await harness.session()
    session.announce()
    final = await session.fail_start("no quota")
    assert final is not None and final.status == RunStatus.FAILED
    assert await harness.types(session.run_id) == ["status", "error", "status", "complete"]
    assert await harness.store.get_active() is None
