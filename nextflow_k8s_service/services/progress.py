"""Per-task records, per-process task counts and percent, computed from task events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nextflow_k8s_service.executors.base import TaskChanged, task_source
from nextflow_k8s_service.models import PROCESSES, Counts, Progress, TaskRecord, TaskState, utcnow

# A running task counts as half done, so the bar moves as soon as work starts; a finished task
# counts as done whatever its end (so a failure or a cancel never moves the bar backwards).
_WEIGHT = {TaskState.PENDING: 0.0, TaskState.SUBMITTED: 0.1, TaskState.RUNNING: 0.5}
_STOPPABLE = (TaskState.SUBMITTED, TaskState.RUNNING)


def expected_tasks(batch_count: int) -> dict[str, tuple[str, int | None]]:
    """Every task of a run of `batch_count` batches: name -> (process, index), in run order."""
    tasks: dict[str, tuple[str, int | None]] = {}
    for process in ("GENERATE", "ANALYZE"):
        for index in range(1, batch_count + 1):
            tasks[task_source(process, index)] = (process, index)
    tasks[task_source("REPORT", None)] = ("REPORT", None)
    return tasks


def _duration(record: TaskRecord) -> float | None:
    begin = record.started_at or record.submitted_at
    if record.finished_at is None or begin is None:
        return None
    return round(max(0.0, (record.finished_at - begin).total_seconds()), 3)


def merge(record: TaskRecord, event: TaskChanged) -> TaskRecord:
    """The record after `event`: its state, and every time/code/reason the event knows.

    A task that finished and shows up again unfinished is a retry (a new pod): its record
    starts over rather than mixing the times of two attempts.
    """
    if record.state.terminal and not event.state.terminal:
        record = TaskRecord(process=record.process, index=record.index, name=record.name)
    update: dict[str, Any] = {"state": event.state}
    for key in ("submitted_at", "started_at", "finished_at", "exit_code", "reason"):
        value = getattr(event, key)
        if value is not None:
            update[key] = value
    merged = record.model_copy(update=update)
    merged.duration_seconds = _duration(merged)
    return merged


class ProgressTracker:
    """Task records of one run. Tasks the run does not know (a retried or stray pod of another
    batch count) are ignored rather than inflating the totals. `percent` never goes down."""

    def __init__(self, batch_count: int, initial: Progress | None = None) -> None:
        self._tasks = expected_tasks(batch_count)
        self._records = {
            name: TaskRecord(process=process, index=index, name=name)
            for name, (process, index) in self._tasks.items()
        }
        self._percent = 0.0
        if initial is not None:
            self._percent = initial.percent
            for name, state in initial.tasks.items():
                if name in self._records:
                    self._records[name] = self._records[name].model_copy(update={"state": state})
            for record in initial.task_records:
                if record.name in self._records:
                    self._records[record.name] = record

    def apply(self, event: TaskChanged) -> TaskRecord | None:
        """Record a task's transition; the updated record when anything changed, else None."""
        name = task_source(event.process, event.index)
        current = self._records.get(name)
        if current is None:
            return None
        merged = merge(current, event)
        if merged == current:
            return None
        self._records[name] = merged
        return merged

    def stop_unfinished(self, reason: str, at: datetime | None = None) -> list[TaskRecord]:
        """Mark the submitted and running tasks `cancelled` (the run was cancelled or shut
        down under them); the records that changed. Pending tasks never started: they stay."""
        at = at or utcnow()
        changed = []
        for record in list(self._records.values()):
            if record.state in _STOPPABLE:
                event = TaskChanged(
                    record.process, record.index, TaskState.CANCELLED, finished_at=at, reason=reason
                )
                updated = self.apply(event)
                if updated is not None:
                    changed.append(updated)
        return changed

    def records(self) -> list[TaskRecord]:
        return list(self._records.values())

    def progress(self) -> Progress:
        processes = {process: Counts() for process in PROCESSES}
        done = 0.0
        for name, record in self._records.items():
            counts = processes[self._tasks[name][0]]
            counts.total += 1
            setattr(counts, record.state.value, getattr(counts, record.state.value) + 1)
            done += 1.0 if record.state.terminal else _WEIGHT[record.state]
        self._percent = max(self._percent, round(100.0 * done / len(self._records), 1))
        return Progress(
            percent=self._percent,
            processes=processes,
            tasks={name: record.state for name, record in self._records.items()},
            task_records=self.records(),
        )
