"""Waiting for pods to be gone: before a run starts (the previous run's pods still hold quota)
and after a cancel (nf-k8s resubmits a task pod it finds deleted while its controller lives).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing

from nextflow_k8s_service.kubernetes import jobs
from nextflow_k8s_service.kubernetes.api import KubeApi, Obj
from nextflow_k8s_service.kubernetes.watch import pod_terminated, watch_objects
from nextflow_k8s_service.utils.backoff import Backoff

logger = logging.getLogger(__name__)

# On cancel the controller gets this long to stop (instead of its termination grace period),
# so that the sweep after it ends within 30 s of the cancel.
CANCEL_GRACE_SECONDS = 15
CANCEL_SWEEP_TIMEOUT = 25.0


def _uid(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return str(meta.get("uid") or meta.get("name"))


async def pods_gone(
    api: KubeApi,
    *,
    label_selector: str,
    within: float,
    watch_timeout: int,
    backoff: Backoff,
) -> bool:
    """Wait until no selected pod is still running (none left, or only terminated ones: those
    neither run code nor count against a ResourceQuota). True if so `within` seconds.

    Raises `ExecutorOperationError` when the watch is refused (see `watch_objects`).
    """
    live: dict[str, Obj] = {}
    synced = False
    stream = watch_objects(
        api, "pods", label_selector=label_selector, timeout_seconds=watch_timeout, backoff=backoff
    )
    try:
        async with asyncio.timeout(within), aclosing(stream):
            async for event in stream:
                if event.type == "SYNCED":
                    synced = True
                elif event.type == "DELETED" or pod_terminated(event.obj):
                    live.pop(_uid(event.obj), None)
                else:
                    live[_uid(event.obj)] = event.obj
                if synced and not live:
                    return True
    except TimeoutError:
        return False
    return False  # pragma: no cover - the watch never ends by itself


async def sweep_cancelled_run(
    api: KubeApi, run_id: str, *, watch_timeout: int, backoff: Backoff
) -> None:
    """After a cancel: wait for the controller pod to be gone, then delete the run's task pods
    again (the ones nf-k8s resubmitted meanwhile). Logs, never raises (but is cancellable)."""
    try:
        stopped = await pods_gone(
            api,
            label_selector=jobs.controller_pod_selector(run_id),
            within=CANCEL_SWEEP_TIMEOUT,
            watch_timeout=watch_timeout,
            backoff=backoff,
        )
        if not stopped:
            logger.warning("run %s: controller pod still running after the cancel", run_id)
        await api.delete_pods(label_selector=jobs.task_pods_selector(run_id))
    except Exception as exc:
        logger.error("run %s: sweeping the cancelled run's pods failed: %s", run_id, exc)
    else:
        logger.info("run %s: swept the task pods after the controller stopped", run_id)
