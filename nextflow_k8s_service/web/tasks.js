// Per-task states of a run for the graph and the process bars. The server's `progress.tasks`
// is exact; without it the states are derived from the per-process counts and from which tasks
// have logged (a task that logged has started; ANALYZE i implies GENERATE i is done).

import { pendingTasks, taskName } from "./graph.js";

export const PROCESSES = ["GENERATE", "ANALYZE", "REPORT"];

/** Task name -> state. `seen`: task name -> order of its first log line. */
export function taskStates(run, seen) {
  const n = run.batch_count || 0;
  const tasks = pendingTasks(n);
  const progress = run.progress || {};
  if (progress.tasks && typeof progress.tasks === "object" && Object.keys(progress.tasks).length) {
    for (const [name, value] of Object.entries(progress.tasks)) {
      if (name in tasks) tasks[name] = String(value);
    }
  } else {
    deriveFromCounts(tasks, n, progress.processes || {}, seen);
  }
  if (run.status === "succeeded") for (const name of Object.keys(tasks)) tasks[name] = "succeeded";
  return tasks;
}

function deriveFromCounts(tasks, n, processes, seen) {
  const seenOf = (process) =>
    [...seen.entries()]
      .filter(([name]) => name.startsWith(process) && name in tasks)
      .sort((a, b) => a[1] - b[1])
      .map(([name]) => name);
  for (const process of ["GENERATE", "ANALYZE"]) {
    const counts = processes[process] || {};
    const seen = seenOf(process);
    for (const name of seen) tasks[name] = "running";
    if (counts.total && counts.succeeded >= counts.total) {
      for (let i = 1; i <= n; i += 1) tasks[taskName(process, i)] = "succeeded";
    } else {
      // Tasks that started first most likely finished first.
      seen.slice(0, counts.succeeded || 0).forEach((name) => {
        tasks[name] = "succeeded";
      });
    }
  }
  // ANALYZE i only starts once GENERATE i is done; REPORT once every ANALYZE is.
  for (let i = 1; i <= n; i += 1) {
    if (tasks[taskName("ANALYZE", i)] !== "pending") tasks[taskName("GENERATE", i)] = "succeeded";
  }
  const report = processes.REPORT || {};
  if (seen.has("REPORT") || report.running || report.succeeded || report.failed) {
    for (const name of Object.keys(tasks)) if (name !== "REPORT") tasks[name] = "succeeded";
    tasks.REPORT = report.failed ? "failed" : report.succeeded ? "succeeded" : "running";
  }
}

export function processCounts(run, tasks) {
  const out = {};
  for (const process of PROCESSES) {
    const given = run && run.progress && run.progress.processes && run.progress.processes[process];
    const counts = { total: 0, pending: 0, submitted: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const [name, value] of Object.entries(tasks)) {
      if (!name.startsWith(process)) continue;
      counts.total += 1;
      if (value in counts) counts[value] += 1;
    }
    // Trust the server's counts unless the task map knows better (a finished run).
    if (given && given.total && !(run.progress && run.progress.tasks) && run.status !== "succeeded") {
      Object.assign(counts, given);
    }
    out[process] = counts;
  }
  return out;
}
