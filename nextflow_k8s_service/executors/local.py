"""The local executor: the demo's scatter-gather as asyncio subprocesses, no cluster needed.

It runs the very same `workflows/bin` scripts Nextflow runs in task pods (`sys.executable
script ...`), in `<work_root>/<run_id>/<task>/`, with the same dependencies as demo.nf:
GENERATE (i) all in parallel, ANALYZE (i) as soon as GENERATE (i) is done, REPORT after every
ANALYZE; `report.json` is then published (atomically) to `<results_root>/<run_id>/`.

A step's process is started when the step becomes runnable, in a worker thread (see
`child.spawn`): starting a run of twelve batches never blocks the event loop on twelve forks,
and the batches are set going one per turn of the loop.
Steps run at a lower CPU priority than the service (`STEP_NICENESS`): twelve interpreters
starting at once would otherwise take the CPU from the event loop.

Each run is driven by one named asyncio task owned by the executor. Every subprocess leads
its own process group, so cancelling a run, a failing step or `close()` can signal the whole
group (SIGTERM, then SIGKILL after a grace period) and reap it: no orphans remain.
On Linux a step also dies with the service process, even a SIGKILLed one (step_processes.py).
Tasks killed while running (a cancel, a shutdown, a failed sibling) are reported `cancelled`;
tasks that never started stay `pending`. Each task's transition carries its times: submitted
(the step is due), started (the spawn), finished (reaped), and the exit code.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.errors import ExecutorOperationError, ExecutorStartError
from nextflow_k8s_service.executors.child import Child, spawn
from nextflow_k8s_service.executors.step_processes import step_command, sweep_leftover_steps
from nextflow_k8s_service.models import CheckResult, RunStatus, TaskState, utcnow
from nextflow_k8s_service.run_events import (
    ExecutorEvent,
    LogEmitted,
    RunSpec,
    StatusChanged,
    TaskChanged,
    task_source,
)
from nextflow_k8s_service.utils.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

CONTROLLER = "controller"
SCRIPTS = {"GENERATE": "generate.py", "ANALYZE": "analyze.py", "REPORT": "report.py"}
KILL_GRACE_SECONDS = 3.0  # between SIGTERM and SIGKILL of a task's process group
LINE_LIMIT = 8192  # bytes of one output line kept; the rest of a longer line is dropped
STDERR_TAIL_LINES = 5  # stderr lines of a failed step quoted in the run's message
CLOSE_SLACK_SECONDS = 5.0  # close() waits the kill grace plus this for the drivers to end
# Nice value of the step processes: the service's event loop comes first when they compete.
STEP_NICENESS = 10


class _StepFailed(Exception):
    """A step exited non-zero or could not be started; the message explains it."""


class _Run:
    """The state of one run: its event queue, its driver task and its live subprocesses."""

    def __init__(self, spec: RunSpec, work_dir: Path) -> None:
        self.spec = spec
        self.work_dir = work_dir
        self.queue: asyncio.Queue[ExecutorEvent] = asyncio.Queue()
        self.procs: set[Child] = set()
        self.task: asyncio.Task[None] | None = None
        self.cancel_reason: str | None = None
        self.deadline: float | None = None  # loop time of RUN_TIMEOUT_SECONDS
        self.running = False
        self.finished = False

    def emit(self, event: ExecutorEvent) -> None:
        if not self.finished:
            self.queue.put_nowait(event)

    def log(self, message: str) -> None:
        self.emit(LogEmitted(source=CONTROLLER, message=message))

    def task_state(self, process: str, index: int | None, state: TaskState, **detail: Any) -> None:
        """Emit a task's transition; `detail` holds `TaskChanged`'s times, exit code, reason."""
        if state is TaskState.RUNNING and not self.running:
            self.running = True
            self.emit(StatusChanged(RunStatus.RUNNING))
        self.emit(TaskChanged(process=process, index=index, state=state, **detail))

    def finish(self, status: RunStatus, message: str | None) -> None:
        """Emit the terminal status; later calls (and any later event) are ignored."""
        if not self.finished:
            self.emit(StatusChanged(status, message))
            self.finished = True


class LocalExecutor:
    """Runs the demo as local subprocesses (`EXECUTOR=local`).

    The executor owns one driver task per run (`local-run-<run_id>`); `close()` cancels and
    awaits all of them, which kills every subprocess they started.
    """

    name = "local"
    runs_outlive_service = False

    def __init__(self, *, settings: Settings) -> None:
        self._settings = settings
        self._bin_dir = settings.workflow_dir / "bin"
        self._runs: dict[str, _Run] = {}
        self._drivers = TaskSupervisor("local executor")
        # Steps die with the service (step_processes.py); these are an earlier one's leftovers.
        sweep_leftover_steps(
            [self._bin_dir / name for name in SCRIPTS.values()], settings.work_root
        )
        # One thread starts every step's process, one after the other (see `child.spawn`).
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-spawn")

    async def start(self, spec: RunSpec) -> None:
        """Submit the run; raises `ExecutorStartError` if it cannot even be set up."""
        if spec.run_id in self._runs:
            raise ExecutorStartError(f"run {spec.run_id} was already started")
        if spec.batch_count < 1:
            raise ExecutorStartError(f"batch count must be 1 or more, got {spec.batch_count}")
        missing = self._missing_scripts()
        if missing:
            raise ExecutorStartError(f"workflow scripts not found: {', '.join(missing)}")
        work_dir = self._settings.work_root / spec.run_id
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.warning("cannot create work directory %s: %s", work_dir, exc)
            raise ExecutorStartError("cannot create the run's work directory") from exc
        run = _Run(spec, work_dir)
        run.emit(StatusChanged(RunStatus.STARTING))
        task = self._drivers.spawn(f"local-run-{spec.run_id}", self._drive(run))
        run.task = task
        self._runs[spec.run_id] = run
        task.add_done_callback(lambda done: self._driver_done(run, done))

    async def events(self, run_id: str) -> AsyncIterator[ExecutorEvent]:
        """Yield the run's events, buffered since `start`, up to and including the terminal one.

        A local run does not outlive its follower: when the iteration stops early (the
        follower lost the run, or was cancelled) the run is cancelled. Either way the executor
        forgets the run. Raises `ExecutorOperationError` for a run this executor does not know
        (or whose terminal event was already consumed).
        """
        run = self._runs.get(run_id)
        if run is None:
            raise ExecutorOperationError(f"unknown run {run_id}")
        try:
            while True:
                event = await run.queue.get()
                yield event
                if isinstance(event, StatusChanged) and event.status.terminal:
                    return
        finally:
            self._request_cancel(run, "its follower stopped")
            if self._runs.get(run_id) is run:
                del self._runs[run_id]

    async def cancel(self, run_id: str) -> None:
        """Kill every subprocess of the run and end it `cancelled`; no-op if unknown/finished."""
        run = self._runs.get(run_id)
        if run is None or run.task is None:
            return
        self._request_cancel(run, "cancelled on request")
        await asyncio.wait([run.task])

    async def adopt(self, spec: RunSpec, *, logs_since: datetime | None = None) -> bool:
        """Local subprocesses die with the service process: there is never anything to adopt."""
        return False

    async def orphan_jobs(self, claimed: set[str]) -> list[str]:
        """Runs of this process are always claimed; none outlive it."""
        return sorted(set(self._runs) - claimed)

    async def check(self) -> CheckResult:
        missing = self._missing_scripts()
        if missing:
            return CheckResult(ok=False, detail=f"workflow scripts not found: {', '.join(missing)}")
        return CheckResult(ok=True, detail=f"workflow scripts in {self._bin_dir}")

    async def close(self) -> None:
        """Cancel every run (killing its subprocesses) and await the driver tasks."""
        for run in list(self._runs.values()):
            self._request_cancel(run, "executor closed")
        await self._drivers.close(grace=KILL_GRACE_SECONDS + CLOSE_SLACK_SECONDS)
        self._starter.shutdown(wait=False, cancel_futures=True)

    # --- the run --------------------------------------------------------------------------

    def _missing_scripts(self) -> list[str]:
        try:
            return [
                str(self._bin_dir / name)
                for name in SCRIPTS.values()
                if not (self._bin_dir / name).is_file()
            ]
        except OSError:
            return [str(self._bin_dir)]

    def _request_cancel(self, run: _Run, reason: str) -> None:
        # Cancel the driver only once: a second cancel() would interrupt its cleanup.
        if run.cancel_reason is None and run.task is not None and not run.task.done():
            run.cancel_reason = reason
            run.task.cancel()

    def _driver_done(self, run: _Run, task: asyncio.Task[None]) -> None:
        """Guarantee exactly one terminal event, whatever ended the driver (the supervisor logs
        a crash)."""
        if task.cancelled():
            run.finish(RunStatus.CANCELLED, run.cancel_reason or "cancelled")
        elif (exc := task.exception()) is not None:
            run.finish(RunStatus.FAILED, f"internal error of the local executor: {exc!r}")

    async def _drive(self, run: _Run) -> None:
        spec = run.spec
        for index in range(1, spec.batch_count + 1):
            run.task_state("GENERATE", index, TaskState.PENDING)
            run.task_state("ANALYZE", index, TaskState.PENDING)
        run.task_state("REPORT", None, TaskState.PENDING)
        run.log(
            f"launching run {spec.run_id} with {spec.batch_count} batches "
            f"of {spec.rows_per_batch} rows"
        )
        timeout = self._settings.run_timeout_seconds
        run.deadline = asyncio.get_running_loop().time() + timeout
        try:
            try:
                async with asyncio.timeout(timeout):
                    await self._pipeline(run)
            finally:
                await self._kill_all(run)
        except asyncio.CancelledError:
            run.log(f"run {run.cancel_reason or 'cancelled'}; its tasks were stopped")
            run.finish(RunStatus.CANCELLED, run.cancel_reason or "cancelled")
            raise
        except TimeoutError:
            message = f"the run took longer than its time limit of {timeout} seconds"
            run.log(message)
            run.finish(RunStatus.FAILED, message)
        except _StepFailed as exc:
            run.log(f"run failed: {exc}")
            run.finish(RunStatus.FAILED, str(exc))
        else:
            run.finish(RunStatus.SUCCEEDED, None)

    async def _pipeline(self, run: _Run) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                batches = []
                for index in range(1, run.spec.batch_count + 1):
                    name = f"local-batch-{index}"
                    batches.append(group.create_task(self._batch(run, index), name=name))
                    # One batch per turn of the event loop: the start of a large run never
                    # holds up the loop's other work in one stretch (such as the 202 of the
                    # request that started it).
                    await asyncio.sleep(0)
        except ExceptionGroup as failures:
            # A failed step cancels its siblings (their subprocesses are killed) and ends here.
            matched, rest = failures.split(_StepFailed)
            if rest is not None or matched is None:
                raise
            raise matched.exceptions[0] from None
        stats = [str(batch.result()) for batch in batches]
        report_args = [*_cli(run_id=run.spec.run_id, out="report.json"), *stats]
        report_dir = await self._step(run, "REPORT", None, report_args)
        run.log("all tasks finished")
        target = self._settings.results_root / run.spec.run_id / "report.json"
        try:
            await asyncio.to_thread(_publish, report_dir / "report.json", target)
        except OSError as exc:
            logger.warning("cannot publish %s: %s", target, exc)
            raise _StepFailed("cannot publish the report") from exc
        run.log("published the report")

    async def _batch(self, run: _Run, index: int) -> Path:
        """GENERATE (index), then ANALYZE (index); returns the path of the batch's stats."""
        spec = run.spec
        csv_name, stats_name = f"batch_{index}.csv", f"stats_{index}.json"
        generate_args = _cli(
            run_id=spec.run_id,
            batch=index,
            rows=spec.rows_per_batch,
            seconds=spec.generate_seconds,
            out=csv_name,
        )
        generate_dir = await self._step(run, "GENERATE", index, generate_args)
        analyze_args = _cli(
            batch=index,
            input=generate_dir / csv_name,
            seconds=spec.analyze_seconds,
            out=stats_name,
        )
        analyze_dir = await self._step(run, "ANALYZE", index, analyze_args)
        return analyze_dir / stats_name

    async def _step(self, run: _Run, process: str, index: int | None, args: list[str]) -> Path:
        """Run one task to completion in its own directory (returned); `_StepFailed` if not 0."""
        source = task_source(process, index)
        cwd = run.work_dir / (process.lower() if index is None else f"{process.lower()}_{index}")
        script = self._bin_dir / SCRIPTS[process]
        submitted_at = utcnow()
        try:
            cwd.mkdir(exist_ok=True)
            # Stamped before the spawn: the call returns only once the pipes are connected,
            # when the child may have been running for a while on a busy loop.
            started_at = utcnow()
            proc = await spawn(
                step_command(script, args),
                cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                limit=LINE_LIMIT,
                starter=self._starter,
                niceness=STEP_NICENESS,
            )
        except OSError as exc:
            reason = f"{source} could not be started: {exc}"
            finished = {"submitted_at": submitted_at, "finished_at": utcnow(), "reason": reason}
            run.task_state(process, index, TaskState.FAILED, **finished)
            raise _StepFailed(reason) from exc
        run.procs.add(proc)
        run.task_state(
            process, index, TaskState.RUNNING, submitted_at=submitted_at, started_at=started_at
        )
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        try:
            await asyncio.gather(
                _pump(run, source, proc.stdout, None), _pump(run, source, proc.stderr, tail)
            )
            code = await proc.wait()
            finished_at = utcnow()
        except BaseException:
            await _terminate(proc)
            state, stopped = _stopped(run, proc)
            run.task_state(process, index, state, **stopped)
            raise
        finally:
            proc.close_pipes()
            if proc.returncode is not None:
                run.procs.discard(proc)
        if code != 0:
            detail = " | ".join(tail) if tail else "no output on stderr"
            reason = f"{source} failed with exit code {code}: {detail}"
            ended = {"finished_at": finished_at, "exit_code": code, "reason": reason}
            run.task_state(process, index, TaskState.FAILED, **ended)
            raise _StepFailed(reason)
        run.task_state(process, index, TaskState.SUCCEEDED, finished_at=finished_at, exit_code=0)
        return cwd

    async def _kill_all(self, run: _Run) -> None:
        """Safety net: no subprocess of the run outlives its driver."""
        for proc in list(run.procs):
            await _terminate(proc)
            run.procs.discard(proc)


def _stopped(run: _Run, proc: Child) -> tuple[TaskState, dict[str, Any]]:
    """State and detail of a task killed before it finished: failed when the run's time limit
    killed it, else cancelled (by a cancel, a shutdown, or a failed sibling)."""
    detail: dict[str, Any] = {"finished_at": utcnow(), "exit_code": proc.returncode}
    if run.deadline is not None and asyncio.get_running_loop().time() >= run.deadline:
        detail["reason"] = "killed at the run's time limit (RUN_TIMEOUT_SECONDS)"
        return TaskState.FAILED, detail
    detail["reason"] = run.cancel_reason or "stopped: the run ended before this task finished"
    return TaskState.CANCELLED, detail


def _cli(**options: object) -> list[str]:
    """Command-line options of a step script: `run_id=x` becomes `--run-id x`."""
    return [
        part
        for key, value in options.items()
        for part in (f"--{key.replace('_', '-')}", str(value))
    ]


async def _pump(
    run: _Run,
    source: str,
    stream: asyncio.StreamReader,
    tail: collections.deque[str] | None,
) -> None:
    async for line in _lines(stream):
        run.emit(LogEmitted(source=source, message=line))
        if tail is not None:
            tail.append(line)


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """Decoded lines of `stream` until EOF; a line longer than LINE_LIMIT is cut and marked."""
    while True:
        try:
            raw = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # EOF: the last line has no newline
            if exc.partial:
                yield _decode(exc.partial)
            return
        except asyncio.LimitOverrunError:
            head = await stream.read(LINE_LIMIT)
            await _skip_line(stream)
            yield _decode(head) + " [line truncated]"
            continue
        yield _decode(raw)


async def _skip_line(stream: asyncio.StreamReader) -> None:
    """Discard the rest of an over-long line, up to and including its newline (or EOF)."""
    while True:
        try:
            await stream.readuntil(b"\n")
            return
        except asyncio.IncompleteReadError:
            return
        except asyncio.LimitOverrunError:
            await stream.read(LINE_LIMIT)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _signal_group(proc: Child, signum: signal.Signals) -> None:
    # The task leads its process group, so its pid is the group's id. Right after the spawn
    # the child may not have called setpgid() yet: then signal it directly.
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
    except PermissionError:
        logger.warning("cannot signal process group %d", proc.pid)


async def _terminate(proc: Child) -> None:
    """SIGTERM the task's process group, SIGKILL it after the grace period; reap the task."""
    if proc.returncode is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE_SECONDS)
        except TimeoutError:
            _signal_group(proc, signal.SIGKILL)
            await proc.wait()
    except asyncio.CancelledError:
        # Cancelled again while cleaning up: do not leave the group running.
        _signal_group(proc, signal.SIGKILL)
        raise


def _publish(source: Path, target: Path) -> None:
    """Copy `source` to `target` atomically (temporary file in the same directory + rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
