"""The Kubernetes executor against the API fake: the real kubernetes_asyncio client over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from nextflow_k8s_service.errors import ExecutorStartError, ExecutorUnavailableError
from nextflow_k8s_service.kubernetes.jobs import build_job
from nextflow_k8s_service.models import RunStatus, TaskState
from nextflow_k8s_service.run_events import (
    ExecutorEvent,
    LogEmitted,
    StatusChanged,
    TaskChanged,
)
from tests.conftest import run_spec
from tests.kubernetes.fake_api import FakeKubernetes

RUN = "r0123456789a"
JOB = f"nextflow-{RUN}"
S, R, OK, F = TaskState.SUBMITTED, TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.FAILED


def bare(events: list[ExecutorEvent]) -> list[ExecutorEvent]:
    """The events with task transitions reduced to (process, index, state): the times and
    codes they carry are tested in test_pod_task_records.py and test_k8s_task_records.py."""
    return [
        TaskChanged(e.process, e.index, e.state) if isinstance(e, TaskChanged) else e
        for e in events
    ]


def non_log(events: list[ExecutorEvent]) -> list[ExecutorEvent]:
    return [e for e in bare(events) if not isinstance(e, LogEmitted)]


def logs(events: list[ExecutorEvent], source: str) -> list[str]:
    return [e.message for e in events if isinstance(e, LogEmitted) and e.source == source]


def has(event: ExecutorEvent) -> Any:
    return lambda events: event in bare(events)


def count_logs(source: str, n: int) -> Any:
    return lambda events: len(logs(events, source)) >= n


async def play_task(fake: FakeKubernetes, log: Any, process: str, index: int | None) -> str:
    """A task pod's life under k8s.cleanup: pending, running (two lines), succeeded, deleted."""
    pod = fake.add_task_pod(RUN, process, index)
    await log.until(has(TaskChanged(process, index, S)))
    fake.set_pod_phase(pod, "Running")
    await log.until(has(TaskChanged(process, index, R)))
    source = process if index is None else f"{process} ({index})"
    fake.append_log(pod, f"{source} working", f"{source} done")
    await log.until(count_logs(source, 2))
    fake.set_pod_phase(pod, "Succeeded")
    await log.until(has(TaskChanged(process, index, OK)))
    fake.delete("pods", pod)
    return pod


async def test_full_run_emits_the_exact_event_sequence(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    executor = await make_executor()
    await executor.start(run_spec(1, run_id=RUN))
    assert fake.names("jobs") == [JOB]
    assert fake.names("configmaps") == [f"{JOB}-config"]
    config_map = fake.get("configmaps", f"{JOB}-config")
    assert config_map is not None
    job = fake.get("jobs", JOB)
    assert job is not None
    assert config_map["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]

    log = collect_events(executor.events(RUN))
    await log.until(
        has(StatusChanged(RunStatus.STARTING, "waiting for the Nextflow controller to start"))
    )
    controller = fake.controller_pod(RUN)
    fake.set_pod_phase(controller, "Running")
    await log.until(lambda events: any(s.status == RunStatus.RUNNING for s in log.statuses()))
    fake.append_log(controller, "N E X T F L O W  ~  version 25.04.7", "Launching `demo.nf`")
    await log.until(count_logs("controller", 2))

    await play_task(fake, log, "GENERATE", 1)
    await play_task(fake, log, "ANALYZE", 1)
    await play_task(fake, log, "REPORT", None)
    fake.append_log(controller, "Completed at: today")
    fake.set_job_conditions(JOB, ("SuccessCriteriaMet", "CompletionsReached", ""))
    fake.set_pod_phase(controller, "Succeeded")
    fake.set_job_conditions(JOB, ("Complete", "CompletionsReached", ""))
    events = await log.finished()

    assert non_log(events) == [
        StatusChanged(RunStatus.STARTING, "waiting for the Nextflow controller to start"),
        StatusChanged(RunStatus.RUNNING, "the Nextflow controller is running"),
        TaskChanged("GENERATE", 1, S),
        TaskChanged("GENERATE", 1, R),
        TaskChanged("GENERATE", 1, OK),
        TaskChanged("ANALYZE", 1, S),
        TaskChanged("ANALYZE", 1, R),
        TaskChanged("ANALYZE", 1, OK),
        TaskChanged("REPORT", None, S),
        TaskChanged("REPORT", None, R),
        TaskChanged("REPORT", None, OK),
        StatusChanged(RunStatus.SUCCEEDED, None),
    ]
    assert logs(events, "controller") == [
        "N E X T F L O W  ~  version 25.04.7",
        "Launching `demo.nf`",
        "Completed at: today",
    ]
    assert logs(events, "GENERATE (1)") == ["GENERATE (1) working", "GENERATE (1) done"]
    assert logs(events, "REPORT") == ["REPORT working", "REPORT done"]
    # Logs come before the terminal status; exactly one terminal status, last.
    assert isinstance(events[-1], StatusChanged)
    assert sum(isinstance(e, StatusChanged) and e.status.terminal for e in events) == 1
    await fake.streams_closed()  # every watch and log follow ended with the run


async def test_task_pod_events_in_flight_when_the_job_completes_are_not_lost(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    executor = await make_executor()
    await executor.start(run_spec(1, run_id=RUN))
    log = collect_events(executor.events(RUN))
    controller = fake.controller_pod(RUN)
    fake.set_pod_phase(controller, "Running")
    await play_task(fake, log, "GENERATE", 1)
    await play_task(fake, log, "ANALYZE", 1)
    report = fake.add_task_pod(RUN, "REPORT", None)
    fake.run_task_container(report)
    await log.until(has(TaskChanged("REPORT", None, R)))
    # The REPORT pod's last events are still on their way when the Job completes.
    assert fake.hold_watches("pods", f"nextflow.io/runName={RUN}") == 1
    fake.run_task_container(report, exit_code=0)
    fake.delete("pods", report)
    fake.set_pod_phase(controller, "Succeeded")
    fake.set_job_conditions(JOB, ("Complete", "CompletionsReached", ""))
    # The run is finishing (the controller watch is closed); then the held events arrive.
    await fake.wait_for(lambda: fake.watch_count("pods") <= 1)
    fake.release_watches()
    events = await log.finished()

    assert events[-1] == StatusChanged(RunStatus.SUCCEEDED, None)
    report_done = [
        e for e in events if isinstance(e, TaskChanged) and e.process == "REPORT" and e.state == OK
    ]
    assert len(report_done) == 1
    assert report_done[0].exit_code == 0
    assert report_done[0].started_at is not None
    assert report_done[0].finished_at is not None


async def test_failed_task_fails_the_run_with_the_jobs_message(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    executor = await make_executor()
    await executor.start(run_spec(2, run_id=RUN))
    log = collect_events(executor.events(RUN))
    controller = fake.controller_pod(RUN)
    fake.set_pod_phase(controller, "Running")
    await play_task(fake, log, "GENERATE", 1)
    failing = fake.add_task_pod(RUN, "GENERATE", 2)
    fake.set_pod_phase(failing, "Running")
    fake.append_log(failing, "Traceback: boom")
    fake.set_pod_phase(failing, "Failed")  # Nextflow keeps failed pods
    await log.until(has(TaskChanged("GENERATE", 2, F)))
    fake.set_pod_phase(controller, "Failed")
    fake.set_job_conditions(JOB, ("FailureTarget", "BackoffLimitExceeded", "Job has reached"))
    events = await log.finished()

    assert events[-1] == StatusChanged(RunStatus.FAILED, "BackoffLimitExceeded: Job has reached")
    assert logs(events, "GENERATE (2)") == ["Traceback: boom"]
    assert TaskChanged("GENERATE", 1, OK) in bare(events)
    # The kept failed pod has no owner: the executor removed it at the end.
    assert not [n for n in fake.names("pods") if n.startswith("nf-")]


async def test_deadline_exceeded_is_a_timeout(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    executor = await make_executor(run_timeout_seconds=60)
    await executor.start(run_spec(run_id=RUN))
    log = collect_events(executor.events(RUN))
    fake.set_job_conditions(JOB, ("FailureTarget", "DeadlineExceeded", "Job was active longer"))
    events = await log.finished()
    assert events[-1] == StatusChanged(
        RunStatus.FAILED, "run timed out: exceeded the limit of 60 s"
    )


async def test_cancel_mid_run_deletes_the_job_and_every_task_pod(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    executor = await make_executor()
    await executor.start(run_spec(3, run_id=RUN))
    log = collect_events(executor.events(RUN))
    controller = fake.controller_pod(RUN)
    fake.set_pod_phase(controller, "Running")
    pods = [fake.add_task_pod(RUN, "GENERATE", i) for i in (1, 2, 3)]
    fake.set_pod_phase(pods[0], "Running")
    fake.append_log(pods[0], "working")
    await log.until(count_logs("GENERATE (1)", 1))

    await executor.cancel(RUN)
    events = await log.finished()

    assert events[-1] == StatusChanged(RunStatus.CANCELLED, "cancelled")
    assert sum(isinstance(e, StatusChanged) and e.status.terminal for e in events) == 1
    assert fake.names("jobs") == []
    assert fake.names("pods") == []  # controller (garbage-collected) and every task pod
    assert fake.names("configmaps") == []  # owned by the Job
    assert ("deletecollection", "", "pods") in fake.calls
    await fake.streams_closed()
    await executor.cancel(RUN)  # idempotent


async def test_transient_503_mid_run_does_not_end_the_run(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    executor = await make_executor()
    await executor.start(run_spec(1, run_id=RUN))
    log = collect_events(executor.events(RUN))
    controller = fake.controller_pod(RUN)
    fake.set_pod_phase(controller, "Running")
    await log.until(lambda events: RunStatus.RUNNING in [s.status for s in log.statuses()])

    fake.fail(503, times=6, message="etcd leader changed")
    fake.drop_watches("pods")
    fake.drop_watches("jobs")
    pod = fake.add_task_pod(RUN, "GENERATE", 1)
    fake.set_pod_phase(pod, "Running")
    await log.until(has(TaskChanged("GENERATE", 1, R)))
    assert not fake.faults, "the injected failures were all hit"
    assert not [s for s in log.statuses() if s.status.terminal]

    fake.set_pod_phase(pod, "Succeeded")
    fake.delete("pods", pod)
    fake.set_pod_phase(controller, "Succeeded")
    fake.set_job_conditions(JOB, ("SuccessCriteriaMet", "CompletionsReached", ""))
    events = await log.finished(timeout=4)  # well within the drain timeout: nothing hung
    assert events[-1] == StatusChanged(RunStatus.SUCCEEDED, None)


async def test_watch_expiring_with_410_loses_and_repeats_nothing(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    executor = await make_executor()
    await executor.start(run_spec(2, run_id=RUN))
    log = collect_events(executor.events(RUN))
    fake.set_pod_phase(fake.controller_pod(RUN), "Running")
    first = fake.add_task_pod(RUN, "GENERATE", 1)
    await log.until(has(TaskChanged("GENERATE", 1, S)))

    # Changes while the watch is broken, then the 410 inside the stream; the resume from the
    # old resourceVersion gets a 410 too and the executor re-lists.
    fake.fail(503, verb="watch", resource="pods", times=2)
    fake.drop_watches("pods")
    fake.set_pod_phase(first, "Running")
    second = fake.add_task_pod(RUN, "GENERATE", 2)
    fake.expire_watches("pods")
    fake.set_pod_phase(first, "Succeeded")
    fake.delete("pods", first)  # vanishes while no watch is open
    await log.until(has(TaskChanged("GENERATE", 1, OK)))
    await log.until(has(TaskChanged("GENERATE", 2, S)))
    fake.set_pod_phase(second, "Running")
    await log.until(has(TaskChanged("GENERATE", 2, R)))

    tasks = [e for e in bare(log.events) if isinstance(e, TaskChanged)]
    assert len(tasks) == len(set(tasks)), "no task event twice"
    assert TaskChanged("GENERATE", 1, F) not in tasks
    fake.set_pod_phase(second, "Succeeded")
    fake.set_pod_phase(fake.controller_pod(RUN), "Succeeded")
    fake.set_job_conditions(JOB, ("SuccessCriteriaMet", "CompletionsReached", ""))
    await log.finished(timeout=4)


async def test_dropped_log_stream_resumes_without_duplicates_or_gaps(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    executor = await make_executor()
    await executor.start(run_spec(run_id=RUN))
    log = collect_events(executor.events(RUN))
    controller = fake.controller_pod(RUN)
    fake.append_log(controller, "line 1", "line 2")
    fake.set_pod_phase(controller, "Running")
    await log.until(count_logs("controller", 2))
    # Lines sharing one timestamp straddle the drop: the follower must count, not just compare.
    fake.append_log(controller, "line 3", "line 4", same_timestamp=True)
    await log.until(count_logs("controller", 4))
    fake.drop_log_streams(controller)
    fake.append_log(controller, "line 5", "line 6")
    await log.until(count_logs("controller", 6))
    fake.drop_log_streams(controller)
    fake.append_log(controller, "line 7")
    fake.set_pod_phase(controller, "Succeeded")
    fake.set_job_conditions(JOB, ("Complete", "CompletionsReached", ""))
    events = await log.finished()
    assert logs(events, "controller") == [f"line {i}" for i in range(1, 8)]
    assert [c for c in fake.calls if c == ("get", "", "pods/log")].__len__() >= 3


async def test_adoption_after_a_restart_finishes_the_run(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    first = await make_executor()
    await first.start(run_spec(2, run_id=RUN))
    log = collect_events(first.events(RUN))
    controller = fake.controller_pod(RUN)
    fake.set_pod_phase(controller, "Running")
    fake.append_log(controller, "before restart")
    await log.until(count_logs("controller", 1))
    last_seen = [e for e in log.events if isinstance(e, LogEmitted)][-1].timestamp
    await log.close()
    await first.close()  # the service goes away; the run goes on

    done = fake.add_task_pod(RUN, "GENERATE", 1)
    fake.set_pod_phase(done, "Succeeded")
    fake.delete("pods", done)  # cleaned up while nobody watched
    analyze = fake.add_task_pod(RUN, "ANALYZE", 1)
    fake.set_pod_phase(analyze, "Running")
    running = fake.add_task_pod(RUN, "GENERATE", 2)
    fake.set_pod_phase(running, "Running")
    fake.append_log(controller, "while away")

    second = await make_executor()
    assert await second.adopt(run_spec(2, run_id=RUN), logs_since=last_seen)
    log = collect_events(second.events(RUN))
    await log.until(has(TaskChanged("GENERATE", 2, R)))
    await log.until(has(TaskChanged("GENERATE", 1, OK)))  # inferred from ANALYZE (1)
    await log.until(count_logs("controller", 1))
    for pod in (running, analyze, controller):
        fake.set_pod_phase(pod, "Succeeded")
    fake.set_job_conditions(JOB, ("Complete", "CompletionsReached", ""))
    events = await log.finished(timeout=4)
    assert logs(events, "controller") == ["while away"]
    assert events[-1] == StatusChanged(RunStatus.SUCCEEDED, None)
    assert StatusChanged(RunStatus.RUNNING, "the Nextflow controller is running") in events
    assert not await second.adopt(run_spec(run_id="r000000000ff"))


async def test_job_deleted_behind_our_back_ends_unknown(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    executor = await make_executor()
    await executor.start(run_spec(run_id=RUN))
    log = collect_events(executor.events(RUN))
    await log.until(lambda events: bool(events))
    fake.delete("jobs", JOB)
    events = await log.finished()
    assert events[-1] == StatusChanged(RunStatus.UNKNOWN, "the run's Job no longer exists")


async def test_start_forbidden_raises_start_error_and_leaves_nothing(
    fake: FakeKubernetes, make_executor: Any
) -> None:
    executor = await make_executor()
    fake.fail(403, verb="create", resource="jobs", message="jobs.batch is forbidden")
    with pytest.raises(ExecutorStartError, match="forbidden"):
        await executor.start(run_spec(run_id=RUN))
    assert fake.names("jobs") == [] and fake.names("configmaps") == []


async def test_start_config_map_rejected_removes_the_job(
    fake: FakeKubernetes, make_executor: Any
) -> None:
    executor = await make_executor()
    fake.fail(422, verb="create", resource="configmaps")
    with pytest.raises(ExecutorStartError, match="invalid"):
        await executor.start(run_spec(run_id=RUN))
    assert fake.names("jobs") == [] and fake.names("pods") == []


async def test_start_unavailable_raises_unavailable(
    fake: FakeKubernetes, make_executor: Any
) -> None:
    executor = await make_executor()
    fake.fail(503, verb="create", resource="jobs")
    with pytest.raises(ExecutorUnavailableError):
        await executor.start(run_spec(run_id=RUN))
    assert fake.names("jobs") == []


async def test_start_conflict_leaves_the_existing_job_alone(
    fake: FakeKubernetes, make_executor: Any
) -> None:
    executor = await make_executor()
    fake.create("jobs", {"metadata": {"name": JOB}, "spec": {"template": {"spec": {}}}})
    with pytest.raises(ExecutorStartError, match="already exists"):
        await executor.start(run_spec(run_id=RUN))
    assert fake.names("jobs") == [JOB]


async def test_check_and_orphan_jobs(
    fake: FakeKubernetes, make_executor: Any, k8s_settings: Any
) -> None:
    executor = await make_executor()
    assert (await executor.check()).ok
    settings = k8s_settings()
    fake.create("jobs", build_job(settings, run_spec(run_id=RUN)))
    fake.create("jobs", build_job(settings, run_spec(run_id="r00000000001")))
    fake.create("jobs", {"metadata": {"name": "not-ours"}, "spec": {"template": {"spec": {}}}})
    fake.set_job_conditions("nextflow-r00000000001", ("Complete", "CompletionsReached", ""))
    assert await executor.orphan_jobs(set()) == [JOB]
    assert await executor.orphan_jobs({RUN}) == []
    fake.fail(503, times=1)
    result = await executor.check()
    assert not result.ok and "503" in (result.detail or "")


@pytest.mark.slow(5)
async def test_objects_without_metadata_do_not_kill_the_watches(
    fake: FakeKubernetes, make_executor: Any, collect_events: Any
) -> None:
    executor = await make_executor()
    await executor.start(run_spec(1, run_id=RUN))
    log = collect_events(executor.events(RUN))
    controller = fake.controller_pod(RUN)
    fake.set_pod_phase(controller, "Running")
    await fake.wait_for(lambda: fake.watch_count("pods") == 2 and fake.watch_count("jobs") == 1)
    fake.inject_watch_event("pods", {"type": "DELETED", "object": {"kind": "Pod"}})
    fake.inject_watch_event("jobs", {"type": "MODIFIED", "object": {"kind": "Job"}})
    pod = fake.add_task_pod(RUN, "GENERATE", 1)
    fake.set_pod_phase(pod, "Running")
    await log.until(has(TaskChanged("GENERATE", 1, R)))  # the pod watches live on
    fake.set_pod_phase(controller, "Succeeded")
    fake.set_job_conditions(JOB, ("Complete", "CompletionsReached", ""))
    events = await log.finished()
    assert events[-1] == StatusChanged(RunStatus.SUCCEEDED, None)
