// The pipeline drawn as a graph: one lane per batch, GENERATE i -> ANALYZE i, all converging on
// REPORT. The SVG is laid out in CSS pixels of its container (redrawn on resize), so text stays
// crisp and legible from a phone to a wide screen. Colours and animation live in style.css.
// @ts-check

import { s, setData } from "./dom.js";
import { TASK_STATES, taskName } from "./tasks.js";

/** @param {number} value @param {number} lo @param {number} hi */
function clamp(value, lo, hi) {
  return Math.min(hi, Math.max(lo, value));
}

/** @typedef {{g: SVGElement, title: SVGElement, dur: SVGElement}} GraphNode */

export class PipelineGraph {
  /** @param {HTMLElement} container */
  constructor(container) {
    this.container = container;
    this.batchCount = 0;
    /** @type {Record<string, string>} */
    this.states = {};
    /** @type {Record<string, string>} */
    this.durations = {};
    /** @type {(name: string) => void} */
    this.onOpen = () => {};
    // A task node opens its panel on click or Enter/Space (nodes are buttons in preview too,
    // but only a run's nodes are focusable).
    container.addEventListener("click", (event) => {
      const node = /** @type {Element} */ (event.target).closest?.(".node");
      if (node && this.mode === "run") this.onOpen(String(node.getAttribute("data-task")));
    });
    container.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" && event.key !== " ") return;
      const node = /** @type {Element} */ (event.target).closest?.(".node");
      if (!node || this.mode !== "run") return;
      event.preventDefault();
      this.onOpen(String(node.getAttribute("data-task")));
    });
    this.mode = "preview";
    this.runStatus = "idle";
    this.width = 0;
    /** @type {Map<string, GraphNode>} */
    this.nodes = new Map();
    /** @type {{from: string, to: string, path: SVGElement}[]} */
    this.edges = [];
    /** @type {SVGElement | null} */
    this.svg = null;
    /** @type {SVGElement | null} */
    this.title = null;
    const observer = new ResizeObserver(() => {
      const width = Math.floor(this.container.clientWidth);
      if (width > 0 && width !== this.width) {
        this.width = width;
        this.render();
      }
    });
    observer.observe(container);
  }

  /**
   * Show `n` lanes; `mode` is "preview" (what a run would look like) or "run".
   * @param {number} n
   * @param {string} mode
   */
  setShape(n, mode) {
    const changed = n !== this.batchCount;
    this.batchCount = n;
    this.mode = mode;
    if (changed || !this.svg) this.render();
    else this.decorate();
  }

  /** @param {Record<string, string>} states */
  setStates(states) {
    this.states = states || {};
    this.paint();
  }

  /** Per-task durations shown on the nodes ("1.2 s"), by task name. @param {Record<string, string>} durations */
  setDurations(durations) {
    this.durations = durations;
    for (const [name, node] of this.nodes) {
      const text = durations[name] || "";
      if (node.dur.textContent !== text) node.dur.textContent = text;
    }
  }

  /** @param {string} status */
  setRunStatus(status) {
    this.runStatus = status || "idle";
    this.decorate();
  }

  /** @param {string} name */
  state(name) {
    const value = this.states[name];
    return TASK_STATES.includes(value) ? value : "pending";
  }

  decorate() {
    if (!this.svg) return;
    setData(this.svg, "mode", this.mode);
    setData(this.svg, "runStatus", this.runStatus);
    const focusable = this.mode === "run";
    for (const node of this.nodes.values()) {
      if (focusable) {
        node.g.setAttribute("tabindex", "0");
        node.g.setAttribute("role", "button");
      } else {
        node.g.removeAttribute("tabindex");
        node.g.removeAttribute("role");
      }
    }
    this.svg.setAttribute("role", focusable ? "group" : "img");
  }

  render() {
    const n = this.batchCount;
    const width = this.width || Math.floor(this.container.clientWidth) || 640;
    this.container.replaceChildren();
    this.nodes.clear();
    this.edges = [];
    if (!n) {
      this.svg = null;
      return;
    }
    const narrow = width < 520;
    const pad = 3;
    const headH = 24;
    const laneH = narrow ? 32 : 38;
    const nodeH = narrow ? 24 : 28;
    const nodeW = clamp(Math.round(width * 0.24), 64, 172);
    const reportW = clamp(Math.round(width * 0.2), 84, 140);
    const reportH = clamp(n * laneH - 10, nodeH, 52);
    const height = headH + n * laneH + 4;
    const gx = pad;
    const rx = width - pad - reportW;
    const ax = Math.round(gx + (rx - gx) * (narrow ? 0.44 : 0.4));
    const laneY = (/** @type {number} */ i) => headH + (i - 0.5) * laneH;
    const ry = headH + (n * laneH) / 2;
    const fullLabels = nodeW >= 160;

    const title = s("title", { id: "graph-title" }, "Pipeline");
    const svg = s("svg", {
      class: "graph-svg",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": "graph-title",
    });
    svg.append(title);
    // Narrow nodes have no room for the durations: their titles still say them.
    if (nodeW < 120) svg.setAttribute("data-compact", "");

    const heads = s("g", { class: "col-heads", "aria-hidden": "true" });
    heads.append(
      s("text", { x: gx + 2, y: 14 }, "GENERATE"),
      s("text", { x: ax + 2, y: 14 }, "ANALYZE"),
      s("text", { x: rx + 2, y: 14 }, "REPORT"),
    );
    svg.append(heads);

    const edgeLayer = s("g", { class: "edges", "aria-hidden": "true" });
    const nodeLayer = s("g", { class: "nodes" });
    svg.append(edgeLayer, nodeLayer);

    /**
     * @param {string} name
     * @param {number} x
     * @param {number} y
     * @param {number} w
     * @param {number} hgt
     * @param {string} label
     */
    const addNode = (name, x, y, w, hgt, label) => {
      const g = s("g", { class: "node", "data-task": name });
      const title = s("title", {}, name);
      const halo = s("rect", {
        class: "node-halo",
        x: x - 3,
        y: y - hgt / 2 - 3,
        width: w + 6,
        height: hgt + 6,
        rx: 9,
      });
      const box = s("rect", { class: "node-box", x, y: y - hgt / 2, width: w, height: hgt, rx: 7 });
      const dot = s("circle", { class: "node-dot", cx: x + 12, cy: y, r: 4.5 });
      const ring = s("circle", { class: "node-ring", cx: x + 12, cy: y, r: 7.5 });
      const text = s("text", { class: "node-label", x: x + 23, y: y + 4 }, label);
      const dur = s("text", { class: "node-dur", x: x + w - 7, y: y + 4, "text-anchor": "end" });
      dur.textContent = this.durations[name] || "";
      g.append(title, halo, box, ring, dot, text, dur);
      nodeLayer.append(g);
      this.nodes.set(name, { g, title, dur });
    };
    /** @param {string} from @param {string} to @param {string} d */
    const addEdge = (from, to, d) => {
      const path = s("path", { class: "edge", d });
      edgeLayer.append(path);
      this.edges.push({ from, to, path });
    };

    for (let i = 1; i <= n; i += 1) {
      const y = laneY(i);
      const gen = taskName("GENERATE", i);
      const ana = taskName("ANALYZE", i);
      addNode(gen, gx, y, nodeW, nodeH, fullLabels ? gen : `#${i}`);
      addNode(ana, ax, y, nodeW, nodeH, fullLabels ? ana : `#${i}`);
      addEdge(gen, ana, `M${gx + nodeW} ${y} H${ax}`);
      const x0 = ax + nodeW;
      const mid = (x0 + rx) / 2;
      // Spread the arrival points along REPORT's left edge so the lanes stay distinguishable.
      const arrive = n === 1 ? ry : ry - reportH / 2 + 6 + ((reportH - 12) * (i - 1)) / (n - 1);
      addEdge(ana, "REPORT", `M${x0} ${y} C${mid} ${y} ${mid} ${arrive} ${rx} ${arrive}`);
    }
    addNode("REPORT", rx, ry, reportW, reportH, "REPORT");

    this.svg = svg;
    this.title = title;
    this.container.append(svg);
    this.decorate();
    this.paint();
  }

  paint() {
    if (!this.svg || !this.title) return;
    /** @type {Record<string, number>} */
    const counts = { pending: 0, submitted: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const [name, node] of this.nodes) {
      const state = this.state(name);
      counts[state] += 1;
      const took = this.durations[name] ? `, ${this.durations[name]}` : "";
      const label = `${name}: ${state}${took}`;
      if (node.g.dataset.state !== state) node.g.dataset.state = state;
      if (node.title.textContent !== label) {
        node.title.textContent = label;
        node.g.setAttribute("aria-label", label);
      }
    }
    for (const edge of this.edges) {
      const up = this.state(edge.from);
      const down = this.state(edge.to);
      let state = "idle";
      if (down === "failed" || up === "failed") state = "failed";
      else if (down === "cancelled" || up === "cancelled") state = "idle";
      else if (down === "succeeded") state = "done";
      else if (up === "succeeded" && down === "running") state = "flow";
      else if (up === "succeeded") state = "ready";
      if (edge.path.dataset.state !== state) edge.path.dataset.state = state;
    }
    const total = this.nodes.size;
    const parts = [`${counts.succeeded} of ${total} tasks succeeded`];
    if (counts.running) parts.push(`${counts.running} running`);
    if (counts.failed) parts.push(`${counts.failed} failed`);
    if (counts.cancelled) parts.push(`${counts.cancelled} cancelled`);
    const lanes = `${this.batchCount} batch${this.batchCount === 1 ? "" : "es"}`;
    this.title.textContent =
      this.mode === "preview"
        ? `Preview of a run with ${lanes}: ${total} tasks`
        : `Pipeline with ${lanes}: ${parts.join(", ")}`;
  }
}
