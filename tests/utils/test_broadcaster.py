"""Fan-out rules: snapshot first, one shared text per frame, batches, the client cap, the
overflow rule; frames written straight into a ready sink, queued behind a busy one."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.streams import StreamReader

from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import utcnow
from nextflow_k8s_service.utils.broadcaster import (
    Broadcaster,
    Frame,
    Subscription,
    TooManyClientsError,
    websocket_text_message,
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
    assert got_second[1] == got_first[2]
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


class RecordingSink:
    """A `FrameSink` whose readiness the test sets; it records what was written to it."""

    def __init__(self) -> None:
        self.ready = True
        self.written: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self.on_ready: Callable[[], None] | None = None

    def write(self, data: bytes) -> None:
        assert self.ready and self.closed is None
        self.written.append(data)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def listen(self, on_ready: Callable[[], None] | None) -> None:
        self.on_ready = on_ready

    def drain(self) -> None:
        self.ready = True
        assert self.on_ready is not None
        self.on_ready()

    def seqs(self) -> list[int]:
        return [json.loads(_parse(data).data)["seq"] for data in self.written]


def _parse(wire: bytes) -> WsFrame:
    reader = StreamReader()
    reader.feed_data(wire)
    reader.feed_eof()
    parser = WsFrame.parse(reader.read_exact, mask=False, max_size=None, extensions=[])
    with pytest.raises(StopIteration) as parsed:
        next(parser)
    frame: WsFrame = parsed.value.value
    assert reader.at_eof(), "bytes left over after the frame"
    return frame


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 200_000])
def test_wire_bytes_are_one_text_frame_a_websocket_client_parses(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    frame = _parse(websocket_text_message(payload))
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.data == payload


async def test_a_ready_sink_is_written_at_once_with_the_same_bytes_for_everyone() -> None:
    metrics = Metrics()
    broadcaster = Broadcaster(max_clients=5, queue_frames=8, metrics=metrics)
    one, two = RecordingSink(), RecordingSink()
    async with broadcaster.subscribe(_snapshot, one), broadcaster.subscribe(_snapshot, two):
        assert one.on_ready is not None
        frame = _frame("log", 1)
        broadcaster.publish(frame)
        assert one.seqs() == two.seqs() == [0, 1]
        assert one.written[1] is two.written[1] is frame.wire
    assert one.on_ready is None and two.on_ready is None  # unsubscribing stops listening
    assert b"nks_frames_sent_total 4.0" in metrics.render()


async def test_a_busy_sink_queues_then_is_flushed_in_order_when_it_drains() -> None:
    broadcaster = Broadcaster(max_clients=5, queue_frames=8, metrics=Metrics())
    sink = RecordingSink()
    async with broadcaster.subscribe(_snapshot, sink) as client:
        sink.ready = False
        for n in range(1, 4):
            broadcaster.publish(_frame("log", n))
        assert client.pending == 3 and sink.seqs() == [0]
        sink.drain()
        assert client.pending == 0 and client.queued_bytes == 0
        broadcaster.publish(_frame("log", 4))
        assert sink.seqs() == [0, 1, 2, 3, 4]


async def test_a_frame_never_overtakes_the_queue_of_a_sink_that_is_ready_again() -> None:
    broadcaster = Broadcaster(max_clients=5, queue_frames=8, metrics=Metrics())
    sink = RecordingSink()
    async with broadcaster.subscribe(_snapshot, sink) as client:
        sink.ready = False
        broadcaster.publish(_frame("log", 1))
        sink.ready = True  # ready, but its drain callback has not run yet
        broadcaster.publish(_frame("log", 2))
        assert sink.seqs() == [0] and client.pending == 2
        sink.drain()
        assert sink.seqs() == [0, 1, 2]


async def test_a_lagging_sink_is_closed_with_1013_and_no_longer_listened_to() -> None:
    broadcaster = Broadcaster(max_clients=5, queue_frames=2, metrics=Metrics())
    slow, fast = RecordingSink(), RecordingSink()
    async with (
        broadcaster.subscribe(_snapshot, slow) as client,
        broadcaster.subscribe(_snapshot, fast),
    ):
        slow.ready = False
        for n in range(1, 5):
            broadcaster.publish(_frame("log", n))
        assert slow.closed == (1013, "client too slow") and client.pending == 0
        assert slow.on_ready is None
        assert fast.seqs() == [0, 1, 2, 3, 4] and fast.closed is None
        broadcaster.close_all()
        assert fast.closed == (1001, "server shutting down")
