// @ts-check
// The page's state as a pure reducer: `applyFrame(state, frame) -> state`. Stream frames (SPEC §5)
// and the page's own events (connection changes, the visitor's controls, HTTP answers) are all
// frames; nothing here touches the DOM, the clock or the network, so the live stream, a replay of
// a run's recorded frames and a reopened run can all feed it. Unknown frame types leave the state
// as it was. Inputs are never mutated.

import { TASK_STATES, runPercent } from "./tasks.js";

export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "unknown"]);
export const MAX_LOG_LINES = 500;
export const RUN_ID_RE = /^r[0-9a-f]{11}$/;

const STATUS_RANK = /** @type {Record<string, number>} */ ({ queued: 0, starting: 1, running: 2 });
const TASK_RE = /^(GENERATE|ANALYZE) \((\d+)\)$|^REPORT$/;

/**
 * @typedef {{total: number, pending: number, running: number, succeeded: number, failed: number,
 *   cancelled?: number}} Counts
 * @typedef {{percent: number, processes: Record<string, Counts>, tasks: Record<string, string>}} Progress
 * @typedef {{run_id: string, status: string, batch_count: number | null, triggered_by: string | null,
 *   executor: string | null, started_at: string | null, finished_at: string | null,
 *   duration_seconds: number | null, message: string | null, progress: Progress}} Run
 * @typedef {{timestamp: string, source: string, message: string}} LogLine
 * @typedef {{lines: LogLine[], added: number, epoch: number}} Logs
 *   `added` counts every line ever appended in this epoch (views append what they have not
 *   drawn); `epoch` changes when the lines start over (another run).
 * @typedef {{type: string, run_id?: string | null, seq?: number, id?: unknown, timestamp?: string,
 *   data?: any}} Frame
 * @typedef {{name: string, process: string, index: number, state: string,
 *   submitted_at: string | null, started_at: string | null, finished_at: string | null,
 *   duration_seconds: number | null, exit_code: number | null, reason: string | null}} TaskRecord
 *   One task of the run with its times (SPEC: `task` frames, RunDetail `progress.task_records`).
 * @typedef {{default_batch_count: number, max_batch_count: number, executor: string | null}} Limits
 * @typedef {"connecting" | "live" | "reconnecting" | "offline"} Connection
 * @typedef {{
 *   limits: Limits,
 *   connection: Connection,
 *   retryAt: number | null,
 *   lostAt: number | null,
 *   run: Run | null,
 *   percent: number,
 *   startedAt: Record<string, number>,
 *   logs: Logs,
 *   report: {runId: string, data: any} | null,
 *   plan: number,
 *   previewOnly: boolean,
 *   history: unknown[] | null,
 *   submitting: boolean,
 *   cancelling: boolean,
 *   notice: {text: string, runId: string | null} | null,
 *   error: string,
 *   ownRun: string | null,
 *   focusRun: string | null,
 *   records: Record<string, TaskRecord>,
 *   lastAt: number | null,
 *   selected: string | null,
 *   taskLogs: {runId: string, name: string, lines: LogLine[]} | null,
 * }} State
 *   `lostAt`: page clock (ms) when the stream went away while showing a run; null while live.
 *   `percent`: the overall progress shown, which never goes backwards within a run.
 *   `startedAt`: task name -> server time (ms) it was first seen running, for the smooth bar.
 *   `plan`: the batch count of the controls; `previewOnly`: the visitor moved it after a run
 *   ended, so the graph shows the plan instead of the last run.
 *   `history`: the recent runs (GET /demo/history), null until loaded.
 *   `ownRun`: the run this tab started; `focusRun`: a run this tab just started, to bring into view.
 *   `records`: task name -> its record, for the timeline and the task panel.
 *   `lastAt`: server time (ms) of the newest frame of the run, the timeline's "now" when replayed.
 *   `selected`: the task whose panel is open; `taskLogs`: its lines as the archive gave them.
 */

/** @returns {State} */
export function initialState() {
  return {
    limits: { default_batch_count: 5, max_batch_count: 12, executor: null },
    connection: "connecting",
    retryAt: null,
    lostAt: null,
    run: null,
    percent: 0,
    startedAt: {},
    logs: { lines: [], added: 0, epoch: 0 },
    report: null,
    plan: 5,
    previewOnly: false,
    history: null,
    submitting: false,
    cancelling: false,
    notice: null,
    error: "",
    ownRun: null,
    focusRun: null,
    records: {},
    lastAt: null,
    selected: null,
    taskLogs: null,
  };
}

/** @param {Run | null} run */
export function isActive(run) {
  return Boolean(run && !TERMINAL.has(run.status));
}

/** @param {string} runId @returns {Run} */
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
    progress: { percent: 0, processes: {}, tasks: {} },
  };
}

/** @param {unknown} value @returns {any} */
function obj(value) {
  return value && typeof value === "object" && !Array.isArray(value) ? value : {};
}

/** @param {unknown} raw @returns {Progress} */
function normalizeProgress(raw) {
  const p = obj(raw);
  return {
    percent: Number(p.percent) || 0,
    processes: { ...obj(p.processes) },
    tasks: { ...obj(p.tasks) },
  };
}

/** A RunDetail from the server, with every field present. @param {any} raw @returns {Run} */
function normalizeRun(raw) {
  const run = { ...blankRun(raw.run_id), ...raw };
  run.progress = normalizeProgress(raw.progress);
  return withBatchCount(run);
}

/**
 * Fill in `batch_count` from the tasks or counts when the server has not said it yet.
 * @param {Run} run
 */
function withBatchCount(run) {
  if (run.batch_count) return run;
  const names = Object.keys(run.progress.tasks).filter((name) => name.startsWith("GENERATE"));
  const total = Number(run.progress.processes.GENERATE?.total) || 0;
  const n = names.length || total;
  return n ? { ...run, batch_count: n } : run;
}

/** @param {LogLine} line */
function lineKey(line) {
  return `${line.timestamp}\u0000${line.source}\u0000${line.message}`;
}

/** @param {unknown} raw @returns {LogLine[]} */
function cleanLines(raw) {
  if (!Array.isArray(raw)) return [];
  return raw
    .filter((line) => line && typeof line.message === "string")
    .map((line) => ({
      timestamp: String(line.timestamp ?? ""),
      source: String(line.source ?? ""),
      message: line.message,
    }));
}

/**
 * Append lines, bounded; `dedupe` skips lines already held (a snapshot after a reconnect).
 * @param {Logs} logs
 * @param {LogLine[]} lines
 */
function appendLines(logs, lines, dedupe = false) {
  let fresh = lines;
  if (dedupe) {
    const held = new Set(logs.lines.map(lineKey));
    fresh = lines.filter((line) => !held.has(lineKey(line)));
  }
  if (!fresh.length) return logs;
  const all = logs.lines.concat(fresh);
  return {
    lines: all.length > MAX_LOG_LINES ? all.slice(all.length - MAX_LOG_LINES) : all,
    added: logs.added + fresh.length,
    epoch: logs.epoch,
  };
}

/** @param {Logs} logs @returns {Logs} */
function freshLogs(logs) {
  return { lines: [], added: 0, epoch: logs.epoch + 1 };
}

/**
 * Show `run` as the current run; another run id starts from a clean slate (logs, report, percent).
 * @param {State} state @param {Run} run
 * @returns {State}
 */
function adopt(state, run) {
  const same = state.run && state.run.run_id === run.run_id;
  const next = same
    ? { ...state, run }
    : {
        ...state,
        run,
        percent: 0,
        startedAt: {},
        logs: freshLogs(state.logs),
        report: state.report && state.report.runId === run.run_id ? state.report : null,
        previewOnly: false,
        records: {},
        lastAt: null,
        selected: null,
        taskLogs: null,
      };
  return settle(next);
}

/**
 * Derived bookkeeping after the run changed: monotonic percent, notices that end with the run.
 * @param {State} state
 * @returns {State}
 */
function settle(state) {
  const run = state.run;
  if (!run) return state;
  let next = state;
  const percent = Math.max(state.percent, runPercent(run, state.startedAt, null));
  if (percent !== state.percent) next = { ...next, percent };
  if (TERMINAL.has(run.status)) {
    if (next.notice && next.notice.runId === run.run_id) next = { ...next, notice: null };
    if (next.ownRun === run.run_id) next = { ...next, ownRun: null };
  }
  return next;
}

/**
 * Make sure frames of `runId` land on a run.
 * @param {State} state
 * @param {unknown} runId
 * @returns {State | null}
 */
function onRun(state, runId) {
  if (typeof runId !== "string" || !RUN_ID_RE.test(runId)) return null;
  if (state.run && state.run.run_id === runId) return state;
  return adopt(state, blankRun(runId));
}

/** @param {State} state @param {Partial<Run>} changes @returns {State} */
function patchRun(state, changes) {
  if (!state.run) return state;
  return settle({ ...state, run: withBatchCount({ ...state.run, ...changes }) });
}

/** @param {State} state @param {any} data @returns {State} */
function onSnapshot(state, data) {
  const raw = obj(data.run);
  /** @type {State} */
  let next = { ...state, lostAt: null };
  if (typeof raw.run_id === "string" && RUN_ID_RE.test(raw.run_id)) {
    // The snapshot is the truth: it replaces what the page held for this run.
    next = adopt(next, normalizeRun(raw));
    next = { ...next, logs: appendLines(next.logs, cleanLines(data.logs), true) };
    next = withRecords(next, obj(raw.progress).task_records);
  } else if (isActive(state.run)) {
    // The service came back without the run on display (in-memory state is lost on a restart).
    next = patchRun(next, {
      status: "unknown",
      message: "The service restarted and no longer knows this run.",
    });
  }
  return next;
}

/**
 * Merge a RunDetail fetched over HTTP, which may be older than what the stream already said.
 * @param {State} state
 * @param {any} detail
 * @returns {State}
 */
function onDetail(state, detail) {
  const run = state.run;
  if (!run || !detail || detail.run_id !== run.run_id) return state;
  /** @type {Record<string, any>} */
  const changes = {};
  for (const key of ["batch_count", "triggered_by", "executor", "started_at"]) {
    if (detail[key] !== null && detail[key] !== undefined) changes[key] = detail[key];
  }
  /** @param {string} s */
  const rank = (s) => (TERMINAL.has(s) ? 3 : (STATUS_RANK[s] ?? 0));
  if (rank(detail.status) >= rank(run.status)) {
    changes.status = detail.status;
    changes.message = detail.message ?? run.message;
    changes.finished_at = detail.finished_at ?? run.finished_at;
    changes.duration_seconds = detail.duration_seconds ?? run.duration_seconds;
  }
  const theirs = normalizeProgress(detail.progress);
  const held = Object.keys(run.progress.tasks).length;
  if (Object.keys(theirs.tasks).length >= held && theirs.percent >= run.progress.percent) {
    changes.progress = theirs;
  }
  return withRecords(patchRun(state, changes), obj(detail.progress).task_records);
}

/** @param {unknown} value @returns {string | null} */
function timeOrNull(value) {
  return typeof value === "string" && !Number.isNaN(Date.parse(value)) ? value : null;
}

/** @param {unknown} value @returns {number | null} */
function numberOrNull(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/**
 * A task record from the server, merged over what was held (a field the server has not said
 * yet keeps its value). Null when it is not a task of this pipeline.
 * @param {TaskRecord | undefined} held @param {any} raw @returns {TaskRecord | null}
 */
function toRecord(held, raw) {
  const r = obj(raw);
  const match = typeof r.name === "string" ? TASK_RE.exec(r.name) : null;
  const value = String(r.state);
  if (!match || !TASK_STATES.includes(value)) return null;
  /** @param {string} key @param {(v: unknown) => any} clean */
  const pick = (key, clean) => clean(r[key]) ?? (held ? /** @type {any} */ (held)[key] : null);
  return {
    name: r.name,
    process: match[1] || "REPORT",
    index: Number(match[2]) || 0,
    state: value,
    submitted_at: pick("submitted_at", timeOrNull),
    started_at: pick("started_at", timeOrNull),
    finished_at: pick("finished_at", timeOrNull),
    duration_seconds: pick("duration_seconds", numberOrNull),
    exit_code: pick("exit_code", numberOrNull),
    reason: typeof r.reason === "string" ? r.reason : (held?.reason ?? null),
  };
}

/**
 * Merge task records (RunDetail `progress.task_records`, GET /runs/{id}/tasks) into the state.
 * @param {State} state @param {unknown} raw @returns {State}
 */
function withRecords(state, raw) {
  if (!Array.isArray(raw) || !raw.length) return state;
  let records = state.records;
  for (const item of raw) {
    const record = toRecord(records[item?.name], item);
    if (record) records = { ...records, [record.name]: record };
  }
  return records === state.records ? state : { ...state, records };
}

/** @param {State} state @param {any} data @returns {State} */
function onTask(state, data) {
  const run = state.run;
  if (!run || typeof data.name !== "string" || !TASK_RE.test(data.name)) return state;
  const value = String(data.state);
  if (!TASK_STATES.includes(value)) return state;
  const progress = { ...run.progress, tasks: { ...run.progress.tasks, [data.name]: value } };
  const next = patchRun(state, { progress });
  const record = toRecord(state.records[data.name], data);
  return record ? { ...next, records: { ...next.records, [data.name]: record } } : next;
}

/**
 * The next state after `frame`. Stream frames: snapshot, status, progress, task, log, complete,
 * error. The page's own: limits, connection, plan, submit, started, submit-failed, focused,
 * cancel, cancelled, cancel-failed, detail, report, history, tasks (GET /runs/{id}/tasks),
 * replay (start a run afresh from its identity), select (open a task's panel, or close it with no name), task-logs (its archived lines).
 * @param {State} state
 * @param {Frame} frame
 * @returns {State}
 */
export function applyFrame(state, frame) {
  let next = reduce(state, frame);
  const at = Date.parse(String((frame && frame.timestamp) || ""));
  if (next === state) return next;
  const runFrame = next.run && frame.run_id === next.run.run_id;
  if (runFrame && !Number.isNaN(at) && (next.lastAt === null || at > next.lastAt)) {
    next = { ...next, lastAt: at };
  }
  return clockTasks(next, Number.isNaN(at) ? null : at, obj(frame && frame.data));
}

/**
 * Note when each running task was first seen (a task frame's own `started_at` wins) and move the
 * shown percent on to what the run has reached at the frame's time `at`.
 * @param {State} state @param {number | null} at @param {any} data
 * @returns {State}
 */
function clockTasks(state, at, data) {
  const run = state.run;
  if (!run) return state;
  let startedAt = state.startedAt;
  for (const [name, value] of Object.entries(run.progress.tasks)) {
    if (value !== "running" || name in startedAt) continue;
    const own = data.name === name && data.started_at ? Date.parse(data.started_at) : NaN;
    const when = Number.isNaN(own) ? at : own;
    if (when !== null) startedAt = { ...startedAt, [name]: when };
  }
  const percent = Math.max(state.percent, runPercent(run, startedAt, at));
  if (startedAt === state.startedAt && percent === state.percent) return state;
  return { ...state, startedAt, percent };
}

/** @param {State} state @param {Frame} frame @returns {State} */
function reduce(state, frame) {
  const data = obj(frame && frame.data);
  switch (frame && frame.type) {
    case "snapshot":
      return onSnapshot(state, data);
    case "status": {
      const next = onRun(state, frame.run_id);
      if (!next || !next.run) return state;
      return patchRun(next, {
        status: String(data.status || next.run.status),
        message: data.message ?? null,
      });
    }
    case "progress": {
      const next = onRun(state, frame.run_id);
      if (!next) return state;
      return patchRun(next, { progress: normalizeProgress(data) });
    }
    case "task": {
      const next = onRun(state, frame.run_id);
      return next ? onTask(next, data) : state;
    }
    case "log": {
      const next = frame.run_id ? onRun(state, frame.run_id) : state;
      if (!next) return state;
      return { ...next, logs: appendLines(next.logs, cleanLines(data.lines)) };
    }
    case "complete": {
      const next = onRun(state, frame.run_id);
      if (!next || !next.run) return state;
      /** @type {Partial<Run>} */
      const changes = { status: String(data.status || next.run.status) };
      if (typeof data.duration_seconds === "number") changes.duration_seconds = data.duration_seconds;
      const done = patchRun(next, changes);
      const report = obj(data.report);
      if (changes.status === "succeeded" && Array.isArray(report.batches) && report.totals && done.run) {
        return { ...done, report: { runId: done.run.run_id, data: report } };
      }
      return done;
    }
    case "error": {
      const stage = data.stage ? `${data.stage}: ` : "";
      return { ...state, error: `${stage}${data.message || "The pipeline reported an error."}` };
    }
    case "limits": {
      const limits = { ...state.limits, ...data };
      const max = Math.max(1, Number(limits.max_batch_count) || 12);
      const plan = Math.min(max, Math.max(1, Number(limits.default_batch_count) || 5));
      return { ...state, limits: { ...limits, max_batch_count: max }, plan };
    }
    case "connection": {
      const kind = /** @type {Connection} */ (String(data.state));
      if (kind === "live") return { ...state, connection: kind, retryAt: null };
      const lostAt = state.lostAt ?? (state.connection === "live" ? Number(data.at) || 0 : null);
      return { ...state, connection: kind, retryAt: data.retryAt ?? null, lostAt };
    }
    case "plan": {
      if (isActive(state.run)) return state;
      const max = state.limits.max_batch_count;
      const plan = Math.min(max, Math.max(1, Math.round(Number(data.count)) || 1));
      return { ...state, plan, previewOnly: Boolean(state.run) };
    }
    case "submit":
      return { ...state, submitting: true, error: "", notice: null };
    case "started": {
      // The answer to POST /demo/run: a new run of ours, or the one in progress we attached to.
      let next = { ...state, submitting: false };
      const raw = obj(data.run);
      if (typeof raw.run_id === "string" && RUN_ID_RE.test(raw.run_id)) {
        const on = onRun(next, raw.run_id);
        if (on) next = onDetail(on, raw);
      }
      if (!isActive(next.run) || !next.run || next.run.run_id !== data.run_id) return next;
      const runId = next.run.run_id;
      if (data.attached) {
        const by = next.run.triggered_by ? ` by ${next.run.triggered_by}` : "";
        const batches = plural(next.run.batch_count || 0, "batch", "batches");
        const text = `A run was already in progress (${batches}, started${by}) — you are watching it instead.`;
        return { ...next, notice: { text, runId }, focusRun: runId };
      }
      return {
        ...next,
        ownRun: runId,
        focusRun: runId,
        notice: { text: `Run ${runId} started. Only this tab can cancel it.`, runId },
      };
    }
    case "submit-failed":
      return { ...state, submitting: false, error: String(data.message || "The run could not be started.") };
    case "focused":
      return state.focusRun === null ? state : { ...state, focusRun: null };
    case "cancel":
      return { ...state, cancelling: true, error: "" };
    case "cancelled": {
      /** @type {State} */
      let next = {
        ...state,
        cancelling: false,
        notice: { text: `Run ${data.run_id} was cancelled.`, runId: null },
      };
      if (next.run && next.run.run_id === data.run_id && isActive(next.run)) {
        next = patchRun(next, { status: "cancelled" });
      }
      return next;
    }
    case "cancel-failed":
      if (data.notice)
        return { ...state, cancelling: false, notice: { text: String(data.notice), runId: null } };
      return {
        ...state,
        cancelling: false,
        error: String(data.message || "The run could not be cancelled."),
      };
    case "detail":
      return onDetail(state, data);
    case "history":
      return Array.isArray(data.runs) ? { ...state, history: data.runs } : state;
    case "replay": {
      // The start of a replay or an archived run: the run as it was before its first frame.
      const raw = obj(data.run);
      if (typeof raw.run_id !== "string" || !RUN_ID_RE.test(raw.run_id)) return state;
      /** @type {Run} */
      const run = { ...blankRun(raw.run_id) };
      for (const key of /** @type {const} */ (["batch_count", "triggered_by", "executor", "started_at"])) {
        if (raw[key] !== null && raw[key] !== undefined) /** @type {any} */ (run)[key] = raw[key];
      }
      return adopt({ ...state, run: null, report: null }, withBatchCount(run));
    }
    case "tasks":
      if (!state.run || state.run.run_id !== data.run_id) return state;
      return withRecords(state, data.tasks);
    case "select": {
      const name = typeof data.name === "string" && TASK_RE.test(data.name) ? data.name : null;
      if (name === state.selected) return state;
      return { ...state, selected: name, taskLogs: null };
    }
    case "task-logs":
      if (!state.run || state.run.run_id !== data.runId || state.selected !== data.name) return state;
      return { ...state, taskLogs: { runId: data.runId, name: data.name, lines: cleanLines(data.lines) } };
    case "report":
      if (!state.run || state.run.run_id !== data.runId || !obj(data.data).totals) return state;
      return { ...state, report: { runId: String(data.runId), data: data.data } };
    default:
      return state;
  }
}

/** @param {number} n @param {string} word @param {string} [many] */
export function plural(n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`;
}
