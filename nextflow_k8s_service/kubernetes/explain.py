"""The calls that find out why a run failed, built on the pure readings of `diagnosis.py`:
the controller pod's final state (and an init container's last log lines), the controller's
log, the tasks' failures, and the events of a Job whose pod was refused at admission.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from nextflow_k8s_service.errors import ExecutorOperationError
from nextflow_k8s_service.kubernetes import jobs
from nextflow_k8s_service.kubernetes.api import KubeApi, Obj
from nextflow_k8s_service.kubernetes.diagnosis import (
    controller_failure,
    nextflow_error,
    quota_refusal,
)
from nextflow_k8s_service.run_events import task_source

logger = logging.getLogger(__name__)

INIT_LOG_LINES = 5


async def _controller_pod(api: KubeApi, run_id: str, last_seen: Obj | None) -> Obj | None:
    """The controller pod as it is now (its final state), else as last seen."""
    try:
        listing = await api.list_objects(
            "pods", label_selector=jobs.controller_pod_selector(run_id)
        )
    except ExecutorOperationError as exc:
        logger.warning("run %s: cannot read the controller pod: %s", run_id, exc)
        return last_seen
    return next(iter(listing.get("items") or []), last_seen)


async def failure_cause(
    api: KubeApi,
    run_id: str,
    *,
    controller: Obj | None,
    controller_log: Iterable[str],
    task_failures: Mapping[tuple[str, int | None], str],
) -> str | None:
    """The real cause of a failed run, first found of: the controller pod's own failure (OOM
    kill, init container with its last log lines, image pull), a ResourceQuota refusal in the
    controller's log, a task's failure, Nextflow's last ERROR line. None if nothing is known.
    Never raises `ExecutorOperationError` (the caller keeps the Job's condition then)."""
    pod = await _controller_pod(api, run_id, controller)
    failure = controller_failure(pod) if pod else None
    if pod is not None and failure is not None:
        if not failure.init:
            return failure.message
        name = str((pod.get("metadata") or {}).get("name"))
        try:
            tail = await api.pod_log_tail(name, container=failure.container, lines=INIT_LOG_LINES)
        except ExecutorOperationError:
            tail = []
        lines = [line for line in tail if line.strip()]
        return f"{failure.message}: {' | '.join(lines)}" if lines else failure.message
    log = list(controller_log)
    quota = quota_refusal(log)
    if quota:
        return f"Kubernetes refused a task pod ({quota}): the namespace's ResourceQuota is used up"
    for task, why in task_failures.items():
        return f"task {task_source(*task)} failed: {why}"
    error = nextflow_error(log)
    return f"Nextflow: {error}" if error else None


async def controller_refusal(api: KubeApi, run_id: str) -> str | None:
    """Why the run's Job has no pod, from its `FailedCreate` events; None if it has none.

    Raises `ExecutorOperationError` when the events cannot be read.
    """
    selector = f"involvedObject.kind=Job,involvedObject.name={jobs.job_name(run_id)}"
    listing = await api.list_events(field_selector=selector)
    refusals = [
        str(event.get("message") or "")
        for event in listing.get("items") or []
        if event.get("reason") == "FailedCreate"
    ]
    if not refusals:
        return None
    quota = quota_refusal(refusals)
    why = f"{quota}: the namespace's ResourceQuota is used up" if quota else refusals[-1]
    return f"Kubernetes refused the Nextflow controller pod ({why})"
