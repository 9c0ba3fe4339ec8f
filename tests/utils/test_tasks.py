"""TaskSupervisor: named tasks with kept handles, deaths logged and reported, cancel and close."""

from __future__ import annotations

import asyncio
import logging

import pytest

from nextflow_k8s_service.utils.tasks import TaskSupervisor


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_a_task_that_dies_is_logged_and_reported_to_the_owner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reported: list[tuple[str, BaseException]] = []
    died = asyncio.Event()

    def on_failure(name: str, exc: BaseException) -> None:
        reported.append((name, exc))
        died.set()

    async def boom() -> None:
        raise ValueError("boom")

    supervisor = TaskSupervisor("owner", on_failure=on_failure)
    supervisor.spawn("worker", boom())
    await died.wait()
    assert [(name, str(exc)) for name, exc in reported] == [("worker", "boom")]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == ["owner: task worker failed"]
    assert failures[0].exc_info is not None
    assert supervisor.running("worker") is None
    await supervisor.close()


async def test_a_task_that_ends_or_is_cancelled_is_not_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reported: list[str] = []
    supervisor = TaskSupervisor("owner", on_failure=lambda name, _: reported.append(name))

    async def done() -> int:
        return 7

    assert await supervisor.spawn("quick", done()) == 7
    slow = supervisor.spawn("slow", _forever())
    await supervisor.cancel("slow")
    assert slow.cancelled()
    assert reported == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await supervisor.close()


async def test_cancel_stops_only_the_named_tasks_and_never_the_caller() -> None:
    supervisor = TaskSupervisor("owner")
    keep = supervisor.spawn("keep", _forever())
    stop = supervisor.spawn("stop", _forever())

    async def cancel_both() -> None:
        await supervisor.cancel("stop", "caller")

    caller = supervisor.spawn("caller", cancel_both())
    await caller  # ends normally: it was not cancelled by its own call
    assert stop.cancelled()
    assert not keep.done()
    assert supervisor.running("keep") is keep
    assert supervisor.running("stop") is None
    await supervisor.close()
    assert keep.cancelled()


async def test_close_cancels_everything_and_refuses_new_tasks() -> None:
    supervisor = TaskSupervisor("owner")
    tasks = [supervisor.spawn(f"t{i}", _forever()) for i in range(3)]
    assert [supervisor.running(f"t{i}") for i in range(3)] == tasks
    await supervisor.close()
    assert all(task.cancelled() for task in tasks)
    late = _forever()
    with pytest.raises(RuntimeError, match="closed"):
        supervisor.spawn("late", late)


async def test_close_lets_a_task_already_being_cancelled_finish_its_cleanup() -> None:
    supervisor = TaskSupervisor("owner")
    cleaning = asyncio.Event()
    release = asyncio.Event()
    cleaned: list[bool] = []
    started = asyncio.Event()

    async def with_cleanup() -> None:
        try:
            started.set()
            await _forever()
        except asyncio.CancelledError:
            cleaning.set()
            await release.wait()  # a second cancel would cut this short
            cleaned.append(True)
            raise

    task = supervisor.spawn("worker", with_cleanup())
    await started.wait()
    task.cancel()
    await cleaning.wait()
    closing = asyncio.ensure_future(supervisor.close())
    await asyncio.sleep(0)  # one loop step: close() cancels (or not) before its first await
    assert task.cancelling() == 1
    release.set()
    await closing
    assert cleaned == [True]


async def test_close_names_a_task_that_does_not_stop(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = TaskSupervisor("owner")
    release = asyncio.Event()
    started = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # deliberately ignores cancellation

    task = supervisor.spawn("stubborn", stubborn())
    await started.wait()
    await supervisor.close(grace=0.05)
    assert "owner: task stubborn did not stop within 0s" in caplog.text
    release.set()
    await task
