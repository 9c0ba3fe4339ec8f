// @ts-check
// The live stream (SPEC §5): one WebSocket, reconnected with capped exponential backoff.
// Every connection starts with a snapshot, so a reconnect restores the full state.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

export class Stream {
  /**
   * @param {string} url
   * @param {(frame: import("./state.js").Frame) => void} onFrame  every parsed frame, in order
   * @param {(state: string, detail?: {retryAt?: number | null, code?: number}) => void} onState
   *        "connecting" | "live" | "reconnecting" ({retryAt}) | "offline"
   */
  constructor(url, onFrame, onState) {
    this.url = url;
    this.onFrame = onFrame;
    this.onState = onState;
    /** @type {WebSocket | null} */
    this.socket = null;
    this.attempts = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.stopped = false;
    window.addEventListener("online", () => this.retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.retryNow();
    });
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "bye");
  }

  /** Skip the remaining backoff (back online, tab visible again). */
  retryNow() {
    if (this.stopped || this.socket || this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.connect();
  }

  connect() {
    this.timer = null;
    this.onState(this.attempts ? "reconnecting" : "connecting", { retryAt: null });
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this.schedule();
      return;
    }
    this.socket = socket;
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!frame || typeof frame.type !== "string") return;
      if (frame.type === "snapshot") {
        this.attempts = 0;
        this.onState("live");
      }
      this.onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (!this.stopped) this.schedule(event.code);
    });
    // "error" is always followed by "close"; the retry is scheduled there.
    socket.addEventListener("error", () => {});
  }

  /** @param {number} [code] */
  schedule(code) {
    // 1013 = the server is busy or we fell behind: never hammer it, start at a few seconds.
    const floor = code === 1013 ? 2000 : 0;
    const exp = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempts);
    const delay = Math.max(floor, exp) * (0.8 + Math.random() * 0.4);
    this.attempts += 1;
    const retryAt = Date.now() + delay;
    this.onState(navigator.onLine === false ? "offline" : "reconnecting", { retryAt, code });
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
