"""No step outlives the service (issue 16): a SIGKILLed service takes its running steps with
it, and a service starting on a workspace kills steps an earlier incarnation left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect

from nextflow_k8s_service.config import load_settings
from nextflow_k8s_service.executors.local import LocalExecutor
from tests.conftest import StreamReader
from tests.console import free_port, module_service

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

GONE_WITHIN_SECONDS = 5.0
WORKFLOW_BIN = Path(__file__).resolve().parents[2] / "workflows" / "bin"


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (a killed orphan may wait a while for its reaper)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _still_running_after(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still running once `seconds` have passed (returns early when none are).
    Polled: the death of a process that is not our child is no event we can await."""
    deadline = time.monotonic() + seconds
    while (alive := [p for p in processes if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The service as its console script runs it, with slow steps."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WORKSPACE_DIR": str(tmp_path / "workspace"),
        "WORKFLOW_DIR": str(WORKFLOW_BIN.parent),
        "DEMO_GENERATE_SECONDS": "60",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    with module_service(env) as started:
        yield started


async def test_sigkill_of_the_service_mid_run_leaves_no_step_running(
    service: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = service
    batches = 3
    async with connect(url.replace("http", "ws") + "/api/v1/pipeline/stream") as connection:
        stream = StreamReader(connection)
        await stream.next()
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            started = await client.post("/api/v1/demo/run", json={"batch_count": batches})
            assert started.status_code == 202

        def generating(frame: dict[str, Any]) -> bool:
            counts = frame["data"].get("processes", {}).get("GENERATE", {})
            return frame["type"] == "progress" and counts.get("running") == batches

        await stream.until(generating, timeout=30)
    # Every child of the service is a step (some may still be in the launcher, pre-exec).
    steps = psutil.Process(process.pid).children(recursive=True)
    assert len(steps) == batches

    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    alive = await asyncio.to_thread(_still_running_after, steps, GONE_WITHIN_SECONDS)
    assert alive == [], [step.pid for step in alive]


def _start_orphaned_step(work_dir: Path) -> int:
    """A step process as a killed service would leave it: its own session, parent gone."""
    launcher = (
        "import subprocess, sys\n"
        "step = subprocess.Popen([sys.executable, sys.argv[1], '--run-id', 'r0', '--batch', '1',"
        " '--rows', '5', '--seconds', '60', '--out', 'b.csv'], cwd=sys.argv[2],"
        " start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(step.pid)\n"
    )
    script = str(WORKFLOW_BIN / "generate.py")
    output = subprocess.run(
        [sys.executable, "-c", launcher, script, str(work_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(output.stdout)


async def test_start_up_kills_steps_left_over_in_the_workspace(tmp_path: Path) -> None:
    settings = load_settings(workspace_dir=tmp_path / "workspace", workflow_dir=WORKFLOW_BIN.parent)
    work_dir = settings.work_root / "r0123456789a" / "generate_1"
    elsewhere = tmp_path / "elsewhere"
    for directory in (work_dir, elsewhere):
        await asyncio.to_thread(directory.mkdir, parents=True)
    leftover = psutil.Process(await asyncio.to_thread(_start_orphaned_step, work_dir))
    unrelated = psutil.Process(await asyncio.to_thread(_start_orphaned_step, elsewhere))
    try:
        assert _running(leftover) and _running(unrelated)
        executor = LocalExecutor(settings=settings)
        await executor.close()
        alive = await asyncio.to_thread(_still_running_after, [leftover], GONE_WITHIN_SECONDS)
        assert alive == []
        assert _running(unrelated), "a step outside the service's workspace is not its own"
    finally:
        for process in (leftover, unrelated):
            if _running(process):
                process.kill()
