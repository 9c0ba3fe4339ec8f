"""Fixtures of the Kubernetes tests: the API fake, a kubeconfig pointing at it, the executor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from nextflow_k8s_service.config import Settings, load_settings
from nextflow_k8s_service.executors.kubernetes import KubernetesExecutor
from nextflow_k8s_service.kubernetes.client import create_api_client
from nextflow_k8s_service.kubernetes.permissions import SERVICE_PERMISSIONS
from nextflow_k8s_service.kubernetes.run_monitor import MonitorTiming
from nextflow_k8s_service.utils.backoff import Backoff
from tests.kubernetes.fake_api import FakeKubernetes

# Every (verb, apiGroup, resource) the fakes saw over the session.
OBSERVED_CALLS: set[tuple[str, str, str]] = set()

FAST = MonitorTiming(
    watch_timeout_seconds=5,
    log_read_timeout=5.0,
    drain_timeout=5.0,
    task_drain_quiet=0.3,
    admission_check_seconds=0.5,
    previous_pods_timeout=5.0,
    backoff=Backoff(base=0.02, cap=0.2),
)


def granted(calls: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """The calls SERVICE_PERMISSIONS does not grant."""
    return {
        (verb, group, resource)
        for verb, group, resource in calls
        if verb not in SERVICE_PERMISSIONS.get((group, resource), frozenset())
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubernetes]:
    server = FakeKubernetes()
    await server.start()
    yield server
    await server.stop()
    OBSERVED_CALLS.update(server.calls)
    assert granted(set(server.calls)) == set(), "calls outside SERVICE_PERMISSIONS"
    assert server.denied == [], "RBAC denials (k8s/ Roles) not expected by the test"


@pytest.fixture
def k8s_settings(fake: FakeKubernetes, tmp_path: Path) -> Callable[..., Settings]:
    config = tmp_path / "kubeconfig.json"
    config.write_text(fake.kubeconfig())

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "executor": "kubernetes",
            "kubeconfig": config,
            "kube_context": "fake",
            "kube_request_timeout_seconds": 5,
            "workspace_dir": tmp_path / "workspace",
        }
        values.update(overrides)
        return load_settings(**values)

    return factory


@pytest.fixture
async def make_executor(
    k8s_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Any]]:
    """Build executors (each with its own ApiClient); all are closed at the end."""
    created: list[tuple[KubernetesExecutor, Any]] = []

    async def factory(**overrides: Any) -> KubernetesExecutor:
        settings = k8s_settings(**overrides)
        api_client = await create_api_client(settings)
        executor = KubernetesExecutor(settings=settings, api_client=api_client, timing=FAST)
        created.append((executor, api_client))
        return executor

    yield factory
    for executor, api_client in created:
        await executor.close()
        await api_client.close()
