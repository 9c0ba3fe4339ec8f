"""A run looked back into, read from its event log (the only copy): its log lines, its frames
recorded in order, and the same frames followed live until the run's `complete`.

Each frame is the JSON object a WebSocket client receives for that event, with `seq` and `id`
both the event's id (`encode`). Following reads the log's backlog, then subscribes to this
replica's live fan-out (`Broadcaster`), reads the log once more after the last id it sent, and
then sends the live frames above that id: no gap (everything appended before the subscription
is in a read, everything after it reaches the subscription) and no repeat (ids only grow). The
subscription is the follower's bounded buffer and counts against the client cap; a follower
that falls behind, or the server shutting down, closes it and ends the follow.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from nextflow_k8s_service.models import LogLine, utcnow
from nextflow_k8s_service.services.event_log import EventLog, LogEntry
from nextflow_k8s_service.services.state_store import StateStore
from nextflow_k8s_service.utils.broadcaster import Broadcaster, Frame

#: Entries read from the log at a time while replaying (bounds what one replay holds).
REPLAY_PAGE = 500
#: `GET /runs/{id}/logs`: lines returned when no `limit` is given, and the largest `limit`.
DEFAULT_LOG_LIMIT = 1000
MAX_LOG_LIMIT = 5000


@dataclass(frozen=True, slots=True)
class ArchivedFrame:
    """One recorded frame: its event id, type and JSON text (without a newline)."""

    id: int
    type: str
    text: str


@dataclass(frozen=True, slots=True)
class LogSlice:
    """A run's last log lines (of one source, if asked), how many retention dropped, and
    whether older retained lines matched but were left out by the limit."""

    lines: list[LogLine]
    dropped_lines: int
    truncated: bool


def encode(entry: LogEntry) -> ArchivedFrame:
    event = entry.event
    frame = Frame.build(event.type, event.run_id, event.timestamp, event.data, entry.id)
    return ArchivedFrame(id=entry.id, type=event.type, text=frame.text)


def _placeholder() -> Frame:
    # A follower's subscription needs a first frame; followers skip snapshots.
    return Frame.build("snapshot", None, utcnow(), {})


class RunArchive:
    """Reads runs back from the event log. Raises `StoreUnavailableError` when it cannot be
    read; `TooManyClientsError` (from `follow`) when the replica serves its maximum of clients."""

    def __init__(
        self,
        *,
        events: EventLog,
        store: StateStore,
        broadcaster: Broadcaster,
        page: int = REPLAY_PAGE,
    ) -> None:
        self._events = events
        self._store = store
        self._broadcaster = broadcaster
        self._page = page

    async def log_lines(self, run_id: str, *, source: str | None, limit: int) -> LogSlice:
        """The run's last `limit` retained log lines, of `source` alone when given."""
        lines: list[LogLine] = []
        async for entry in self._entries(run_id, 0):
            if entry.event.type != "log":
                continue
            for raw in entry.event.data.get("lines", []):
                line = LogLine.model_validate(raw)
                if source is None or line.source == source:
                    lines.append(line)
        dropped = await self._events.dropped_lines(run_id)
        return LogSlice(lines=lines[-limit:], dropped_lines=dropped, truncated=len(lines) > limit)

    async def frames(self, run_id: str, after: int = 0) -> AsyncGenerator[ArchivedFrame, None]:
        """The run's recorded frames with an id above `after`, in order."""
        async for entry in self._entries(run_id, after):
            yield encode(entry)

    async def follow(self, run_id: str, after: int = 0) -> AsyncGenerator[ArchivedFrame, None]:
        """The run's frames above `after`, recorded then live, ending after its `complete`
        (or when the run is over without one, or the subscription is closed: a lagging
        follower, a shutdown). Raises `TooManyClientsError` before the first live frame."""
        last = after
        async for frame in self.frames(run_id, after):
            yield frame
            last = frame.id
            if frame.type == "complete":
                return
        async with self._broadcaster.subscribe(_placeholder) as subscription:
            async for frame in self.frames(run_id, last):
                yield frame
                last = frame.id
                if frame.type == "complete":
                    return
            if await self._over(run_id):
                # Its `complete` (appended with the final record) may have come meanwhile.
                async for frame in self.frames(run_id, last):
                    yield frame
                return
            while (live := await subscription.next_frame()) is not None:
                if live.type == "snapshot":
                    continue
                if live.run_id != run_id:
                    return  # another run is relayed: this one is over
                if live.id <= last:
                    continue
                last = live.id
                yield ArchivedFrame(id=live.id, type=live.type, text=live.text)
                if live.type == "complete":
                    return

    async def _over(self, run_id: str) -> bool:
        run = await self._store.get_run(run_id)
        return run is None or run.status.terminal

    async def _entries(self, run_id: str, after: int) -> AsyncIterator[LogEntry]:
        while True:
            page = await self._events.read(run_id, after, limit=self._page)
            for entry in page:
                yield entry
            if len(page) < self._page:
                return
            after = page[-1].id
