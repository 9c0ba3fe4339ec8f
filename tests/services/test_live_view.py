"""The live view: snapshots, ordering and stale events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from nextflow_k8s_service.models import RelayMessage, RunRecord, RunStatus, utcnow
from nextflow_k8s_service.services.live_view import LiveView


def _run(run_id: str, **changes: Any) -> RunRecord:
    return RunRecord(run_id=run_id, batch_count=2, executor="local", **changes)


def _event(
    run: RunRecord, seq: int, type_: Any, data: dict[str, Any], origin: str = "replica-a"
) -> RelayMessage:
    return RelayMessage(
        kind="event",
        run_id=run.run_id,
        origin=origin,
        event_seq=seq,
        type=type_,
        data=data,
        run=run.detail(),
    )


def _log(source: str, message: str) -> dict[str, Any]:
    return {"timestamp": utcnow().isoformat(), "source": source, "message": message}


def test_events_build_the_snapshot_and_duplicates_are_dropped() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.RUNNING)
    assert view.apply(_event(run, 1, "status", {"status": "running"})) is not None
    assert view.apply(_event(run, 2, "log", {"lines": [_log("controller", "hi")]})) is not None
    assert view.apply(_event(run, 2, "log", {"lines": [_log("controller", "hi")]})) is None
    snapshot = view.snapshot()
    assert snapshot.type == "snapshot" and snapshot.run_id == run.run_id
    assert '"active":true' in snapshot.text and '"message":"hi"' in snapshot.text


def test_frame_ids_increase_by_one_and_the_snapshot_carries_the_last_included() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.RUNNING)
    assert view.snapshot().id == 0
    first = view.apply(_event(run, 1, "status", {"status": "running"}))
    assert view.apply(_event(run, 1, "status", {"status": "running"})) is None  # no id used
    second = view.apply(_event(run, 2, "log", {"lines": [_log("controller", "hi")]}))
    assert first is not None and second is not None
    assert (first.id, second.id) == (1, 2)
    snapshot = view.snapshot()
    assert snapshot.id == 2 and snapshot.text.startswith('{"seq":2,')
    third = view.apply(_event(run, 3, "log", {"lines": [_log("controller", "more")]}))
    assert third is not None and third.id == 3 and third.text.startswith('{"seq":3,')


def test_a_late_event_of_an_older_run_never_replaces_the_newer_one() -> None:
    view = LiveView()
    old = _run("r000000000001", started_at=utcnow() - timedelta(seconds=5))
    new = _run("r000000000002", status=RunStatus.RUNNING)
    view.apply(_event(new, 1, "status", {"status": "running"}))
    assert view.apply(_event(old, 9, "log", {"lines": [_log("REPORT", "late")]})) is None
    assert view.run is not None and view.run.run_id == new.run_id
    assert list(view.logs) == []


def test_complete_ends_the_run_and_nothing_after_it_counts() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.SUCCEEDED)
    view.apply(_event(run, 1, "status", {"status": "succeeded"}))
    assert view.apply(_event(run, 2, "complete", {"status": "succeeded"})) is not None
    assert view.active is False
    assert view.apply(_event(run, 3, "log", {"lines": [_log("REPORT", "after")]})) is None


def test_seeding_keeps_newer_relayed_state() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.RUNNING)
    view.apply(_event(run, 5, "status", {"status": "running"}))
    view.seed(run.model_copy(update={"event_seq": 3, "owner": "replica-a"}), [], active=True)
    assert view.apply(_event(run, 5, "status", {"status": "running"})) is None
    view.seed(None, [], active=False)
    assert view.run is None and view.active is False


def test_a_replica_taking_a_run_over_starts_its_own_sequence() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.RUNNING)
    view.apply(_event(run, 40, "log", {"lines": [_log("controller", "on a")]}))
    taken = run.model_copy(update={"status": RunStatus.UNKNOWN})
    assert view.apply(_event(taken, 12, "status", {"status": "unknown"}, "replica-b")) is not None
    assert view.apply(_event(taken, 13, "complete", {"status": "unknown"}, "replica-b"))
    assert view.active is False


def test_one_snapshot_is_shared_until_the_state_changes() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.RUNNING)
    view.apply(_event(run, 1, "log", {"lines": [_log("controller", "one")]}))
    first = view.snapshot()
    assert view.snapshot() is first  # a crowd connecting at once costs one encoding
    view.apply(_event(run, 2, "log", {"lines": [_log("controller", "two")]}))
    second = view.snapshot()
    assert second is not first and '"message":"two"' in second.text and second.id == 2
    view.seed(None, [], active=False)
    assert view.snapshot().run_id is None
