"""Strict JSON request bodies: every malformed body is one 422, never a 400 or a 500.

FastAPI's own body parsing answers 400 for a non-UTF-8 or very deeply nested body and lets
`NaN`, `Infinity` and `1e400` through as floats that its error handler cannot encode. Handlers
that read their body through `parse_body` instead get one rule: a body that is not UTF-8 JSON
made of finite numbers, or that does not fit the model, raises `RequestValidationError` (422).
It also lets a handler check the rate limit before the body is read at all.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class _NonFiniteNumberError(ValueError):
    pass


def _reject_constant(name: str) -> NoReturn:
    raise _NonFiniteNumberError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteNumberError(f"{text} is out of range for a number")
    return value


def _invalid(message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "json_invalid", "loc": ["body"], "msg": message}])


def decode_json(raw: bytes) -> Any:
    """The JSON value of `raw`; raises `RequestValidationError` for anything but UTF-8 JSON
    with finite numbers. An empty body is None."""
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("body is not valid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except _NonFiniteNumberError as exc:
        raise _invalid(f"JSON numbers must be finite: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _invalid(f"malformed JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        # The decoder recurses once per nesting level; Python's recursion limit stops it.
        raise _invalid("JSON nested too deeply") from None


async def parse_body(request: Request, model: type[ModelT]) -> ModelT | None:
    """The request body as `model`, or None when the body is empty (a JSON `null` is not an
    object, and is refused like any other value that does not fit the model)."""
    raw = await request.body()
    if not raw:
        return None
    data = decode_json(raw)
    if data is None:
        raise _invalid("the body must be a JSON object, not null")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ["body", *error["loc"]]}
            for error in exc.errors(include_url=False, include_context=False)
        ]
        raise RequestValidationError(errors) from None
