"""The runs this replica follows: their sessions, their launch, and the adoption of orphans.

`RunKeeper` owns, through one `TaskSupervisor`, the session task of each run this replica
follows, the launch of a starting run and the housekeeping loop, which notices a store that
lost its data (`StateStore.check_generation`) and claims runs whose owner stopped renewing its
lease: it re-adopts them if the executor still has them, or finishes them `unknown`.
`aclose()` ends them all: local runs are cancelled (and recorded so), runs that outlive the
process (Kubernetes Jobs) are released for another replica to adopt at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.errors import (
    ExecutorStartError,
    ExecutorUnavailableError,
    ServiceError,
    StoreUnavailableError,
)
from nextflow_k8s_service.executors.base import Executor, RunSpec
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import RunRecord, RunStatus
from nextflow_k8s_service.services.event_log import EventLog
from nextflow_k8s_service.services.run_session import RunSession
from nextflow_k8s_service.services.state_store import StateStore
from nextflow_k8s_service.utils.tasks import TaskSupervisor, raise_if_cancelling

logger = logging.getLogger(__name__)

SHUTDOWN_CANCEL_SECONDS = 10.0
WARN_EVERY = 6


class RunKeeper:
    """See the module docstring; one instance per replica."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: StateStore,
        events: EventLog,
        executor: Executor,
        metrics: Metrics,
        housekeeping_interval: float | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._events = events
        self._executor = executor
        self._metrics = metrics
        self._tasks = TaskSupervisor("run-keeper")
        self._sessions: dict[str, RunSession] = {}
        self._session_tasks: dict[str, asyncio.Task[RunRecord | None]] = {}
        self._interval = housekeeping_interval or settings.redis_lease_seconds / 3

    @property
    def run_ids(self) -> set[str]:
        """The runs this replica follows."""
        return set(self._sessions)

    async def start(self) -> None:
        """Reconcile runs left by an earlier process, then start the housekeeping loop."""
        try:
            await self._store.check_generation()
            await self._reconcile_once()
        except StoreUnavailableError as exc:
            logger.warning("state store unavailable at start-up (%s); will retry", exc)
        self._tasks.spawn("housekeeping", self._housekeeping())

    async def launch(self, record: RunRecord) -> RunRecord:
        """Start the acquired run `record` and follow it; returns once it is submitted.

        Shielded from the caller's cancellation (a client that disconnects mid-request must not
        leave a half-started run holding the lock). Raises `ExecutorStartError` or
        `ExecutorUnavailableError` after recording the run `failed`."""
        session = self._session(record)
        task = self._tasks.spawn(f"launch-{record.run_id}", self._launch(session))
        return await asyncio.shield(task)

    async def cancel(self, run_id: str, message: str) -> bool:
        """Cancel run `run_id` if this replica follows it; False if it does not."""
        session = self._sessions.get(run_id)
        if session is None:
            return False
        session.cancel_message = message
        await self._executor.cancel(run_id)
        return True

    def on_cancel_requested(self, run_id: str) -> None:
        """A cancel marker from the event log: act on it if the run is this replica's."""
        if run_id in self._sessions:
            self._tasks.spawn(f"cancel-{run_id}", self._cancel_quietly(run_id))

    async def finish_detached(
        self, record: RunRecord, status: RunStatus, message: str
    ) -> RunRecord | None:
        """Finish run `record` (the active run, under its current epoch) without a session
        following it: its final events are appended and it is recorded, exactly once."""
        floor = await self._last_id(record.run_id)
        return await self._session(record, floor=floor).finish_now(status, message)

    async def aclose(self) -> None:
        """Cancel local runs (recorded as cancelled) or release runs that outlive the process,
        then stop every task."""
        if self._sessions and self._executor.runs_outlive_service:
            for run_id, session in list(self._sessions.items()):
                with contextlib.suppress(StoreUnavailableError):
                    await self._store.release(run_id, session.writer.record.epoch)
        elif self._sessions:
            for session in self._sessions.values():
                session.cancel_message = "cancelled: the service shut down"
                with contextlib.suppress(ServiceError):
                    await self._executor.cancel(session.run_id)
            waiting = list(self._session_tasks.values())
            _, hung = await asyncio.wait(waiting, timeout=SHUTDOWN_CANCEL_SECONDS)
            for task in hung:
                logger.error("run session %s did not end after cancel", task.get_name())
        await self._tasks.close()

    # --- internals -------------------------------------------------------------------------

    def _session(self, record: RunRecord, *, floor: int = 0) -> RunSession:
        return RunSession(
            record=record,
            executor=self._executor,
            store=self._store,
            events=self._events,
            metrics=self._metrics,
            results_root=self._settings.results_root,
            renew_every=self._interval,
            floor=floor,
        )

    def _spec(self, record: RunRecord) -> RunSpec:
        return RunSpec(
            run_id=record.run_id,
            batch_count=record.batch_count,
            rows_per_batch=self._settings.demo_rows_per_batch,
            generate_seconds=self._settings.demo_generate_seconds,
            analyze_seconds=self._settings.demo_analyze_seconds,
        )

    async def _launch(self, session: RunSession) -> RunRecord:
        """Announce and start the run; the run as announced (the status of the first stream
        frames), copied before its session can move it on."""
        session.announce()
        try:
            await self._executor.start(self._spec(session.record))
        except (ExecutorStartError, ExecutorUnavailableError) as exc:
            await session.fail_start(str(exc))
            raise
        except Exception as exc:
            logger.exception("starting run %s failed", session.run_id)
            message = f"the executor could not start the run: {exc}"
            await session.fail_start(message)
            raise ExecutorStartError(message) from exc
        announced = session.record.model_copy(deep=True)
        self._follow(session)
        return announced

    def _follow(self, session: RunSession) -> None:
        self._sessions[session.run_id] = session
        task = self._tasks.spawn(f"run-{session.run_id}", session.run())
        self._session_tasks[session.run_id] = task

        def forget(_: asyncio.Task[RunRecord | None]) -> None:
            self._sessions.pop(session.run_id, None)
            self._session_tasks.pop(session.run_id, None)

        task.add_done_callback(forget)

    async def _cancel_quietly(self, run_id: str) -> None:
        try:
            await self.cancel(run_id, "cancelled on request")
        except ServiceError as exc:
            logger.warning("could not cancel run %s: %s", run_id, exc)

    async def _last_id(self, run_id: str) -> int:
        entries = await self._events.read(run_id)
        return entries[-1].id if entries else 0

    async def _housekeeping(self) -> None:
        """Notice a store that lost its data; adopt or end orphaned runs."""
        failures = 0
        while True:
            await asyncio.sleep(self._interval)
            raise_if_cancelling()
            try:
                await self._store.check_generation()
                await self._reconcile_once()
                failures = 0
            except StoreUnavailableError as exc:
                failures += 1
                # Warn at once, then about once a minute (at the default lease) while it lasts.
                level = logging.WARNING if failures % WARN_EVERY == 1 else logging.DEBUG
                logger.log(level, "housekeeping: state store unavailable (%s)", exc)

    async def _reconcile_once(self) -> None:
        """Adopt a run whose owner is gone if the executor still has it, else end it `unknown`."""
        orphan = await self._store.claim_orphan()
        if orphan is None or orphan.run_id in self._sessions:
            return
        entries = await self._events.read(orphan.run_id)
        floor = entries[-1].id if entries else 0
        lines = [e.event.data["lines"] for e in entries if e.event.type == "log"]
        last_shown = lines[-1][-1]["timestamp"] if lines and lines[-1] else None
        try:
            adopted = await self._executor.adopt(
                self._spec(orphan),
                logs_since=datetime.fromisoformat(last_shown) if last_shown else None,
            )
        except ServiceError as exc:
            logger.warning("could not check run %s for adoption: %s", orphan.run_id, exc)
            return
        session = self._session(orphan, floor=floor)
        if adopted:
            logger.info("re-adopted run %s", orphan.run_id)
            self._follow(session)
            return
        await session.finish_now(
            RunStatus.UNKNOWN,
            "the replica that ran this run stopped renewing its lease, and the run cannot be "
            "found any more",
        )
