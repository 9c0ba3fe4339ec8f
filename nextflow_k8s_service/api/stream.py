"""`WS /api/v1/pipeline/stream`: the live event stream (SPEC §5).

`stream_endpoint` is a plain ASGI app that the outermost middleware hands this path to
(`WebSocketShortcutMiddleware`): a connection lives for minutes to hours, and every layer it
passes through would keep its own frame alive for all that time.

Under the shipped server a connection offers a frame sink (connection_guards.py): the
broadcaster writes frames into it directly, and the endpoint only reads what the client sends
(ignored, so the connection notices a close) until the client leaves or the subscription is
closed (lagging, shutdown), which the sink turns into a disconnect. Under another ASGI server a
reader and a writer run together; when either ends the other is cancelled. Disconnects are
normal flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from nextflow_k8s_service.api.deps import Services
from nextflow_k8s_service.errors import RateLimitedError
from nextflow_k8s_service.utils.broadcaster import (
    CLOSE_TRY_AGAIN_LATER,
    FRAME_SINK_EXTENSION,
    FrameSink,
    Subscription,
    TooManyClientsError,
)
from nextflow_k8s_service.utils.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

CLOSE_TOO_BIG = 1009
#: Largest message accepted from a client (clients are not expected to send any). uvicorn
#: enforces it as `ws_max_size` (server.py); the reader checks it too for other servers.
MAX_INCOMING_MESSAGE_BYTES = 4096
#: How long `_close` waits for the close to go through. Under the shipped server the
#: connection is aborted sooner (connection_guards.WEBSOCKET_ABORT_SECONDS), and the client
#: stays subscribed (counted) until then; this only bounds the wait under other servers.
CLOSE_TIMEOUT_SECONDS = 5.0


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """Browsers always send Origin; non-browser clients may omit it and are let through."""
    return origin is None or "*" in allowed or origin in allowed


async def stream_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The stream, as an ASGI app for its WebSocket scopes (main.py routes them here)."""
    websocket = WebSocket(scope, receive, send)
    services: Services = scope["app"].state.services
    settings = services.settings
    if not origin_allowed(websocket.headers.get("origin"), settings.allowed_origins):
        services.metrics.websocket_rejected.labels("origin").inc()
        await websocket.send_denial_response(
            JSONResponse({"detail": "origin not allowed"}, status_code=403)
        )
        return
    try:
        limit = settings.rate_limit_stream_connects_per_minute
        await services.check_rate("stream", websocket, limit)
    except RateLimitedError as exc:
        services.metrics.websocket_rejected.labels("rate_limited").inc()
        retry_after = str(max(1, math.ceil(exc.retry_after)))
        await websocket.send_denial_response(
            JSONResponse(
                {"detail": str(exc)}, status_code=429, headers={"Retry-After": retry_after}
            )
        )
        return
    sink: FrameSink | None = websocket.scope.get("extensions", {}).get(FRAME_SINK_EXTENSION)
    await websocket.accept()
    try:
        async with services.broadcaster.subscribe(services.view.snapshot, sink) as subscription:
            if sink is None:
                await _serve(websocket, subscription)
                return
            # Until the connection is gone: a client being closed still counts until then.
            while (close := await _read(websocket))[0] is not None:
                subscription.close(close[0], close[1] or "")
    except TooManyClientsError:
        await _close(websocket, CLOSE_TRY_AGAIN_LATER, "too many clients")


async def _serve(websocket: WebSocket, subscription: Subscription) -> None:
    tasks = TaskSupervisor("websocket")
    try:
        reader = tasks.spawn("ws-reader", _read(websocket))
        writer = tasks.spawn("ws-writer", _write(websocket, subscription))
        closing = tasks.spawn("ws-closing", subscription.closing.wait())
        done, _ = await asyncio.wait((reader, writer, closing), return_when=asyncio.FIRST_COMPLETED)
    finally:
        await tasks.close()
    code, reason = subscription.close_reason or (None, None)
    if reader in done and not reader.cancelled() and reader.exception() is None:
        code, reason = reader.result()
    if code is not None:
        await _close(websocket, code, reason or "")


async def _read(websocket: WebSocket) -> tuple[int | None, str | None]:
    """Drain what the client sends; returns the close to perform (None: the client left)."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return None, None
            payload = message.get("text") or message.get("bytes") or ""
            if len(payload) > MAX_INCOMING_MESSAGE_BYTES:
                return CLOSE_TOO_BIG, "message too big"
    except (WebSocketDisconnect, RuntimeError):
        return None, None  # the connection is gone (Starlette raises either)


async def _write(websocket: WebSocket, subscription: Subscription) -> None:
    """Send queued frames until the subscription closes (without a frame sink: servers other
    than the shipped one). A send blocked on a client that does not read is interrupted by
    the subscription closing (see `Subscription.closing`); a client that left ends the writer
    (the server raises an `OSError`; Starlette a `WebSocketDisconnect` or `RuntimeError`)."""
    try:
        while True:
            texts = await subscription.next_batch()
            if texts is None:
                return
            for text in texts:
                await websocket.send_text(text)
    except (OSError, WebSocketDisconnect, RuntimeError):
        return


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.client_state != WebSocketState.CONNECTED:
        return
    # A client that stopped reading may never let the close frame through: bounded wait.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await websocket.close(code=code, reason=reason)
