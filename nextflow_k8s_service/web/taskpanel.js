// @ts-check
// The panel of one task (opened from the graph, the timeline or the log): its state, times,
// exit code, reason and its own log lines. A pure render of the state; the lines are the
// archive's answer when the page fetched one (`state.taskLogs`), else the page's own lines of
// that source.

import { h, setData, setHidden, setText, formatDuration, formatTime } from "./dom.js";
import { taskStates } from "./tasks.js";
import { taskSeconds } from "./timeline.js";

/** @typedef {import("./state.js").State} State */
/** @typedef {import("./state.js").LogLine} LogLine */

/**
 * The lines of task `name` the panel shows.
 * @param {State} state @param {string} name @returns {LogLine[]}
 */
export function taskLines(state, name) {
  const run = state.run;
  if (state.taskLogs && run && state.taskLogs.runId === run.run_id && state.taskLogs.name === name) {
    return state.taskLogs.lines;
  }
  return state.logs.lines.filter((line) => line.source === name);
}

/** @param {string | null | undefined} iso */
function clock(iso) {
  return iso ? formatTime(iso) : "—";
}

/**
 * @param {Record<string, HTMLElement>} ui  taskPanel, taskTitle, taskState, taskSubmitted,
 *   taskStarted, taskFinished, taskTook, taskExit, taskReason, taskLog, taskLogEmpty
 * @param {State} state
 * @param {number} now  server time (ms), for a task still working
 */
export function renderTaskPanel(ui, state, now) {
  const run = state.run;
  const name = state.selected;
  setHidden(ui.taskPanel, !run || !name || state.previewOnly);
  if (!run || !name) return;
  const record = state.records[name];
  const value = taskStates(run)[name] || record?.state || "pending";
  setText(ui.taskTitle, name);
  setText(ui.taskState, value);
  setData(ui.taskState, "status", value);
  setText(ui.taskSubmitted, clock(record?.submitted_at));
  setText(ui.taskStarted, clock(record?.started_at));
  setText(ui.taskFinished, clock(record?.finished_at));
  const seconds = taskSeconds(record, now);
  setText(ui.taskTook, seconds === null ? "—" : formatDuration(seconds));
  setText(ui.taskExit, record && record.exit_code !== null ? String(record.exit_code) : "—");
  setText(ui.taskReason, record?.reason || "—");
  const lines = taskLines(state, name);
  const key = `${run.run_id}\u0000${name}\u0000${lines.length}\u0000${lines.at(-1)?.timestamp ?? ""}`;
  if (ui.taskLog.dataset.key === key) return;
  ui.taskLog.dataset.key = key;
  setHidden(ui.taskLogEmpty, lines.length > 0);
  ui.taskLog.replaceChildren(
    ...lines.map((line) =>
      h(
        "div",
        { class: "line", dataset: { source: line.source } },
        h("time", { class: "ts", datetime: line.timestamp }, formatTime(line.timestamp)),
        h("span", { class: "msg" }, line.message),
      ),
    ),
  );
}
