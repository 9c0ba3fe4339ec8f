"""The WebSocket client harness, run as its own process (one event loop for all clients).

    python -m benchmarks.ws_clients URL --clients 100 [--stalled 1] [--idle] [--deadline S]
                                        [--client raw|websockets]

Opens the healthy clients (by default the minimal `raw_ws` client without compression, the
same for every server; `--client websockets` uses websockets' client, offering per-message
deflate as browsers do unless `--no-deflate`) and,
with `--stalled`, clients that stop reading: a socket with a small fixed SO_RCVBUF (loopback
would otherwise auto-tune it to tens of MB) and `max_queue=1`, so the library stops reading
after one message and the server's sends back up, as on a slow link. Prints `READY` once every
client has its first frame, then records, for each frame carrying a send time, the delivery
latency, until every healthy client has seen the end marker (or its connection closed, or the
deadline passed). With `--idle` it holds the connections until stdin closes instead. The last
line printed is a JSON summary; the same client code serves our server and the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import socket
import sys
import time
from array import array
from typing import Any
from urllib.parse import urlparse

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks import raw_ws
from benchmarks.frames import END_INDEX
from benchmarks.stats import percentile

# The send time: in the frame's data (injected frames), or in a line's message (a step's
# printed lines, `benchmarks.serve lines`).
STAMP = re.compile(rb'"sent":([0-9.eE+-]+),"index":(-?\d+)|sent=([0-9.eE+-]+) index=(-?\d+)')
STALLED_RCVBUF = 32 * 1024
CONNECT_TIMEOUT = 30.0


class Tally:
    def __init__(self) -> None:
        self.latencies = array("d")
        self.frames = 0
        self.first_recv = float("inf")
        self.last_recv = 0.0
        self.first_sent = float("inf")
        self.finished = 0
        self.close_codes: dict[str, int] = {}
        self.refused = 0


def _record(tally: Tally, message: bytes) -> bool:
    """Count one received frame; True for the end marker."""
    now = time.monotonic()
    match = STAMP.search(message, 0, 400)
    if match is None:
        return False
    sent_text, index_text = match.group(1, 2) if match.group(1) else match.group(3, 4)
    if int(index_text) == END_INDEX:
        tally.finished += 1
        return True
    sent = float(sent_text)
    tally.latencies.append((now - sent) * 1000)
    tally.frames += 1
    tally.first_recv = min(tally.first_recv, now)
    tally.first_sent = min(tally.first_sent, sent)
    tally.last_recv = now
    return False


class _RawHealthy:
    """A raw client: its first frame (snapshot or hello) opens it, then every frame counts."""

    def __init__(self, tally: Tally) -> None:
        loop = asyncio.get_running_loop()
        self.tally = tally
        self.first: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.client: raw_ws.RawClient | None = None

    def on_message(self, message: bytes) -> None:
        if not self.first.done():
            self.first.set_result(None)
            return
        if _record(self.tally, message) and not self.done.done():
            self.done.set_result(None)

    async def run(self, deadline: float) -> None:
        assert self.client is not None
        ended = asyncio.ensure_future(asyncio.shield(self.client.closed))
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                await asyncio.wait([self.done, ended], return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            self.tally.close_codes["deadline"] = self.tally.close_codes.get("deadline", 0) + 1
            return
        finally:
            ended.cancel()
        if not self.done.done():
            code = str(self.client.closed.result())
            self.tally.close_codes[code] = self.tally.close_codes.get(code, 0) + 1


async def _open_raw(url: str, tally: Tally) -> _RawHealthy | None:
    """A connected client that got its first frame; None (counted as refused) if the server
    refused the handshake or closed the connection before a first frame."""
    parsed = urlparse(url)
    healthy = _RawHealthy(tally)
    try:
        healthy.client = await raw_ws.connect(
            parsed.hostname or "127.0.0.1", parsed.port or 80, parsed.path, healthy.on_message
        )
    except ConnectionError:
        tally.refused += 1
        return None
    await asyncio.wait([healthy.first, healthy.client.closed], return_when=asyncio.FIRST_COMPLETED)
    if not healthy.first.done():
        tally.refused += 1
        return None
    return healthy


async def _healthy(connection: ClientConnection, tally: Tally, deadline: float) -> None:
    try:
        while True:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                message = await connection.recv(decode=False)
            if _record(tally, message):
                return
    except ConnectionClosed as closed:
        code = str(closed.rcvd.code if closed.rcvd else "none")
        tally.close_codes[code] = tally.close_codes.get(code, 0) + 1
    except TimeoutError:
        tally.close_codes["deadline"] = tally.close_codes.get("deadline", 0) + 1


async def _stalled_connect(url: str, compression: str | None) -> ClientConnection:
    parsed = urlparse(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parsed.hostname, parsed.port))
    return await connect(url, sock=sock, max_queue=1, max_size=None, compression=compression)


async def _drain_stalled(connection: ClientConnection, seconds: float) -> dict[str, Any]:
    """Read what the stalled client was sent until its connection ends: its close code and
    how many frames had been sitting in buffers (socket buffers, library queue)."""
    buffered = 0
    code = "still open"
    try:
        async with asyncio.timeout(seconds):
            while True:
                await connection.recv(decode=False)
                buffered += 1
    except ConnectionClosed as closed:
        code = str(closed.rcvd.code if closed.rcvd else "none")
    except TimeoutError:
        pass
    return {"close_code": code, "buffered_frames": buffered}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    healthy: list[ClientConnection] = []
    raw: list[_RawHealthy] = []
    stalled: list[ClientConnection] = []
    compression = None if args.no_deflate or args.client == "raw" else "deflate"
    tally = Tally()
    async with asyncio.timeout(CONNECT_TIMEOUT):
        for _ in range(args.clients):
            if args.client == "raw":
                opened = await _open_raw(args.url, tally)
                if opened is not None:
                    raw.append(opened)
                continue
            connection = await connect(args.url, max_size=None, compression=compression)
            await connection.recv()  # the snapshot (ours) or hello (baseline)
            healthy.append(connection)
        for _ in range(args.stalled):
            stalled.append(await _stalled_connect(args.url, compression))
    print("READY", flush=True)
    try:
        if args.idle:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        else:
            deadline = time.monotonic() + args.deadline
            await asyncio.gather(
                *(_healthy(c, tally, deadline) for c in healthy),
                *(r.run(deadline) for r in raw),
            )
        stalled_codes = [await _drain_stalled(c, args.drain) for c in stalled]
    finally:
        for client in raw:
            if client.client is not None:
                client.client.close()
        for connection in healthy + stalled:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await connection.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    span = tally.last_recv - tally.first_sent if tally.frames else 0.0
    return {
        "clients": args.clients - tally.refused,
        "refused": tally.refused,
        "stalled": args.stalled,
        "frames": tally.frames,
        "finished_clients": tally.finished,
        "close_codes": tally.close_codes,
        "stalled_clients": stalled_codes,
        "span_seconds": span,
        "delivered_per_second": tally.frames / span if span > 0 else 0.0,
        "latency_ms": {
            "p50": percentile(tally.latencies, 0.50),
            "p99": percentile(tally.latencies, 0.99),
            "max": max(tally.latencies, default=float("nan")),
        },
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ws_clients")
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--stalled", type=int, default=0)
    parser.add_argument("--idle", action="store_true")
    parser.add_argument("--no-deflate", action="store_true", help="do not offer compression")
    parser.add_argument(
        "--client", choices=("raw", "websockets"), default="raw", help="healthy clients' code"
    )
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--drain", type=float, default=20.0, help="stalled clients' drain (s)")
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
