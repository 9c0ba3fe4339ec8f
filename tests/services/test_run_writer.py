"""The run writer: ordered, fenced writes that ride out a store outage with a bounded buffer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nextflow_k8s_service.errors import StoreUnavailableError
from nextflow_k8s_service.models import RunEvent, RunRecord, RunStatus
from nextflow_k8s_service.services.event_log import MemoryEventLog
from nextflow_k8s_service.services.run_writer import RunWriter
from nextflow_k8s_service.services.state_store import MemoryStateStore
from tests.services.test_state_store_contract import new_run


class OutageLog(MemoryEventLog):
    """The memory log, unreachable while `down` is set (the seam: appends fail as Redis's
    would, with `StoreUnavailableError`); counts the failed attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refused = asyncio.Event()

    async def append(
        self, run_id: str, events: Sequence[RunEvent], *, epoch: int, floor: int = 0
    ) -> int:
        if self.down:
            self.refused.set()
            raise StoreUnavailableError("redis append failed: connection refused")
        return await super().append(run_id, events, epoch=epoch, floor=floor)


def event(run: RunRecord, type_: str, n: int) -> RunEvent:
    return RunEvent(type=type_, run_id=run.run_id, data={"n": n})  # type: ignore[arg-type]


async def test_an_outage_is_ridden_out_and_the_buffer_keeps_every_status() -> None:
    log = OutageLog()
    store = MemoryStateStore(history_limit=5, ttl_minutes=30, events=log)
    run = (await store.acquire(new_run())).run
    writer = RunWriter(record=run, store=store, events=log, renew_every=60, max_pending=100)
    log.down = True
    task = asyncio.create_task(writer.run())
    try:
        sent = []
        for n in range(300):
            kind = "status" if n % 50 == 0 else "log"
            sent.append(event(run, kind, n))
            writer.emit(sent[-1])
        await log.refused.wait()
        assert not task.done(), "the writer gave up on an outage"

        log.down = False
        run.status = RunStatus.SUCCEEDED
        writer.finish([event(run, "complete", 300)])
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()

    entries = await log.read(run.run_id)
    kept = [e.event.data["n"] for e in entries]
    assert kept == sorted(kept), "written out of order"
    assert len(entries) == 101, "the buffer was not bounded (or lost more than its overflow)"
    assert [n for n in kept if n % 50 == 0] == [0, 50, 100, 150, 200, 250, 300], "a status lost"
    assert kept[-1] == 300 and entries[-1].event.type == "complete"
    assert [e.id for e in entries] == list(range(1, 102))
    assert writer.finished.is_set() and not writer.lost.is_set()
    finished = await store.get_run(run.run_id)
    assert finished is not None and finished.status == RunStatus.SUCCEEDED


async def test_a_writer_whose_lease_was_taken_over_stops_without_writing() -> None:
    log = MemoryEventLog()
    store = MemoryStateStore(history_limit=5, ttl_minutes=30, events=log)
    run = (await store.acquire(new_run())).run
    stale = run.model_copy(update={"epoch": run.epoch - 1})
    writer = RunWriter(record=stale, store=store, events=log, renew_every=60)

    writer.emit(event(run, "log", 1))
    await asyncio.wait_for(writer.run(), 5)

    assert writer.lost.is_set() and not writer.finished.is_set()
    assert await log.read(run.run_id) == []
    assert await store.get_active() == run


async def test_a_writer_re_establishes_a_run_the_store_lost_and_its_ids_go_on() -> None:
    log = MemoryEventLog()
    store = MemoryStateStore(history_limit=5, ttl_minutes=30, events=log)
    run = new_run().model_copy(update={"epoch": 3})  # the store knows nothing of it
    writer = RunWriter(record=run, store=store, events=log, renew_every=60, floor=17)

    writer.emit(event(run, "log", 1))
    writer.finish([event(run, "complete", 2)])
    await asyncio.wait_for(writer.run(), 5)

    assert writer.finished.is_set() and writer.record.epoch > 3
    assert [e.id for e in await log.read(run.run_id)] == [18, 19]
