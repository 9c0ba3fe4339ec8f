"""Turns executor log output into batched `log` events (SPEC §5: ≤ 50 lines a frame)."""

from __future__ import annotations

import time
from typing import Any

from nextflow_k8s_service.executors.base import LogEmitted
from nextflow_k8s_service.models import LogLine

MAX_LINES_PER_FRAME = 50
MAX_LINE_CHARS = 2000


class LogStreamer:
    """Collects lines and hands them out in frames of at most `MAX_LINES_PER_FRAME`.

    The owner decides when to flush: when `seconds_until_due()` reaches 0 (the oldest pending
    line has waited `interval` seconds), or when `full()` says a whole frame is ready.
    Over-long lines are cut.
    """

    def __init__(self, *, interval: float = 0.1) -> None:
        self._interval = interval
        self._pending: list[LogLine] = []
        self._oldest: float | None = None

    def add(self, event: LogEmitted) -> None:
        message = event.message
        if len(message) > MAX_LINE_CHARS:
            message = message[:MAX_LINE_CHARS] + " [truncated]"
        self._pending.append(
            LogLine(timestamp=event.timestamp, source=event.source, message=message)
        )
        if self._oldest is None:
            self._oldest = time.monotonic()

    def full(self) -> bool:
        return len(self._pending) >= MAX_LINES_PER_FRAME

    def seconds_until_due(self) -> float | None:
        """Seconds until the pending lines should be flushed; None when nothing is pending."""
        if self._oldest is None:
            return None
        return max(0.0, self._oldest + self._interval - time.monotonic())

    def take(self) -> list[list[LogLine]]:
        """All pending lines, split into frames; leaves nothing pending."""
        lines, self._pending, self._oldest = self._pending, [], None
        return [
            lines[start : start + MAX_LINES_PER_FRAME]
            for start in range(0, len(lines), MAX_LINES_PER_FRAME)
        ]


def wire_line(line: LogLine) -> dict[str, Any]:
    """`line` as it travels in `log` frames and snapshots: what `line.model_dump(mode="json")`
    gives, at a fraction of the cost (this runs once per line of output)."""
    return {"timestamp": line.timestamp.isoformat(), "source": line.source, "message": line.message}
