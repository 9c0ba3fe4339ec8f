"""Kubernetes runs that go wrong, through the service's API (real uvicorn, real WebSocket, the
real kubernetes_asyncio client against the API fake): each ends in a terminal status within its
bound, with the real cause in its message; the run lock is released and no pod of the run is
left running. (A Job that failed by itself is kept, with its terminated controller pod, for
`kubectl logs` until its TTL; a run the service ends itself loses its Job too.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import StreamReader
from tests.kubernetes.fake_api import FakeKubernetes
from tests.kubernetes.fake_policy import SERVICE_USER, Quota

API = "/api/v1/demo"


@dataclass
class Service:
    fake: FakeKubernetes
    client: httpx.AsyncClient
    stream: StreamReader

    async def start(self, batch_count: int = 2) -> tuple[str, str]:
        response = await self.client.post(f"{API}/run", json={"batch_count": batch_count})
        assert response.status_code == 202, response.text
        body = response.json()
        return body["run_id"], body["cancel_token"]

    async def finished(self, run_id: str, within: float) -> dict[str, Any]:
        """Wait for the run's `complete` frame; return the run as the API reports it."""
        await self.stream.until_complete(run_id, timeout=within)
        run: dict[str, Any] = (await self.client.get(f"{API}/runs/{run_id}")).json()
        return run

    async def released(self, run_id: str, within: float = 15, *, job_deleted: bool) -> None:
        """The lock is free, no task pod of the run exists and no pod of it runs; with
        `job_deleted`, no pod of the run is left at all, nor its Job."""
        active = (await self.client.get(f"{API}/active")).json()
        assert active == {"active": False, "run_id": None}
        await self.fake.wait_for(
            lambda: not run_pods(self.fake, run_id, everything=job_deleted), timeout=within
        )
        assert (f"nextflow-{run_id}" not in self.fake.names("jobs")) is job_deleted

    async def controller_running(self, run_id: str) -> str:
        controller = self.fake.controller_pod(run_id)
        self.fake.set_pod_phase(controller, "Running")
        await self.stream.until(
            lambda f: f["type"] == "status" and f["data"]["status"] == "running"
        )
        return controller


def run_pods(fake: FakeKubernetes, run_id: str, *, everything: bool) -> list[str]:
    """The run's task pods and running pods (`everything`: all its pods)."""
    found = []
    for (_, name), pod in fake.store["pods"].items():
        labels = pod["metadata"].get("labels") or {}
        task = labels.get("nextflow.io/runName") == run_id
        ours = task or labels.get("nextflow-k8s-service/run-id") == run_id
        running = pod["status"].get("phase") not in ("Succeeded", "Failed")
        if ours and (everything or task or running):
            found.append(name)
    return found


@pytest.fixture
async def service(
    fake: FakeKubernetes,
    k8s_settings: Any,
    make_executor: Any,
    start_server: Any,
    open_stream: Any,
) -> AsyncIterator[Service]:
    # A long request timeout: the client-side read timeout of a watch (timeout + request
    # timeout) then cannot be what rescues a stalled watch within the test's bound.
    overrides = {"controller_cpu_limit": "1", "kube_request_timeout_seconds": 30}
    server = await start_server(
        k8s_settings(**overrides), executor=await make_executor(**overrides)
    )
    stream: StreamReader = await open_stream(server.ws_url)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        yield Service(fake, client, stream)


@pytest.mark.slow(5)
async def test_quota_refusing_a_task_pod_fails_the_run_naming_the_quota(
    service: Service, fake: FakeKubernetes
) -> None:
    # Room for the controller (1 CPU) and one task (1 CPU): the second task is refused.
    fake.quota = Quota("nextflow-homelab", cpu=2)
    run_id, _ = await service.start()
    controller = await service.controller_running(run_id)
    first = fake.nextflow_submit(run_id, "GENERATE", 1)
    assert first is not None
    fake.set_pod_phase(first, "Running")
    assert fake.nextflow_submit(run_id, "GENERATE", 2) is None  # nf-k8s aborts the run
    assert fake.get("pods", controller)["status"]["phase"] == "Failed"  # type: ignore[index]

    run = await service.finished(run_id, within=120)
    assert run["status"] == "failed"
    assert "exceeded quota: nextflow-homelab" in run["message"]
    assert "ResourceQuota" in run["message"]
    assert "BackoffLimitExceeded" not in run["message"]
    assert run["progress"]["tasks"]["GENERATE (1)"] == "failed"  # killed with the run
    await service.released(run_id, job_deleted=False)  # the running GENERATE (1) pod too


async def test_quota_refusing_the_controller_pod_fails_the_run_naming_the_quota(
    service: Service, fake: FakeKubernetes
) -> None:
    fake.quota = Quota("nextflow-homelab", cpu=0.5)
    run_id, _ = await service.start()
    run = await service.finished(run_id, within=120)
    assert run["status"] == "failed"
    assert run["message"].startswith("Kubernetes refused the Nextflow controller pod")
    assert "exceeded quota: nextflow-homelab" in run["message"]
    assert fake.quota.refusals  # the Job never had a pod
    await service.released(run_id, job_deleted=True)


async def test_an_image_that_cannot_be_pulled_fails_its_task_and_the_run(
    service: Service, fake: FakeKubernetes
) -> None:
    run_id, _ = await service.start(batch_count=1)
    controller = await service.controller_running(run_id)
    pod = fake.nextflow_submit(run_id, "GENERATE", 1)
    assert pod is not None
    fake.set_image_pull_failure(pod)
    await service.stream.until(
        lambda f: f["type"] == "progress" and f["data"]["processes"]["GENERATE"].get("failed") == 1
    )
    # nf-k8s fails the run, but the pod stays Pending with its image pull backing off.
    fake.append_log(controller, "ERROR ~ Error executing process > 'GENERATE (1)'")
    fake.end_controller(run_id, exit_code=1, reason="Error")
    run = await service.finished(run_id, within=30)
    assert run["status"] == "failed"
    assert run["message"] == (
        "task GENERATE (1) failed: image py cannot be pulled "
        '(ImagePullBackOff: Back-off pulling image "py")'
    )
    assert run["progress"]["tasks"]["GENERATE (1)"] == "failed"
    await service.released(run_id, job_deleted=False)


@pytest.mark.slow(5)
async def test_an_oom_killed_controller_is_named(service: Service, fake: FakeKubernetes) -> None:
    run_id, _ = await service.start()
    await service.controller_running(run_id)
    pod = fake.nextflow_submit(run_id, "GENERATE", 1)
    assert pod is not None
    fake.set_pod_phase(pod, "Running")
    fake.end_controller(run_id, exit_code=137, reason="OOMKilled")
    run = await service.finished(run_id, within=30)
    assert run["status"] == "failed"
    assert run["message"].startswith("the Nextflow controller was OOMKilled (exit code 137)")
    assert "CONTROLLER_MEMORY_LIMIT" in run["message"]
    await service.released(run_id, job_deleted=False)


async def test_an_init_container_failure_shows_its_reason_and_log(
    service: Service, fake: FakeKubernetes
) -> None:
    run_id, _ = await service.start()
    denied = f"mkdir: cannot create directory '/workspace/runs/{run_id}': Permission denied"
    fake.fail_init_container(run_id, "staging the workflow", denied)
    run = await service.finished(run_id, within=30)
    assert run["status"] == "failed"
    assert run["message"] == (
        "init container stage-workflow failed (Error, exit code 1): "
        f"staging the workflow | {denied}"
    )
    await service.released(run_id, job_deleted=False)


async def test_a_refused_watch_ends_the_run_and_readiness_names_the_call(
    service: Service, fake: FakeKubernetes
) -> None:
    run_id, _ = await service.start()
    await service.controller_running(run_id)
    fake.revoke(SERVICE_USER, "watch", "pods")
    fake.drop_watches("pods")
    run = await service.finished(run_id, within=30)
    assert run["status"] == "failed"
    assert "watch pods: HTTP 403 Forbidden" in run["message"]
    assert f'User "{SERVICE_USER}" cannot watch resource "pods"' in run["message"]
    await service.released(run_id, job_deleted=True)
    ready = await service.client.get("/healthz")
    assert ready.status_code == 503
    assert "watch pods" in ready.json()["checks"]["executor"]["detail"]
    assert {denial[1:] for denial in fake.denied} == {("watch", "", "pods")}
    fake.denied.clear()  # expected by this test


async def test_a_silently_stalled_watch_is_resumed_and_the_run_completes(
    service: Service, fake: FakeKubernetes
) -> None:
    run_id, _ = await service.start(batch_count=1)
    controller = await service.controller_running(run_id)
    watches_before = fake.calls.count(("watch", "batch", "jobs"))
    fake.stall_watches("jobs")
    fake.stall_watches("pods")
    pod = fake.nextflow_submit(run_id, "GENERATE", 1)
    assert pod is not None
    fake.set_pod_phase(pod, "Running")
    # Seen only through a resumed pod watch.
    await service.stream.until(
        lambda f: (
            f["type"] == "progress" and f["data"]["processes"]["GENERATE"].get("running") == 1
        ),
        timeout=20,
    )
    fake.set_pod_phase(pod, "Succeeded")
    fake.nextflow_cleanup(pod)
    fake.set_pod_phase(controller, "Succeeded")
    fake.set_job_conditions(f"nextflow-{run_id}", ("Complete", "CompletionsReached", ""))
    # The FAST watch timeout is 5 s: a stalled watch is given up after 5 s.
    run = await service.finished(run_id, within=20)
    assert run["status"] == "succeeded"
    assert fake.calls.count(("watch", "batch", "jobs")) > watches_before


async def test_cancel_during_a_resubmission_leaves_no_pod(
    service: Service, fake: FakeKubernetes
) -> None:
    fake.controller_stop_seconds = 1.0  # Nextflow takes a moment to stop
    fake.task_stop_seconds = 0.2
    run_id, token = await service.start()
    fake.resubmitting.add(run_id)
    await service.controller_running(run_id)
    for index in (1, 2):
        pod = fake.nextflow_submit(run_id, "GENERATE", index)
        assert pod is not None
        fake.set_pod_phase(pod, "Running")

    loop = asyncio.get_running_loop()
    cancelled_at = loop.time()
    response = await service.client.delete(f"{API}/cancel", headers={"X-Cancel-Token": token})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    # nf-k8s resubmitted the deleted task pods while its pod was terminating ...
    await fake.wait_for(lambda: bool(fake.resubmitted), timeout=10)
    # ... and the sweep after the controller's end removed them.
    await service.released(run_id, within=30, job_deleted=True)
    assert loop.time() - cancelled_at < 30
    assert "deletionTimestamp" not in str(fake.store["pods"])
    assert not fake._has_controller(run_id)  # nothing is left that could submit again


async def test_a_run_monitor_task_that_dies_ends_the_run_unknown_and_logged(
    service: Service, fake: FakeKubernetes, caplog: pytest.LogCaptureFixture
) -> None:
    run_id, _ = await service.start()
    await service.controller_running(run_id)
    # Both pod watches (controller and tasks) are open.
    await fake.wait_for(lambda: fake.watch_count("pods") == 2)
    fake.inject_watch_event("pods", {"type": "MODIFIED", "object": ["not", "a", "pod"]})
    run = await service.finished(run_id, within=30)
    assert run["status"] == "unknown"
    assert "internal error" in run["message"]
    assert "AttributeError" in run["message"]
    await service.released(run_id, job_deleted=True)
    assert any(
        record.levelname == "ERROR" and record.exc_info is not None for record in caplog.records
    )


async def test_a_new_run_waits_for_the_previous_runs_pods(
    service: Service, fake: FakeKubernetes
) -> None:
    leftover = fake.add_task_pod("r00000000old", "ANALYZE", 3)
    fake.set_pod_phase(leftover, "Running")  # still terminating from the previous run
    starting = asyncio.create_task(service.start())
    try:
        await fake.wait_for(lambda: fake.watch_count("pods") == 1)
        assert fake.names("jobs") == []
        fake.set_pod_phase(leftover, "Failed")
        run_id, _ = await starting
    finally:
        if not starting.done():
            starting.cancel()
    assert fake.names("jobs") == [f"nextflow-{run_id}"]


async def test_a_controller_image_that_cannot_be_pulled_fails_the_run_at_once(
    service: Service, fake: FakeKubernetes
) -> None:
    run_id, _ = await service.start()
    # Without the service, the Job would only fail at its deadline (the pod stays Pending).
    fake.set_image_pull_failure(fake.controller_pod(run_id))
    run = await service.finished(run_id, within=30)
    assert run["status"] == "failed"
    assert run["message"] == (
        "the Nextflow controller's image nextflow/nextflow:25.04.8 cannot be pulled "
        '(ImagePullBackOff: Back-off pulling image "nextflow/nextflow:25.04.8")'
    )
    await service.released(run_id, job_deleted=True)
