"""RunArchive.follow: the seam between the recorded backlog and the live fan-out (no gap, no
repeat, the same text either way), and a follower that falls behind is ended."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import RunEvent, RunRecord, RunStatus, utcnow
from nextflow_k8s_service.services.event_log import LogEntry
from nextflow_k8s_service.services.run_archive import ArchivedFrame, RunArchive, encode
from nextflow_k8s_service.services.state_store import MemoryStateStore
from nextflow_k8s_service.utils.broadcaster import Broadcaster, Frame
from tests.services.test_state_store_contract import new_run


def event(run: RunRecord, n: int) -> RunEvent:
    line = {"timestamp": "2026-01-01T00:00:00+00:00", "source": "GENERATE (1)", "message": "é"}
    return RunEvent(type="log", run_id=run.run_id, data={"lines": [line], "n": n})


def published(entry: LogEntry) -> Frame:
    """The frame the relay publishes for `entry` (as `LiveView.apply` builds it)."""
    e = entry.event
    return Frame.build(e.type, e.run_id, e.timestamp, e.data, entry.id)


async def setup(queue_frames: int = 64) -> tuple[MemoryStateStore, RunRecord, Broadcaster]:
    store = MemoryStateStore(history_limit=5, ttl_minutes=30)
    run = (await store.acquire(new_run())).run
    broadcaster = Broadcaster(max_clients=5, queue_frames=queue_frames, metrics=Metrics())
    return store, run, broadcaster


async def test_live_frames_continue_the_backlog_without_a_gap_or_a_repeat() -> None:
    store, run, broadcaster = await setup()
    archive = RunArchive(events=store.events, store=store, broadcaster=broadcaster)
    events = [event(run, n) for n in range(1, 7)]
    await store.events.append(run.run_id, events[:3], epoch=run.epoch)
    follow: AsyncIterator[ArchivedFrame] = archive.follow(run.run_id)
    backlog = [await anext(follow) for _ in range(3)]
    assert broadcaster.client_count == 0  # the backlog is read before subscribing

    # Appended, not yet relayed: the read after subscribing finds it.
    await store.events.append(run.run_id, events[3:4], epoch=run.epoch, floor=3)
    caught_up = await anext(follow)
    assert broadcaster.client_count == 1
    # The relay now publishes 3 and 4 (already sent: skipped), then 5 and the `complete`.
    complete = RunEvent(type="complete", run_id=run.run_id, data={"status": "succeeded"})
    await store.events.append(run.run_id, [events[4], complete], epoch=run.epoch, floor=4)
    entries = await store.events.read(run.run_id)
    broadcaster.publish(Frame.build("snapshot", None, run.started_at, {}))
    for entry in entries[2:]:
        broadcaster.publish(published(entry))
    live = [frame async for frame in follow]

    assert [f.id for f in [*backlog, caught_up, *live]] == [1, 2, 3, 4, 5, 6]
    # The same text whether it came from the log or from the fan-out.
    assert [f.text for f in [*backlog, caught_up, *live]] == [encode(e).text for e in entries]
    assert live[-1].type == "complete"
    assert broadcaster.client_count == 0  # ending the follow unsubscribes


async def test_a_follower_that_falls_behind_is_ended() -> None:
    store, run, broadcaster = await setup(queue_frames=8)
    archive = RunArchive(events=store.events, store=store, broadcaster=broadcaster)
    await store.events.append(run.run_id, [event(run, 1)], epoch=run.epoch)
    follow = archive.follow(run.run_id)
    assert (await anext(follow)).id == 1
    await store.events.append(run.run_id, [event(run, 2)], epoch=run.epoch, floor=1)
    assert (await anext(follow)).id == 2  # subscribed

    entries = [LogEntry(id=n, event=event(run, n)) for n in range(3, 40)]
    for entry in entries:  # the follower reads none of them
        broadcaster.publish(published(entry))
    rest = [frame async for frame in follow]

    assert rest == []  # its queue was dropped and it ended, without a `complete`
    assert broadcaster.client_count == 0


async def test_following_a_finished_run_replays_it_and_ends() -> None:
    store, run, broadcaster = await setup()
    archive = RunArchive(events=store.events, store=store, broadcaster=broadcaster)
    await store.events.append(run.run_id, [event(run, 1)], epoch=run.epoch)
    done = run.model_copy(update={"status": RunStatus.FAILED, "finished_at": utcnow()})
    complete = RunEvent(type="complete", run_id=run.run_id, data={"status": "failed"})
    await store.finish(done, [complete], floor=1)

    frames = [frame async for frame in archive.follow(run.run_id)]
    resumed = [frame async for frame in archive.follow(run.run_id, after=2)]

    assert [(f.id, f.type) for f in frames] == [(1, "log"), (2, "complete")]
    assert resumed == []
    assert broadcaster.client_count == 0
