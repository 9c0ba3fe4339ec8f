"""Fan-out rules: snapshot first, one shared text per frame, batches, the client cap, the
overflow rule."""

from __future__ import annotations

import json

import pytest

from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import utcnow
from nextflow_k8s_service.utils.broadcaster import (
    Broadcaster,
    Frame,
    Subscription,
    TooManyClientsError,
)


def _frame(kind: str, n: int) -> Frame:
    return Frame.build(kind, "r0123456789a", utcnow(), {"n": n}, event_id=n)


async def _text(subscription: Subscription) -> str:
    frame = await subscription.next_frame()
    return "" if frame is None else frame.text


def _snapshot() -> Frame:
    return Frame.build("snapshot", None, utcnow(), {"active": False}, event_id=0)


async def test_snapshot_comes_first_and_every_client_gets_the_same_frame() -> None:
    broadcaster = Broadcaster(max_clients=5, queue_frames=8, metrics=Metrics())
    async with broadcaster.subscribe(_snapshot) as first:
        broadcaster.publish(_frame("log", 1))
        async with broadcaster.subscribe(_snapshot) as second:
            broadcaster.publish(_frame("log", 2))
            got_first = [await _text(first) for _ in range(3)]
            got_second = [await _text(second) for _ in range(2)]
    decoded = [json.loads(text) for text in got_first]
    assert [(f["seq"], f["type"]) for f in decoded] == [(0, "snapshot"), (1, "log"), (2, "log")]
    assert json.loads(got_second[0])["type"] == "snapshot"
    assert got_second[1] is got_first[2]  # encoded once, the very same string for everyone
    assert broadcaster.client_count == 0


async def test_a_writer_takes_every_queued_frame_at_once() -> None:
    broadcaster = Broadcaster(max_clients=5, queue_frames=8, metrics=Metrics())
    async with broadcaster.subscribe(_snapshot) as client:
        for n in range(1, 5):
            broadcaster.publish(_frame("log", n))
        batch = await client.next_batch(limit=3)
        assert batch is not None and [json.loads(t)["seq"] for t in batch] == [0, 1, 2]
        rest = await client.next_batch()
        assert rest is not None and [json.loads(t)["seq"] for t in rest] == [3, 4]
        assert client.queued_bytes == 0
        broadcaster.publish(_frame("log", 5))
        client.close(1001, "bye")
        assert await client.next_batch() is None


async def test_the_client_cap_is_enforced() -> None:
    broadcaster = Broadcaster(max_clients=1, queue_frames=8, metrics=Metrics())
    async with broadcaster.subscribe(_snapshot):
        with pytest.raises(TooManyClientsError):
            async with broadcaster.subscribe(_snapshot):
                pass
    async with broadcaster.subscribe(_snapshot):
        assert broadcaster.client_count == 1


async def test_a_lagging_client_is_closed_with_1013_and_its_queue_freed() -> None:
    metrics = Metrics()
    broadcaster = Broadcaster(max_clients=5, queue_frames=4, metrics=metrics)
    async with (
        broadcaster.subscribe(_snapshot) as slow,
        broadcaster.subscribe(_snapshot) as fast,
    ):
        for n in range(10):
            broadcaster.publish(_frame("log", n))
            assert json.loads(await _text(fast))["type"] in {"snapshot", "log"}
        assert slow.closed and slow.close_reason == (1013, "client too slow")
        assert slow.closing.is_set()
        assert await slow.next_frame() is None
        assert not fast.closed
    assert b'nks_websocket_rejected_total{reason="too_slow"} 1.0' in metrics.render()


async def test_close_all_closes_present_and_future_clients() -> None:
    broadcaster = Broadcaster(max_clients=5, queue_frames=4, metrics=Metrics())
    async with broadcaster.subscribe(_snapshot) as present:
        broadcaster.close_all()
        assert present.close_reason == (1001, "server shutting down")
        async with broadcaster.subscribe(_snapshot) as late:
            assert late.close_reason == (1001, "server shutting down")
    await broadcaster.wait_for_clients(lambda count: count == 0)


async def test_a_client_is_also_bounded_in_bytes() -> None:
    broadcaster = Broadcaster(
        max_clients=5, queue_frames=1000, queue_bytes=10_000, metrics=Metrics()
    )
    big = Frame.build("log", None, utcnow(), {"blob": "x" * 4000}, event_id=1)
    async with broadcaster.subscribe(_snapshot) as slow:
        broadcaster.publish(big)
        broadcaster.publish(big)
        assert not slow.closed and slow.queued_bytes > 8000
        broadcaster.publish(big)
        assert slow.close_reason == (1013, "client too slow")
        assert slow.queued_bytes == 0
    async with broadcaster.subscribe(_snapshot) as reader:
        for _ in range(10):
            broadcaster.publish(big)
            assert await reader.next_frame() is not None
        assert not reader.closed
