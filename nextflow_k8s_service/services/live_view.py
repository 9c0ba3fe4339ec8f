"""The replica's picture of the current run, built from the run's event log.

Every replica applies the same log entries in the same order, so every WebSocket client gets
the same snapshot whichever replica it is connected to. The view is only touched from the
event loop without awaiting, so a snapshot and a subscription are taken atomically.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from nextflow_k8s_service.models import RunDetail, RunEvent, RunRecord, utcnow
from nextflow_k8s_service.services.event_log import LogEntry
from nextflow_k8s_service.utils.broadcaster import Frame

RECENT_LOG_LINES = 200


class LiveView:
    """The active run (else the most recent one), its recent log lines, and the id of the last
    entry applied (entries at or below it are duplicates and are dropped)."""

    def __init__(self) -> None:
        self.run: RunDetail | None = None
        self.active = False
        # Recent lines as they travel in `log` frames: a snapshot sends them as they are.
        self.logs: deque[dict[str, Any]] = deque(maxlen=RECENT_LOG_LINES)
        self.last_id = 0
        self._completed = False
        self._snapshot: Frame | None = None

    def seed(self, run: RunRecord | None, entries: Iterable[LogEntry], *, active: bool) -> None:
        """Start from `run`'s log (at start-up, or when the reader lost its place)."""
        self.run, self.active, self.last_id, self._completed = None, False, 0, False
        self._snapshot = None
        self.logs.clear()
        if run is None:
            return
        self.run = run.detail()
        for entry in entries:
            self.apply(entry)
        # The store's record is at least as new as the log's last event.
        self.run = run.detail()
        self.active = active

    def apply(self, entry: LogEntry) -> Frame | None:
        """Apply one log entry; the frame to broadcast, or None for a duplicate or a late
        entry of an older run."""
        event = entry.event
        if self.run is None or event.run_id != self.run.run_id:
            if self._is_older(event):
                return None
            self.logs.clear()
            self.last_id, self._completed = 0, False
        elif entry.id <= self.last_id or self._completed:
            return None
        self.last_id = entry.id
        self._snapshot = None
        if event.run is not None:
            self.run = event.run
        if event.type == "log":
            self.logs.extend(event.data["lines"])
        if event.type == "complete":
            self.active = False
            self._completed = True
        elif self.run is not None:
            self.active = not self.run.status.terminal
        return Frame.build(event.type, event.run_id, event.timestamp, event.data, entry.id)

    def snapshot(self) -> Frame:
        """The current state as a `snapshot` frame, carrying the id of the last entry it
        reflects. Built once per state and shared by every client that connects until the
        next entry (a crowd connecting at once costs one)."""
        if self._snapshot is not None:
            return self._snapshot
        run_id = self.run.run_id if self.run is not None else None
        data = {
            "active": self.active,
            "run": self.run.model_dump(mode="json") if self.run is not None else None,
            "logs": list(self.logs),
        }
        self._snapshot = Frame.build("snapshot", run_id, utcnow(), data, self.last_id or None)
        return self._snapshot

    def _is_older(self, event: RunEvent) -> bool:
        return (
            self.run is not None
            and event.run is not None
            and event.run.started_at < self.run.started_at
        )
