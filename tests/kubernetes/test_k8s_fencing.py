"""Kubernetes mode with Redis: a stale owner learns from a refused write that it lost its run,
and then never touches the Job or the pods that the new owner follows (issue 13)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import redis.asyncio

from tests.conftest import StreamReader
from tests.kubernetes.fake_api import FakeKubernetes
from tests.redis_server import RedisServer

API = "/api/v1/demo"


async def test_a_stale_owner_makes_no_delete_call_for_the_adopted_run(
    fake: FakeKubernetes,
    k8s_settings: Any,
    start_server: Any,
    open_stream: Any,
    redis_server: RedisServer,
) -> None:
    prefix = f"test:{secrets.token_hex(4)}:"
    settings = k8s_settings(
        redis_url=redis_server.url, redis_key_prefix=prefix, redis_lease_seconds=2
    )
    a = await start_server(settings)
    b = await start_server(settings)
    watchers: list[StreamReader] = [await open_stream(a.ws_url), await open_stream(b.ws_url)]
    async with httpx.AsyncClient(base_url=a.http_url, timeout=30) as on_a:
        run_id = (await on_a.post(f"{API}/run", json={"batch_count": 1})).json()["run_id"]
    controller = fake.controller_pod(run_id)
    fake.set_pod_phase(controller, "Running")
    for watcher in watchers:
        await watcher.until(lambda f: f["type"] == "status" and f["data"]["status"] == "running")
    keeper_a = a.app.state.services.manager._keeper
    keeper_b = b.app.state.services.manager._keeper
    session_a = keeper_a._session_tasks[run_id]

    # A's lease runs out (as after a pause of A longer than the lease) and B claims the run.
    calls_before = len(fake.calls)
    admin = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        for _ in range(20):
            await admin.delete(f"{prefix}active-run")
            await keeper_b._reconcile_once()
            if run_id in keeper_b.run_ids:
                break
    finally:
        await admin.aclose()
    assert run_id in keeper_b.run_ids, "B did not adopt the run"

    # A carries on as if nothing happened until its next write is refused; then it stops.
    assert await asyncio.wait_for(session_a, 10) is None
    assert run_id not in keeper_a.run_ids
    deletes = [call for call in fake.calls[calls_before:] if call[0].startswith("delete")]
    assert deletes == [], "the stale owner touched the adopted run"
    job = f"nextflow-{run_id}"
    assert fake.names("jobs") == [job]

    fake.finish_one_batch_run(run_id)

    for watcher in watchers:
        complete = await watcher.until_complete(run_id, timeout=30)
        assert complete["data"]["status"] == "succeeded"
        frames = [f for f in watcher.frames if f["run_id"] == run_id and f["type"] != "snapshot"]
        assert [f["type"] for f in frames].count("complete") == 1
        ids = [f["id"] for f in frames]
        assert ids == sorted(set(ids))
    assert [call for call in fake.calls[calls_before:] if call[0].startswith("delete")] == []
