"""Progress arithmetic, log batching and the resource preview."""

from __future__ import annotations

from nextflow_k8s_service.config import load_settings
from nextflow_k8s_service.executors.base import LogEmitted, TaskChanged
from nextflow_k8s_service.models import TaskState
from nextflow_k8s_service.services.log_streamer import MAX_LINES_PER_FRAME, LogStreamer
from nextflow_k8s_service.services.preview import preview
from nextflow_k8s_service.services.progress import ProgressTracker


def test_progress_counts_each_process_and_ignores_unknown_tasks() -> None:
    tracker = ProgressTracker(2)
    start = tracker.progress()
    assert start.percent == 0
    assert start.processes["GENERATE"].pending == 2 and start.processes["REPORT"].total == 1
    assert tracker.apply(TaskChanged("GENERATE", 1, TaskState.RUNNING))
    assert not tracker.apply(TaskChanged("GENERATE", 1, TaskState.RUNNING))
    assert not tracker.apply(TaskChanged("GENERATE", 7, TaskState.RUNNING))
    assert tracker.apply(TaskChanged("GENERATE", 1, TaskState.SUCCEEDED))
    assert tracker.apply(TaskChanged("ANALYZE", 2, TaskState.FAILED))
    progress = tracker.progress()
    assert progress.processes["GENERATE"].model_dump() == {
        "total": 2, "pending": 1, "submitted": 0, "running": 0, "succeeded": 1, "failed": 0,
        "cancelled": 0,
    }  # fmt: skip
    assert progress.processes["ANALYZE"].failed == 1
    assert progress.tasks["GENERATE (1)"] == TaskState.SUCCEEDED
    # A failed task is finished: it counts as done, so a failure never moves the bar back.
    assert progress.percent == 40.0
    for process, index in [("GENERATE", 2), ("ANALYZE", 1), ("ANALYZE", 2), ("REPORT", None)]:
        tracker.apply(TaskChanged(process, index, TaskState.SUCCEEDED))
    assert tracker.progress().percent == 100.0


def test_log_streamer_cuts_frames_of_at_most_fifty_lines() -> None:
    streamer = LogStreamer(interval=60)
    assert streamer.seconds_until_due() is None
    for n in range(120):
        streamer.add(LogEmitted("controller", f"line {n}"))
    streamer.add(LogEmitted("controller", "x" * 5000))
    assert streamer.full()
    frames = streamer.take()
    assert [len(frame) for frame in frames] == [MAX_LINES_PER_FRAME, MAX_LINES_PER_FRAME, 21]
    assert frames[-1][-1].message.endswith("[truncated]")
    assert streamer.take() == []


def test_preview_follows_the_resource_model() -> None:
    settings = load_settings()
    result = preview(settings, 12)
    assert result.total_worker_pods == 25
    assert result.peak_worker_pods == 12
    assert result.peak_cpu == 14.0
    # 4 GB = 4e9 bytes per worker (3.73 GiB), the controller 4 GiB.
    assert round(result.peak_memory_gi, 2) == 48.7
    assert result.fits_quota
    too_big = preview(load_settings(worker_memory_limit="4Gi"), 12)
    assert too_big.peak_memory_gi == 52 and not too_big.fits_quota
