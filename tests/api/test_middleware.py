"""`WebSocketShortcutMiddleware`: the stream's path goes straight to its endpoint, with the
server's own `receive` and `send`; everything else goes down the stack untouched."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from nextflow_k8s_service.api.middleware import WebSocketShortcutMiddleware

PATH = "/api/v1/pipeline/stream"


async def _receive() -> Message:
    return {"type": "websocket.disconnect"}


async def _server_send(message: Message) -> None:
    return None


async def _served_by(scope: Scope) -> tuple[str, Receive, Send]:
    seen: list[tuple[str, Receive, Send]] = []

    def recorder(name: str) -> object:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append((name, receive, send))

        return app

    middleware = WebSocketShortcutMiddleware(
        recorder("stack"),  # type: ignore[arg-type]
        path=PATH,
        endpoint=recorder("endpoint"),  # type: ignore[arg-type]
    )
    await middleware(scope, _receive, _server_send)
    (served,) = seen
    return served


async def test_the_stream_path_goes_to_the_endpoint_with_the_servers_own_callables() -> None:
    name, receive, send = await _served_by({"type": "websocket", "path": PATH})
    assert (name, receive, send) == ("endpoint", _receive, _server_send)


async def test_http_on_the_same_path_and_other_websockets_go_down_the_stack() -> None:
    assert (await _served_by({"type": "http", "path": PATH}))[0] == "stack"
    assert (await _served_by({"type": "websocket", "path": PATH + "/x"}))[0] == "stack"
    assert (await _served_by({"type": "lifespan"}))[0] == "stack"
