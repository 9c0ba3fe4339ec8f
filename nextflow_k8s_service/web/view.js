// @ts-check
// Renders of the page's state: the controls and the run card. Each is a function of the state
// and of `env` (the clock and whether this tab holds the run's cancel token); they write only
// what differs, so calling them on every frame is cheap.

import { setAttr, setData, setHidden, setText, formatClock, formatDuration } from "./dom.js";
import { TERMINAL, isActive, plural } from "./state.js";
import { PROCESSES, pendingTasks, processCounts, runPercent, taskStates } from "./tasks.js";

/** @typedef {import("./state.js").State} State */
/** @typedef {import("./state.js").Run} Run */
/** @typedef {{now: number, offsetMs: number, hasToken: (runId: string) => boolean}} Env */

/** @param {HTMLElement} node @param {string} width */
function setWidth(node, width) {
  if (node.style.width !== width) node.style.width = width;
}

/** The run the card shows: none while the visitor looks at a plan. @param {State} state */
function shownRun(state) {
  return state.previewOnly ? null : state.run;
}

/** The stream is away while a run is on: the card must not look live. @param {State} state */
function isStale(state) {
  return state.connection !== "live" && state.lostAt !== null && isActive(state.run);
}

/** Batches the controls show: the active run's, else the visitor's plan. @param {State} state */
export function shownBatches(state) {
  return isActive(state.run) && state.run && state.run.batch_count ? state.run.batch_count : state.plan;
}

/**
 * Seconds the run has taken: its duration once known; while it goes on, up to now (or up to the
 * moment the stream went away, so an outage never ticks on).
 * @param {Run} run @param {State} state @param {Env} env
 */
export function elapsedSeconds(run, state, env) {
  if (TERMINAL.has(run.status) && typeof run.duration_seconds === "number") return run.duration_seconds;
  const started = run.started_at ? Date.parse(run.started_at) : NaN;
  if (Number.isNaN(started)) return null;
  let end;
  if (run.finished_at) end = Date.parse(run.finished_at);
  else if (state.lostAt !== null) end = state.lostAt + env.offsetMs;
  else end = env.now + env.offsetMs;
  return Number.isNaN(end) ? null : Math.max(0, (end - started) / 1000);
}

/** @param {Run} run @param {boolean} stale */
function sentence(run, stale) {
  const status = run.status;
  if (stale) return `Connection lost; run ${run.run_id} is shown as it was when the stream stopped.`;
  if (status === "succeeded") {
    const took = run.duration_seconds ? ` in ${formatDuration(run.duration_seconds)}` : "";
    return `Run ${run.run_id} succeeded${took}.`;
  }
  if (status === "failed") return `Run ${run.run_id} failed${run.message ? `: ${run.message}` : "."}`;
  if (status === "unknown")
    return `Run ${run.run_id} ended in an unknown state${run.message ? `: ${run.message}` : "."}`;
  if (status === "cancelled") return `Run ${run.run_id} was cancelled.`;
  const batches = run.batch_count ? `, ${plural(run.batch_count, "batch", "batches")}` : "";
  return `Run ${run.run_id} is ${status}${batches}.`;
}

/**
 * @typedef {{ok: HTMLElement, run: HTMLElement, bad: HTMLElement, count: HTMLElement,
 *   bar: HTMLElement}} ProcRow
 */

/**
 * @param {Record<string, ProcRow>} rows
 * @param {import("./state.js").Counts | any} counts
 */
function renderProcesses(rows, counts) {
  for (const process of PROCESSES) {
    const c = counts[process];
    const row = rows[process];
    const total = c.total || 0;
    /** @param {number} value */
    const pct = (value) => (total ? `${(100 * value) / total}%` : "0%");
    setWidth(row.ok, pct(c.succeeded));
    setWidth(row.run, pct(c.running));
    setWidth(row.bad, pct(c.failed + (c.cancelled || 0)));
    setData(row.bad, "kind", c.failed ? "failed" : "cancelled");
    setText(row.count, `${c.succeeded} / ${total}`);
    setAttr(row.bar, "aria-valuemax", String(total));
    setAttr(row.bar, "aria-valuenow", String(c.succeeded));
    const extra = [
      c.running ? `${c.running} running` : "",
      c.failed ? `${c.failed} failed` : "",
      c.cancelled ? `${c.cancelled} cancelled` : "",
    ]
      .filter(Boolean)
      .join(", ");
    setAttr(row.bar, "aria-valuetext", `${c.succeeded} of ${total} done${extra ? `, ${extra}` : ""}`);
  }
}

/**
 * The run card: status, identity, clock, progress, graph and process bars.
 * @param {Record<string, HTMLElement>} ui
 * @param {any} rows
 * @param {import("./graph.js").PipelineGraph} graph
 * @param {State} state
 * @param {Env} env
 */
export function renderRunCard(ui, rows, graph, state, env) {
  const run = shownRun(state);
  const stale = isStale(state);
  if (!run) {
    const n = state.plan;
    setData(ui.status, "status", "idle");
    setText(ui.status, "ready");
    setText(ui.runLabel, `Plan for the next run: ${plural(n, "batch", "batches")}`);
    setText(ui.runId, "—");
    setText(ui.elapsed, "—");
    setText(ui.percent, "0%");
    setText(ui.runBy, "—");
    setOverall(ui, 0);
    setHidden(ui.runMessage, true);
    setHidden(ui.reportCue, true);
    graph.setShape(n, "preview");
    graph.setRunStatus("idle");
    graph.setStates(pendingTasks(n));
    renderProcesses(rows, processCounts(pendingTasks(n)));
    setData(document.body, "runStatus", "idle");
    return;
  }
  const status = run.status || "unknown";
  const shownStatus = stale ? "paused" : status;
  setData(ui.status, "status", shownStatus);
  setText(ui.status, stale ? "disconnected" : status);
  setText(ui.runLabel, isActive(run) ? "Run in progress" : "Last run");
  setText(ui.runId, run.run_id);
  setText(ui.runBy, run.triggered_by || "anonymous");
  // While the run goes on, running tasks keep moving the bar between frames.
  const live = isActive(run) && !stale;
  const percent = live
    ? Math.max(state.percent, runPercent(run, state.startedAt, env.now + env.offsetMs))
    : state.percent;
  setText(ui.percent, `${Math.floor(percent)}%`);
  setOverall(ui, percent);
  let message = run.message && (TERMINAL.has(status) || status === "starting") ? run.message : "";
  if (stale)
    message =
      "Connection to the service lost: the run is shown as it was; " +
      "it will update once the service answers again.";
  setHidden(ui.runMessage, !message);
  setText(ui.runMessage, message);
  setData(ui.runMessage, "status", shownStatus);
  const seconds = elapsedSeconds(run, state, env);
  const done = TERMINAL.has(status);
  setText(ui.elapsed, seconds === null ? "—" : done ? formatDuration(seconds) : formatClock(seconds));
  setHidden(ui.reportCue, !(state.report && state.report.runId === run.run_id));
  if (run.batch_count) {
    const tasks = taskStates(run);
    graph.setShape(run.batch_count, "run");
    graph.setRunStatus(shownStatus);
    graph.setStates(tasks);
    renderProcesses(rows, processCounts(tasks));
  }
  const spoken = sentence(run, stale);
  if (ui.runLive.textContent !== spoken) setText(ui.runLive, spoken);
  setData(document.body, "runStatus", shownStatus);
}

/** @param {Record<string, HTMLElement>} ui @param {number} percent */
function setOverall(ui, percent) {
  const value = Math.max(0, Math.min(100, percent));
  setWidth(ui.overallFill, `${value}%`);
  setAttr(ui.overall, "aria-valuenow", String(Math.floor(value)));
}

/**
 * The controls: the slider (locked to the active run), buttons, notices and the connection badge.
 * @param {Record<string, any>} ui
 * @param {State} state
 * @param {Env} env
 */
export function renderControls(ui, state, env) {
  const run = state.run;
  const active = isActive(run);
  const n = shownBatches(state);
  setAttr(ui.slider, "max", String(state.limits.max_batch_count));
  setText(ui.rangeMax, String(state.limits.max_batch_count));
  if (Number(ui.slider.value) !== n) ui.slider.value = String(n);
  if (ui.slider.disabled !== active) ui.slider.disabled = active;
  setText(ui.sliderOut, String(n));
  setAttr(ui.slider, "aria-valuetext", plural(n, "batch", "batches"));
  setText(ui.sliderNote, active ? "Batches of the run in progress" : "");
  setHidden(ui.sliderNote, !active);

  const executor = (run && run.executor) || state.limits.executor;
  if (executor) {
    setText(ui.executor, executor);
    setData(ui.executor, "executor", executor);
    setAttr(
      ui.executor,
      "title",
      executor === "kubernetes" ? "Tasks run as Kubernetes pods" : "Tasks run as local processes",
    );
  }

  const stale = isStale(state);
  const canCancel = active && !stale && run !== null && env.hasToken(run.run_id);
  const runDisabled = state.submitting || active;
  if (ui.runBtn.disabled !== runDisabled) ui.runBtn.disabled = runDisabled;
  setText(ui.runBtn, state.submitting ? "Starting…" : active ? "Run in progress…" : "Run pipeline");
  setHidden(ui.cancelBtn, !canCancel);
  if (ui.cancelBtn.disabled !== state.cancelling) ui.cancelBtn.disabled = state.cancelling;
  setText(ui.cancelBtn, state.cancelling ? "Cancelling…" : "Cancel run");

  let notice = state.notice ? state.notice.text : "";
  if (!notice && active && run && !env.hasToken(run.run_id) && !stale) {
    const by = run.triggered_by ? ` by ${run.triggered_by}` : "";
    notice = `A run is already in progress (started${by}) — you are watching it live.`;
  }
  setHidden(ui.notice, !notice);
  setText(ui.notice, notice);
  setHidden(ui.error, !state.error);
  setText(ui.error, state.error);

  renderConnection(ui, state, env);
  // The live dot moves only while something is changing.
  setData(document.body, "busy", active && state.connection === "live" ? "yes" : "no");
}

/** @param {Record<string, HTMLElement>} ui @param {State} state @param {Env} env */
export function renderConnection(ui, state, env) {
  const kind = state.connection;
  setData(ui.conn, "state", kind);
  setData(document.body, "connection", kind);
  /** @type {Record<string, string>} */
  const labels = { connecting: "Connecting…", live: "Live", offline: "Offline" };
  let text = labels[kind] || "Reconnecting…";
  if ((kind === "reconnecting" || kind === "offline") && state.retryAt) {
    const seconds = Math.ceil((state.retryAt - env.now) / 1000);
    if (seconds > 0) text = `${kind === "offline" ? "Offline" : "Reconnecting"} in ${seconds} s`;
  }
  setText(ui.connText, text);
  /** @type {Record<string, string>} */
  const spokenText = {
    connecting: "Connecting to the live stream.",
    live: "Live stream connected.",
    reconnecting: "Connection lost; reconnecting.",
    offline: "You are offline; will reconnect.",
  };
  const spoken = spokenText[kind];
  if (spoken && ui.connLive.textContent !== spoken) setText(ui.connLive, spoken);
}
