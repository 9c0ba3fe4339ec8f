"""Per-task records of a local run, end to end: `task` frames, `/runs/{id}/tasks`, the metrics,
a cancel that reads as a cancel, and a percent that never goes down."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from nextflow_k8s_service.models import TaskState
from nextflow_k8s_service.services.state_store import MemoryStateStore
from tests.conftest import SettingsFactory, StreamReader

API = "/api/v1/demo"
GENERATE_SECONDS = 0.5
ANALYZE_SECONDS = 0.3


def times(record: dict[str, Any]) -> tuple[datetime, datetime, datetime]:
    return (
        datetime.fromisoformat(record["submitted_at"]),
        datetime.fromisoformat(record["started_at"]),
        datetime.fromisoformat(record["finished_at"]),
    )


def percents(frames: list[dict[str, Any]]) -> list[float]:
    return [f["data"]["percent"] for f in frames if f["type"] == "progress"]


async def test_a_twelve_batch_run_records_25_tasks_with_ordered_paced_times(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    settings = make_settings(
        demo_generate_seconds=GENERATE_SECONDS, demo_analyze_seconds=ANALYZE_SECONDS
    )
    server = await start_server(settings)
    stream: StreamReader = await open_stream(server.ws_url)
    assert (await stream.next())["type"] == "snapshot"
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        response = await client.post(f"{API}/run", json={"batch_count": 12})
        assert response.status_code == 202, response.text
        body = response.json()
        run_id = body["run_id"]
        await stream.until_complete(run_id, timeout=120)
        table = await client.get(f"{API}/runs/{run_id}/tasks")
        metrics = (await client.get("/metrics")).text
        detail = (await client.get(f"{API}/runs/{run_id}")).json()
        unknown = await client.get(f"{API}/runs/r000000000ff/tasks")
        malformed = await client.get(f"{API}/runs/..%2Fetc/tasks")

    frames = [f for f in stream.frames if f["run_id"] == run_id]
    first_status = next(f for f in frames if f["type"] == "status")
    assert body["run"]["status"] == first_status["data"]["status"]

    assert table.status_code == 200
    assert table.json()["run_id"] == run_id
    records = table.json()["tasks"]
    assert len(records) == 25
    by_name = {record["name"]: record for record in records}
    assert list(by_name)[:2] == ["GENERATE (1)", "GENERATE (2)"] and list(by_name)[-1] == "REPORT"
    for record in records:
        assert record["state"] == "succeeded" and record["exit_code"] == 0, record
        submitted, started, finished = times(record)
        assert submitted <= started <= finished, record
        assert record["duration_seconds"] == round((finished - started).total_seconds(), 3)
        assert record["reason"] is None
    for index in range(1, 13):
        generate, analyze = by_name[f"GENERATE ({index})"], by_name[f"ANALYZE ({index})"]
        assert generate["index"] == index and generate["process"] == "GENERATE"
        # The pacing: each step takes at least its configured seconds.
        assert generate["duration_seconds"] >= GENERATE_SECONDS
        assert analyze["duration_seconds"] >= ANALYZE_SECONDS
        # The DAG: ANALYZE (i) is submitted once GENERATE (i) has finished.
        assert times(analyze)[0] >= times(generate)[2]
        assert times(by_name["REPORT"])[0] >= times(analyze)[2]

    # The stream carried every transition; the last `task` frame of each task is its record.
    task_frames = [f["data"] for f in frames if f["type"] == "task"]
    last = {data["name"]: data for data in task_frames}
    assert last == by_name
    assert detail["progress"]["task_records"] == records
    assert {data["state"] for data in task_frames} >= {"running", "succeeded"}
    final_progress = [f["data"] for f in frames if f["type"] == "progress"][-1]
    assert "task_records" not in final_progress  # the `task` frames carry them
    assert final_progress["tasks"] == dict.fromkeys(by_name, "succeeded")
    assert percents(frames) == sorted(percents(frames)) and percents(frames)[-1] == 100.0

    assert 'nks_task_duration_seconds_count{process="GENERATE",state="succeeded"} 12.0' in metrics
    assert 'nks_task_duration_seconds_count{process="REPORT",state="succeeded"} 1.0' in metrics
    assert unknown.status_code == 404 and "detail" in unknown.json()
    assert malformed.status_code == 404


async def test_a_cancelled_run_shows_its_stopped_tasks_cancelled_and_percent_holds(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    server = await start_server(make_settings(demo_generate_seconds=60))
    stream: StreamReader = await open_stream(server.ws_url)
    await stream.next()
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        started = (await client.post(f"{API}/run", json={"batch_count": 3})).json()
        run_id = started["run_id"]
        running: set[str] = set()

        def all_generating(frame: dict[str, Any]) -> bool:
            if frame["type"] == "task" and frame["data"]["state"] == "running":
                running.add(frame["data"]["name"])
            return len(running) == 3

        await stream.until(all_generating)
        cancel = await client.delete(
            f"{API}/cancel", headers={"X-Cancel-Token": started["cancel_token"]}
        )
        assert cancel.json()["status"] == "cancelled"
        complete = await stream.until_complete(run_id)
        records = (await client.get(f"{API}/runs/{run_id}/tasks")).json()["tasks"]
        run = (await client.get(f"{API}/runs/{run_id}")).json()

    assert complete["data"]["status"] == "cancelled"
    by_name = {record["name"]: record for record in records}
    for index in (1, 2, 3):
        stopped = by_name[f"GENERATE ({index})"]
        assert stopped["state"] == "cancelled" and stopped["reason"] == "cancelled on request"
        submitted, started_at, finished = times(stopped)
        assert submitted <= started_at <= finished
        assert by_name[f"ANALYZE ({index})"]["state"] == "pending"
    assert by_name["REPORT"]["state"] == "pending"

    frames = [f for f in stream.frames if f["run_id"] == run_id]
    stopped_frames = [f["data"]["name"] for f in frames if f["type"] == "task"]
    assert stopped_frames.count("GENERATE (1)") == 2  # running, then cancelled
    assert all(f["data"]["state"] != "failed" for f in frames if f["type"] == "task"), (
        "a cancel must not read as a failure"
    )
    counts = run["progress"]["processes"]["GENERATE"]
    assert (counts["cancelled"], counts["failed"], counts["running"]) == (3, 0, 0)
    assert run["progress"]["tasks"]["GENERATE (2)"] == "cancelled"
    seen = [*percents(frames), run["progress"]["percent"]]
    assert seen == sorted(seen) and seen[-1] > 0


async def test_tasks_stopped_by_a_shutdown_are_recorded_cancelled_with_the_reason(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    store = MemoryStateStore(history_limit=5, ttl_minutes=30)
    server = await start_server(make_settings(demo_generate_seconds=60), store=store)
    stream: StreamReader = await open_stream(server.ws_url)
    await stream.next()
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        run_id = (await client.post(f"{API}/run", json={"batch_count": 2})).json()["run_id"]
    running: set[str] = set()

    def both_generating(frame: dict[str, Any]) -> bool:
        if frame["type"] == "task" and frame["data"]["state"] == "running":
            running.add(frame["data"]["name"])
        return len(running) == 2

    await stream.until(both_generating)
    await server.stop()

    run = await store.get_run(run_id)
    assert run is not None and run.status == "cancelled"
    by_name = {record.name: record for record in run.progress.task_records}
    for name in ("GENERATE (1)", "GENERATE (2)"):
        assert by_name[name].state is TaskState.CANCELLED
        assert by_name[name].reason == "cancelled: the service shut down"
    assert run.progress.processes["GENERATE"].failed == 0
