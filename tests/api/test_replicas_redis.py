"""Two replicas sharing one Redis behave as one demo (issue 3)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

from tests.conftest import SettingsFactory, StreamReader
from tests.live_server import LiveServer
from tests.redis_server import RedisServer

API = "/api/v1/demo"


def _replica_settings(make_settings: SettingsFactory, redis: RedisServer, **extra: Any) -> Any:
    return make_settings(
        redis_url=redis.url,
        redis_key_prefix=f"test:{secrets.token_hex(4)}:",
        redis_lease_seconds=2,
        **extra,
    )


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
        frames = [f for f in watcher_b.frames if f["run_id"] == run_id]
        statuses = [f["data"]["status"] for f in frames if f["type"] == "status"]
        assert statuses == ["queued", "starting", "running", "succeeded"]
        assert [f["type"] for f in frames].count("complete") == 1
        assert any(f["type"] == "log" for f in frames)

        history_a = (await on_a.get(f"{API}/history")).json()
        history_b = (await on_b.get(f"{API}/history")).json()
        assert history_a == history_b and history_a[0]["run_id"] == run_id


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
        run = (await on_b.get(f"{API}/runs/{run_id}")).json()
        assert run["status"] == "unknown" and "stopped" in run["message"]
        again = await on_b.post(f"{API}/run", json={"batch_count": 1})
        assert again.status_code == 202


async def test_a_redis_restart_mid_run_is_survived(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any, redis_server: RedisServer
) -> None:
    settings = _replica_settings(make_settings, redis_server, demo_generate_seconds=1.5)
    a: LiveServer = await start_server(settings)
    watcher: StreamReader = await open_stream(a.ws_url)
    async with httpx.AsyncClient(base_url=a.http_url, timeout=30) as client:
        run_id = (await client.post(f"{API}/run", json={"batch_count": 2})).json()["run_id"]
        await watcher.until(lambda f: f["type"] == "status" and f["data"]["status"] == "running")
        await asyncio.to_thread(redis_server.restart)  # comes back empty: no persistence
        complete = await watcher.until_complete(run_id, timeout=60)
        assert complete["data"]["status"] == "succeeded"
        assert [f["type"] for f in watcher.frames].count("complete") == 1
        assert (await client.get(f"{API}/active")).json()["active"] is False
        assert (await client.post(f"{API}/run", json={"batch_count": 1})).status_code == 202


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
