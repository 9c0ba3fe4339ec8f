"""The archive and the HTTP stream across two replicas sharing a real redis-server: a run started
on one is followed, replayed and filtered on either; a flood of lines leaves a bounded stream."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
import redis.asyncio

from nextflow_k8s_service.models import RunEvent, RunRecord, RunStatus, utcnow
from nextflow_k8s_service.services.event_log import MAX_LOG_LINES_PER_RUN
from nextflow_k8s_service.services.progress import ProgressTracker
from nextflow_k8s_service.services.redis_event_log import RedisEventLog
from nextflow_k8s_service.services.redis_store import RedisStateStore
from tests.api.test_run_archive import live_frames, parse_ndjson, read_stream, without_seq
from tests.conftest import SettingsFactory, StreamReader
from tests.live_server import LiveServer
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

API = "/api/v1/demo"


async def test_a_run_is_followed_replayed_and_filtered_on_either_replica(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any, redis_server: RedisServer
) -> None:
    settings = make_settings(
        redis_url=redis_server.url,
        redis_key_prefix=f"test:{secrets.token_hex(4)}:",
        demo_generate_seconds=0.4,
        demo_analyze_seconds=0.2,
    )
    a: LiveServer = await start_server(settings)
    b: LiveServer = await start_server(settings)
    watcher: StreamReader = await open_stream(b.ws_url)
    assert (await watcher.next())["type"] == "snapshot"
    async with (
        httpx.AsyncClient(base_url=a.http_url, timeout=60) as on_a,
        httpx.AsyncClient(base_url=b.http_url, timeout=60) as on_b,
    ):
        run_id = (await on_a.post(f"{API}/run", json={"batch_count": 3})).json()["run_id"]
        await watcher.until(lambda f: f["type"] == "task" and f["run_id"] == run_id)
        followers = [
            asyncio.create_task(
                read_stream(on_b, f"{API}/runs/{run_id}/events", params={"follow": "true"})
            ),
            asyncio.create_task(read_stream(on_a, f"{API}/active/events")),
        ]
        await watcher.until_complete(run_id)
        followed_b, followed_a = await asyncio.wait_for(asyncio.gather(*followers), 30)
        replay_a = await on_a.get(f"{API}/runs/{run_id}/events")
        logs_b = await on_b.get(f"{API}/runs/{run_id}/logs", params={"source": "GENERATE (2)"})

    live = live_frames(watcher, run_id)
    assert live[-1]["type"] == "complete"
    assert without_seq(parse_ndjson("\n".join(followed_b))) == live
    assert without_seq(parse_ndjson("\n".join(followed_a))) == live
    assert without_seq(parse_ndjson(replay_a.text)) == live
    lines = [line for f in live if f["type"] == "log" for line in f["data"]["lines"]]
    expected = [line for line in lines if line["source"] == "GENERATE (2)"]
    assert expected and logs_b.json()["lines"] == expected


async def test_a_flood_of_lines_leaves_a_bounded_stream_in_redis(
    make_settings: SettingsFactory, start_server: Any, redis_server: RedisServer
) -> None:
    prefix = f"test:{secrets.token_hex(4)}:"
    store = RedisStateStore.from_url(
        redis_server.url, prefix=prefix, history_limit=5, ttl_minutes=30, lease_seconds=30
    )
    events = RedisEventLog(redis=store.client, prefix=prefix, lease_seconds=30)
    await store.check_generation()
    record = RunRecord(
        run_id="r00000000f10",
        batch_count=1,
        executor="local",
        progress=ProgressTracker(1).progress(),
    )
    run = (await store.acquire(record)).run
    last = 0
    for chunk in range(2000):  # 100,000 lines in frames of 50
        lines = [
            {"timestamp": utcnow().isoformat(), "source": "GENERATE (1)", "message": f"{chunk}.{n}"}
            for n in range(50)
        ]
        event = RunEvent(type="log", run_id=run.run_id, data={"lines": lines})
        last = await events.append(run.run_id, [event], epoch=run.epoch, floor=last)
    done = run.model_copy(update={"status": RunStatus.SUCCEEDED, "finished_at": utcnow()})
    complete = RunEvent(type="complete", run_id=run.run_id, data={"status": "succeeded"})
    await store.finish(done, [complete], floor=last)
    await store.close()

    server: LiveServer = await start_server(
        make_settings(redis_url=redis_server.url, redis_key_prefix=prefix)
    )
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        logs = await client.get(f"{API}/runs/{run.run_id}/logs", params={"limit": 10})
        replay = await client.get(f"{API}/runs/{run.run_id}/events")
    plain = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        length = await plain.xlen(f"{prefix}events:{run.run_id}")
        stream_bytes = await plain.memory_usage(f"{prefix}events:{run.run_id}")
    finally:
        await plain.aclose()

    assert logs.json()["dropped_lines"] == 100_000 - MAX_LOG_LINES_PER_RUN
    assert [line["message"] for line in logs.json()["lines"]][-1] == "1999.49"
    frames = parse_ndjson(replay.text)
    assert frames[-1]["type"] == "complete"
    assert length == len(frames) == MAX_LOG_LINES_PER_RUN // 50 + 1
    assert stream_bytes is not None and stream_bytes < 4 * 1024 * 1024
