"""A Kubernetes run end to end: real uvicorn serving create_app with EXECUTOR=kubernetes and a
kubeconfig pointing at the API fake, a real WebSocket client, the fake playing the cluster."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import StreamReader
from tests.kubernetes.fake_api import FakeKubernetes
from tests.kubernetes.fake_policy import RUNNER_USER, SERVICE_USER

API = "/api/v1/demo"


def has_log(source: str, message: str) -> Any:
    def predicate(frame: dict[str, Any]) -> bool:
        return frame["type"] == "log" and any(
            line["source"] == source and line["message"] == message
            for line in frame["data"]["lines"]
        )

    return predicate


async def test_kubernetes_run_streams_status_progress_logs_and_one_complete(
    fake: FakeKubernetes, k8s_settings: Any, start_server: Any, open_stream: Any
) -> None:
    server = await start_server(k8s_settings(demo_generate_seconds=0, demo_analyze_seconds=0))
    stream: StreamReader = await open_stream(server.ws_url)
    assert (await stream.next())["type"] == "snapshot"

    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        response = await client.post(f"{API}/run", json={"batch_count": 1})
    assert response.status_code == 202, response.text
    body = response.json()
    run_id = body["run_id"]
    assert body["executor"] == "kubernetes"
    job = f"nextflow-{run_id}"
    assert fake.names("jobs") == [job]
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        ready = (await client.get("/healthz")).json()
    assert ready["status"] == "ok"
    assert ready["checks"]["executor"]["ok"] is True
    assert ready["checks"]["unclaimed_runs"]["detail"] == "none"

    controller = fake.controller_pod(run_id)
    fake.set_pod_phase(controller, "Running")
    fake.append_log(controller, "Launching `demo.nf` [r] DSL2")
    await stream.until(has_log("controller", "Launching `demo.nf` [r] DSL2"))
    for process, index in (("GENERATE", 1), ("ANALYZE", 1), ("REPORT", None)):
        source = process if index is None else f"{process} ({index})"
        pod = fake.add_task_pod(run_id, process, index)
        fake.set_pod_phase(pod, "Running")
        fake.append_log(pod, f"{source}: working")
        await stream.until(has_log(source, f"{source}: working"))
        fake.set_pod_phase(pod, "Succeeded")
        fake.delete("pods", pod)
    fake.append_log(controller, "Succeeded   : 3")
    fake.set_pod_phase(controller, "Succeeded")
    fake.set_job_conditions(job, ("SuccessCriteriaMet", "CompletionsReached", ""))
    fake.set_job_conditions(job, ("Complete", "CompletionsReached", ""))
    complete = await stream.until_complete(run_id, timeout=30)

    frames = [f for f in stream.frames if f["run_id"] == run_id]
    kinds = [f["type"] for f in frames]
    statuses = [f["data"]["status"] for f in frames if f["type"] == "status"]
    # `starting` shows only when the watch sees the controller pod still pending.
    assert statuses[0] == "queued" and statuses[-2:] == ["running", "succeeded"]
    assert statuses in (
        ["queued", "starting", "running", "succeeded"],
        ["queued", "running", "succeeded"],
    )
    assert kinds.count("complete") == 1 and kinds[-1] == "complete"
    assert complete["data"]["status"] == "succeeded"
    last_log = max(i for i, kind in enumerate(kinds) if kind == "log")
    first_progress = kinds.index("progress")
    assert kinds.index("status") < first_progress < last_log < frames.index(complete)
    assert has_log("controller", "Succeeded   : 3")(
        {
            "type": "log",
            "data": {
                "lines": [ln for f in frames if f["type"] == "log" for ln in f["data"]["lines"]]
            },
        }
    )
    # RBAC per identity from the rendered k8s/ Roles: the service's calls (HTTP) and what the
    # fake did as Nextflow (create pods, poll their status) were all allowed.
    assert fake.rbac is not None and set(fake.rbac) >= {SERVICE_USER, RUNNER_USER}
    assert fake.denied == []
    final = [f["data"] for f in frames if f["type"] == "progress"][-1]
    assert final["percent"] == 100
    assert final["processes"]["GENERATE"]["succeeded"] == 1
    assert final["processes"]["REPORT"]["succeeded"] == 1
