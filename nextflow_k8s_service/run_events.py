"""What a run is and what happens to it: the run spec and the executor events.

The bottom layer both `executors/` and `kubernetes/` build on. Every executor emits the same
three event kinds, so the manager, the stream and the page never care which one runs:

- `StatusChanged`: the run's status moved (`starting`, `running`, or a terminal status);
- `TaskChanged`: one task (process + batch index) changed state;
- `LogEmitted`: one line of output, tagged with its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nextflow_k8s_service.models import LogLine, RunStatus, TaskState, utcnow


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What to run: everything an executor needs to start (or re-adopt) one run."""

    run_id: str
    batch_count: int
    rows_per_batch: int
    generate_seconds: float
    analyze_seconds: float


@dataclass(frozen=True, slots=True)
class StatusChanged:
    status: RunStatus
    message: str | None = None


@dataclass(frozen=True, slots=True)
class TaskChanged:
    """Task `process` (`GENERATE`, `ANALYZE`, `REPORT`) for batch `index` (None for REPORT).

    The times, exit code and reason are what the backend knows at this transition; None means
    "not known (yet)", never "cleared": consumers keep what an earlier event told them.
    """

    process: str
    index: int | None
    state: TaskState
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class LogEmitted:
    source: str
    message: str
    timestamp: datetime = field(default_factory=utcnow)

    def line(self) -> LogLine:
        return LogLine(timestamp=self.timestamp, source=self.source, message=self.message)


ExecutorEvent = StatusChanged | TaskChanged | LogEmitted


def task_source(process: str, index: int | None) -> str:
    """The log source / display name of a task: `GENERATE (3)`, `REPORT`."""
    return process if index is None else f"{process} ({index})"
