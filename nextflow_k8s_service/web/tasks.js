// @ts-check
// The tasks of a run: their names, their states for the graph and the bars, per-process counts
// and the progress the page shows. Pure functions of a run.

/** @typedef {import("./state.js").Run} Run */
/** @typedef {import("./state.js").Counts} Counts */

export const TASK_STATES = ["pending", "submitted", "running", "succeeded", "failed", "cancelled"];
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
    const counts = { total: 0, pending: 0, submitted: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const [name, value] of Object.entries(tasks)) {
      if (!name.startsWith(process)) continue;
      counts.total += 1;
      if (value in counts) counts[value] += 1;
    }
    out[process] = /** @type {Counts} */ (/** @type {unknown} */ (counts));
  }
  return out;
}

// A running task counts for up to RUNNING_SHARE of a finished one, approaching it with time
// constant RUNNING_TAU_MS: the bar moves while tasks work, and each finish still moves it on.
const RUNNING_SHARE = 0.9;
const RUNNING_TAU_MS = 4000;

/**
 * Progress of a run as the page shows it (0..100) at server time `at` (ms): finished tasks count
 * fully, running ones by how long they have run (`startedAt`: task name -> server ms), so the
 * bar moves smoothly; a succeeded run is 100. Never decreases as `at` grows or tasks advance.
 * @param {Run} run
 * @param {Record<string, number>} startedAt
 * @param {number | null} at
 */
export function runPercent(run, startedAt, at) {
  if (run.status === "succeeded") return 100;
  if (!run.batch_count) return Math.min(100, Number(run.progress.percent) || 0);
  const tasks = taskStates(run);
  const names = Object.keys(tasks);
  let done = 0;
  for (const name of names) {
    const value = tasks[name];
    if (value === "succeeded" || value === "failed" || value === "cancelled") done += 1;
    else if (value === "running" && at !== null && name in startedAt) {
      const ran = Math.max(0, at - startedAt[name]);
      done += RUNNING_SHARE * (1 - Math.exp(-ran / RUNNING_TAU_MS));
    }
  }
  return Math.min(100, Math.max((100 * done) / names.length, Number(run.progress.percent) || 0));
}
