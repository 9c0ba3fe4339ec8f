"""The Kubernetes executor: one Job per run running the Nextflow controller (k8s executor).

Per followed run, a `RunMonitor` (`kubernetes/run_monitor.py`) owns named tasks: a watch of the
Job, a watch of the controller pod, a watch of Nextflow's task pods, and one log follower per
pod. They feed one queue that `events()` drains. The terminal status comes from the Job's
conditions (or from `cancel`, or `unknown` when the Job vanished); before it is emitted the log
followers get `drain_timeout` seconds to read their pods' logs to the end, the task-pod watch
reads the events still in flight, and the task states are reconciled with one final list, so
logs and progress come before the terminal status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime

from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.errors import (
    ExecutorOperationError,
    ExecutorStartError,
    ExecutorUnavailableError,
)
from nextflow_k8s_service.kubernetes import cleanup, jobs
from nextflow_k8s_service.kubernetes.api import KubeApi
from nextflow_k8s_service.kubernetes.client import ApiClient
from nextflow_k8s_service.kubernetes.run_monitor import MonitorTiming, RunMonitor
from nextflow_k8s_service.kubernetes.watch import job_outcome
from nextflow_k8s_service.models import CheckResult
from nextflow_k8s_service.run_events import ExecutorEvent, RunSpec
from nextflow_k8s_service.utils.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

_RETRIED_STATUSES = {None, 429, 500, 502, 503, 504}


def _start_error(exc: ExecutorOperationError) -> Exception:
    """Map a failed create to the error the API shows (502 refused / 503 unreachable)."""
    status = exc.status
    if status in _RETRIED_STATUSES:
        return ExecutorUnavailableError(f"Kubernetes API unavailable, run not started: {exc}")
    hints = {
        401: "the service's credentials were rejected",
        403: "forbidden: check the service account's Role in the namespace",
        404: "not found: does the namespace exist?",
        409: "a Job with this run's name already exists",
        422: "the API rejected the Job or ConfigMap as invalid",
    }
    hint = hints.get(status or 0, "the API refused the request")
    return ExecutorStartError(f"Kubernetes refused to start the run ({hint}): {exc}")


class KubernetesExecutor:
    """Runs the demo as a Nextflow controller Job; see the module docstring.

    The executor owns its run monitors and the sweeps of cancelled runs (`close` cancels and
    awaits them) but not the ApiClient (the lifespan closes it).
    """

    name = "kubernetes"
    runs_outlive_service = True

    def __init__(
        self,
        *,
        settings: Settings,
        api_client: ApiClient,
        timing: MonitorTiming | None = None,
    ) -> None:
        self._settings = settings
        self._api = KubeApi(
            api_client,
            namespace=settings.nextflow_namespace,
            request_timeout=settings.kube_request_timeout_seconds,
        )
        self._timing = timing or MonitorTiming()
        self._runs: dict[str, RunMonitor] = {}
        self._sweeps = TaskSupervisor("kubernetes-executor")

    def _follow(self, spec: RunSpec, *, adopting: bool, logs_since: datetime | None) -> None:
        monitor = RunMonitor(
            self._api,
            spec,
            timing=self._timing,
            adopting=adopting,
            logs_since=logs_since,
        )
        self._runs[spec.run_id] = monitor
        monitor.start()

    async def start(self, spec: RunSpec) -> None:
        """Create the run's Job and ConfigMap and start following them.

        First waits (up to `previous_pods_timeout`) until the pods of earlier runs have stopped:
        terminating pods still count against the ResourceQuota, and a refusal at admission
        aborts the run. Raises `ExecutorStartError` (403/404/409/422...) or
        `ExecutorUnavailableError` (5xx, timeout, unreachable); then nothing of the run is left
        in the cluster.
        """
        try:
            quiet = await cleanup.pods_gone(
                self._api,
                label_selector=jobs.MANAGED_BY_SELECTOR,
                within=self._timing.previous_pods_timeout,
                watch_timeout=self._timing.watch_timeout_seconds,
                backoff=self._timing.backoff,
            )
            if not quiet:
                logger.warning(
                    "run %s: pods of an earlier run still running after %.0f s; starting anyway",
                    spec.run_id,
                    self._timing.previous_pods_timeout,
                )
            await jobs.create_run(self._api, self._settings, spec)
        except ExecutorOperationError as exc:
            if exc.status in _RETRIED_STATUSES:
                # The create may have succeeded server-side before the answer was lost.
                await jobs.delete_run(self._api, spec.run_id, quiet=True)
            raise _start_error(exc) from exc
        logger.info("run %s: created Job %s", spec.run_id, jobs.job_name(spec.run_id))
        self._follow(spec, adopting=False, logs_since=None)

    async def events(self, run_id: str) -> AsyncIterator[ExecutorEvent]:
        monitor = self._runs.get(run_id)
        if monitor is None:
            raise ExecutorOperationError(f"run {run_id} is not followed by this executor")
        try:
            async for event in monitor.events():
                yield event
        finally:
            await monitor.stop()
            if self._runs.get(run_id) is monitor:
                del self._runs[run_id]

    async def cancel(self, run_id: str) -> None:
        """Delete the Job (Background), the controller pod (with a short grace period) and the
        run's task pods; `events` then ends CANCELLED. A sweep task (owned here) deletes the
        task pods again once the controller pod is gone: nf-k8s resubmits a deleted task pod
        as long as it lives.

        Raises `ExecutorUnavailableError` when the deletion keeps failing (the run goes on).
        """
        monitor = self._runs.get(run_id)
        if monitor is not None:
            monitor.cancelling = True
        backoff = self._timing.backoff
        for attempt in range(1, 4):
            try:
                await jobs.delete_run(self._api, run_id)
                await self._api.delete_pods(
                    label_selector=jobs.controller_pod_selector(run_id),
                    grace_seconds=cleanup.CANCEL_GRACE_SECONDS,
                )
                break
            except ExecutorOperationError as exc:
                if exc.status not in _RETRIED_STATUSES or attempt == 3:
                    if monitor is not None:
                        monitor.cancelling = False
                    raise ExecutorUnavailableError(f"could not cancel run {run_id}: {exc}") from exc
                await asyncio.sleep(backoff.delay(attempt))
        logger.info("run %s: cancelled (Job and task pods deleted)", run_id)
        self._sweep(run_id)
        if monitor is not None:
            await monitor.finish_cancelled()

    def _sweep(self, run_id: str) -> None:
        name = f"k8s:{run_id}:sweep"
        if self._sweeps.running(name) is not None:
            return
        sweep = cleanup.sweep_cancelled_run(
            self._api,
            run_id,
            watch_timeout=self._timing.watch_timeout_seconds,
            backoff=self._timing.backoff,
        )
        self._sweeps.spawn(name, sweep)

    async def adopt(self, spec: RunSpec, *, logs_since: datetime | None = None) -> bool:
        """Follow a run started by an earlier process, if its Job still exists.

        Status and progress are recomputed from the Job and the current pods; logs resume
        after `logs_since` (the last line the caller already has), else from the beginning.
        Raises `ExecutorUnavailableError` when the API cannot tell.
        """
        try:
            job = await self._api.read_job(jobs.job_name(spec.run_id))
        except ExecutorOperationError as exc:
            raise ExecutorUnavailableError(f"cannot look up run {spec.run_id}: {exc}") from exc
        if job is None:
            return False
        logger.info("run %s: adopting Job %s", spec.run_id, jobs.job_name(spec.run_id))
        self._follow(spec, adopting=True, logs_since=logs_since)
        return True

    async def check(self) -> CheckResult:
        """One cheap authorised call (list Jobs, limit 1), and no call whose last answer was a
        401/403 (a refused watch would leave runs unobserved); never raises."""
        try:
            await self._api.list_jobs(limit=1)
        except Exception as exc:
            return CheckResult(ok=False, detail=f"Kubernetes API: {exc}")
        refused = self._api.refusals()
        if refused:
            calls = "; ".join(refused.values())
            return CheckResult(ok=False, detail=f"Kubernetes API refuses: {calls}")
        return CheckResult(ok=True, detail=f"namespace {self._settings.nextflow_namespace}")

    async def orphan_jobs(self, claimed: set[str]) -> list[str]:
        """Names of this service's unfinished Jobs that no run in `claimed` (run ids) owns.

        Raises `ExecutorUnavailableError` when the API cannot be asked.
        """
        try:
            listing = await self._api.list_jobs(label_selector=jobs.MANAGED_BY_SELECTOR)
        except ExecutorOperationError as exc:
            raise ExecutorUnavailableError(f"cannot list Jobs: {exc}") from exc
        orphans = []
        for job in listing.get("items") or []:
            meta = job.get("metadata") or {}
            run_id = (meta.get("labels") or {}).get(jobs.RUN_ID_LABEL)
            if run_id not in claimed and job_outcome(job) is None:
                orphans.append(str(meta.get("name")))
        return sorted(orphans)

    async def close(self) -> None:
        """Stop following every run (the runs themselves go on in the cluster) and stop the
        sweeps of cancelled runs."""
        monitors = list(self._runs.values())
        self._runs.clear()
        await asyncio.gather(
            *(monitor.stop() for monitor in monitors), self._sweeps.close(), return_exceptions=True
        )


__all__ = ["KubernetesExecutor", "MonitorTiming"]
