"""The one place that reads the event log and fans it out to this replica's WebSocket clients.

    EventLog.follow → EventRelay → LiveView.apply → Broadcaster.publish → each client's queue

The relay follows the runs log (start/end/cancel markers) and the current run's log from the
last id it applied. A read that fails (the store is away) is retried with capped backoff from
the same cursor, so nothing is lost or repeated across a reconnect; a blocking read that returns
empty is the relay's liveness check. Cancel markers go to `on_cancel` (the replica that owns
the run acts on them); a `complete` sets the `completion` event of its run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from nextflow_k8s_service.errors import StoreUnavailableError
from nextflow_k8s_service.services.event_log import Cursor, EventLog, LogEntry, RunMarker
from nextflow_k8s_service.services.live_view import LiveView
from nextflow_k8s_service.services.state_store import StateStore
from nextflow_k8s_service.utils.backoff import Backoff
from nextflow_k8s_service.utils.broadcaster import Broadcaster
from nextflow_k8s_service.utils.tasks import raise_if_cancelling

logger = logging.getLogger(__name__)

BLOCK_SECONDS = 2.0
RETRY = Backoff(base=0.2, cap=5.0)
WARN_EVERY = 12


class EventRelay:
    """See the module docstring. `run()` is a task owned by the caller; it never ends by itself."""

    def __init__(
        self,
        *,
        events: EventLog,
        store: StateStore,
        view: LiveView,
        broadcaster: Broadcaster,
        on_cancel: Callable[[str], None],
        block: float = BLOCK_SECONDS,
    ) -> None:
        self._events = events
        self._store = store
        self._view = view
        self._broadcaster = broadcaster
        self._on_cancel = on_cancel
        self._block = block
        self._cursor: Cursor | None = None
        self._completions: dict[str, asyncio.Event] = {}
        self.reconnects = 0

    async def seed(self) -> None:
        """Build the view from the active (else the most recent) run's log and place the
        cursor after it. Raises `StoreUnavailableError`."""
        markers = await self._events.markers_tail()
        run = await self._store.get_active()
        active = run is not None
        if run is None:
            recent = await self._store.history(1)
            run = recent[0] if recent else None
        entries = await self._events.read(run.run_id) if run is not None else []
        self._view.seed(run, entries, active=active)
        self._cursor = Cursor(
            markers=markers,
            run_id=run.run_id if run is not None else None,
            after=entries[-1].id if entries else 0,
        )

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Follow the log forever; `ready` is set once the view is seeded."""
        failures = 0
        while True:
            raise_if_cancelling()
            try:
                if self._cursor is None:
                    await self.seed()
                if ready is not None:
                    ready.set()
                await self._step()
            except StoreUnavailableError as exc:
                if ready is not None:
                    ready.set()  # start serving anyway: the view says what it has
                failures += 1
                self.reconnects += 1
                delay = RETRY.delay(failures)
                level = logging.WARNING if failures % WARN_EVERY == 1 else logging.DEBUG
                logger.log(
                    level,
                    "event log unreadable (%s); retrying in %.1f s (attempt %d)",
                    exc,
                    delay,
                    failures,
                )
                # A backoff between attempts: a store's return sends no event to await.
                await asyncio.sleep(delay)
                continue
            if failures:
                logger.info("event log readable again after %d attempts", failures)
            failures = 0

    @contextmanager
    def completion(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set once this replica relays run `run_id`'s `complete` (while inside)."""
        done = self._completions.setdefault(run_id, asyncio.Event())
        try:
            yield done
        finally:
            self._completions.pop(run_id, None)

    async def _step(self) -> None:
        assert self._cursor is not None
        batch = await self._events.follow(self._cursor, block=self._block)
        self._deliver(batch.entries)
        for marker in batch.markers:
            await self._on_marker(marker)
            self._cursor = replace(self._cursor, markers=marker.id)

    async def _on_marker(self, marker: RunMarker) -> None:
        assert self._cursor is not None
        if marker.kind == "cancel":
            self._on_cancel(marker.run_id)
        elif marker.kind == "start" and marker.run_id != self._cursor.run_id:
            # Whatever the previous run appended last comes first, then the new run from 0.
            if self._cursor.run_id is not None:
                self._deliver(await self._events.read(self._cursor.run_id, self._cursor.after))
            self._cursor = replace(self._cursor, run_id=marker.run_id, after=0)

    def _deliver(self, entries: list[LogEntry]) -> None:
        assert self._cursor is not None
        for entry in entries:
            if entry.event.run_id == self._cursor.run_id:
                self._cursor = replace(self._cursor, after=entry.id)
            frame = self._view.apply(entry)
            if frame is None:
                continue
            self._broadcaster.publish(frame)
            if entry.event.type == "complete" and entry.event.run_id in self._completions:
                self._completions[entry.event.run_id].set()
