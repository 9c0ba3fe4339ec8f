"""The run lifecycle: lock → executor → events → finish, and everything around it.

`PipelineManager` owns, through one `TaskSupervisor`, every background task of the service:
the session of each run this replica follows, the launch of a starting run, the relay pump that
feeds the live view and the broadcaster, and the housekeeping loop (lease renewal and adoption
of orphaned runs). `aclose()` cancels and awaits them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.errors import (
    ExecutorStartError,
    ExecutorUnavailableError,
    ForbiddenError,
    NoActiveRunError,
    ReportNotFoundError,
    RunNotFoundError,
    ServiceError,
    ShuttingDownError,
    StoreUnavailableError,
)
from nextflow_k8s_service.executors.base import Executor, RunSpec
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import (
    CheckResult,
    RelayMessage,
    RunRecord,
    RunStatus,
    is_run_id,
    new_run_id,
)
from nextflow_k8s_service.services.live_view import LiveView
from nextflow_k8s_service.services.progress import ProgressTracker
from nextflow_k8s_service.services.reports import read_report
from nextflow_k8s_service.services.run_session import RunSession
from nextflow_k8s_service.services.state_store import StateStore
from nextflow_k8s_service.utils.broadcaster import Broadcaster
from nextflow_k8s_service.utils.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

CANCEL_CONFIRM_SECONDS = 15.0
SHUTDOWN_CANCEL_SECONDS = 10.0
#: Each readiness check's deadline: all of them together stay well under the 3 s probe timeout.
CHECK_DEADLINE_SECONDS = 1.0


async def _within(deadline: float, check: Coroutine[Any, Any, CheckResult]) -> CheckResult:
    try:
        async with asyncio.timeout(deadline):
            return await check
    except TimeoutError:
        return CheckResult(ok=False, detail=f"no answer within {deadline:g} s")


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StartOutcome:
    run: RunRecord
    attached: bool
    cancel_token: str | None


class PipelineManager:
    """Starts, follows, cancels and reports runs; one instance per replica."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: StateStore,
        executor: Executor,
        broadcaster: Broadcaster,
        view: LiveView,
        metrics: Metrics,
        housekeeping_interval: float | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._executor = executor
        self._broadcaster = broadcaster
        self._view = view
        self._metrics = metrics
        self._tasks = TaskSupervisor("pipeline-manager")
        self._sessions: dict[str, RunSession] = {}
        self._session_tasks: dict[str, asyncio.Task[RunRecord | None]] = {}
        self._completions: dict[str, asyncio.Event] = {}
        self._housekeeping_interval = housekeeping_interval or settings.redis_lease_seconds / 3
        self.draining = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start_background(self) -> None:
        """Seed the live view, reconcile runs left by an earlier process, start the loops."""
        relay_ready = asyncio.Event()
        self._tasks.spawn("relay-pump", self._relay(relay_ready))
        await relay_ready.wait()
        try:
            await self._seed_view()
            await self._reconcile_once()
        except StoreUnavailableError as exc:
            logger.warning("state store unavailable at start-up (%s); will retry", exc)
        self._tasks.spawn("housekeeping", self._housekeeping())

    async def aclose(self) -> None:
        """Drain: refuse new runs; cancel local runs (recorded as cancelled), or hand runs that
        outlive the process (Kubernetes Jobs) over to be re-adopted; stop every task."""
        self.draining = True
        if self._sessions and self._executor.runs_outlive_service:
            for run_id in list(self._sessions):
                with contextlib.suppress(StoreUnavailableError):
                    await self._store.release(run_id)
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

    # --- API operations ------------------------------------------------------------------------

    async def start(self, *, batch_count: int, triggered_by: str | None) -> StartOutcome:
        """Start a run, or attach to the one in progress. Raises `ShuttingDownError`,
        `StoreUnavailableError`, `ExecutorStartError`, `ExecutorUnavailableError`."""
        if self.draining:
            raise ShuttingDownError("the service is shutting down; try again shortly")
        # Fast path for the common case of a crowd attaching to the run in progress; the
        # atomic `acquire` below still decides when runs race to start.
        active = await self._store.get_active()
        if active is not None:
            return StartOutcome(run=active, attached=True, cancel_token=None)
        token = secrets.token_urlsafe(24)
        candidate = RunRecord(
            run_id=new_run_id(),
            batch_count=batch_count,
            triggered_by=triggered_by,
            executor=self._executor.name,
            cancel_token_hash=_hash_token(token),
            progress=ProgressTracker(batch_count).progress(),
        )
        result = await self._store.acquire(candidate)
        if not result.acquired:
            return StartOutcome(run=result.run, attached=True, cancel_token=None)
        self._metrics.runs_started.inc()
        session = self._new_session(result.run)
        # Shielded: a client that disconnects mid-request must not leave a half-started run
        # holding the lock. The launch task belongs to the supervisor, not to the request.
        launch = self._tasks.spawn(f"launch-{session.run_id}", self._launch(session))
        announced = await asyncio.shield(launch)
        return StartOutcome(run=announced, attached=False, cancel_token=token)

    async def cancel(self, *, cancel_token: str | None, admin_token: str | None) -> RunRecord:
        """Cancel the active run and wait until it has ended. Raises `NoActiveRunError`,
        `ForbiddenError`, `StoreUnavailableError`."""
        run = await self._store.get_active()
        if run is None:
            raise NoActiveRunError("no run is active")
        if not self._may_cancel(run, cancel_token, admin_token):
            raise ForbiddenError("a valid X-Cancel-Token or admin bearer token is required")
        done = self._completions.setdefault(run.run_id, asyncio.Event())
        try:
            session = self._sessions.get(run.run_id)
            if session is not None:
                session.cancel_message = "cancelled on request"
                await self._executor.cancel(run.run_id)
            else:
                await self._store.publish(
                    RelayMessage(kind="cancel", run_id=run.run_id, origin=self._store.owner_id)
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_CONFIRM_SECONDS):
                    await done.wait()
        finally:
            self._completions.pop(run.run_id, None)
        final = await self._store.get_run(run.run_id)
        if final is not None and final.status.terminal:
            return final
        # Nobody confirmed in time (the owner died, or the executor hangs): end it here.
        forced = await self._finish_detached(
            run.run_id, RunStatus.CANCELLED, "cancelled on request; the executor did not confirm"
        )
        return forced or run

    async def get_status(self) -> tuple[bool, RunRecord | None]:
        active = await self._store.get_active()
        if active is not None:
            return True, active
        recent = await self._store.history(1)
        return False, recent[0] if recent else None

    async def get_active(self) -> RunRecord | None:
        return await self._store.get_active()

    async def history(self, limit: int) -> list[RunRecord]:
        return await self._store.history(min(limit, self._settings.run_history_limit))

    async def get_run(self, run_id: str) -> RunRecord:
        run = await self._store.get_run(run_id) if is_run_id(run_id) else None
        if run is None:
            raise RunNotFoundError(f"no run {run_id!r} (unknown, or no longer remembered)")
        return run

    async def get_report(self, run_id: str) -> dict[str, Any]:
        report = (
            await read_report(self._settings.results_root, run_id) if is_run_id(run_id) else None
        )
        if report is None:
            raise ReportNotFoundError(f"run {run_id!r} has no report (yet)")
        return report

    async def readiness(self, deadline: float = CHECK_DEADLINE_SECONDS) -> dict[str, CheckResult]:
        """Checks for `/healthz`, run together, each within `deadline` seconds (one that takes
        longer is not ok): the state store and the executor, and (informational, never
        failing) the executor's runs that no run of the store claims."""
        store, executor, unclaimed = await asyncio.gather(
            _within(deadline, self._store.check()),
            _within(deadline, self._executor.check()),
            _within(deadline, self._unclaimed_runs()),
        )
        if not unclaimed.ok:
            unclaimed = CheckResult(ok=True, detail=f"could not list: {unclaimed.detail}")
        return {"state_store": store, "executor": executor, "unclaimed_runs": unclaimed}

    async def _unclaimed_runs(self) -> CheckResult:
        claimed = set(self._sessions)
        with contextlib.suppress(StoreUnavailableError):
            active = await self._store.get_active()
            if active is not None:
                claimed.add(active.run_id)
        try:
            orphans = await self._executor.orphan_jobs(claimed)
            detail = f"unclaimed: {', '.join(orphans)}" if orphans else "none"
        except ServiceError as exc:
            detail = f"could not list: {exc}"
        return CheckResult(ok=True, detail=detail)

    # --- internals -----------------------------------------------------------------------------

    def _may_cancel(self, run: RunRecord, cancel_token: str | None, admin: str | None) -> bool:
        allowed = False
        if cancel_token and run.cancel_token_hash:
            allowed |= hmac.compare_digest(_hash_token(cancel_token), run.cancel_token_hash)
        if admin and self._settings.admin_token:
            allowed |= hmac.compare_digest(admin.encode(), self._settings.admin_token.encode())
        return allowed

    def _new_session(self, record: RunRecord) -> RunSession:
        return RunSession(
            record=record,
            executor=self._executor,
            store=self._store,
            metrics=self._metrics,
            results_root=self._settings.results_root,
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
        await session.announce()
        try:
            await self._executor.start(self._spec(session.record))
        except (ExecutorStartError, ExecutorUnavailableError) as exc:
            await session.fail_start(str(exc))
            raise
        except Exception as exc:
            logger.exception("starting run %s failed", session.run_id)
            await session.fail_start(f"the executor could not start the run: {exc}")
            raise ExecutorStartError(f"the executor could not start the run: {exc}") from exc
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

    async def _finish_detached(
        self, run_id: str, status: RunStatus, message: str
    ) -> RunRecord | None:
        """Finish a run that no session of this replica follows (compare-and-set)."""
        record = await self._store.get_active()
        if record is None or record.run_id != run_id:
            return None
        return await self._new_session(record).finish_now(status, message)

    async def _seed_view(self) -> None:
        active = await self._store.get_active()
        if active is not None:
            self._view.seed(active, await self._store.recent_logs(active.run_id), active=True)
            return
        recent = await self._store.history(1)
        self._view.seed(recent[0] if recent else None, [], active=False)

    async def _relay(self, ready: asyncio.Event) -> None:
        """Feed relayed messages to the live view and the broadcaster; never dies quietly."""
        delay = 0.5
        while True:
            try:
                messages = self._store.subscribe()
                ready.set()
                async for message in messages:
                    delay = 0.5
                    self._on_message(message)
            except StoreUnavailableError as exc:
                logger.warning("relay interrupted (%s); resubscribing in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            with contextlib.suppress(StoreUnavailableError):
                await self._seed_view()

    def _on_message(self, message: RelayMessage) -> None:
        if message.kind == "cancel":
            session = self._sessions.get(message.run_id or "")
            if session is not None:
                session.cancel_message = "cancelled on request"
                self._tasks.spawn(f"cancel-{session.run_id}", self._executor.cancel(session.run_id))
            return
        frame = self._view.apply(message)
        if frame is None:
            return
        self._broadcaster.publish(frame)
        if message.type == "complete" and message.run_id in self._completions:
            self._completions[message.run_id].set()

    async def _housekeeping(self) -> None:
        """Renew the leases of the runs this replica follows; adopt or end orphaned runs."""
        while True:
            await asyncio.sleep(self._housekeeping_interval)
            try:
                for run_id, session in list(self._sessions.items()):
                    if not await self._store.renew(run_id):
                        await self._renew_failed(session)
                await self._reconcile_once()
                # Self-healing after a relay gap: the view only takes newer state (event_seq).
                await self._seed_view()
            except StoreUnavailableError as exc:
                logger.warning("housekeeping: state store unavailable (%s)", exc)

    async def _renew_failed(self, session: RunSession) -> None:
        """The lease is gone: re-establish the run if the store merely lost its data, else
        (another replica took it over) stop following and running it."""
        if not await session.reclaim():
            await self._lost(session.run_id)

    async def _lost(self, run_id: str) -> None:
        logger.error("lost the lease of run %s; stopping it", run_id)
        task = self._session_tasks.get(run_id)
        if task is not None:
            task.cancel()
        with contextlib.suppress(ServiceError):
            await self._executor.cancel(run_id)

    async def _reconcile_once(self) -> None:
        """Adopt a run whose owner is gone if the executor still has it, else end it `unknown`."""
        orphan = await self._store.claim_orphan()
        if orphan is None or orphan.run_id in self._sessions:
            return
        shown = await self._store.recent_logs(orphan.run_id)
        try:
            adopted = await self._executor.adopt(
                self._spec(orphan), logs_since=shown[-1].timestamp if shown else None
            )
        except ServiceError as exc:
            logger.warning("could not check run %s for adoption: %s", orphan.run_id, exc)
            return
        if adopted:
            logger.info("re-adopted run %s", orphan.run_id)
            self._follow(self._new_session(orphan))
            return
        await self._new_session(orphan).finish_now(
            RunStatus.UNKNOWN,
            "the replica that ran this run stopped, and the run cannot be found any more",
        )
