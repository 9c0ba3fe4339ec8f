"""The EventLog contract: the same tests against MemoryEventLog and RedisEventLog."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from nextflow_k8s_service.errors import LeaseLostError
from nextflow_k8s_service.models import FrameType, RunEvent, RunRecord
from nextflow_k8s_service.services.event_log import Cursor
from tests.services.test_state_store_contract import final_events, finished, new_run

if TYPE_CHECKING:
    from tests.services.conftest import Backend, BackendFactory


def log_event(run: RunRecord, n: int, size: int = 10) -> RunEvent:
    line = {"timestamp": "2026-01-01T00:00:00+00:00", "source": "controller", "message": "x" * size}
    return RunEvent(type="log", run_id=run.run_id, data={"lines": [line], "n": n})


async def active_run(backend: Backend) -> RunRecord:
    return (await backend.store.acquire(new_run())).run


async def test_appends_get_increasing_ids_and_read_resumes_after_one(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend()
    run = await active_run(backend)
    events = [log_event(run, n) for n in range(5)]

    assert await backend.events.append(run.run_id, events[:2], epoch=run.epoch) == 2
    assert await backend.events.append(run.run_id, events[2:], epoch=run.epoch, floor=2) == 5

    entries = await backend.events.read(run.run_id)
    assert [(e.id, e.event) for e in entries] == list(enumerate(events, start=1))
    assert [e.id for e in await backend.events.read(run.run_id, after=3)] == [4, 5]
    assert await backend.events.read(new_run().run_id) == []


async def test_an_append_under_a_stale_epoch_is_refused_and_leaves_nothing(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend()
    run = await active_run(backend)

    with pytest.raises(LeaseLostError) as stale:
        await backend.events.append(run.run_id, [log_event(run, 1)], epoch=run.epoch + 1)
    assert not stale.value.data_lost
    stranger = new_run()
    with pytest.raises(LeaseLostError) as not_active:
        await backend.events.append(stranger.run_id, [log_event(stranger, 1)], epoch=run.epoch)
    assert not_active.value.data_lost

    assert await backend.events.read(run.run_id) == []
    assert await backend.events.read(stranger.run_id) == []


async def test_ids_continue_above_the_floor_of_a_writer_whose_log_was_lost(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend()
    run = await active_run(backend)

    last = await backend.events.append(run.run_id, [log_event(run, 1)], epoch=run.epoch, floor=41)

    assert last == 42
    assert [e.id for e in await backend.events.read(run.run_id)] == [42]


async def test_follow_waits_for_the_next_append(make_backend: BackendFactory) -> None:
    backend = make_backend()
    run = await active_run(backend)
    cursor = Cursor(markers=await backend.events.markers_tail(), run_id=run.run_id)
    empty = await backend.events.follow(cursor, block=0.05)
    assert empty.entries == [] and empty.markers == []

    reader = asyncio.create_task(backend.events.follow(cursor, block=5.0))
    await asyncio.sleep(0.1)  # the reader is blocked (nothing to await from it before then)
    assert not reader.done()
    await backend.events.append(run.run_id, [log_event(run, 1)], epoch=run.epoch)

    batch = await asyncio.wait_for(reader, 5.0)
    assert [e.id for e in batch.entries] == [1] and batch.markers == []


async def test_markers_tell_starts_ends_and_cancel_requests(make_backend: BackendFactory) -> None:
    backend = make_backend()
    tail = await backend.events.markers_tail()
    run = await active_run(backend)
    await backend.events.request_cancel(run.run_id)
    await backend.store.finish(finished(run), final_events(run))

    batch = await backend.events.follow(Cursor(markers=tail), block=1.0)

    assert [(m.kind, m.run_id) for m in batch.markers] == [
        ("start", run.run_id),
        ("cancel", run.run_id),
        ("end", run.run_id),
    ]
    later = await backend.events.follow(Cursor(markers=batch.markers[-1].id), block=0.05)
    assert later.markers == []


async def test_a_log_is_bounded_in_entries_keeping_the_newest(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend(max_entries=10)
    run = await active_run(backend)

    last = 0
    for n in range(25):
        last = await backend.events.append(
            run.run_id, [log_event(run, n)], epoch=run.epoch, floor=last
        )

    assert [e.id for e in await backend.events.read(run.run_id)] == list(range(16, 26))


async def test_a_log_is_bounded_in_bytes_keeping_the_newest(make_backend: BackendFactory) -> None:
    backend = make_backend(max_bytes=2_000)
    run = await active_run(backend)
    big = [log_event(run, n, size=500) for n in range(10)]

    last = await backend.events.append(run.run_id, big, epoch=run.epoch)

    kept = await backend.events.read(run.run_id)
    assert kept[-1].id == last == 10
    assert sum(len(e.event.model_dump_json()) for e in kept) <= 2_000
    assert 1 < len(kept) < 10


def skeleton_event(run: RunRecord, type_: FrameType, n: int) -> RunEvent:
    return RunEvent(type=type_, run_id=run.run_id, data={"n": n})


def many_lines(run: RunRecord, n: int, count: int) -> RunEvent:
    line = {"timestamp": "2026-01-01T00:00:00+00:00", "source": "GENERATE (1)", "message": "y"}
    return RunEvent(type="log", run_id=run.run_id, data={"lines": [line] * count, "n": n})


async def test_trimming_drops_only_log_entries_and_counts_their_lines(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend(max_entries=40, max_lines=30)
    run = await active_run(backend)
    kinds: list[FrameType] = ["status", "task", "progress", "error"]
    events = []
    for n in range(20):
        events.append(skeleton_event(run, kinds[n % len(kinds)], n))
        events.append(many_lines(run, n, 3))

    last = 0
    for event in events:  # one append each, as a run writes them
        last = await backend.events.append(run.run_id, [event], epoch=run.epoch, floor=last)
    await backend.store.finish(finished(run), final_events(run), floor=last)

    kept = await backend.events.read(run.run_id)
    skeleton = [e.event for e in kept if e.event.type != "log"]
    assert skeleton[:20] == events[0::2]  # every non-log entry survives, in order
    assert skeleton[-1].type == "complete"
    logs = [e for e in kept if e.event.type == "log"]
    kept_lines = sum(len(e.event.data["lines"]) for e in logs)
    dropped = await backend.events.dropped_lines(run.run_id)
    assert (kept_lines, dropped) == (30, 30)
    # The newest log entries are the ones kept.
    assert [e.event.data["n"] for e in logs] == list(range(10, 20))
    assert [e.id for e in kept] == sorted(e.id for e in kept)
    assert await backend.events.dropped_lines(new_run().run_id) == 0


async def test_a_log_of_skeleton_entries_alone_is_never_trimmed(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend(max_entries=5)
    run = await active_run(backend)
    events = [skeleton_event(run, "progress", n) for n in range(8)]

    await backend.events.append(run.run_id, events, epoch=run.epoch)

    assert [e.event for e in await backend.events.read(run.run_id)] == events
    assert await backend.events.dropped_lines(run.run_id) == 0


async def test_read_pages_with_a_limit(make_backend: BackendFactory) -> None:
    backend = make_backend()
    run = await active_run(backend)
    await backend.events.append(run.run_id, [log_event(run, n) for n in range(7)], epoch=run.epoch)

    assert [e.id for e in await backend.events.read(run.run_id, limit=3)] == [1, 2, 3]
    assert [e.id for e in await backend.events.read(run.run_id, after=3, limit=3)] == [4, 5, 6]
    assert [e.id for e in await backend.events.read(run.run_id, after=6, limit=3)] == [7]


async def test_a_run_pushed_off_the_history_is_forgotten_with_its_log(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend(history_limit=2)
    runs = []
    for _ in range(3):
        run = await active_run(backend)
        await backend.events.append(run.run_id, [log_event(run, 1)], epoch=run.epoch)
        await backend.store.finish(finished(run), final_events(run), floor=1)
        runs.append(run)

    assert await backend.store.get_run(runs[0].run_id) is None
    assert await backend.events.read(runs[0].run_id) == []
    for run in runs[1:]:
        assert await backend.store.get_run(run.run_id) is not None
        assert [e.id for e in await backend.events.read(run.run_id)] == [1, 2, 3]


async def test_trimming_finds_the_oldest_log_entry_behind_many_kept_ones(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend(max_lines=6)
    run = await active_run(backend)
    skeleton = [skeleton_event(run, "progress", n) for n in range(250)]  # > 2 scan pages
    last = await backend.events.append(run.run_id, skeleton, epoch=run.epoch)
    for n in range(5):
        last = await backend.events.append(
            run.run_id, [many_lines(run, n, 2)], epoch=run.epoch, floor=last
        )

    kept = await backend.events.read(run.run_id)
    assert [e.event for e in kept[:250]] == skeleton
    assert [e.event.data["n"] for e in kept[250:]] == [2, 3, 4]
    assert await backend.events.dropped_lines(run.run_id) == 4
