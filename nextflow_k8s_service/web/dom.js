// @ts-check
// Small DOM helpers. Server text only ever enters the page as text nodes or attribute values.

/** @typedef {Record<string, unknown>} Attrs */
/** @typedef {Node | string | number | null | undefined | false} Child */

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * @template {Element} T
 * @param {T} node @param {Attrs | null | undefined} attrs @param {(Child | Child[])[]} children
 * @returns {T}
 */
function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.setAttribute("class", String(value));
    else if (key === "dataset")
      Object.assign(/** @type {HTMLElement} */ (/** @type {unknown} */ (node)).dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), /** @type {EventListener} */ (value));
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * An HTML element: h("td", {class: "x"}, "text", otherNode).
 * @param {string} tag
 * @param {Attrs | null} [attrs]
 * @param {(Child | Child[])[]} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/**
 * An SVG element, same signature as h().
 * @param {string} tag
 * @param {Attrs | null} [attrs]
 * @param {(Child | Child[])[]} children
 * @returns {SVGElement}
 */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** @param {string} id @returns {HTMLElement} */
export function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`missing #${id}`);
  return node;
}

/** @param {Node} node @param {unknown} text */
export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** Set `node.dataset[key]` only when it differs: even an unchanged write makes the browser
 * recompute the styles that depend on the attribute. @param {HTMLElement | SVGElement} node
 * @param {string} key @param {string} value */
export function setData(node, key, value) {
  if (node.dataset[key] !== value) node.dataset[key] = value;
}

/** @param {Element} node @param {string} name @param {string} value */
export function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

/** @param {HTMLElement} node @param {boolean} hidden */
export function setHidden(node, hidden) {
  if (node.hidden !== hidden) node.hidden = hidden;
}

/** Seconds as "12.3 s", "4 m 05 s", "1 h 02 m". @param {number | null | undefined} seconds */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const total = Math.max(0, seconds);
  if (total < 60) return `${total < 10 ? total.toFixed(1) : Math.floor(total)} s`;
  const m = Math.floor(total / 60);
  const sec = Math.floor(total % 60);
  if (m < 60) return `${m} m ${String(sec).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} m`;
}

/** A stopwatch: "0:07", "12:34", "1:02:03". @param {number | null | undefined} seconds */
export function formatClock(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const t = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(t / 3600);
  const mm = Math.floor((t % 3600) / 60);
  const ss = String(t % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/**
 * Compact number for axes and counts: integers as such, others with at most `digits` decimals.
 * @param {unknown} value
 */
export function formatNumber(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "—";
  const n = Number(value);
  if (Number.isInteger(n)) return n.toLocaleString("en-US");
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/**
 * A number with exactly `digits` decimals, for table columns that line up.
 * @param {unknown} value
 */
export function formatFixed(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "—";
  return Number(value).toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

// One formatter for every log line: building one per call (toLocaleTimeString) costs more than
// drawing the line.
const TIME_FORMAT = new Intl.DateTimeFormat("en-GB", {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});

/** @param {string} iso */
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return TIME_FORMAT.format(date);
}

/** Whether the visitor asked for less motion. */
export function prefersReducedMotion() {
  return window.matchMedia("(prefers-reduced-motion: reduce)").matches;
}
