"""`/healthz` tells the truth quickly (issue 16): each check has a short deadline, so a stalled
Redis is a 503 within 2 s, and an unusable workspace is a failing check."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nextflow_k8s_service.services.workspace_probe import WorkspaceProbe
from tests.conftest import SettingsFactory
from tests.live_server import LiveServer
from tests.redis_server import RedisServer


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone: it is going to be frozen."""
    server = RedisServer.start(tmp_path / "redis")
    yield server
    server.stop()


def _replace_with_a_file(directory: Path) -> None:
    shutil.rmtree(directory)
    with open(directory, "w") as handle:
        handle.write("not a directory")


def _pid_of(server: RedisServer) -> int:
    process = server._process
    assert process is not None
    return process.pid


async def test_healthz_answers_503_within_2_s_while_redis_is_stalled(
    make_settings: SettingsFactory, start_server: Any, private_redis: RedisServer
) -> None:
    server: LiveServer = await start_server(make_settings(redis_url=private_redis.url))
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        healthy = await client.get("/healthz")
        assert healthy.status_code == 200, healthy.text
        pid = _pid_of(private_redis)
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(3):  # a stall is answered quickly each time, not just once
                started = time.monotonic()
                stalled = await client.get("/healthz")
                elapsed = time.monotonic() - started
                assert elapsed < 2.0, f"/healthz took {elapsed:.2f} s"
                assert stalled.status_code == 503
                checks = stalled.json()["checks"]
                assert checks["state_store"]["ok"] is False
                assert checks["executor"]["ok"] is True
                assert checks["workspace"]["ok"] is True
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (await client.get("/healthz")).status_code == 200


async def test_healthz_is_503_when_the_workspace_is_unwritable(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    settings = make_settings()
    server: LiveServer = await start_server(settings)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        ready = await client.get("/healthz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["workspace"]["ok"] is True
        # Tests run as root, where permissions do not stop writes: put a file where the
        # workspace directory was, so that nothing can be created in it.
        _replace_with_a_file(settings.workspace_dir)
        not_ready = await client.get("/healthz")
        assert not_ready.status_code == 503
        workspace = not_ready.json()["checks"]["workspace"]
        assert workspace["ok"] is False and str(settings.workspace_dir) in workspace["detail"]
        # Which is the truth: a run cannot start.
        assert (await client.post("/api/v1/demo/run", json={"batch_count": 1})).status_code == 502


async def test_in_kubernetes_mode_the_workspace_only_has_to_be_readable(tmp_path: Path) -> None:
    readable = await WorkspaceProbe(tmp_path, writable=False).check(1.0)
    assert readable.ok is True
    assert os.listdir(tmp_path) == []  # nothing written
    # Not created yet (a fresh volume): nothing to read, nothing wrong.
    assert (await WorkspaceProbe(tmp_path / "missing", writable=False).check(1.0)).ok is True
    not_a_directory = tmp_path / "file"
    not_a_directory.touch()
    assert (await WorkspaceProbe(not_a_directory, writable=False).check(1.0)).ok is False
