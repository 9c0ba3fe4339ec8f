"""`/api/v1/demo/runs/{id}/logs`, `/runs/{id}/events` and `/active/events`: a run's archive
and a live stream for HTTP clients (`curl -N`). Thin: parse, call `RunArchive`, encode.

`/events` writes one frame per line as NDJSON, or as Server-Sent Events when the client
accepts `text/event-stream` (`id:` the event id, `event:` the type, `data:` the JSON). Each
frame is exactly the JSON object a WebSocket client receives for that event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.types import Message, Send

from nextflow_k8s_service.api.deps import ServicesDep
from nextflow_k8s_service.errors import NoActiveRunError, StoreUnavailableError
from nextflow_k8s_service.models import ErrorResponse, LogsResponse
from nextflow_k8s_service.services.run_archive import (
    DEFAULT_LOG_LIMIT,
    MAX_LOG_LIMIT,
    ArchivedFrame,
)
from nextflow_k8s_service.utils.broadcaster import TooManyClientsError

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/demo", tags=["demo"])

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
#: A stream whose client does not take a chunk within this time is ended (a client that
#: stopped reading must not keep its follower, and its place under the client cap, forever).
SEND_TIMEOUT_SECONDS = 30.0

Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


_NOT_FOUND: Responses = {404: _error("No such run (or no active run).")}
_LIMITED: Responses = {
    429: _error("Over the client's stream-connect budget (Retry-After)."),
    503: _error("Too many stream clients, the state store unavailable, or shutting down."),
}
_STREAM: Responses = {
    200: {
        "description": "One frame per line (NDJSON), or Server-Sent Events.",
        "content": {NDJSON: {"schema": {"type": "string"}}, SSE: {"schema": {"type": "string"}}},
    }
}


class _FrameStream(StreamingResponse):
    """A streaming response whose every send must go through within `SEND_TIMEOUT_SECONDS`.
    However it ends (done, timed out, the client left: cancelled), its frames are closed at
    once, so a follower's subscription is released then, not when the generator is collected.
    """

    def __init__(self, frames: AsyncGenerator[str, None], **kwargs: Any) -> None:
        super().__init__(frames, **kwargs)
        self._frames = frames

    async def stream_response(self, send: Send) -> None:
        async def bounded(message: Message) -> None:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await send(message)

        try:
            await super().stream_response(bounded)
        except TimeoutError:
            logger.info("ended a run stream whose client stopped reading")
        finally:
            await self._frames.aclose()


def _after(after: int | None, last_event_id: str) -> int:
    if after is not None:
        return after
    return int(last_event_id) if last_event_id else 0


async def _lines(
    frames: AsyncGenerator[ArchivedFrame, None], sse: bool
) -> AsyncGenerator[str, None]:
    async with contextlib.aclosing(frames):
        try:
            async for frame in frames:
                if sse:
                    yield f"id: {frame.id}\nevent: {frame.type}\ndata: {frame.text}\n\n"
                else:
                    yield frame.text + "\n"
        except TooManyClientsError:
            return  # the cap filled between the check and the subscription: end here
        except StoreUnavailableError as exc:
            # The response has started: ending it is all that is left; `after` resumes it.
            logger.warning("ended a run stream: %s", exc)


async def _stream(
    services: ServicesDep,
    request: Request,
    run_id: str,
    *,
    after: int,
    follow: bool,
) -> StreamingResponse:
    settings = services.settings
    await services.check_rate("stream", request, settings.rate_limit_stream_connects_per_minute)
    await services.manager.get_run(run_id)  # 404 for a run unknown or forgotten
    if follow and services.broadcaster.client_count >= settings.max_websocket_clients:
        services.metrics.websocket_rejected.labels("too_many_clients").inc()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="too many stream clients")
    archive = services.archive
    frames = archive.follow(run_id, after) if follow else archive.frames(run_id, after)
    sse = SSE in request.headers.get("accept", "")
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return _FrameStream(_lines(frames, sse), media_type=SSE if sse else NDJSON, headers=headers)


AfterQuery = Annotated[
    int | None,
    Query(ge=0, description="Only frames with an event id above this (resume); 0: from the start."),
]
FollowQuery = Annotated[
    bool, Query(description="Keep streaming live frames until the run's `complete`.")
]
# Not nullable: an absent header is "" (a header has no null).
LastEventId = Annotated[
    str,
    Header(pattern=r"^[0-9]{0,18}$", description="An event id to resume after (SSE); as `after`."),
]
_EVENTS_RESPONSES: Responses = {**_STREAM, **_NOT_FOUND, **_LIMITED}


@router.get("/runs/{run_id}/events", responses=_EVENTS_RESPONSES, response_model=None)
async def get_events(
    services: ServicesDep,
    request: Request,
    run_id: str,
    after: AfterQuery = None,
    follow: FollowQuery = False,
    last_event_id: LastEventId = "",
) -> StreamingResponse:
    """The run's recorded frames in order (NDJSON; SSE on `Accept: text/event-stream`), each as
    a WebSocket client receives it with `seq` = `id` = the event id; `follow=true` then streams
    live frames until `complete`."""
    resume = _after(after, last_event_id)
    return await _stream(services, request, run_id, after=resume, follow=follow)


@router.get("/active/events", responses=_EVENTS_RESPONSES, response_model=None)
async def get_active_events(
    services: ServicesDep,
    request: Request,
    after: AfterQuery = None,
    follow: FollowQuery = True,
    last_event_id: LastEventId = "",
) -> StreamingResponse:
    """The active run's frames from its start, live until its `complete` (`follow` defaults to
    true here); 404 when no run is active."""
    run = await services.manager.get_active()
    if run is None:
        raise NoActiveRunError("no run is active")
    resume = _after(after, last_event_id)
    return await _stream(services, request, run.run_id, after=resume, follow=follow)


@router.get(
    "/runs/{run_id}/logs", responses={**_NOT_FOUND, 503: _error("State store unavailable.")}
)
async def get_logs(
    services: ServicesDep,
    run_id: str,
    source: Annotated[
        str | None, Query(max_length=200, description="Only this source: `GENERATE (3)`.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LOG_LIMIT, description="The last this many matching lines.")
    ] = DEFAULT_LOG_LIMIT,
) -> LogsResponse:
    """The run's log lines from its bounded archive (the last ones), of one source if asked,
    with the number of lines the archive dropped."""
    run = await services.manager.get_run(run_id)
    found = await services.archive.log_lines(run.run_id, source=source, limit=limit)
    return LogsResponse(
        run_id=run.run_id,
        source=source,
        lines=found.lines,
        truncated=found.truncated,
        dropped_lines=found.dropped_lines,
    )
