"""Follows one run: turns its executor events into run events and hands them to its writer.

A `RunSession` is the single producer of its run's events on this replica: it consumes the
executor's events, coalesces progress and log lines, keeps the run's record current and hands
everything, in order, to its `RunWriter` — the one place that appends to the run's event log.
The session never dies of a store outage (the writer rides it out); it stops when the run ends
or when the writer learns that the run's lease was taken over. Stopping to follow a run is the
executor's business: a local run is killed with its follower, a Kubernetes Job goes on (and is
never touched by a replica that lost the run).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

from nextflow_k8s_service.executors.base import (
    Executor,
    ExecutorEvent,
    LogEmitted,
    StatusChanged,
    TaskChanged,
)
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import (
    FrameType,
    RunEvent,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskState,
    utcnow,
)
from nextflow_k8s_service.services.event_log import EventLog
from nextflow_k8s_service.services.log_streamer import LogStreamer, wire_line
from nextflow_k8s_service.services.progress import ProgressTracker
from nextflow_k8s_service.services.reports import read_report, summarize
from nextflow_k8s_service.services.run_writer import RunWriter
from nextflow_k8s_service.services.state_store import StateStore
from nextflow_k8s_service.utils.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.1  # seconds: progress frames are coalesced to at most 10 a second
CONSUME_BATCH = 500  # executor events handled per wake-up, at most


class RunSession:
    """The consumer of one run's events. `run()` returns the final record, or None when the
    run was lost (another replica holds it now, or finished it). Cancelling the task running
    `run()` stops following the run without finishing it (shutdown in Kubernetes mode)."""

    def __init__(
        self,
        *,
        record: RunRecord,
        executor: Executor,
        store: StateStore,
        events: EventLog,
        metrics: Metrics,
        results_root: Path,
        renew_every: float,
        floor: int = 0,
        log_interval: float = 0.1,
    ) -> None:
        self.record = record
        self._executor = executor
        self._metrics = metrics
        self._results_root = results_root
        self.writer = RunWriter(
            record=record, store=store, events=events, renew_every=renew_every, floor=floor
        )
        self._tracker = ProgressTracker(record.batch_count, record.progress)
        self._logs = LogStreamer(interval=log_interval)
        self._progress_dirty = False
        self._progress_sent_at = 0.0
        self._finishing = False
        self._timed: set[str] = set()
        self.cancel_message: str | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def announce(self) -> None:
        """Tell every watcher that the run exists (status `queued`), before it is started."""
        self._emit("status", {"status": self.record.status.value, "message": None})

    async def fail_start(self, message: str) -> RunRecord | None:
        """The executor could not start the run: show the error and finish it `failed`."""
        self._emit("error", {"stage": "start", "message": message})
        return await self.finish_now(RunStatus.FAILED, message)

    async def finish_now(self, status: RunStatus, message: str | None) -> RunRecord | None:
        """Finish the run without (further) executor events; None if the run was lost."""
        await self._finish(status, message)
        tasks = TaskSupervisor(f"run-session-{self.run_id}")
        try:
            return await self._write_out(tasks)
        finally:
            await tasks.close()

    async def run(self) -> RunRecord | None:
        queue: asyncio.Queue[ExecutorEvent | None] = asyncio.Queue()
        tasks = TaskSupervisor(f"run-session-{self.run_id}")
        try:
            tasks.spawn(f"executor-events-{self.run_id}", self._pump(queue))
            consume = tasks.spawn(f"consume-{self.run_id}", self._consume(queue))
            return await self._write_out(tasks, consume)
        finally:
            await tasks.close()

    async def _write_out(
        self, tasks: TaskSupervisor, producer: asyncio.Task[None] | None = None
    ) -> RunRecord | None:
        """Run the writer until the finish is stored (the final record) or the run is lost
        (None); a producer that fails ends the writing with its exception. The caller's
        `tasks` own the writer (and the producer) and stop them on the way out."""
        writer = tasks.spawn(f"writer-{self.run_id}", self.writer.run())
        waiting: set[asyncio.Task[None]] = {writer}
        if producer is not None:
            waiting.add(producer)
        while True:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if writer in done:
                writer.result()
                break
            if producer is not None and producer in done:
                producer.result()
                waiting.discard(producer)
        if self.writer.lost.is_set():
            logger.warning("run %s is no longer this replica's; stopped following it", self.run_id)
            return None
        self._metrics.runs_finished.labels(self.record.status.value).inc()
        if self.record.duration_seconds is not None:
            self._metrics.run_duration.labels(self.record.status.value).observe(
                self.record.duration_seconds
            )
        logger.info("run %s finished: %s", self.run_id, self.record.status.value)
        return self.record

    async def _pump(self, queue: asyncio.Queue[ExecutorEvent | None]) -> None:
        try:
            async for event in self._executor.events(self.run_id):
                queue.put_nowait(event)
        finally:
            queue.put_nowait(None)

    async def _consume(self, queue: asyncio.Queue[ExecutorEvent | None]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            timeout = self._next_flush_in(loop.time())
            try:
                async with asyncio.timeout(timeout):
                    event = await queue.get()
            except TimeoutError:
                # Python 3.11's asyncio.timeout turns a cancellation that lands together with
                # the deadline into TimeoutError: a session being cancelled must still stop.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise asyncio.CancelledError from None
                self._flush(loop.time())
                continue
            # Everything already queued is handled in this pass: one timer per burst of
            # output, not one per line.
            batch = [event]
            while len(batch) < CONSUME_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            for event in batch:
                if event is None:
                    await self._finish(
                        RunStatus.UNKNOWN, "the executor stopped reporting on the run"
                    )
                    return
                if isinstance(event, StatusChanged) and event.status.terminal:
                    await self._finish(event.status, event.message)
                    return
                self._handle(event, loop.time())
            if self._next_flush_in(loop.time()) == 0.0:
                self._flush(loop.time())  # due while a steady stream kept the queue full

    def _handle(self, event: ExecutorEvent, now: float) -> None:
        """Apply one non-terminal executor event."""
        if isinstance(event, LogEmitted):
            self._logs.add(event)
            if self._logs.full():
                self._flush_logs()
        elif isinstance(event, TaskChanged):
            if event.state is TaskState.CANCELLED and self.cancel_message:
                # Why the run stopped (a request, a shutdown) is known here, not below.
                event = dataclasses.replace(event, reason=self.cancel_message)
            self._task_changed(self._tracker.apply(event))
        elif isinstance(event, StatusChanged):
            self._flush(now, force=True)
            self._set_status(event.status, event.message)

    def _task_changed(self, record: TaskRecord | None) -> None:
        """One task moved: a `task` frame now, progress (coalesced) soon, its duration timed."""
        if record is None:
            return
        self._progress_dirty = True
        self._metrics.tasks.labels(record.process, record.state.value).inc()
        duration = record.duration_seconds
        if record.state.terminal and duration is not None and record.name not in self._timed:
            self._timed.add(record.name)
            self._metrics.task_duration.labels(record.process, record.state.value).observe(duration)
        self._emit("task", record.model_dump(mode="json"))

    def _next_flush_in(self, now: float) -> float | None:
        waits = []
        log_wait = self._logs.seconds_until_due()
        if log_wait is not None:
            waits.append(log_wait)
        if self._progress_dirty:
            waits.append(max(0.0, self._progress_sent_at + PROGRESS_INTERVAL - now))
        return min(waits) if waits else None

    def _flush(self, now: float, *, force: bool = False) -> None:
        if force or self._logs.seconds_until_due() == 0.0:
            self._flush_logs()
        if self._progress_dirty and (force or now >= self._progress_sent_at + PROGRESS_INTERVAL):
            self._send_progress(now)

    def _flush_logs(self) -> None:
        for lines in self._logs.take():
            # Log lines leave the run as it was: no copy of it (with every task record) in each
            # of the log's most numerous entries.
            data = {"lines": [wire_line(line) for line in lines]}
            self.writer.emit(RunEvent(type="log", run_id=self.run_id, data=data))

    def _send_progress(self, now: float) -> None:
        self._progress_dirty = False
        self._progress_sent_at = now
        self.record.progress = self._tracker.progress()
        self.writer.save()
        # The task records travel as `task` frames; repeating all of them ten times a second
        # to every client would multiply the stream's volume for nothing.
        progress = self.record.progress.model_dump(mode="json", exclude={"task_records"})
        self._emit("progress", progress)

    def _set_status(self, status: RunStatus, message: str | None) -> None:
        if status == self.record.status and message == self.record.message:
            return
        self.record.status = status
        self.record.message = message
        self.writer.save()
        self._emit("status", {"status": status.value, "message": message})

    async def _finish(self, status: RunStatus, message: str | None) -> None:
        """Queue the finish: the record (terminal), its last `status` and its one `complete`."""
        if self._finishing:
            return
        self._finishing = True
        if status == RunStatus.CANCELLED and self.cancel_message:
            message = self.cancel_message
        if status == RunStatus.CANCELLED:
            for record in self._tracker.stop_unfinished(message or "cancelled"):
                self._task_changed(record)
        self._flush(asyncio.get_running_loop().time(), force=True)
        report = None
        if status == RunStatus.SUCCEEDED:
            loaded = await read_report(self._results_root, self.run_id)
            report = summarize(loaded, self.run_id) if loaded is not None else None
        self.record.status = status
        self.record.message = message
        self.record.finished_at = utcnow()
        self.record.progress = self._tracker.progress()
        complete = {
            "status": status.value,
            "duration_seconds": self.record.duration_seconds,
            "report": report,
        }
        self.writer.finish(
            [
                self._event("status", {"status": status.value, "message": message}),
                self._event("complete", complete),
            ]
        )

    def _emit(self, type_: FrameType, data: dict[str, Any]) -> None:
        self.writer.emit(self._event(type_, data))

    def _event(self, type_: FrameType, data: dict[str, Any]) -> RunEvent:
        return RunEvent(type=type_, run_id=self.run_id, data=data, run=self.record.detail())
