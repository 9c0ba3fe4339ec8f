"""Per-process task counts and percent, computed from task events."""

from __future__ import annotations

from nextflow_k8s_service.executors.base import TaskChanged, task_source
from nextflow_k8s_service.models import PROCESSES, Counts, Progress, TaskState

# A running task counts as half done, so the bar moves as soon as work starts.
_WEIGHT = {TaskState.PENDING: 0.0, TaskState.RUNNING: 0.5, TaskState.SUCCEEDED: 1.0}


def expected_tasks(batch_count: int) -> dict[str, tuple[str, int | None]]:
    """Every task of a run of `batch_count` batches: name -> (process, index), in run order."""
    tasks: dict[str, tuple[str, int | None]] = {}
    for process in ("GENERATE", "ANALYZE"):
        for index in range(1, batch_count + 1):
            tasks[task_source(process, index)] = (process, index)
    tasks[task_source("REPORT", None)] = ("REPORT", None)
    return tasks


class ProgressTracker:
    """Task states of one run. Tasks the run does not know (a retried or stray pod of another
    batch count) are ignored rather than inflating the totals."""

    def __init__(self, batch_count: int, initial: Progress | None = None) -> None:
        self._tasks = expected_tasks(batch_count)
        self._states: dict[str, TaskState] = dict.fromkeys(self._tasks, TaskState.PENDING)
        if initial is not None:
            for name, state in initial.tasks.items():
                if name in self._states:
                    self._states[name] = state

    def apply(self, event: TaskChanged) -> bool:
        """Record a task's new state; True when anything changed."""
        name = task_source(event.process, event.index)
        if name not in self._states or self._states[name] == event.state:
            return False
        self._states[name] = event.state
        return True

    def progress(self) -> Progress:
        processes = {process: Counts() for process in PROCESSES}
        done = 0.0
        for name, state in self._states.items():
            counts = processes[self._tasks[name][0]]
            counts.total += 1
            setattr(counts, state.value, getattr(counts, state.value) + 1)
            done += _WEIGHT.get(state, 0.0)
        percent = round(100.0 * done / len(self._states), 1)
        return Progress(percent=percent, processes=processes, tasks=dict(self._states))
