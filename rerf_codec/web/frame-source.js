// The page's side of the decode worker (frame-protocol.js): requests with ids, promises for
// their answers, frames delivered to a callback, abort on seek.
//
// Decoding runs in a module Web Worker so that the page keeps rendering and answering input
// while a GOF decodes. Where the worker cannot be created (no Worker, no module workers, a
// Content-Security-Policy without worker-src, the script failing to load) the same handler
// runs on the page instead, as hls.js falls back to its inline demuxer: slower to respond,
// same results. Messages sent before the worker said it is ready are kept and replayed
// inline if it fails to start.

import { RerfFormatError, RerfSourceError } from "./decoder/errors.js";
import { createFrameHandler } from "./frame-protocol.js";

/** @typedef {import("./render/bricks.js").PreparedFrame} PreparedFrame */

/**
 * @typedef {object} FrameMessage
 * @property {number} index frame number
 * @property {string} frameType 'intra' | 'residual'
 * @property {PreparedFrame} frame the renderer's bricks
 * @property {number} decodeMs decoder time for this frame
 * @property {number} prepareMs brick preparation time
 */

/**
 * @typedef {object} DecodeCallbacks
 * @property {(f: FrameMessage) => void} [onFrame]
 * @property {(p: {gof: {offset: number, first_frame: number, num_frames: number}, bytes: number, requests: number}) => void} [onProgress]
 */

/**
 * @typedef {object} Pending
 * @property {(v: any) => void} resolve
 * @property {(e: Error) => void} reject
 * @property {DecodeCallbacks} [cb]
 * @property {boolean} [decode] a decode request (reset ends it as aborted, not as an error)
 */

/** An error from the worker's `{type, details}` as the decoder's error classes. @param {{type: string, details: string}} e */
function toError(e) {
  if (e.type === "format") return new RerfFormatError(e.details);
  if (e.type === "source") return new RerfSourceError(e.details);
  if (e.type === "usage") return new RangeError(e.details);
  return new Error(e.details);
}

export class FrameSource {
  /** @param {{worker?: boolean}} [o] worker: false decodes on the page (tests, debugging) */
  constructor(o = {}) {
    this.nextId = 1;
    /** @type {Map<number, Pending>} */
    this.pending = new Map();
    /** @type {any[] | null} messages sent before the worker said it is ready (replayed inline if it fails) */
    this.unconfirmed = [];
    /** @type {Worker | null} */
    this.worker = null;
    /** @type {((msg: any) => void) | null} the inline handler */
    this.inline = null;
    /** Where decoding runs: "worker" or "inline". */
    this.mode = "worker";
    /** Why decoding runs inline, if it does. */
    this.fallbackReason = "";
    /** Network counters of the open stream (from the worker's messages). */
    this.net = { requests: 0, bytes: 0 };
    if (o.worker === false) {
      this.goInline("disabled by the page");
      return;
    }
    try {
      if (typeof Worker === "undefined") throw new Error("no Worker in this browser");
      const w = new Worker(new URL("./frame-worker.js", import.meta.url), { type: "module", name: "rerf-decoder" });
      w.onmessage = (e) => this.receive(e.data);
      w.onerror = (e) => {
        e.preventDefault?.();
        this.workerFailed(e.message || "the decode worker failed to load");
      };
      this.worker = w;
    } catch (e) {
      this.goInline(/** @type {Error} */ (e).message);
    }
  }

  /** @param {string} why */
  goInline(why) {
    this.worker?.terminate();
    this.worker = null;
    this.mode = "inline";
    this.fallbackReason = why;
    // Answers go through a macrotask, as a worker's would: callers never re-enter themselves.
    const handle = createFrameHandler((msg) => setTimeout(() => this.receive(msg), 0));
    this.inline = handle;
    const replay = this.unconfirmed ?? [];
    this.unconfirmed = null;
    for (const m of replay) handle(m);
  }

  /** @param {string} why */
  workerFailed(why) {
    if (this.unconfirmed) {
      this.goInline(why); // it never started: decode on the page
      return;
    }
    // It was running: every request in flight fails; decoding goes on on the page.
    this.worker?.terminate();
    this.worker = null;
    this.mode = "inline";
    this.inline = createFrameHandler((msg) => setTimeout(() => this.receive(msg), 0));
    this.unconfirmed = null;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new Error(`the decode worker stopped: ${why}`));
    }
  }

  /** @param {any} msg @param {Transferable[]} [transfer] */
  send(msg, transfer = []) {
    if (this.inline) {
      this.inline(msg);
      return;
    }
    this.unconfirmed?.push(msg);
    /** @type {Worker} */ (this.worker).postMessage(msg, transfer);
  }

  /** @param {any} msg */
  receive(msg) {
    if (msg.event === "ready") {
      this.unconfirmed = null;
      return;
    }
    if (typeof msg.requests === "number") this.net.requests = Math.max(this.net.requests, msg.requests);
    if (typeof msg.bytes === "number") this.net.bytes = Math.max(this.net.bytes, msg.bytes);
    const p = this.pending.get(msg.id);
    if (!p) return; // an aborted request's late messages
    if (msg.event === "frame") p.cb?.onFrame?.(msg);
    else if (msg.event === "progress") p.cb?.onProgress?.(msg);
    else if (msg.event === "opened" || msg.event === "done") {
      this.pending.delete(msg.id);
      p.resolve(msg);
    } else if (msg.event === "error") {
      this.pending.delete(msg.id);
      p.reject(toError(msg.error));
    }
  }

  /**
   * Open a stream (an absolute URL, bytes, or a Blob read by the worker).
   * @param {string | ArrayBuffer | Blob} source
   * @returns {Promise<{header: any, numFrames: number, firstFrame: number, gofs: {offset: number, first_frame: number, num_frames: number}[] | null}>}
   */
  open(source) {
    const id = this.nextId++;
    this.net = { requests: 0, bytes: 0 };
    const p = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.send({ cmd: "open", id, source });
    return p;
  }

  /**
   * Decode frames [start, end); resolves with `{frames, aborted}` when done.
   * @param {number} start @param {number} end @param {DecodeCallbacks} cb
   * @returns {{id: number, done: Promise<{frames: number, aborted?: boolean}>}}
   */
  decode(start, end, cb) {
    const id = this.nextId++;
    const done = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, cb, decode: true }));
    this.send({ cmd: "decode", id, start, end });
    return { id, done };
  }

  /** Stop a decode request at once: its promise resolves aborted, late frames are dropped. @param {number} id */
  abort(id) {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.resolve({ frames: 0, aborted: true });
    this.send({ cmd: "abort", id });
  }

  /** Abort everything and close the stream (the worker stays for the next one). */
  reset() {
    for (const id of [...this.pending.keys()]) {
      const p = /** @type {Pending} */ (this.pending.get(id));
      this.pending.delete(id);
      if (p.decode) p.resolve({ frames: 0, aborted: true });
      else p.reject(new Error("stream closed"));
    }
    this.send({ cmd: "reset", id: this.nextId++ });
  }

  /** End the worker. */
  terminate() {
    this.reset();
    this.worker?.terminate();
    this.worker = null;
  }
}
