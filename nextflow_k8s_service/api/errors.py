"""The one place where the service's exceptions become HTTP status codes."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from nextflow_k8s_service.errors import (
    ExecutorStartError,
    ExecutorUnavailableError,
    ForbiddenError,
    NoActiveRunError,
    RateLimitedError,
    ReportNotFoundError,
    RunNotFoundError,
    ServiceError,
    ShuttingDownError,
    StartsPausedError,
    StoreUnavailableError,
)

logger = logging.getLogger(__name__)

STATUS_CODES: dict[type[ServiceError], int] = {
    NoActiveRunError: 404,
    RunNotFoundError: 404,
    ReportNotFoundError: 404,
    ForbiddenError: 403,
    RateLimitedError: 429,
    StoreUnavailableError: 503,
    ExecutorUnavailableError: 503,
    ShuttingDownError: 503,
    ExecutorStartError: 502,
}
RETRY_AFTER_SECONDS = "5"


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for kind, code in STATUS_CODES.items() if isinstance(exc, kind)), 500)
    if status >= 500:
        logger.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc)
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
    if isinstance(exc, (RateLimitedError, StartsPausedError)):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error in %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(Exception, _unexpected)
