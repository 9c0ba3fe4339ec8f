"""A run looked back into and followed over HTTP: `/runs/{id}/events` (NDJSON, SSE, `after`,
`follow`), `/active/events`, `/runs/{id}/logs`, against a live server and real WebSocket
clients; and a run whose log outgrows the archive's bounds."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import httpx
import pytest

from nextflow_k8s_service.api import run_events
from nextflow_k8s_service.models import RunEvent, RunRecord, RunStatus, utcnow
from nextflow_k8s_service.services.event_log import MAX_LOG_LINES_PER_RUN
from nextflow_k8s_service.services.progress import ProgressTracker
from nextflow_k8s_service.services.run_archive import DEFAULT_LOG_LIMIT, MAX_LOG_LIMIT
from nextflow_k8s_service.services.state_store import MemoryStateStore
from tests.conftest import SettingsFactory, StreamReader
from tests.live_server import LiveServer

API = "/api/v1/demo"
MEMBERS = ["seq", "type", "run_id", "id", "timestamp", "data"]


def live_frames(stream: StreamReader, run_id: str) -> list[dict[str, Any]]:
    """What a WebSocket client received of the run, without `seq` (per connection)."""
    return [
        {k: v for k, v in f.items() if k != "seq"}
        for f in stream.frames
        if f["run_id"] == run_id and f["type"] != "snapshot"
    ]


def parse_ndjson(text: str) -> list[dict[str, Any]]:
    frames = [json.loads(line) for line in text.splitlines()]
    for frame in frames:
        assert list(frame) == MEMBERS and frame["seq"] == frame["id"], frame
    return frames


def without_seq(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in f.items() if k != "seq"} for f in frames]


async def read_stream(client: httpx.AsyncClient, url: str, **kwargs: Any) -> list[str]:
    """The lines of a streamed response, read as they come, until the server ends it."""
    lines = []
    async with client.stream("GET", url, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line:
                lines.append(line)
    return lines


async def test_a_finished_run_replays_as_it_was_streamed_and_its_logs_filter_by_source(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    server: LiveServer = await start_server(make_settings())
    stream: StreamReader = await open_stream(server.ws_url)
    assert (await stream.next())["type"] == "snapshot"
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        run_id = (await client.post(f"{API}/run", json={"batch_count": 4})).json()["run_id"]
        await stream.until_complete(run_id)
        replay = await client.get(f"{API}/runs/{run_id}/events")
        sse = await client.get(
            f"{API}/runs/{run_id}/events", headers={"Accept": "text/event-stream"}
        )
        logs = await client.get(f"{API}/runs/{run_id}/logs", params={"source": "GENERATE (3)"})
        all_logs = await client.get(f"{API}/runs/{run_id}/logs")
        last_two = await client.get(f"{API}/runs/{run_id}/logs", params={"limit": 2})
        errors = [
            await client.get(f"{API}/runs/r000000000ff/events"),
            await client.get(f"{API}/runs/r000000000ff/logs"),
            await client.get(f"{API}/runs/..%2Fetc/events"),
            await client.get(f"{API}/runs/{run_id}/logs", params={"limit": MAX_LOG_LIMIT + 1}),
            await client.get(f"{API}/runs/{run_id}/logs", params={"limit": 0}),
            await client.get(f"{API}/runs/{run_id}/events", params={"after": -1}),
            await client.get(f"{API}/runs/{run_id}/events", headers={"Last-Event-ID": "x"}),
            await client.get(f"{API}/active/events"),
        ]

    assert replay.status_code == 200
    assert replay.headers["content-type"] == "application/x-ndjson"
    recorded = parse_ndjson(replay.text)
    assert without_seq(recorded) == live_frames(stream, run_id)
    assert [f["type"] for f in recorded].count("complete") == 1
    assert recorded[-1]["type"] == "complete"

    assert sse.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in sse.text.strip().split("\n\n")]
    assert [
        (int(e[0].removeprefix("id: ")), e[1].removeprefix("event: "), json.loads(e[2][6:]))
        for e in events
    ] == [(f["id"], f["type"], f) for f in recorded]

    lines_seen = [
        line
        for f in live_frames(stream, run_id)
        if f["type"] == "log"
        for line in f["data"]["lines"]
    ]
    assert logs.status_code == 200
    body = logs.json()
    assert body["source"] == "GENERATE (3)" and body["dropped_lines"] == 0
    assert body["lines"] and not body["truncated"]
    assert body["lines"] == [line for line in lines_seen if line["source"] == "GENERATE (3)"]
    assert all_logs.json()["lines"] == lines_seen[-DEFAULT_LOG_LIMIT:]
    assert len({line["source"] for line in all_logs.json()["lines"]}) > 2
    assert last_two.json()["lines"] == lines_seen[-2:] and last_two.json()["truncated"]

    assert [r.status_code for r in errors] == [404, 404, 404, 422, 422, 422, 422, 404]
    assert all("detail" in r.json() for r in errors)


async def test_a_follower_from_mid_run_gets_the_run_from_its_start_then_live_then_ends(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    settings = make_settings(demo_generate_seconds=0.4, demo_analyze_seconds=0.2)
    server: LiveServer = await start_server(settings)
    stream: StreamReader = await open_stream(server.ws_url)
    assert (await stream.next())["type"] == "snapshot"
    async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as client:
        run_id = (await client.post(f"{API}/run", json={"batch_count": 3})).json()["run_id"]
        # Mid-run: a task has started; the run is far from done.
        seen = await stream.until(lambda f: f["type"] == "task" and f["run_id"] == run_id)
        follow = asyncio.create_task(
            read_stream(client, f"{API}/runs/{run_id}/events", params={"follow": "true"})
        )
        active = asyncio.create_task(read_stream(client, f"{API}/active/events"))
        resumed = asyncio.create_task(
            read_stream(
                client,
                f"{API}/runs/{run_id}/events",
                params={"follow": "true"},
                headers={"Last-Event-ID": str(seen["id"])},
            )
        )
        await stream.until_complete(run_id)
        # Each follower ends by itself once the run's `complete` is sent.
        followed, from_active, from_seen = await asyncio.wait_for(
            asyncio.gather(follow, active, resumed), 30
        )
        after_complete = await client.get(
            f"{API}/runs/{run_id}/events", params={"follow": "true", "after": seen["id"]}
        )

    live = live_frames(stream, run_id)
    assert live[0]["id"] == 1  # the WebSocket client saw the run from its start
    frames = parse_ndjson("\n".join(followed))
    assert without_seq(frames) == live
    assert frames[-1]["type"] == "complete"
    assert without_seq(parse_ndjson("\n".join(from_active))) == live
    # A resumed follower repeats nothing: it starts right after the id it gave.
    resumed_frames = without_seq(parse_ndjson("\n".join(from_seen)))
    assert resumed_frames == [f for f in live if f["id"] > seen["id"]]
    # Following a finished run replays it and ends.
    assert without_seq(parse_ndjson(after_complete.text)) == resumed_frames


async def test_followers_count_against_the_client_cap_and_end_when_the_server_drains(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    settings = make_settings(demo_generate_seconds=5, max_websocket_clients=2)
    server: LiveServer = await start_server(settings)
    stream: StreamReader = await open_stream(server.ws_url)
    assert (await stream.next())["type"] == "snapshot"
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        run_id = (await client.post(f"{API}/run", json={"batch_count": 1})).json()["run_id"]
        await stream.until(lambda f: f["type"] == "task" and f["run_id"] == run_id)
        received: list[str] = []
        async with client.stream(
            "GET", f"{API}/runs/{run_id}/events", params={"follow": "true"}
        ) as response:
            lines = response.aiter_lines()
            received.append(await anext(lines))  # the backlog has begun: subscribed soon
            await server.app.state.services.broadcaster.wait_for_clients(lambda n: n == 2)
            full = await client.get(f"{API}/runs/{run_id}/events", params={"follow": "true"})
            replay = await client.get(f"{API}/runs/{run_id}/events")
            await server.drain()
            async with asyncio.timeout(10):  # ends promptly, long before the run would
                received += [line async for line in lines if line]

    assert full.status_code == 503 and "too many" in full.json()["detail"]
    assert replay.status_code == 200  # a replay holds no place under the cap
    frames = parse_ndjson("\n".join(received))
    assert "complete" not in [f["type"] for f in frames]


async def test_a_step_printing_100000_lines_leaves_a_bounded_archive_that_says_what_it_dropped(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    store = MemoryStateStore(history_limit=5, ttl_minutes=30)
    record = RunRecord(
        run_id="r0000000abcd",
        batch_count=1,
        executor="local",
        progress=ProgressTracker(1).progress(),
    )
    run = (await store.acquire(record)).run
    last = 0
    for chunk in range(2000):  # 2,000 frames of 50 lines: as the run writer coalesces them
        lines = [
            {"timestamp": utcnow().isoformat(), "source": "GENERATE (1)", "message": f"{chunk}.{n}"}
            for n in range(50)
        ]
        event = RunEvent(type="log", run_id=run.run_id, data={"lines": lines})
        if chunk % 500 == 0:
            event = RunEvent(type="progress", run_id=run.run_id, data={"chunk": chunk})
        last = await store.events.append(run.run_id, [event], epoch=run.epoch, floor=last)
    done = run.model_copy(update={"status": RunStatus.SUCCEEDED, "finished_at": utcnow()})
    complete = RunEvent(type="complete", run_id=run.run_id, data={"status": "succeeded"})
    await store.finish(done, [complete], floor=last)
    server: LiveServer = await start_server(make_settings(), store=store)

    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        logs = await client.get(f"{API}/runs/{run.run_id}/logs", params={"limit": MAX_LOG_LIMIT})
        replay = await client.get(f"{API}/runs/{run.run_id}/events")

    body = logs.json()
    printed = (2000 - 4) * 50
    assert body["dropped_lines"] == printed - MAX_LOG_LINES_PER_RUN
    assert len(body["lines"]) == MAX_LOG_LINES_PER_RUN == MAX_LOG_LIMIT
    assert body["lines"][-1]["message"] == "1999.49"  # the newest lines are the ones kept
    frames = parse_ndjson(replay.text)
    assert len(replay.content) < 2 * 1024 * 1024
    # The skeleton survives whole: every progress frame and the `complete`.
    assert [f["data"].get("chunk") for f in frames if f["type"] == "progress"] == [
        0,
        500,
        1000,
        1500,
    ]
    assert frames[-1]["type"] == "complete"


async def test_event_requests_count_against_the_stream_connect_rate_limit(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    server: LiveServer = await start_server(make_settings(rate_limit_stream_connects_per_minute=2))
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        answers = [await client.get(f"{API}/runs/r000000000ff/events") for _ in range(3)]
        logs = await client.get(f"{API}/runs/r000000000ff/logs")

    assert [r.status_code for r in answers] == [404, 404, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert logs.status_code == 404  # reading logs is a plain request, not a stream


async def test_a_follower_whose_client_leaves_gives_its_place_back(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    server: LiveServer = await start_server(make_settings(demo_generate_seconds=5))
    broadcaster = server.app.state.services.broadcaster
    stream: StreamReader = await open_stream(server.ws_url)
    assert (await stream.next())["type"] == "snapshot"
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        run_id = (await client.post(f"{API}/run", json={"batch_count": 1})).json()["run_id"]
        await stream.until(lambda f: f["type"] == "task" and f["run_id"] == run_id)
        for _ in range(3):  # more than once: nothing is left behind by a leaving follower
            async with client.stream(
                "GET", f"{API}/runs/{run_id}/events", params={"follow": "true"}
            ) as response:
                assert json.loads(await anext(response.aiter_lines()))["id"] == 1
                await asyncio.wait_for(broadcaster.wait_for_clients(lambda n: n == 2), 10)
            # The client hung up mid-run: its subscription goes with it.
            await asyncio.wait_for(broadcaster.wait_for_clients(lambda n: n == 1), 10)


class _Seen(logging.Handler):
    """Sets `event` when a record with `text` in its message is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_a_stream_whose_client_stops_reading_is_ended(
    make_settings: SettingsFactory,
    start_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(run_events, "SEND_TIMEOUT_SECONDS", 0.5)
    caplog.set_level(logging.INFO, logger=run_events.__name__)
    store = MemoryStateStore(history_limit=5, ttl_minutes=30)
    record = RunRecord(run_id="r0000000bead", batch_count=1, executor="local")
    run = (await store.acquire(record)).run
    last = 0
    for chunk in range(100):  # about 7.5 MB of frames: more than the socket buffers take
        lines = [{"timestamp": utcnow().isoformat(), "source": "x", "message": "z" * 1500}] * 50
        event = RunEvent(type="log", run_id=run.run_id, data={"lines": lines, "chunk": chunk})
        last = await store.events.append(run.run_id, [event], epoch=run.epoch, floor=last)
    done = run.model_copy(update={"status": RunStatus.SUCCEEDED, "finished_at": utcnow()})
    await store.finish(done, [], floor=last)
    server: LiveServer = await start_server(make_settings(), store=store)
    seen = _Seen("client stopped reading")
    logging.getLogger(run_events.__name__).addHandler(seen)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET {API}/runs/{run.run_id}/events HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        await asyncio.wait_for(seen.event.wait(), 20)  # the server gave up on this client
        received = await asyncio.wait_for(reader.read(), 20)  # ...and closed the connection
        writer.close()
    finally:
        logging.getLogger(run_events.__name__).removeHandler(seen)

    assert received.startswith(b"HTTP/1.1 200")
    assert not received.endswith(b"\r\n0\r\n\r\n")  # cut short: no final chunk
    assert len(received) < 7_000_000
