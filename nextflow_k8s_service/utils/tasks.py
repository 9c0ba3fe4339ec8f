"""Named background tasks with an owner: nothing is fire-and-forget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class TaskSupervisor:
    """Keeps a handle on every task it spawns and cancels them all on `close`.

    A task that fails is logged with its traceback when it ends (never silently dropped);
    a task that is still running at `close` is cancelled and awaited up to `timeout`, and
    the ones that did not stop in time are named in the log.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, name: str, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self._name}: closed, cannot start {name}")
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("%s: task %s failed", self._name, task.get_name(), exc_info=exc)

    @property
    def names(self) -> list[str]:
        return sorted(task.get_name() for task in self._tasks)

    async def close(self, grace: float = 10.0) -> None:
        """Cancel every task and wait for them; log the ones that hang past `grace` seconds."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            logger.error(
                "%s: task %s did not stop within %.0fs", self._name, task.get_name(), grace
            )


def raise_if_cancelling() -> None:
    """Raise `CancelledError` if the current task was asked to cancel.

    For loops around client libraries that may swallow a cancellation landing inside one of
    their calls (redis-py 8's asyncio client does, now and then): checking at the top of each
    iteration keeps such a loop cancellable all the same.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
