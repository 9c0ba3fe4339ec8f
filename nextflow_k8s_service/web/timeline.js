// @ts-check
// The run's timeline: a compact Gantt of its tasks, one bar per task (waiting from submission to
// start, working from start to finish), on one time axis from the first submission. A task
// still going on reaches to "now", so the chart grows while the run goes on. Each bar is a
// button that opens the task's panel. A pure render of the state: it writes only what differs.

import { h, setAttr, setData, setHidden, setText, formatDuration } from "./dom.js";
import { isActive } from "./state.js";
import { pendingTasks, taskStates } from "./tasks.js";

/** @typedef {import("./state.js").State} State */
/** @typedef {import("./state.js").TaskRecord} TaskRecord */
/** @typedef {{row: HTMLElement, wait: HTMLElement, work: HTMLElement, took: HTMLElement}} Bar */

/** @param {string | null | undefined} iso */
function ms(iso) {
  const value = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(value) ? null : value;
}

/**
 * Seconds a task has worked: its own duration once known, else from its start to `now`.
 * @param {TaskRecord | undefined} record @param {number} now
 * @returns {number | null}
 */
export function taskSeconds(record, now) {
  if (!record) return null;
  if (typeof record.duration_seconds === "number") return record.duration_seconds;
  const start = ms(record.started_at);
  if (start === null) return null;
  const end = ms(record.finished_at) ?? now;
  return Math.max(0, (end - start) / 1000);
}

/**
 * The time axis of the run: [from, to] in ms, from the first submission (or start) to the last
 * finish, or to `now` while the run goes on. Null before any task has a time.
 * @param {Record<string, TaskRecord>} records @param {number} now @param {boolean} live
 * @returns {[number, number] | null}
 */
export function timeSpan(records, now, live) {
  let from = Infinity;
  let to = -Infinity;
  for (const record of Object.values(records)) {
    for (const value of [record.submitted_at, record.started_at, record.finished_at]) {
      const at = ms(value);
      if (at === null) continue;
      from = Math.min(from, at);
      to = Math.max(to, at);
    }
  }
  if (from === Infinity) return null;
  if (live) to = Math.max(to, now);
  return [from, Math.max(to, from + 1000)];
}

export class Timeline {
  /** @param {HTMLElement} section @param {HTMLElement} list @param {HTMLElement} axisEnd */
  constructor(section, list, axisEnd) {
    this.section = section;
    this.list = list;
    this.axisEnd = axisEnd;
    this.count = -1;
    /** @type {Map<string, Bar>} */
    this.bars = new Map();
  }

  /** @param {number} n */
  build(n) {
    this.count = n;
    this.bars.clear();
    const items = Object.keys(pendingTasks(n)).map((name) => {
      const wait = h("span", { class: "tl-wait" });
      const work = h("span", { class: "tl-work" });
      const took = h("span", { class: "tl-took mono" });
      const row = h(
        "button",
        { type: "button", class: "tl-bar", dataset: { task: name, state: "pending" } },
        h("span", { class: "tl-name" }, name),
        h("span", { class: "tl-track", "aria-hidden": "true" }, wait, work),
        took,
      );
      this.bars.set(name, { row, wait, work, took });
      return h("li", {}, row);
    });
    this.list.replaceChildren(...items);
  }

  /**
   * @param {State} state
   * @param {number} now  the server time (ms) a task still going on reaches to
   */
  render(state, now) {
    const run = state.previewOnly ? null : state.run;
    const n = run ? run.batch_count || 0 : 0;
    setHidden(this.section, !run || !n);
    if (!run || !n) return;
    if (n !== this.count) this.build(n);
    const states = taskStates(run);
    const live = isActive(run);
    const span = timeSpan(state.records, now, live);
    setText(this.axisEnd, span ? formatDuration((span[1] - span[0]) / 1000) : "—");
    for (const [name, bar] of this.bars) {
      const record = state.records[name];
      const value = states[name] || "pending";
      setData(bar.row, "state", value);
      const submitted = ms(record?.submitted_at);
      const started = ms(record?.started_at);
      const finished = ms(record?.finished_at);
      const goingOn = live && finished === null;
      const end = finished ?? (goingOn ? now : started ?? submitted);
      place(bar.wait, span, submitted ?? started, started ?? end);
      place(bar.work, span, started, started === null ? null : end);
      const seconds = taskSeconds(record, now);
      const took = seconds === null ? "" : formatDuration(seconds);
      setText(bar.took, took);
      setAttr(bar.row, "aria-label", `${name}: ${value}${took ? `, ${took}` : ""}. Open its details`);
    }
  }
}

/**
 * Place a segment on the axis (percent of the track), hidden when it has no extent.
 * @param {HTMLElement} node @param {[number, number] | null} span
 * @param {number | null} from @param {number | null} to
 */
function place(node, span, from, to) {
  if (!span || from === null || to === null || to < from) {
    setHidden(node, true);
    return;
  }
  const total = span[1] - span[0];
  const left = (100 * (from - span[0])) / total;
  const width = Math.max(0.6, (100 * (to - from)) / total);
  setHidden(node, false);
  const l = `${left.toFixed(2)}%`;
  const w = `${Math.min(width, 100 - left).toFixed(2)}%`;
  if (node.style.left !== l) node.style.left = l;
  if (node.style.width !== w) node.style.width = w;
}
