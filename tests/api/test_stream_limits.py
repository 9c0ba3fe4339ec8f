"""The stream's promises under pressure: the client cap and a client that stops reading."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from nextflow_k8s_service.models import utcnow
from nextflow_k8s_service.utils.broadcaster import Frame
from tests.conftest import SettingsFactory, StreamReader
from tests.live_server import LiveServer


def _noise() -> str:
    return base64.b64encode(os.urandom(750)).decode()


async def test_the_client_over_the_limit_is_refused_with_1013(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    server: LiveServer = await start_server(make_settings(max_websocket_clients=3))
    readers = [await open_stream(server.ws_url) for _ in range(3)]
    for reader in readers:
        assert (await reader.next())["type"] == "snapshot"
    async with connect(server.ws_url) as extra:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(extra.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    # Once one leaves, there is room again.
    await readers[0].connection.close()
    services = server.app.state.services
    async with asyncio.timeout(10):
        await services.broadcaster.wait_for_clients(lambda count: count == 2)
    async with connect(server.ws_url) as again:
        assert '"snapshot"' in await asyncio.wait_for(again.recv(), 10)


async def test_a_stalled_client_is_closed_and_never_delays_the_others(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    queue_frames = 16
    server: LiveServer = await start_server(make_settings(websocket_queue_frames=queue_frames))
    services = server.app.state.services
    healthy: StreamReader = await open_stream(server.ws_url)
    # A client that reads nothing at all: the library buffers one message, then stops
    # reading the socket, so the server's sends back up. A fixed small receive buffer keeps
    # the kernel from auto-tuning it to tens of MB on loopback, as a real slow link would.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", server.port))
    stalled = await connect(server.ws_url, sock=sock, max_queue=1, max_size=None)
    await healthy.next()
    frames_to_send = 600  # ~30 MB in all: far more than the socket buffers hold
    received = 0
    for index in range(frames_to_send):
        # Random text: per-message deflate must not squeeze the frames to nothing.
        lines = [
            {"timestamp": utcnow().isoformat(), "source": "test", "message": _noise()}
            for _ in range(50)
        ]
        services.broadcaster.publish(
            Frame.build("log", None, utcnow(), {"lines": lines, "index": index}, event_id=index + 1)
        )
        frame = await healthy.next(timeout=10)
        assert frame["data"]["index"] == index
        received += 1
        # The stalled client's queue never holds more than its bound.
        for subscription in list(services.broadcaster._subscriptions):
            assert subscription.pending <= queue_frames
    assert received == frames_to_send
    async with asyncio.timeout(10):
        await services.broadcaster.wait_for_clients(lambda count: count == 1)
    metrics = services.metrics.render().decode()
    assert 'nks_websocket_rejected_total{reason="too_slow"} 1.0' in metrics
    # Whatever the stalled client had buffered, its connection ends.
    async with asyncio.timeout(20):
        with pytest.raises(ConnectionClosed):
            await _drain(stalled)


async def test_a_client_that_falls_behind_then_reads_again_gets_every_frame_in_order(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    server: LiveServer = await start_server(make_settings(websocket_queue_frames=64))
    broadcaster = server.app.state.services.broadcaster
    # A client that stops reading (as above) until the server's socket to it is backed up and
    # frames wait in its queue; then it reads everything.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", server.port))
    behind: StreamReader = await open_stream(server.ws_url, sock=sock, max_queue=1, max_size=None)
    assert (await behind.next())["type"] == "snapshot"
    (subscription,) = broadcaster._subscriptions
    published = 0

    def publish() -> None:
        nonlocal published
        published += 1
        lines = [{"source": "test", "message": _noise()} for _ in range(40)]
        data = {"lines": lines, "index": published}
        broadcaster.publish(Frame.build("log", None, utcnow(), data, event_id=published))

    while subscription.pending == 0:
        assert published < 500, "the socket never backed up"
        publish()
    for _ in range(10):
        publish()
    assert subscription.pending > 10 and not subscription.closed
    for index in range(1, published + 1):  # the reader checks that `seq` has no gap
        assert (await behind.next(timeout=10))["data"]["index"] == index
    assert subscription.pending == 0 and not subscription.closed
    assert "too_slow" not in server.app.state.services.metrics.render().decode()


async def _drain(connection: ClientConnection) -> None:
    while True:
        await connection.recv()
