"""In-memory stand-ins a service test drives step by step: an executor fed from a queue per
run, and a memory store whose outages the test switches on and off.

`QueueExecutor` implements the `Executor` protocol for real (its runs live in queues, `events`
yields what the test pushes, `cancel` confirms like a real executor unless told not to), so
the services above it run unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from nextflow_k8s_service.errors import StoreUnavailableError
from nextflow_k8s_service.executors.base import ExecutorEvent, RunSpec, StatusChanged
from nextflow_k8s_service.models import CheckResult, RunEvent, RunRecord, RunStatus
from nextflow_k8s_service.services.event_log import Cursor, FollowBatch, LogEntry, MemoryEventLog
from nextflow_k8s_service.services.state_store import AcquireResult, MemoryStateStore


class QueueExecutor:
    """An executor whose runs are queues of events the test pushes (`push`, `stop_reporting`).

    `start_error` makes `start` raise it (`cancel_error`: `cancel`); `confirm_cancel=False`
    makes `cancel` a no-op (an executor that hangs); `adoptable` holds the runs `adopt` finds
    (with `adopt_error` raised instead when set); `orphans` what
    `orphan_jobs` lists (`orphans_error` raised instead when set); `check_gate`, when set,
    holds `check` (`orphans_gate`: `orphan_jobs`) until it is set (a backend that does
    not answer).
    """

    name = "queue"

    def __init__(self, *, runs_outlive_service: bool = False) -> None:
        self.runs_outlive_service = runs_outlive_service
        self.started: list[RunSpec] = []
        self.cancelled: list[str] = []
        self.adopted: list[tuple[str, datetime | None]] = []
        self.cancel_error: Exception | None = None
        self.cancel_asked = asyncio.Event()
        self.start_error: BaseException | None = None
        self.confirm_cancel = True
        self.adoptable: set[str] = set()
        self.adopt_error: Exception | None = None
        self.orphans: list[str] = []
        self.orphans_error: Exception | None = None
        self.check_gate: asyncio.Event | None = None
        self.orphans_gate: asyncio.Event | None = None
        self.closed = False
        self._queues: dict[str, asyncio.Queue[ExecutorEvent | None]] = {}
        self._following: dict[str, asyncio.Event] = {}

    def _queue(self, run_id: str) -> asyncio.Queue[ExecutorEvent | None]:
        return self._queues.setdefault(run_id, asyncio.Queue())

    def following(self, run_id: str) -> asyncio.Event:
        """Set once somebody iterates `events(run_id)`."""
        return self._following.setdefault(run_id, asyncio.Event())

    def push(self, run_id: str, *events: ExecutorEvent) -> None:
        for event in events:
            self._queue(run_id).put_nowait(event)

    def stop_reporting(self, run_id: str) -> None:
        """End `events(run_id)` without a terminal status (the executor lost track)."""
        self._queue(run_id).put_nowait(None)

    async def start(self, spec: RunSpec) -> None:
        await asyncio.sleep(0)  # a round trip to the backend
        if self.start_error is not None:
            raise self.start_error
        self.started.append(spec)
        self._queue(spec.run_id)

    async def events(self, run_id: str) -> AsyncIterator[ExecutorEvent]:
        queue = self._queue(run_id)
        self.following(run_id).set()
        while True:
            event = await queue.get()
            if event is None:
                return
            yield event
            if isinstance(event, StatusChanged) and event.status.terminal:
                return

    async def cancel(self, run_id: str) -> None:
        self.cancel_asked.set()
        if self.cancel_error is not None:
            raise self.cancel_error
        self.cancelled.append(run_id)
        if self.confirm_cancel:
            self.push(run_id, StatusChanged(RunStatus.CANCELLED, "stopped"))

    async def adopt(self, spec: RunSpec, *, logs_since: datetime | None = None) -> bool:
        if self.adopt_error is not None:
            raise self.adopt_error
        if spec.run_id not in self.adoptable:
            return False
        self.adopted.append((spec.run_id, logs_since))
        self._queue(spec.run_id)
        return True

    async def check(self) -> CheckResult:
        if self.check_gate is not None:
            await self.check_gate.wait()
        return CheckResult(ok=True, detail="queue")

    async def orphan_jobs(self, claimed: set[str]) -> list[str]:
        if self.orphans_gate is not None:
            await self.orphans_gate.wait()
        if self.orphans_error is not None:
            raise self.orphans_error
        return [run_id for run_id in self.orphans if run_id not in claimed]

    async def close(self) -> None:
        self.closed = True


class Outage:
    """The switch of a store outage: while `down`, every call raises `StoreUnavailableError`;
    `refused` is set at each refusal (a test awaits it instead of guessing a delay)."""

    def __init__(self) -> None:
        self.down = False
        self.refusals = 0
        self.refused = asyncio.Event()

    async def round_trip(self) -> None:
        # Every call leaves the event loop once, as a call over the network does.
        await asyncio.sleep(0)
        if self.down:
            self.refusals += 1
            self.refused.set()
            raise StoreUnavailableError("the store is down (test outage)")

    async def refusal(self) -> None:
        """Wait for the next refusal."""
        self.refused.clear()
        await self.refused.wait()


class FlakyEventLog(MemoryEventLog):
    """The memory event log behind an `Outage` switch."""

    def __init__(self, outage: Outage) -> None:
        super().__init__()
        self.outage = outage

    async def append(
        self, run_id: str, events: Sequence[RunEvent], *, epoch: int, floor: int = 0
    ) -> int:
        await self.outage.round_trip()
        return await super().append(run_id, events, epoch=epoch, floor=floor)

    async def read(self, run_id: str, after: int = 0) -> list[LogEntry]:
        await self.outage.round_trip()
        return await super().read(run_id, after)

    async def follow(self, cursor: Cursor, *, block: float) -> FollowBatch:
        await self.outage.round_trip()
        return await super().follow(cursor, block=block)

    async def markers_tail(self) -> str:
        await self.outage.round_trip()
        return await super().markers_tail()

    async def request_cancel(self, run_id: str) -> None:
        await self.outage.round_trip()
        await super().request_cancel(run_id)


class FlakyStore(MemoryStateStore):
    """The memory state store (with a `FlakyEventLog`) behind one `Outage` switch.

    `orphan` is what the next `claim_orphan` hands out (a run another replica left behind),
    once; `released` lists the leases handed back; `supersede(run_id)` takes the active run
    over under a new epoch, as a replica that claimed it would; `lose_data()` is a restart
    without persistence.
    """

    def __init__(self, *, history_limit: int = 5) -> None:
        self.outage = Outage()
        super().__init__(
            history_limit=history_limit, ttl_minutes=30, events=FlakyEventLog(self.outage)
        )
        self.orphan: RunRecord | None = None
        self.released: list[tuple[str, int]] = []

    async def acquire(self, run: RunRecord) -> AcquireResult:
        await self.outage.round_trip()
        return await super().acquire(run)

    async def reestablish(self, run: RunRecord) -> RunRecord | None:
        await self.outage.round_trip()
        return await super().reestablish(run)

    async def get_active(self) -> RunRecord | None:
        await self.outage.round_trip()
        return await super().get_active()

    async def get_run(self, run_id: str) -> RunRecord | None:
        await self.outage.round_trip()
        return await super().get_run(run_id)

    async def update(self, run: RunRecord) -> None:
        await self.outage.round_trip()
        await super().update(run)

    async def finish(self, run: RunRecord, events: Sequence[RunEvent], *, floor: int = 0) -> int:
        await self.outage.round_trip()
        return await super().finish(run, events, floor=floor)

    async def history(self, limit: int) -> list[RunRecord]:
        await self.outage.round_trip()
        return await super().history(limit)

    async def renew(self, run_id: str, epoch: int) -> None:
        await self.outage.round_trip()
        await super().renew(run_id, epoch)

    async def release(self, run_id: str, epoch: int) -> bool:
        await self.outage.round_trip()
        self.released.append((run_id, epoch))
        return await super().release(run_id, epoch)

    async def claim_orphan(self) -> RunRecord | None:
        await self.outage.round_trip()
        orphan, self.orphan = self.orphan, None
        return orphan

    async def check_generation(self) -> None:
        await self.outage.round_trip()

    async def check(self) -> CheckResult:
        if self.outage.down:
            return CheckResult(ok=False, detail="the store is down (test outage)")
        return await super().check()

    def lose_data(self) -> None:
        """The store restarts without its data: no active run, no history, no logs."""
        self._active = None
        self._finished.clear()
        self.events.set_holder(None)
        self.events.forget(set())

    def supersede(self, run_id: str) -> int:
        """Another replica claims the active run `run_id`: a new epoch; returns it."""
        active = self._active
        assert active is not None and active.run_id == run_id
        self._epoch += 1
        self._active = active.model_copy(update={"owner": "other-replica", "epoch": self._epoch})
        self.events.set_holder((run_id, self._epoch))
        return self._epoch
