"""The event log: one append-only log per run, and a small log of run starts, ends and cancels.

Everything that happens to a run (status changes, progress, log lines, the final `complete`)
is appended to the run's log with an increasing integer id. The path of an event is:

    executor event → `RunSession` → `RunWriter.emit` → `EventLog.append` (the one writer)
                   → `EventLog.follow` → `EventRelay` → `LiveView` → `Broadcaster` (the one reader)

Appends are *fenced*: they name the lease epoch of the writer and are refused (atomically, in the
same operation) unless that epoch still holds the run — see `StateStore`. Reads never block a
writer; `follow` blocks until something is appended or `block` seconds pass, so a reader that
comes back after an interruption resumes exactly after the last id it saw.

A finished run's log is kept `RUN_TTL_MINUTES` and is the run's archive (its frames, its log
lines). Each log is bounded in entries, bytes and log lines: trimming drops the oldest `log`
entries only, counting the lines it dropped (`dropped_lines`), so the run's skeleton (status,
task, progress, complete, error) always survives; the newest entry is always kept. The Redis
implementation (`redis_event_log.py`) passes the same contract tests as `MemoryEventLog` here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from nextflow_k8s_service.errors import LeaseLostError
from nextflow_k8s_service.models import RunEvent

MAX_ENTRIES_PER_RUN = 5000
MAX_BYTES_PER_RUN = 8 * 1024 * 1024
MAX_LOG_LINES_PER_RUN = 5000
MAX_MARKERS = 100

MarkerKind = Literal["start", "end", "cancel"]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event of a run's log with its id (increasing per run, never reused)."""

    id: int
    event: RunEvent


@dataclass(frozen=True, slots=True)
class RunMarker:
    """An entry of the runs log: run `run_id` started, ended, or is asked to cancel.

    `id` is opaque and increasing; pass the last one seen back as `Cursor.markers`."""

    id: str
    kind: MarkerKind
    run_id: str


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a reader stands: after marker `markers`, and in run `run_id` after entry `after`."""

    markers: str
    run_id: str | None = None
    after: int = 0


@dataclass(frozen=True, slots=True)
class FollowBatch:
    """What `follow` found: new markers, and new entries of the cursor's run (in id order)."""

    markers: list[RunMarker] = field(default_factory=list)
    entries: list[LogEntry] = field(default_factory=list)


class EventLog(Protocol):
    """Per-run event logs shared by every replica.

    Raises `StoreUnavailableError` when the backend cannot be reached, `LeaseLostError` when a
    fenced append is refused; never a client library's own exception.
    """

    async def append(
        self, run_id: str, events: Sequence[RunEvent], *, epoch: int, floor: int = 0
    ) -> int:
        """Append `events` in order if lease `epoch` still holds run `run_id` (atomic); the id
        of the last one. Ids continue above `floor` (the writer's last id) even if the log was
        lost meanwhile. Raises `LeaseLostError`."""
        ...

    async def read(self, run_id: str, after: int = 0, limit: int | None = None) -> list[LogEntry]:
        """The run's retained entries with an id above `after`, in order (the first `limit`)."""
        ...

    async def dropped_lines(self, run_id: str) -> int:
        """How many log lines of the run retention dropped (0 for an unknown run)."""
        ...

    async def follow(self, cursor: Cursor, *, block: float) -> FollowBatch:
        """New markers and new entries of the cursor's run; waits up to `block` seconds for
        either (an empty batch then). A blocking read is its own liveness check."""
        ...

    async def markers_tail(self) -> str:
        """The id of the newest marker (a cursor that sees only what comes next)."""
        ...

    async def request_cancel(self, run_id: str) -> None:
        """Ask the replica that owns run `run_id` to cancel it (a `cancel` marker)."""
        ...


class MemoryEventLog:
    """`EventLog` of a single replica: lists guarded by the event loop.

    Fencing asks `holds(run_id, epoch)` (the memory state store's lock) in the same
    synchronous step as the append, so no other coroutine can come between them.
    """

    def __init__(
        self,
        *,
        max_entries: int = MAX_ENTRIES_PER_RUN,
        max_bytes: int = MAX_BYTES_PER_RUN,
        max_lines: int = MAX_LOG_LINES_PER_RUN,
    ) -> None:
        self._limits = _Limits(max_entries, max_bytes, max_lines)
        self._logs: dict[str, _RunLog] = {}
        self._markers: deque[RunMarker] = deque(maxlen=MAX_MARKERS)
        self._marker_seq = 0
        self._changed = asyncio.Event()
        self._holder: tuple[str, int] | None = None

    # The memory state store tells the log who holds the lease (it owns the lock).
    def set_holder(self, holder: tuple[str, int] | None) -> None:
        self._holder = holder

    def append_unfenced(self, run_id: str, events: Sequence[RunEvent], floor: int = 0) -> int:
        """Append without a fence check: for the state store's own atomic operations."""
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = _RunLog(self._limits)
        last = log.append(events, floor)
        self._notify()
        return last

    def add_marker(self, kind: MarkerKind, run_id: str) -> None:
        self._marker_seq += 1
        self._markers.append(RunMarker(id=str(self._marker_seq), kind=kind, run_id=run_id))
        self._notify()

    def forget(self, keep: set[str]) -> None:
        """Drop the logs of runs not in `keep` (the state store's retention)."""
        for run_id in list(self._logs):
            if run_id not in keep:
                del self._logs[run_id]

    async def append(
        self, run_id: str, events: Sequence[RunEvent], *, epoch: int, floor: int = 0
    ) -> int:
        if self._holder is None or self._holder[0] != run_id:
            raise LeaseLostError(f"run {run_id} is not the active run", data_lost=True)
        if self._holder[1] != epoch:
            raise LeaseLostError(f"run {run_id} is held under another epoch", data_lost=False)
        return self.append_unfenced(run_id, events, floor)

    async def read(self, run_id: str, after: int = 0, limit: int | None = None) -> list[LogEntry]:
        log = self._logs.get(run_id)
        return [] if log is None else log.after(after, limit)

    async def dropped_lines(self, run_id: str) -> int:
        log = self._logs.get(run_id)
        return 0 if log is None else log.dropped_lines

    async def follow(self, cursor: Cursor, *, block: float) -> FollowBatch:
        batch = self._collect(cursor)
        if batch.markers or batch.entries or block <= 0:
            return batch
        changed = self._changed
        try:
            async with asyncio.timeout(block):
                await changed.wait()
        except TimeoutError:
            return FollowBatch()
        return self._collect(cursor)

    async def markers_tail(self) -> str:
        return str(self._marker_seq)

    async def request_cancel(self, run_id: str) -> None:
        self.add_marker("cancel", run_id)

    def _collect(self, cursor: Cursor) -> FollowBatch:
        seen = int(cursor.markers or 0)
        markers = [m for m in self._markers if int(m.id) > seen]
        log = self._logs.get(cursor.run_id) if cursor.run_id else None
        entries = [] if log is None else log.after(cursor.after)
        return FollowBatch(markers=markers, entries=entries)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def log_lines(event: RunEvent) -> int | None:
    """The number of lines of a `log` event (retention may drop it); None for any other."""
    if event.type != "log":
        return None
    lines = event.data.get("lines")
    return len(lines) if isinstance(lines, list) else 0


@dataclass(frozen=True, slots=True)
class _Limits:
    entries: int
    bytes: int
    lines: int


class _RunLog:
    """One run's entries, bounded in count, (JSON) bytes and log lines: the oldest `log`
    entries go first, the others stay; the newest entry is always kept."""

    def __init__(self, limits: _Limits) -> None:
        self._limits = limits
        self.entries: dict[int, tuple[LogEntry, int]] = {}
        self._logs: deque[tuple[int, int]] = deque()  # (id, lines) of the log entries
        self.bytes = 0
        self.lines = 0
        self.dropped_lines = 0
        self.last_id = 0

    def append(self, events: Sequence[RunEvent], floor: int) -> int:
        self.last_id = max(self.last_id, floor)
        for event in events:
            self.last_id += 1
            size = len(event.model_dump_json())
            self.entries[self.last_id] = (LogEntry(id=self.last_id, event=event), size)
            self.bytes += size
            lines = log_lines(event)
            if lines is not None:
                self._logs.append((self.last_id, lines))
                self.lines += lines
        self._trim()
        return self.last_id

    def _trim(self) -> None:
        limits = self._limits
        while (
            self._logs
            and self._logs[0][0] != self.last_id
            and (
                len(self.entries) > limits.entries
                or self.bytes > limits.bytes
                or self.lines > limits.lines
            )
        ):
            entry_id, lines = self._logs.popleft()
            _, size = self.entries.pop(entry_id)
            self.bytes -= size
            self.lines -= lines
            self.dropped_lines += lines

    def after(self, after: int, limit: int | None = None) -> list[LogEntry]:
        found = []
        for entry_id, (entry, _) in self.entries.items():
            if entry_id > after:
                found.append(entry)
                if limit is not None and len(found) >= limit:
                    break
        return found
