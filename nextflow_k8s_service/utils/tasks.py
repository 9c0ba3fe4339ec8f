"""Named background tasks with an owner: nothing is fire-and-forget.

A component that runs background tasks owns them through a `TaskSupervisor`: every task has a
name and a kept handle, an unexpected death is logged and reported to the owner, and `close`
cancels and awaits what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Told the name and the exception of a task that died of an exception.
OnFailure = Callable[[str, BaseException], None]


class TaskSupervisor:
    """Keeps a handle on every task it spawns and cancels them all on `close`.

    A task that fails is logged with its traceback when it ends (never silently dropped) and,
    when the owner gave `on_failure`, reported to it (called from the event loop, after the
    task ended); a cancelled task is normal. A task still running at `close` is cancelled and
    awaited up to `grace` seconds; the ones that did not stop in time are named in the log.
    """

    def __init__(self, name: str, *, on_failure: OnFailure | None = None) -> None:
        self._name = name
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, name: str, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start `coro` as task `name`; raises RuntimeError (and closes `coro`) after `close`."""
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
        if exc is None:
            return
        logger.error("%s: task %s failed", self._name, task.get_name(), exc_info=exc)
        if self._on_failure is not None:
            self._on_failure(task.get_name(), exc)

    def running(self, name: str) -> asyncio.Task[Any] | None:
        """The live task called `name`, if any."""
        return next((task for task in self._tasks if task.get_name() == name), None)

    async def cancel(self, *names: str) -> None:
        """Cancel the live tasks called `names` (never the calling task) and await their end."""
        current = asyncio.current_task()
        victims = [t for t in self._tasks if t.get_name() in names and t is not current]
        for task in victims:
            task.cancel()
        if victims:
            await asyncio.wait(victims)

    async def close(self, grace: float = 10.0) -> None:
        """Cancel every task (not the calling one) and wait for them; log the ones that hang
        past `grace` seconds. No task can be spawned afterwards."""
        self._closed = True
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            # A task already being cancelled is cleaning up; cancelling again would cut that short.
            if not task.cancelling():
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
