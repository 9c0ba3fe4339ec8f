"""Monitoring one run in the cluster and turning what happens into executor events.

A `RunMonitor` owns, through a `TaskSupervisor`, named tasks: `job` (watch of the Job),
`controller` (watch of the controller pod), `tasks` (watch of Nextflow's task pods), `admission`
(the Job's events while it has no pod) and one `log:<pod>` per followed pod log. They feed one
unbounded queue (bounded in practice by one run's events) that `events()` drains, ending after
exactly one terminal `StatusChanged`.

A task that dies is logged by the supervisor and ends the run: a permission the service lacks
(401/403, after the watch's retries) ends it `failed` naming the refused call, any other
unexpected error ends it `unknown`; either way the run's Job and pods are deleted, so nothing
runs on unobserved. A run that fails on its own gets the real cause as its message (see
`diagnosis.py`), not the Job's "BackoffLimitExceeded".
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nextflow_k8s_service.errors import ExecutorOperationError
from nextflow_k8s_service.kubernetes import jobs
from nextflow_k8s_service.kubernetes.api import KubeApi, Obj
from nextflow_k8s_service.kubernetes.diagnosis import image_failure
from nextflow_k8s_service.kubernetes.explain import controller_refusal, failure_cause
from nextflow_k8s_service.kubernetes.logs import LOG_READ_TIMEOUT_SECONDS, LogFollower, LogRecord
from nextflow_k8s_service.kubernetes.run_tasks import RunTasks
from nextflow_k8s_service.kubernetes.watch import (
    REFUSED_STATUSES,
    WATCH_TIMEOUT_SECONDS,
    WatchEvent,
    job_outcome,
    pod_started,
    pod_terminated,
    watch_objects,
)
from nextflow_k8s_service.models import RunStatus
from nextflow_k8s_service.run_events import (
    ExecutorEvent,
    LogEmitted,
    RunSpec,
    StatusChanged,
    TaskChanged,
    task_source,
)
from nextflow_k8s_service.utils.backoff import Backoff
from nextflow_k8s_service.utils.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

_STARTING = "waiting for the Nextflow controller to start"


@dataclass(frozen=True, slots=True)
class MonitorTiming:
    """Timeouts of the run monitors (seconds); tests shorten them."""

    watch_timeout_seconds: int = WATCH_TIMEOUT_SECONDS
    log_read_timeout: float = LOG_READ_TIMEOUT_SECONDS
    # At the end of a run: how long the logs get to be read to their end.
    drain_timeout: float = 15.0
    # At the end of a run, the task-pod watch reads on until it has been quiet this long (at
    # most `drain_timeout`): the last pod events (final times, exit codes) are still in flight
    # when the Job completes.
    task_drain_quiet: float = 1.0
    # A Job without a pod this long has its events read (a quota refusal leaves no other trace).
    admission_check_seconds: float = 30.0
    # How long a new run waits for the pods of the previous one to release the quota.
    previous_pods_timeout: float = 60.0
    backoff: Backoff = field(default_factory=Backoff)


class RunMonitor:
    """Monitors run `spec.run_id`; see the module docstring. `stop()` cancels and awaits all."""

    def __init__(
        self,
        api: KubeApi,
        spec: RunSpec,
        *,
        timing: MonitorTiming,
        adopting: bool = False,
        logs_since: datetime | None = None,
    ) -> None:
        self._api = api
        self.spec = spec
        self.run_id = spec.run_id
        self._timing = timing
        self._adopting = adopting
        self._logs_since = logs_since
        self.cancelling = False
        self._queue: asyncio.Queue[ExecutorEvent] = asyncio.Queue()
        self._tasks = TaskSupervisor(f"run {spec.run_id}", on_failure=self._task_died)
        self._logs: dict[str, LogFollower] = {}
        self._status: RunStatus | None = None
        self._run_tasks = RunTasks(spec.batch_count)
        self._finishing = False
        self._stopped = False
        self._finished = asyncio.Event()
        # Set at every task-pod event: the drain at the end waits for the watch to go quiet.
        self._task_pod_seen = asyncio.Event()
        self._controller: Obj | None = None
        self._controller_lines: deque[str] = deque(maxlen=200)

    # --- lifecycle ----------------------------------------------------------------------------

    def _task_name(self, name: str) -> str:
        return f"k8s:{self.run_id}:{name}"

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(self._task_name(name), coro)

    def _task_died(self, task_name: str, exc: BaseException) -> None:
        """The supervisor's report of a task that raised (it logged it): end the run."""
        if self._finishing or self._stopped:
            return
        name = task_name.removeprefix(self._task_name(""))
        self._spawn("finish", self._end_after_failure(name, exc))

    async def _end_after_failure(self, name: str, exc: BaseException) -> None:
        if isinstance(exc, ExecutorOperationError) and exc.status in REFUSED_STATUSES:
            message = (
                f"the service cannot follow the run, Kubernetes refuses it: {exc} (grant "
                "this permission to the service's account, k8s/base/rbac.yaml); the run "
                "was stopped"
            )
            await self._finish(RunStatus.FAILED, message, cleanup=True)
            return
        await self._finish(
            RunStatus.UNKNOWN,
            f"the service stopped following the run after an internal error in its "
            f"{name} task ({type(exc).__name__}: {exc}); the run was stopped",
            cleanup=True,
        )

    def start(self) -> None:
        self._spawn("job", self._follow_job())
        self._spawn("controller", self._follow_controller())
        self._spawn("tasks", self._follow_tasks())
        self._spawn("admission", self._check_admission())

    async def stop(self) -> None:
        """Cancel and await every task (idempotent; the run itself goes on)."""
        self._stopped = True
        await self._tasks.close()

    async def _cancel_tasks(self, names: list[str]) -> None:
        await self._tasks.cancel(*(self._task_name(name) for name in names))

    async def events(self) -> AsyncIterator[ExecutorEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, StatusChanged) and event.status.terminal:
                return

    # --- emitting -----------------------------------------------------------------------------

    def _set_status(self, status: RunStatus, message: str | None = None) -> None:
        order = (None, RunStatus.STARTING, RunStatus.RUNNING)
        if self._finishing or order.index(status) <= order.index(self._status):
            return
        self._status = status
        self._queue.put_nowait(StatusChanged(status, message))

    def _emit_tasks(self, changes: list[TaskChanged]) -> None:
        for change in changes:
            self._queue.put_nowait(change)

    def _emit_log(self, record: LogRecord) -> None:
        if record.source == "controller":
            self._controller_lines.append(record.message)
        self._queue.put_nowait(LogEmitted(record.source, record.message, record.timestamp))

    def _follow_log(self, pod: Obj, source: str) -> None:
        name = (pod.get("metadata") or {}).get("name")
        if not name:
            return
        follower = self._logs.get(name)
        if follower is None:
            if self._finishing:
                return
            follower = LogFollower(
                self._api,
                pod=name,
                container=(pod.get("spec") or {}).get("containers", [{}])[0].get("name", ""),
                source=source,
                emit=self._emit_log,
                read_timeout=self._timing.log_read_timeout,
                backoff=self._timing.backoff,
                since=self._logs_since,
            )
            self._logs[name] = follower
            self._spawn(f"log:{name}", follower.run())
        follower.pod_changed(terminated=pod_terminated(pod))

    # --- watches ------------------------------------------------------------------------------

    def _watch(self, kind: str, **selectors: str) -> AsyncGenerator[WatchEvent, None]:
        return watch_objects(
            self._api,
            "jobs" if kind == "jobs" else "pods",
            timeout_seconds=self._timing.watch_timeout_seconds,
            backoff=self._timing.backoff,
            **selectors,
        )

    async def _follow_job(self) -> None:
        selector = f"metadata.name={jobs.job_name(self.run_id)}"
        seen = False
        async with aclosing(self._watch("jobs", field_selector=selector)) as stream:
            async for event in stream:
                if event.type == "SYNCED":
                    if not seen:
                        break
                    continue
                if event.type == "DELETED":
                    break
                seen = True
                outcome = job_outcome(event.obj)
                if outcome is not None:
                    status, message = outcome
                    explain = status is RunStatus.FAILED and not (message or "").startswith(
                        "run timed out"
                    )
                    await self._finish(status, message, explain=explain)
                    return
                self._set_status(RunStatus.STARTING, _STARTING)
        if self.cancelling:
            await self._finish(RunStatus.CANCELLED, "cancelled")
        else:
            await self._finish(RunStatus.UNKNOWN, "the run's Job no longer exists")

    async def _follow_controller(self) -> None:
        selector = jobs.controller_pod_selector(self.run_id)
        async with aclosing(self._watch("pods", label_selector=selector)) as stream:
            async for event in stream:
                if event.type == "SYNCED":
                    continue
                pod = event.obj
                if event.type != "DELETED":
                    self._controller = pod
                    image = image_failure(pod)
                    if image is not None and not pod_started(pod):
                        # Pending for ever: the Job would only fail at its deadline.
                        await self._finish(
                            RunStatus.FAILED, f"the Nextflow controller's {image}", cleanup=True
                        )
                        return
                    if pod_started(pod):
                        self._set_status(RunStatus.RUNNING, "the Nextflow controller is running")
                    else:
                        self._set_status(RunStatus.STARTING, _STARTING)
                if event.type == "DELETED" or pod_started(pod):
                    self._follow_log(pod, "controller")

    async def _follow_tasks(self) -> None:
        selector = jobs.task_pods_selector(self.run_id)
        first_sync = True
        async with aclosing(self._watch("pods", label_selector=selector)) as stream:
            async for event in stream:
                if event.type == "SYNCED":
                    if first_sync and self._adopting:
                        self._emit_tasks(self._run_tasks.infer_finished())
                    first_sync = False
                    continue
                self._task_pod_seen.set()
                self._on_task_pod(event)

    async def _drain_task_watch(self) -> None:
        """Let the task-pod watch read on until it has been quiet for `task_drain_quiet`
        seconds (at most `drain_timeout`), then stop it: when the Job completes, the events of
        the last task pods (deleted by Nextflow with their final times) may still be in flight,
        and a pod deleted unseen would lose its finish time and exit code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timing.drain_timeout
        watch = self._tasks.running(self._task_name("tasks"))
        while watch is not None and not watch.done():
            quiet = min(self._timing.task_drain_quiet, deadline - loop.time())
            if quiet <= 0:
                break
            self._task_pod_seen.clear()
            try:
                async with asyncio.timeout(quiet):
                    await self._task_pod_seen.wait()
            except TimeoutError:
                break
        await self._cancel_tasks(["tasks"])

    def _on_task_pod(self, event: WatchEvent) -> None:
        task = self._run_tasks.speaking_for(event)
        if task is None:
            return
        self._emit_tasks(self._run_tasks.pod_changed(task, event, cancelling=self.cancelling))
        if event.type == "DELETED" or pod_started(event.obj):
            self._follow_log(event.obj, task_source(*task))

    async def _check_admission(self) -> None:
        """While the Job has no pod, read its events: a refused pod (ResourceQuota, admission
        webhooks) leaves the Job without pod or condition, so the run would wait for ever."""
        while self._controller is None:
            await asyncio.sleep(self._timing.admission_check_seconds)
            if self._controller is not None:
                return
            try:
                refusal = await controller_refusal(self._api, self.run_id)
            except ExecutorOperationError as exc:
                if exc.status in REFUSED_STATUSES:
                    raise
                logger.warning("run %s: cannot read the Job's events: %s", self.run_id, exc)
                continue
            if refusal is not None and self._controller is None:
                await self._finish(RunStatus.FAILED, refusal, cleanup=True)
                return

    # --- the end ------------------------------------------------------------------------------

    async def finish_cancelled(self) -> None:
        await self._finish(RunStatus.CANCELLED, "cancelled")

    async def _finish(
        self,
        status: RunStatus,
        message: str | None,
        *,
        explain: bool = False,
        cleanup: bool = False,
    ) -> None:
        """Emit the terminal status once; unless the run was cancelled, only after the logs
        (and, without `cleanup`, the task-pod watch) drained and the tasks were reconciled.

        `explain`: replace the Job's message by the real cause when one is found. `cleanup`:
        the service ends a run that is still going: delete its Job and pods.
        """
        if self._finishing:
            await self._finished.wait()
            return
        self._finishing = True
        try:
            await self._cancel_tasks(["job", "controller", "admission"])
            if cleanup or status is RunStatus.CANCELLED:
                await self._cancel_tasks(["tasks"])
            if cleanup:
                await jobs.delete_run(self._api, self.run_id, quiet=True)
            log_tasks = [f"log:{name}" for name in self._logs]
            if status is not RunStatus.CANCELLED:
                for follower in self._logs.values():
                    follower.finish()
                pending = [self._tasks.running(self._task_name(name)) for name in log_tasks]
                draining = [task for task in pending if task is not None]
                await asyncio.gather(self._drain_task_watch(), self._drain_logs(draining))
                await self._reconcile_tasks(status)
                if explain:
                    cause = await failure_cause(
                        self._api,
                        self.run_id,
                        controller=self._controller,
                        controller_log=self._controller_lines,
                        task_failures=self._run_tasks.failures,
                    )
                    message = cause or message
            await self._cancel_tasks(log_tasks)
            self._queue.put_nowait(StatusChanged(status, message))
            logger.info("run %s: %s%s", self.run_id, status, f" ({message})" if message else "")
        finally:
            self._finished.set()

    async def _drain_logs(self, followers: list[asyncio.Task[Any]]) -> None:
        """Give the log followers (told to `finish`) `drain_timeout` seconds to read to the end."""
        if followers:
            await asyncio.wait(followers, timeout=self._timing.drain_timeout)

    async def _reconcile_tasks(self, status: RunStatus) -> None:
        """Bring the task states up to date with one final list, then tidy up."""
        selector = jobs.task_pods_selector(self.run_id)
        try:
            listing = await self._api.list_objects("pods", label_selector=selector)
            for pod in listing.get("items") or []:
                self._on_task_pod(WatchEvent("MODIFIED", pod))
            if status is not RunStatus.SUCCEEDED and listing.get("items"):
                # Nextflow keeps failed task pods, and a run aborted by Nextflow or ended by
                # the service leaves the others; they have no owner, nothing else removes them.
                await self._api.delete_pods(label_selector=selector)
        except ExecutorOperationError as exc:
            logger.warning("run %s: final task reconciliation failed: %s", self.run_id, exc)
        self._emit_tasks(self._run_tasks.settle(status))
