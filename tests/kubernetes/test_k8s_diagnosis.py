"""Reading why a run failed from container statuses and the controller's log (pure)."""

from __future__ import annotations

from typing import Any

from nextflow_k8s_service.kubernetes.diagnosis import (
    ContainerFailure,
    controller_failure,
    image_failure,
    nextflow_error,
    quota_refusal,
)
from nextflow_k8s_service.kubernetes.watch import pod_task_state
from nextflow_k8s_service.models import TaskState


def pod(phase: str, **status: Any) -> dict[str, Any]:
    return {
        "spec": {"containers": [{"name": "nextflow", "resources": {"limits": {"memory": "2Gi"}}}]},
        "status": {"phase": phase, **status},
    }


def waiting(reason: str, message: str = "") -> list[dict[str, Any]]:
    state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    return [{"name": "c", "image": "python:9", "state": state}]


def test_image_pull_failures_fail_a_pending_task() -> None:
    stuck = pod("Pending", containerStatuses=waiting("ImagePullBackOff", "Back-off"))
    assert image_failure(stuck) == "image python:9 cannot be pulled (ImagePullBackOff: Back-off)"
    assert pod_task_state(stuck) is TaskState.FAILED
    assert image_failure(pod("Pending", containerStatuses=waiting("ErrImagePull"))) == (
        "image python:9 cannot be pulled (ErrImagePull)"
    )
    creating = pod("Pending", containerStatuses=waiting("ContainerCreating"))
    assert image_failure(creating) is None
    assert pod_task_state(creating) is TaskState.PENDING


def test_controller_failures() -> None:
    oom = pod(
        "Failed",
        containerStatuses=[
            {"name": "nextflow", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
        ],
    )
    assert controller_failure(oom) == ContainerFailure(
        "nextflow",
        "the Nextflow controller was OOMKilled (exit code 137): it needs more than its memory "
        "limit of 2Gi (CONTROLLER_MEMORY_LIMIT)",
    )
    init = pod(
        "Failed",
        initContainerStatuses=[
            {"name": "stage", "state": {"terminated": {"reason": "Error", "exitCode": 2}}}
        ],
    )
    assert controller_failure(init) == ContainerFailure(
        "stage", "init container stage failed (Error, exit code 2)", init=True
    )
    plain_error = pod(
        "Failed",
        containerStatuses=[
            {"name": "nextflow", "state": {"terminated": {"reason": "Error", "exitCode": 1}}}
        ],
    )
    assert controller_failure(plain_error) is None  # Nextflow's own log says why
    assert controller_failure({}) is None


def test_quota_refusal_and_nextflow_error_from_the_log() -> None:
    log = [
        "ERROR ~ Request POST /api/v1/namespaces/nextflow/pods returned an error code=403",
        '  "message": "pods \\"nf-1\\" is forbidden: exceeded quota: q, requested: '
        'limits.cpu=1, used: limits.cpu=2, limited: limits.cpu=2",',
    ]
    assert quota_refusal(log) == (
        "exceeded quota: q, requested: limits.cpu=1, used: limits.cpu=2, limited: limits.cpu=2"
    )
    assert nextflow_error(log) == (
        "Request POST /api/v1/namespaces/nextflow/pods returned an error code=403"
    )
    assert quota_refusal(["all good"]) is None
    assert nextflow_error([]) is None
