"""Prometheus metrics of one app instance (own registry, so several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
            "nks_frames_sent", "Stream frames written to clients.", registry=self.registry
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
