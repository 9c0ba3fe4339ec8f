"""Fan-out rules: snapshot first, seq per connection, the client cap, the overflow rule."""

from __future__ import annotations

import json

import pytest

from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import utcnow
from nextflow_k8s_service.utils.broadcaster import Broadcaster, Frame, TooManyClientsError


def _frame(kind: str, n: int) -> Frame:
    return Frame.build(kind, "r0123456789a", utcnow(), {"n": n})


def _snapshot() -> Frame:
    return Frame.build("snapshot", None, utcnow(), {"active": False})


async def test_snapshot_comes_first_and_seq_counts_per_connection() -> None:
    broadcaster = Broadcaster(max_clients=5, queue_frames=8, metrics=Metrics())
    async with broadcaster.subscribe(_snapshot) as first:
        broadcaster.publish(_frame("log", 1))
        async with broadcaster.subscribe(_snapshot) as second:
            broadcaster.publish(_frame("log", 2))
            got_first = [json.loads(await first.next_text() or "") for _ in range(3)]
            got_second = [json.loads(await second.next_text() or "") for _ in range(2)]
    assert [(f["seq"], f["type"]) for f in got_first] == [(1, "snapshot"), (2, "log"), (3, "log")]
    assert [(f["seq"], f["type"]) for f in got_second] == [(1, "snapshot"), (2, "log")]
    assert got_second[1]["data"] == {"n": 2}
    assert broadcaster.client_count == 0


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
            assert json.loads(await fast.next_text() or "")["type"] in {"snapshot", "log"}
        assert slow.closed and slow.close_reason == (1013, "client too slow")
        assert slow.closing.is_set()
        assert await slow.next_text() is None
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
    big = Frame.build("log", None, utcnow(), {"blob": "x" * 4000})
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
            assert await reader.next_text() is not None
        assert not reader.closed
