"""Liveness, readiness and metrics (served at the root and under `/api/v1`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from nextflow_k8s_service import __version__
from nextflow_k8s_service.api.deps import ServicesDep
from nextflow_k8s_service.config import ExecutorKind
from nextflow_k8s_service.models import CheckResult, HealthResponse, ReadinessResponse
from nextflow_k8s_service.services.pipeline_manager import CHECK_DEADLINE_SECONDS
from nextflow_k8s_service.services.workspace_probe import WorkspaceProbe

router = APIRouter(tags=["health"])

# One probe per workspace, so that a hung volume holds at most one probe thread.
_workspace_probes: dict[tuple[Path, bool], WorkspaceProbe] = {}


def _workspace_probe(directory: Path, *, writable: bool) -> WorkspaceProbe:
    key = (directory, writable)
    if key not in _workspace_probes:
        _workspace_probes[key] = WorkspaceProbe(directory, writable=writable)
    return _workspace_probes[key]


@router.get("/health")
async def health() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse(status="ok", version=__version__)


@router.get(
    "/healthz", response_model=ReadinessResponse, responses={503: {"model": ReadinessResponse}}
)
async def readiness(services: ServicesDep) -> JSONResponse:
    """Readiness: the state store and the executor are reachable, the workspace is writable
    (local mode; readable in Kubernetes mode, where the service only reads reports) and the
    replica is not draining; 503 (with each check's reason) otherwise. Checks run together,
    each with a deadline of about a second."""
    settings = services.settings
    # In Kubernetes mode the service pod mounts the workspace read-only (k8s/base).
    probe = _workspace_probe(
        settings.workspace_dir, writable=settings.executor == ExecutorKind.LOCAL
    )
    checks, workspace = await asyncio.gather(
        services.manager.readiness(), probe.check(CHECK_DEADLINE_SECONDS)
    )
    checks["workspace"] = workspace
    checks["accepting_runs"] = CheckResult(
        ok=not services.manager.draining,
        detail="shutting down" if services.manager.draining else None,
    )
    ok = all(check.ok for check in checks.values())
    body = ReadinessResponse(status="ok" if ok else "degraded", checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus exposition."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
