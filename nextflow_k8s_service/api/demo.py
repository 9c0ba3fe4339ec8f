"""`/api/v1/demo`: start, watch, cancel and look back at runs. Thin: parse, call, map."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request, Response, status

from nextflow_k8s_service.api.deps import ServicesDep
from nextflow_k8s_service.models import (
    ActiveResponse,
    CancelResponse,
    ErrorResponse,
    PreviewResponse,
    RunDetail,
    RunRequest,
    RunStartResponse,
    RunSummary,
    StatusResponse,
    TasksResponse,
)
from nextflow_k8s_service.services.preview import preview

router = APIRouter(prefix="/demo", tags=["demo"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
    502: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


def _check_batch_count(value: int, maximum: int, location: list[str | int]) -> None:
    if not 1 <= value <= maximum:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": location,
                    "msg": f"batch_count must be between 1 and {maximum}",
                    "type": "value_error",
                    "input": value,
                }
            ],
        )


@router.post(
    "/run",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": RunStartResponse, "description": "attached"}, **_ERRORS},
)
async def start_run(
    services: ServicesDep,
    request: Request,
    response: Response,
    body: Annotated[RunRequest | None, Body()] = None,
) -> RunStartResponse:
    """Start the demo, or attach to the run in progress (200, `attached: true`)."""
    settings = services.settings
    await services.check_rate("run", request, settings.rate_limit_runs_per_minute)
    body = body or RunRequest()
    batch_count = body.batch_count
    if batch_count is None:
        batch_count = settings.default_batch_count
    _check_batch_count(batch_count, settings.max_batch_count, ["body", "batch_count"])
    outcome = await services.manager.start(batch_count=batch_count, triggered_by=body.triggered_by)
    run_id = outcome.run.run_id
    status_url = f"/api/v1/demo/runs/{run_id}"
    if outcome.attached:
        response.status_code = status.HTTP_200_OK
    else:
        response.headers["Location"] = status_url
    return RunStartResponse(
        attached=outcome.attached,
        run=outcome.run.detail(),
        run_id=run_id,
        executor=outcome.run.executor,
        stream_url="/api/v1/pipeline/stream",
        status_url=status_url,
        cancel_token=outcome.cancel_token,
    )


@router.get("/preview")
async def get_preview(
    services: ServicesDep, batch_count: Annotated[int, Query(ge=1)]
) -> PreviewResponse:
    """Tasks, pods and peak resources a run of `batch_count` batches would use."""
    _check_batch_count(batch_count, services.settings.max_batch_count, ["query", "batch_count"])
    return preview(services.settings, batch_count)


@router.get("/limits")
async def get_limits(services: ServicesDep) -> dict[str, Any]:
    """Batch bounds and the executor, for clients that draw controls."""
    settings = services.settings
    return {
        "default_batch_count": settings.default_batch_count,
        "max_batch_count": settings.max_batch_count,
        "executor": settings.executor.value,
    }


@router.get("/status")
async def get_status(services: ServicesDep) -> StatusResponse:
    """The active run, else the most recent one."""
    active, run = await services.manager.get_status()
    return StatusResponse(active=active, run=run.detail() if run else None)


@router.get("/active")
async def get_active(services: ServicesDep) -> ActiveResponse:
    run = await services.manager.get_active()
    return ActiveResponse(active=run is not None, run_id=run.run_id if run else None)


@router.delete("/cancel", responses=_ERRORS)
async def cancel_run(
    services: ServicesDep,
    request: Request,
    x_cancel_token: Annotated[str | None, Header(max_length=256)] = None,
    authorization: Annotated[str | None, Header(max_length=512)] = None,
) -> CancelResponse:
    """Cancel the active run with its cancel token or the admin bearer token."""
    limit = services.settings.rate_limit_cancels_per_minute
    await services.check_rate("cancel", request, limit)
    admin = None
    if authorization and authorization.lower().startswith("bearer "):
        admin = authorization[7:].strip()
    run = await services.manager.cancel(cancel_token=x_cancel_token, admin_token=admin)
    return CancelResponse(
        run_id=run.run_id, status=run.status, cancelled=run.status.value == "cancelled"
    )


@router.get("/history")
async def get_history(
    services: ServicesDep, limit: Annotated[int, Query(ge=1, le=100)] = 100
) -> list[RunSummary]:
    """Finished runs, newest first."""
    return [run.summary() for run in await services.manager.history(limit)]


@router.get("/runs/{run_id}", responses=_ERRORS)
async def get_run(services: ServicesDep, run_id: str) -> RunDetail:
    return (await services.manager.get_run(run_id)).detail()


@router.get("/runs/{run_id}/tasks", responses=_ERRORS)
async def get_tasks(services: ServicesDep, run_id: str) -> TasksResponse:
    """The run's tasks: state, submitted/started/finished times, duration, exit code, reason."""
    run = await services.manager.get_run(run_id)
    return TasksResponse(run_id=run.run_id, tasks=run.progress.task_records)


@router.get("/runs/{run_id}/report", responses=_ERRORS)
async def get_report(services: ServicesDep, run_id: str) -> dict[str, Any]:
    """The run's `report.json`."""
    return await services.manager.get_report(run_id)
