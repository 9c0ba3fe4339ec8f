// @ts-check
// The table of recent runs.

import { h, formatDuration } from "./dom.js";
import { reportUrl } from "./api.js";
import { RUN_ID_RE } from "./state.js";

/** @param {HTMLElement} tbody @param {HTMLElement} empty @param {unknown} runs */
export function renderHistory(tbody, empty, runs) {
  const rows = (Array.isArray(runs) ? runs : []).filter((run) => run && RUN_ID_RE.test(run.run_id));
  empty.hidden = rows.length > 0;
  const table = tbody.closest("table");
  if (table) table.hidden = rows.length === 0;
  tbody.replaceChildren(
    ...rows.map((run) => {
      const status = String(run.status || "unknown");
      const started = new Date(run.started_at);
      const when = Number.isNaN(started.getTime())
        ? ""
        : started.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
      const report =
        status === "succeeded"
          ? h(
              "a",
              {
                class: "link",
                href: reportUrl(run.run_id),
                target: "_blank",
                rel: "noopener",
                "aria-label": `report.json of run ${run.run_id}`,
              },
              "report.json",
            )
          : h("span", { class: "muted" }, "—");
      return h(
        "tr",
        { dataset: { runId: run.run_id, status } },
        h("td", {}, h("span", { class: "pill pill-small", dataset: { status } }, status)),
        h(
          "td",
          {},
          h(
            "a",
            { class: "link mono", href: `/runs/${run.run_id}`, title: when, "aria-label": `Open run ${run.run_id}` },
            run.run_id,
          ),
        ),
        h("td", { class: "opt num", "data-label": "batches" }, String(run.batch_count ?? "—")),
        h("td", { class: "num", "data-label": "took" }, formatDuration(run.duration_seconds)),
        h("td", { class: "opt by", "data-label": "by" }, run.triggered_by || "—"),
        h("td", {}, report),
      );
    }),
  );
}
