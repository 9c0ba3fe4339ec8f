"""`/api/v1/demo`: start, watch, cancel and look back at runs. Thin: parse, call, map."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, HTTPException, Query, Request, Response, status
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from nextflow_k8s_service.api.body import parse_body
from nextflow_k8s_service.api.deps import ServicesDep
from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.models import (
    ActiveResponse,
    CancelResponse,
    ErrorResponse,
    LimitsResponse,
    PreviewResponse,
    Report,
    RunDetail,
    RunHistory,
    RunRecord,
    RunRequest,
    RunStartResponse,
    RunSummary,
    StatusResponse,
    TasksResponse,
)
from nextflow_k8s_service.services.preview import preview

router = APIRouter(prefix="/demo", tags=["demo"])


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"model": ErrorResponse, "description": description}
    if retry_after:
        header = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        response["headers"] = {"Retry-After": header}
    return response


Responses = dict[int | str, dict[str, Any]]

# The error responses each operation really returns (422 is documented by FastAPI itself).
_FORBIDDEN: Responses = {403: _error("Neither the run's cancel token nor the admin token.")}
_NOT_FOUND: Responses = {404: _error("No such run, report or active run.")}
_TOO_LARGE: Responses = {413: _error("Request body over MAX_REQUEST_BODY_BYTES.")}
_RATE_LIMITED: Responses = {429: _error("Over the client's budget.", retry_after=True)}
_START_FAILED: Responses = {502: _error("The executor could not start the run.")}
_UNAVAILABLE: Responses = {
    503: _error("State store or executor unavailable, or shutting down.", retry_after=True)
}
_INVALID: Responses = {
    422: {
        "description": "Validation Error",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
        },
    }
}
_STRING = {"type": "string"}
# POST /demo/run reads its body itself (see start_run); this documents it.
_RUN_REQUEST_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": RunRequest.model_json_schema()}},
    }
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
    response_model=RunStartResponse,
    responses={
        200: {"model": RunStartResponse, "description": "Attached to the run in progress."},
        202: {
            "description": "Started a run.",
            "headers": {"Location": {"description": "The run's URL.", "schema": _STRING}},
        },
        **_TOO_LARGE,
        **_INVALID,
        **_RATE_LIMITED,
        **_START_FAILED,
        **_UNAVAILABLE,
    },
    openapi_extra=_RUN_REQUEST_BODY,
)
async def start_run(
    services: ServicesDep, request: Request, response: Response
) -> RunStartResponse | Response:
    """Start the demo, or attach to the run in progress (200, `attached: true`)."""
    settings = services.settings
    # The rate limit comes before the body is read: a client over its budget costs no parsing.
    await services.check_rate("run", request, settings.rate_limit_runs_per_minute)
    body = await parse_body(request, RunRequest) or RunRequest()
    batch_count = body.batch_count
    if batch_count is None:
        batch_count = settings.default_batch_count
    _check_batch_count(batch_count, settings.max_batch_count, ["body", "batch_count"])
    outcome = await services.manager.start(batch_count=batch_count, triggered_by=body.triggered_by)
    run = outcome.run
    if outcome.attached:
        # A crowd pressing start during a run all get the same answer: encoded once per change.
        return services.bodies.response(
            "attach", run, lambda: _start_response(run, attached=True), status.HTTP_200_OK
        )
    response.headers["Location"] = _run_url(run.run_id)
    return _start_response(run, attached=False, cancel_token=outcome.cancel_token)


def _run_url(run_id: str) -> str:
    return f"/api/v1/demo/runs/{run_id}"


def _start_response(
    run: RunRecord, *, attached: bool, cancel_token: str | None = None
) -> RunStartResponse:
    return RunStartResponse(
        attached=attached,
        run=run.detail(),
        run_id=run.run_id,
        executor=run.executor,
        stream_url="/api/v1/pipeline/stream",
        status_url=_run_url(run.run_id),
        cancel_token=cancel_token,
    )


@router.get("/preview", response_model=PreviewResponse, responses=_INVALID)
async def get_preview(services: ServicesDep, batch_count: Annotated[int, Query(ge=1)]) -> Response:
    """Tasks, pods and peak resources a run of `batch_count` batches would use."""
    settings = services.settings
    _check_batch_count(batch_count, settings.max_batch_count, ["query", "batch_count"])
    return services.bodies.response("preview", batch_count, lambda: preview(settings, batch_count))


@router.get("/limits")
async def get_limits(services: ServicesDep) -> LimitsResponse:
    """Batch bounds and the executor, for clients that draw controls."""
    settings = services.settings
    return LimitsResponse(
        default_batch_count=settings.default_batch_count,
        max_batch_count=settings.max_batch_count,
        executor=settings.executor.value,
    )


@router.get("/status", response_model=StatusResponse, responses=_UNAVAILABLE)
async def get_status(services: ServicesDep) -> Response:
    """The active run, else the most recent one."""
    active, run = await services.manager.get_status()
    # Polled by every open page: encoded again only when the run changed.
    return services.bodies.response(
        "status",
        (active, run),
        lambda: StatusResponse(active=active, run=run.detail() if run else None),
    )


@router.get("/active", responses=_UNAVAILABLE)
async def get_active(services: ServicesDep) -> ActiveResponse:
    run = await services.manager.get_active()
    return ActiveResponse(active=run is not None, run_id=run.run_id if run else None)


@router.delete("/cancel", responses={**_FORBIDDEN, **_NOT_FOUND, **_RATE_LIMITED, **_UNAVAILABLE})
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


@router.get("/history", response_model=list[RunSummary], responses=_UNAVAILABLE)
async def get_history(
    services: ServicesDep, limit: Annotated[int, Query(ge=1, le=100)] = 100
) -> Response:
    """Finished runs, newest first."""
    runs = await services.manager.history(limit)
    return services.bodies.response(
        "history", runs, lambda: RunHistory([run.summary() for run in runs])
    )


@router.get("/runs/{run_id}", response_model=RunDetail, responses={**_NOT_FOUND, **_UNAVAILABLE})
async def get_run(services: ServicesDep, run_id: str) -> Response:
    run = await services.manager.get_run(run_id)
    return services.bodies.response("run", run, run.detail)


@router.get(
    "/runs/{run_id}/tasks",
    response_model=TasksResponse,
    responses={**_NOT_FOUND, **_UNAVAILABLE},
)
async def get_tasks(services: ServicesDep, run_id: str) -> Response:
    """The run's tasks: state, submitted/started/finished times, duration, exit code, reason."""
    run = await services.manager.get_run(run_id)
    return services.bodies.response(
        "tasks", run, lambda: TasksResponse(run_id=run.run_id, tasks=run.progress.task_records)
    )


@router.get(
    "/runs/{run_id}/report",
    responses={200: {"model": Report, "description": "The report."}, **_NOT_FOUND},
)
async def get_report(services: ServicesDep, run_id: str) -> JSONResponse:
    """The run's `report.json`, as the REPORT step wrote it (checked against its schema)."""
    data = await services.manager.get_report(run_id)
    try:
        Report.model_validate(data)
    except ValidationError:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"run {run_id!r} has no readable report"
        ) from None
    return JSONResponse(data)


def document_limits(app: FastAPI, settings: Settings) -> None:
    """Make the app's OpenAPI document state this deployment's `batch_count` bounds."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path, operations in schema["paths"].items():
                if path.endswith(f"{router.prefix}/run") and "post" in operations:
                    body = operations["post"]["requestBody"]["content"]["application/json"]
                    bounds = body["schema"]["properties"]["batch_count"]["anyOf"][0]
                    bounds["maximum"] = settings.max_batch_count
                for parameter in operations.get("get", {}).get("parameters", []):
                    if parameter["name"] == "batch_count":
                        parameter["schema"]["maximum"] = settings.max_batch_count
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
