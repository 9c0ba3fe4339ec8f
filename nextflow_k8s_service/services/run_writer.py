"""The owner's single path into the store for one run: the one place that appends its events.

A `RunWriter` writes, in order and under the run's lease epoch: the run's events (to the event
log), its record (to the state store), its lease renewals, and last its finish (record, final
`status` and `complete`, lock freed — one atomic step). `emit`, `save` and `finish` never wait;
the writer's task (`run()`, owned by the run's session) does the writing.

A store outage never ends a run: the writer keeps what it must write and retries with capped
backoff until the store answers, then flushes in order. What it keeps is bounded: beyond
`max_pending` events the oldest `log` and `progress` events are dropped (progress carries the
latest state anyway) and counted; status changes, errors and the finish are never dropped.

A refused write (`LeaseLostError`) is how the writer learns that it no longer owns the run. If
the store lost the run altogether (a restart without persistence) and knows of no other run,
the writer re-establishes it under a new epoch and goes on, its ids continuing where they were.
Otherwise another replica took the run over: `lost` is set and the writer stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from nextflow_k8s_service.errors import LeaseLostError, StoreUnavailableError
from nextflow_k8s_service.models import RunEvent, RunRecord
from nextflow_k8s_service.services.event_log import EventLog
from nextflow_k8s_service.services.state_store import StateStore
from nextflow_k8s_service.utils.backoff import Backoff
from nextflow_k8s_service.utils.tasks import raise_if_cancelling

logger = logging.getLogger(__name__)

MAX_PENDING = 2000
APPEND_BATCH = 50
RETRY = Backoff(base=0.1, cap=2.0)
WARN_EVERY = 20
_DROPPABLE = frozenset({"log", "progress"})


@dataclass(frozen=True, slots=True)
class _Finish:
    record: RunRecord
    events: list[RunEvent]


class RunWriter:
    """See the module docstring. `record` is the run's record as last saved; the writer keeps
    its `epoch` current (a re-established run gets a new one)."""

    def __init__(
        self,
        *,
        record: RunRecord,
        store: StateStore,
        events: EventLog,
        renew_every: float,
        floor: int = 0,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.record = record
        self._store = store
        self._events = events
        self._renew_every = renew_every
        self._max_pending = max_pending
        self._pending: deque[RunEvent] = deque()
        self._record_version = 0
        self._saved_version = 0
        self._final: _Finish | None = None
        self._wake = asyncio.Event()
        self.last_id = floor
        self.dropped = 0
        self.lost = asyncio.Event()
        self.finished = asyncio.Event()

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def emit(self, event: RunEvent) -> None:
        """Queue one event for the run's log; never waits."""
        self._pending.append(event)
        if len(self._pending) > self._max_pending:
            self._drop_one()
        self._wake.set()

    def save(self) -> None:
        """Queue a write of `record` (coalesced: only the latest is written)."""
        self._record_version += 1
        self._wake.set()

    def finish(self, events: list[RunEvent]) -> None:
        """Queue the finish: after everything pending, `record` (terminal) and `events`."""
        self._final = _Finish(self.record.model_copy(deep=True), events)
        self._wake.set()

    async def run(self) -> None:
        """Write until the finish is stored (`finished` set) or the run is lost (`lost` set).

        Cancelling it stops writing (what is pending stays unwritten)."""
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + self._renew_every
        failures = 0
        while True:
            raise_if_cancelling()
            try:
                if self._pending:
                    await self._append_some()
                elif self._record_version != self._saved_version:
                    version = self._record_version
                    await self._store.update(self.record)
                    self._saved_version = version
                elif self._final is not None:
                    final = self._final.record.model_copy(update={"epoch": self.record.epoch})
                    self.last_id = await self._store.finish(
                        final, self._final.events, floor=self.last_id
                    )
                    self.finished.set()
                    return
                elif loop.time() >= renew_at:
                    await self._store.renew(self.run_id, self.record.epoch)
                    renew_at = loop.time() + self._renew_every
                else:
                    self._wake.clear()
                    timeout = max(0.0, renew_at - loop.time())
                    try:
                        async with asyncio.timeout(timeout):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    continue
                if failures:
                    logger.info("run %s: the store answers again; writes resumed", self.run_id)
                failures = 0
            except StoreUnavailableError as exc:
                failures += 1
                level = logging.WARNING if failures % WARN_EVERY == 1 else logging.DEBUG
                logger.log(
                    level,
                    "run %s: store unavailable (%s); keeping %d events, retrying (attempt %d)",
                    self.run_id,
                    exc,
                    len(self._pending),
                    failures,
                )
                # A backoff between attempts: there is no event to await for a store's return.
                await asyncio.sleep(RETRY.delay(failures))
            except LeaseLostError as exc:
                if not await self._recover(exc):
                    logger.error("run %s: lost its lease (%s); stopping", self.run_id, exc)
                    self.lost.set()
                    return

    async def _append_some(self) -> None:
        batch = [self._pending[i] for i in range(min(APPEND_BATCH, len(self._pending)))]
        self.last_id = await self._events.append(
            self.run_id, batch, epoch=self.record.epoch, floor=self.last_id
        )
        for _ in batch:
            self._pending.popleft()
        if self.dropped:
            logger.warning(
                "run %s: %d events were dropped while the store was away", self.run_id, self.dropped
            )
            self.dropped = 0

    async def _recover(self, exc: LeaseLostError) -> bool:
        """Re-establish a run the store lost; False when it is another replica's now."""
        if not exc.data_lost:
            return False
        failures = 0
        while True:
            try:
                reestablished = await self._store.reestablish(self.record)
                break
            except StoreUnavailableError:
                failures += 1
                await asyncio.sleep(RETRY.delay(failures))
        if reestablished is None:
            return False
        self.record.epoch = reestablished.epoch
        self.record.owner = reestablished.owner
        return True

    def _drop_one(self) -> None:
        for index, event in enumerate(self._pending):
            if event.type in _DROPPABLE:
                del self._pending[index]
                self.dropped += 1
                return
