"""The one place where the service's exceptions become HTTP status codes.

Exceptions nothing here maps are answered 500 by `SecurityHeadersMiddleware` (middleware.py),
which sits inside Starlette's outermost error middleware and so can add the security headers.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
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


#: Longest echoed `input` of a validation error; longer strings are cut.
MAX_ECHOED_INPUT_CHARS = 200


def _echoable(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str | int | bool)
        or (isinstance(value, float) and math.isfinite(value))
    )


def _error_entry(error: Any) -> dict[str, Any]:
    """One validation error as JSON-safe data: only scalar inputs are echoed, strings cut,
    so neither a non-finite float nor a deeply nested value can break the answer."""
    entry = {
        "type": str(error.get("type", "value_error")),
        "loc": [part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
        "msg": str(error.get("msg", "invalid value")),
    }
    value = error.get("input")
    if _echoable(value):
        entry["input"] = value[:MAX_ECHOED_INPUT_CHARS] if isinstance(value, str) else value
    return entry


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": [_error_entry(error) for error in errors]}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
