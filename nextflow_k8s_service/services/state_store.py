"""The run lock and the run records: the StateStore protocol and the in-memory store.

The store holds at most one *active* run (the lock, with a lease) and the records of finished
runs (the history, bounded in count and age). Every acquire or claim of the lock takes a new,
increasing *epoch*; every write of the owner (`update`, `finish`, `renew`, and the event log's
appends) names its epoch and is refused with `LeaseLostError` unless that epoch still holds the
run — checked in the same atomic step as the write. A refused write is how a stale owner learns
that it lost the run.

`finish` records the run, appends its final events (`status`, `complete`) to the run's event log
and frees the lock in one atomic step, so a run gets exactly one `complete` whoever finishes it.

The Redis implementation lives in `redis_store.py`; both pass the same contract tests.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from nextflow_k8s_service.errors import LeaseLostError
from nextflow_k8s_service.models import CheckResult, RunEvent, RunRecord, utcnow
from nextflow_k8s_service.services.event_log import MemoryEventLog


@dataclass(frozen=True, slots=True)
class AcquireResult:
    """Outcome of `acquire`: `run` is the new run when `acquired`, else the one in progress."""

    acquired: bool
    run: RunRecord


def make_owner_id() -> str:
    """Identity of this process as a lock owner: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class StateStore(Protocol):
    """The run lock and run records shared by the replicas of the service.

    Raises `StoreUnavailableError` when the backend cannot be reached (never a client
    library's own exception) and `LeaseLostError` when a fenced write is refused.
    """

    owner_id: str

    async def acquire(self, run: RunRecord) -> AcquireResult:
        """Make `run` the active run if there is none, owned by this process under a new epoch
        (atomic); appends its `start` marker. Raises `StartsPausedError` while the store
        recovers from losing its data (see `check_generation`)."""
        ...

    async def reestablish(self, run: RunRecord) -> RunRecord | None:
        """Put back a run the store lost (a restart without persistence), under a new epoch;
        None when the store knows the run finished or another run is active."""
        ...

    async def get_active(self) -> RunRecord | None: ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The active run or a remembered finished run with this id."""
        ...

    async def update(self, run: RunRecord) -> None:
        """Replace the active run's record under lease `run.epoch`. Raises `LeaseLostError`."""
        ...

    async def finish(self, run: RunRecord, events: Sequence[RunEvent], *, floor: int = 0) -> int:
        """Under lease `run.epoch`: append `events` to the run's event log (ids above `floor`),
        record `run` (terminal) in the history and free the lock, atomically; the id of the
        last event. Raises `LeaseLostError`."""
        ...

    async def history(self, limit: int) -> list[RunRecord]:
        """Finished runs, newest first, at most `limit`, none older than the retention."""
        ...

    async def renew(self, run_id: str, epoch: int) -> None:
        """Extend the lease of `epoch` on the active run. Raises `LeaseLostError`."""
        ...

    async def release(self, run_id: str, epoch: int) -> bool:
        """Give up lease `epoch` on the active run, leaving the run active for another replica
        to claim at once (graceful shutdown with runs that outlive the process)."""
        ...

    async def claim_orphan(self) -> RunRecord | None:
        """Claim an active run that no live owner holds (its lease ran out) under a new epoch;
        None if none."""
        ...

    async def check_generation(self) -> None:
        """Notice a store that lost its data since this replica last looked; starting runs is
        then refused for one lease so that the owner of a run re-establishes it first."""
        ...

    async def check(self) -> CheckResult: ...

    async def close(self) -> None: ...


class MemoryStateStore:
    """The store of a single replica: plain Python objects guarded by the event loop.

    Every method finishes without awaiting in its critical section, so each is atomic with
    respect to the other coroutines of the loop. It keeps `events` (the memory event log)
    in step: the lease holder it fences appends with, and the logs of remembered runs.
    """

    def __init__(
        self,
        *,
        history_limit: int,
        ttl_minutes: float,
        owner_id: str | None = None,
        events: MemoryEventLog | None = None,
    ):
        self.owner_id = owner_id or make_owner_id()
        self.events = events or MemoryEventLog()
        self._history_limit = history_limit
        self._ttl = timedelta(minutes=ttl_minutes)
        self._active: RunRecord | None = None
        self._finished: deque[RunRecord] = deque()
        self._epoch = 0

    async def acquire(self, run: RunRecord) -> AcquireResult:
        if self._active is not None:
            return AcquireResult(acquired=False, run=self._active.model_copy(deep=True))
        return AcquireResult(acquired=True, run=self._take(run))

    async def reestablish(self, run: RunRecord) -> RunRecord | None:
        if self._active is not None or any(r.run_id == run.run_id for r in self._finished):
            return None
        return self._take(run)

    def _take(self, run: RunRecord) -> RunRecord:
        self._epoch = max(self._epoch, run.epoch) + 1
        self._active = run.model_copy(update={"owner": self.owner_id, "epoch": self._epoch})
        self.events.set_holder((run.run_id, self._epoch))
        self.events.add_marker("start", run.run_id)
        return self._active.model_copy(deep=True)

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

    async def update(self, run: RunRecord) -> None:
        active = self._fenced(run.run_id, run.epoch)
        self._active = run.model_copy(update={"owner": active.owner}, deep=True)

    async def finish(self, run: RunRecord, events: Sequence[RunEvent], *, floor: int = 0) -> int:
        self._fenced(run.run_id, run.epoch)
        last = self.events.append_unfenced(run.run_id, events, floor)
        self._active = None
        self.events.set_holder(None)
        self._finished.appendleft(run.model_copy(deep=True))
        while len(self._finished) > self._history_limit:
            self._finished.pop()
        self.events.add_marker("end", run.run_id)
        self._forget_logs()
        return last

    async def history(self, limit: int) -> list[RunRecord]:
        return [run.model_copy() for run in self._retained()[:limit]]

    async def renew(self, run_id: str, epoch: int) -> None:
        self._fenced(run_id, epoch)

    async def release(self, run_id: str, epoch: int) -> bool:
        # Nobody else could claim it: the memory dies with this process.
        return False

    async def claim_orphan(self) -> RunRecord | None:
        # A single replica's memory dies with its runs: nothing is ever orphaned here.
        return None

    async def check_generation(self) -> None:
        # The memory cannot be lost without this process.
        return None

    async def check(self) -> CheckResult:
        return CheckResult(ok=True, detail="in-memory")

    async def close(self) -> None:
        return None

    def _fenced(self, run_id: str, epoch: int) -> RunRecord:
        if self._active is None or self._active.run_id != run_id:
            raise LeaseLostError(f"run {run_id} is not the active run", data_lost=True)
        if self._active.epoch != epoch:
            raise LeaseLostError(f"run {run_id} is held under another epoch", data_lost=False)
        return self._active

    def _retained(self) -> list[RunRecord]:
        cutoff = utcnow() - self._ttl
        while self._finished and (self._finished[-1].finished_at or cutoff) < cutoff:
            self._finished.pop()
        return [run for run in self._finished if (run.finished_at or cutoff) >= cutoff]

    def _forget_logs(self) -> None:
        keep = {run.run_id for run in self._retained()}
        if self._active is not None:
            keep.add(self._active.run_id)
        self.events.forget(keep)
