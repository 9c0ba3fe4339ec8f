"""The read endpoints over HTTP follow a run as it changes, though they reuse encoded bodies."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import SettingsFactory, StreamReader
from tests.live_server import LiveServer

API = "/api/v1/demo"


async def _reads(client: httpx.AsyncClient, run_id: str, *, settled: bool = True) -> dict[str, Any]:
    """The reads of one run; with `settled` (nothing happens in the run meanwhile), checked
    against each other."""
    status = (await client.get(f"{API}/status")).json()
    run = (await client.get(f"{API}/runs/{run_id}")).json()
    tasks = (await client.get(f"{API}/runs/{run_id}/tasks")).json()
    history = (await client.get(f"{API}/history")).json()
    assert status["run"]["run_id"] == run["run_id"] == tasks["run_id"] == run_id
    if settled:
        assert status["run"] == run, "/status and /runs/{id} show the same run"
        assert tasks == {"run_id": run_id, "tasks": run["progress"]["task_records"]}
    return {"status": status, "history": history}


async def test_status_run_tasks_history_and_preview_follow_what_they_show(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    server: LiveServer = await start_server(make_settings(demo_generate_seconds=30))
    stream: StreamReader = await open_stream(server.ws_url)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        assert (await client.get(f"{API}/status")).json() == {"active": False, "run": None}
        assert (await client.get(f"{API}/history")).json() == []

        started = (await client.post(f"{API}/run", json={"batch_count": 2})).json()
        run_id = started["run_id"]
        first = await _reads(client, run_id, settled=False)
        early = (await client.post(f"{API}/run", json={"batch_count": 5})).json()
        assert early["attached"] is True and early["run"]["run_id"] == run_id
        assert first["status"]["active"] is True

        # Both GENERATE tasks running (the first reads may or may not have seen that yet, so
        # the reads are checked against what the stream showed, not against the first ones).
        await stream.until(
            lambda f: f["type"] == "progress" and f["data"]["processes"]["GENERATE"]["running"] == 2
        )
        running = await _reads(client, run_id)
        attached = await client.post(f"{API}/run", json={"batch_count": 5})
        assert attached.status_code == 200 and "location" not in attached.headers
        assert attached.json() == {
            "attached": True,
            "run": running["status"]["run"],
            "run_id": run_id,
            "executor": "local",
            "stream_url": "/api/v1/pipeline/stream",
            "status_url": f"/api/v1/demo/runs/{run_id}",
            "cancel_token": None,
        }
        assert running["status"]["run"]["progress"]["tasks"]["GENERATE (2)"] == "running"
        assert running["status"]["run"]["status"] == "running"

        cancel = await client.delete(
            f"{API}/cancel", headers={"X-Cancel-Token": started["cancel_token"]}
        )
        assert cancel.status_code == 200
        await stream.until_complete(run_id)
        ended = await _reads(client, run_id)
        assert ended["status"]["active"] is False
        assert ended["status"]["run"]["status"] == "cancelled"
        assert ended["status"]["run"]["progress"]["tasks"]["GENERATE (2)"] == "cancelled"
        assert [run["run_id"] for run in ended["history"]] == [run_id]
        assert ended["history"][0]["status"] == "cancelled"

        # A second run replaces the first in /status, and the history is unchanged until it ends.
        second = (await client.post(f"{API}/run", json={"batch_count": 1})).json()
        now = await _reads(client, second["run_id"], settled=False)
        assert now["status"]["run"]["run_id"] == second["run_id"]
        assert now["history"] == ended["history"]
        await client.delete(f"{API}/cancel", headers={"X-Cancel-Token": second["cancel_token"]})

        previews = [
            (await client.get(f"{API}/preview", params={"batch_count": n})).json()
            for n in (3, 3, 5, 3)
        ]
        assert [(p["batch_count"], p["total_tasks"]) for p in previews] == [
            (3, 7), (3, 7), (5, 11), (3, 7)
        ]  # fmt: skip
