"""`RawSendMiddleware`: the stream's writer gets the server's own `send`, nothing else changes."""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Scope, Send

from nextflow_k8s_service.api.middleware import RAW_SEND_SCOPE_KEY, RawSendMiddleware


async def _receive() -> Message:
    return {"type": "websocket.disconnect"}


async def _server_send(message: Message) -> None:
    return None


async def _seen_by_app(scope_type: str) -> tuple[dict[str, Any], Send]:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["scope"], seen["send"] = scope, send

    await RawSendMiddleware(app)({"type": scope_type}, _receive, _server_send)
    return seen["scope"], seen["send"]


async def test_a_websocket_scope_carries_the_servers_send() -> None:
    scope, send = await _seen_by_app("websocket")
    assert scope[RAW_SEND_SCOPE_KEY] is _server_send
    assert send is _server_send


async def test_other_scopes_pass_through_untouched() -> None:
    scope, send = await _seen_by_app("http")
    assert RAW_SEND_SCOPE_KEY not in scope
    assert send is _server_send
