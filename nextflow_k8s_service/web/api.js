// @ts-check
// The HTTP API of SPEC §4 (prefix /api/v1). Every call throws ApiError with a readable message.

const BASE = "/api/v1";

export class ApiError extends Error {
  /** @param {number} status @param {string} message @param {number | null} [retryAfter] seconds */
  constructor(status, message, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** @param {unknown} detail @param {string} fallback @returns {string} */
function describe(detail, fallback) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail
      .map((item) => (item && typeof item.msg === "string" ? item.msg : JSON.stringify(item)))
      .join("; ");
  }
  if (detail && typeof detail === "object") return JSON.stringify(detail);
  return fallback;
}

/**
 * @param {string} method @param {string} path
 * @param {{body?: unknown, headers?: Record<string, string>, signal?: AbortSignal}} [options]
 * @returns {Promise<{status: number, data: any}>}
 */
async function request(method, path, { body, headers, signal } = {}) {
  let response;
  try {
    response = await fetch(BASE + path, {
      method,
      signal,
      cache: "no-store",
      headers: {
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error instanceof Error && error.name === "AbortError") throw error;
    throw new ApiError(0, "The service cannot be reached.");
  }
  let payload = null;
  const text = await response.text();
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }
  if (!response.ok) {
    const fallback = `${response.status} ${response.statusText || "error"}`;
    const retry = Number(response.headers.get("Retry-After"));
    const retryAfter = Number.isFinite(retry) && retry > 0 ? Math.ceil(retry) : null;
    throw new ApiError(response.status, describe(payload && payload.detail, fallback), retryAfter);
  }
  return { status: response.status, data: payload };
}

/** A body as text (NDJSON), with the same errors as `request`. @param {string} path */
async function requestText(path) {
  let response;
  try {
    response = await fetch(BASE + path, { cache: "no-store", headers: { Accept: "application/x-ndjson" } });
  } catch {
    throw new ApiError(0, "The service cannot be reached.");
  }
  const text = await response.text();
  if (!response.ok) throw new ApiError(response.status, `${response.status} ${response.statusText || "error"}`);
  return text;
}

export const api = {
  async limits() {
    return (await request("GET", "/demo/limits")).data;
  },
  /** @param {number} batchCount @param {AbortSignal} [signal] */
  async preview(batchCount, signal) {
    const query = new URLSearchParams({ batch_count: String(batchCount) });
    return (await request("GET", `/demo/preview?${query}`, { signal })).data;
  },
  /** Start a run, or attach to the one in progress: {status: 202|200, data: RunStartResponse}. */
  /** @param {number} batchCount @param {string} [triggeredBy] */
  async run(batchCount, triggeredBy) {
    /** @type {{batch_count: number, triggered_by?: string}} */
    const body = { batch_count: batchCount };
    if (triggeredBy) body.triggered_by = triggeredBy;
    return request("POST", "/demo/run", { body });
  },
  /** @param {string} token */
  async cancel(token) {
    return (await request("DELETE", "/demo/cancel", { headers: { "X-Cancel-Token": token } })).data;
  },
  /** @param {string} runId */
  async runDetail(runId) {
    return (await request("GET", `/demo/runs/${encodeURIComponent(runId)}`)).data;
  },
  async history(limit = 10) {
    return (await request("GET", `/demo/history?limit=${limit}`)).data;
  },
  /** The run's task records: {run_id, tasks}. @param {string} runId */
  async tasks(runId) {
    return (await request("GET", `/demo/runs/${encodeURIComponent(runId)}/tasks`)).data;
  },
  /** The run's recorded frames, NDJSON. @param {string} runId */
  async events(runId) {
    return requestText(`/demo/runs/${encodeURIComponent(runId)}/events`);
  },
  /**
   * The run's archived log lines, of one source when given: {run_id, source, lines, truncated, dropped_lines}.
   * @param {string} runId @param {string | null} source @param {number} limit
   */
  async logs(runId, source, limit) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (source) query.set("source", source);
    return (await request("GET", `/demo/runs/${encodeURIComponent(runId)}/logs?${query}`)).data;
  },
  /** @param {string} runId */
  async report(runId) {
    return (await request("GET", `/demo/runs/${encodeURIComponent(runId)}/report`)).data;
  },
};

/** @param {string} runId */
export function reportUrl(runId) {
  return `${BASE}/demo/runs/${encodeURIComponent(runId)}/report`;
}

export function streamUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${BASE}/pipeline/stream`;
}
