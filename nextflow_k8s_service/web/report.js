// @ts-check
// The run's report: an SVG chart of each batch's mean with its spread, a totals table and the
// per-batch statistics.

import { h, s, formatFixed, formatNumber } from "./dom.js";

/** @param {unknown} value */
function num(value) {
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

/** Round tick values covering [lo, hi]. @param {number} lo @param {number} hi */
function niceTicks(lo, hi, count = 5) {
  let low = lo;
  let high = hi;
  if (!(high > low)) {
    low -= 1;
    high += 1;
  }
  const rough = (high - low) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const ratio = rough / magnitude;
  const step = (ratio >= 7.5 ? 10 : ratio >= 3.5 ? 5 : ratio >= 1.5 ? 2 : 1) * magnitude;
  const start = Math.floor(low / step) * step;
  const end = Math.ceil(high / step) * step;
  const ticks = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { ticks, lo: start, hi: end };
}

/** @param {HTMLElement} container @param {any} report */
export function renderChart(container, report) {
  const batches = (Array.isArray(report.batches) ? report.batches : [])
    .map((/** @type {any} */ b) => ({
      batch: b.batch,
      mean: num(b.mean),
      stdev: num(b.stdev) ?? 0,
      min: num(b.min),
      max: num(b.max),
      count: b.count,
    }))
    .filter((/** @type {{mean: number | null}} */ b) => b.mean !== null);
  container.replaceChildren();
  if (!batches.length) {
    container.append(h("p", { class: "muted" }, "The report has no batch statistics."));
    return;
  }
  const width = Math.max(280, Math.floor(container.clientWidth) || 600);
  const narrow = width < 520;
  const height = narrow ? 210 : 250;
  const m = { top: 14, right: 10, bottom: 34, left: narrow ? 56 : 68 };
  const low = Math.min(...batches.map((/** @type {any} */ b) => Math.min(b.min ?? b.mean, b.mean - b.stdev)));
  const high = Math.max(
    ...batches.map((/** @type {any} */ b) => Math.max(b.max ?? b.mean, b.mean + b.stdev)),
  );
  const scale = niceTicks(low, high, narrow ? 4 : 5);
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const y = (/** @type {number} */ v) => m.top + plotH - ((v - scale.lo) / (scale.hi - scale.lo)) * plotH;
  const band = plotW / batches.length;
  const x = (/** @type {number} */ i) => m.left + band * (i + 0.5);
  const boxW = Math.max(6, Math.min(26, band * 0.42));

  const overall = num(report.totals && report.totals.mean);
  const label = `Mean of each of ${batches.length} batches with one standard deviation and the min–max range`;
  const svg = s("svg", {
    class: "chart-svg",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
  });

  const grid = s("g", { class: "grid", "aria-hidden": "true" });
  for (const tick of scale.ticks) {
    const ty = y(tick);
    grid.append(
      s("line", { x1: m.left, x2: width - m.right, y1: ty, y2: ty }),
      s("text", { class: "tick", x: m.left - 8, y: ty + 4, "text-anchor": "end" }, formatNumber(tick, 2)),
    );
  }
  svg.append(grid);

  const labelEvery = Math.ceil(batches.length / Math.max(1, Math.floor(plotW / 26)));
  const marks = s("g", { class: "marks" });
  batches.forEach((/** @type {any} */ b, /** @type {number} */ i) => {
    const cx = x(i);
    const g = s("g", { class: "mark" });
    g.append(
      s(
        "title",
        {},
        `Batch ${b.batch}: mean ${formatFixed(b.mean)}, stdev ${formatFixed(b.stdev)}, ` +
          `min ${formatFixed(b.min)}, max ${formatFixed(b.max)}, ${formatNumber(b.count)} rows`,
      ),
    );
    if (b.min !== null && b.max !== null) {
      g.append(
        s("line", { class: "whisker", x1: cx, x2: cx, y1: y(b.min), y2: y(b.max) }),
        s("line", { class: "cap", x1: cx - boxW / 3, x2: cx + boxW / 3, y1: y(b.min), y2: y(b.min) }),
        s("line", { class: "cap", x1: cx - boxW / 3, x2: cx + boxW / 3, y1: y(b.max), y2: y(b.max) }),
      );
    }
    const top = y(b.mean + b.stdev);
    g.append(
      s("rect", {
        class: "sd",
        x: cx - boxW / 2,
        y: top,
        width: boxW,
        height: Math.max(1, y(b.mean - b.stdev) - top),
        rx: 3,
      }),
      s("circle", { class: "mean", cx, cy: y(b.mean), r: narrow ? 3.5 : 4.5 }),
    );
    if (i % labelEvery === 0) {
      g.append(
        s(
          "text",
          { class: "tick", x: cx, y: height - m.bottom + 18, "text-anchor": "middle" },
          String(b.batch),
        ),
      );
    }
    marks.append(g);
  });
  if (overall !== null) {
    svg.append(
      s("line", { class: "overall", x1: m.left, x2: width - m.right, y1: y(overall), y2: y(overall) }),
    );
  }
  svg.append(marks);
  svg.append(
    s(
      "text",
      {
        class: "axis-title",
        x: m.left + plotW / 2,
        y: height - 2,
        "text-anchor": "middle",
        "aria-hidden": "true",
      },
      "Batch",
    ),
    s(
      "text",
      {
        class: "axis-title",
        x: -(m.top + plotH / 2),
        y: 12,
        transform: "rotate(-90)",
        "text-anchor": "middle",
        "aria-hidden": "true",
      },
      "Value",
    ),
  );
  container.append(svg);
}

/** @param {HTMLElement} tbody @param {any} totals */
export function renderTotals(tbody, totals) {
  const t = totals || {};
  tbody.replaceChildren(
    h(
      "tr",
      {},
      h("td", { class: "num", "data-label": "Batches" }, formatNumber(t.batches)),
      h("td", { class: "num", "data-label": "Rows" }, formatNumber(t.count)),
      h("td", { class: "num", "data-label": "Sum" }, formatFixed(t.sum)),
      h("td", { class: "num", "data-label": "Mean" }, formatFixed(t.mean)),
      h("td", { class: "num", "data-label": "Min" }, formatFixed(t.min)),
      h("td", { class: "num", "data-label": "Max" }, formatFixed(t.max)),
    ),
  );
}

/** @param {HTMLElement} tbody @param {any} batches */
export function renderBatchTable(tbody, batches) {
  tbody.replaceChildren(
    ...(Array.isArray(batches) ? batches : []).map((/** @type {any} */ b) =>
      h(
        "tr",
        {},
        h("th", { scope: "row", class: "num" }, String(b.batch)),
        h("td", { class: "num" }, formatNumber(b.count)),
        h("td", { class: "num" }, formatFixed(b.mean)),
        h("td", { class: "num" }, formatFixed(b.stdev)),
        h("td", { class: "opt num" }, formatFixed(b.min)),
        h("td", { class: "opt num" }, formatFixed(b.p50)),
        h("td", { class: "opt num" }, formatFixed(b.p95)),
        h("td", { class: "opt num" }, formatFixed(b.max)),
      ),
    ),
  );
}
