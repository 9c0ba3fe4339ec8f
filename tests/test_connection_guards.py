"""Connections cannot pin the server (issue 16): bounded request heads, a deadline for
receiving a request, and WebSockets the service gave up on aborted within seconds."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import psutil
import pytest

from nextflow_k8s_service.connection_guards import (
    MAX_REQUEST_HEAD_BYTES,
    REQUEST_RECEIVE_TIMEOUT_SECONDS,
    WEBSOCKET_ABORT_SECONDS,
    ReceiveQueue,
)
from nextflow_k8s_service.models import utcnow
from nextflow_k8s_service.utils.broadcaster import Frame
from tests.conftest import SettingsFactory
from tests.live_server import HOST, LiveServer

HEADER_BYTES = 64 * 1024 * 1024


class LoopLag:
    """The longest time the event loop (which also runs the server) was unable to run a task."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.worst = max(self.worst, time.perf_counter() - before - self.interval)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._tick(), name="loop-lag")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def _send_huge_header(port: int) -> bytes:
    """Send a request with a 64 MiB header from another thread; what the server answered."""
    with socket.create_connection((HOST, port), timeout=30) as sock:
        chunk = b"a" * (1024 * 1024)
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(HEADER_BYTES // len(chunk)):
                sock.sendall(chunk)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # the server closed the connection: the expected outcome
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except OSError:
            pass
        return received


async def test_an_oversized_header_is_431_without_stalling_the_loop(server: LiveServer) -> None:
    with LoopLag() as lag:
        answer = await asyncio.to_thread(_send_huge_header, server.port)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert lag.worst < 0.1, f"event loop stalled {lag.worst:.3f} s"
    process = psutil.Process()
    assert process.memory_info().rss < 512 * 1024 * 1024


async def test_a_header_just_under_the_limit_is_served(server: LiveServer) -> None:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    filler = b"a" * (MAX_REQUEST_HEAD_BYTES - 200)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + filler + b"\r\n\r\n")
    status = await asyncio.wait_for(reader.readline(), 10)
    assert status.startswith(b"HTTP/1.1 200 ")
    writer.close()


async def _open_incomplete(port: int, payload: bytes) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection(HOST, port)
    if payload:
        writer.write(payload)
        await writer.drain()
    return reader, writer


async def _closed_after(reader: asyncio.StreamReader, started: float) -> tuple[float, bytes]:
    answer = await reader.read()  # until the server closes the connection
    return time.monotonic() - started, answer


@pytest.mark.slow(10)
async def test_requests_that_never_complete_are_closed_within_the_stated_timeout(
    server: LiveServer,
) -> None:
    incomplete = {
        "nothing sent": b"",
        "half a head": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        "short body": (
            b"POST /api/v1/demo/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"batch_count"'
        ),
    }
    started = time.monotonic()
    connections = [await _open_incomplete(server.port, data) for data in incomplete.values()]
    # A complete request on another connection is not held up meanwhile.
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200 ")
    writer.close()
    async with asyncio.timeout(REQUEST_RECEIVE_TIMEOUT_SECONDS + 5):
        results = await asyncio.gather(*(_closed_after(r, started) for r, _ in connections))
    for name, (elapsed, answer) in zip(incomplete, results, strict=True):
        assert REQUEST_RECEIVE_TIMEOUT_SECONDS - 1 <= elapsed <= REQUEST_RECEIVE_TIMEOUT_SECONDS + 3
        if name == "half a head":
            assert answer.startswith(b"HTTP/1.1 408 "), answer
        else:  # nothing to answer, or the application already has the request
            assert answer == b"", (name, answer)
    for _, writer in connections:
        writer.close()
    assert not server.app.state.services.manager.draining


def _established_from(server_port: int, client_port: int) -> bool:
    return any(
        conn.status == psutil.CONN_ESTABLISHED
        and conn.laddr
        and conn.laddr.port == server_port
        and conn.raddr
        and conn.raddr.port == client_port
        for conn in psutil.Process().net_connections(kind="tcp")
    )


def _stalled_websocket(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect((HOST, port))
    sock.sendall(
        b"GET /api/v1/pipeline/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


async def test_a_burst_stalled_websocket_is_aborted_and_counted_until_then(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    server: LiveServer = await start_server(make_settings(websocket_queue_frames=16))
    broadcaster = server.app.state.services.broadcaster
    sock = await asyncio.to_thread(_stalled_websocket, server.port)
    client_port = sock.getsockname()[1]
    try:
        async with asyncio.timeout(10):
            await broadcaster.wait_for_clients(lambda count: count == 1)
        big = {"lines": [{"message": "x" * 60_000}]}
        while not any(sub.closed for sub in broadcaster._subscriptions):
            broadcaster.publish(Frame.build("log", None, utcnow(), big))
            await asyncio.sleep(0)  # let the writer push frames until the socket backs up
        given_up = time.monotonic()
        # Closed "too slow", but its socket is still there: it still counts.
        assert broadcaster.client_count == 1
        assert _established_from(server.port, client_port)
        async with asyncio.timeout(5):
            await broadcaster.wait_for_clients(lambda count: count == 0)
        assert time.monotonic() - given_up >= WEBSOCKET_ABORT_SECONDS - 0.5
        assert not _established_from(server.port, client_port)
    finally:
        sock.close()


async def test_the_receive_queue_hands_messages_over_in_order_and_survives_a_cancelled_read() -> (
    None
):
    queue = ReceiveQueue()
    queue.put_nowait("connect")
    assert not queue.empty() and await queue.get() == "connect" and queue.empty()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # let it start waiting
    queue.put_nowait("first")
    queue.put_nowait("second")
    assert await waiting == "first" and await queue.get() == "second"
    abandoned = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    abandoned.cancel()
    queue.put_nowait("after")  # not lost to the cancelled read
    assert await queue.get() == "after"
