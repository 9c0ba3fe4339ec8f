// Unit tests of what the timeline, the task panel and the replay take from the reducer
// (task records, the selected task, a replay's seed) and of the replay's pure helpers.
// Inputs are deep-frozen: nothing may mutate what it is given.

import assert from "node:assert/strict";
import { test } from "node:test";

import { applyFrame, initialState } from "../../../nextflow_k8s_service/web/state.js";
import { frameOffsets, parseFrames, stateAt } from "../../../nextflow_k8s_service/web/replay.js";
import { taskSeconds, timeSpan } from "../../../nextflow_k8s_service/web/timeline.js";

const RUN = "r0123456789a";
const OTHER = "rfedcba98765";
const T0 = Date.parse("2026-01-01T10:00:00+00:00");

function freeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) freeze(value[key]);
  }
  return value;
}

function play(frames, state = initialState()) {
  let current = freeze(state);
  for (const frame of frames) current = freeze(applyFrame(current, freeze(frame)));
  return current;
}

const at = (seconds) => new Date(T0 + seconds * 1000).toISOString();

const seed = (batches = 2) => ({
  type: "replay",
  data: { run: { run_id: RUN, batch_count: batches, triggered_by: "ada", executor: "local", started_at: at(0) } },
});

const task = (name, state, seconds, extra = {}) => ({
  type: "task",
  run_id: RUN,
  timestamp: at(seconds),
  data: { process: name.split(" ")[0], index: Number((/\((\d+)\)/.exec(name) || [])[1] || 0), name, state, ...extra },
});

const logFrame = (seconds, source, message) => ({
  type: "log",
  run_id: RUN,
  timestamp: at(seconds),
  data: { lines: [{ timestamp: at(seconds), source, message }] },
});

const complete = (seconds) => ({
  type: "complete",
  run_id: RUN,
  timestamp: at(seconds),
  data: { status: "succeeded", duration_seconds: seconds },
});

test("a replay seed starts the run afresh with its identity and no records", () => {
  const before = play([seed(), task("GENERATE (1)", "running", 1, { started_at: at(1) })]);
  assert.ok(before.records["GENERATE (1)"]);
  const state = play([seed(3)], before);
  assert.equal(state.run.run_id, RUN);
  assert.equal(state.run.status, "queued");
  assert.equal(state.run.batch_count, 3);
  assert.equal(state.run.triggered_by, "ada");
  assert.deepEqual(state.records, {});
  assert.equal(state.logs.lines.length, 0);
  assert.notEqual(state.logs.epoch, before.logs.epoch);
  assert.equal(applyFrame(freeze(initialState()), { type: "replay", data: { run: { run_id: "x" } } }).run, null);
});

test("task frames keep each task's record; a later frame never erases a known time", () => {
  const state = play([
    seed(),
    task("GENERATE (1)", "submitted", 1, { submitted_at: at(1) }),
    task("GENERATE (1)", "running", 2, { started_at: at(2) }),
    task("GENERATE (1)", "succeeded", 4, { finished_at: at(4), duration_seconds: 2, exit_code: 0 }),
  ]);
  const record = state.records["GENERATE (1)"];
  assert.equal(record.state, "succeeded");
  assert.equal(record.submitted_at, at(1));
  assert.equal(record.started_at, at(2));
  assert.equal(record.finished_at, at(4));
  assert.equal(record.duration_seconds, 2);
  assert.equal(record.exit_code, 0);
  assert.equal(record.process, "GENERATE");
  assert.equal(record.index, 1);
  assert.equal(state.run.progress.tasks["GENERATE (1)"], "succeeded");
  assert.equal(state.lastAt, T0 + 4000);
});

test("records from RunDetail and from /tasks merge; tasks of another run or of no known name do not", () => {
  const records = [
    { name: "ANALYZE (2)", state: "failed", submitted_at: at(1), started_at: at(2), finished_at: at(3), exit_code: 1, reason: "exit 1" },
    { name: "rm -rf (1)", state: "running" },
    { name: "REPORT", state: "sleeping" },
  ];
  const state = play([seed(), { type: "tasks", data: { run_id: RUN, tasks: records } }]);
  assert.deepEqual(Object.keys(state.records), ["ANALYZE (2)"]);
  assert.equal(state.records["ANALYZE (2)"].reason, "exit 1");
  assert.equal(state.records["ANALYZE (2)"].duration_seconds, null);
  const other = applyFrame(state, { type: "tasks", data: { run_id: OTHER, tasks: records } });
  assert.equal(other, state);
  const detail = {
    run_id: RUN,
    status: "running",
    progress: { percent: 10, processes: {}, tasks: {}, task_records: [{ name: "GENERATE (2)", state: "running", started_at: at(5) }] },
  };
  const merged = play([{ type: "detail", data: detail }], state);
  assert.deepEqual(Object.keys(merged.records).sort(), ["ANALYZE (2)", "GENERATE (2)"]);
});

test("select opens a task's panel and closes it; task-logs land only for the open task", () => {
  const state = play([seed(), { type: "select", data: { name: "ANALYZE (1)" } }]);
  assert.equal(state.selected, "ANALYZE (1)");
  assert.equal(applyFrame(state, { type: "select", data: { name: "../x" } }).selected, null);
  const lines = [{ timestamp: at(1), source: "ANALYZE (1)", message: "hello" }];
  const other = applyFrame(state, { type: "task-logs", data: { runId: RUN, name: "REPORT", lines } });
  assert.equal(other, state);
  const held = play([{ type: "task-logs", data: { runId: RUN, name: "ANALYZE (1)", lines } }], state);
  assert.deepEqual(held.taskLogs, { runId: RUN, name: "ANALYZE (1)", lines });
  const closed = play([{ type: "select", data: {} }], held);
  assert.equal(closed.selected, null);
  assert.equal(closed.taskLogs, null);
  // Another run closes the panel.
  const next = play([{ type: "status", run_id: OTHER, data: { status: "running" } }], held);
  assert.equal(next.selected, null);
});

test("NDJSON parses to frames, skipping blank and torn lines", () => {
  const text = `${JSON.stringify(task("REPORT", "running", 1))}\n\n{"type":"log",\n${JSON.stringify(complete(2))}\n`;
  const frames = parseFrames(text);
  assert.deepEqual(
    frames.map((f) => f.type),
    ["task", "complete"],
  );
});

test("frame offsets count from the first frame and never go backwards", () => {
  const frames = [task("REPORT", "running", 3), { type: "log", data: {} }, task("REPORT", "succeeded", 2), complete(7)];
  assert.deepEqual(frameOffsets(frames), [0, 0, 0, 4000]);
});

test("the state at a position folds the frames up to it; at the end it equals the whole run", () => {
  const frames = [
    task("GENERATE (1)", "running", 0, { started_at: at(0) }),
    logFrame(1, "GENERATE (1)", "one"),
    task("GENERATE (1)", "succeeded", 2, { finished_at: at(2), duration_seconds: 2 }),
    complete(3),
  ];
  const base = play([seed(1)]);
  const offsets = frameOffsets(frames);
  const middle = stateAt(base, frames, offsets, 1500);
  assert.equal(middle.next, 2);
  assert.equal(middle.state.run.status, "queued");
  assert.equal(middle.state.logs.lines.length, 1);
  const end = stateAt(base, frames, offsets, offsets[offsets.length - 1]);
  assert.equal(end.next, frames.length);
  assert.deepEqual(end.state, play(frames, base));
  assert.equal(end.state.run.status, "succeeded");
});

test("a task's seconds and the timeline's span follow the records, up to now while live", () => {
  const records = play([
    seed(),
    task("GENERATE (1)", "succeeded", 3, { submitted_at: at(0), started_at: at(1), finished_at: at(3) }),
    task("GENERATE (2)", "running", 2, { submitted_at: at(1), started_at: at(2) }),
  ]).records;
  assert.equal(taskSeconds(records["GENERATE (1)"], T0 + 60_000), 2);
  assert.equal(taskSeconds(records["GENERATE (2)"], T0 + 5000), 3);
  assert.equal(taskSeconds(undefined, T0), null);
  assert.deepEqual(timeSpan(records, T0 + 10_000, true), [T0, T0 + 10_000]);
  assert.deepEqual(timeSpan(records, T0 + 10_000, false), [T0, T0 + 3000]);
  assert.equal(timeSpan({}, T0, true), null);
});
