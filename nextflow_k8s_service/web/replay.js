// @ts-check
// Replay of a remembered run from its recorded frames (GET /runs/{id}/events): the frames go
// through the same reducer as the live stream, paced by their own timestamps at 1x, 4x or 16x,
// with pause and a scrubber. The player owns its one timer and clears it on pause and stop.

import { applyFrame } from "./state.js";

/** @typedef {import("./state.js").State} State */
/** @typedef {import("./state.js").Frame} Frame */

export const SPEEDS = [1, 4, 16];

/**
 * Parse an NDJSON body into frames, skipping blank or broken lines.
 * @param {string} text @returns {Frame[]}
 */
export function parseFrames(text) {
  /** @type {Frame[]} */
  const frames = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const frame = JSON.parse(line);
      if (frame && typeof frame.type === "string") frames.push(frame);
    } catch {
      /* a torn last line: the rest is still a replay */
    }
  }
  return frames;
}

/**
 * Each frame's time (server ms) from the first frame's; frames without a time keep the last one.
 * @param {Frame[]} frames @returns {number[]}
 */
export function frameOffsets(frames) {
  let start = NaN;
  let last = 0;
  return frames.map((frame) => {
    const at = Date.parse(String(frame.timestamp || ""));
    if (Number.isNaN(at)) return last;
    if (Number.isNaN(start)) start = at;
    last = Math.max(last, at - start);
    return last;
  });
}

/**
 * The state after the frames whose offset is at most `position` (ms), folded from `base`.
 * @param {State} base @param {Frame[]} frames @param {number[]} offsets @param {number} position
 * @returns {{state: State, next: number}}  `next`: index of the first frame not applied
 */
export function stateAt(base, frames, offsets, position) {
  let state = base;
  let next = 0;
  while (next < frames.length && offsets[next] <= position) {
    state = applyFrame(state, frames[next]);
    next += 1;
  }
  return { state, next };
}

export class Player {
  /**
   * @param {State} base  the state the replay starts from (a fresh run seeded)
   * @param {Frame[]} frames
   * @param {(state: State) => void} onState  called after every step, with the replayed state
   */
  constructor(base, frames, onState) {
    this.base = base;
    this.frames = frames;
    this.offsets = frameOffsets(frames);
    this.duration = this.offsets.length ? this.offsets[this.offsets.length - 1] : 0;
    this.onState = onState;
    this.speed = 4;
    this.playing = false;
    this.position = 0;
    this.next = 0;
    this.state = base;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.wallAt = 0;
    this.startTime = frames.length ? Date.parse(String(frames[0].timestamp || "")) || 0 : 0;
  }

  get ended() {
    return this.next >= this.frames.length && this.position >= this.duration;
  }

  /** Server time (ms) the replay stands at: the timeline's and the clock's "now". */
  get now() {
    return this.startTime + this.position;
  }

  play() {
    if (this.ended) this.seek(0);
    this.playing = true;
    this.wallAt = performance.now();
    this.schedule();
    this.onState(this.state);
  }

  pause() {
    this.advance();
    this.playing = false;
    this.clear();
    this.onState(this.state);
  }

  stop() {
    this.playing = false;
    this.clear();
  }

  /** @param {number} speed */
  setSpeed(speed) {
    this.advance();
    this.speed = speed;
    if (this.playing) this.schedule();
    this.onState(this.state);
  }

  /** Jump to `position` ms; backwards folds again from the start. @param {number} position */
  seek(position) {
    const target = Math.max(0, Math.min(this.duration, position));
    if (target < this.position) {
      // Start over: the log's lines start over too (a new epoch, so views redraw them).
      const logs = { ...this.base.logs, epoch: this.state.logs.epoch + 1 };
      const base = { ...this.base, logs };
      ({ state: this.state, next: this.next } = stateAt(base, this.frames, this.offsets, target));
    } else {
      this.applyUpTo(target);
    }
    this.position = target;
    this.wallAt = performance.now();
    if (this.playing) this.schedule();
    this.onState(this.state);
  }

  clear() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** @param {number} target */
  applyUpTo(target) {
    while (this.next < this.frames.length && this.offsets[this.next] <= target) {
      this.state = applyFrame(this.state, this.frames[this.next]);
      this.next += 1;
    }
  }

  /** Move the position on by the wall time since the last step, times the speed. */
  advance() {
    if (!this.playing) return;
    const wall = performance.now();
    const target = Math.min(this.duration, this.position + (wall - this.wallAt) * this.speed);
    this.wallAt = wall;
    this.applyUpTo(target);
    this.position = target;
  }

  schedule() {
    this.clear();
    // Wake for the next frame, or at least four times a second so the clock and bars move.
    const due = this.next < this.frames.length ? this.offsets[this.next] - this.position : 0;
    const wait = Math.max(0, Math.min(250, due / this.speed));
    this.timer = setTimeout(() => this.step(), wait);
  }

  step() {
    this.timer = null;
    this.advance();
    if (this.ended) this.playing = false;
    else if (this.playing) this.schedule();
    this.onState(this.state);
  }
}
