// The live log console: lines coloured by source, a source filter, auto-scroll that pauses while
// the reader looks at older lines, and a bounded DOM so a long run never slows the page.

import { h, formatTime } from "./dom.js";

const MAX_LINES = 500;
const STICK_SLACK_PX = 24;

export function sourceKind(source) {
  const text = String(source || "");
  if (text.startsWith("GENERATE")) return "generate";
  if (text.startsWith("ANALYZE")) return "analyze";
  if (text.startsWith("REPORT")) return "report";
  if (text === "controller" || text === "nextflow") return "controller";
  return "other";
}

function lineKey(line) {
  return `${line.timestamp}\u0000${line.source}\u0000${line.message}`;
}

function compareSources(a, b) {
  const rank = (x) => ({ controller: 0, generate: 1, analyze: 2, report: 3 })[sourceKind(x)] ?? 4;
  const num = (x) => Number((/\((\d+)\)/.exec(x) || [])[1] || 0);
  return rank(a) - rank(b) || num(a) - num(b) || a.localeCompare(b);
}

export class LogConsole {
  constructor({ list, empty, filter, taskGroup, jump }) {
    this.list = list;
    this.empty = empty;
    this.filter = filter;
    this.taskGroup = taskGroup;
    this.jump = jump;
    this.keys = new Set();
    this.sources = new Set();
    this.stick = true;
    this.unseen = 0;
    this.scrollQueued = false;
    this.programmaticScroll = false;

    list.addEventListener("scroll", () => {
      if (this.programmaticScroll) {
        this.programmaticScroll = false;
        return;
      }
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
  }

  /** Forget everything (a new run). */
  reset() {
    for (const node of [...this.list.querySelectorAll(".line")]) node.remove();
    this.keys.clear();
    this.sources.clear();
    this.taskGroup.replaceChildren();
    if (this.filter.value.startsWith("task:")) this.filter.value = "";
    this.unseen = 0;
    this.stick = true;
    this.empty.hidden = false;
    this.updateJump();
  }

  /** Append lines in order, skipping any already shown (a snapshot after a reconnect). */
  append(lines) {
    if (!Array.isArray(lines) || !lines.length) return;
    const fragment = document.createDocumentFragment();
    let added = 0;
    for (const line of lines) {
      if (!line || typeof line.message !== "string") continue;
      const key = lineKey(line);
      if (this.keys.has(key)) continue;
      this.keys.add(key);
      const source = String(line.source || "");
      this.noteSource(source);
      const kind = sourceKind(source);
      const row = h(
        "div",
        { class: "line", dataset: { kind, source, key } },
        h("time", { class: "ts", datetime: line.timestamp }, formatTime(line.timestamp)),
        h("span", { class: "src" }, source),
        h("span", { class: "msg" }, line.message),
      );
      row.hidden = !this.matches(row);
      fragment.append(row);
      added += 1;
    }
    if (!added) return;
    this.empty.hidden = true;
    this.list.append(fragment);
    this.trim();
    if (this.stick) this.scrollToEnd();
    else {
      this.unseen += added;
      this.updateJump();
    }
  }

  trim() {
    const rows = this.list.getElementsByClassName("line");
    let excess = rows.length - MAX_LINES;
    while (excess > 0) {
      const first = rows[0];
      this.keys.delete(first.dataset.key);
      first.remove();
      excess -= 1;
    }
  }

  noteSource(source) {
    if (!source || this.sources.has(source) || !/\(\d+\)$/.test(source)) return;
    this.sources.add(source);
    const sorted = [...this.sources].sort(compareSources);
    const option = h("option", { value: `task:${source}` }, source);
    const next = sorted[sorted.indexOf(source) + 1];
    const before = next ? this.taskGroup.querySelector(`option[value="task:${CSS.escape(next)}"]`) : null;
    this.taskGroup.insertBefore(option, before);
  }

  matches(row) {
    const value = this.filter.value;
    if (!value) return true;
    if (value.startsWith("kind:")) return row.dataset.kind === value.slice(5);
    if (value.startsWith("task:")) return row.dataset.source === value.slice(5);
    return true;
  }

  applyFilter() {
    for (const row of this.list.getElementsByClassName("line")) row.hidden = !this.matches(row);
    this.stick = true;
    this.unseen = 0;
    this.scrollToEnd();
    this.updateJump();
  }

  scrollToEnd() {
    if (this.scrollQueued) return;
    this.scrollQueued = true;
    requestAnimationFrame(() => {
      this.scrollQueued = false;
      const target = this.list.scrollHeight - this.list.clientHeight;
      if (Math.abs(this.list.scrollTop - target) > 1) {
        this.programmaticScroll = true;
        this.list.scrollTop = target;
      }
    });
  }

  updateJump() {
    const show = !this.stick;
    this.jump.hidden = !show;
    this.jump.textContent = this.unseen
      ? `Jump to latest (${this.unseen > 99 ? "99+" : this.unseen} new)`
      : "Jump to latest";
  }
}
