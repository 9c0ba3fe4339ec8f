"""BodyCache: the read endpoints' encoded bodies, reused while what they show is unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from fastapi import FastAPI, Response

from nextflow_k8s_service.api.bodies import BodyCache
from nextflow_k8s_service.models import (
    PROCESSES,
    Counts,
    Progress,
    RunRecord,
    RunStatus,
    StatusResponse,
    TaskRecord,
    TaskState,
)


def _record(generate_state: TaskState = TaskState.RUNNING) -> RunRecord:
    now = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    tasks = [
        TaskRecord(process="GENERATE", index=1, name="GENERATE (1)", state=generate_state,
                   submitted_at=now, started_at=now),
        TaskRecord(process="ANALYZE", index=1, name="ANALYZE (1)"),
        TaskRecord(process="REPORT", name="REPORT"),
    ]  # fmt: skip
    progress = Progress(
        percent=12.5,
        processes={name: Counts(total=1) for name in PROCESSES},
        tasks={task.name: task.state for task in tasks},
        task_records=tasks,
    )
    return RunRecord(
        run_id="r0123456789a", status=RunStatus.RUNNING, batch_count=1, executor="local",
        triggered_by="test", started_at=now, progress=progress,
    )  # fmt: skip


def _status(record: RunRecord) -> StatusResponse:
    return StatusResponse(active=True, run=record.detail())


async def test_the_body_is_the_json_fastapi_writes_for_the_model() -> None:
    record = _record()
    cache = BodyCache()
    app = FastAPI()

    @app.get("/model")
    async def model() -> StatusResponse:
        return _status(record)

    @app.get("/cached", response_model=StatusResponse)
    async def cached() -> Response:
        return cache.response("status", record, lambda: _status(record))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        expected = await client.get("/model")
        got = await client.get("/cached")
    assert got.status_code == 200
    assert got.content == expected.content
    assert got.headers["content-type"] == expected.headers["content-type"] == "application/json"
    assert got.headers["content-length"] == str(len(expected.content))


def test_an_equal_key_reuses_the_body_without_building_it() -> None:
    cache = BodyCache()
    builds: list[RunRecord] = []

    def build(record: RunRecord) -> StatusResponse:
        builds.append(record)
        return _status(record)

    record = _record()
    first = cache.body("status", (True, record), lambda: build(record))
    # What a store read hands out for an unchanged run: another copy of the same record.
    again = record.model_copy()
    second = cache.body("status", (True, again), lambda: build(again))
    assert second is first and builds == [record]


def test_a_changed_run_is_encoded_again() -> None:
    cache = BodyCache()
    running = _record()
    before = cache.body("status", (True, running), lambda: _status(running))
    # A store write replaces the record with a copy of its own: one task's state differs.
    finished = _record(generate_state=TaskState.SUCCEEDED)
    after = cache.body("status", (True, finished), lambda: _status(finished))
    assert after != before
    assert b'"GENERATE (1)":"succeeded"' in after and b'"GENERATE (1)":"running"' in before
    # The same run no longer active is another body too.
    idle = cache.body("status", (False, finished), lambda: StatusResponse(active=False, run=None))
    assert idle == b'{"active":false,"run":null}'
    # And back: the cache holds one body per endpoint, and encodes the older run again.
    assert cache.body("status", (True, running), lambda: _status(running)) == before


def test_each_endpoint_has_its_own_body() -> None:
    cache = BodyCache()
    record = _record()
    status = cache.body("status", record, lambda: _status(record))
    detail = cache.body("run", record, record.detail)
    assert status != detail
    assert cache.body("status", record, lambda: _status(_record(TaskState.FAILED))) is status
