// @ts-check
// The tasks of a run: their names, their states for the graph and the bars, per-process counts
// and the progress the page shows. Pure functions of a run.

/** @typedef {import("./state.js").Run} Run */
/** @typedef {import("./state.js").Counts} Counts */

export const TASK_STATES = ["pending", "running", "succeeded", "failed", "cancelled"];
export const PROCESSES = ["GENERATE", "ANALYZE", "REPORT"];

/** @param {string} process @param {number} index */
export function taskName(process, index) {
  return index ? `${process} (${index})` : process;
}

/**
 * Every task of a run of `n` batches, pending.
 * @param {number} n
 * @returns {Record<string, string>}
 */
export function pendingTasks(n) {
  /** @type {Record<string, string>} */
  const tasks = {};
  for (const process of ["GENERATE", "ANALYZE"]) {
    for (let i = 1; i <= n; i += 1) tasks[taskName(process, i)] = "pending";
  }
  tasks.REPORT = "pending";
  return tasks;
}

/**
 * Task name -> state for the graph and the bars: every task of the run, unknown ones pending.
 * @param {Run} run
 */
export function taskStates(run) {
  const tasks = pendingTasks(run.batch_count || 0);
  for (const [name, value] of Object.entries(run.progress.tasks)) {
    if (name in tasks && TASK_STATES.includes(String(value))) tasks[name] = String(value);
  }
  if (run.status === "succeeded") for (const name of Object.keys(tasks)) tasks[name] = "succeeded";
  return tasks;
}

/**
 * Per-process counts from a task map.
 * @param {Record<string, string>} tasks
 * @returns {Record<string, Counts>}
 */
export function processCounts(tasks) {
  /** @type {Record<string, Counts>} */
  const out = {};
  for (const process of PROCESSES) {
    /** @type {Record<string, number>} */
    const counts = { total: 0, pending: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const [name, value] of Object.entries(tasks)) {
      if (!name.startsWith(process)) continue;
      counts.total += 1;
      if (value in counts) counts[value] += 1;
    }
    out[process] = /** @type {Counts} */ (/** @type {unknown} */ (counts));
  }
  return out;
}

/**
 * Progress of a run as the page shows it: finished tasks count fully and running ones half, so
 * the bar moves as soon as work starts; a succeeded run is 100.
 * @param {Run} run
 */
export function runPercent(run) {
  if (run.status === "succeeded") return 100;
  const tasks = taskStates(run);
  const names = Object.keys(tasks);
  let done = 0;
  for (const name of names) {
    const value = tasks[name];
    if (value === "succeeded" || value === "failed" || value === "cancelled") done += 1;
    else if (value === "running") done += 0.5;
  }
  const fromTasks = names.length && run.batch_count ? (100 * done) / names.length : 0;
  return Math.min(100, Math.max(fromTasks, Number(run.progress.percent) || 0));
}
