"""Where runs live: the StateStore protocol and the in-memory store (one replica).

The store holds at most one *active* run (the lock), the records of finished runs (the history,
bounded in count and age), the recent log lines of the active run, and relays `RelayMessage`s to
every replica's subscribers. Every write names its run id and is applied only while that run is
the active one (compare-and-set), so a late write of an old run can never touch a newer run.

The Redis implementation lives in `redis_store.py`; both pass the same contract tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from nextflow_k8s_service.models import CheckResult, LogLine, RelayMessage, RunRecord, utcnow

RECENT_LOG_LINES = 200


@dataclass(frozen=True, slots=True)
class AcquireResult:
    """Outcome of `acquire`: `run` is the new run when `acquired`, else the one in progress."""

    acquired: bool
    run: RunRecord


def make_owner_id() -> str:
    """Identity of this process as a lock owner: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class StateStore(Protocol):
    """Run state shared by the replicas of the service.

    Raises `StoreUnavailableError` when the backend cannot be reached; never a client library's
    own exception. `subscribe` yields relayed messages until the iterating task is cancelled.
    """

    owner_id: str

    async def acquire(self, run: RunRecord) -> AcquireResult:
        """Make `run` the active run if there is none, owned by this process (atomic)."""
        ...

    async def get_active(self) -> RunRecord | None: ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The active run or a remembered finished run with this id."""
        ...

    async def update(self, run: RunRecord) -> bool:
        """Replace the active run's record if `run.run_id` is still active; True if applied."""
        ...

    async def finish(self, run: RunRecord) -> bool:
        """Record `run` (terminal) in the history and free the lock, if it is still active."""
        ...

    async def history(self, limit: int) -> list[RunRecord]:
        """Finished runs, newest first, at most `limit`, none older than the retention."""
        ...

    async def append_logs(self, run_id: str, lines: Sequence[LogLine]) -> None:
        """Add lines to the active run's recent-log buffer (the last 200 are kept)."""
        ...

    async def recent_logs(self, run_id: str) -> list[LogLine]: ...

    async def renew(self, run_id: str) -> bool:
        """Extend this owner's lease on the active run; False if it no longer holds it."""
        ...

    async def release(self, run_id: str) -> bool:
        """Give up this owner's lease on the active run, leaving the run active for another
        replica to claim at once (graceful shutdown with runs that outlive the process)."""
        ...

    async def claim_orphan(self) -> RunRecord | None:
        """Claim an active run that no live owner holds (its lease ran out); None if none."""
        ...

    async def publish(self, message: RelayMessage) -> None:
        """Deliver `message` to every subscriber of every replica (this one included)."""
        ...

    def subscribe(self) -> AsyncIterator[RelayMessage]: ...

    async def check(self) -> CheckResult: ...

    async def close(self) -> None: ...


class MemoryStateStore:
    """The store of a single replica: plain Python objects guarded by the event loop.

    Every method finishes without awaiting in its critical section, so each is atomic with
    respect to the other coroutines of the loop.
    """

    def __init__(self, *, history_limit: int, ttl_minutes: float, owner_id: str | None = None):
        self.owner_id = owner_id or make_owner_id()
        self._history_limit = history_limit
        self._ttl = timedelta(minutes=ttl_minutes)
        self._active: RunRecord | None = None
        self._finished: deque[RunRecord] = deque()
        self._logs: deque[LogLine] = deque(maxlen=RECENT_LOG_LINES)
        self._subscribers: set[asyncio.Queue[RelayMessage]] = set()

    async def acquire(self, run: RunRecord) -> AcquireResult:
        if self._active is not None:
            return AcquireResult(acquired=False, run=self._active.model_copy(deep=True))
        self._active = run.model_copy(update={"owner": self.owner_id}, deep=True)
        self._logs.clear()
        return AcquireResult(acquired=True, run=self._active.model_copy(deep=True))

    # Reads hand out shallow copies: every write stores a deep copy of its own and callers only
    # ever replace a record's fields, never change them in place, so a reader cannot touch
    # the stored record, and a status read does not pay for a deep copy.

    async def get_active(self) -> RunRecord | None:
        return None if self._active is None else self._active.model_copy()

    async def get_run(self, run_id: str) -> RunRecord | None:
        if self._active is not None and self._active.run_id == run_id:
            return self._active.model_copy()
        for run in self._retained():
            if run.run_id == run_id:
                return run.model_copy()
        return None

    async def update(self, run: RunRecord) -> bool:
        if self._active is None or self._active.run_id != run.run_id:
            return False
        self._active = run.model_copy(update={"owner": self._active.owner}, deep=True)
        return True

    async def finish(self, run: RunRecord) -> bool:
        if self._active is None or self._active.run_id != run.run_id:
            return False
        self._active = None
        self._finished.appendleft(run.model_copy(deep=True))
        while len(self._finished) > self._history_limit:
            self._finished.pop()
        return True

    async def history(self, limit: int) -> list[RunRecord]:
        return [run.model_copy() for run in self._retained()[:limit]]

    async def append_logs(self, run_id: str, lines: Sequence[LogLine]) -> None:
        if self._active is not None and self._active.run_id == run_id:
            self._logs.extend(lines)

    async def recent_logs(self, run_id: str) -> list[LogLine]:
        if self._active is not None and self._active.run_id == run_id:
            return list(self._logs)
        return []

    async def renew(self, run_id: str) -> bool:
        return self._active is not None and self._active.run_id == run_id

    async def release(self, run_id: str) -> bool:
        # Nobody else could claim it: the memory dies with this process.
        return False

    async def claim_orphan(self) -> RunRecord | None:
        # A single replica's memory dies with its runs: nothing is ever orphaned here.
        return None

    async def publish(self, message: RelayMessage) -> None:
        for queue in self._subscribers:
            queue.put_nowait(message)

    async def subscribe(self) -> AsyncIterator[RelayMessage]:
        # Unbounded on purpose: the only subscriber is the relay pump, which never awaits
        # anything but this queue, so the queue is drained as fast as it is filled.
        queue: asyncio.Queue[RelayMessage] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    async def check(self) -> CheckResult:
        return CheckResult(ok=True, detail="in-memory")

    async def close(self) -> None:
        self._subscribers.clear()

    def _retained(self) -> list[RunRecord]:
        cutoff = utcnow() - self._ttl
        while self._finished and (self._finished[-1].finished_at or cutoff) < cutoff:
            self._finished.pop()
        return [run for run in self._finished if (run.finished_at or cutoff) >= cutoff]
