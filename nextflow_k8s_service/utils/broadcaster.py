"""WebSocket fan-out with one bounded queue per client.

Publishing never waits: a frame is put on every client's queue with `put_nowait`. The overflow
rule: a client whose queue is full has fallen too far behind; its queue is emptied (freeing the
memory it pinned) and it is closed with 1013, after which it may reconnect and receive a fresh
snapshot. Dropping single frames instead would break the stream's promises (every status
change, exactly one `complete`), so a lagging client loses its connection, never a frame.

A frame is serialised once, where it is built, with its `seq` (the id of the run's event-log
entry it shows, the same for every client), and framed once as a WebSocket message (`wire`):
every client is handed the very same bytes. Under the shipped server each connection offers a
`FrameSink` (see connection_guards.py), and `publish` writes a frame straight to every client
whose socket takes it, in one loop, with no task woken per client; a frame only waits in a
client's queue while that client's socket is backed up, and the sink flushes the queue when the
socket drains. Without a sink (another ASGI server, or an archive follower) a writer awaits the
queue instead (`Subscription.next_batch`).
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from nextflow_k8s_service.metrics import Metrics

CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013
#: The ASGI scope extension under which the shipped server offers a `FrameSink`.
FRAME_SINK_EXTENSION = "nextflow_k8s_service.frame_sink"


def websocket_text_message(payload: bytes) -> bytes:
    """`payload` as one unmasked, unfragmented WebSocket text frame (RFC 6455 §5.2): what a
    server sends on a connection without extensions, the same bytes for every client."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


def websocket_text_payload(message: bytes) -> bytes:
    """The payload of a frame made by `websocket_text_message` (its inverse)."""
    length = message[1] & 0x7F
    return message[2 if length < 126 else 4 if length == 126 else 10 :]


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame ready to send: `wire` is its whole JSON, `seq` included, encoded once and framed
    as a WebSocket text message; `text` is that JSON (decoded again on demand, for the paths
    that send text: archive readers and servers without a frame sink). Only the bytes are
    kept: a frame may wait in many clients' queues."""

    type: str
    run_id: str | None
    id: int
    wire: bytes

    @property
    def text(self) -> str:
        return websocket_text_payload(self.wire).decode()

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
        return cls(type=type_, run_id=run_id, id=id, wire=websocket_text_message(text.encode()))


class FrameSink(Protocol):
    """A connection that takes frames directly, from the server's side (no ASGI `send`).

    `ready` is whether it takes one now (open, and its socket not backed up); `write` sends a
    frame's `wire` bytes; `close` starts the closing handshake at once (behind what the socket
    already holds), after which the application's `receive` returns a disconnect once the
    connection is gone. `listen(callback)` registers what to call when the socket has drained
    (None: nothing)."""

    @property
    def ready(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    def listen(self, on_ready: Callable[[], None] | None) -> None: ...


class TooManyClientsError(Exception):
    """The replica already serves its maximum number of WebSocket clients."""


class Subscription:
    """One client's queue. The broadcaster feeds it with `offer()` and never waits. With a
    `sink`, a frame is written at once when the queue is empty and the sink is ready, and the
    queue is flushed into the sink when it becomes ready again; without one, a writer awaits
    `next_batch()`. `closing` is set once the client must be closed, with `close_reason` saying
    how, so a writer blocked on a stalled socket can be interrupted (a sink is closed directly).

    The queue is bounded twice: in frames (`maxsize`) and in bytes (`max_bytes`), so what a
    client that stops reading can pin does not depend on how large frames are. It is a plain
    list with one waiter future (one writer per subscription), and `closing` is only made when
    asked for: a subscription lives as long as its connection, and with a sink its queue is
    nearly always empty, so what it costs at rest is what counts."""

    __slots__ = (
        "_closing",
        "_frames",
        "_max_bytes",
        "_maxsize",
        "_sink",
        "_waiter",
        "close_reason",
        "queued_bytes",
    )

    def __init__(
        self, maxsize: int, max_bytes: int = 4 * 1024 * 1024, sink: FrameSink | None = None
    ) -> None:
        self._frames: list[Frame] = []
        self._sink = sink
        self._maxsize = maxsize
        self._max_bytes = max_bytes
        self._waiter: asyncio.Future[None] | None = None
        self._closing: asyncio.Event | None = None
        self.queued_bytes = 0
        self.close_reason: tuple[int, str] | None = None

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    @property
    def closing(self) -> asyncio.Event:
        """Set once the subscription is closed."""
        if self._closing is None:
            self._closing = asyncio.Event()
            if self.closed:
                self._closing.set()
        return self._closing

    def offer(self, frame: Frame) -> bool:
        """Queue a frame; False when the subscription is closed or the client lags (which
        closes it with 1013)."""
        if self.close_reason is not None:
            return False
        sink = self._sink
        if sink is not None and not self._frames and sink.ready:
            sink.write(frame.wire)
            return True
        size = len(frame.wire)
        # The first frame always fits, however large: a lone snapshot is never refused.
        if (self.queued_bytes and self.queued_bytes + size > self._max_bytes) or len(
            self._frames
        ) >= self._maxsize:
            self.close(CLOSE_TRY_AGAIN_LATER, "client too slow")
            return False
        self._frames.append(frame)
        self.queued_bytes += size
        if sink is None:
            self._wake()
        return True

    def flush(self) -> None:
        """Write queued frames into the sink while it is ready (its drain callback)."""
        sink, frames = self._sink, self._frames
        if sink is None:
            return
        written = size = 0
        for frame in frames:
            if not sink.ready:  # a write can fill the socket again
                break
            sink.write(frame.wire)
            written += 1
            size += len(frame.wire)
        del frames[:written]
        self.queued_bytes = max(0, self.queued_bytes - size)

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
        if self._closing is not None:
            self._closing.set()
        if self._sink is not None:
            self._sink.listen(None)
            self._sink.close(code, reason)

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
        frame = self._frames.pop(0)
        self.queued_bytes = max(0, self.queued_bytes - len(frame.wire))
        return frame

    async def next_batch(self, limit: int = 64) -> list[str] | None:
        """Wait for a frame, then take it and every frame queued behind it (at most `limit`),
        so a writer that fell behind catches up in one wake-up; None once closed."""
        if not await self._wait():
            return None
        taken = self._frames[:limit]
        del self._frames[:limit]
        self.queued_bytes = max(0, self.queued_bytes - sum(len(frame.wire) for frame in taken))
        return [frame.text for frame in taken]

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
    async def subscribe(
        self, snapshot: Callable[[], Frame], sink: FrameSink | None = None
    ) -> AsyncIterator[Subscription]:
        """Register a client; its first frame is `snapshot()`, taken atomically with the
        registration so no published frame falls between the two. With a `sink` (an accepted
        connection), frames are written into it directly. Raises `TooManyClientsError` when
        the replica is full; unregisters on exit."""
        if len(self._subscriptions) >= self._max_clients:
            self._metrics.websocket_rejected.labels("too_many_clients").inc()
            raise TooManyClientsError
        subscription = Subscription(self._queue_frames, self._queue_bytes, sink)
        if sink is not None:
            sink.listen(subscription.flush)
        subscription.offer(snapshot())
        self._metrics.frames_sent.inc()
        if self._closing is not None:
            subscription.close(*self._closing)
        self._subscriptions.add(subscription)
        self._count_changed()
        try:
            yield subscription
        finally:
            if sink is not None:
                sink.listen(None)
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
        """Hand `frame` to every client (written now, or queued behind a busy socket); never
        waits. Lagging clients are closed (1013)."""
        handed = 0
        for subscription in self._subscriptions:
            if subscription.closed:
                continue
            if subscription.offer(frame):
                handed += 1
            else:
                self._metrics.frames_dropped.inc()
                self._metrics.websocket_rejected.labels("too_slow").inc()
        if handed:
            self._metrics.frames_sent.inc(handed)

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every client now and any that connects from here on."""
        self._closing = (code, reason)
        for subscription in self._subscriptions:
            subscription.close(code, reason)
