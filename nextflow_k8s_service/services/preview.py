"""What a run of N batches would use, by the resource model of SPEC §2."""

from __future__ import annotations

from nextflow_k8s_service.config import Settings, parse_cpu, parse_memory_bytes
from nextflow_k8s_service.models import PreviewResponse, ProcessPreview

GIB = 1024**3


def preview(settings: Settings, batch_count: int) -> PreviewResponse:
    """Task counts, pod counts and peak resources of a run; pure.

    Peak: the controller plus at most `batch_count` workers at once (each batch has one task in
    flight at a time, and REPORT runs alone). Worker pods over the run: 2N + 1.
    """
    worker_cpu = parse_cpu(settings.worker_cpu_limit)
    worker_mem = parse_memory_bytes(settings.worker_memory_limit) / GIB
    per_task = {"cpu_per_task": worker_cpu, "memory_gi_per_task": round(worker_mem, 3)}
    controller_cpu = parse_cpu(settings.controller_cpu_limit)
    controller_mem = parse_memory_bytes(settings.controller_memory_limit) / GIB
    processes = {
        "GENERATE": ProcessPreview(tasks=batch_count, **per_task),
        "ANALYZE": ProcessPreview(tasks=batch_count, **per_task),
        "REPORT": ProcessPreview(tasks=1, **per_task),
    }
    peak_cpu = controller_cpu + batch_count * worker_cpu
    peak_mem = controller_mem + batch_count * worker_mem
    # Pod start-up and scheduling dominate on a cluster; locally it is the pacing alone.
    overhead = 15.0 if settings.executor == "kubernetes" else 0.5
    estimated = settings.demo_generate_seconds + settings.demo_analyze_seconds + overhead
    return PreviewResponse(
        batch_count=batch_count,
        processes=processes,
        total_tasks=2 * batch_count + 1,
        total_worker_pods=2 * batch_count + 1,
        peak_worker_pods=batch_count,
        peak_cpu=round(peak_cpu, 3),
        peak_memory_gi=round(peak_mem, 3),
        quota_cpu=settings.homelab_total_cpu,
        quota_memory_gi=settings.homelab_total_memory_gi,
        fits_quota=peak_cpu <= settings.homelab_total_cpu
        and peak_mem <= settings.homelab_total_memory_gi,
        estimated_seconds=round(estimated, 1),
    )
