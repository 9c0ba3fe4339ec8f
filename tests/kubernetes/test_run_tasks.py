"""The task bookkeeping of a run monitor (pure: watch events in, task transitions out)."""

from __future__ import annotations

from typing import Any

from nextflow_k8s_service.kubernetes.run_tasks import RunTasks
from nextflow_k8s_service.kubernetes.watch import EventType, WatchEvent
from nextflow_k8s_service.models import RunStatus, TaskState
from nextflow_k8s_service.run_events import TaskChanged

S, R, OK, F = TaskState.SUBMITTED, TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.FAILED


def pod(process: str, index: int | None, phase: str, uid: str = "u-1", **status: Any) -> Any:
    task_name = process if index is None else f"{process}_{index}"
    return {
        "metadata": {
            "name": f"nf-{uid}",
            "uid": uid,
            "labels": {"nextflow.io/processName": process, "nextflow.io/taskName": task_name},
        },
        "status": {"phase": phase, **status},
    }


def feed(tasks: RunTasks, kind: EventType, obj: Any, *, cancelling: bool = False) -> list[Any]:
    """The (process, index, state) of the transitions one watch event yields."""
    event = WatchEvent(kind, obj)
    task = tasks.speaking_for(event)
    if task is None:
        return []
    changes = tasks.pod_changed(task, event, cancelling=cancelling)
    return [(c.process, c.index, c.state) for c in changes]


def states(changes: list[TaskChanged]) -> list[tuple[str, int | None, TaskState]]:
    return [(c.process, c.index, c.state) for c in changes]


def test_each_transition_is_emitted_once() -> None:
    tasks = RunTasks(batch_count=1)
    assert feed(tasks, "ADDED", pod("GENERATE", 1, "Pending")) == [("GENERATE", 1, S)]
    assert feed(tasks, "MODIFIED", pod("GENERATE", 1, "Pending")) == []
    assert feed(tasks, "MODIFIED", pod("GENERATE", 1, "Running")) == [("GENERATE", 1, R)]
    assert feed(tasks, "DELETED", pod("GENERATE", 1, "Succeeded")) == [("GENERATE", 1, OK)]


def test_the_newest_pod_of_a_retried_task_speaks_for_it() -> None:
    tasks = RunTasks(batch_count=1)
    assert feed(tasks, "ADDED", pod("ANALYZE", 1, "Running", uid="first")) == [("ANALYZE", 1, R)]
    assert feed(tasks, "ADDED", pod("ANALYZE", 1, "Pending", uid="retry")) == [("ANALYZE", 1, S)]
    # The first attempt's end no longer speaks for the task.
    assert feed(tasks, "MODIFIED", pod("ANALYZE", 1, "Failed", uid="first")) == []
    assert feed(tasks, "DELETED", pod("ANALYZE", 1, "Failed", uid="first")) == []
    assert feed(tasks, "MODIFIED", pod("ANALYZE", 1, "Succeeded", uid="retry")) == [
        ("ANALYZE", 1, OK)
    ]


def test_a_pod_that_is_not_a_task_pod_is_ignored() -> None:
    tasks = RunTasks(batch_count=1)
    assert feed(tasks, "ADDED", {"metadata": {"name": "x", "labels": {}}}) == []


def test_while_cancelling_a_deleted_pod_says_nothing() -> None:
    tasks = RunTasks(batch_count=1)
    feed(tasks, "ADDED", pod("GENERATE", 1, "Running"))
    assert feed(tasks, "DELETED", pod("GENERATE", 1, "Running"), cancelling=True) == []


def test_an_image_failure_is_remembered_once_per_task() -> None:
    tasks = RunTasks(batch_count=1)
    waiting = {"waiting": {"reason": "ErrImagePull", "message": "not found"}}
    pulling = pod("GENERATE", 1, "Pending", containerStatuses=[{"name": "t", "state": waiting}])
    assert feed(tasks, "ADDED", pulling) == [("GENERATE", 1, F)]
    assert list(tasks.failures) == [("GENERATE", 1)]
    assert "cannot be pulled" in tasks.failures[("GENERATE", 1)]


def test_after_a_restart_the_dag_tells_which_unseen_tasks_finished() -> None:
    tasks = RunTasks(batch_count=3)
    feed(tasks, "ADDED", pod("ANALYZE", 2, "Running"))
    assert states(tasks.infer_finished()) == [("GENERATE", 2, OK)]
    with_report = RunTasks(batch_count=2)
    feed(with_report, "ADDED", pod("REPORT", None, "Running"))
    assert states(with_report.infer_finished()) == [
        ("GENERATE", 1, OK),
        ("GENERATE", 2, OK),
        ("ANALYZE", 1, OK),
        ("ANALYZE", 2, OK),
    ]


def test_a_succeeded_run_settles_every_task_succeeded() -> None:
    tasks = RunTasks(batch_count=2)
    feed(tasks, "ADDED", pod("GENERATE", 1, "Succeeded"))
    assert states(tasks.settle(RunStatus.SUCCEEDED)) == [
        ("GENERATE", 2, OK),
        ("ANALYZE", 1, OK),
        ("ANALYZE", 2, OK),
        ("REPORT", None, OK),
    ]


def test_a_failed_run_fails_its_running_tasks_and_keeps_the_rest() -> None:
    tasks = RunTasks(batch_count=2)
    feed(tasks, "ADDED", pod("GENERATE", 1, "Succeeded", uid="a"))
    feed(tasks, "ADDED", pod("GENERATE", 2, "Running", uid="b"))
    assert states(tasks.settle(RunStatus.FAILED)) == [("GENERATE", 2, F)]
