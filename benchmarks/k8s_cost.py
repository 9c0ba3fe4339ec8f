"""Figure 5: Kubernetes API requests per run, for a short and a long run of 5 batches.

The Kubernetes executor, with its production timings, talks through the real
`kubernetes_asyncio` client over HTTP to the test suite's API fake (`tests/kubernetes/
fake_api.py`), which records every request. A scenario plays the cluster in real time: the
controller pod starts, GENERATE (i) pods run together, then ANALYZE (i), then REPORT, each
running pod (and the controller) printing a log line every second; the Job then completes.
The same scenario is stretched over two durations; watching (not polling) means the count of
requests must not depend on how long the run lasts, as long as it stays shorter than one
watch's server-side timeout (after which every watch is re-issued once per timeout).
"""

from __future__ import annotations

import asyncio
import collections
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.stats import ratio

BATCHES = 5
RUN_ID = "r0bench0cafe"
LOG_TICK_SECONDS = 1.0
EVENT_TIMEOUT = 30.0


class _Events:
    def __init__(self, events: Any) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Condition()
        self.task = asyncio.create_task(self._collect(events), name="k8s-bench-events")

    async def _collect(self, events: Any) -> None:
        async for event in events:
            async with self._changed:
                self.items.append(event)
                self._changed.notify_all()

    async def until(self, predicate: Callable[[list[Any]], bool]) -> None:
        async with asyncio.timeout(EVENT_TIMEOUT), self._changed:
            await self._changed.wait_for(lambda: predicate(self.items))


async def k8s_run(duration: float) -> dict[str, Any]:
    """One 5-batch run stretched over about `duration` seconds; the requests it cost."""
    # Imported here: only this figure needs the Kubernetes client and the test fake.
    from nextflow_k8s_service.config import load_settings
    from nextflow_k8s_service.executors.base import RunSpec, StatusChanged, TaskChanged
    from nextflow_k8s_service.executors.kubernetes import KubernetesExecutor
    from nextflow_k8s_service.kubernetes.client import create_api_client
    from nextflow_k8s_service.models import RunStatus, TaskState
    from tests.kubernetes.fake_api import FakeKubernetes

    fake = FakeKubernetes()
    await fake.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-k8s-") as tmp:
            config = Path(tmp) / "kubeconfig.json"
            config.write_text(fake.kubeconfig())
            settings = load_settings(
                executor="kubernetes",
                kubeconfig=config,
                kube_context="fake",
                workspace_dir=Path(tmp) / "workspace",
            )
            api_client = await create_api_client(settings)
            executor = KubernetesExecutor(settings=settings, api_client=api_client)
            started = time.monotonic()
            try:
                await executor.start(RunSpec(RUN_ID, BATCHES, 100, 0, 0))
                events = _Events(executor.events(RUN_ID))
                controller = fake.controller_pod(RUN_ID)
                fake.set_pod_phase(controller, "Running")
                await events.until(
                    lambda items: any(
                        isinstance(e, StatusChanged) and e.status is RunStatus.RUNNING
                        for e in items
                    )
                )

                def reached(process: str, index: int | None, state: Any) -> Callable[..., bool]:
                    wanted = (process, index, state)
                    return lambda items: any(
                        isinstance(item, TaskChanged)
                        and (item.process, item.index, item.state) == wanted
                        for item in items
                    )

                async def phase(process: str, indices: list[int | None], seconds: float) -> None:
                    pods = {index: fake.add_task_pod(RUN_ID, process, index) for index in indices}
                    for index in indices:
                        await events.until(reached(process, index, TaskState.SUBMITTED))
                    for pod in pods.values():
                        fake.set_pod_phase(pod, "Running")
                    for index in indices:
                        await events.until(reached(process, index, TaskState.RUNNING))
                    ticks = max(1, round(seconds / LOG_TICK_SECONDS))
                    for tick in range(ticks):
                        for index, pod in pods.items():
                            fake.append_log(pod, f"{process} ({index}): step {tick + 1}/{ticks}")
                        fake.append_log(controller, f"[{process}] {len(pods)} tasks running")
                        await asyncio.sleep(seconds / ticks)
                    for pod in pods.values():
                        fake.set_pod_phase(pod, "Succeeded")
                    for index in indices:
                        await events.until(reached(process, index, TaskState.SUCCEEDED))
                    for pod in pods.values():
                        fake.delete("pods", pod)  # k8s.cleanup removes finished task pods

                batches: list[int | None] = list(range(1, BATCHES + 1))
                await phase("GENERATE", batches, duration * 0.45)
                await phase("ANALYZE", batches, duration * 0.45)
                await phase("REPORT", [None], duration * 0.1)
                fake.append_log(controller, "Completed at: now")
                job = f"nextflow-{RUN_ID}"
                fake.set_job_conditions(job, ("SuccessCriteriaMet", "CompletionsReached", ""))
                fake.set_pod_phase(controller, "Succeeded")
                fake.set_job_conditions(job, ("Complete", "CompletionsReached", ""))
                async with asyncio.timeout(EVENT_TIMEOUT):
                    await events.task
                final = events.items[-1]
                elapsed = time.monotonic() - started
            finally:
                await executor.close()
                await api_client.close()
    finally:
        await fake.stop()
    by_call = collections.Counter(f"{verb} {resource}" for verb, _, resource in fake.calls)
    return {
        "target_seconds": duration,
        "run_seconds": elapsed,
        "status": str(getattr(final, "status", final)),
        "requests": len(fake.calls),
        "by_call": dict(sorted(by_call.items())),
    }


async def figure_k8s_cost(sizes: Any) -> dict[str, Any]:
    short = await k8s_run(sizes.k8s_short_seconds)
    long = await k8s_run(sizes.k8s_long_seconds)
    return {
        "batches": BATCHES,
        "short_seconds": short["run_seconds"],
        "long_seconds": long["run_seconds"],
        "short_requests": short["requests"],
        "long_requests": long["requests"],
        "requests_ratio": ratio(long["requests"], short["requests"]),
        "runs": {"short": short, "long": long},
    }
