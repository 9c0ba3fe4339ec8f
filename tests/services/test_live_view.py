"""The live view: snapshots from the event log, ordering by id, and stale entries."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from nextflow_k8s_service.models import RunEvent, RunRecord, RunStatus, utcnow
from nextflow_k8s_service.services.event_log import LogEntry
from nextflow_k8s_service.services.live_view import LiveView


def _run(run_id: str, **changes: Any) -> RunRecord:
    return RunRecord(run_id=run_id, batch_count=2, executor="local", **changes)


def _entry(run: RunRecord, entry_id: int, type_: Any, data: dict[str, Any]) -> LogEntry:
    event = RunEvent(type=type_, run_id=run.run_id, data=data, run=run.detail())
    return LogEntry(id=entry_id, event=event)


def _log(source: str, message: str) -> dict[str, Any]:
    return {"timestamp": utcnow().isoformat(), "source": source, "message": message}


def test_entries_build_the_snapshot_and_duplicates_are_dropped() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.RUNNING)
    frame = view.apply(_entry(run, 1, "status", {"status": "running"}))
    assert frame is not None and json.loads(frame.text)["id"] == 1
    assert view.apply(_entry(run, 2, "log", {"lines": [_log("controller", "hi")]})) is not None
    assert view.apply(_entry(run, 2, "log", {"lines": [_log("controller", "hi")]})) is None
    assert view.apply(_entry(run, 1, "status", {"status": "running"})) is None
    snapshot = json.loads(view.snapshot().text)
    assert snapshot["type"] == "snapshot" and snapshot["run_id"] == run.run_id
    assert snapshot["id"] == 2, "a snapshot names the last entry it reflects"
    assert snapshot["data"]["active"] is True
    assert [line["message"] for line in snapshot["data"]["logs"]] == ["hi"]


def test_frame_ids_increase_by_one_and_the_snapshot_carries_the_last_included() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.RUNNING)
    assert view.snapshot().id == 0 and view.snapshot().text.startswith('{"seq":0,')
    first = view.apply(_entry(run, 1, "status", {"status": "running"}))
    assert view.apply(_entry(run, 1, "status", {"status": "running"})) is None  # no id used
    second = view.apply(_entry(run, 2, "log", {"lines": [_log("controller", "hi")]}))
    assert first is not None and second is not None
    assert (first.id, second.id) == (1, 2)
    snapshot = view.snapshot()
    assert snapshot.id == 2 and snapshot.text.startswith('{"seq":2,')
    third = view.apply(_entry(run, 3, "log", {"lines": [_log("controller", "more")]}))
    assert third is not None and third.id == 3 and third.text.startswith('{"seq":3,')


def test_a_late_entry_of_an_older_run_never_replaces_the_newer_one() -> None:
    view = LiveView()
    old = _run("r000000000001", started_at=utcnow() - timedelta(seconds=5))
    new = _run("r000000000002", status=RunStatus.RUNNING)
    view.apply(_entry(new, 1, "status", {"status": "running"}))
    assert view.apply(_entry(old, 9, "log", {"lines": [_log("REPORT", "late")]})) is None
    assert view.run is not None and view.run.run_id == new.run_id
    assert list(view.logs) == []


def test_complete_ends_the_run_and_nothing_after_it_counts() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.SUCCEEDED)
    view.apply(_entry(run, 1, "status", {"status": "succeeded"}))
    assert view.apply(_entry(run, 2, "complete", {"status": "succeeded"})) is not None
    assert view.active is False
    assert view.apply(_entry(run, 3, "log", {"lines": [_log("REPORT", "after")]})) is None


def test_seeding_replays_the_log_and_takes_the_store_s_record() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.RUNNING)
    entries = [
        _entry(run, 4, "status", {"status": "running"}),
        _entry(run, 5, "log", {"lines": [_log("controller", "one"), _log("controller", "two")]}),
    ]
    view.seed(run.model_copy(update={"message": "from the store"}), entries, active=True)
    assert view.last_id == 5 and [line["message"] for line in view.logs] == ["one", "two"]
    assert view.run is not None and view.run.message == "from the store" and view.active
    assert view.apply(entries[1]) is None, "an entry the seed covered was applied again"
    assert view.apply(_entry(run, 6, "progress", {})) is not None
    view.seed(None, [], active=False)
    assert view.run is None and view.active is False and view.last_id == 0


def test_a_new_run_starts_its_ids_afresh() -> None:
    view = LiveView()
    first = _run("r000000000001", status=RunStatus.SUCCEEDED)
    view.apply(_entry(first, 40, "complete", {"status": "succeeded"}))
    second = _run("r000000000002", started_at=utcnow() + timedelta(seconds=1))
    assert view.apply(_entry(second, 1, "status", {"status": "queued"})) is not None
    assert view.active is True and view.last_id == 1


def test_one_snapshot_is_shared_until_the_state_changes() -> None:
    view = LiveView()
    run = _run("r000000000001", status=RunStatus.RUNNING)
    view.apply(_entry(run, 1, "log", {"lines": [_log("controller", "one")]}))
    first = view.snapshot()
    assert view.snapshot() is first  # a crowd connecting at once costs one encoding
    view.apply(_entry(run, 2, "log", {"lines": [_log("controller", "two")]}))
    second = view.snapshot()
    assert second is not first and '"message":"two"' in second.text and second.id == 2
    view.seed(None, [], active=False)
    assert view.snapshot().run_id is None
