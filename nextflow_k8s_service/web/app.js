// @ts-check
// The demo page: wires the stream, the controls and the HTTP API to the reducer (state.js) and
// the renders (view.js, graph.js, logs.js, report.js, history.js, preview.js). Every change is a
// frame for `applyFrame`; side effects (fetches, storage, focus) follow from comparing the state
// before and after; drawing happens at most once per animation frame.

import { api, ApiError, reportUrl, streamUrl } from "./api.js";
import { $, h, prefersReducedMotion, setText } from "./dom.js";
import { PipelineGraph } from "./graph.js";
import { LogConsole } from "./logs.js";
import { renderBatchTable, renderChart, renderTotals } from "./report.js";
import { renderHistory } from "./history.js";
import { renderPreview } from "./preview.js";
import { applyFrame, initialState, isActive, plural, RUN_ID_RE, TERMINAL } from "./state.js";
import { Stream } from "./stream.js";
import { PROCESSES } from "./tasks.js";
import { renderConnection, renderControls, renderRunCard, shownBatches } from "./view.js";

/** @typedef {import("./state.js").State} State */
/** @typedef {import("./state.js").Frame} Frame */

const TOKEN_PREFIX = "nfks:cancel:";
const NAME_KEY = "nfks:triggered-by";
const HISTORY_LIMIT = 10;

/** @type {Record<string, any>} */
const ui = {
  form: $("run-form"),
  slider: $("batch-count"),
  sliderOut: $("batch-count-out"),
  sliderNote: $("batch-count-note"),
  rangeMax: $("range-max"),
  who: $("triggered-by"),
  runBtn: $("run-btn"),
  cancelBtn: $("cancel-btn"),
  notice: $("notice"),
  error: $("error"),
  pvSummary: $("preview-summary"),
  pvTasks: $("pv-tasks"),
  pvPods: $("pv-pods"),
  pvPodsLabel: $("pv-pods-label"),
  pvPeak: $("pv-peak"),
  pvPeakLabel: $("pv-peak-label"),
  pvTime: $("pv-time"),
  pvQuota: $("pv-quota"),
  pvCpuText: $("pv-cpu-text"),
  pvCpuBar: $("pv-cpu-bar"),
  pvMemText: $("pv-mem-text"),
  pvMemBar: $("pv-mem-bar"),
  pvFit: $("pv-fit"),
  executor: $("executor-badge"),
  conn: $("conn"),
  connText: $("conn-text"),
  connLive: $("conn-live"),
  pipeline: $("pipeline"),
  pipelineTitle: $("pipeline-title"),
  runLabel: $("run-label"),
  status: $("run-status"),
  runId: $("run-id"),
  elapsed: $("elapsed"),
  percent: $("percent"),
  runBy: $("run-by"),
  overall: $("overall-bar"),
  overallFill: $("overall-fill"),
  runLive: $("run-live"),
  runMessage: $("run-message"),
  reportCue: $("report-cue"),
  procs: $("procs"),
  report: $("report"),
  reportTitle: $("report-title"),
  reportLink: $("report-link"),
  reportSub: $("report-sub"),
  reportChart: $("report-chart"),
  totals: /** @type {HTMLTableElement} */ ($("totals")).tBodies[0],
  batchTable: /** @type {HTMLTableElement} */ ($("batch-table")).tBodies[0],
  history: /** @type {HTMLTableElement} */ ($("history")).tBodies[0],
  historyEmpty: $("history-empty"),
};

/** @type {State} */
let state = initialState();
const clock = { offsetMs: 0 };
const graph = new PipelineGraph($("graph"));
const logs = new LogConsole({
  list: $("log"),
  empty: $("log-empty"),
  filter: /** @type {HTMLSelectElement} */ ($("log-filter")),
  taskGroup: $("log-filter-tasks"),
  jump: $("log-jump"),
});
const procRows = buildProcessRows();

// --- storage -------------------------------------------------------------------------------

/** @param {"session" | "local"} kind */
function storage(kind) {
  try {
    return kind === "session" ? window.sessionStorage : window.localStorage;
  } catch {
    return null;
  }
}

/** @param {string | null | undefined} runId */
function cancelToken(runId) {
  return runId ? (storage("session")?.getItem(TOKEN_PREFIX + runId) ?? null) : null;
}

function env() {
  return {
    now: Date.now(),
    offsetMs: clock.offsetMs,
    hasToken: (/** @type {string} */ id) => Boolean(cancelToken(id)),
  };
}

// --- dispatch, effects, drawing -------------------------------------------------------------

/** @param {Frame} frame */
function dispatch(frame) {
  const before = state;
  state = applyFrame(state, frame);
  if (state !== before) {
    effects(before, state, frame);
    scheduleDraw();
  }
}

let drawQueued = false;
function scheduleDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    draw();
  });
}

/** @type {State | null} */
let drawn = null;
let previewFor = 0;

function draw() {
  const now = env();
  renderControls(ui, state, now);
  renderRunCard(ui, procRows, graph, state, now);
  if (!drawn || drawn.logs !== state.logs) logs.render(state.logs);
  if (!drawn || drawn.report !== state.report) renderReport(state.report);
  if (state.history && (!drawn || drawn.history !== state.history)) {
    renderHistory(ui.history, ui.historyEmpty, state.history);
  }
  const batches = shownBatches(state);
  if (batches !== previewFor) {
    previewFor = batches;
    schedulePreview(batches);
  }
  if (state.focusRun) {
    // A run this tab started (or attached to): bring it into view and move focus there.
    ui.pipelineTitle.focus({ preventScroll: true });
    ui.pipeline.scrollIntoView({ block: "start", behavior: prefersReducedMotion() ? "auto" : "smooth" });
    dispatch({ type: "focused" });
  }
  drawn = state;
}

/**
 * Side effects that follow from a state change.
 * @param {State} before
 * @param {State} after
 * @param {Frame} frame
 */
function effects(before, after, frame) {
  const run = after.run;
  const newRun = run && (!before.run || before.run.run_id !== run.run_id);
  if (newRun && run && !run.started_at) loadDetail(run.run_id);
  if (run && TERMINAL.has(run.status)) {
    storage("session")?.removeItem(TOKEN_PREFIX + run.run_id);
    if (run.status === "succeeded" && !after.report) loadReport(run.run_id);
  }
  const ended = run && TERMINAL.has(run.status) && (!before.run || isActive(before.run) || newRun);
  if (frame.type === "snapshot" || ended) loadHistory();
  if (frame.type === "limits" || (newRun && run && run.executor !== (before.run && before.run.executor))) {
    previewFor = 0;
  }
}

/** @param {string} runId */
function loadDetail(runId) {
  api
    .runDetail(runId)
    .then((detail) => dispatch({ type: "detail", data: detail }))
    .catch(() => {
      /* the stream fills in what it can */
    });
}

/** @type {string | null} */
let reportWanted = null;
/** @param {string} runId */
function loadReport(runId) {
  if (reportWanted === runId) return;
  reportWanted = runId;
  api
    .report(runId)
    .then((data) => dispatch({ type: "report", data: { runId, data } }))
    .catch(() => {
      reportWanted = null;
    });
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let historyTimer;
function loadHistory() {
  clearTimeout(historyTimer);
  historyTimer = setTimeout(() => {
    api
      .history(HISTORY_LIMIT)
      .then((runs) => dispatch({ type: "history", data: { runs } }))
      .catch(() => {
        /* keep what is shown; the next run or reconnect refreshes it */
      });
  }, 50);
}

/** @param {{runId: string, data: any} | null} report */
function renderReport(report) {
  if (!report) {
    ui.report.hidden = true;
    ui.reportChart.replaceChildren();
    return;
  }
  const { runId, data } = report;
  ui.report.hidden = false;
  ui.report.dataset.runId = runId;
  ui.reportLink.href = reportUrl(runId);
  const batches = Array.isArray(data.batches) ? data.batches.length : 0;
  const when = data.generated_at ? new Date(data.generated_at) : null;
  setText(
    ui.reportSub,
    `Run ${runId} · ${plural(batches, "batch", "batches")}` +
      (when && !Number.isNaN(when.getTime()) ? ` · generated ${when.toLocaleTimeString("en-GB")}` : ""),
  );
  renderChart(ui.reportChart, data);
  renderTotals(ui.totals, data.totals);
  renderBatchTable(ui.batchTable, data.batches);
}

// --- preview --------------------------------------------------------------------------------

/** @type {ReturnType<typeof setTimeout> | undefined} */
let previewTimer;
/** @type {AbortController | null} */
let previewAbort = null;

/** @param {number} n */
function schedulePreview(n) {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(() => loadPreview(n), 120);
}

/** @param {number} n */
async function loadPreview(n) {
  if (previewAbort) previewAbort.abort();
  const controller = new AbortController();
  previewAbort = controller;
  try {
    const preview = await api.preview(n, controller.signal);
    const executor = (state.run && state.run.executor) || state.limits.executor;
    if (controller === previewAbort) renderPreview(ui, preview, executor);
  } catch (error) {
    if (error instanceof Error && error.name === "AbortError") return;
    setText(ui.pvSummary, `The plan is unavailable: ${error instanceof Error ? error.message : error}`);
  }
}

// --- controls -------------------------------------------------------------------------------

function buildProcessRows() {
  /** @type {Record<string, any>} */
  const rows = {};
  for (const name of PROCESSES) {
    const ok = h("span", { class: "seg seg-ok" });
    const run = h("span", { class: "seg seg-run" });
    const bad = h("span", { class: "seg seg-bad" });
    const count = h("span", { class: "proc-count mono" }, "0 / 0");
    const bar = h(
      "div",
      {
        class: "proc-bar",
        role: "progressbar",
        "aria-label": `${name} tasks done`,
        "aria-valuemin": "0",
        "aria-valuemax": "0",
        "aria-valuenow": "0",
      },
      ok,
      run,
      bad,
    );
    const label = h("span", { class: "proc-name" }, name);
    ui.procs.append(h("div", { class: "proc", dataset: { process: name.toLowerCase() } }, label, bar, count));
    rows[name] = { ok, run, bad, count, bar };
  }
  return rows;
}

/** @param {SubmitEvent} event */
async function onSubmit(event) {
  event.preventDefault();
  if (state.submitting || isActive(state.run)) return;
  const n = state.plan;
  const who = ui.who.value.trim();
  storage("local")?.setItem(NAME_KEY, who);
  dispatch({ type: "submit" });
  try {
    const { data } = await api.run(n, who || undefined);
    if (data.cancel_token && RUN_ID_RE.test(data.run_id)) {
      storage("session")?.setItem(TOKEN_PREFIX + data.run_id, data.cancel_token);
    }
    dispatch({ type: "started", data });
  } catch (error) {
    let message = error instanceof ApiError ? error.message : "The run could not be started.";
    if (error instanceof ApiError && error.status === 503)
      message = `The service cannot start runs right now: ${message}`;
    if (error instanceof ApiError && error.status === 429) {
      const wait = error.retryAfter
        ? ` Try again in ${plural(error.retryAfter, "second")}.`
        : " Try again in a minute.";
      message = `Too many runs were started from here just now.${wait}`;
    }
    dispatch({ type: "submit-failed", data: { message } });
    // The button was disabled while the request ran, which dropped its focus: give it back.
    if (document.activeElement === document.body) {
      requestAnimationFrame(() => ui.runBtn.focus());
    }
  }
}

async function onCancel() {
  const run = state.run;
  const token = run && cancelToken(run.run_id);
  if (!run || !token || state.cancelling) return;
  dispatch({ type: "cancel" });
  try {
    const result = await api.cancel(token);
    dispatch({ type: "cancelled", data: result });
  } catch (error) {
    const status = error instanceof ApiError ? error.status : 0;
    if (status === 404)
      dispatch({ type: "cancel-failed", data: { notice: "The run had already finished." } });
    else if (status === 403) {
      storage("session")?.removeItem(TOKEN_PREFIX + run.run_id);
      dispatch({ type: "cancel-failed", data: { message: "This tab may no longer cancel the run." } });
    } else {
      const message = error instanceof Error ? error.message : "";
      dispatch({ type: "cancel-failed", data: { message: message || "The run could not be cancelled." } });
    }
  }
}

/** @param {MouseEvent} event */
function onReportCue(event) {
  event.preventDefault();
  ui.reportTitle.focus({ preventScroll: true });
  ui.report.scrollIntoView({ block: "start", behavior: prefersReducedMotion() ? "auto" : "smooth" });
}

// --- start ---------------------------------------------------------------------------------

async function init() {
  ui.form.addEventListener("submit", onSubmit);
  ui.cancelBtn.addEventListener("click", onCancel);
  ui.reportCue.addEventListener("click", onReportCue);
  ui.slider.addEventListener("input", () =>
    dispatch({ type: "plan", data: { count: Number(ui.slider.value) } }),
  );
  ui.who.value = storage("local")?.getItem(NAME_KEY) || "";

  try {
    const limits = await api.limits();
    if (limits && typeof limits === "object") dispatch({ type: "limits", data: limits });
  } catch {
    /* keep the defaults of SPEC §6 */
  }
  scheduleDraw();
  loadHistory();

  /** @param {Frame} frame */
  const onFrame = (frame) => {
    const stamp = Date.parse(frame.timestamp || "");
    if (!Number.isNaN(stamp)) clock.offsetMs = stamp - Date.now();
    dispatch(frame);
  };
  /** @param {string} kind @param {{retryAt?: number | null}} [detail] */
  const onConnection = (kind, detail = {}) =>
    dispatch({ type: "connection", data: { state: kind, retryAt: detail.retryAt ?? null, at: Date.now() } });
  new Stream(streamUrl(), onFrame, onConnection).start();

  // The clock ticks only while a run is live, and the retry countdown only while reconnecting.
  setInterval(() => {
    if (state.connection === "live" ? isActive(state.run) : state.retryAt !== null) {
      const now = env();
      if (state.connection !== "live") renderConnection(ui, state, now);
      else scheduleDraw();
    }
  }, 1000);
}

init();
