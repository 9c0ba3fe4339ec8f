// @ts-check
// The plan for the chosen batch count (GET /demo/preview): task counts, how many run at once and
// an estimate of the time. Pods and the quota are words of the Kubernetes executor: with it the
// peak CPU and memory are drawn against the quota; with the local one the tasks are processes.

import { formatDuration, formatNumber, setText } from "./dom.js";
import { plural } from "./state.js";

/** @param {HTMLElement} bar @param {number} used @param {number} quota */
function quotaBar(bar, used, quota) {
  const ratio = quota > 0 ? used / quota : 0;
  bar.style.width = `${Math.min(100, ratio * 100)}%`;
  bar.dataset.level = ratio > 1 ? "over" : ratio > 0.8 ? "near" : "ok";
}

/**
 * @param {Record<string, HTMLElement>} ui
 * @param {any} p a DemoPreview
 * @param {string | null} executor
 */
export function renderPreview(ui, p, executor) {
  const pods = executor === "kubernetes";
  const g = p.processes && p.processes.GENERATE ? p.processes.GENERATE.tasks : p.batch_count;
  const a = p.processes && p.processes.ANALYZE ? p.processes.ANALYZE.tasks : p.batch_count;
  setText(ui.pvTasks, formatNumber(p.total_tasks));
  ui.pvTasks.title = `${g} GENERATE + ${a} ANALYZE + 1 REPORT`;
  setText(ui.pvPodsLabel, pods ? "Worker pods" : "Processes");
  setText(ui.pvPeakLabel, pods ? "Peak pods" : "At once");
  setText(ui.pvPods, formatNumber(p.total_worker_pods));
  setText(ui.pvPeak, formatNumber(p.peak_worker_pods));
  setText(ui.pvTime, `~${formatDuration(p.estimated_seconds)}`);
  ui.pvQuota.hidden = !pods;
  setText(ui.pvCpuText, `${formatNumber(p.peak_cpu, 1)} / ${formatNumber(p.quota_cpu, 1)} CPU`);
  setText(ui.pvMemText, `${formatNumber(p.peak_memory_gi, 1)} / ${formatNumber(p.quota_memory_gi, 1)} GiB`);
  quotaBar(ui.pvCpuBar, p.peak_cpu, p.quota_cpu);
  quotaBar(ui.pvMemBar, p.peak_memory_gi, p.quota_memory_gi);
  ui.pvFit.hidden = false;
  ui.pvFit.dataset.fits = p.fits_quota ? "yes" : "no";
  setText(ui.pvFit, p.fits_quota ? "Fits the quota" : "Exceeds the quota");
  const atOnce = pods ? plural(p.peak_worker_pods, "worker pod") : plural(p.peak_worker_pods, "task");
  setText(
    ui.pvSummary,
    `${plural(p.batch_count, "batch", "batches")}: ${g} GENERATE + ${a} ANALYZE + 1 REPORT, ` +
      `at most ${atOnce} at once.`,
  );
}
