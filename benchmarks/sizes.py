"""How big each figure's runs are: `FULL` (a few minutes on 2 cores) and `SMOKE` (seconds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    clients: int  # WebSocket clients of figures 1, 2 and 6
    repeats: int  # alternating repeats of figures 1 and 4
    saturation_frames: int  # frames published flat out (figure 1)
    paced_rate: float  # frames/s of the paced run the p99 goal names (figure 1)
    paced_seconds: float  # length of each paced run (figure 1)
    stall_rate: float  # frames/s of figure 2
    stall_frames: int  # frames of each figure 2 run (enough to fill the stalled socket)
    stall_repeats: int
    stall_drain_seconds: float  # how long the stalled client may take to see its close
    batches: int  # figure 3
    run_repeats: int  # figure 3, after one warm-up pair
    api_seconds: float  # figure 4, per endpoint and round
    api_warmup_seconds: float
    k8s_short_seconds: float  # figure 5
    k8s_long_seconds: float
    page_idle_seconds: float  # figure 7: the page at rest
    page_flood_seconds: float  # figure 7: the page under 1,000 log lines/s
    scaling_clients: tuple[int, ...]  # figure 8
    scaling_rate: float  # frames/s of figure 8 (the demo's rate)
    scaling_seconds: float
    start_batches: tuple[int, ...]  # figure 9
    start_repeats: int
    concurrent: bool = False  # runs of one figure at once (smoke: only the harness is checked)
    half_paced: bool = True  # figure 1's paced run at half the saturated rate


FULL = Sizes(
    clients=100,
    repeats=2,
    saturation_frames=600,
    paced_rate=100,
    paced_seconds=5,
    stall_rate=100,
    stall_frames=1500,
    stall_repeats=3,
    stall_drain_seconds=20,
    batches=12,
    run_repeats=7,
    api_seconds=4,
    api_warmup_seconds=1,
    k8s_short_seconds=10,
    k8s_long_seconds=60,
    page_idle_seconds=5,
    page_flood_seconds=10,
    scaling_clients=(100, 300, 1000),
    scaling_rate=20,
    scaling_seconds=10,
    start_batches=(1, 6, 12),
    start_repeats=3,
)

SMOKE = Sizes(
    clients=4,
    repeats=1,
    saturation_frames=20,
    paced_rate=200,
    paced_seconds=0.1,
    stall_rate=100,
    stall_frames=20,
    stall_repeats=1,
    stall_drain_seconds=1,
    batches=2,
    run_repeats=1,
    api_seconds=0.3,
    api_warmup_seconds=0.1,
    k8s_short_seconds=0.3,
    k8s_long_seconds=0.9,
    page_idle_seconds=0.5,
    page_flood_seconds=0.5,
    scaling_clients=(4,),
    scaling_rate=20,
    scaling_seconds=0.3,
    start_batches=(1, 2),
    start_repeats=1,
    concurrent=True,
    half_paced=False,
)
