"""The task record a Nextflow task pod yields (pure: literal pod dicts in, TaskChanged out)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nextflow_k8s_service.kubernetes.task_records import parse_time, pod_task_change
from nextflow_k8s_service.models import TaskState
from nextflow_k8s_service.run_events import TaskChanged


def at(second: int) -> datetime:
    return datetime(2026, 11, 28, 8, 0, second, tzinfo=UTC)


def task_pod(
    phase: str, container_state: dict[str, Any] | None = None, **status: Any
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {
            "name": "nf-0123456789abcdef",
            "uid": "u-1",
            "creationTimestamp": "2026-11-28T08:00:01Z",
            "labels": {
                "nextflow.io/runName": "r0123456789a",
                "nextflow.io/processName": "ANALYZE",
                "nextflow.io/taskName": "ANALYZE_3",
            },
        },
        "status": {"phase": phase, **status},
    }
    if container_state is not None:
        pod["status"]["containerStatuses"] = [{"name": "task", "state": container_state}]
    return pod


def test_a_pending_pod_is_a_submitted_task_with_its_creation_time() -> None:
    waiting = {"waiting": {"reason": "ContainerCreating"}}
    assert pod_task_change(task_pod("Pending", waiting)) == TaskChanged(
        "ANALYZE", 3, TaskState.SUBMITTED, submitted_at=at(1)
    )


def test_a_running_pod_carries_its_container_start() -> None:
    running = {"running": {"startedAt": "2026-11-28T08:00:04Z"}}
    assert pod_task_change(task_pod("Running", running)) == TaskChanged(
        "ANALYZE", 3, TaskState.RUNNING, submitted_at=at(1), started_at=at(4)
    )


def test_a_succeeded_pod_seen_only_as_deleted_keeps_its_times_and_exit_code() -> None:
    terminated = {
        "terminated": {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": "2026-11-28T08:00:04Z",
            "finishedAt": "2026-11-28T08:00:07Z",
        }
    }
    change = pod_task_change(task_pod("Succeeded", terminated), deleted=True)
    assert change == TaskChanged(
        "ANALYZE",
        3,
        TaskState.SUCCEEDED,
        submitted_at=at(1),
        started_at=at(4),
        finished_at=at(7),
        exit_code=0,
    )


def test_a_failed_pod_gives_exit_code_and_reason() -> None:
    terminated = {
        "terminated": {
            "exitCode": 137,
            "reason": "OOMKilled",
            "startedAt": "2026-11-28T08:00:04Z",
            "finishedAt": "2026-11-28T08:00:09Z",
        }
    }
    change = pod_task_change(task_pod("Failed", terminated))
    assert change is not None
    assert change.state is TaskState.FAILED
    assert (change.exit_code, change.reason) == (137, "OOMKilled (exit code 137)")
    assert (change.started_at, change.finished_at) == (at(4), at(9))

    with_message = {"terminated": {**terminated["terminated"], "reason": "Error", "exitCode": 2}}
    with_message["terminated"]["message"] = "analyze.py: error: no such file\n"
    change = pod_task_change(task_pod("Failed", with_message))
    assert change is not None
    assert change.reason == "Error (exit code 2; analyze.py: error: no such file)"


def test_an_evicted_pod_and_an_image_that_cannot_be_pulled_name_their_reason() -> None:
    evicted = task_pod("Failed", None, reason="Evicted", message="low on memory")
    change = pod_task_change(evicted)
    assert change is not None and change.reason == "Evicted: low on memory"
    assert change.exit_code is None and change.finished_at is None

    pull = {"waiting": {"reason": "ErrImagePull", "message": "not found"}}
    change = pod_task_change(task_pod("Pending", pull), deleted=True)
    assert change is not None
    assert (change.state, change.reason) == (TaskState.FAILED, "ErrImagePull: not found")


def test_a_running_pod_deleted_under_the_task_failed_at_its_deletion_time() -> None:
    pod = task_pod("Running", {"running": {"startedAt": "2026-11-28T08:00:04Z"}})
    pod["metadata"]["deletionTimestamp"] = "2026-11-28T08:00:06Z"
    change = pod_task_change(pod, deleted=True)
    assert change is not None
    assert change.state is TaskState.FAILED
    assert change.finished_at == at(6)
    assert change.reason == "the task pod was deleted before it finished"
    # Vanished unseen during a watch gap: `k8s.cleanup` removes only succeeded pods.
    missed = pod_task_change(pod, deleted=True, missed=True)
    assert missed is not None and missed.state is TaskState.SUCCEEDED and missed.reason is None


def test_report_has_no_index_and_other_pods_are_not_tasks() -> None:
    pod = task_pod("Pending")
    pod["metadata"]["labels"].update({"nextflow.io/processName": "REPORT"})
    pod["metadata"]["labels"]["nextflow.io/taskName"] = "REPORT"
    change = pod_task_change(pod)
    assert change is not None and (change.process, change.index) == ("REPORT", None)
    assert pod_task_change({"metadata": {"labels": {"app": "x"}}, "status": {}}) is None


def test_parse_time_accepts_api_timestamps_only() -> None:
    assert parse_time("2026-11-28T08:00:01Z") == at(1)
    assert parse_time("2026-11-28T08:00:01.5+00:00") == at(1).replace(microsecond=500000)
    assert parse_time("2026-11-28T08:00:01") == at(1)  # naive: the API speaks UTC
    assert parse_time("yesterday") is None
    assert parse_time(None) is None
    assert parse_time("") is None
