"""Task records of the progress tracker: merging transitions, retries, cancel, monotone percent."""

from __future__ import annotations

from datetime import UTC, datetime

from nextflow_k8s_service.executors.base import TaskChanged
from nextflow_k8s_service.models import TaskState
from nextflow_k8s_service.services.progress import ProgressTracker


def at(second: int) -> datetime:
    return datetime(2026, 11, 28, 8, 0, second, tzinfo=UTC)


def test_records_merge_the_times_of_each_transition() -> None:
    tracker = ProgressTracker(1)
    names = [record.name for record in tracker.records()]
    assert names == ["GENERATE (1)", "ANALYZE (1)", "REPORT"]
    submitted = tracker.apply(TaskChanged("GENERATE", 1, TaskState.SUBMITTED, submitted_at=at(1)))
    assert submitted is not None and submitted.state is TaskState.SUBMITTED
    running = tracker.apply(TaskChanged("GENERATE", 1, TaskState.RUNNING, started_at=at(2)))
    assert running is not None
    assert (running.submitted_at, running.started_at, running.finished_at) == (at(1), at(2), None)
    assert running.duration_seconds is None
    # The same transition again changes nothing.
    assert tracker.apply(TaskChanged("GENERATE", 1, TaskState.RUNNING, started_at=at(2))) is None
    done = tracker.apply(
        TaskChanged("GENERATE", 1, TaskState.SUCCEEDED, finished_at=at(7), exit_code=0)
    )
    assert done is not None
    assert done.model_dump(mode="json") == {
        "process": "GENERATE",
        "index": 1,
        "name": "GENERATE (1)",
        "state": "succeeded",
        "submitted_at": "2026-11-28T08:00:01+00:00",
        "started_at": "2026-11-28T08:00:02+00:00",
        "finished_at": "2026-11-28T08:00:07+00:00",
        "duration_seconds": 5.0,
        "exit_code": 0,
        "reason": None,
    }
    assert tracker.progress().task_records[0] == done
    assert tracker.apply(TaskChanged("GENERATE", 9, TaskState.RUNNING)) is None  # not of this run


def test_a_retried_task_starts_a_fresh_record() -> None:
    tracker = ProgressTracker(1)
    tracker.apply(TaskChanged("ANALYZE", 1, TaskState.RUNNING, at(1), at(2)))
    tracker.apply(TaskChanged("ANALYZE", 1, TaskState.FAILED, finished_at=at(3), exit_code=1))
    retry = tracker.apply(TaskChanged("ANALYZE", 1, TaskState.SUBMITTED, submitted_at=at(5)))
    assert retry is not None
    assert (retry.submitted_at, retry.started_at, retry.finished_at) == (at(5), None, None)
    assert retry.exit_code is None


def test_stop_unfinished_cancels_submitted_and_running_tasks_only() -> None:
    tracker = ProgressTracker(2)
    tracker.apply(TaskChanged("GENERATE", 1, TaskState.RUNNING, at(1), at(2)))
    tracker.apply(TaskChanged("GENERATE", 2, TaskState.SUBMITTED, submitted_at=at(1)))
    tracker.apply(TaskChanged("ANALYZE", 1, TaskState.SUCCEEDED, at(1), at(2), at(3), 0))
    before = tracker.progress().percent
    stopped = tracker.stop_unfinished("cancelled on request", at(9))
    assert [(r.name, r.state, r.reason) for r in stopped] == [
        ("GENERATE (1)", TaskState.CANCELLED, "cancelled on request"),
        ("GENERATE (2)", TaskState.CANCELLED, "cancelled on request"),
    ]
    assert stopped[0].finished_at == at(9) and stopped[0].duration_seconds == 7.0
    progress = tracker.progress()
    assert progress.processes["GENERATE"].cancelled == 2
    assert progress.processes["ANALYZE"].model_dump(exclude={"total"}) == {
        "pending": 1, "submitted": 0, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 0
    }  # fmt: skip
    assert progress.tasks["GENERATE (1)"] is TaskState.CANCELLED
    assert progress.percent >= before
    assert tracker.stop_unfinished("again") == []


def test_percent_never_goes_down_and_survives_a_restore() -> None:
    tracker = ProgressTracker(2)
    seen = [tracker.progress().percent]
    for event in (
        TaskChanged("GENERATE", 1, TaskState.RUNNING),
        TaskChanged("GENERATE", 2, TaskState.RUNNING),
        TaskChanged("GENERATE", 1, TaskState.FAILED),
        # A retry puts the task back to submitted: the bar holds its place.
        TaskChanged("GENERATE", 1, TaskState.SUBMITTED),
        TaskChanged("GENERATE", 2, TaskState.SUCCEEDED),
    ):
        tracker.apply(event)
        seen.append(tracker.progress().percent)
    assert seen == sorted(seen) and seen[-1] > 0
    restored = ProgressTracker(2, tracker.progress())
    assert restored.progress().percent == seen[-1]
    assert restored.records() == tracker.records()
