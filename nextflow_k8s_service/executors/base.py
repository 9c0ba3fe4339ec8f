"""The Executor protocol: what the pipeline manager needs from a place that runs the demo.

Both executors emit the same three event kinds (`run_events.py`), so the manager, the stream
and the page never care which one runs.

`events(run_id)` ends right after the terminal `StatusChanged`, which it always yields exactly
once (also after `cancel`, and with `unknown` when the executor loses track of the run).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol

from nextflow_k8s_service.models import CheckResult
from nextflow_k8s_service.run_events import (
    ExecutorEvent,
    LogEmitted,
    RunSpec,
    StatusChanged,
    TaskChanged,
    task_source,
)

# Re-exported: the event types live in `run_events` (below `kubernetes/` in the layering).
__all__ = [
    "Executor",
    "ExecutorEvent",
    "LogEmitted",
    "RunSpec",
    "StatusChanged",
    "TaskChanged",
    "task_source",
]


class Executor(Protocol):
    """Runs the demo somewhere. Implementations own their background work per run.

    Contract:
    - `start` returns once the run is submitted; it raises `ExecutorStartError` (refused: bad
      request, forbidden, conflict) or `ExecutorUnavailableError` (backend unreachable). After
      a raise nothing of the run is left running.
    - `events` may be called once per started or adopted run; it yields until (and including)
      the terminal `StatusChanged`. Cancelling the iterating task stops following the run but
      does not cancel the run itself.
    - `cancel` asks the run to stop; `events` then ends with `StatusChanged(CANCELLED)`.
      It is idempotent and safe for a run that has already finished.
    - `adopt` re-attaches to a run started by an earlier process (after a restart); it returns
      False when the run no longer exists, and then `events` must not be called. Log lines
      at or before `logs_since` (the last one already shown) are not emitted again.
    - `orphan_jobs` names runs of this service still running in the backend that no run id in
      `claimed` owns (for readiness); it may raise `ExecutorUnavailableError`.
    - `check` reports whether the backend is reachable (readiness), never raises.
    - `close` releases everything (all runs stop being followed; local runs are killed).
    """

    name: str
    #: True when runs go on without this process (Kubernetes Jobs): shutdown then leaves them
    #: to be re-adopted instead of cancelling them.
    runs_outlive_service: bool

    async def start(self, spec: RunSpec) -> None: ...

    def events(self, run_id: str) -> AsyncIterator[ExecutorEvent]: ...

    async def cancel(self, run_id: str) -> None: ...

    async def adopt(self, spec: RunSpec, *, logs_since: datetime | None = None) -> bool: ...

    async def check(self) -> CheckResult: ...

    async def orphan_jobs(self, claimed: set[str]) -> list[str]: ...

    async def close(self) -> None: ...
