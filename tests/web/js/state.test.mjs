// Unit tests of the page's reducer (nextflow_k8s_service/web/state.js) with Node's test runner.
// Every input state and frame is deep-frozen: the reducer must never mutate what it is given.

import assert from "node:assert/strict";
import { test } from "node:test";

import { applyFrame, initialState, MAX_LOG_LINES } from "../../../nextflow_k8s_service/web/state.js";
import { processCounts, runPercent, taskStates } from "../../../nextflow_k8s_service/web/tasks.js";

const RUN = "r0123456789a";
const OTHER = "rfedcba98765";

function freeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) freeze(value[key]);
  }
  return value;
}

/** Apply frames in order to a frozen state, freezing each result. */
function play(frames, state = initialState()) {
  let current = freeze(state);
  for (const frame of frames) current = freeze(applyFrame(current, freeze(frame)));
  return current;
}

function counts(total, running, succeeded, failed = 0) {
  return { total, pending: total - running - succeeded - failed, running, succeeded, failed };
}

function runDetail(overrides = {}) {
  return {
    run_id: RUN,
    status: "running",
    batch_count: 2,
    triggered_by: "ada",
    executor: "local",
    started_at: "2026-01-01T10:00:00+00:00",
    finished_at: null,
    duration_seconds: null,
    message: null,
    progress: {
      percent: 0,
      processes: { GENERATE: counts(2, 2, 0), ANALYZE: counts(2, 0, 0), REPORT: counts(1, 0, 0) },
      tasks: { "GENERATE (1)": "running", "GENERATE (2)": "running" },
    },
    ...overrides,
  };
}

const snapshot = (run, logs = [], active = true) => ({
  type: "snapshot",
  run_id: run ? run.run_id : null,
  seq: 0,
  data: { active, run, logs },
});
const line = (i, source = "controller") => ({
  timestamp: `2026-01-01T10:00:${String(i % 60).padStart(2, "0")}+00:00`,
  source,
  message: `line ${i}`,
});

test("a snapshot adopts its run, its tasks and its logs", () => {
  const state = play([snapshot(runDetail(), [line(1), line(2)])]);
  assert.equal(state.run.run_id, RUN);
  assert.equal(state.run.batch_count, 2);
  assert.equal(taskStates(state.run)["GENERATE (1)"], "running");
  assert.equal(taskStates(state.run)["ANALYZE (2)"], "pending");
  assert.deepEqual(
    state.logs.lines.map((l) => l.message),
    ["line 1", "line 2"],
  );
  assert.equal(state.logs.added, 2);
});

test("unknown frame types and frames of a malformed run id leave the state as it was", () => {
  const state = play([snapshot(runDetail())]);
  assert.equal(applyFrame(state, { type: "timeline", data: {} }), state);
  assert.equal(applyFrame(state, { type: "status", run_id: "../etc", data: { status: "failed" } }), state);
  assert.equal(
    applyFrame(state, { type: "task", run_id: RUN, data: { name: "EVIL (1)", state: "failed" } }),
    state,
  );
  assert.equal(
    applyFrame(state, { type: "task", run_id: RUN, data: { name: "REPORT", state: "exploded" } }),
    state,
  );
});

test("task frames set one task's state, including cancelled; frames may carry an id", () => {
  const state = play([
    snapshot(runDetail()),
    {
      type: "task",
      id: "1700000000000-0",
      run_id: RUN,
      data: { process: "GENERATE", index: 1, name: "GENERATE (1)", state: "succeeded", exit_code: 0 },
    },
    {
      type: "task",
      id: "1700000000000-1",
      run_id: RUN,
      data: {
        process: "GENERATE",
        index: 2,
        name: "GENERATE (2)",
        state: "cancelled",
        reason: "run cancelled",
      },
    },
  ]);
  const tasks = taskStates(state.run);
  assert.equal(tasks["GENERATE (1)"], "succeeded");
  assert.equal(tasks["GENERATE (2)"], "cancelled");
  assert.equal(processCounts(tasks).GENERATE.cancelled, 1);
  assert.equal(processCounts(tasks).GENERATE.succeeded, 1);
});

const at = (seconds) => new Date(Date.parse("2026-01-01T10:00:00Z") + seconds * 1000).toISOString();

test("the shown percent moves while tasks run and never goes backwards, not on cancel either", () => {
  let state = play([{ ...snapshot(runDetail()), timestamp: at(0) }]);
  assert.equal(state.percent, 0, "nothing has run for any time yet");
  assert.deepEqual(Object.keys(state.startedAt).sort(), ["GENERATE (1)", "GENERATE (2)"]);
  // Later frames of the same run: the running tasks have been at work for 3 s.
  state = play([{ type: "log", run_id: RUN, timestamp: at(3), data: { lines: [line(1)] } }], state);
  const working = state.percent;
  assert.ok(working > 0, "running tasks move the bar before any finishes");
  state = play(
    [
      {
        type: "progress",
        run_id: RUN,
        timestamp: at(5),
        data: {
          percent: 40,
          processes: {},
          tasks: { "GENERATE (1)": "succeeded", "GENERATE (2)": "succeeded", "ANALYZE (1)": "running" },
        },
      },
    ],
    state,
  );
  const mid = state.percent;
  assert.ok(mid >= 40 && mid > working);
  assert.equal(state.startedAt["ANALYZE (1)"], Date.parse(at(5)));
  state = play(
    [
      { type: "progress", run_id: RUN, timestamp: at(6), data: { percent: 0, processes: {}, tasks: {} } },
      { type: "status", run_id: RUN, timestamp: at(6), data: { status: "cancelled", message: "cancelled" } },
      { type: "complete", run_id: RUN, data: { status: "cancelled", duration_seconds: 4.2 } },
    ],
    state,
  );
  assert.equal(state.run.status, "cancelled");
  assert.equal(state.run.duration_seconds, 4.2);
  assert.ok(state.percent >= mid);
});

test("a task frame's own start time sets its clock", () => {
  const started = "2026-01-01T09:59:58+00:00";
  const state = play([
    { ...snapshot(runDetail()), timestamp: at(0) },
    {
      type: "task",
      run_id: RUN,
      timestamp: at(1),
      data: { name: "ANALYZE (1)", state: "running", started_at: started },
    },
  ]);
  assert.equal(state.startedAt["ANALYZE (1)"], Date.parse(started));
});

test("the run's progress only grows with time while its tasks stand still", () => {
  const state = play([{ ...snapshot(runDetail()), timestamp: at(0) }]);
  let last = -1;
  for (let seconds = 0; seconds <= 60; seconds += 0.5) {
    const value = runPercent(state.run, state.startedAt, Date.parse(at(seconds)));
    assert.ok(value >= last, `${value} after ${last} at ${seconds} s`);
    assert.ok(value < (100 * 2) / 5, "running tasks never count as finished");
    last = value;
  }
});

test("a succeeded run is 100 % and keeps an inline report", () => {
  const report = { run_id: RUN, batches: [{ batch: 1 }, { batch: 2 }], totals: { batches: 2 } };
  const state = play([
    snapshot(runDetail()),
    { type: "complete", run_id: RUN, data: { status: "succeeded", duration_seconds: 9, report } },
  ]);
  assert.equal(state.percent, 100);
  assert.deepEqual(state.report, { runId: RUN, data: report });
  assert.ok(Object.values(taskStates(state.run)).every((value) => value === "succeeded"));
});

test("a new run id starts from a clean slate", () => {
  const before = play([
    snapshot(runDetail(), [line(1)]),
    {
      type: "complete",
      run_id: RUN,
      data: { status: "succeeded", duration_seconds: 9, report: { batches: [], totals: {} } },
    },
  ]);
  assert.ok(before.report);
  const state = play(
    [{ type: "status", run_id: OTHER, data: { status: "starting", message: null } }],
    before,
  );
  assert.equal(state.run.run_id, OTHER);
  assert.equal(state.run.batch_count, null);
  assert.equal(state.percent, 0);
  assert.equal(state.report, null);
  assert.deepEqual(state.logs.lines, []);
  assert.equal(state.logs.epoch, before.logs.epoch + 1);
});

test("logs are bounded and a reconnect's snapshot adds only the lines not held", () => {
  const many = Array.from({ length: MAX_LOG_LINES + 20 }, (_, i) => line(i, `GENERATE (${(i % 2) + 1})`));
  let state = play([snapshot(runDetail())]);
  for (let i = 0; i < many.length; i += 50) {
    state = play([{ type: "log", run_id: RUN, data: { lines: many.slice(i, i + 50) } }], state);
  }
  assert.equal(state.logs.lines.length, MAX_LOG_LINES);
  assert.equal(state.logs.added, many.length);
  assert.equal(state.logs.lines.at(-1).message, `line ${many.length - 1}`);
  const extra = line(9999);
  state = play([snapshot(runDetail(), [...many.slice(-3), extra])], state);
  assert.equal(state.logs.added, many.length + 1);
  assert.equal(state.logs.lines.at(-1).message, "line 9999");
});

test("an outage pauses the run and the snapshot on reconnect restores the truth", () => {
  let state = play([
    { type: "connection", data: { state: "live", at: 1000 } },
    snapshot(runDetail()),
    { type: "connection", data: { state: "reconnecting", retryAt: 3000, at: 2000 } },
    { type: "connection", data: { state: "reconnecting", retryAt: 5000, at: 4000 } },
  ]);
  assert.equal(state.connection, "reconnecting");
  assert.equal(state.lostAt, 2000, "the moment of the first loss is kept");
  const finished = runDetail({
    status: "succeeded",
    finished_at: "2026-01-01T10:00:09+00:00",
    duration_seconds: 9,
    progress: {
      percent: 100,
      processes: {},
      tasks: {
        "GENERATE (1)": "succeeded",
        "GENERATE (2)": "succeeded",
        "ANALYZE (1)": "succeeded",
        "ANALYZE (2)": "succeeded",
        REPORT: "succeeded",
      },
    },
  });
  state = play(
    [{ type: "connection", data: { state: "live", at: 6000 } }, snapshot(finished, [], false)],
    state,
  );
  assert.equal(state.lostAt, null);
  assert.equal(state.run.status, "succeeded");
  assert.equal(state.run.duration_seconds, 9);
  assert.equal(taskStates(state.run)["GENERATE (1)"], "succeeded");
});

test("a service that comes back without the run marks it unknown", () => {
  const state = play([snapshot(runDetail()), snapshot(null, [], false)]);
  assert.equal(state.run.status, "unknown");
  assert.match(state.run.message, /no longer knows/);
});

test("the plan follows the visitor only while no run is active", () => {
  let state = play([
    { type: "limits", data: { default_batch_count: 5, max_batch_count: 12, executor: "local" } },
  ]);
  assert.equal(state.plan, 5);
  state = play([{ type: "plan", data: { count: 40 } }], state);
  assert.equal(state.plan, 12, "clamped to the maximum");
  state = play([snapshot(runDetail())], state);
  assert.equal(applyFrame(state, { type: "plan", data: { count: 3 } }), state, "locked during a run");
  state = play(
    [
      { type: "complete", run_id: RUN, data: { status: "failed" } },
      { type: "plan", data: { count: 3 } },
    ],
    state,
  );
  assert.equal(state.plan, 3);
  assert.equal(state.previewOnly, true, "the graph shows the plan once the visitor moves it");
});

test("starting a run of our own brings it into focus once and ends its notice when it ends", () => {
  let state = play([
    { type: "submit" },
    { type: "started", data: { run_id: RUN, attached: false, run: runDetail({ status: "queued" }) } },
  ]);
  assert.equal(state.submitting, false);
  assert.equal(state.ownRun, RUN);
  assert.equal(state.focusRun, RUN);
  assert.match(state.notice.text, /started/);
  state = play(
    [{ type: "focused" }, { type: "complete", run_id: RUN, data: { status: "succeeded" } }],
    state,
  );
  assert.equal(state.focusRun, null);
  assert.equal(state.notice, null);
  assert.equal(state.ownRun, null);
});

test("an HTTP detail older than the stream never rolls the run back", () => {
  const state = play([
    snapshot(runDetail()),
    { type: "complete", run_id: RUN, data: { status: "failed", duration_seconds: 3 } },
    {
      type: "detail",
      data: runDetail({ status: "running", progress: { percent: 0, processes: {}, tasks: {} } }),
    },
  ]);
  assert.equal(state.run.status, "failed");
  assert.equal(taskStates(state.run)["GENERATE (1)"], "running");
});
