"""What Job conditions, pod labels and phases mean; log timestamps and the list+watch loop."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import pytest

from nextflow_k8s_service.kubernetes.api import KubeApi
from nextflow_k8s_service.kubernetes.logs import from_nanos, parse_timestamp, split_line, to_nanos
from nextflow_k8s_service.kubernetes.watch import (
    WatchEvent,
    job_outcome,
    pod_task,
    pod_task_state,
    watch_objects,
)
from nextflow_k8s_service.models import RunStatus, TaskState
from tests.kubernetes.fake_api import FakeKubernetes


def job(*conditions: tuple[str, str], deadline: int = 3600) -> dict[str, Any]:
    return {
        "spec": {"activeDeadlineSeconds": deadline},
        "status": {
            "conditions": [
                {"type": kind, "status": "True", "reason": reason, "message": "m"}
                for kind, reason in conditions
            ]
        },
    }


def test_job_outcomes() -> None:
    assert job_outcome(job()) is None
    assert job_outcome({"status": {}}) is None
    assert job_outcome(job(("SuccessCriteriaMet", "CompletionsReached"))) == (
        RunStatus.SUCCEEDED,
        None,
    )
    assert job_outcome(job(("Complete", "CompletionsReached"))) == (RunStatus.SUCCEEDED, None)
    assert job_outcome(job(("FailureTarget", "BackoffLimitExceeded"))) == (
        RunStatus.FAILED,
        "BackoffLimitExceeded: m",
    )
    assert job_outcome(job(("Failed", "DeadlineExceeded"), deadline=60)) == (
        RunStatus.FAILED,
        "run timed out: exceeded the limit of 60 s",
    )
    not_true = {"status": {"conditions": [{"type": "Complete", "status": "False"}]}}
    assert job_outcome(not_true) is None


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (
            {"nextflow.io/processName": "GENERATE", "nextflow.io/taskName": "GENERATE_3"},
            ("GENERATE", 3),
        ),
        (
            {"nextflow.io/processName": "ANALYZE", "nextflow.io/taskName": "ANALYZE_12"},
            ("ANALYZE", 12),
        ),
        ({"nextflow.io/processName": "REPORT", "nextflow.io/taskName": "REPORT"}, ("REPORT", None)),
        (
            {"nextflow.io/processName": "GENERATE", "nextflow.io/taskName": "GENERATE__3_"},
            ("GENERATE", 3),
        ),
        ({"app": "other"}, None),
    ],
)
def test_pod_task_from_nextflow_labels(labels: dict[str, str], expected: Any) -> None:
    assert pod_task({"metadata": {"labels": labels}}) == expected


def test_pod_task_states() -> None:
    def pod(phase: str) -> dict[str, Any]:
        return {"status": {"phase": phase}}

    assert pod_task_state(pod("Pending")) is TaskState.PENDING
    assert pod_task_state(pod("Running")) is TaskState.RUNNING
    assert pod_task_state(pod("Succeeded"), deleted=True) is TaskState.SUCCEEDED
    assert pod_task_state(pod("Failed"), deleted=True) is TaskState.FAILED
    assert pod_task_state(pod("Running"), deleted=True) is TaskState.FAILED
    assert pod_task_state(pod("Running"), deleted=True, missed=True) is TaskState.SUCCEEDED


def test_log_timestamps_are_exact_nanoseconds() -> None:
    base = parse_timestamp("2026-11-22T18:00:00Z")
    assert base is not None
    assert parse_timestamp("2026-11-22T18:00:00.5Z") == base + 500_000_000
    assert parse_timestamp("2026-11-22T18:00:00.000000001Z") == base + 1
    assert parse_timestamp("2026-11-22T19:00:00.000000001+01:00") == base + 1
    assert parse_timestamp("not a time") is None
    assert split_line("2026-11-22T18:00:00.25Z hello  world") == (
        base + 250_000_000,
        "hello  world",
    )
    assert split_line("no timestamp here") == (None, "no timestamp here")
    moment = datetime(2026, 11, 22, 18, 0, 0, 123456, tzinfo=UTC)
    assert from_nanos(to_nanos(moment) + 999) == moment


async def test_watch_lists_then_streams_the_selected_changes(
    fake: FakeKubernetes, make_executor: Any
) -> None:
    executor = await make_executor()
    api: KubeApi = executor._api
    seen: list[tuple[str, str]] = []
    stream = watch_objects(api, "pods", label_selector="app=x", timeout_seconds=1)
    async with aclosing(stream):
        fake.create("pods", {"metadata": {"name": "a", "labels": {"app": "x"}}, "status": {}})
        fake.create("pods", {"metadata": {"name": "other"}, "status": {}})
        async for event in stream:
            seen.append((event.type, event.obj.get("metadata", {}).get("name", "")))
            if len(seen) == 2:
                list_calls = fake.calls.count(("list", "", "pods"))
                watch_calls = fake.calls.count(("watch", "", "pods"))
                fake.delete("pods", "a")
            if len(seen) == 3:
                break
    assert seen == [("ADDED", "a"), ("SYNCED", ""), ("DELETED", "a")]
    assert fake.calls.count(("list", "", "pods")) == list_calls == 1
    assert fake.calls.count(("watch", "", "pods")) >= watch_calls


async def test_a_relist_reports_once_what_changed_while_no_watch_was_open(
    fake: FakeKubernetes, make_executor: Any
) -> None:
    executor = await make_executor()
    api: KubeApi = executor._api

    def pod(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": {"app": "x"}}, "status": {}}

    def seen(events: list[WatchEvent]) -> set[tuple[str, str, bool]]:
        return {(e.type, e.obj.get("metadata", {}).get("name", ""), e.missed) for e in events}

    stream = watch_objects(api, "pods", label_selector="app=x", timeout_seconds=60)
    async with aclosing(stream), asyncio.timeout(10):
        for name in ("kept", "changed", "gone"):
            fake.create("pods", pod(name))
        listed = [await anext(stream) for _ in range(4)]
        # Between the list and its watch: changes, then the history is compacted past them,
        # so the watch from the list's resourceVersion gets a 410 and the stream re-lists.
        fake.set_pod_phase("changed", "Running")
        fake.delete("pods", "gone", grace_seconds=0)
        fake.create("pods", pod("new"))
        fake.expire_watches("pods")
        relisted = [await anext(stream) for _ in range(4)]
    assert seen(listed[:3]) == {("ADDED", name, False) for name in ("kept", "changed", "gone")}
    assert seen(relisted[:3]) == {
        ("MODIFIED", "changed", False),
        ("ADDED", "new", False),
        ("DELETED", "gone", True),
    }
    assert listed[3].type == relisted[3].type == "SYNCED"
