"""Liveness, readiness and metrics (served at the root and under `/api/v1`)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from nextflow_k8s_service import __version__
from nextflow_k8s_service.api.deps import ServicesDep
from nextflow_k8s_service.models import CheckResult, HealthResponse, ReadinessResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse(status="ok", version=__version__)


@router.get(
    "/healthz", response_model=ReadinessResponse, responses={503: {"model": ReadinessResponse}}
)
async def readiness(services: ServicesDep) -> JSONResponse:
    """Readiness: the state store and the executor are reachable and the replica is not
    draining; 503 (with each check's reason) otherwise."""
    checks: dict[str, CheckResult] = await services.manager.readiness()
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
