// Unit tests of the run clock (nextflow_k8s_service/web/view.js): it never ticks through an outage.

import assert from "node:assert/strict";
import { test } from "node:test";

import { applyFrame, initialState } from "../../../nextflow_k8s_service/web/state.js";
import { elapsedSeconds } from "../../../nextflow_k8s_service/web/view.js";

const STARTED = Date.parse("2026-01-01T10:00:00Z");
const run = {
  run_id: "r0123456789a",
  status: "running",
  batch_count: 1,
  started_at: "2026-01-01T10:00:00+00:00",
  progress: { percent: 0, processes: {}, tasks: {} },
};
const env = (now) => ({ now, offsetMs: 0, hasToken: () => false });

function live() {
  let state = applyFrame(initialState(), { type: "connection", data: { state: "live", at: STARTED } });
  state = applyFrame(state, { type: "snapshot", data: { active: true, run, logs: [] } });
  return state;
}

test("the clock runs while the stream is live", () => {
  const state = live();
  assert.equal(elapsedSeconds(state.run, state, env(STARTED + 7_000)), 7);
  assert.equal(elapsedSeconds(state.run, state, env(STARTED + 9_000)), 9);
});

test("the clock stops when the stream goes away and does not count the outage", () => {
  const lost = applyFrame(live(), {
    type: "connection",
    data: { state: "reconnecting", at: STARTED + 5_000 },
  });
  assert.equal(elapsedSeconds(lost.run, lost, env(STARTED + 5_000)), 5);
  assert.equal(elapsedSeconds(lost.run, lost, env(STARTED + 60_000)), 5);
});

test("a finished run shows its duration", () => {
  const state = applyFrame(live(), {
    type: "complete",
    run_id: run.run_id,
    data: { status: "succeeded", duration_seconds: 12.5 },
  });
  assert.equal(elapsedSeconds(state.run, state, env(STARTED + 99_000)), 12.5);
});
