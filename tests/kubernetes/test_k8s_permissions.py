"""The calls the executor makes are exactly what `SERVICE_PERMISSIONS` grants."""

from __future__ import annotations

from typing import Any

from nextflow_k8s_service.kubernetes.permissions import SERVICE_PERMISSIONS
from nextflow_k8s_service.run_events import RunSpec, StatusChanged
from tests.kubernetes.fake_api import FakeKubernetes
from tests.kubernetes.fake_policy import Quota

RUN = "r0123456789a"


def as_triples(permissions: Any) -> set[tuple[str, str, str]]:
    return {
        (verb, group, resource)
        for (group, resource), verbs in permissions.items()
        for verb in verbs
    }


async def test_every_granted_permission_is_used_and_nothing_else(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    spec = RunSpec(RUN, 1, 10, 0, 0)
    executor = await make_executor()
    assert (await executor.check()).ok
    await executor.start(spec)
    await executor.close()  # a restart: the next instance adopts the run
    executor = await make_executor()
    assert await executor.adopt(spec)
    log = collect_events(executor.events(RUN))
    controller = fake.controller_pod(RUN)
    fake.set_pod_phase(controller, "Running")
    fake.append_log(controller, "hello")
    await log.until(lambda events: any(getattr(e, "message", "") == "hello" for e in events))
    assert await executor.orphan_jobs({RUN}) == []
    await executor.cancel(RUN)
    events = await log.finished()
    assert isinstance(events[-1], StatusChanged)
    # A run whose controller pod the quota refuses: the Job's events say why.
    fake.quota = Quota("nextflow-homelab", cpu=1)
    refused = RunSpec("r0123456789b", 1, 10, 0, 0)
    await executor.start(refused)
    log = collect_events(executor.events(refused.run_id))
    events = await log.finished()
    assert "exceeded quota" in str(events[-1])
    assert set(fake.calls) == as_triples(SERVICE_PERMISSIONS)
