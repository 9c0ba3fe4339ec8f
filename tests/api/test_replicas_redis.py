"""Two replicas sharing one Redis behave as one demo (issue 3), and survive the faults of issue 13.

Each fault test runs two in-process replicas (real uvicorn, real WebSocket clients) on a
redis-server of its own, with a short lease (`LEASE` seconds) so that "longer than a lease" stays
fast. What every stream must show, whatever happened: each run's frames in order with increasing
event ids and no repeats, and exactly one `complete`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio

from nextflow_k8s_service.services.event_relay import BLOCK_SECONDS
from tests.conftest import SettingsFactory, StreamReader
from tests.live_server import LiveServer
from tests.redis_server import RedisServer

API = "/api/v1/demo"
LEASE = 2.0


def _replica_settings(make_settings: SettingsFactory, redis: RedisServer, **extra: Any) -> Any:
    return make_settings(
        redis_url=redis.url,
        redis_key_prefix=f"test:{secrets.token_hex(4)}:",
        redis_lease_seconds=LEASE,
        **extra,
    )


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, which it may restart or freeze. Tests name it before
    `start_server`, so that it outlives the replicas (their shutdown records runs in it)."""
    server = RedisServer.start(tmp_path / "redis")
    yield server
    server.stop()


def assert_one_clean_run(watcher: StreamReader, run_id: str) -> list[dict[str, Any]]:
    """The run's frames: ids strictly increasing (nothing repeated, nothing reordered), one
    `complete`, and it comes last. Returns them."""
    frames = [f for f in watcher.frames if f["run_id"] == run_id and f["type"] != "snapshot"]
    ids = [f["id"] for f in frames]
    assert ids == sorted(set(ids)), f"ids repeated or out of order: {ids}"
    assert [f["type"] for f in frames].count("complete") == 1
    assert frames[-1]["type"] == "complete"
    return frames


async def _two_replicas(
    settings: Any, start_server: Any, open_stream: Any
) -> tuple[LiveServer, LiveServer, list[StreamReader]]:
    """Two replicas of `settings` and a stream client on each."""
    a: LiveServer = await start_server(settings)
    b: LiveServer = await start_server(settings)
    return a, b, [await open_stream(a.ws_url), await open_stream(b.ws_url)]


async def _start_running(
    client: httpx.AsyncClient, watchers: list[StreamReader], *, batch_count: int
) -> str:
    """Start a run through `client`; its id once every watcher has seen it running."""
    run_id: str = (await client.post(f"{API}/run", json={"batch_count": batch_count})).json()[
        "run_id"
    ]
    for watcher in watchers:
        await watcher.until(lambda f: f["type"] == "status" and f["data"]["status"] == "running")
    return run_id


async def test_one_run_across_replicas_streamed_on_the_other(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any, redis_server: RedisServer
) -> None:
    settings = _replica_settings(make_settings, redis_server, demo_generate_seconds=0.5)
    a: LiveServer = await start_server(settings)
    b: LiveServer = await start_server(settings)
    watcher_b: StreamReader = await open_stream(b.ws_url)
    assert (await watcher_b.next())["type"] == "snapshot"
    async with (
        httpx.AsyncClient(base_url=a.http_url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.http_url, timeout=30) as on_b,
    ):
        clients = [on_a, on_b] * 20
        responses = await asyncio.gather(
            *(c.post(f"{API}/run", json={"batch_count": 2}) for c in clients)
        )
        codes = [r.status_code for r in responses]
        assert codes.count(202) == 1 and codes.count(200) == 39
        run_id = responses[codes.index(202)].json()["run_id"]
        assert {r.json()["run_id"] for r in responses} == {run_id}

        complete = await watcher_b.until_complete(run_id)
        assert complete["data"]["status"] == "succeeded"
        frames = assert_one_clean_run(watcher_b, run_id)
        assert [f["id"] for f in frames] == list(range(1, len(frames) + 1)), "a gap in the ids"
        statuses = [f["data"]["status"] for f in frames if f["type"] == "status"]
        assert statuses == ["queued", "starting", "running", "succeeded"]
        assert any(f["type"] == "log" for f in frames)

        history_a = (await on_a.get(f"{API}/history")).json()
        history_b = (await on_b.get(f"{API}/history")).json()
        assert history_a == history_b and history_a[0]["run_id"] == run_id

    late: StreamReader = await open_stream(a.ws_url)
    snapshot = await late.next()
    assert snapshot["run_id"] == run_id and snapshot["id"] == frames[-1]["id"]
    assert snapshot["data"]["run"]["status"] == "succeeded"


async def test_a_crashed_owner_s_run_ends_unknown_and_frees_the_lock(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any, redis_server: RedisServer
) -> None:
    settings = _replica_settings(make_settings, redis_server, demo_generate_seconds=60)
    a: LiveServer = await start_server(settings)
    b: LiveServer = await start_server(settings)
    watcher_b: StreamReader = await open_stream(b.ws_url)
    async with httpx.AsyncClient(base_url=b.http_url, timeout=30) as on_b:
        async with httpx.AsyncClient(base_url=a.http_url, timeout=30) as on_a:
            run_id = (await on_a.post(f"{API}/run", json={"batch_count": 2})).json()["run_id"]
        await watcher_b.until(lambda f: f["type"] == "status" and f["data"]["status"] == "running")
        # Replica A dies: its tasks stop without a word and its subprocesses die with it.
        manager_a = a.app.state.services.manager
        await manager_a._keeper._tasks.close()
        await manager_a._tasks.close()

        complete = await watcher_b.until_complete(run_id, timeout=20)
        assert complete["data"]["status"] == "unknown"
        assert_one_clean_run(watcher_b, run_id)
        run = (await on_b.get(f"{API}/runs/{run_id}")).json()
        assert run["status"] == "unknown" and "stopped" in run["message"]
        again = await on_b.post(f"{API}/run", json={"batch_count": 1})
        assert again.status_code == 202
        async with httpx.AsyncClient(base_url=a.http_url, timeout=30) as on_a:
            checks = (await on_a.get("/healthz")).json()["checks"]
        assert checks["unclaimed_runs"]["detail"] == "none", "A's executor kept the run"


async def test_an_empty_restart_then_a_post_starts_no_second_run(
    own_redis: RedisServer, make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    settings = _replica_settings(make_settings, own_redis, demo_generate_seconds=1.5)
    a, b, watchers = await _two_replicas(settings, start_server, open_stream)
    async with (
        httpx.AsyncClient(base_url=a.http_url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.http_url, timeout=30) as on_b,
    ):
        run_id = await _start_running(on_a, watchers, batch_count=2)

        await asyncio.to_thread(own_redis.restart)  # comes back empty: no persistence
        posted = await on_b.post(f"{API}/run", json={"batch_count": 1})

        # Either the replica noticed the loss (503 for one lease) or the owner was quicker and
        # re-established its run (the POST attaches to it): never a second run.
        if posted.status_code == 503:
            assert 1 <= int(posted.headers["retry-after"]) <= LEASE + 1
        else:
            assert posted.status_code == 200 and posted.json()["run_id"] == run_id
        for watcher in watchers:
            complete = await watcher.until_complete(run_id, timeout=30)
            assert complete["data"]["status"] == "succeeded"
            assert_one_clean_run(watcher, run_id)
            started = {f["run_id"] for f in watcher.frames if f["type"] != "snapshot"}
            assert started == {run_id}, "a second run started"
        assert (await on_b.get(f"{API}/runs/{run_id}")).json()["status"] == "succeeded"
        assert [r["run_id"] for r in (await on_b.get(f"{API}/history")).json()] == [run_id]

        async def start_again() -> httpx.Response:
            while True:
                response = await on_b.post(f"{API}/run", json={"batch_count": 1})
                if response.status_code != 503:
                    return response
                await asyncio.sleep(float(response.headers["retry-after"]))

        assert (await asyncio.wait_for(start_again(), LEASE * 3)).status_code == 202


async def test_a_redis_stall_longer_than_the_lease_ends_the_run_once_for_everyone(
    own_redis: RedisServer,
    make_settings: SettingsFactory,
    start_server: Any,
    open_stream: Any,
) -> None:
    # The 60 s stall against a 30 s lease, scaled down: two leases.
    stall = 2 * LEASE
    settings = _replica_settings(make_settings, own_redis, demo_generate_seconds=1.0)
    a, b, watchers = await _two_replicas(settings, start_server, open_stream)
    async with (
        httpx.AsyncClient(base_url=a.http_url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.http_url, timeout=30) as on_b,
    ):
        run_id = await _start_running(on_a, watchers, batch_count=3)

        own_redis.freeze()
        try:
            await asyncio.sleep(stall)  # the stall itself is what is being reproduced
        finally:
            own_redis.thaw()

        statuses = set()
        for watcher in watchers:
            complete = await watcher.until_complete(run_id, timeout=60)
            statuses.add(complete["data"]["status"])
            assert_one_clean_run(watcher, run_id)
        # Succeeded, or (the lease was taken over meanwhile) one terminal status for everyone.
        assert len(statuses) == 1
        final = (await on_b.get(f"{API}/runs/{run_id}")).json()
        assert {final["status"]} == statuses
        assert [r["run_id"] for r in (await on_a.get(f"{API}/history")).json()] == [run_id]
        for client in (on_a, on_b):
            ready = (await client.get("/healthz")).json()
            assert ready["checks"]["unclaimed_runs"]["detail"] == "none"


async def _until_connected(admin: redis.asyncio.Redis, timeout: float = 10.0) -> None:
    """Return once some client other than `admin` is connected to the server."""
    # Redis offers no notification of connects: poll its client list (bounded).
    async with asyncio.timeout(timeout):
        me = await admin.client_id()
        while True:
            if [c for c in await admin.client_list() if int(c["id"]) != me]:
                return
            await asyncio.sleep(0.05)


async def test_frames_cross_relay_reconnects_once_and_in_order(
    own_redis: RedisServer, make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    settings = _replica_settings(make_settings, own_redis, demo_generate_seconds=0.4)
    a: LiveServer = await start_server(settings)
    b: LiveServer = await start_server(settings)
    watchers: list[StreamReader] = [await open_stream(a.ws_url), await open_stream(b.ws_url)]
    admin = redis.asyncio.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        async with httpx.AsyncClient(base_url=a.http_url, timeout=30) as on_a:
            run_id = (await on_a.post(f"{API}/run", json={"batch_count": 4})).json()["run_id"]
        await watchers[1].until(
            lambda f: f["type"] == "status" and f["data"]["status"] == "running"
        )
        for _ in range(3):
            # Cut every connection but ours between two frames, once the replicas are connected
            # again after the last cut: each replica's reader (and the owner's writer) must
            # reconnect and resume where it was.
            await watchers[1].next()
            await _until_connected(admin)
            assert await admin.client_kill_filter(_type="normal", skipme=True) > 0
        for watcher in watchers:
            complete = await watcher.until_complete(run_id, timeout=30)
            assert complete["data"]["status"] == "succeeded"
            frames = assert_one_clean_run(watcher, run_id)
            assert [f["id"] for f in frames] == list(range(1, len(frames) + 1)), "a lost frame"
    finally:
        await admin.aclose()


@pytest.mark.slow(8)
async def test_an_idle_replica_keeps_its_relay_connection(
    own_redis: RedisServer,
    make_settings: SettingsFactory,
    start_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="nextflow_k8s_service")
    server: LiveServer = await start_server(_replica_settings(make_settings, own_redis))
    relay = server.app.state.services.manager._relay
    admin = redis.asyncio.Redis.from_url(own_redis.url, decode_responses=True)

    async def connections() -> set[str]:
        me = await admin.client_id()
        return {c["id"] for c in await admin.client_list() if int(c["id"]) != me}

    try:
        first = await connections()
        # Blocking reads time out every 2 s meanwhile: each one is the relay's liveness check.
        await asyncio.sleep(4 * BLOCK_SECONDS)  # idling is the behaviour under test
        assert first and await connections() == first, "the replica opened new connections"
    finally:
        await admin.aclose()
    assert relay.reconnects == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_rate_limits_are_shared_by_the_replicas(
    make_settings: SettingsFactory, start_server: Any, redis_server: RedisServer
) -> None:
    settings = _replica_settings(
        make_settings, redis_server, demo_generate_seconds=30, rate_limit_runs_per_minute=1
    )
    a: LiveServer = await start_server(settings)
    b: LiveServer = await start_server(settings)
    async with (
        httpx.AsyncClient(base_url=a.http_url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.http_url, timeout=30) as on_b,
    ):
        first = await on_a.post(f"{API}/run", json={"batch_count": 1})
        assert first.status_code == 202
        limited = await on_b.post(f"{API}/run", json={"batch_count": 1})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        cancel = await on_b.delete(
            f"{API}/cancel", headers={"X-Cancel-Token": first.json()["cancel_token"]}
        )
        assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
