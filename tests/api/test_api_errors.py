"""Every foreseeable bad request gets a clear 4xx JSON error (SPEC §4)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

API = "/api/v1/demo"


@pytest.mark.parametrize(
    "body",
    [
        {"batch_count": 0},
        {"batch_count": 13},
        {"batch_count": -1},
        {"batch_count": "five"},
        {"batch_count": 2.5},
        {"batch_count": 3, "triggered_by": "x" * 65},
        {"batch_count": 3, "triggered_by": 7},
        {"batch_count": 3, "unexpected": True},
        [1, 2, 3],
        "run please",
    ],
)
async def test_bad_run_requests_are_422(shared_client: httpx.AsyncClient, body: Any) -> None:
    response = await shared_client.post(f"{API}/run", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert (await shared_client.get(f"{API}/active")).json()["active"] is False


async def test_malformed_json_is_422(shared_client: httpx.AsyncClient) -> None:
    response = await shared_client.post(
        f"{API}/run", content=b'{"batch_count": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "detail" in response.json()


async def test_empty_body_uses_the_default_batch_count(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{API}/run")
    assert response.status_code == 202
    assert response.json()["run"]["batch_count"] == 5


async def test_triggered_by_is_stripped_of_control_characters(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/run", json={"batch_count": 1, "triggered_by": "ali\x1b[31mce\n"}
    )
    assert response.json()["run"]["triggered_by"] == "ali[31mce"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"{API}/runs/r0123456789a", 404),
        (f"{API}/runs/not-a-run-id", 404),
        (f"{API}/runs/r0123456789a/report", 404),
        (f"{API}/runs/..%2F..%2Fetc/report", 404),
        (f"{API}/preview?batch_count=0", 422),
        (f"{API}/preview?batch_count=13", 422),
        (f"{API}/preview?batch_count=x", 422),
        (f"{API}/preview", 422),
        (f"{API}/history?limit=0", 422),
        (f"{API}/history?limit=101", 422),
        ("/api/v1/nothing-here", 404),
    ],
)
async def test_bad_reads_are_clear_4xx(
    shared_client: httpx.AsyncClient, path: str, status: int
) -> None:
    response = await shared_client.get(path)
    assert response.status_code == status
    assert response.json()["detail"]


async def test_cancel_without_an_active_run_is_404(shared_client: httpx.AsyncClient) -> None:
    response = await shared_client.delete(f"{API}/cancel", headers={"X-Cancel-Token": "whatever"})
    assert response.status_code == 404
    assert response.json() == {"detail": "no run is active"}


async def test_wrong_method_is_405(shared_client: httpx.AsyncClient) -> None:
    assert (await shared_client.get(f"{API}/run")).status_code == 405


async def test_preview_of_twelve_batches_fits_the_homelab_quota(
    shared_client: httpx.AsyncClient,
) -> None:
    preview = (await shared_client.get(f"{API}/preview", params={"batch_count": 12})).json()
    assert preview["total_worker_pods"] == 25
    assert preview["peak_worker_pods"] == 12
    assert preview["peak_cpu"] == 14
    assert preview["peak_memory_gi"] <= 50
    assert preview["fits_quota"] is True
    assert set(preview["processes"]) == {"GENERATE", "ANALYZE", "REPORT"}


async def test_health_readiness_metrics_and_page(client: httpx.AsyncClient) -> None:
    health = (await client.get("/health")).json()
    assert health["status"] == "ok" and health["version"]
    ready = await client.get("/healthz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["state_store"]["ok"] is True
    assert ready.json()["checks"]["unclaimed_runs"] == {"ok": True, "detail": "none"}
    assert (await client.get("/api/v1/healthz")).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert "nks_runs_started_total" in metrics and "nks_websocket_clients" in metrics
    limits = (await client.get(f"{API}/limits")).json()
    assert limits == {"default_batch_count": 5, "max_batch_count": 12, "executor": "local"}
    openapi = (await client.get("/openapi.json")).json()
    assert "/api/v1/demo/run" in openapi["paths"]
