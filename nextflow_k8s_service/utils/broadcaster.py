"""WebSocket fan-out with one bounded queue per client.

Publishing never waits: a frame is put on every client's queue with `put_nowait`. The overflow
rule: a client whose queue is full has fallen too far behind; its queue is emptied (freeing the
memory it pinned) and it is closed with 1013, after which it may reconnect and receive a fresh
snapshot. Dropping single frames instead would break the stream's promises (every status
change, exactly one `complete`), so a lagging client loses its connection, never a frame.

A frame is serialised once, where it is built, with its `seq` (the id of the run's event-log
entry it shows, the same for every client): every client is handed the very same string. A
writer takes every frame its client has queued at once and sends them back to back (see
`Subscription.next_batch`).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nextflow_k8s_service.metrics import Metrics

CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame ready to send: `text` is its whole JSON, `seq` included, encoded once."""

    type: str
    run_id: str | None
    id: int
    text: str

    @classmethod
    def build(
        cls,
        type_: str,
        run_id: str | None,
        timestamp: datetime,
        data: dict[str, Any],
        event_id: int | None = None,
    ) -> Frame:
        """`event_id`: the id of the run's event-log entry the frame shows (for a snapshot, of
        the last entry it reflects; None before the first). It is sent as both `seq` and `id`,
        the same for every client."""
        id = event_id or 0
        text = json.dumps(
            {
                "seq": id,
                "type": type_,
                "run_id": run_id,
                "id": id,
                "timestamp": timestamp.isoformat(),
                "data": data,
            },
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        return cls(type=type_, run_id=run_id, id=id, text=text)


class TooManyClientsError(Exception):
    """The replica already serves its maximum number of WebSocket clients."""


class Subscription:
    """One client's queue. The writer awaits `next_batch()`; the broadcaster feeds it with
    `offer()` and never waits. `closing` is set once the client must be closed, with
    `close_reason` saying how, so a writer blocked on a stalled socket can be interrupted.

    The queue is bounded twice: in frames (`maxsize`) and in bytes (`max_bytes`), so what a
    client that stops reading can pin does not depend on how large frames are. It is a plain
    deque with one waiter future (one writer per subscription): cheaper per frame and per
    client than an `asyncio.Queue`."""

    def __init__(self, maxsize: int, max_bytes: int = 4 * 1024 * 1024) -> None:
        self._frames: deque[Frame] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self._max_bytes = max_bytes
        self.queued_bytes = 0
        self.closing = asyncio.Event()
        self.close_reason: tuple[int, str] | None = None

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    def offer(self, frame: Frame) -> bool:
        """Queue a frame; False when the subscription is closed or the client lags (which
        closes it with 1013)."""
        if self.closed:
            return False
        size = len(frame.text)
        # The first frame always fits, however large: a lone snapshot is never refused.
        if (self.queued_bytes and self.queued_bytes + size > self._max_bytes) or len(
            self._frames
        ) >= self._maxsize:
            self.close(CLOSE_TRY_AGAIN_LATER, "client too slow")
            return False
        self._frames.append(frame)
        self.queued_bytes += size
        self._wake()
        return True

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self, code: int, reason: str) -> None:
        """Drop everything queued (freeing what the client pinned) and signal `closing`."""
        if self.closed:
            return
        self.close_reason = (code, reason)
        self._frames.clear()
        self.queued_bytes = 0
        self._wake()
        self.closing.set()

    async def _wait(self) -> bool:
        """Wait until a frame is queued; False once closed."""
        while not self._frames:
            if self.closed:
                return False
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return True

    async def next_frame(self) -> Frame | None:
        """The next frame; None once closed."""
        if not await self._wait():
            return None
        frame = self._frames.popleft()
        self.queued_bytes = max(0, self.queued_bytes - len(frame.text))
        return frame

    async def next_batch(self, limit: int = 64) -> list[str] | None:
        """Wait for a frame, then take it and every frame queued behind it (at most `limit`),
        so a writer that fell behind catches up in one wake-up; None once closed."""
        if not await self._wait():
            return None
        frames = self._frames
        if len(frames) == 1:
            frame = frames.popleft()
            self.queued_bytes = max(0, self.queued_bytes - len(frame.text))
            return [frame.text]
        texts: list[str] = []
        size = 0
        while frames and len(texts) < limit:
            text = frames.popleft().text
            texts.append(text)
            size += len(text)
        self.queued_bytes = max(0, self.queued_bytes - size)
        return texts

    @property
    def pending(self) -> int:
        """Frames queued for the client (the benchmark harness reports it as the backlog)."""
        return len(self._frames)


class Broadcaster:
    """Fans frames out to at most `max_clients` subscriptions on this replica."""

    def __init__(
        self, *, max_clients: int, queue_frames: int, metrics: Metrics, queue_bytes: int = 4 << 20
    ) -> None:
        self._max_clients = max_clients
        self._queue_frames = queue_frames
        self._queue_bytes = queue_bytes
        self._metrics = metrics
        self._subscriptions: set[Subscription] = set()
        self._closing: tuple[int, str] | None = None
        self._changed = asyncio.Event()

    @property
    def client_count(self) -> int:
        return len(self._subscriptions)

    @asynccontextmanager
    async def subscribe(self, snapshot: Callable[[], Frame]) -> AsyncIterator[Subscription]:
        """Register a client; its first frame is `snapshot()`, taken atomically with the
        registration so no published frame falls between the two. Raises
        `TooManyClientsError` when the replica is full; unregisters on exit."""
        if len(self._subscriptions) >= self._max_clients:
            self._metrics.websocket_rejected.labels("too_many_clients").inc()
            raise TooManyClientsError
        subscription = Subscription(self._queue_frames, self._queue_bytes)
        subscription.offer(snapshot())
        if self._closing is not None:
            subscription.close(*self._closing)
        self._subscriptions.add(subscription)
        self._count_changed()
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            self._count_changed()

    def _count_changed(self) -> None:
        self._metrics.websocket_clients.set(len(self._subscriptions))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for_clients(self, predicate: Callable[[int], bool]) -> None:
        """Return once `predicate(number of connected clients)` holds."""
        while not predicate(len(self._subscriptions)):
            await self._changed.wait()

    def publish(self, frame: Frame) -> None:
        """Queue `frame` for every client; never waits. Lagging clients are closed (1013)."""
        for subscription in self._subscriptions:
            if subscription.closed:
                continue
            if not subscription.offer(frame):
                self._metrics.frames_dropped.inc()
                self._metrics.websocket_rejected.labels("too_slow").inc()

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every client now and any that connects from here on."""
        self._closing = (code, reason)
        for subscription in self._subscriptions:
            subscription.close(code, reason)
