"""Starting and cancelling runs, and the queries about them.

`PipelineManager` is what the API calls. It takes the run lock (`StateStore.acquire`) and
hands the run to the `RunKeeper`, which follows it; it reads run records from the store and
reports from the results directory. It owns the relay task (`EventRelay`) and closes the
keeper. The live stream does not pass through here: the path of an event is named in
`services/event_log.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.errors import (
    ForbiddenError,
    NoActiveRunError,
    ReportNotFoundError,
    RunNotFoundError,
    ServiceError,
    ShuttingDownError,
    StoreUnavailableError,
)
from nextflow_k8s_service.executors.base import Executor
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import CheckResult, RunRecord, RunStatus, is_run_id, new_run_id
from nextflow_k8s_service.services.event_log import EventLog
from nextflow_k8s_service.services.event_relay import EventRelay
from nextflow_k8s_service.services.progress import ProgressTracker
from nextflow_k8s_service.services.reports import read_report
from nextflow_k8s_service.services.run_keeper import RunKeeper
from nextflow_k8s_service.services.state_store import StateStore
from nextflow_k8s_service.utils.tasks import TaskSupervisor

CANCEL_CONFIRM_SECONDS = 15.0
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
    """Starts, cancels and reports runs; one instance per replica."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: StateStore,
        events: EventLog,
        executor: Executor,
        keeper: RunKeeper,
        relay: EventRelay,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._store = store
        self._events = events
        self._executor = executor
        self._keeper = keeper
        self._relay = relay
        self._metrics = metrics
        self._tasks = TaskSupervisor("pipeline-manager")
        self.draining = False

    async def start_background(self) -> None:
        """Seed the live view and start relaying the event log; reconcile runs left by an
        earlier process (the keeper)."""
        relay_ready = asyncio.Event()
        self._tasks.spawn("event-relay", self._relay.run(relay_ready))
        await relay_ready.wait()
        await self._keeper.start()

    async def aclose(self) -> None:
        """Drain: refuse new runs; cancel local runs (recorded as cancelled), or hand runs that
        outlive the process (Kubernetes Jobs) over to be re-adopted; stop every task."""
        self.draining = True
        await self._keeper.aclose()
        await self._tasks.close()

    async def start(self, *, batch_count: int, triggered_by: str | None) -> StartOutcome:
        """Start a run, or attach to the one in progress. Raises `ShuttingDownError`,
        `StoreUnavailableError` (`StartsPausedError` while the store recovers from losing its
        data), `ExecutorStartError`, `ExecutorUnavailableError`."""
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
        record = await self._keeper.launch(result.run)
        return StartOutcome(run=record, attached=False, cancel_token=token)

    async def cancel(self, *, cancel_token: str | None, admin_token: str | None) -> RunRecord:
        """Cancel the active run and wait until it has ended. Raises `NoActiveRunError`,
        `ForbiddenError`, `StoreUnavailableError`."""
        run = await self._store.get_active()
        if run is None:
            raise NoActiveRunError("no run is active")
        if not self._may_cancel(run, cancel_token, admin_token):
            raise ForbiddenError("a valid X-Cancel-Token or admin bearer token is required")
        with self._relay.completion(run.run_id) as completed:
            if not await self._keeper.cancel(run.run_id, "cancelled on request"):
                await self._events.request_cancel(run.run_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_CONFIRM_SECONDS):
                    await completed.wait()
        final = await self._store.get_run(run.run_id)
        if final is not None and final.status.terminal:
            return final
        # Nobody confirmed in time (the owner died, or the executor hangs): end it here.
        active = await self._store.get_active()
        if active is None or active.run_id != run.run_id:
            return final or run
        forced = await self._keeper.finish_detached(
            active, RunStatus.CANCELLED, "cancelled on request; the executor did not confirm"
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
        claimed = set(self._keeper.run_ids)
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

    def _may_cancel(self, run: RunRecord, cancel_token: str | None, admin: str | None) -> bool:
        allowed = False
        if cancel_token and run.cancel_token_hash:
            allowed |= hmac.compare_digest(_hash_token(cancel_token), run.cancel_token_hash)
        if admin and self._settings.admin_token:
            allowed |= hmac.compare_digest(admin.encode(), self._settings.admin_token.encode())
        return allowed
