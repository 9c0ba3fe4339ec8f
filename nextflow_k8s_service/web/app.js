// @ts-check
// The demo page: wires the stream, the controls and the HTTP API to the reducer (state.js) and
// the renders (view.js, graph.js, logs.js, report.js, history.js, preview.js). Every change is a
// frame for `applyFrame`; side effects (fetches, storage, focus) follow from comparing the state
// before and after; drawing happens at most once per animation frame.

import { api, ApiError, reportUrl, streamUrl } from "./api.js";
import { $, formatClock, formatDuration, h, prefersReducedMotion, setAttr, setHidden, setText } from "./dom.js";
import { PipelineGraph } from "./graph.js";
import { LogConsole } from "./logs.js";
import { renderBatchTable, renderChart, renderTotals } from "./report.js";
import { renderHistory } from "./history.js";
import { renderPreview } from "./preview.js";
import { applyFrame, initialState, isActive, plural, RUN_ID_RE, TERMINAL } from "./state.js";
import { Stream } from "./stream.js";
import { Player, parseFrames, SPEEDS } from "./replay.js";
import { renderTaskPanel } from "./taskpanel.js";
import { Timeline, taskSeconds } from "./timeline.js";
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
  archiveNote: $("archive-note"),
  replayBtn: $("replay-btn"),
  replayBar: $("replay-bar"),
  replayPlay: $("replay-play"),
  replayScrub: $("replay-scrub"),
  replayTime: $("replay-time"),
  replayExit: $("replay-exit"),
  runLink: $("run-link"),
  liveLink: $("live-link"),
  taskPanel: $("task-panel"),
  taskTitle: $("task-title"),
  taskState: $("task-state"),
  taskClose: $("task-close"),
  taskSubmitted: $("task-submitted"),
  taskStarted: $("task-started"),
  taskFinished: $("task-finished"),
  taskTook: $("task-took"),
  taskExit: $("task-exit"),
  taskReason: $("task-reason"),
  taskLog: $("task-log"),
  taskLogEmpty: $("task-log-empty"),
};

// `/runs/<run_id>`: the page shows that run (live while it goes on, else from the archive).
let pinned = (/^\/runs\/(r[0-9a-f]{11})\/?$/.exec(window.location.pathname) || [])[1] || null;
/** "live": the stream drives the page; "archive": a remembered run; "replay": the player does. */
/** @type {"live" | "archive" | "replay"} */
let mode = "live";
/** @type {Player | null} */
let player = null;
/** @type {Stream | null} */
let stream = null;
let focusPanel = false;

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
const timeline = new Timeline($("timeline"), $("timeline-list"), $("timeline-end"));
graph.onOpen = openTask;
logs.onOpen = openTask;

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
  if (player) return { now: player.now, offsetMs: 0, hasToken: () => false };
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
  const at = now.now + now.offsetMs;
  drawTasks(at);
  renderReplay();
  renderLinks();
  if (focusPanel && !ui.taskPanel.hidden) {
    focusPanel = false;
    ui.taskTitle.focus({ preventScroll: true });
    ui.taskPanel.scrollIntoView({ block: "nearest", behavior: prefersReducedMotion() ? "auto" : "smooth" });
  }
  drawn = state;
}

/** Durations on the graph's nodes, the timeline and the open task's panel. @param {number} at */
function drawTasks(at) {
  const run = state.previewOnly ? null : state.run;
  /** @type {Record<string, string>} */
  const durations = {};
  if (run) {
    for (const [name, record] of Object.entries(state.records)) {
      const seconds = taskSeconds(record, at);
      if (seconds !== null && (record.finished_at || isActive(run))) durations[name] = formatDuration(seconds);
    }
  }
  graph.setDurations(durations);
  graph.paint();
  timeline.render(state, at);
  renderTaskPanel(ui, state, at);
}

// --- remembered runs: archive and replay -----------------------------------------------------

/** The page's own fields, with no run: where an archived run or a replay starts. */
function pageBase() {
  return {
    ...initialState(),
    limits: state.limits,
    plan: state.plan,
    history: state.history,
    connection: state.connection,
    retryAt: state.retryAt,
    logs: { lines: [], added: 0, epoch: state.logs.epoch + 1 },
  };
}

/** @param {State} next */
function replaceState(next) {
  const before = state;
  state = next;
  effects(before, state, { type: "replace" });
  scheduleDraw();
}

/** @param {any} detail  a RunDetail */
function identity(detail) {
  const { run_id, batch_count, triggered_by, executor, started_at } = detail;
  return { run_id, batch_count, triggered_by, executor, started_at };
}

/** @param {string} runId @returns {Promise<Frame[] | null>} */
async function recordedFrames(runId) {
  try {
    const frames = parseFrames(await api.events(runId));
    return frames.length ? frames : null;
  } catch {
    return null;
  }
}

/** @param {string} text */
function archiveNote(text) {
  setText(ui.archiveNote, text);
  setHidden(ui.archiveNote, !text);
}

/** Open the run of the address: follow it live while it goes on, else from the archive. */
async function openPinned() {
  if (!pinned) return;
  let detail;
  try {
    detail = await api.runDetail(pinned);
  } catch (error) {
    const status = error instanceof ApiError ? error.status : 0;
    archiveNote(
      status === 404
        ? `Run ${pinned} is not remembered here: the id is unknown, or the run is too old.`
        : `Run ${pinned} cannot be loaded now: ${error instanceof Error ? error.message : error}`,
    );
    return;
  }
  if (!TERMINAL.has(detail.status)) return; // the stream brings it, live
  mode = "archive";
  await loadArchive(detail);
}

/** Show a finished run in full: its recorded frames through the reducer, then its records. @param {any} detail */
async function loadArchive(detail) {
  const runId = detail.run_id;
  const frames = await recordedFrames(runId);
  if (mode !== "archive") return;
  let next = applyFrame(pageBase(), { type: "replay", data: { run: identity(detail) } });
  if (frames) for (const frame of frames) next = applyFrame(next, frame);
  else next = applyFrame(next, { type: "snapshot", data: { run: detail, logs: [] } });
  replaceState(next);
  dispatch({ type: "detail", data: detail });
  api
    .tasks(runId)
    .then((data) => dispatch({ type: "tasks", data }))
    .catch(() => {
      /* the recorded frames already hold the tasks */
    });
  if (!frames) {
    api
      .logs(runId, null, 500)
      .then((data) => dispatch({ type: "log", run_id: runId, data: { lines: data.lines } }))
      .catch(() => {
        /* no archived lines: the log stays empty */
      });
  }
}

async function startReplay() {
  const run = state.run;
  if (!run || isActive(run) || player) return;
  const frames = await recordedFrames(run.run_id);
  if (!frames) {
    archiveNote(`Run ${run.run_id} has no recorded events to replay.`);
    return;
  }
  archiveNote("");
  const base = applyFrame(pageBase(), { type: "replay", data: { run: identity(run) } });
  mode = "replay";
  const previous = state;
  player = new Player(base, frames, (replayed) => {
    // The page's own fields (limits, history, connection, the open panel) are not the replay's.
    const selected = replayed.run && state.selected && state.run?.run_id === replayed.run.run_id;
    state = {
      ...replayed,
      limits: state.limits,
      history: state.history,
      connection: state.connection,
      retryAt: state.retryAt,
      selected: selected ? state.selected : null,
    };
    scheduleDraw();
  });
  replaceState({ ...base, selected: previous.selected });
  player.play();
  ui.replayPlay.focus();
}

function exitReplay() {
  if (!player) return;
  player.stop();
  player = null;
  if (pinned && state.run && state.run.run_id === pinned) {
    mode = "archive";
    openPinned();
  } else goLive();
  ui.pipelineTitle.focus({ preventScroll: true });
}

/** Leave a replay or a run's address for the live page (a new run is about to start). */
function goLive() {
  if (mode === "live" && !pinned) return;
  player?.stop();
  player = null;
  mode = "live";
  if (pinned) {
    pinned = null;
    archiveNote("");
    window.history.pushState(null, "", "/");
  }
  replaceState(pageBase());
  // A fresh connection starts with a snapshot: the truth of now.
  stream?.stop();
  stream?.start();
}

function renderReplay() {
  const run = state.previewOnly ? null : state.run;
  setHidden(ui.replayBtn, Boolean(player) || !run || isActive(run));
  setHidden(ui.replayBar, !player);
  if (!player) return;
  const label = player.ended ? "Replay again" : player.playing ? "Pause" : "Play";
  setText(ui.replayPlay, label);
  for (const button of ui.replayBar.querySelectorAll(".speed")) {
    setAttr(button, "aria-pressed", String(Number(button.dataset.speed) === player.speed));
  }
  setAttr(ui.replayScrub, "max", String(player.duration));
  if (Number(ui.replayScrub.value) !== Math.round(player.position)) {
    ui.replayScrub.value = String(Math.round(player.position));
  }
  const time = `${formatClock(player.position / 1000)} / ${formatClock(player.duration / 1000)}`;
  setText(ui.replayTime, time);
  setAttr(ui.replayScrub, "aria-valuetext", time);
  if (run) setText(ui.runLabel, `Replay of run ${run.run_id} at ${player.speed}×`);
}

/** The run's address, and the way back to the live page from a remembered run. */
function renderLinks() {
  const run = state.previewOnly ? null : state.run;
  setHidden(ui.runLink, !run || Boolean(player) || Boolean(pinned));
  if (run) setAttr(ui.runLink, "href", `/runs/${run.run_id}`);
  setHidden(ui.liveLink, !pinned);
  if (pinned && mode === "archive" && !player && run) setText(ui.runLabel, "From the archive");
}

// --- task drill-down -------------------------------------------------------------------------

/** Open the panel of task `name` (from the graph, the timeline or the log). @param {string} name */
function openTask(name) {
  focusPanel = true;
  dispatch({ type: "select", data: { name } });
  scheduleDraw();
  const run = state.run;
  // A finished run's lines come from the archive (all of them, not only the page's last 500).
  if (run && !isActive(run) && mode !== "replay") {
    const runId = run.run_id;
    api
      .logs(runId, name, 500)
      .then((data) => {
        if (data && Array.isArray(data.lines)) dispatch({ type: "task-logs", data: { runId, name, lines: data.lines } });
      })
      .catch(() => {
        /* no archive endpoint: the panel shows the page's own lines of the task */
      });
  }
}

function closeTask() {
  const name = state.selected;
  dispatch({ type: "select", data: { name: null } });
  const bar = name ? document.querySelector(`#timeline .tl-bar[data-task="${CSS.escape(name)}"]`) : null;
  if (bar instanceof HTMLElement) bar.focus();
  else ui.pipelineTitle.focus({ preventScroll: true });
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
  goLive();
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
  $("timeline-list").addEventListener("click", (event) => {
    const bar = /** @type {Element} */ (event.target).closest(".tl-bar");
    if (bar instanceof HTMLElement && bar.dataset.task) openTask(bar.dataset.task);
  });
  ui.taskClose.addEventListener("click", closeTask);
  ui.taskPanel.addEventListener("keydown", (/** @type {KeyboardEvent} */ event) => {
    if (event.key === "Escape") closeTask();
  });
  ui.replayBtn.addEventListener("click", () => startReplay());
  // Back from the live page to a run's address (or on): the address decides what is shown.
  window.addEventListener("popstate", () => window.location.reload());
  ui.replayExit.addEventListener("click", exitReplay);
  ui.replayPlay.addEventListener("click", () => {
    if (!player) return;
    if (player.playing) player.pause();
    else player.play();
  });
  for (const button of ui.replayBar.querySelectorAll(".speed")) {
    button.addEventListener("click", () => {
      const speed = Number(/** @type {HTMLElement} */ (button).dataset.speed);
      if (player && SPEEDS.includes(speed)) player.setSpeed(speed);
    });
  }
  ui.replayScrub.addEventListener("input", () => player?.seek(Number(ui.replayScrub.value)));
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
    // A remembered run or a replay is on display: the live stream waits (its next snapshot
    // brings the truth back when the page returns to live).
    if (mode !== "live") return;
    if (pinned) {
      const id = frame.type === "snapshot" ? frame.data?.run?.run_id : frame.run_id;
      if (id !== pinned) return;
    }
    const stamp = Date.parse(frame.timestamp || "");
    if (!Number.isNaN(stamp)) clock.offsetMs = stamp - Date.now();
    dispatch(frame);
  };
  /** @param {string} kind @param {{retryAt?: number | null}} [detail] */
  const onConnection = (kind, detail = {}) =>
    dispatch({ type: "connection", data: { state: kind, retryAt: detail.retryAt ?? null, at: Date.now() } });
  stream = new Stream(streamUrl(), onFrame, onConnection);
  stream.start();
  openPinned();

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
