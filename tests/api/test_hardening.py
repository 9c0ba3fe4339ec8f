"""Abuse limits, origins, size limits, security headers and the shutdown sequence (issue 7)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from nextflow_k8s_service.services.state_store import MemoryStateStore
from tests.conftest import SettingsFactory, StreamReader, step_processes
from tests.live_server import LiveServer

API = "/api/v1/demo"


async def _read_until_closed(stream: StreamReader) -> None:
    while True:
        await stream.next(timeout=10)


async def _client(server: LiveServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.http_url, timeout=30)


async def test_run_and_cancel_budgets_answer_429_with_retry_after(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    settings = make_settings(
        demo_generate_seconds=30, rate_limit_runs_per_minute=2, rate_limit_cancels_per_minute=1
    )
    server: LiveServer = await start_server(settings)
    async with await _client(server) as client:
        first = await client.post(f"{API}/run", json={"batch_count": 1})
        assert (await client.post(f"{API}/run", json={"batch_count": 1})).status_code == 200
        limited = await client.post(f"{API}/run", json={"batch_count": 1})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "too many run requests" in limited.json()["detail"]
        # Health, readiness and metrics are never limited.
        for path in ("/health", "/healthz", "/metrics") * 5:
            assert (await client.get(path)).status_code == 200
        token = first.json()["cancel_token"]
        assert (
            await client.delete(f"{API}/cancel", headers={"X-Cancel-Token": "x"})
        ).status_code == 403
        again = await client.delete(f"{API}/cancel", headers={"X-Cancel-Token": token})
        assert again.status_code == 429 and "retry-after" in again.headers
        # Someone else still has a budget of their own.
        other = await client.post(
            f"{API}/run", json={"batch_count": 1}, headers={"X-Forwarded-For": "198.51.100.7"}
        )
        assert other.status_code == 429, "X-Forwarded-For from an untrusted peer is ignored"


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    settings = make_settings(
        demo_generate_seconds=30, rate_limit_runs_per_minute=1, trusted_proxies="127.0.0.1"
    )
    server: LiveServer = await start_server(settings)
    async with await _client(server) as client:

        async def post(forwarded_for: str) -> int:
            response = await client.post(
                f"{API}/run", json={"batch_count": 1}, headers={"X-Forwarded-For": forwarded_for}
            )
            return response.status_code

        assert await post("203.0.113.5") == 202
        assert await post("203.0.113.5") == 429
        assert await post("203.0.113.6") == 200  # attaches: another client's budget
        # A client cannot pick its address: only the rightmost untrusted hop counts.
        assert await post("203.0.113.99, 203.0.113.5") == 429


async def test_stream_connects_are_limited_with_429(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    server: LiveServer = await start_server(make_settings(rate_limit_stream_connects_per_minute=2))
    for _ in range(2):
        async with connect(server.ws_url) as ws:
            assert '"snapshot"' in await asyncio.wait_for(ws.recv(), 10)
    with pytest.raises(InvalidStatus) as refused:
        await connect(server.ws_url)
    assert refused.value.response.status_code == 429
    assert int(refused.value.response.headers["Retry-After"]) >= 1


async def test_cors_preflight_and_websocket_origin_follow_the_allow_list(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    allowed = "https://demo.example"
    server: LiveServer = await start_server(make_settings(allowed_origins=allowed))
    preflight = {"Access-Control-Request-Method": "POST"}
    async with await _client(server) as client:
        ok = await client.options(f"{API}/run", headers={"Origin": allowed, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        assert "access-control-allow-credentials" not in ok.headers
        foreign = await client.options(
            f"{API}/run", headers={"Origin": "https://evil.example", **preflight}
        )
        assert foreign.status_code == 400
        assert "access-control-allow-origin" not in foreign.headers

    async with connect(server.ws_url, origin=allowed) as ws:  # type: ignore[arg-type]
        assert '"snapshot"' in await asyncio.wait_for(ws.recv(), 10)
    async with connect(server.ws_url) as ws:  # non-browser clients send no Origin
        assert '"snapshot"' in await asyncio.wait_for(ws.recv(), 10)
    with pytest.raises(InvalidStatus) as refused:
        await connect(server.ws_url, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


async def test_wildcard_origin_never_allows_credentials(client: httpx.AsyncClient) -> None:
    response = await client.options(
        f"{API}/run",
        headers={"Origin": "https://any.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_oversize_bodies_are_413(client: httpx.AsyncClient) -> None:
    big = b'{"batch_count": 1, "triggered_by": "' + b"x" * 20_000 + b'"}'
    declared = await client.post(
        f"{API}/run", content=big, headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert "detail" in declared.json()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 1000

    streamed = await client.post(
        f"{API}/run", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert (await client.get(f"{API}/active")).json()["active"] is False


async def test_oversize_websocket_messages_close_the_connection(server: LiveServer) -> None:
    async with connect(server.ws_url) as ws:
        await ws.recv()
        await ws.send("small messages are read and ignored")
        await ws.send("x" * 5000)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_security_headers(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for response in (page, await client.get(f"{API}/status"), await client.get("/health")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


async def test_head_of_the_page_answers_with_its_headers(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    head = await client.head("/")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"].startswith("text/html")
    assert head.headers["content-length"] == page.headers["content-length"]
    assert "default-src 'self'" in head.headers["content-security-policy"]


async def test_shutdown_drains_then_cancels_the_local_run_and_records_it(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    settings = make_settings(demo_generate_seconds=60)
    store = MemoryStateStore(history_limit=5, ttl_minutes=30)
    server: LiveServer = await start_server(settings, store=store)
    stream: StreamReader = await open_stream(server.ws_url)
    await stream.next()
    async with await _client(server) as client:
        run_id = (await client.post(f"{API}/run", json={"batch_count": 3})).json()["run_id"]
        await stream.until(lambda f: f["type"] == "status" and f["data"]["status"] == "running")

        await server.drain()
        with pytest.raises(ConnectionClosed) as closed:
            await _read_until_closed(stream)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        ready = await client.get("/healthz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["accepting_runs"]["ok"] is False
        refused = await client.post(f"{API}/run", json={"batch_count": 1})
        assert refused.status_code == 503 and "retry-after" in refused.headers

    await server.stop()
    run = await store.get_run(run_id)
    assert run is not None
    assert run.status == "cancelled" and run.message == "cancelled: the service shut down"
    assert await store.get_active() is None
    # Every task of the service ended with it (the relay, housekeeping, the run's session).
    service_tasks = ("event-relay", "housekeeping", "run-", "launch-", "writer-", "consume-")
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith(service_tasks)] == []
    assert step_processes() == {}
