"""Watching Jobs and pods (a list+watch loop), and what their state means for a run.

`watch_objects` is a list+watch loop with explicit recovery: an initial list, watches with a
server-side `timeout_seconds` resumed from the last resourceVersion, a re-list on 410 Gone
(whether it comes as an HTTP status or as an ERROR event inside the stream), capped exponential
backoff on any other failure. A failed call is never the end of the watch: only the consumer
decides when to stop (by closing the generator).

The pure functions below map Job conditions and pod phases to the service's statuses.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal

from nextflow_k8s_service.errors import ExecutorOperationError
from nextflow_k8s_service.kubernetes.api import Kind, KubeApi, Obj
from nextflow_k8s_service.kubernetes.diagnosis import image_failure
from nextflow_k8s_service.models import RunStatus, TaskState
from nextflow_k8s_service.utils.backoff import Backoff

logger = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 240
# Consecutive 401/403 answers after which a watch gives up (raises): a missing permission does
# not come back by retrying, and a run must not wait forever on it.
MAX_REFUSALS = 3
REFUSED_STATUSES = frozenset({401, 403})


EventType = Literal["ADDED", "MODIFIED", "DELETED", "SYNCED"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of a watched object, or `SYNCED` after every (re-)list.

    `missed` marks a DELETED synthesised from a re-list: the object vanished while no watch was
    open, `obj` is its last known state.
    """

    type: EventType
    obj: Obj = field(default_factory=dict)
    missed: bool = False


def _uid(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or meta.get("name"))


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


async def watch_objects(
    api: KubeApi,
    kind: Kind,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
    timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
    backoff: Backoff | None = None,
) -> AsyncGenerator[WatchEvent, None]:
    """Yield every change of the selected objects, forever; close the generator to stop.

    After each (re-)list, the differences to what was known are yielded as ADDED / MODIFIED /
    DELETED (`missed=True`) events, then `SYNCED`: a consumer sees each change once, and a
    410 neither loses nor repeats events. Raises the `ExecutorOperationError` of the
    `MAX_REFUSALS`-th consecutive 401/403 (every other failure is retried).
    """
    backoff = backoff or Backoff()
    known: dict[str, Obj] = {}
    resource_version: str | None = None
    failures = 0
    refusals = 0
    while True:
        try:
            if resource_version is None:
                listing = await api.list_objects(
                    kind, label_selector=label_selector, field_selector=field_selector
                )
                resource_version = str(listing["metadata"]["resourceVersion"])
                current = {_uid(item): item for item in listing.get("items") or []}
                for uid, obj in current.items():
                    previous = known.get(uid)
                    if previous is None:
                        yield WatchEvent("ADDED", obj)
                    elif _rv(previous) != _rv(obj):
                        yield WatchEvent("MODIFIED", obj)
                for uid in [uid for uid in known if uid not in current]:
                    yield WatchEvent("DELETED", known[uid], missed=True)
                known = current
                failures = refusals = 0
                yield WatchEvent("SYNCED")
            stream = api.watch(
                kind,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                label_selector=label_selector,
                field_selector=field_selector,
            )
            async with aclosing(stream):
                async for event in stream:
                    failures = refusals = 0
                    obj = event.get("object") or {}
                    kind_of_event = event.get("type")
                    resource_version = _rv(obj) or resource_version
                    if kind_of_event == "BOOKMARK":
                        continue
                    if kind_of_event not in ("ADDED", "MODIFIED", "DELETED"):
                        continue
                    uid = _uid(obj)
                    if kind_of_event == "DELETED":
                        known.pop(uid, None)
                    else:
                        known[uid] = obj
                    yield WatchEvent(kind_of_event, obj)
            # The server ended the watch (timeout_seconds): resume from resource_version.
        except ExecutorOperationError as exc:
            if exc.status == 410:
                logger.info("%s watch expired (410 Gone); re-listing", kind)
                resource_version = None
                continue
            if exc.status in REFUSED_STATUSES:
                refusals += 1
                if refusals >= MAX_REFUSALS:
                    raise
            failures += 1
            delay = backoff.delay(failures)
            logger.warning("%s watch failed (%s); retrying in %.1f s", kind, exc, delay)
            await asyncio.sleep(delay)


# --- what the objects mean ------------------------------------------------------------------


def _true_conditions(job: Obj) -> dict[str, Obj]:
    conditions = (job.get("status") or {}).get("conditions") or []
    return {c.get("type", ""): c for c in conditions if str(c.get("status")) == "True"}


def job_outcome(job: Obj) -> tuple[RunStatus, str | None] | None:
    """The terminal status the Job's conditions imply, or None while it runs.

    On Kubernetes >= 1.31 `SuccessCriteriaMet` / `FailureTarget` come first and `Complete` /
    `Failed` only once the pod has terminated; either one decides.
    """
    conditions = _true_conditions(job)
    for kind in ("FailureTarget", "Failed"):
        condition = conditions.get(kind)
        if condition is not None:
            reason = condition.get("reason") or "Failed"
            if reason == "DeadlineExceeded":
                deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
                return RunStatus.FAILED, f"run timed out: exceeded the limit of {deadline} s"
            message = condition.get("message") or "the Nextflow controller failed"
            return RunStatus.FAILED, f"{reason}: {message}"
    for kind in ("SuccessCriteriaMet", "Complete"):
        if kind in conditions:
            return RunStatus.SUCCEEDED, None
    return None


_INDEX_RE = re.compile(r"(\d+)\D*$")


def pod_task(pod: Obj) -> tuple[str, int | None] | None:
    """(process, batch index) of a Nextflow task pod, from its labels; None if not a task.

    Nextflow sanitizes the task name into the label (`ANALYZE (3)` -> `ANALYZE_3`); the index
    is the trailing number, absent for `REPORT`.
    """
    pod_labels = (pod.get("metadata") or {}).get("labels") or {}
    process = pod_labels.get("nextflow.io/processName")
    if not process:
        return None
    task_name = str(pod_labels.get("nextflow.io/taskName") or "")
    suffix = task_name[len(process) :] if task_name.startswith(process) else task_name
    match = _INDEX_RE.search(suffix)
    return str(process), int(match.group(1)) if match else None


_PHASE_STATES = {
    "Pending": TaskState.PENDING,
    "Running": TaskState.RUNNING,
    "Succeeded": TaskState.SUCCEEDED,
    "Failed": TaskState.FAILED,
}


def pod_phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def pod_task_state(pod: Obj, *, deleted: bool = False, missed: bool = False) -> TaskState:
    """The task state a pod's phase means.

    A pod deleted before it finished was killed (failed), except when it vanished unseen during
    a watch gap: Nextflow's `k8s.cleanup` deletes only succeeded pods (failed ones are kept),
    so a vanished pod succeeded. A pod whose image cannot be pulled stays Pending forever while
    nf-k8s fails the run: that task failed.
    """
    state = _PHASE_STATES.get(pod_phase(pod), TaskState.PENDING)
    if state is TaskState.PENDING and image_failure(pod) is not None:
        return TaskState.FAILED
    if deleted and state in (TaskState.PENDING, TaskState.RUNNING):
        return TaskState.SUCCEEDED if missed else TaskState.FAILED
    return state


def pod_terminated(pod: Obj) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def pod_started(pod: Obj) -> bool:
    """Whether the pod's containers have started (its log can be read)."""
    return pod_phase(pod) != "Pending"
