"""Follows one run: consumes its executor events, keeps the store current, publishes events.

A `RunSession` is the single writer of its run. Every write is compare-and-set on the run id,
so once the run is no longer the active one (finished elsewhere, or declared lost after its
lease ran out) the session stops and cancels what is left of the run instead of touching a
newer run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from nextflow_k8s_service.errors import StoreUnavailableError
from nextflow_k8s_service.executors.base import (
    Executor,
    ExecutorEvent,
    LogEmitted,
    StatusChanged,
    TaskChanged,
)
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import FrameType, RelayMessage, RunRecord, RunStatus, utcnow
from nextflow_k8s_service.services.log_streamer import LogStreamer, wire_line
from nextflow_k8s_service.services.progress import ProgressTracker
from nextflow_k8s_service.services.reports import read_report, summarize
from nextflow_k8s_service.services.state_store import StateStore

logger = logging.getLogger(__name__)

T = TypeVar("T")

PROGRESS_INTERVAL = 0.1  # seconds: progress frames are coalesced to at most 10 a second
CONSUME_BATCH = 500  # executor events handled per wake-up, at most
STORE_RETRY_SECONDS = 30.0  # how long a store outage is ridden out before the run is given up


class RunSupersededError(Exception):
    """The run is no longer the store's active run; its session must stop writing."""


class RunSession:
    """The consumer of one run's events. `run()` returns the final record, or None when the
    run was superseded (someone else finished it). Cancelling the task running `run()` stops
    following the run without finishing it (shutdown in Kubernetes mode: the Job carries on)."""

    def __init__(
        self,
        *,
        record: RunRecord,
        executor: Executor,
        store: StateStore,
        metrics: Metrics,
        results_root: Path,
        log_interval: float = 0.1,
    ) -> None:
        self.record = record
        self._executor = executor
        self._store = store
        self._metrics = metrics
        self._results_root = results_root
        self._tracker = ProgressTracker(record.batch_count, record.progress)
        self._logs = LogStreamer(interval=log_interval)
        self._progress_dirty = False
        self._progress_sent_at = 0.0
        self.cancel_message: str | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    async def announce(self) -> None:
        """Tell every watcher that the run exists (status `queued`), before it is started."""
        await self._emit("status", {"status": self.record.status.value, "message": None})

    async def fail_start(self, message: str) -> None:
        """The executor could not start the run: show the error and finish it `failed`."""
        await self._emit("error", {"stage": "start", "message": message})
        await self.finish_now(RunStatus.FAILED, message)

    async def finish_now(self, status: RunStatus, message: str | None) -> RunRecord | None:
        """Finish the run without (further) executor events; None if it was not active."""
        try:
            return await self._finish(status, message)
        except RunSupersededError:
            return None

    async def run(self) -> RunRecord | None:
        queue: asyncio.Queue[ExecutorEvent | None] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(queue), name=f"executor-events-{self.run_id}")
        try:
            return await self._consume(queue)
        except RunSupersededError:
            logger.warning("run %s is no longer the active run; stopping it", self.run_id)
            await self._executor.cancel(self.run_id)
            return None
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _pump(self, queue: asyncio.Queue[ExecutorEvent | None]) -> None:
        try:
            async for event in self._executor.events(self.run_id):
                queue.put_nowait(event)
        finally:
            queue.put_nowait(None)

    async def _consume(self, queue: asyncio.Queue[ExecutorEvent | None]) -> RunRecord | None:
        loop = asyncio.get_running_loop()
        while True:
            timeout = self._next_flush_in(loop.time())
            try:
                async with asyncio.timeout(timeout):
                    event = await queue.get()
            except TimeoutError:
                await self._flush(loop.time())
                continue
            # Everything already queued is handled in this pass: one timer per burst of
            # output, not one per line.
            batch = [event]
            while len(batch) < CONSUME_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            for event in batch:
                if event is None:
                    return await self._finish(
                        RunStatus.UNKNOWN, "the executor stopped reporting on the run"
                    )
                if isinstance(event, StatusChanged) and event.status.terminal:
                    return await self._finish(event.status, event.message)
                await self._handle(event, loop.time())
            if self._next_flush_in(loop.time()) == 0.0:
                await self._flush(loop.time())  # due while a steady stream kept the queue full

    async def _handle(self, event: ExecutorEvent, now: float) -> None:
        """Apply one non-terminal executor event."""
        if isinstance(event, LogEmitted):
            self._logs.add(event)
            if self._logs.full():
                await self._flush_logs()
        elif isinstance(event, TaskChanged):
            self._progress_dirty |= self._tracker.apply(event)
        elif isinstance(event, StatusChanged):
            await self._flush(now, force=True)
            await self._set_status(event.status, event.message)

    def _next_flush_in(self, now: float) -> float | None:
        waits = []
        log_wait = self._logs.seconds_until_due()
        if log_wait is not None:
            waits.append(log_wait)
        if self._progress_dirty:
            waits.append(max(0.0, self._progress_sent_at + PROGRESS_INTERVAL - now))
        return min(waits) if waits else None

    async def _flush(self, now: float, *, force: bool = False) -> None:
        if force or self._logs.seconds_until_due() == 0.0:
            await self._flush_logs()
        if self._progress_dirty and (force or now >= self._progress_sent_at + PROGRESS_INTERVAL):
            await self._send_progress(now)

    async def _flush_logs(self) -> None:
        for lines in self._logs.take():
            await self._retry(self._store.append_logs, self.run_id, lines)
            await self._emit("log", {"lines": [wire_line(line) for line in lines]})

    async def _send_progress(self, now: float) -> None:
        self._progress_dirty = False
        self._progress_sent_at = now
        self.record.progress = self._tracker.progress()
        await self._write()
        await self._emit("progress", self.record.progress.model_dump(mode="json"))

    async def _set_status(self, status: RunStatus, message: str | None) -> None:
        if status == self.record.status and message == self.record.message:
            return
        self.record.status = status
        self.record.message = message
        await self._write()
        await self._emit("status", {"status": status.value, "message": message})

    async def _finish(self, status: RunStatus, message: str | None) -> RunRecord | None:
        loop = asyncio.get_running_loop()
        await self._flush(loop.time(), force=True)
        if status == RunStatus.CANCELLED and self.cancel_message:
            message = self.cancel_message
        report = None
        if status == RunStatus.SUCCEEDED:
            loaded = await read_report(self._results_root, self.run_id)
            report = summarize(loaded, self.run_id) if loaded is not None else None
        self.record.status = status
        self.record.message = message
        self.record.finished_at = utcnow()
        self.record.progress = self._tracker.progress()
        # The record is stored as finished (compare-and-set) before anyone is told, so a
        # client that reacts to `complete` by asking for the status sees the final state.
        if not await self._store_finished():
            raise RunSupersededError
        self._metrics.runs_finished.labels(status.value).inc()
        await self._emit("status", {"status": status.value, "message": message})
        await self._emit(
            "complete",
            {
                "status": status.value,
                "duration_seconds": self.record.duration_seconds,
                "report": report,
            },
        )
        logger.info("run %s finished: %s", self.run_id, status.value)
        return self.record

    async def _store_finished(self) -> bool:
        if await self._retry(self._store.finish, self.record):
            return True
        return await self.reclaim() and await self._retry(self._store.finish, self.record)

    async def _write(self) -> None:
        if await self._retry(self._store.update, self.record):
            return
        if not await self.reclaim():
            raise RunSupersededError

    async def reclaim(self) -> bool:
        """The store no longer has this run as active. If it does not know the run at all, it
        lost its data (a Redis restart without persistence): make the run active again and
        go on. If it knows the run (finished by another replica), the run is superseded."""
        if await self._retry(self._store.get_run, self.run_id) is not None:
            return False
        result = await self._retry(self._store.acquire, self.record)
        if result.acquired:
            logger.warning("the state store had lost run %s; re-established it", self.run_id)
        return result.acquired

    async def _emit(self, type_: FrameType, data: dict[str, Any]) -> None:
        self.record.event_seq += 1
        message = RelayMessage(
            kind="event",
            run_id=self.run_id,
            origin=self._store.owner_id,
            event_seq=self.record.event_seq,
            type=type_,
            data=data,
            run=self.record.detail(),
        )
        await self._retry(self._store.publish, message)

    async def _retry(self, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Ride out a store outage with capped backoff; give up after `STORE_RETRY_SECONDS`."""
        delay = 0.1
        deadline = asyncio.get_running_loop().time() + STORE_RETRY_SECONDS
        while True:
            try:
                return await call(*args)
            except StoreUnavailableError as exc:
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                logger.warning("store unavailable for run %s (%s); retrying", self.run_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
