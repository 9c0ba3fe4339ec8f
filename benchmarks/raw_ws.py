"""A minimal WebSocket client for the harness: handshake, then unmasked server frames parsed
straight out of the receive buffer, no compression, no per-message objects.

The `websockets` client costs tens of microseconds per message, so with a hundred clients in
one process it saturates its own core before the server does, and the figure then measures
the client. This one keeps only the start of each message (where the harness's send time
is) and skips the rest as it streams in: a few microseconds a frame. The same client serves
our server and the bare baseline, so the two are compared on equal terms. It answers pings
(uvicorn pings every 20 s) and close frames; it never sends data.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9
OP_PONG = 0xA


class RawClosedError(Exception):
    """The connection ended; `code` is the close code received (None: no close frame)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed ({code})")
        self.code = code


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (clients must mask); payloads here are small control frames."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


PREFIX_BYTES = (
    400  # of a data message: what `on_message` gets (the harness's stamp is near the start)
)


class RawClient(asyncio.Protocol):
    """One connection. `on_message(prefix)` is called for every complete data message with its
    first `PREFIX_BYTES` bytes: the rest of a payload is skipped as it streams in, never
    buffered or copied, so a client costs a few microseconds per message whatever its size."""

    def __init__(self, on_message: Callable[[bytes], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self._handshake = bytearray()
        self._handshaken = False
        self._header = bytearray()  # a frame header split across reads
        self._opcode = 0
        self._remaining = 0  # payload bytes of the current frame still to come
        self._prefix = bytearray()  # the kept start of the current payload
        self._keep = 0  # how much of the payload to keep
        self._in_frame = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        if not self._handshaken:
            self._handshake += data
            end = self._handshake.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._handshake[: self._handshake.find(b"\r\n")])
            data = bytes(self._handshake[end + 4 :])
            self._handshake = bytearray()
            if b" 101 " not in status:
                self._finish(None, RawClosedError(None), f"handshake refused: {status!r}")
                return
            self._handshaken = True
            self.opened.set_result(None)
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        position, size = 0, len(data)
        while position < size:
            if not self._in_frame:
                position = self._read_header(data, position)
                if not self._in_frame:
                    return  # the header is incomplete: wait for more
                if self._remaining == 0:
                    self._end_frame()
                continue
            take = min(self._remaining, size - position)
            wanted = self._keep - len(self._prefix)
            if wanted > 0:
                self._prefix += data[position : position + min(take, wanted)]
            position += take
            self._remaining -= take
            if self._remaining == 0:
                self._end_frame()

    def _read_header(self, data: bytes, position: int) -> int:
        """Consume a frame header from `data` (with any part kept from an earlier read)."""
        header = self._header
        while position < len(data):
            header.append(data[position])
            position += 1
            if len(header) < 2:
                continue
            length = header[1] & 0x7F
            needed = 2 + (2 if length == 126 else 8 if length == 127 else 0)
            if len(header) < needed:
                continue
            if length == 126:
                (length,) = struct.unpack_from("!H", header, 2)
            elif length == 127:
                (length,) = struct.unpack_from("!Q", header, 2)
            self._opcode = header[0] & 0x0F
            self._remaining = length
            data_frame = self._opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION)
            self._keep = PREFIX_BYTES if data_frame else length
            self._prefix = bytearray()
            self._header = bytearray()
            self._in_frame = True
            return position
        return position

    def _end_frame(self) -> None:
        self._in_frame = False
        opcode, payload = self._opcode, bytes(self._prefix)
        if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
            # Servers here never fragment; a continuation is reported as its own message.
            self.on_message(payload)
        elif opcode == OP_PING and self.transport is not None:
            self.transport.write(_client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else None
            if self.transport is not None:
                self.transport.write(_client_frame(OP_CLOSE, payload[:2]))
                self.transport.close()
            self._finish(code, None, None)

    def _finish(self, code: int | None, error: Exception | None, reason: str | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason or "closed during the handshake"))
            self.opened.exception()  # retrieved: a refusal is reported by `connect`
        if not self.closed.done():
            self.closed.set_result(code)
        if error is not None and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(None, None, None)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_client_frame(OP_CLOSE, struct.pack("!H", 1000)))
            self.transport.close()


async def connect(
    url_host: str, port: int, path: str, on_message: Callable[[bytes], None]
) -> RawClient:
    """Open a connection to ws://host:port/path; returns once the handshake succeeded."""
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16)).decode()
    transport, client = await loop.create_connection(lambda: RawClient(on_message), url_host, port)
    # uvloop may call `connection_made` only after `create_connection` has returned.
    client.transport = transport
    transport.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {url_host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await client.opened
    return client
