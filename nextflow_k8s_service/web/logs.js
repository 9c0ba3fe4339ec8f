// @ts-check
// The live log console: a render of the state's log lines, coloured by source, with a source
// filter and auto-follow that pauses while the reader looks at older lines. Rendering is
// incremental (only lines not drawn yet are added, the oldest removed at the cap) and runs at
// most once per animation frame, so a flood of lines never blocks the page.

import { h, formatTime, setHidden, setText } from "./dom.js";
import { MAX_LOG_LINES } from "./state.js";

const STICK_SLACK_PX = 24;

/** @typedef {import("./state.js").Logs} Logs */
/** @typedef {import("./state.js").LogLine} LogLine */

/** @param {unknown} source */
function sourceKind(source) {
  const text = String(source || "");
  if (text.startsWith("GENERATE")) return "generate";
  if (text.startsWith("ANALYZE")) return "analyze";
  if (text.startsWith("REPORT")) return "report";
  if (text === "controller" || text === "nextflow") return "controller";
  return "other";
}

/** @param {string} a @param {string} b */
function compareSources(a, b) {
  /** @param {string} x */
  const rank = (x) => ({ controller: 0, generate: 1, analyze: 2, report: 3, other: 4 })[sourceKind(x)];
  /** @param {string} x */
  const num = (x) => Number((/\((\d+)\)/.exec(x) || [])[1] || 0);
  return rank(a) - rank(b) || num(a) - num(b) || a.localeCompare(b);
}

export class LogConsole {
  /**
   * @param {{list: HTMLElement, empty: HTMLElement, filter: HTMLSelectElement,
   *   taskGroup: HTMLElement, jump: HTMLElement}} parts
   */
  constructor({ list, empty, filter, taskGroup, jump }) {
    this.list = list;
    this.empty = empty;
    this.filter = filter;
    this.taskGroup = taskGroup;
    this.jump = jump;
    /** @type {Set<string>} */
    this.sources = new Set();
    this.epoch = -1;
    this.drawn = 0;
    this.stick = true;
    this.unseen = 0;
    // Where the console last scrolled itself: scroll events that land there are its own.
    this.ownTop = -1;

    list.addEventListener("scroll", () => {
      if (Math.abs(list.scrollTop - this.ownTop) <= 1) return;
      this.ownTop = -1;
      this.stick = list.scrollTop + list.clientHeight >= list.scrollHeight - STICK_SLACK_PX;
      if (this.stick) this.unseen = 0;
      this.updateJump();
    });
    jump.addEventListener("click", () => {
      this.stick = true;
      this.unseen = 0;
      this.scrollToEnd();
      this.updateJump();
      list.focus({ preventScroll: true });
    });
    filter.addEventListener("change", () => this.applyFilter());
    /** @type {(name: string) => void} */
    this.onOpen = () => {};
    // A task's name on a line opens that task's panel.
    list.addEventListener("click", (event) => {
      const src = /** @type {Element} */ (event.target).closest?.(".src");
      const line = src && src.closest(".line");
      const source = line instanceof HTMLElement ? line.dataset.source || "" : "";
      if (/^(GENERATE|ANALYZE) \(\d+\)$|^REPORT$/.test(source)) this.onOpen(source);
    });
  }

  /**
   * Draw `logs`: start over on a new epoch, else append the lines not drawn yet.
   * @param {Logs} logs
   */
  render(logs) {
    if (logs.epoch !== this.epoch) {
      this.clear();
      this.epoch = logs.epoch;
    }
    const fresh = Math.min(logs.added - this.drawn, logs.lines.length);
    if (fresh <= 0) return;
    this.drawn = logs.added;
    const fragment = document.createDocumentFragment();
    for (const line of logs.lines.slice(logs.lines.length - fresh)) fragment.append(this.row(line));
    setHidden(this.empty, true);
    this.list.append(fragment);
    const rows = this.list.getElementsByClassName("line");
    const excess = rows.length - MAX_LOG_LINES;
    if (excess > 0) {
      // The oldest rows are contiguous: drop them in one operation.
      const range = document.createRange();
      range.setStartBefore(rows[0]);
      range.setEndAfter(rows[excess - 1]);
      range.deleteContents();
    }
    if (this.stick) this.scrollToEnd();
    else {
      this.unseen += fresh;
      this.updateJump();
    }
  }

  clear() {
    for (const node of [...this.list.querySelectorAll(".line")]) node.remove();
    this.sources.clear();
    this.taskGroup.replaceChildren();
    if (this.filter.value.startsWith("task:")) this.filter.value = "";
    this.drawn = 0;
    this.unseen = 0;
    this.stick = true;
    this.empty.hidden = false;
    this.updateJump();
  }

  /** @param {LogLine} line */
  row(line) {
    const source = line.source;
    this.noteSource(source);
    const row = h(
      "div",
      { class: "line", dataset: { kind: sourceKind(source), source } },
      h("time", { class: "ts", datetime: line.timestamp }, formatTime(line.timestamp)),
      h("span", { class: "src" }, source),
      h("span", { class: "msg" }, line.message),
    );
    row.hidden = !this.matches(row);
    return row;
  }

  /** @param {string} source */
  noteSource(source) {
    if (!source || this.sources.has(source) || !/\(\d+\)$/.test(source)) return;
    this.sources.add(source);
    const sorted = [...this.sources].sort(compareSources);
    const option = h("option", { value: `task:${source}` }, source);
    const next = sorted[sorted.indexOf(source) + 1];
    const before = next ? this.taskGroup.querySelector(`option[value="task:${CSS.escape(next)}"]`) : null;
    this.taskGroup.insertBefore(option, before);
  }

  /** @param {HTMLElement} row */
  matches(row) {
    const value = this.filter.value;
    if (value.startsWith("kind:")) return row.dataset.kind === value.slice(5);
    if (value.startsWith("task:")) return row.dataset.source === value.slice(5);
    return true;
  }

  applyFilter() {
    for (const row of this.list.getElementsByClassName("line")) {
      /** @type {HTMLElement} */ (row).hidden = !this.matches(/** @type {HTMLElement} */ (row));
    }
    this.stick = true;
    this.unseen = 0;
    this.scrollToEnd();
    this.updateJump();
  }

  /** Follow the newest line; called inside the frame that drew it, so nothing else runs between. */
  scrollToEnd() {
    const target = this.list.scrollHeight - this.list.clientHeight;
    if (Math.abs(this.list.scrollTop - target) > 1) {
      this.list.scrollTop = target;
      this.ownTop = this.list.scrollTop;
    }
  }

  updateJump() {
    setHidden(this.jump, this.stick);
    setText(
      this.jump,
      this.unseen ? `Jump to latest (${this.unseen > 99 ? "99+" : this.unseen} new)` : "Jump to latest",
    );
  }
}
