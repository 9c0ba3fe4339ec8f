// The HTTP API of SPEC §4 (prefix /api/v1). Every call throws ApiError with a readable message.

const BASE = "/api/v1";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

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
    if (error && error.name === "AbortError") throw error;
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
    throw new ApiError(response.status, describe(payload && payload.detail, fallback));
  }
  return { status: response.status, data: payload };
}

export const api = {
  async limits() {
    return (await request("GET", "/demo/limits")).data;
  },
  async preview(batchCount, signal) {
    const query = new URLSearchParams({ batch_count: String(batchCount) });
    return (await request("GET", `/demo/preview?${query}`, { signal })).data;
  },
  /** Start a run, or attach to the one in progress: {status: 202|200, data: RunStartResponse}. */
  async run(batchCount, triggeredBy) {
    const body = { batch_count: batchCount };
    if (triggeredBy) body.triggered_by = triggeredBy;
    return request("POST", "/demo/run", { body });
  },
  async cancel(token) {
    return (await request("DELETE", "/demo/cancel", { headers: { "X-Cancel-Token": token } })).data;
  },
  async status() {
    return (await request("GET", "/demo/status")).data;
  },
  async runDetail(runId) {
    return (await request("GET", `/demo/runs/${encodeURIComponent(runId)}`)).data;
  },
  async history(limit = 10) {
    return (await request("GET", `/demo/history?limit=${limit}`)).data;
  },
  async report(runId) {
    return (await request("GET", `/demo/runs/${encodeURIComponent(runId)}/report`)).data;
  },
};

export function reportUrl(runId) {
  return `${BASE}/demo/runs/${encodeURIComponent(runId)}/report`;
}

export function streamUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${BASE}/pipeline/stream`;
}
