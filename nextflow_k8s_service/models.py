"""Pydantic schemas: the HTTP API (SPEC §4), the stream's frame types (SPEC §5), the relay
message and the stored run."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, RootModel, field_validator

RUN_ID_PATTERN = r"^r[0-9a-f]{11}$"
_RUN_ID_RE = re.compile(RUN_ID_PATTERN)
_CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Invisible characters that can make a displayed name read as another: zero-width ones
# (U+200B..U+200D, U+2060, U+FEFF, U+180E) and the bidirectional marks, embeddings, overrides
# and isolates (U+200E/F, U+061C, U+202A..U+202E, U+2066..U+2069).
_INVISIBLE_CHARS_RE = re.compile(
    "[\u200b-\u200f\u2060\ufeff\u180e\u061c\u202a-\u202e\u2066-\u2069]"
)

PROCESSES: tuple[str, ...] = ("GENERATE", "ANALYZE", "REPORT")


#: A timezone-aware timestamp, written as ISO-8601 with an explicit offset (`+00:00`).
Timestamp = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), when_used="json")]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (serialised with its `+00:00` offset)."""
    return datetime.now(UTC)


def new_run_id() -> str:
    """A fresh run id: `r` + 11 hex digits, valid as a Nextflow run name and a label value."""
    return "r" + secrets.token_hex(6)[:11]


def is_run_id(value: str) -> bool:
    """Whether `value` has the shape of a run id."""
    return bool(_RUN_ID_RE.match(value))


class RunStatus(StrEnum):
    """Lifecycle of a run; the last four are terminal."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.UNKNOWN}
)


class TaskState(StrEnum):
    """State of one task (one process invocation); the last three are terminal.

    `submitted`: handed to the backend (a task pod exists) but not running yet; `cancelled`:
    stopped by a cancel or a shutdown of the run before it could finish.
    """

    PENDING = "pending"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


class Counts(BaseModel):
    """Task counts of one process."""

    total: int = 0
    pending: int = 0
    submitted: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class TaskRecord(BaseModel):
    """One task of a run and the times of its transitions (`GET /runs/{id}/tasks`, `task` frames).

    Times come from the backend: the subprocesses (local) or the task pod (Kubernetes: creation,
    container start and finish, whole seconds). `submitted_at <= started_at <= finished_at`.
    """

    process: str
    index: int | None = Field(None, description="Batch index; null for REPORT.")
    name: str = Field(description="Display name: `ANALYZE (3)`, `REPORT`.")
    state: TaskState = TaskState.PENDING
    submitted_at: Timestamp | None = None
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    duration_seconds: float | None = Field(
        None, description="finished_at - started_at (or - submitted_at if it never started)."
    )
    exit_code: int | None = None
    reason: str | None = Field(None, description="Why it failed or was cancelled.")


class Progress(BaseModel):
    """Per-process task counts, the overall percentage and each task's state by name."""

    percent: float = Field(0.0, ge=0, le=100)
    processes: dict[str, Counts] = Field(default_factory=dict)
    tasks: dict[str, TaskState] = Field(
        default_factory=dict, description="Task name (`GENERATE (3)`, `REPORT`) to its state."
    )
    task_records: list[TaskRecord] = Field(
        default_factory=list, description="Every task with its times, in run order."
    )


class LogLine(BaseModel):
    """One line of output; `source` names its producer (`controller`, `GENERATE (3)`, ...)."""

    model_config = ConfigDict(frozen=True)

    timestamp: Timestamp
    source: str
    message: str


class RunRecord(BaseModel):
    """Everything the store keeps about one run (the API shows it as `RunDetail`)."""

    run_id: str
    status: RunStatus = RunStatus.QUEUED
    batch_count: int
    triggered_by: str | None = None
    executor: str
    started_at: Timestamp = Field(default_factory=utcnow)
    finished_at: Timestamp | None = None
    message: str | None = None
    progress: Progress = Field(default_factory=Progress)
    cancel_token_hash: str = ""
    owner: str | None = None
    epoch: int = Field(0, description="Lease epoch of the owner that wrote it (fencing).")

    @property
    def duration_seconds(self) -> float | None:
        end = self.finished_at
        if end is None:
            return None
        return round((end - self.started_at).total_seconds(), 3)

    def detail(self) -> RunDetail:
        return RunDetail(
            run_id=self.run_id,
            status=self.status,
            batch_count=self.batch_count,
            triggered_by=self.triggered_by,
            executor=self.executor,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_seconds=self.duration_seconds,
            message=self.message,
            progress=self.progress,
        )

    def summary(self) -> RunSummary:
        return RunSummary(
            run_id=self.run_id,
            status=self.status,
            batch_count=self.batch_count,
            triggered_by=self.triggered_by,
            executor=self.executor,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_seconds=self.duration_seconds,
            message=self.message,
        )


class RunSummary(BaseModel):
    """A run in the history list."""

    run_id: str
    status: RunStatus
    batch_count: int
    triggered_by: str | None
    executor: str
    started_at: Timestamp
    finished_at: Timestamp | None
    duration_seconds: float | None
    message: str | None


class RunDetail(RunSummary):
    """A run with its progress."""

    progress: Progress


class RunHistory(RootModel[list[RunSummary]]):
    """`GET /demo/history`: finished runs, newest first."""


# --- requests and responses -------------------------------------------------------------------


class RunRequest(BaseModel):
    """Body of `POST /demo/run`; `batch_count` bounds are checked against the settings."""

    model_config = ConfigDict(extra="forbid")

    batch_count: int | None = Field(
        None,
        strict=True,
        ge=1,
        description="Batches to process (1..MAX_BATCH_COUNT); absent or null: DEFAULT_BATCH_COUNT.",
    )
    triggered_by: str | None = Field(
        None,
        max_length=64,
        description="Free-form name of the caller; control, zero-width and bidirectional "
        "formatting characters are dropped.",
    )

    @field_validator("batch_count", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        # JSON Schema counts 4.0 as an integer; strict validation would not.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @field_validator("triggered_by")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned = _INVISIBLE_CHARS_RE.sub("", _CONTROL_CHARS_RE.sub("", value)).strip()
        return cleaned or None


class RunStartResponse(BaseModel):
    """Answer to `POST /demo/run`: a new run (202) or the one in progress (200, `attached`)."""

    attached: bool
    run: RunDetail
    run_id: str
    executor: str
    stream_url: str
    status_url: str
    cancel_token: str | None = Field(None, description="Only for the caller that started the run.")


class TasksResponse(BaseModel):
    """`GET /demo/runs/{run_id}/tasks`: the run's task table, in run order."""

    run_id: str
    tasks: list[TaskRecord]


class LogsResponse(BaseModel):
    """`GET /demo/runs/{run_id}/logs`: the run's last log lines, of one source if asked."""

    run_id: str
    source: str | None = Field(description="The source asked for; null: every source.")
    lines: list[LogLine] = Field(description="Oldest first; at most `limit`.")
    truncated: bool = Field(description="Older retained lines matched but are left out.")
    dropped_lines: int = Field(
        description="Lines of the run (any source) the bounded archive no longer holds."
    )


class StatusResponse(BaseModel):
    active: bool
    run: RunDetail | None


class ActiveResponse(BaseModel):
    active: bool
    run_id: str | None


class CancelResponse(BaseModel):
    run_id: str
    status: RunStatus
    cancelled: bool


class ProcessPreview(BaseModel):
    tasks: int
    cpu_per_task: float
    memory_gi_per_task: float


class PreviewResponse(BaseModel):
    """What a run of `batch_count` batches would use (SPEC §2 resource model)."""

    batch_count: int
    processes: dict[str, ProcessPreview]
    total_tasks: int
    total_worker_pods: int
    peak_worker_pods: int
    peak_cpu: float
    peak_memory_gi: float
    quota_cpu: float
    quota_memory_gi: float
    fits_quota: bool
    estimated_seconds: float


class CheckResult(BaseModel):
    ok: bool
    detail: str | None = None


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str


class ReadinessResponse(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, CheckResult]


class ErrorResponse(BaseModel):
    detail: str


class LimitsResponse(BaseModel):
    default_batch_count: int
    max_batch_count: int
    executor: str


class BatchStats(BaseModel):
    """One batch's statistics in `report.json` (written by `workflows/bin/analyze.py`)."""

    batch: int = Field(ge=1)
    count: int = Field(ge=1)
    sum: float
    mean: float
    stdev: float
    min: float
    max: float
    p50: float
    p95: float


class ReportTotals(BaseModel):
    batches: int
    count: int
    sum: float
    mean: float
    min: float
    max: float


class Report(BaseModel):
    """A run's `report.json` (written by `workflows/bin/report.py`)."""

    run_id: str
    generated_at: str = Field(description="ISO-8601 time the REPORT step wrote it.")
    batches: list[BatchStats] = Field(description="Per-batch statistics, by batch number.")
    totals: ReportTotals


# --- stream -------------------------------------------------------------------------------------

FrameType = Literal["snapshot", "status", "progress", "task", "log", "complete", "error"]


class RunEvent(BaseModel):
    """One entry of a run's event log: what a stream frame shows, and the run after it.

    `run` lets any reader (a late joiner's snapshot, a replay) know the run's state at this
    point of the log without reading the store.
    """

    type: FrameType
    run_id: str
    timestamp: Timestamp = Field(default_factory=utcnow)
    data: dict[str, Any] = Field(default_factory=dict)
    run: RunDetail | None = None
