// The plan for the chosen batch count (GET /demo/preview): task and pod counts, and peak CPU
// and memory drawn against the quota.

import { formatDuration, formatNumber, setText } from "./dom.js";

function plural(n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`;
}

function quotaBar(bar, used, quota) {
  const ratio = quota > 0 ? used / quota : 0;
  bar.style.width = `${Math.min(100, ratio * 100)}%`;
  bar.dataset.level = ratio > 1 ? "over" : ratio > 0.8 ? "near" : "ok";
}

export function renderPreview(ui, p) {
  const g = p.processes && p.processes.GENERATE ? p.processes.GENERATE.tasks : p.batch_count;
  const a = p.processes && p.processes.ANALYZE ? p.processes.ANALYZE.tasks : p.batch_count;
  setText(ui.pvTasks, formatNumber(p.total_tasks));
  ui.pvTasks.title = `${g} GENERATE + ${a} ANALYZE + 1 REPORT`;
  setText(ui.pvPods, formatNumber(p.total_worker_pods));
  setText(ui.pvPeak, formatNumber(p.peak_worker_pods));
  setText(ui.pvTime, `~${formatDuration(p.estimated_seconds)}`);
  setText(ui.pvCpuText, `${formatNumber(p.peak_cpu, 1)} / ${formatNumber(p.quota_cpu, 1)} CPU`);
  setText(ui.pvMemText, `${formatNumber(p.peak_memory_gi, 1)} / ${formatNumber(p.quota_memory_gi, 1)} GiB`);
  quotaBar(ui.pvCpuBar, p.peak_cpu, p.quota_cpu);
  quotaBar(ui.pvMemBar, p.peak_memory_gi, p.quota_memory_gi);
  ui.pvFit.hidden = false;
  ui.pvFit.dataset.fits = p.fits_quota ? "yes" : "no";
  setText(ui.pvFit, p.fits_quota ? "Fits the quota" : "Exceeds the quota");
  setText(
    ui.pvSummary,
    `${plural(p.batch_count, "batch", "batches")}: ${g} GENERATE + ${a} ANALYZE + 1 REPORT, ` +
      `at most ${plural(p.peak_worker_pods, "worker pod")} at once.`,
  );
}
