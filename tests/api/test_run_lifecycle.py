"""A run end to end through real HTTP and a real WebSocket: start, stream, attach, cancel, fail."""

from __future__ import annotations

import asyncio
import shutil
import statistics
from pathlib import Path
from typing import Any

import httpx
import pytest

from nextflow_k8s_service.config import REPO_WORKFLOW_DIR
from tests.conftest import SettingsFactory, StreamReader, step_processes
from tests.live_server import LiveServer

API = "/api/v1/demo"


async def test_full_run_streams_every_stage_and_one_complete(
    server: LiveServer, client: httpx.AsyncClient, open_stream: Any, make_settings: SettingsFactory
) -> None:
    stream: StreamReader = await open_stream(server.ws_url)
    snapshot = await stream.next()
    assert snapshot["type"] == "snapshot"
    assert snapshot["data"] == {"active": False, "run": None, "logs": []}

    response = await client.post(f"{API}/run", json={"batch_count": 3, "triggered_by": "test"})
    assert response.status_code == 202
    body = response.json()
    run_id = body["run_id"]
    assert response.headers["location"] == f"/api/v1/demo/runs/{run_id}"
    assert body["attached"] is False and body["cancel_token"]
    assert body["executor"] == "local"
    assert body["run"]["progress"]["processes"]["GENERATE"]["pending"] == 3

    complete = await stream.until_complete(run_id)
    frames = [f for f in stream.frames if f["run_id"] == run_id]
    statuses = [f["data"]["status"] for f in frames if f["type"] == "status"]
    assert statuses == ["queued", "starting", "running", "succeeded"]
    assert [f["type"] for f in frames].count("complete") == 1
    last_log = max(i for i, f in enumerate(frames) if f["type"] == "log")
    assert frames.index(complete) > last_log
    assert all(len(f["data"]["lines"]) <= 50 for f in frames if f["type"] == "log")
    sources = {line["source"] for f in frames if f["type"] == "log" for line in f["data"]["lines"]}
    assert {"controller", "GENERATE (1)", "ANALYZE (3)", "REPORT"} <= sources
    progress = [f["data"] for f in frames if f["type"] == "progress"]
    assert progress[-1]["percent"] == 100.0
    assert progress[-1]["processes"]["ANALYZE"] == {
        "total": 3, "pending": 0, "submitted": 0, "running": 0, "succeeded": 3, "failed": 0,
        "cancelled": 0,
    }  # fmt: skip
    assert complete["data"]["status"] == "succeeded"
    assert complete["data"]["duration_seconds"] > 0

    report = (await client.get(f"{API}/runs/{run_id}/report")).json()
    assert complete["data"]["report"]["totals"] == report["totals"]
    # The published figures are the real statistics of the generated batches.
    settings = make_settings()
    for batch in report["batches"]:
        csv = next((settings.work_root / run_id).rglob(f"batch_{batch['batch']}.csv"))
        values = [float(line.split(",")[1]) for line in csv.read_text().splitlines()[1:]]
        assert batch["count"] == len(values) == settings.demo_rows_per_batch
        assert batch["mean"] == pytest.approx(statistics.fmean(values))
        assert batch["stdev"] == pytest.approx(statistics.stdev(values))
    assert report["totals"]["count"] == 3 * settings.demo_rows_per_batch

    status = (await client.get(f"{API}/status")).json()
    assert status["active"] is False and status["run"]["status"] == "succeeded"
    assert (await client.get(f"{API}/active")).json() == {"active": False, "run_id": None}
    history = (await client.get(f"{API}/history")).json()
    assert [run["run_id"] for run in history] == [run_id]
    assert history[0]["triggered_by"] == "test"


async def test_a_storm_of_starts_creates_exactly_one_run(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    server: LiveServer = await start_server(make_settings(demo_generate_seconds=1))
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post(f"{API}/run", json={"batch_count": 1 + i % 12}) for i in range(50))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes.count(202) == 1 and codes.count(200) == 49
        started = next(r.json() for r in responses if r.status_code == 202)
        for response in responses:
            body = response.json()
            assert body["run_id"] == started["run_id"]
            assert body["run"]["batch_count"] == started["run"]["batch_count"]
            if response.status_code == 200:
                assert body["attached"] is True and body["cancel_token"] is None
        cancel = await client.delete(
            f"{API}/cancel", headers={"X-Cancel-Token": started["cancel_token"]}
        )
        assert cancel.status_code == 200


async def test_cancel_needs_the_run_token_and_leaves_no_process(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    settings = make_settings(demo_generate_seconds=30, admin_token="admin-secret-token")
    server: LiveServer = await start_server(settings)
    stream: StreamReader = await open_stream(server.ws_url)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        assert (await client.delete(f"{API}/cancel")).status_code == 404
        started = (await client.post(f"{API}/run", json={"batch_count": 4})).json()
        run_id = started["run_id"]
        await stream.until(lambda f: f["type"] == "status" and f["data"]["status"] == "running")

        missing = await client.delete(f"{API}/cancel")
        wrong = await client.delete(f"{API}/cancel", headers={"X-Cancel-Token": "nope"})
        bad_admin = await client.delete(f"{API}/cancel", headers={"Authorization": "Bearer x"})
        assert missing.status_code == wrong.status_code == bad_admin.status_code == 403
        assert "detail" in wrong.json()
        assert (await client.get(f"{API}/active")).json()["run_id"] == run_id
        assert step_processes(), "the run should have step processes"

        cancel = await client.delete(
            f"{API}/cancel", headers={"X-Cancel-Token": started["cancel_token"]}
        )
        assert cancel.status_code == 200
        assert cancel.json() == {"run_id": run_id, "status": "cancelled", "cancelled": True}
        assert step_processes() == {}
        complete = await stream.until_complete(run_id)
        assert complete["data"]["status"] == "cancelled"
        run = (await client.get(f"{API}/runs/{run_id}")).json()
        assert run["status"] == "cancelled" and run["message"] == "cancelled on request"
        assert (await client.delete(f"{API}/cancel")).status_code == 404

        # The admin token cancels any run.
        again = (await client.post(f"{API}/run", json={"batch_count": 1})).json()
        admin = await client.delete(
            f"{API}/cancel", headers={"Authorization": "Bearer admin-secret-token"}
        )
        assert admin.status_code == 200 and admin.json()["run_id"] == again["run_id"]
        assert step_processes() == {}


async def test_a_new_run_right_after_cancel_is_never_touched_by_the_old_one(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    server: LiveServer = await start_server(make_settings(demo_generate_seconds=0.5))
    stream: StreamReader = await open_stream(server.ws_url)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        old = (await client.post(f"{API}/run", json={"batch_count": 6})).json()
        await stream.until(lambda f: f["type"] == "log" and f["run_id"] == old["run_id"])
        cancel = client.delete(f"{API}/cancel", headers={"X-Cancel-Token": old["cancel_token"]})
        assert (await cancel).status_code == 200
        new = await client.post(f"{API}/run", json={"batch_count": 2})
        assert new.status_code == 202
        new_id = new.json()["run_id"]
        await stream.until_complete(new_id)

    first_new = next(i for i, f in enumerate(stream.frames) if f["run_id"] == new_id)
    assert all(f["run_id"] == new_id for f in stream.frames[first_new:])
    old_frames = [f for f in stream.frames if f["run_id"] == old["run_id"]]
    assert [f["data"]["status"] for f in old_frames if f["type"] == "complete"] == ["cancelled"]
    new_progress = [f["data"] for f in stream.frames[first_new:] if f["type"] == "progress"]
    assert all(p["processes"]["GENERATE"]["total"] == 2 for p in new_progress)
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        history = (await client.get(f"{API}/history")).json()
    assert [(r["run_id"], r["status"]) for r in history] == [
        (new_id, "succeeded"),
        (old["run_id"], "cancelled"),
    ]


async def test_a_failing_step_fails_the_run_with_its_stderr(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any, tmp_path: Path
) -> None:
    workflow = tmp_path / "workflow"
    shutil.copytree(REPO_WORKFLOW_DIR, workflow)
    (workflow / "bin" / "analyze.py").write_text(
        "import sys\nprint('analysis exploded: disk on fire', file=sys.stderr)\nsys.exit(1)\n"
    )
    server: LiveServer = await start_server(make_settings(workflow_dir=workflow))
    stream: StreamReader = await open_stream(server.ws_url)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        run_id = (await client.post(f"{API}/run", json={"batch_count": 2})).json()["run_id"]
        complete = await stream.until_complete(run_id)
        assert complete["data"] == {
            "status": "failed",
            "duration_seconds": complete["data"]["duration_seconds"],
            "report": None,
        }
        run = (await client.get(f"{API}/runs/{run_id}")).json()
        assert run["status"] == "failed"
        assert "disk on fire" in run["message"]
        assert (await client.get(f"{API}/runs/{run_id}/report")).status_code == 404
        assert (await client.get(f"{API}/active")).json()["active"] is False
    assert step_processes() == {}
