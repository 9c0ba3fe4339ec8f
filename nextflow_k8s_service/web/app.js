// The demo page: controls and preview, the live pipeline graph, the log console, the report and
// the history. State comes from the WebSocket stream (a snapshot first, then events in order);
// the HTTP API is used for the preview, starting and cancelling, reports and history.

import { api, ApiError, reportUrl, streamUrl } from "./api.js";
import { $, h, setText, formatClock, formatDuration, RUN_ID_RE, TERMINAL } from "./dom.js";
import { PipelineGraph, pendingTasks } from "./graph.js";
import { PROCESSES, processCounts, taskStates } from "./tasks.js";
import { LogConsole } from "./logs.js";
import { renderBatchTable, renderChart, renderTotals } from "./report.js";
import { renderHistory } from "./history.js";
import { renderPreview } from "./preview.js";
import { Stream } from "./stream.js";

const STATUS_RANK = { queued: 0, starting: 1, running: 2 };
const TOKEN_PREFIX = "nfks:cancel:";
const NAME_KEY = "nfks:triggered-by";
const HISTORY_LIMIT = 10;

const ui = {
  form: $("run-form"),
  slider: $("batch-count"),
  sliderOut: $("batch-count-out"),
  rangeMin: $("range-min"),
  rangeMax: $("range-max"),
  who: $("triggered-by"),
  runBtn: $("run-btn"),
  cancelBtn: $("cancel-btn"),
  notice: $("notice"),
  error: $("error"),
  pvSummary: $("preview-summary"),
  pvTasks: $("pv-tasks"),
  pvPods: $("pv-pods"),
  pvPeak: $("pv-peak"),
  pvTime: $("pv-time"),
  pvCpuText: $("pv-cpu-text"),
  pvCpuBar: $("pv-cpu-bar"),
  pvMemText: $("pv-mem-text"),
  pvMemBar: $("pv-mem-bar"),
  pvFit: $("pv-fit"),
  executor: $("executor-badge"),
  conn: $("conn"),
  connText: $("conn-text"),
  connLive: $("conn-live"),
  status: $("run-status"),
  runId: $("run-id"),
  elapsed: $("elapsed"),
  percent: $("percent"),
  runBy: $("run-by"),
  overall: $("overall-bar"),
  overallFill: $("overall-fill"),
  runLive: $("run-live"),
  runMessage: $("run-message"),
  procs: $("procs"),
  report: $("report"),
  reportLink: $("report-link"),
  reportSub: $("report-sub"),
  reportChart: $("report-chart"),
  totals: $("totals").tBodies[0],
  batchTable: $("batch-table").tBodies[0],
  history: $("history").tBodies[0],
  historyEmpty: $("history-empty"),
};

const state = {
  limits: { default_batch_count: 5, max_batch_count: 12, executor: null },
  run: null, // RunDetail of the run on display (active, or the most recent one)
  previewOnly: false, // the visitor moved the slider after a run ended: show the plan instead
  seen: new Map(), // task name -> order of its first log line (fallback when progress has no tasks)
  serverOffsetMs: 0, // server clock minus ours, from frame timestamps
  frozenElapsed: null,
  connection: "connecting",
  retryAt: null,
  submitting: false,
  cancelling: false,
  announced: "",
  attachedNoticeFor: null,
  noticeRun: null,
  sliderTouched: false,
  report: null, // {runId, data}
  reportWanted: null,
};

const graph = new PipelineGraph($("graph"));
const logs = new LogConsole({
  list: $("log"),
  empty: $("log-empty"),
  filter: $("log-filter"),
  taskGroup: $("log-filter-tasks"),
  jump: $("log-jump"),
});
const procRows = buildProcessRows();

// --- helpers -------------------------------------------------------------------------------

function tokenKey(runId) {
  return TOKEN_PREFIX + runId;
}

function storage(kind) {
  try {
    return kind === "session" ? window.sessionStorage : window.localStorage;
  } catch {
    return null;
  }
}

function cancelToken(runId) {
  return runId ? storage("session")?.getItem(tokenKey(runId)) ?? null : null;
}

function isTerminal(run) {
  return Boolean(run && TERMINAL.has(run.status));
}

function isActive(run) {
  return Boolean(run && !TERMINAL.has(run.status));
}

/** `runId`: the notice is about that run starting or being watched, and goes when it ends. */
function showNotice(text, runId = null) {
  state.noticeRun = text ? runId : null;
  ui.notice.hidden = !text;
  setText(ui.notice, text || "");
}

function showError(text) {
  ui.error.hidden = !text;
  setText(ui.error, text || "");
}

function plural(n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`;
}

function buildProcessRows() {
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
    const row = h(
      "div",
      { class: "proc", dataset: { process: name.toLowerCase() } },
      h("span", { class: "proc-name" }, name),
      bar,
      count,
    );
    ui.procs.append(row);
    rows[name] = { ok, run, bad, count, bar };
  }
  return rows;
}

// --- run state -----------------------------------------------------------------------------

function blankRun(runId) {
  return {
    run_id: runId,
    status: "queued",
    batch_count: null,
    triggered_by: null,
    executor: null,
    started_at: null,
    finished_at: null,
    duration_seconds: null,
    message: null,
    progress: { percent: 0, processes: {} },
  };
}

/** Show `run` (a RunDetail) as the current run; a different run id starts from a clean slate. */
function adoptRun(run, { authoritative = true } = {}) {
  if (!run || !RUN_ID_RE.test(run.run_id)) return;
  const current = state.run;
  if (!current || current.run_id !== run.run_id) {
    state.run = { ...blankRun(run.run_id), ...run };
    state.seen.clear();
    state.frozenElapsed = null;
    state.previewOnly = false;
    state.reportWanted = null;
    if (state.report && state.report.runId !== run.run_id) hideReport();
    logs.reset();
  } else if (authoritative) {
    state.run = { ...current, ...run };
  } else {
    mergeRun(run);
  }
  inferBatchCount();
  syncSlider();
  onRunChanged();
}

/** While a run is on, an untouched slider shows its batch count (and the plan for it). */
function syncSlider() {
  const run = state.run;
  if (state.sliderTouched || !isActive(run) || !run.batch_count) return;
  const n = Math.min(Number(ui.slider.max), Math.max(1, run.batch_count));
  if (Number(ui.slider.value) === n) return;
  ui.slider.value = String(n);
  setText(ui.sliderOut, String(n));
  ui.slider.setAttribute("aria-valuetext", plural(n, "batch", "batches"));
  schedulePreview();
}

/** Merge a RunDetail fetched over HTTP, which may be older than what the stream already said. */
function mergeRun(detail) {
  const run = state.run;
  for (const key of ["batch_count", "triggered_by", "executor", "started_at"]) {
    if (detail[key] !== null && detail[key] !== undefined) run[key] = detail[key];
  }
  const rank = (s) => (TERMINAL.has(s) ? 3 : STATUS_RANK[s] ?? 0);
  if (rank(detail.status) >= rank(run.status)) {
    run.status = detail.status;
    run.message = detail.message ?? run.message;
    run.finished_at = detail.finished_at ?? run.finished_at;
    run.duration_seconds = detail.duration_seconds ?? run.duration_seconds;
  }
  const theirs = detail.progress && Number(detail.progress.percent);
  const ours = run.progress && Number(run.progress.percent);
  if (detail.progress && !(ours > theirs)) run.progress = detail.progress;
}

/** Make sure frames of `runId` have a run to land on; fetch its details when it is new to us. */
function ensureRun(runId) {
  if (!runId || !RUN_ID_RE.test(runId)) return false;
  if (state.run && state.run.run_id === runId) return true;
  adoptRun(blankRun(runId));
  api
    .runDetail(runId)
    .then((detail) => {
      if (state.run && state.run.run_id === runId && detail) {
        mergeRun(detail);
        inferBatchCount();
        syncSlider();
        onRunChanged();
      }
    })
    .catch(() => {
      /* the stream will fill in what it can */
    });
  return true;
}

function inferBatchCount() {
  const run = state.run;
  if (!run || run.batch_count) return;
  const tasks = run.progress && run.progress.tasks;
  if (tasks && typeof tasks === "object") {
    const n = Object.keys(tasks).filter((name) => name.startsWith("GENERATE")).length;
    if (n) run.batch_count = n;
  }
  if (!run.batch_count && run.progress && run.progress.processes && run.progress.processes.GENERATE) {
    const total = Number(run.progress.processes.GENERATE.total);
    if (total > 0) run.batch_count = total;
  }
}

// --- rendering -----------------------------------------------------------------------------

function onRunChanged() {
  const run = state.run;
  if (run && isTerminal(run)) {
    const token = cancelToken(run.run_id);
    if (token) storage("session")?.removeItem(tokenKey(run.run_id));
    if (state.frozenElapsed === null) state.frozenElapsed = liveElapsed(run);
    if (state.noticeRun === run.run_id) showNotice("");
  }
  render();
}

function render() {
  const run = state.previewOnly ? null : state.run;
  const sliderN = Number(ui.slider.value);

  const executor = (run && run.executor) || state.limits.executor;
  if (executor) {
    setText(ui.executor, executor);
    ui.executor.dataset.executor = executor;
    ui.executor.title = executor === "kubernetes" ? "Tasks run as Kubernetes pods" : "Tasks run as local processes";
  }

  if (!run) {
    ui.status.dataset.status = "idle";
    setText(ui.status, "ready");
    setText(ui.runId, "—");
    setText(ui.elapsed, "—");
    setText(ui.percent, "0%");
    setText(ui.runBy, "—");
    setOverall(0);
    ui.runMessage.hidden = true;
    graph.setShape(sliderN, "preview");
    graph.setRunStatus("idle");
    graph.setStates(pendingTasks(sliderN));
    renderProcesses(processCounts(null, pendingTasks(sliderN)));
  } else {
    const status = run.status || "unknown";
    ui.status.dataset.status = status;
    setText(ui.status, status);
    setText(ui.runId, run.run_id);
    setText(ui.runBy, run.triggered_by || "anonymous");
    const tasks = run.batch_count ? taskStates(run, state.seen) : {};
    const percent = status === "succeeded" ? 100 : Number(run.progress && run.progress.percent) || 0;
    setText(ui.percent, `${Math.round(percent)}%`);
    setOverall(percent);
    const message = run.message && (isTerminal(run) || status === "starting") ? run.message : "";
    ui.runMessage.hidden = !message;
    setText(ui.runMessage, message);
    ui.runMessage.dataset.status = status;
    if (run.batch_count) {
      graph.setShape(run.batch_count, "run");
      graph.setRunStatus(status);
      graph.setStates(tasks);
      renderProcesses(processCounts(run, tasks));
    }
    announce(run);
  }
  renderElapsed();
  renderButtons();
  document.body.dataset.runStatus = run ? run.status : "idle";
}

function setOverall(percent) {
  const value = Math.max(0, Math.min(100, percent));
  ui.overallFill.style.width = `${value}%`;
  ui.overall.setAttribute("aria-valuenow", String(Math.round(value)));
}

function renderProcesses(counts) {
  for (const process of PROCESSES) {
    const c = counts[process];
    const row = procRows[process];
    const total = c.total || 0;
    const pct = (value) => (total ? `${(100 * value) / total}%` : "0%");
    row.ok.style.width = pct(c.succeeded);
    row.run.style.width = pct(c.running);
    row.bad.style.width = pct(c.failed + (c.cancelled || 0));
    setText(row.count, `${c.succeeded} / ${total}`);
    row.bar.setAttribute("aria-valuemax", String(total));
    row.bar.setAttribute("aria-valuenow", String(c.succeeded));
    const extra = [
      c.running ? `${c.running} running` : "",
      c.failed ? `${c.failed} failed` : "",
      c.cancelled ? `${c.cancelled} cancelled` : "",
    ]
      .filter(Boolean)
      .join(", ");
    row.bar.setAttribute("aria-valuetext", `${c.succeeded} of ${total} done${extra ? `, ${extra}` : ""}`);
  }
}

function liveElapsed(run) {
  if (!run || !run.started_at) return null;
  if (run.duration_seconds !== null && run.duration_seconds !== undefined) return run.duration_seconds;
  const started = Date.parse(run.started_at);
  if (Number.isNaN(started)) return null;
  const end = run.finished_at ? Date.parse(run.finished_at) : Date.now() + state.serverOffsetMs;
  return Math.max(0, (end - started) / 1000);
}

function renderElapsed() {
  const run = state.previewOnly ? null : state.run;
  if (!run) return;
  let seconds;
  if (isTerminal(run)) {
    seconds = run.duration_seconds ?? state.frozenElapsed ?? liveElapsed(run);
    setText(ui.elapsed, seconds === null ? "—" : formatDuration(seconds));
  } else {
    seconds = liveElapsed(run);
    setText(ui.elapsed, seconds === null ? "—" : formatClock(seconds));
  }
}

function renderButtons() {
  const run = state.run;
  const active = isActive(run);
  const token = active ? cancelToken(run.run_id) : null;
  const runHadFocus = document.activeElement === ui.runBtn;
  const cancelHadFocus = document.activeElement === ui.cancelBtn;

  ui.runBtn.disabled = state.submitting || active;
  setText(ui.runBtn, state.submitting ? "Starting…" : active ? "Run in progress…" : "Run pipeline");
  ui.cancelBtn.hidden = !token;
  ui.cancelBtn.disabled = state.cancelling;
  setText(ui.cancelBtn, state.cancelling ? "Cancelling…" : "Cancel run");

  // Keep keyboard focus somewhere useful when the focused button disappears or is disabled.
  if (runHadFocus && ui.runBtn.disabled && !ui.cancelBtn.hidden) ui.cancelBtn.focus();
  if (cancelHadFocus && ui.cancelBtn.hidden) ui.runBtn.focus();
}

function announce(run) {
  const status = run.status;
  let text;
  if (status === "succeeded") {
    text = `Run ${run.run_id} succeeded${run.duration_seconds ? ` in ${formatDuration(run.duration_seconds)}` : ""}.`;
  } else if (status === "failed" || status === "unknown") {
    text = `Run ${run.run_id} ${status === "failed" ? "failed" : "ended in an unknown state"}${run.message ? `: ${run.message}` : "."}`;
  } else if (status === "cancelled") {
    text = `Run ${run.run_id} was cancelled.`;
  } else {
    text = `Run ${run.run_id} is ${status}${run.batch_count ? `, ${plural(run.batch_count, "batch", "batches")}` : ""}.`;
  }
  if (text !== state.announced) {
    state.announced = text;
    setText(ui.runLive, text);
  }
}

function hideReport() {
  state.report = null;
  ui.report.hidden = true;
  ui.reportChart.replaceChildren();
}

function showReport(runId, report) {
  state.report = { runId, data: report };
  ui.report.hidden = false;
  ui.report.dataset.runId = runId;
  ui.reportLink.href = reportUrl(runId);
  const batches = Array.isArray(report.batches) ? report.batches.length : 0;
  const when = report.generated_at ? new Date(report.generated_at) : null;
  setText(
    ui.reportSub,
    `Run ${runId} · ${plural(batches, "batch", "batches")}` +
      (when && !Number.isNaN(when.getTime()) ? ` · generated ${when.toLocaleTimeString("en-GB")}` : ""),
  );
  renderChart(ui.reportChart, report);
  renderTotals(ui.totals, report.totals);
  renderBatchTable(ui.batchTable, report.batches);
}

function loadReport(runId, inline) {
  if (!runId || state.reportWanted === runId) return;
  if (state.report && state.report.runId === runId) return;
  state.reportWanted = runId;
  if (inline && Array.isArray(inline.batches) && inline.totals) {
    showReport(runId, inline);
    return;
  }
  api
    .report(runId)
    .then((report) => {
      if (state.run && state.run.run_id === runId && report) showReport(runId, report);
    })
    .catch(() => {
      state.reportWanted = null;
    });
}

let historyTimer = null;
function loadHistory() {
  clearTimeout(historyTimer);
  historyTimer = setTimeout(() => {
    api
      .history(HISTORY_LIMIT)
      .then((runs) => renderHistory(ui.history, ui.historyEmpty, runs))
      .catch(() => {
        /* keep what is shown; the next run or reconnect refreshes it */
      });
  }, 50);
}

// --- the stream ----------------------------------------------------------------------------

function onFrame(frame) {
  const stamp = Date.parse(frame.timestamp);
  if (!Number.isNaN(stamp)) state.serverOffsetMs = stamp - Date.now();
  const data = frame.data && typeof frame.data === "object" ? frame.data : {};
  switch (frame.type) {
    case "snapshot":
      onSnapshot(data);
      break;
    case "status":
      if (!ensureRun(frame.run_id)) break;
      state.run.status = data.status || state.run.status;
      state.run.message = data.message ?? null;
      onRunChanged();
      break;
    case "progress":
      if (!ensureRun(frame.run_id)) break;
      state.run.progress = data;
      inferBatchCount();
      syncSlider();
      onRunChanged();
      break;
    case "log":
      if (frame.run_id && !ensureRun(frame.run_id)) break;
      noteSources(data.lines);
      logs.append(data.lines);
      if (state.run && !(state.run.progress && state.run.progress.tasks)) render();
      break;
    case "complete":
      if (!ensureRun(frame.run_id)) break;
      state.run.status = data.status || state.run.status;
      if (data.duration_seconds !== null && data.duration_seconds !== undefined) {
        state.run.duration_seconds = data.duration_seconds;
      }
      onRunChanged();
      if (state.run.status === "succeeded") loadReport(state.run.run_id, data.report);
      loadHistory();
      break;
    case "error":
      showError(
        `${data.stage ? `${data.stage}: ` : ""}${data.message || "The pipeline reported an error."}`,
      );
      break;
    default:
      break;
  }
}

function onSnapshot(data) {
  const run = data.run && typeof data.run === "object" ? data.run : null;
  if (run && RUN_ID_RE.test(run.run_id)) {
    adoptRun(run, { authoritative: true });
    noteSources(data.logs);
    logs.append(data.logs);
    render();
    if (data.active && !cancelToken(run.run_id) && state.attachedNoticeFor !== run.run_id) {
      state.attachedNoticeFor = run.run_id;
      const by = run.triggered_by ? ` by ${run.triggered_by}` : "";
      const text = `A run is already in progress (started${by}) — you are watching it live.`;
      showNotice(text, run.run_id);
    }
    if (run.status === "succeeded") loadReport(run.run_id);
  } else {
    if (isActive(state.run)) {
      // The service came back without the run we were showing (in-memory state is lost on a
      // restart): stop the clock rather than pretend it is still going.
      state.run.status = "unknown";
      state.run.message = "The service restarted and no longer reports this run.";
      onRunChanged();
    }
    render();
  }
  loadHistory();
}

function noteSources(lines) {
  if (!Array.isArray(lines)) return;
  for (const line of lines) {
    const source = line && String(line.source || "");
    if (source && /^(GENERATE|ANALYZE) \(\d+\)$|^REPORT$/.test(source) && !state.seen.has(source)) {
      state.seen.set(source, state.seen.size);
    }
  }
}

function onConnection(kind, detail = {}) {
  state.connection = kind;
  state.retryAt = detail.retryAt || null;
  ui.conn.dataset.state = kind;
  document.body.dataset.connection = kind;
  renderConnection();
  const spoken = {
    connecting: "Connecting to the live stream.",
    live: "Live stream connected.",
    reconnecting: "Connection lost; reconnecting.",
    offline: "You are offline; will reconnect.",
  }[kind];
  if (spoken && ui.connLive.textContent !== spoken) setText(ui.connLive, spoken);
}

function renderConnection() {
  const kind = state.connection;
  let text = { connecting: "Connecting…", live: "Live", offline: "Offline" }[kind] || "Reconnecting…";
  if ((kind === "reconnecting" || kind === "offline") && state.retryAt) {
    const seconds = Math.ceil((state.retryAt - Date.now()) / 1000);
    if (seconds > 0) text = `${kind === "offline" ? "Offline" : "Reconnecting"} in ${seconds} s`;
  }
  setText(ui.connText, text);
}

// --- controls ------------------------------------------------------------------------------

let previewTimer = null;
let previewAbort = null;

function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(loadPreview, 120);
}

async function loadPreview() {
  const n = Number(ui.slider.value);
  if (previewAbort) previewAbort.abort();
  const controller = new AbortController();
  previewAbort = controller;
  try {
    const preview = await api.preview(n, controller.signal);
    if (controller === previewAbort) renderPreview(ui, preview);
  } catch (error) {
    if (error && error.name === "AbortError") return;
    setText(ui.pvSummary, `The plan is unavailable: ${error.message}`);
  }
}

function onSlider() {
  state.sliderTouched = true;
  const n = Number(ui.slider.value);
  setText(ui.sliderOut, String(n));
  ui.slider.setAttribute("aria-valuetext", plural(n, "batch", "batches"));
  if (!isActive(state.run) && state.run && !state.previewOnly) state.previewOnly = true;
  if (!isActive(state.run)) render();
  schedulePreview();
}

async function onSubmit(event) {
  event.preventDefault();
  if (state.submitting || isActive(state.run)) return;
  showError("");
  showNotice("");
  const n = Number(ui.slider.value);
  const who = ui.who.value.trim();
  storage("local")?.setItem(NAME_KEY, who);
  state.submitting = true;
  renderButtons();
  try {
    const { data } = await api.run(n, who || undefined);
    if (data.cancel_token && RUN_ID_RE.test(data.run_id)) {
      storage("session")?.setItem(tokenKey(data.run_id), data.cancel_token);
    }
    if (data.run) adoptRun(data.run, { authoritative: false });
    if (data.attached && isActive(state.run)) {
      state.attachedNoticeFor = data.run_id;
      const r = data.run || {};
      const by = r.triggered_by ? ` by ${r.triggered_by}` : "";
      showNotice(
        `A run was already in progress (${plural(r.batch_count || 0, "batch", "batches")}, started${by}) — you are watching it instead.`,
        data.run_id,
      );
    } else if (isActive(state.run) && state.run.run_id === data.run_id) {
      showNotice(`Run ${data.run_id} started. Only this tab can cancel it.`, data.run_id);
    }
  } catch (error) {
    const text = error instanceof ApiError ? error.message : "The run could not be started.";
    showError(error && error.status === 503 ? `The service cannot start runs right now: ${text}` : text);
  } finally {
    state.submitting = false;
    renderButtons();
  }
}

async function onCancel() {
  const run = state.run;
  const token = run && cancelToken(run.run_id);
  if (!token || state.cancelling) return;
  state.cancelling = true;
  showError("");
  renderButtons();
  try {
    const result = await api.cancel(token);
    if (state.run && state.run.run_id === result.run_id) {
      state.run.status = result.status || "cancelled";
      onRunChanged();
    }
    showNotice(`Run ${result.run_id} was cancelled.`);
  } catch (error) {
    if (error.status === 404) showNotice("The run had already finished.");
    else if (error.status === 403) {
      storage("session")?.removeItem(tokenKey(run.run_id));
      showError("This tab may no longer cancel the run.");
    } else showError(error.message || "The run could not be cancelled.");
  } finally {
    state.cancelling = false;
    renderButtons();
  }
}

// --- start ---------------------------------------------------------------------------------

async function init() {
  ui.form.addEventListener("submit", onSubmit);
  ui.cancelBtn.addEventListener("click", onCancel);
  ui.slider.addEventListener("input", onSlider);
  ui.who.value = storage("local")?.getItem(NAME_KEY) || "";

  try {
    const limits = await api.limits();
    if (limits && typeof limits === "object") Object.assign(state.limits, limits);
  } catch {
    /* keep the defaults of SPEC §6 */
  }
  const max = Math.max(1, Number(state.limits.max_batch_count) || 12);
  const initial = Math.min(max, Math.max(1, Number(state.limits.default_batch_count) || 5));
  ui.slider.max = String(max);
  ui.slider.value = String(initial);
  setText(ui.rangeMax, String(max));
  setText(ui.sliderOut, String(initial));
  ui.slider.setAttribute("aria-valuetext", plural(initial, "batch", "batches"));
  render();
  loadPreview();
  loadHistory();

  new Stream(streamUrl(), onFrame, onConnection).start();

  setInterval(() => {
    if (state.run && isActive(state.run)) renderElapsed();
    if (state.connection !== "live") renderConnection();
  }, 1000);
}

init();
