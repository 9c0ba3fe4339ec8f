"""Pydantic schemas: the HTTP API (SPEC §4), stream frames (SPEC §5) and the stored run."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

RUN_ID_PATTERN = r"^r[0-9a-f]{11}$"
_RUN_ID_RE = re.compile(RUN_ID_PATTERN)
_CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

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
    """State of one task (one process invocation)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Counts(BaseModel):
    """Task counts of one process."""

    total: int = 0
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0


class Progress(BaseModel):
    """Per-process task counts, the overall percentage and each task's state by name."""

    percent: float = Field(0.0, ge=0, le=100)
    processes: dict[str, Counts] = Field(default_factory=dict)
    tasks: dict[str, TaskState] = Field(
        default_factory=dict, description="Task name (`GENERATE (3)`, `REPORT`) to its state."
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
    event_seq: int = 0

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


# --- requests and responses -------------------------------------------------------------------


class RunRequest(BaseModel):
    """Body of `POST /demo/run`; `batch_count` bounds are checked against the settings."""

    model_config = ConfigDict(extra="forbid")

    batch_count: int | None = Field(
        None, strict=True, description="Batches to process (1..MAX_BATCH_COUNT)."
    )
    triggered_by: str | None = Field(
        None, max_length=64, description="Free-form name of the caller."
    )

    @field_validator("triggered_by")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned = _CONTROL_CHARS_RE.sub("", value).strip()
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
    detail: Any


# --- stream -------------------------------------------------------------------------------------

FrameType = Literal["snapshot", "status", "progress", "log", "complete", "error"]


class RelayMessage(BaseModel):
    """What replicas exchange through the state store's relay (in-process, or Redis pub/sub).

    `kind="event"`: one stream event of run `run_id`, `event_seq` increasing per run, with the
    run as it is after the event (`run`), so every replica can build the same snapshot.
    `kind="cancel"`: a request that the replica owning run `run_id` cancel it.
    """

    kind: Literal["event", "cancel"]
    run_id: str | None
    origin: str = ""
    event_seq: int = 0
    type: FrameType | None = None
    timestamp: Timestamp = Field(default_factory=utcnow)
    data: dict[str, Any] = Field(default_factory=dict)
    run: RunDetail | None = None


class StreamFrame(BaseModel):
    """One WebSocket frame (SPEC §5); `seq` is the frame's id, the same for every client."""

    type: FrameType
    run_id: str | None
    seq: int
    timestamp: Timestamp
    data: dict[str, Any]
