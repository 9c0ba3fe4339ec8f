"""Prometheus metrics of one app instance (own registry, so several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds: a 1-batch run with the default pacing takes ~10 s, 12 batches with slow pods minutes.
RUN_DURATION_BUCKETS = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600)
#: Task durations in seconds: the demo's steps take seconds, a real pipeline's up to hours.
TASK_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


class Metrics:
    """The service's counters and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs_started = Counter(
            "nks_runs_started", "Runs started by this replica.", registry=self.registry
        )
        self.runs_finished = Counter(
            "nks_runs_finished",
            "Runs finished by this replica, by final status.",
            ["status"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "nks_run_duration_seconds",
            "Duration of the runs this replica finished, by final status.",
            ["status"],
            buckets=RUN_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.tasks = Counter(
            "nks_tasks",
            "Task state changes of this replica's runs, by process and the state entered.",
            ["process", "state"],
            registry=self.registry,
        )
        self.websocket_clients = Gauge(
            "nks_websocket_clients", "WebSocket clients connected.", registry=self.registry
        )
        self.websocket_rejected = Counter(
            "nks_websocket_rejected",
            "WebSocket clients refused or closed, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.frames_sent = Counter(
            "nks_frames_sent",
            "Stream frames handed to clients (written, or queued behind a busy socket).",
            registry=self.registry,
        )
        self.frames_dropped = Counter(
            "nks_frames_dropped",
            "Stream frames discarded for clients that fell too far behind.",
            registry=self.registry,
        )

        self.task_duration = Histogram(
            "nks_task_duration_seconds",
            "Duration of finished tasks (start to finish), by process and final state.",
            ["process", "state"],
            buckets=TASK_DURATION_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
