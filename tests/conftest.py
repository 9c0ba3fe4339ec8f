"""Shared fixtures and helpers: settings for a temporary workspace, live servers (one per test,
or one per module for checks that change no state), run specs, a workflow whose step waits for
the test's release (a run held at a known point), executor event collectors, stream readers and
`eventually` for what sends no event; and the order the tests are handed out in."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect

from nextflow_k8s_service.config import REPO_WORKFLOW_DIR, Settings, load_settings
from nextflow_k8s_service.main import create_app
from nextflow_k8s_service.models import new_run_id
from nextflow_k8s_service.run_events import ExecutorEvent, RunSpec, StatusChanged
from tests.live_server import LiveServer
from tests.redis_server import RedisServer

SettingsFactory = Callable[..., Settings]


def pytest_configure(config: pytest.Config) -> None:
    """Bytecode is written even where the environment says not to (this machine's image sets
    PYTHONDONTWRITEBYTECODE=1): otherwise each xdist worker rewrites every test module's
    asserts anew, and each of the suite's dozens of service, benchmark and step processes
    compiles the package from source. Set before the workers start, so they inherit it."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The order xdist hands tests out in (`--dist loadgroup` sends them one at a time, in this
    order): tests marked `slow(seconds)` first, longest first, so that none starts last and
    keeps one worker busy alone; then the rest, with the browser tests (Chromium's rendering:
    the suite's heaviest CPU) spread evenly among the others, which mostly wait on processes,
    servers and timeouts, so that both cores stay busy all along."""

    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return float(marker.args[0]) if marker and marker.args else 0.0

    slow = sorted((item for item in items if seconds(item)), key=seconds, reverse=True)
    rest = [item for item in items if not seconds(item)]
    browser = [item for item in rest if item.get_closest_marker("browser")]
    other = [item for item in rest if not item.get_closest_marker("browser")]

    def spread(group: list[pytest.Item]) -> list[tuple[float, pytest.Item]]:
        return [((index + 0.5) / len(group), item) for index, item in enumerate(group)]

    mixed = sorted(spread(browser) + spread(other), key=lambda pair: pair[0])
    items[:] = slow + [item for _, item in mixed]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's redis-server (skipped without the binary unless REQUIRE_SERVICES=1)."""
    server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def quiet_settings(workspace_dir: Path, **overrides: Any) -> Settings:
    """Settings with workspace `workspace_dir`, zero pacing and budgets generous enough for
    storms (tests/api/test_hardening.py sets its own); keyword arguments override."""
    values: dict[str, Any] = {
        "workspace_dir": workspace_dir,
        "demo_generate_seconds": 0,
        "demo_analyze_seconds": 0,
        "demo_rows_per_batch": 50,
        "rate_limit_runs_per_minute": 100_000,
        "rate_limit_cancels_per_minute": 100_000,
        "rate_limit_stream_connects_per_minute": 100_000,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings with a private workspace and zero pacing; keyword arguments override."""

    def factory(**overrides: Any) -> Settings:
        return quiet_settings(tmp_path / "workspace", **overrides)

    return factory


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[..., Any]]:
    """Start live servers for `create_app(settings)`; all are stopped at the end of the test."""
    servers: list[LiveServer] = []

    async def start(settings: Settings, *, port: int = 0, **app_kwargs: Any) -> LiveServer:
        server = await LiveServer.start(create_app(settings, **app_kwargs), port=port)
        servers.append(server)
        return server

    yield start
    await asyncio.gather(*(server.stop() for server in servers))


@pytest.fixture
async def server(make_settings: SettingsFactory, start_server: Any) -> LiveServer:
    """A live server with the local executor, in-memory state and zero pacing."""
    live: LiveServer = await start_server(make_settings())
    return live


@pytest.fixture(scope="module")
async def shared_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of one live server (local executor, in-memory state) shared by a module's
    tests that start no run and change no state: the error checks."""
    settings = quiet_settings(tmp_path_factory.mktemp("shared") / "workspace")
    live = await LiveServer.start(create_app(settings))
    try:
        async with httpx.AsyncClient(base_url=live.http_url, timeout=30) as http:
            yield http
    finally:
        await live.stop()


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        yield http


async def eventually(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    """Await `condition()` until it holds, polling; only for what sends no event to await (a
    key's expiry in a store, a process exiting)."""
    async with asyncio.timeout(within):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)


def run_spec(
    batch_count: int = 2,
    *,
    run_id: str | None = None,
    settings: Settings | None = None,
    rows_per_batch: int = 10,
    generate_seconds: float = 0,
    analyze_seconds: float = 0,
) -> RunSpec:
    """A run to hand an executor (a fresh id unless given); with `settings`, the rows and pacing
    are the settings' demo ones."""
    if settings is not None:
        rows_per_batch = settings.demo_rows_per_batch
        generate_seconds = settings.demo_generate_seconds
        analyze_seconds = settings.demo_analyze_seconds
    return RunSpec(
        run_id=run_id or new_run_id(),
        batch_count=batch_count,
        rows_per_batch=rows_per_batch,
        generate_seconds=generate_seconds,
        analyze_seconds=analyze_seconds,
    )


_GATED_STEP = """\
\"\"\"A step held by a test: waits until the file `released` appears in the workflow directory,
then runs the real step (real/<this name>) in this process.\"\"\"
import runpy
import sys
import time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
while not (root / "released").exists():
    time.sleep(0.02)  # polls for the test's release: a file has no event to wait on
real = str(root / "real" / Path(__file__).name)
sys.argv[0] = real
runpy.run_path(real, run_name="__main__")
"""


class GatedWorkflow:
    """A copy of workflows/ whose step `script` starts, then waits until the test calls
    `release()`: it holds a run at a known point (that step's tasks running, the rest as far as
    they get without them) for as long as the test needs, where pacing would guess a duration."""

    def __init__(self, root: Path, script: str) -> None:
        shutil.copytree(REPO_WORKFLOW_DIR, root)
        (root / "real").mkdir()
        (root / "bin" / script).rename(root / "real" / script)
        (root / "bin" / script).write_text(_GATED_STEP)
        self.workflow_dir = root
        self._released = root / "released"

    def release(self) -> None:
        self._released.touch()


@pytest.fixture
def gated_workflow(tmp_path: Path) -> Callable[[str], GatedWorkflow]:
    """`gated_workflow("analyze.py")`: a `GatedWorkflow` holding that step; pass its
    `workflow_dir` to `make_settings`."""

    def make(script: str) -> GatedWorkflow:
        return GatedWorkflow(tmp_path / f"gated-{script.removesuffix('.py')}", script)

    return make


class EventCollector:
    """Collects one run's executor events in a task, so a test can await conditions on them."""

    def __init__(self, events: AsyncIterable[ExecutorEvent]) -> None:
        self.events: list[ExecutorEvent] = []
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._collect(events), name="test-event-collector")

    async def _collect(self, events: AsyncIterable[ExecutorEvent]) -> None:
        try:
            async for event in events:
                self.events.append(event)
                self._changed.set()
        finally:
            self._changed.set()

    async def until(
        self, predicate: Callable[[list[ExecutorEvent]], bool], timeout: float = 10
    ) -> None:
        """Wait until `predicate(events)` holds; fails if the events end first."""
        async with asyncio.timeout(timeout):
            while not predicate(self.events):
                assert not self.task.done(), f"the events ended first: {self.events}"
                self._changed.clear()
                await self._changed.wait()

    async def finished(self, timeout: float = 15) -> list[ExecutorEvent]:
        """Every event, once the stream ended."""
        async with asyncio.timeout(timeout):
            await self.task
        return self.events

    def statuses(self) -> list[StatusChanged]:
        return [e for e in self.events if isinstance(e, StatusChanged)]

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


CollectEvents = Callable[[AsyncIterable[ExecutorEvent]], EventCollector]


@pytest.fixture
async def collect_events() -> AsyncIterator[CollectEvents]:
    """Start `EventCollector`s; every one still collecting is stopped at the end of the test."""
    collectors: list[EventCollector] = []

    def collect(events: AsyncIterable[ExecutorEvent]) -> EventCollector:
        collector = EventCollector(events)
        collectors.append(collector)
        return collector

    yield collect
    for collector in collectors:
        await collector.close()


def step_processes(workflow_dir: Path | None = None) -> dict[int, float]:
    """pid -> create time of every descendant of this test process running a step script: one
    in `workflow_dir`, or any `bin/*.py` when it is None."""
    found: dict[int, float] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            command = child.cmdline()
            if workflow_dir is None:
                runs_step = any(part.endswith(".py") and "bin" in part for part in command)
            else:
                runs_step = any(str(workflow_dir) in part for part in command)
            if runs_step:
                found[child.pid] = child.create_time()
        except psutil.Error:
            continue
    return found


class StreamReader:
    """A WebSocket client of the stream that decodes frames and checks `seq` (the event-log id
    of the run a frame belongs to): after the first frame (the snapshot, carrying the id of the
    last entry it reflects) each frame's `seq` is one more than the previous one's within a run,
    and a new run starts at 1, so any gap fails; and no run's `percent` ever goes down."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[dict[str, Any]] = []
        self.percents: dict[str, float] = {}

    async def next(self, timeout: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            raw = await self.connection.recv()
        frame: dict[str, Any] = json.loads(raw)
        if self.frames:
            last = self.frames[-1]
            expected = last["seq"] + 1 if frame["run_id"] == last["run_id"] else 1
            assert frame["seq"] == expected, f"seq {frame['seq']} after {last['seq']}"
        else:
            assert frame["type"] == "snapshot" and isinstance(frame["seq"], int)
        if frame["type"] == "progress" and frame["run_id"]:
            previous = self.percents.get(frame["run_id"], 0.0)
            percent = frame["data"]["percent"]
            run_id = frame["run_id"]
            assert percent >= previous, f"percent of {run_id} went down: {previous} -> {percent}"
            self.percents[frame["run_id"]] = percent
        self.frames.append(frame)
        return frame

    async def until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        while True:
            frame = await self.next(timeout)
            if predicate(frame):
                return frame

    async def until_complete(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        return await self.until(
            lambda f: f["type"] == "complete" and f["run_id"] == run_id, timeout
        )


@pytest.fixture
async def open_stream() -> AsyncIterator[Callable[..., Any]]:
    connections: list[ClientConnection] = []

    async def open_(url: str, **kwargs: Any) -> StreamReader:
        connection = await connect(url, **kwargs)
        connections.append(connection)
        return StreamReader(connection)

    yield open_
    for connection in connections:
        await connection.close()
