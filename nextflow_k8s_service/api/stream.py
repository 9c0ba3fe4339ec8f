"""`WS /api/v1/pipeline/stream`: the live event stream (SPEC §5).

Each connection runs a reader and a writer together; when either ends (the client left, or
the subscription was closed for lagging or shutdown) the other is cancelled. Disconnects are
normal flow. What clients send is read and ignored, so the connection notices a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.types import Send
from starlette.websockets import WebSocketDisconnect, WebSocketState

from nextflow_k8s_service.api.deps import ServicesDep
from nextflow_k8s_service.api.middleware import RAW_SEND_SCOPE_KEY
from nextflow_k8s_service.errors import RateLimitedError
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.utils.broadcaster import (
    CLOSE_TRY_AGAIN_LATER,
    Subscription,
    TooManyClientsError,
)
from nextflow_k8s_service.utils.tasks import TaskSupervisor

logger = logging.getLogger(__name__)
router = APIRouter(tags=["stream"])

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


@router.websocket("/pipeline/stream")
async def stream(websocket: WebSocket, services: ServicesDep) -> None:
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
    await websocket.accept()
    try:
        async with services.broadcaster.subscribe(services.view.snapshot) as subscription:
            await _serve(websocket, subscription, services.metrics)
    except TooManyClientsError:
        await _close(websocket, CLOSE_TRY_AGAIN_LATER, "too many clients")


async def _serve(websocket: WebSocket, subscription: Subscription, metrics: Metrics) -> None:
    tasks = TaskSupervisor("websocket")
    try:
        reader = tasks.spawn("ws-reader", _read(websocket))
        writer = tasks.spawn("ws-writer", _write(websocket, subscription, metrics))
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


async def _write(websocket: WebSocket, subscription: Subscription, metrics: Metrics) -> None:
    """Send queued frames until the subscription closes. A send blocked on a client that does
    not read is interrupted by the subscription closing (see `Subscription.closing`).

    Every frame already queued is taken in one wake-up and sent back to back, straight to the
    server's own `send` (see `RawSendMiddleware`): the text is the frame's shared encoding.
    A client that left ends the writer (the server raises an `OSError`, `ClientDisconnected`;
    Starlette's own `send` a `WebSocketDisconnect` or `RuntimeError`).
    """
    send = _server_send(websocket)
    try:
        while True:
            texts = await subscription.next_batch()
            if texts is None:
                return
            for text in texts:
                await send({"type": "websocket.send", "text": text})
            metrics.frames_sent.inc(len(texts))
    except (OSError, WebSocketDisconnect, RuntimeError):
        return


def _server_send(websocket: WebSocket) -> Send:
    send: Send | None = websocket.scope.get(RAW_SEND_SCOPE_KEY)
    return send if send is not None else websocket.send


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.client_state != WebSocketState.CONNECTED:
        return
    # A client that stopped reading may never let the close frame through: bounded wait.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await websocket.close(code=code, reason=reason)
