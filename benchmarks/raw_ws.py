"""A minimal WebSocket client for the harness: handshake, then unmasked server frames parsed
straight out of the receive buffer, no compression, no per-message objects.

The `websockets` client costs tens of microseconds per message, so with a hundred clients in
one process it saturates its own core before the server does, and the figure then measures
the client. This one costs a few microseconds a frame, and the same client serves our server
and the bare baseline, so the two are compared on equal terms. It answers pings (uvicorn pings
every 20 s) and close frames; it never sends data.
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


class RawClient(asyncio.Protocol):
    """One connection. `on_message(payload)` is called for every complete data message."""

    def __init__(self, on_message: Callable[[bytes], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._handshaken = False
        self._fragments: list[bytes] = []
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._handshaken:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._buffer[: self._buffer.find(b"\r\n")])
            del self._buffer[: end + 4]
            if b" 101 " not in status:
                self._finish(None, RawClosedError(None), f"handshake refused: {status!r}")
                self._buffer.clear()
                return
            self._handshaken = True
            self.opened.set_result(None)
        self._parse()

    def _parse(self) -> None:
        buffer = self._buffer
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset + 2)
                header = 4
            elif length == 127:
                if size - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset + 2)
                header = 10
            if size - offset < header + length:
                break
            payload = bytes(buffer[offset + header : offset + header + length])
            offset += header + length
            self._frame(first & 0x80, first & 0x0F, payload)
        del buffer[:offset]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments.clear()
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
    _, client = await loop.create_connection(lambda: RawClient(on_message), url_host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    assert client.transport is not None
    client.transport.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {url_host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await client.opened
    return client
