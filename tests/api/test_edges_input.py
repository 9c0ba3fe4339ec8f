"""Bad bodies are one 422 with the security headers (issue 16): non-finite numbers, non-UTF-8,
deep nesting; the rate limit comes before the body is read; names cannot hide characters."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from nextflow_k8s_service.api.middleware import SecurityHeadersMiddleware
from nextflow_k8s_service.models import Report
from tests.conftest import SettingsFactory
from tests.live_server import LiveServer

API = "/api/v1/demo"
SECURITY_HEADERS = ("x-content-type-options", "x-frame-options", "content-security-policy")

BAD_BODIES = [
    b'{"batch_count": NaN}',
    b'{"batch_count": Infinity}',
    b'{"batch_count": -Infinity}',
    b'{"batch_count": 1e400}',
    b'{"batch_count": 2, "triggered_by": "me", "x": [1, 2, -1e999]}',
    b"[NaN]",
    b'{"triggered_by": "\xff\xfe caf\xe9"}',
    b"[" * 1000 + b"]" * 1000,
    b'{"x": ' + b"[" * 900 + b"]" * 900 + b"}",
    b'{"batch_count": ',
    b'"just a string"',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
async def test_a_bad_body_is_one_422_with_headers_and_no_error_log(
    shared_client: httpx.AsyncClient, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await shared_client.post(
        f"{API}/run", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail and detail[0]["loc"][0] == "body"
    for header in SECURITY_HEADERS:
        assert header in response.headers
    noisy = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert noisy == [], [record.getMessage() for record in noisy]
    assert not any(record.exc_info for record in caplog.records)
    # Nothing was started by it.
    assert (await shared_client.get(f"{API}/active")).json()["active"] is False


async def test_the_rate_limit_applies_before_the_body_is_read(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    server: LiveServer = await start_server(
        make_settings(rate_limit_runs_per_minute=1, demo_generate_seconds=30)
    )
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        assert (await client.post(f"{API}/run", json={"batch_count": 1})).status_code == 202
        headers = {"Content-Type": "application/json"}
        limited = await client.post(f"{API}/run", content=b'{"batch_count": NaN', headers=headers)
        assert limited.status_code == 429
        assert "retry-after" in limited.headers
        assert "x-content-type-options" in limited.headers


async def test_an_empty_body_uses_the_default_batch_count_and_null_is_422(
    client: httpx.AsyncClient,
) -> None:
    # `null` is not the object the schema asks for (schemathesis holds the service to that).
    refused = await client.post(
        f"{API}/run", content=b"null", headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 422
    assert "not null" in refused.text
    response = await client.post(f"{API}/run")
    assert response.status_code == 202
    assert response.json()["run"]["batch_count"] == 5


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("admin\u202egnp.exe", "admingnp.exe"),
        ("\u2066ali\u2069ce\u200b", "alice"),
        ("b\u200do\u200cb\ufeff\u2060\u200e\u200f\u061c", "bob"),
        ("\u202a\u202b\u202c\u202d", None),
        ("Zoë 😀", "Zoë 😀"),
    ],
)
async def test_triggered_by_drops_invisible_and_bidi_characters(
    client: httpx.AsyncClient, given: str, shown: str | None
) -> None:
    response = await client.post(f"{API}/run", json={"batch_count": 1, "triggered_by": given})
    assert response.status_code == 202
    assert response.json()["run"]["triggered_by"] == shown


async def test_an_unhandled_error_is_a_json_500_with_the_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_middleware(SecurityHeadersMiddleware)
    caplog.set_level(logging.DEBUG)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    for header in SECURITY_HEADERS:
        assert header in response.headers
    assert sum(1 for record in caplog.records if record.exc_info) == 1


async def test_the_report_matches_its_typed_schema_and_a_broken_one_is_404(
    make_settings: SettingsFactory, start_server: Any, open_stream: Any
) -> None:
    settings = make_settings()
    server: LiveServer = await start_server(settings)
    stream = await open_stream(server.ws_url)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        run_id = (await client.post(f"{API}/run", json={"batch_count": 2})).json()["run_id"]
        await stream.until_complete(run_id)
        response = await client.get(f"{API}/runs/{run_id}/report")
        assert response.status_code == 200
        report = Report.model_validate(response.json())
        assert [batch.batch for batch in report.batches] == [1, 2]
        path = settings.results_root / run_id / "report.json"
        await asyncio.to_thread(path.write_text, '{"run_id": 1}')
        broken = await client.get(f"{API}/runs/{run_id}/report")
        assert broken.status_code == 404
        assert "no readable report" in broken.json()["detail"]
