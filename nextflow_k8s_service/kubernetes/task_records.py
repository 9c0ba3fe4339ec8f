"""What a Nextflow task pod says about its task: state, times, exit code, reason (pure).

Kubernetes keeps the times a task record needs on the pod: `metadata.creationTimestamp` (when
Nextflow submitted the task), the task container's `state.running.startedAt` (or, once it
ended, `state.terminated.startedAt`), and `state.terminated.finishedAt` / `exitCode` /
`reason`. A DELETED watch event carries the pod's last state, so a pod that `k8s.cleanup`
removed right after it succeeded still yields its times. API times are whole seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nextflow_k8s_service.kubernetes.api import Obj
from nextflow_k8s_service.kubernetes.watch import pod_task, pod_task_state
from nextflow_k8s_service.models import TaskState
from nextflow_k8s_service.run_events import TaskChanged

_KILLED = "the task pod was deleted before it finished"


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (`2026-11-28T08:00:00Z`) as an aware datetime; None if absent/invalid."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _container_state(pod: Obj) -> dict[str, Any]:
    """The state of the task container (Nextflow's task pods have exactly one)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return (statuses[0].get("state") or {}) if statuses else {}


def _failure_reason(pod: Obj, terminated: dict[str, Any], deleted: bool) -> str:
    status = pod.get("status") or {}
    if terminated:
        details = []
        if terminated.get("exitCode") is not None:
            details.append(f"exit code {terminated['exitCode']}")
        if terminated.get("message"):
            details.append(str(terminated["message"]).strip())
        reason = str(terminated.get("reason") or "Error")
        return f"{reason} ({'; '.join(details)})" if details else reason
    waiting = _container_state(pod).get("waiting") or {}
    for source in (status, waiting):
        if source.get("reason"):
            message = source.get("message")
            return f"{source['reason']}: {message}" if message else str(source["reason"])
    return _KILLED if deleted else "the task pod failed"


def pod_task_change(pod: Obj, *, deleted: bool = False, missed: bool = False) -> TaskChanged | None:
    """The task transition a task pod shows; None if the pod is not a Nextflow task pod.

    `deleted` / `missed` as for `pod_task_state`. A pod that exists but has not started is
    `submitted` (Nextflow has handed the task to Kubernetes).
    """
    task = pod_task(pod)
    if task is None:
        return None
    state = pod_task_state(pod, deleted=deleted, missed=missed)
    if state is TaskState.PENDING and not deleted:
        state = TaskState.SUBMITTED
    meta = pod.get("metadata") or {}
    container = _container_state(pod)
    running = container.get("running") or {}
    terminated = container.get("terminated") or {}
    finished_at = parse_time(terminated.get("finishedAt"))
    if finished_at is None and deleted and state.terminal:
        finished_at = parse_time(meta.get("deletionTimestamp"))
    exit_code = terminated.get("exitCode")
    return TaskChanged(
        process=task[0],
        index=task[1],
        state=state,
        submitted_at=parse_time(meta.get("creationTimestamp")),
        started_at=parse_time(running.get("startedAt") or terminated.get("startedAt")),
        finished_at=finished_at,
        exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        reason=_failure_reason(pod, terminated, deleted) if state is TaskState.FAILED else None,
    )
