"""Kubernetes mode with Redis: a replica that shuts down leaves its run to its Job, and the other
replica re-adopts it and finishes it (issue 7's shutdown sequence, issue 4's adoption)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.conftest import StreamReader
from tests.kubernetes.fake_api import FakeKubernetes
from tests.redis_server import RedisServer

API = "/api/v1/demo"


async def test_a_draining_replica_hands_its_run_to_the_next(
    fake: FakeKubernetes,
    k8s_settings: Any,
    start_server: Any,
    open_stream: Any,
    redis_server: RedisServer,
) -> None:
    settings = k8s_settings(
        redis_url=redis_server.url,
        redis_key_prefix=f"test:{secrets.token_hex(4)}:",
        redis_lease_seconds=2,
    )
    a = await start_server(settings)
    b = await start_server(settings)
    watcher: StreamReader = await open_stream(b.ws_url)
    async with httpx.AsyncClient(base_url=a.http_url, timeout=30) as on_a:
        run_id = (await on_a.post(f"{API}/run", json={"batch_count": 1})).json()["run_id"]
    controller = fake.controller_pod(run_id)
    fake.set_pod_phase(controller, "Running")
    await watcher.until(lambda f: f["type"] == "status" and f["data"]["status"] == "running")

    await a.stop()  # graceful: the Job keeps running, the lease is released
    job = f"nextflow-{run_id}"
    assert fake.names("jobs") == [job]

    fake.finish_one_batch_run(run_id)

    complete = await watcher.until_complete(run_id, timeout=30)
    assert complete["data"]["status"] == "succeeded"
    assert [f["type"] for f in watcher.frames if f["run_id"] == run_id].count("complete") == 1
    async with httpx.AsyncClient(base_url=b.http_url, timeout=30) as on_b:
        run = (await on_b.get(f"{API}/runs/{run_id}")).json()
    assert run["status"] == "succeeded"
    assert run["progress"]["percent"] == 100.0
