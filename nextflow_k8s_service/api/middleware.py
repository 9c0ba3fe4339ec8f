"""Pure ASGI middleware: request-body limits, security headers, the last-resort 500 and the
stream's short way in."""

from __future__ import annotations

import json
import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Only the app's own files; the stream connects back to the same origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_CSP_HEADER = (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())
# The OpenAPI UI loads its own script bundle; it gets the other headers but not the page's CSP.
_CSP_EXEMPT = ("/docs",)

logger = logging.getLogger(__name__)


class WebSocketShortcutMiddleware:
    """Serves WebSocket scopes for `path` with `endpoint` (an ASGI app) directly, outermost,
    ahead of the rest of the stack: error and exception middleware, routing and dependency
    injection each keep a coroutine frame (and Starlette's routing a copy of the scope, FastAPI
    three exit stacks) alive for as long as a connection lasts, which made up half of what one
    stream client cost in memory (benchmarks, figure 8). The endpoint answers for its own
    errors. Every other scope passes through untouched."""

    def __init__(self, app: ASGIApp, *, path: str, endpoint: ASGIApp) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == self.path:
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response, and answers an exception nothing
    else handled with one logged traceback and a JSON 500 that carries them too (Starlette's
    own error middleware sits outside all user middleware, so its 500 would lack them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with_csp = not scope["path"].startswith(_CSP_EXEMPT)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if with_csp:
                    headers.append(_CSP_HEADER)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            return  # the client left while its request was read: no one to answer
        except Exception:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope["path"])
            if started:
                raise  # the response is under way: only the server can end it now
            body = b'{"detail":"internal error"}'
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_with_headers({"type": "http.response.body", "body": body})


class BodySizeLimitMiddleware:
    """Answer 413 for a body over `max_bytes`, by Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(send)
            return
        received = 0
        rejected = False

        async def guarded_receive() -> Message:
            # Over the limit: answer 413 at once and tell the app the client left, so it
            # stops reading; whatever it does after that is not sent.
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    rejected = True
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not rejected:
                raise

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
