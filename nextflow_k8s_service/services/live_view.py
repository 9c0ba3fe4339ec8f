"""The replica's picture of the current run, built from relayed events.

Every replica applies the same relayed messages in the same order, so every WebSocket client
gets the same snapshot whichever replica it is connected to. The view is only touched from the
event loop without awaiting, so a snapshot and a subscription are taken atomically.

Frame ids (the stream's `seq`) are assigned here, in `_next_frame_id`, one per frame built:
every client gets the same frame with the same id, and a snapshot carries the id of the last
frame it includes, so a client sees ids increase by one and can tell a gap. (The per-run event
log will supply these ids; this is the one place to swap.)
"""

from __future__ import annotations

from collections import deque
from typing import Any

from nextflow_k8s_service.models import LogLine, RelayMessage, RunDetail, RunRecord, utcnow
from nextflow_k8s_service.services.log_streamer import wire_line
from nextflow_k8s_service.services.state_store import RECENT_LOG_LINES
from nextflow_k8s_service.utils.broadcaster import Frame


class LiveView:
    """The active run (else the most recent one), its recent log lines, and relay ordering."""

    def __init__(self) -> None:
        self.run: RunDetail | None = None
        self.active = False
        # Recent lines as they travel (`wire_line`): a snapshot sends them as they are.
        self.logs: deque[dict[str, Any]] = deque(maxlen=RECENT_LOG_LINES)
        self._last_seq = 0
        self._origin: str | None = None
        self._completed = False
        self._frame_id = 0
        self._snapshot: Frame | None = None

    def _next_frame_id(self) -> int:
        self._frame_id += 1
        self._snapshot = None
        return self._frame_id

    def _is_older(self, message: RelayMessage) -> bool:
        return (
            self.run is not None
            and message.run is not None
            and message.run.started_at < self.run.started_at
        )

    def seed(self, run: RunRecord | None, logs: list[LogLine], *, active: bool) -> None:
        """Start from the store's state (at start-up, or after the relay reconnected)."""
        self._snapshot = None
        if run is None:
            self.run, self.active, self._last_seq = None, False, 0
            self.logs.clear()
            return
        if (
            self.run is not None
            and self.run.run_id == run.run_id
            and run.owner == self._origin
            and run.event_seq <= self._last_seq
        ):
            return
        self.run = run.detail()
        self.active = active
        self._completed = False
        self._origin = run.owner
        self._last_seq = run.event_seq
        self.logs.clear()
        self.logs.extend(wire_line(line) for line in logs)

    def apply(self, message: RelayMessage) -> Frame | None:
        """Apply one relayed event; the frame to broadcast, or None for a stale duplicate."""
        if message.kind != "event" or message.type is None:
            return None
        if self.run is None or message.run_id != self.run.run_id:
            if self._is_older(message):
                return None  # a late event of a run older than the one shown
            self.logs.clear()
            self._completed = False
        elif self._completed:
            return None
        elif message.origin == self._origin and message.event_seq <= self._last_seq:
            return None  # already applied (sequence numbers count per publishing replica)
        self._origin = message.origin
        self._last_seq = message.event_seq
        if message.run is not None:
            self.run = message.run
        if message.type == "log":
            self.logs.extend(message.data["lines"])
        if message.type == "complete":
            self.active = False
            self._completed = True
        elif self.run is not None:
            self.active = not self.run.status.terminal
        return Frame.build(
            message.type, message.run_id, message.timestamp, message.data, id=self._next_frame_id()
        )

    def snapshot(self) -> Frame:
        """The current state as a `snapshot` frame. Built once per state and shared by every
        client that connects until the next frame (a crowd connecting at once costs one)."""
        if self._snapshot is not None:
            return self._snapshot
        run_id = self.run.run_id if self.run is not None else None
        data = {
            "active": self.active,
            "run": self.run.model_dump(mode="json") if self.run is not None else None,
            "logs": list(self.logs),
        }
        self._snapshot = Frame.build("snapshot", run_id, utcnow(), data, id=self._frame_id)
        return self._snapshot
