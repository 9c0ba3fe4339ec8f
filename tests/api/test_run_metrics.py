"""Prometheus run statistics: durations by final status, runs by status, tasks by state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SettingsFactory

API = "/api/v1/demo"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_runs_and_tasks_are_counted(
    make_settings: SettingsFactory, start_server: Any, open_stream: Callable[..., Any]
) -> None:
    # GENERATE takes long enough for a cancel to land mid-run; nothing else waits.
    server = await start_server(make_settings(demo_generate_seconds=2))
    stream = await open_stream(server.ws_url)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        first = (await http.post(f"{API}/run", json={"batch_count": 2})).json()
        succeeded = await stream.until_complete(first["run_id"])
        assert succeeded["data"]["status"] == "succeeded"

        second = (await http.post(f"{API}/run", json={"batch_count": 3})).json()
        await stream.until(
            lambda f: (
                f["type"] == "progress"
                and f["run_id"] == second["run_id"]
                and f["data"]["processes"]["GENERATE"]["running"] == 3
            )
        )
        cancel = await http.delete(
            f"{API}/cancel", headers={"X-Cancel-Token": second["cancel_token"]}
        )
        assert cancel.status_code == 200, cancel.text
        cancelled = await stream.until_complete(second["run_id"])
        assert cancelled["data"]["status"] == "cancelled"
        found = samples((await http.get("/metrics")).text)

    def value(name: str, **labels: str) -> float:
        return found.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("nks_runs_finished_total", status="succeeded") == 1
    assert value("nks_runs_finished_total", status="cancelled") == 1
    assert value("nks_run_duration_seconds_count", status="succeeded") == 1
    assert value("nks_run_duration_seconds_count", status="cancelled") == 1
    assert (
        value("nks_run_duration_seconds_sum", status="succeeded")
        == (succeeded["data"]["duration_seconds"])
    )
    # About 2 s (one GENERATE wave): counted in +Inf, not in the buckets below 1 s.
    assert value("nks_run_duration_seconds_bucket", status="succeeded", le="+Inf") == 1
    assert value("nks_run_duration_seconds_bucket", status="succeeded", le="1.0") == 0
    # The succeeded run: every task ran and succeeded (GENERATE and ANALYZE twice, REPORT once).
    for process, count in (("GENERATE", 2), ("ANALYZE", 2), ("REPORT", 1)):
        assert value("nks_tasks_total", process=process, state="running") >= count
        assert value("nks_tasks_total", process=process, state="succeeded") == count
    # The cancelled run got as far as running its three GENERATE tasks.
    assert value("nks_tasks_total", process="GENERATE", state="running") == 2 + 3
