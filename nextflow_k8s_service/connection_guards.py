"""uvicorn protocol classes that bound what one connection can hold (server.py installs them).

uvicorn's httptools protocol has no limit on the size of a request head and no deadline for
receiving a request: a 64 MiB header is buffered whole, and a client that sends half a request
keeps its connection forever. Its WebSocket protocol waits for the socket to become writable
before it sends a close frame, and closes the transport gracefully (after flushing), so a
client that stopped reading keeps its socket and kernel buffers indefinitely.

- `GuardedHttpToolsProtocol`: a request head (request line and headers) over
  `MAX_REQUEST_HEAD_BYTES` is answered 431 and the connection closed; a request that is not
  fully received (head and body) within `REQUEST_RECEIVE_TIMEOUT_SECONDS` of its first byte
  (or of the connection opening) is closed, with a 408 if part of its head had arrived.
- `GuardedWebSocketProtocol`: once the application closes a WebSocket (or returns), the
  connection is gone within `WEBSOCKET_ABORT_SECONDS`: a peer that has not completed the
  closing handshake by then has its transport aborted, discarding what it never read. It also
  offers the stream a `FrameSink` (scope extension `FRAME_SINK_EXTENSION`): frames written
  straight to the transport, already framed, with no ASGI `send` per client and frame.

Both subclass uvicorn's own classes (`uvicorn.protocols...`), the ones its "auto" setting picks
with `uvicorn[standard]`; they use the attributes those classes keep per connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from nextflow_k8s_service.api.middleware import SECURITY_HEADERS
from nextflow_k8s_service.utils.broadcaster import FRAME_SINK_EXTENSION

logger = logging.getLogger(__name__)

MAX_REQUEST_HEAD_BYTES = 32 * 1024
REQUEST_RECEIVE_TIMEOUT_SECONDS = 10.0
WEBSOCKET_ABORT_SECONDS = 2.0

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _error_response(status: int, detail: str) -> bytes:
    body = b'{"detail":"' + detail.encode("ascii") + b'"}'
    lines = [
        b"HTTP/1.1 %d %s" % (status, _REASONS[status]),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
        *(name + b": " + value for name, value in SECURITY_HEADERS),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-head size limit and a receive deadline."""

    max_head_bytes = MAX_REQUEST_HEAD_BYTES
    receive_timeout = REQUEST_RECEIVE_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a chunk may end the head and carry part of the body.
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(431, f"request head over {self.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_deadline()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._disarm_deadline()

    def handle_websocket_upgrade(self) -> None:
        self._disarm_deadline()
        super().handle_websocket_upgrade()

    def _arm_deadline(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.receive_timeout, self._receive_timed_out)

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _receive_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes == 0:
            # Nothing of a request arrived (an idle or pre-opened connection): just close.
            self.transport.close()
            return
        if self._in_head:
            self._refuse(408, f"request not received within {self.receive_timeout:g} seconds")
            return
        # The application has the request and waits for the rest of its body: closing the
        # connection tells it the client is gone.
        logger.info("closing a connection whose request body stalled")
        self.transport.close()

    def _refuse(self, status: int, detail: str) -> None:
        logger.info("refused a request: %d %s", status, detail)
        self._disarm_deadline()
        self.transport.write(_error_response(status, detail))
        self.transport.close()


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol that aborts a connection the application gave up on, and
    offers the application a `FrameSink` onto it."""

    abort_after = WEBSOCKET_ABORT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self._abort_timer: asyncio.TimerHandle | None = None
        self.write_paused = False
        self.on_drained: Callable[[], None] | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # An upgrade the application will accept or refuse, with no extension that would make
        # this connection's frames differ from everyone else's.
        if not self.close_sent and not self.conn.extensions:
            extensions = cast(dict[str, Any], self.scope["extensions"])
            extensions[FRAME_SINK_EXTENSION] = DirectFrameSink(self)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_paused = False
        if self.on_drained is not None:
            self.on_drained()

    def close_now(self, code: int, reason: str) -> None:
        """Send a close frame now, behind what the socket already holds.

        What uvicorn's `send` does for `websocket.close`, except that it does not wait for the
        socket to drain first (a client that stopped reading must not hold its own close back;
        the frames queued behind it were dropped) and does not tell the application at once:
        its `receive` returns the disconnect when the connection is gone (the peer answered,
        or `abort_after` seconds passed), so a client given up on counts until then."""
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self._abort_later()
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.close":
            # Armed before sending: sending itself waits for a stalled peer to read.
            self._abort_later()
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake's request and response (their headers) are not read again; a
            # stream connection would otherwise keep them for as long as it lasts.
            del self.request, self.response

    async def run_asgi(self) -> None:
        try:
            await super().run_asgi()
        finally:
            self._abort_later()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self.on_drained = None
        super().connection_lost(exc)

    def _abort_later(self) -> None:
        if self._abort_timer is None and not self.disconnected:
            self._abort_timer = self.loop.call_later(self.abort_after, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        if not self.disconnected:
            logger.info("aborting a WebSocket whose peer did not complete the close")
            self.transport.abort()


class ReceiveQueue:
    """What uvicorn's WebSocket protocol uses of its receive queue (`put_nowait`, `get`,
    `empty`; one consumer, the application's `receive`) without an `asyncio.Queue`'s three
    deques and event, about 3 KB per connection held for as long as it lasts."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._items.pop(0)


class DirectFrameSink:
    """The stream's `FrameSink` onto one `GuardedWebSocketProtocol` (valid once accepted).

    No permessage-deflate is negotiated (server.py turns it off), so a frame's `wire` bytes are
    what this connection would send for it, and one `transport.write` sends it."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: GuardedWebSocketProtocol) -> None:
        self._protocol = protocol

    @property
    def ready(self) -> bool:
        protocol = self._protocol
        return not (protocol.write_paused or protocol.close_sent or protocol.transport.is_closing())

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    def close(self, code: int, reason: str) -> None:
        self._protocol.close_now(code, reason)

    def listen(self, on_ready: Callable[[], None] | None) -> None:
        self._protocol.on_drained = on_ready
