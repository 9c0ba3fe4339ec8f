"""Task records of a Kubernetes run, end to end: real uvicorn with EXECUTOR=kubernetes against the
API fake, which plays Nextflow (task pods) and the kubelet (container start and finish times)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import StreamReader
from tests.kubernetes.fake_api import FakeKubernetes

API = "/api/v1/demo"
STEP_SECONDS = 1.0  # how long the fake's GENERATE and ANALYZE containers run (the pacing)


def times(record: dict[str, Any]) -> tuple[datetime, datetime, datetime]:
    return (
        datetime.fromisoformat(record["submitted_at"]),
        datetime.fromisoformat(record["started_at"]),
        datetime.fromisoformat(record["finished_at"]),
    )


async def run_tasks(fake: FakeKubernetes, run_id: str, process: str, batches: list[Any]) -> None:
    """Nextflow submits the tasks, the kubelet runs them for STEP_SECONDS (REPORT at once),
    then `k8s.cleanup` deletes the succeeded pods."""
    pods = [fake.add_task_pod(run_id, process, index) for index in batches]
    for pod in pods:
        fake.run_task_container(pod)
    if process != "REPORT":
        await asyncio.sleep(STEP_SECONDS)  # the work itself: this is the pacing under test
    for pod in pods:
        fake.run_task_container(pod, exit_code=0)
        fake.delete("pods", pod)


async def test_a_twelve_batch_kubernetes_run_records_25_tasks_with_pod_times(
    fake: FakeKubernetes, k8s_settings: Any, start_server: Any, open_stream: Any
) -> None:
    server = await start_server(k8s_settings())
    stream: StreamReader = await open_stream(server.ws_url)
    await stream.next()
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        response = await client.post(f"{API}/run", json={"batch_count": 12})
        assert response.status_code == 202, response.text
        run_id = response.json()["run_id"]
        fake.set_pod_phase(fake.controller_pod(run_id), "Running")
        batches = list(range(1, 13))
        await run_tasks(fake, run_id, "GENERATE", batches)
        await run_tasks(fake, run_id, "ANALYZE", batches)
        await run_tasks(fake, run_id, "REPORT", [None])
        # One watch carries every task pod in order: once REPORT's end is streamed, all are.
        await stream.until(
            lambda f: (
                f["type"] == "task"
                and f["data"]["name"] == "REPORT"
                and f["data"]["state"] == "succeeded"
            )
        )
        controller = fake.controller_pod(run_id)
        fake.set_pod_phase(controller, "Succeeded")
        fake.set_job_conditions(f"nextflow-{run_id}", ("Complete", "CompletionsReached", ""))
        complete = await stream.until_complete(run_id, timeout=60)
        records = (await client.get(f"{API}/runs/{run_id}/tasks")).json()["tasks"]
        metrics = (await client.get("/metrics")).text

    assert complete["data"]["status"] == "succeeded"
    assert len(records) == 25
    by_name = {record["name"]: record for record in records}
    for record in records:
        assert record["state"] == "succeeded" and record["exit_code"] == 0, record
        submitted, started, finished = times(record)
        assert submitted <= started <= finished, record
    for index in batches:
        generate, analyze = by_name[f"GENERATE ({index})"], by_name[f"ANALYZE ({index})"]
        # Whole-second API times keep a lower bound of whole seconds: >= STEP_SECONDS.
        assert STEP_SECONDS <= generate["duration_seconds"] < STEP_SECONDS + 10
        assert STEP_SECONDS <= analyze["duration_seconds"] < STEP_SECONDS + 10
        assert times(analyze)[0] >= times(generate)[2]
        assert times(by_name["REPORT"])[0] >= times(analyze)[2]

    frames = [f for f in stream.frames if f["run_id"] == run_id]
    task_frames = [f["data"] for f in frames if f["type"] == "task"]
    assert {data["name"]: data for data in task_frames} == by_name
    for name in by_name:
        states = [d["state"] for d in task_frames if d["name"] == name]
        # `submitted` shows unless the pod was already running when the watch listed it.
        assert states in (["submitted", "running", "succeeded"], ["running", "succeeded"])
    assert any(d["state"] == "submitted" for d in task_frames)
    percents = [f["data"]["percent"] for f in frames if f["type"] == "progress"]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert 'nks_task_duration_seconds_count{process="ANALYZE",state="succeeded"} 12.0' in metrics


async def test_a_cancelled_kubernetes_run_shows_its_running_tasks_cancelled(
    fake: FakeKubernetes, k8s_settings: Any, start_server: Any, open_stream: Any
) -> None:
    server = await start_server(k8s_settings())
    stream: StreamReader = await open_stream(server.ws_url)
    await stream.next()
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        started = (await client.post(f"{API}/run", json={"batch_count": 2})).json()
        run_id = started["run_id"]
        fake.set_pod_phase(fake.controller_pod(run_id), "Running")
        for index in (1, 2):
            fake.run_task_container(fake.add_task_pod(run_id, "GENERATE", index))
        await stream.until(
            lambda f: f["type"] == "progress" and f["data"]["processes"]["GENERATE"]["running"] == 2
        )
        cancel = await client.delete(
            f"{API}/cancel", headers={"X-Cancel-Token": started["cancel_token"]}
        )
        assert cancel.json()["status"] == "cancelled"
        await stream.until_complete(run_id)
        records = (await client.get(f"{API}/runs/{run_id}/tasks")).json()["tasks"]

    by_name = {record["name"]: record for record in records}
    for index in (1, 2):
        stopped = by_name[f"GENERATE ({index})"]
        assert stopped["state"] == "cancelled" and stopped["reason"] == "cancelled on request"
        submitted, started_at, finished = times(stopped)
        assert submitted <= started_at <= finished
    assert by_name["ANALYZE (1)"]["state"] == "pending"
    frames = [f for f in stream.frames if f["run_id"] == run_id]
    assert all(f["data"]["state"] != "failed" for f in frames if f["type"] == "task")
    percents = [f["data"]["percent"] for f in frames if f["type"] == "progress"]
    assert percents == sorted(percents)
    assert [name for name in fake.names("pods") if name.startswith("nf-")] == []
