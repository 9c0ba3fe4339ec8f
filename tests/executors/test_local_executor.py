"""LocalExecutor driven directly: real subprocesses of the real workflows/bin scripts."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from nextflow_k8s_service.config import REPO_WORKFLOW_DIR
from nextflow_k8s_service.errors import ExecutorOperationError, ExecutorStartError
from nextflow_k8s_service.executors.base import (
    ExecutorEvent,
    LogEmitted,
    RunSpec,
    StatusChanged,
    TaskChanged,
    task_source,
)
from nextflow_k8s_service.executors.local import LINE_LIMIT, STEP_NICENESS, LocalExecutor
from nextflow_k8s_service.models import RunStatus, TaskState
from tests.conftest import CollectEvents, SettingsFactory, run_spec, step_processes

TIMEOUT = 60  # seconds any single run of these tests may take at most

Events = list[ExecutorEvent]


@pytest.fixture
async def executors() -> AsyncIterator[list[LocalExecutor]]:
    """Executors a test creates; all closed afterwards even if the test fails."""
    created: list[LocalExecutor] = []
    yield created
    for executor in created:
        await executor.close()


async def run_to_end(
    collect_events: CollectEvents, executor: LocalExecutor, spec: RunSpec
) -> Events:
    await executor.start(spec)
    return await collect_events(executor.events(spec.run_id)).finished(TIMEOUT)


def terminal(events: Events) -> StatusChanged:
    """The single terminal status, which must be the last event."""
    ends = [e for e in events if isinstance(e, StatusChanged) and e.status.terminal]
    assert len(ends) == 1, ends
    assert events[-1] is ends[0]
    return ends[0]


def task_states(events: Events) -> dict[str, list[TaskState]]:
    states: dict[str, list[TaskState]] = {}
    for event in events:
        if isinstance(event, TaskChanged):
            states.setdefault(task_source(event.process, event.index), []).append(event.state)
    return states


def scripts_started(process: str, count: int) -> Callable[[Events], bool]:
    """True once `count` tasks of `process` printed a line: their script is running.

    (TaskChanged(RUNNING) comes right after the spawn, when the child may not have exec'd
    Python yet, so its command line would not show the script.)
    """

    def predicate(events: Events) -> bool:
        sources = {e.source for e in events if isinstance(e, LogEmitted)}
        return sum(task_source(process, i) in sources for i in range(1, count + 1)) == count

    return predicate


def still_present(processes: dict[int, float]) -> list[int]:
    """The recorded processes that still exist (running or unreaped), by pid and create time."""
    present = []
    for pid, created in processes.items():
        try:
            if psutil.Process(pid).create_time() == created:
                present.append(pid)
        except psutil.NoSuchProcess:
            continue
    return present


def copy_workflow(tmp_path: Path, script: str, source: str) -> Path:
    """A copy of workflows/ whose `script` is replaced by `source`."""
    target = tmp_path / "workflows"
    shutil.copytree(REPO_WORKFLOW_DIR, target)
    (target / "bin" / script).write_text(source)
    return target


# --- a full run --------------------------------------------------------------------------------


async def test_full_run_events_logs_and_report(
    tmp_path: Path,
    executors: list[LocalExecutor],
    make_settings: SettingsFactory,
    collect_events: CollectEvents,
) -> None:
    settings = make_settings(demo_rows_per_batch=20)
    executor = LocalExecutor(settings=settings)
    executors.append(executor)
    spec = run_spec(3, settings=settings)

    events = await run_to_end(collect_events, executor, spec)

    assert events[0] == StatusChanged(RunStatus.STARTING)
    assert terminal(events) == StatusChanged(RunStatus.SUCCEEDED)
    statuses = [e.status for e in events if isinstance(e, StatusChanged)]
    assert statuses == [RunStatus.STARTING, RunStatus.RUNNING, RunStatus.SUCCEEDED]

    # Every task: pending (all up front), then running, then succeeded.
    sources = [task_source(p, i) for i in (1, 2, 3) for p in ("GENERATE", "ANALYZE")]
    sources.append("REPORT")
    states = task_states(events)
    assert sorted(states) == sorted(sources)
    for source in sources:
        assert states[source] == [TaskState.PENDING, TaskState.RUNNING, TaskState.SUCCEEDED]
    tasks = [e for e in events if isinstance(e, TaskChanged)]
    assert all(e.state is TaskState.PENDING for e in tasks[: len(sources)])
    first_running = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, TaskChanged) and e.state is TaskState.RUNNING
    )
    assert events[first_running - 1] == StatusChanged(RunStatus.RUNNING)

    # Dependencies: ANALYZE (i) after GENERATE (i); REPORT after every ANALYZE.
    def position(process: str, index: int | None, state: TaskState) -> int:
        wanted = (process, index, state)
        return next(
            i
            for i, e in enumerate(events)
            if isinstance(e, TaskChanged) and (e.process, e.index, e.state) == wanted
        )

    for index in (1, 2, 3):
        assert position("ANALYZE", index, TaskState.RUNNING) > position(
            "GENERATE", index, TaskState.SUCCEEDED
        )
        assert position("REPORT", None, TaskState.RUNNING) > position(
            "ANALYZE", index, TaskState.SUCCEEDED
        )

    # Times: submitted and started with the spawn, finished with the exit (code 0).
    for e in tasks:
        if e.state is TaskState.RUNNING:
            assert e.submitted_at is not None and e.started_at is not None
            assert e.submitted_at <= e.started_at and e.finished_at is None
        if e.state is TaskState.SUCCEEDED:
            assert e.finished_at is not None and e.exit_code == 0

    # Log lines, tagged with their task (or `controller`).
    logs = [e for e in events if isinstance(e, LogEmitted)]
    by_source: dict[str, list[str]] = {}
    for line in logs:
        by_source.setdefault(line.source, []).append(line.message)
    assert set(by_source) == {*sources, "controller"}
    assert by_source["GENERATE (2)"][0].startswith("generating 20 rows for batch 2")
    assert "wrote batch_2.csv (20 rows)" in by_source["GENERATE (2)"]
    assert any(m.startswith("batch 3: count=20 mean=") for m in by_source["ANALYZE (3)"])
    assert by_source["controller"][0] == (f"launching run {spec.run_id} with 3 batches of 20 rows")
    assert "all tasks finished" in by_source["controller"]

    # report.json is published, and equals running the scripts by hand for the same run id.
    published = settings.results_root / spec.run_id / "report.json"
    report = json.loads(published.read_text())
    expected = report_by_hand(tmp_path / "by-hand", spec)
    assert report["run_id"] == spec.run_id
    assert {k: v for k, v in report.items() if k != "generated_at"} == {
        k: v for k, v in expected.items() if k != "generated_at"
    }
    assert [p.name for p in published.parent.iterdir()] == ["report.json"]
    assert step_processes(settings.workflow_dir) == {}


def report_by_hand(workdir: Path, spec: RunSpec) -> dict[str, object]:
    workdir.mkdir()
    bin_dir = REPO_WORKFLOW_DIR / "bin"

    def step(script: str, *args: str) -> None:
        subprocess.run(
            [sys.executable, str(bin_dir / script), *args], cwd=workdir, check=True, timeout=60
        )

    stats = []
    for index in range(1, spec.batch_count + 1):
        step(
            "generate.py",
            "--run-id",
            spec.run_id,
            "--batch",
            str(index),
            "--rows",
            str(spec.rows_per_batch),
            "--out",
            f"b{index}.csv",
        )
        step(
            "analyze.py",
            "--batch",
            str(index),
            "--input",
            f"b{index}.csv",
            "--out",
            f"s{index}.json",
        )
        stats.append(f"s{index}.json")
    step("report.py", "--run-id", spec.run_id, "--out", "report.json", *reversed(stats))
    result: dict[str, object] = json.loads((workdir / "report.json").read_text())
    return result


async def test_overlong_output_lines_are_truncated_not_fatal(
    tmp_path: Path,
    executors: list[LocalExecutor],
    make_settings: SettingsFactory,
    collect_events: CollectEvents,
) -> None:
    real = (REPO_WORKFLOW_DIR / "bin" / "generate.py").read_text()
    noisy = real.replace(
        "def main(argv: list[str] | None = None) -> int:\n",
        "def main(argv: list[str] | None = None) -> int:\n"
        "    print('x' * 200_000, flush=True)\n"
        "    print('y' * 100_000, file=sys.stderr, end='', flush=True)\n",
    )
    assert noisy != real
    settings = make_settings(
        workflow_dir=copy_workflow(tmp_path, "generate.py", noisy), demo_rows_per_batch=20
    )
    executor = LocalExecutor(settings=settings)
    executors.append(executor)

    events = await run_to_end(collect_events, executor, run_spec(1, settings=settings))

    assert terminal(events).status is RunStatus.SUCCEEDED
    lines = [e.message for e in events if isinstance(e, LogEmitted) and e.source == "GENERATE (1)"]
    assert "x" * LINE_LIMIT + " [line truncated]" in lines
    assert "y" * LINE_LIMIT + " [line truncated]" in lines
    assert "wrote batch_1.csv (20 rows)" in lines  # the lines after the long one still arrive
    assert all(len(line) <= LINE_LIMIT + len(" [line truncated]") for line in lines)


# --- cancel, close, failure, timeout ----------------------------------------------------------


async def test_cancel_kills_every_subprocess_and_ends_cancelled(
    tmp_path: Path,
    executors: list[LocalExecutor],
    make_settings: SettingsFactory,
    collect_events: CollectEvents,
) -> None:
    settings = make_settings(demo_generate_seconds=60)
    executor = LocalExecutor(settings=settings)
    executors.append(executor)
    spec = run_spec(3, settings=settings)
    await executor.start(spec)
    follower = collect_events(executor.events(spec.run_id))
    await follower.until(scripts_started("GENERATE", 3), TIMEOUT)
    processes = step_processes(settings.workflow_dir)
    assert len(processes) == 3
    for pid in processes:
        # Behind the service for the CPU; each leads its group, which cancel signals.
        assert psutil.Process(pid).nice() == max(STEP_NICENESS, os.nice(0))
        assert os.getpgid(pid) == pid and os.getsid(pid) == os.getsid(0)

    started = time.monotonic()
    await executor.cancel(spec.run_id)
    assert time.monotonic() - started < 10
    assert still_present(processes) == []
    events = await follower.finished(TIMEOUT)

    assert terminal(events).status is RunStatus.CANCELLED
    states = task_states(events)
    for index in (1, 2, 3):
        assert states[f"GENERATE ({index})"][-1] is TaskState.CANCELLED
        assert states[f"ANALYZE ({index})"] == [TaskState.PENDING]
    stopped = [e for e in events if isinstance(e, TaskChanged) and e.state is TaskState.CANCELLED]
    assert len(stopped) == 3
    assert all(e.reason == "cancelled on request" and e.finished_at for e in stopped)
    assert states["REPORT"] == [TaskState.PENDING]
    assert not (settings.results_root / spec.run_id / "report.json").exists()
    # Idempotent, and a no-op for a finished or unknown run.
    await executor.cancel(spec.run_id)
    await executor.cancel("r000000000ff")
    assert step_processes(settings.workflow_dir) == {}


async def test_a_large_run_sets_one_batch_going_per_turn_of_the_loop(
    executors: list[LocalExecutor], make_settings: SettingsFactory
) -> None:
    settings = make_settings(demo_generate_seconds=60)
    executor = LocalExecutor(settings=settings)
    executors.append(executor)
    spec = run_spec(6, settings=settings)
    await executor.start(spec)

    def batches_going() -> int:
        return sum(t.get_name().startswith("local-batch-") for t in asyncio.all_tasks())

    going = [batches_going()]
    for _ in range(20):
        await asyncio.sleep(0)
        going.append(batches_going())
    # All of them, but never more than one more per turn: the loop's other work (the answer
    # to the request that started the run) comes in between.
    assert going[0] == 0 and going[-1] == 6
    assert all(later - earlier <= 1 for earlier, later in itertools.pairwise(going)), going
    await executor.cancel(spec.run_id)


async def test_close_with_a_run_in_progress_leaves_no_orphans(
    make_settings: SettingsFactory, collect_events: CollectEvents
) -> None:
    settings = make_settings(demo_generate_seconds=0, demo_analyze_seconds=60)
    executor = LocalExecutor(settings=settings)
    spec = run_spec(2, settings=settings)
    await executor.start(spec)
    follower = collect_events(executor.events(spec.run_id))
    await follower.until(scripts_started("ANALYZE", 2), TIMEOUT)
    processes = step_processes(settings.workflow_dir)
    assert len(processes) == 2

    async with asyncio.timeout(TIMEOUT):
        await executor.close()

    assert still_present(processes) == []
    assert step_processes(settings.workflow_dir) == {}
    events = await follower.finished(TIMEOUT)
    assert terminal(events).status is RunStatus.CANCELLED


FAILING_ANALYZE = """\
import sys
import time

batch = sys.argv[sys.argv.index("--batch") + 1]
if batch != "1":
    time.sleep(60)  # still running when batch 1 fails: must be killed
for number in range(1, 8):
    print(f"stderr line {number}", file=sys.stderr)
print("analyze.py: error: disk on fire", file=sys.stderr)
sys.exit(1)
"""


async def test_failing_step_ends_failed_with_its_stderr_tail(
    tmp_path: Path,
    executors: list[LocalExecutor],
    make_settings: SettingsFactory,
    collect_events: CollectEvents,
) -> None:
    workflow_dir = copy_workflow(tmp_path, "analyze.py", FAILING_ANALYZE)
    settings = make_settings(workflow_dir=workflow_dir)
    executor = LocalExecutor(settings=settings)
    executors.append(executor)
    spec = run_spec(3, settings=settings)

    started = time.monotonic()
    events = await run_to_end(collect_events, executor, spec)

    assert time.monotonic() - started < 30  # the sleeping ANALYZE tasks were killed
    end = terminal(events)
    assert end.status is RunStatus.FAILED
    assert end.message is not None
    assert "ANALYZE (1) failed with exit code 1" in end.message
    assert "analyze.py: error: disk on fire" in end.message
    assert "stderr line 7" in end.message
    assert "stderr line 1" not in end.message  # only the tail
    states = task_states(events)
    assert states["ANALYZE (1)"] == [TaskState.PENDING, TaskState.RUNNING, TaskState.FAILED]
    for index in (2, 3):
        # Killed because their sibling failed: stopped, not failed themselves.
        assert states[f"ANALYZE ({index})"][-1] in (TaskState.PENDING, TaskState.CANCELLED)
    assert states["REPORT"] == [TaskState.PENDING]
    assert step_processes(workflow_dir) == {}


async def test_a_task_that_cannot_start_fails_the_run(
    tmp_path: Path,
    executors: list[LocalExecutor],
    make_settings: SettingsFactory,
    collect_events: CollectEvents,
) -> None:
    settings = make_settings()
    executor = LocalExecutor(settings=settings)
    executors.append(executor)
    spec = run_spec(1, settings=settings)
    # A file where the task's working directory must go: an OSError at spawn time.
    work_dir = settings.work_root / spec.run_id
    work_dir.mkdir(parents=True)
    (work_dir / "generate_1").write_text("in the way")

    events = await run_to_end(collect_events, executor, spec)

    end = terminal(events)
    assert end.status is RunStatus.FAILED
    assert end.message is not None
    assert end.message.startswith("GENERATE (1) could not be started")
    assert task_states(events)["GENERATE (1)"] == [TaskState.PENDING, TaskState.FAILED]


async def test_run_exceeding_the_timeout_fails(
    tmp_path: Path,
    executors: list[LocalExecutor],
    make_settings: SettingsFactory,
    collect_events: CollectEvents,
) -> None:
    settings = make_settings(demo_generate_seconds=60)
    # model_copy skips validation: RUN_TIMEOUT_SECONDS is at least 10 s for real use.
    settings = settings.model_copy(update={"run_timeout_seconds": 1})
    executor = LocalExecutor(settings=settings)
    executors.append(executor)
    spec = run_spec(2, settings=settings)

    events = await run_to_end(collect_events, executor, spec)

    end = terminal(events)
    assert end.status is RunStatus.FAILED
    assert end.message is not None
    assert "time limit of 1 seconds" in end.message
    assert task_states(events)["GENERATE (1)"][-1] is TaskState.FAILED
    assert step_processes(settings.workflow_dir) == {}


# --- the rest of the protocol ----------------------------------------------------------------


async def test_check_start_adopt_and_unknown_runs(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    good = LocalExecutor(settings=make_settings())
    check = await good.check()
    assert check.ok
    assert await good.adopt(run_spec(2, settings=make_settings())) is False

    empty = tmp_path / "empty-workflows"
    empty.mkdir()
    broken = LocalExecutor(settings=make_settings(workflow_dir=empty))
    check = await broken.check()
    assert not check.ok
    assert check.detail is not None
    assert "generate.py" in check.detail
    with pytest.raises(ExecutorStartError, match="workflow scripts not found"):
        await broken.start(run_spec(1, settings=make_settings()))

    with pytest.raises(ExecutorOperationError, match="unknown run"):
        async for _ in good.events("r000000000ff"):
            pass
    await good.cancel("r000000000ff")
    await good.close()
    await broken.close()


async def test_a_run_id_cannot_be_started_twice(
    tmp_path: Path,
    executors: list[LocalExecutor],
    make_settings: SettingsFactory,
    collect_events: CollectEvents,
) -> None:
    settings = make_settings(demo_generate_seconds=60)
    executor = LocalExecutor(settings=settings)
    executors.append(executor)
    spec = run_spec(1, settings=settings)
    await executor.start(spec)
    with pytest.raises(ExecutorStartError, match="already started"):
        await executor.start(spec)
    await executor.cancel(spec.run_id)
    events = await collect_events(executor.events(spec.run_id)).finished(TIMEOUT)
    assert terminal(events).status is RunStatus.CANCELLED
