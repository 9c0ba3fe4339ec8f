"""Encoded JSON bodies of the read endpoints, reused while what they show is unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from starlette.responses import Response


class BodyCache:
    """The last body each read endpoint encoded, with the values it was encoded from.

    A read whose values compare equal (`==`, field by field and deeply for records) to the
    last ones of the same endpoint gets the same bytes without building and encoding the
    response model again: a page polling `/demo/status` while nothing changed pays for a
    comparison, which is cheap because the store's reads share the nested objects of an
    unchanged record. Any change to a compared value (a task's state, the run's status, a
    new run) makes the next read encode afresh. Values that compare equal must encode equally:
    true of the records, whose times are all UTC.

    One entry per endpoint, so the cache holds at most a few bodies. Owned by one app (one
    event loop): no locking.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[Any, bytes]] = {}

    def body(self, endpoint: str, key: Any, build: Callable[[], BaseModel]) -> bytes:
        """The JSON of `build()`, encoded again only when `key` differs from the last key of
        `endpoint`. It is the JSON FastAPI would write for the model: the same serializer."""
        last = self._last.get(endpoint)
        if last is not None and last[0] == key:
            return last[1]
        encoded = build().model_dump_json().encode()
        self._last[endpoint] = (key, encoded)
        return encoded

    def response(
        self, endpoint: str, key: Any, build: Callable[[], BaseModel], status_code: int = 200
    ) -> Response:
        """`body` as an `application/json` response."""
        body = self.body(endpoint, key, build)
        return Response(body, status_code=status_code, media_type="application/json")
