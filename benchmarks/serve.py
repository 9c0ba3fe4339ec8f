"""A server process for the fan-out figures, driven over stdin/stdout (one JSON object a line).

    python -m benchmarks.serve ours --workspace DIR      # create_app(settings) under uvicorn
    python -m benchmarks.serve lines --workspace DIR     # the same, fed a step's printed lines
    python -m benchmarks.serve baseline                  # bare websockets + websockets.broadcast

Both print `{"port": P}` once listening, then answer commands read from stdin:

- `{"cmd": "publish", "count": N, "rate": R or null, "payload": "text"|"noise", "window": W}`:
  publish N log frames and then an end marker, each carrying its send time (`time.monotonic`,
  system-wide on Linux, so the client process can compute delivery latency). With a `rate`,
  frames follow a fixed schedule (no drift, no backpressure) and carry the time they were due,
  so a server whose loop falls behind is charged for it (no coordinated omission).
  Without one, frames go out as fast as the server accepts them: the publisher waits while the
  slowest client is `window` frames behind, since the service's broadcaster never waits and
  would otherwise close every client with 1013. Answers with what happened.
- `{"cmd": "lag_start"}` / `{"cmd": "lag_stop"}`: run the event-loop lag probe in between;
  `lag_stop` answers with the largest and the 99th-percentile lateness of its wake-ups.
- `{"cmd": "quit"}` (or end of input): shut down.

Frames are injected in the server's own event loop through `Broadcaster.publish` (our server)
or `websockets.broadcast` (the baseline), so both pay the same per-publish JSON encoding and the
figures measure the fan-out path, not an executor. `lines` instead feeds each frame's 50 lines
as the executor reports a step's output (`LogEmitted` events) into a real `RunSession`: the
whole line path (cut into 50-line frames, kept in the store, relayed, applied to the live view,
encoded, fanned out) is measured end to end. The send time then travels in the first line's
message (`sent=<t> index=<i> ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.frames import END_INDEX, frame_data, line_pool

HOST = "127.0.0.1"
# The service's MAX_INCOMING_MESSAGE_BYTES, for the baseline too (not imported from the service:
# the bare server must not pay for importing FastAPI).
MAX_INCOMING_MESSAGE_BYTES = 4096
PUBLISH_DEADLINE_SECONDS = 300.0
# All benchmark clients share one address: per-client limits high enough never to refuse, so
# the limiter still runs (and costs what it costs) but the figures measure the work.
UNREFUSED_PER_MINUTE = 1_000_000_000
RATE_LIMITS = {
    "rate_limit_runs_per_minute": UNREFUSED_PER_MINUTE,
    "rate_limit_cancels_per_minute": UNREFUSED_PER_MINUTE,
    "rate_limit_stream_connects_per_minute": UNREFUSED_PER_MINUTE,
}


class Target:
    """What the publisher drives: send one frame, and tell how far behind clients are."""

    def send(self, index: int, lines: list[list[dict[str, str]]], sent: float) -> None:
        raise NotImplementedError

    def backlog(self) -> float:
        """Frames the slowest client is behind."""
        raise NotImplementedError

    def dropped(self) -> int:
        """Clients closed for lagging since the last `reset`."""
        return 0

    def frame_bytes(self) -> int:
        """Size of the last frame sent (characters of its JSON)."""
        return 0

    def reset(self) -> None:
        pass


async def publish(target: Target, command: dict[str, Any]) -> dict[str, Any]:
    count = int(command["count"])
    rate = command.get("rate")
    window = int(command.get("window", 64))
    pool = line_pool(command.get("payload", "text"))
    target.reset()
    started = time.monotonic()
    deadline = started + PUBLISH_DEADLINE_SECONDS
    waits = 0
    peak_backlog = peak_bytes = 0.0
    aborted = False
    for index in range(count):
        if rate:
            # Latency counts from when the frame was due, not from when the loop got round
            # to it: a server that falls behind must not slow its own load down unnoticed.
            sent = started + index / rate
            delay = sent - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            while target.backlog() >= window and time.monotonic() < deadline:
                waits += 1
                await asyncio.sleep(0.0005)
        if time.monotonic() >= deadline:
            aborted = True
            break
        if not rate:
            sent = time.monotonic()
        target.send(index, pool, sent)
        backlog = target.backlog()
        if backlog > peak_backlog:
            peak_backlog, peak_bytes = backlog, backlog * target.frame_bytes()
        # Let the writers run between publishes, as a real producer's awaits would.
        await asyncio.sleep(0)
    elapsed = time.monotonic() - started
    target.send(END_INDEX, pool, time.monotonic())
    return {
        "published": count,
        "seconds": elapsed,
        "offered_rate": count / elapsed if elapsed else 0.0,
        "backpressure_waits": waits,
        "dropped_clients": target.dropped(),
        # The most frames any one client had queued (ours) or buffered (baseline), and their
        # approximate size: what a lagging client held in the server's memory at its worst.
        "peak_backlog_frames": peak_backlog,
        "peak_backlog_bytes": peak_bytes,
        "aborted": aborted,
    }


# --- our service ---------------------------------------------------------------------------


class OursTarget(Target):
    def __init__(self, app: Any) -> None:
        from nextflow_k8s_service.models import utcnow
        from nextflow_k8s_service.utils.broadcaster import CLOSE_TRY_AGAIN_LATER, Frame

        self._app = app
        self._frame = Frame
        self._utcnow = utcnow
        self._too_slow = CLOSE_TRY_AGAIN_LATER
        self._watched: list[Any] = []
        self._frame_bytes = 0
        self._frame_id = 0

    def frame_bytes(self) -> int:
        return self._frame_bytes

    @property
    def _broadcaster(self) -> Any:
        return self._app.state.services.broadcaster

    def send(self, index: int, lines: list[list[dict[str, str]]], sent: float) -> None:
        data = frame_data(lines, index, sent)
        self._frame_id += 1
        frame = self._frame.build("log", None, self._utcnow(), data, event_id=self._frame_id)
        self._frame_bytes = len(frame.wire)
        self._broadcaster.publish(frame)

    def backlog(self) -> float:
        # The broadcaster keeps its subscriptions private; the harness peeks, as tests do.
        return max((s.pending for s in self._broadcaster._subscriptions), default=0)

    def reset(self) -> None:
        self._watched = list(self._broadcaster._subscriptions)

    def dropped(self) -> int:
        return sum(
            1 for s in self._watched if s.close_reason and s.close_reason[0] == self._too_slow
        )


class LinesTarget(OursTarget):
    """Feeds log lines into a `RunSession` of a run held in the service's own store."""

    def __init__(self, app: Any) -> None:
        from nextflow_k8s_service.executors.base import LogEmitted

        super().__init__(app)
        self._log_emitted = LogEmitted
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._session_task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        from nextflow_k8s_service.models import RunRecord, new_run_id
        from nextflow_k8s_service.services.run_session import RunSession

        services = self._app.state.services
        store = services.manager._store  # the harness peeks, as for the subscriptions
        acquired = await store.acquire(
            RunRecord(run_id=new_run_id(), batch_count=1, executor="benchmark")
        )
        session = RunSession(
            record=acquired.run,
            executor=_QueueExecutor(self._events),
            store=store,
            events=store.events,  # the memory store's event log, which the relay follows
            metrics=services.metrics,
            results_root=services.settings.results_root,
            renew_every=services.settings.redis_lease_seconds / 3,
        )
        self._session_task = asyncio.create_task(session.run(), name="bench-session")

    async def stop(self) -> None:
        if self._session_task is not None:
            self._session_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._session_task

    def send(self, index: int, lines: list[list[dict[str, str]]], sent: float) -> None:
        emit = self._events.put_nowait
        stamp = f"sent={sent!r} index={index}"
        if index == END_INDEX:
            emit(self._log_emitted(source="controller", message=stamp))
            return
        chosen = lines[index % len(lines)]
        for number, line in enumerate(chosen):
            message = f"{stamp} {line['message']}" if number == 0 else line["message"]
            emit(self._log_emitted(source=line["source"], message=message))

    def backlog(self) -> float:
        return super().backlog() + self._events.qsize() / 50


class _QueueExecutor:
    """Just enough of an executor for a `RunSession`: its events come from a queue."""

    def __init__(self, events: asyncio.Queue[Any]) -> None:
        self._events = events

    async def events(self, run_id: str) -> Any:
        while True:
            yield await self._events.get()

    async def cancel(self, run_id: str) -> None:
        return None


async def serve_ours(
    workspace: Path,
    queue_frames: int | None,
    ws: str | None,
    default_limits: bool,
    pace: float,
    lines: bool = False,
) -> None:

    from nextflow_k8s_service.config import load_settings
    from nextflow_k8s_service.main import create_app
    from nextflow_k8s_service.server import ServiceServer, server_config

    overrides: dict[str, Any] = {
        "workspace_dir": workspace,
        "demo_generate_seconds": pace,
        "demo_analyze_seconds": 0,
        "log_level": "WARNING",
        **({} if default_limits else RATE_LIMITS),
    }
    if queue_frames:
        overrides["websocket_queue_frames"] = queue_frames
    settings = load_settings(**overrides)
    app = create_app(settings)
    sock = _listen()
    # The shipped uvicorn configuration (server_config), as the console script uses it.
    extra = {"ws": ws} if ws else {}
    config = server_config(app, settings, log_level="warning", timeout_graceful_shutdown=5, **extra)
    server = ServiceServer(config, app=app)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    while not server.started:
        if serving.done():
            serving.result()
            raise RuntimeError("uvicorn exited during start-up")
        await asyncio.sleep(0.02)
    try:
        if lines:
            target = LinesTarget(app)
            await target.start()
            try:
                await _control(target, sock.getsockname()[1])
            finally:
                await target.stop()
        else:
            await _control(OursTarget(app), sock.getsockname()[1])
    finally:
        server.should_exit = True
        await serving


# --- the baseline --------------------------------------------------------------------------


class BaselineTarget(Target):
    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self._frame_bytes = 1

    def send(self, index: int, lines: list[list[dict[str, str]]], sent: float) -> None:
        from websockets.asyncio.server import broadcast

        data = frame_data(lines, index, sent)
        text = json.dumps(
            {"seq": 0, "type": "log", "run_id": None, "timestamp": _now(), "data": data},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        self._frame_bytes = max(len(text), 1)
        broadcast(self.connections, text)

    def frame_bytes(self) -> int:
        return self._frame_bytes

    def backlog(self) -> float:
        # No queue of its own: what sits in the transports' write buffers, in frames.
        buffered = max(
            (c.transport.get_write_buffer_size() for c in self.connections if c.transport),
            default=0,
        )
        return buffered / self._frame_bytes


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


async def serve_baseline() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    target = BaselineTarget()

    async def handler(connection: ServerConnection) -> None:
        target.connections.add(connection)
        try:
            # A first frame, as our server's snapshot, so clients know they are subscribed.
            await connection.send('{"seq":0,"type":"hello","run_id":null,"data":{}}')
            await connection.wait_closed()
        finally:
            target.connections.discard(connection)

    sock = _listen()
    # No compression: the floor is the bare server sending frames as they are, as ours does.
    async with serve(handler, sock=sock, max_size=MAX_INCOMING_MESSAGE_BYTES, compression=None):
        await _control(target, sock.getsockname()[1])


# --- plumbing ------------------------------------------------------------------------------


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    return sock


class LagProbe:
    """Wakes up every `interval` seconds and records how late each wake-up was: whatever
    holds the event loop (a blocking call, a long stretch of work) shows as lateness. On a
    shared machine the lateness also includes time the process waited for a core."""

    def __init__(self, interval: float = 0.002) -> None:
        self._interval = interval
        self._late: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._late = []
        self._task = asyncio.create_task(self._run(), name="lag-probe")

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        late = sorted(self._late)
        p99 = late[min(len(late) - 1, int(len(late) * 0.99))] if late else 0.0
        return {"samples": len(late), "max_ms": max(late, default=0.0) * 1000, "p99_ms": p99 * 1000}

    async def _run(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock has a resolution of 1 ms.
        while True:
            due = time.perf_counter() + self._interval
            await asyncio.sleep(self._interval)
            self._late.append(max(0.0, time.perf_counter() - due))


async def _control(target: Target, port: int) -> None:
    probe = LagProbe()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _reply({"port": port})
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "quit":
            return
        if command["cmd"] == "publish":
            _reply(await publish(target, command))
        elif command["cmd"] == "cpu":
            # This process's CPU time from the kernel's per-process clock (nanoseconds), not
            # /proc's 10 ms ticks: a short run must not read as zero.
            _reply({"seconds": time.process_time()})
        elif command["cmd"] == "lag_start":
            probe.start()
            _reply({"started": True})
        elif command["cmd"] == "lag_stop":
            _reply(await probe.stop())
        else:
            _reply({"error": f"unknown command {command['cmd']!r}"})


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    parser.add_argument("kind", choices=("ours", "lines", "baseline"))
    parser.add_argument("--workspace", type=Path, default=Path(".workspace-bench"))
    parser.add_argument("--queue-frames", type=int, default=None)
    parser.add_argument(
        "--ws",
        choices=("websockets", "websockets-sansio", "wsproto"),
        default=None,
        help="uvicorn's WebSocket implementation (default: the service's own choice)",
    )
    parser.add_argument(
        "--pace", type=float, default=0.0, help="DEMO_GENERATE_SECONDS of runs started"
    )
    parser.add_argument(
        "--default-limits",
        action="store_true",
        help="keep the service's default connection limits (no raised rate limits)",
    )
    args = parser.parse_args(argv)
    runner: Callable[[], Any]
    if args.kind in ("ours", "lines"):
        runner = lambda: serve_ours(  # noqa: E731
            args.workspace,
            args.queue_frames,
            args.ws,
            args.default_limits,
            args.pace,
            lines=args.kind == "lines",
        )
    else:
        runner = serve_baseline
    with contextlib.suppress(KeyboardInterrupt):
        # Both servers on uvloop, the loop uvicorn picks for the service in production.
        uvloop.run(runner())


if __name__ == "__main__":
    main()
