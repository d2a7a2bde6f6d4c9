// The player's decode worker protocol: the decoder's worker protocol (decoder/worker-protocol.js,
// `{cmd: open|decode|abort|reset, id}`), with each decoded frame turned into the renderer's
// bricks (render/bricks.js prepareFrame) before it leaves the worker.
//
// Why bricks and not the decoder's dense grids: preparing a frame (free-space cache, dilation,
// brick atlas) is as much main-thread work as decoding it on large grids, and the bricks of a
// sparse scene are a fraction of the dense arrays (a 128³ × 13 frame is 109 MB dense), so less
// crosses the thread boundary. The messages are the decoder's, except:
//
//   {cmd: 'open', source}                source may also be a Blob (a dropped file: cloned by
//                                        reference, read here)
//   {event: 'frame', id, index, frameType, frame, decodeMs, prepareMs}
//                                        frame: a PreparedFrame (its arrays transferred);
//                                        decodeMs: decoder time since the previous event of the
//                                        request (a frame the next one predicts from is held back
//                                        until that one is decoded, so it is exact per GOF)
//   'opened', 'progress' and 'done' also carry `requests` (HTTP requests made for the stream
//                                        so far, from Resource Timing) and `bytes`
//
// The same handler runs in a Web Worker (frame-worker.js) or, where no module worker can be
// created, on the page itself (frame-source.js's inline fallback).

import { createWorkerHandler } from "./decoder/worker-protocol.js";
import { prepareFrame } from "./render/bricks.js";

/** @typedef {import("./render/bricks.js").PreparedFrame} PreparedFrame */
/** @typedef {import("./render/bricks.js").GridInfo} GridInfo */
/** @typedef {{event: string, id: number | string, [k: string]: any}} OutMessage */
/** @typedef {(msg: OutMessage, transfer?: ArrayBuffer[]) => void} Post */

/**
 * The renderer's grid description from a sequence header.
 * @param {any} header @returns {GridInfo}
 */
export function gridInfo(header) {
  const render = (header.meta && header.meta.sequence && header.meta.sequence.render) || {};
  return {
    shape: header.grid_shape, channels: header.feature_channels, densityShift: header.density_shift,
    stepRatio: render.step_ratio || 0.5,
  };
}

/** Buffers of a prepared frame (to transfer). @param {PreparedFrame} f @returns {ArrayBuffer[]} */
export function frameBuffers(f) {
  const bufs = [f.occupancy.buffer, f.blockOccupied.buffer, f.brickOf.buffer, ...f.brickData.map((a) => a.buffer)];
  return /** @type {ArrayBuffer[]} */ ([...new Set(bufs)]);
}

/**
 * HTTP requests and body bytes fetched for `url` so far (Resource Timing of this realm).
 * @param {string | null} url
 */
function fetched(url) {
  if (!url || typeof performance === "undefined" || !performance.getEntriesByType) return { requests: 0, bytes: 0 };
  let requests = 0, bytes = 0;
  for (const e of /** @type {PerformanceResourceTiming[]} */ (performance.getEntriesByType("resource"))) {
    if (e.name !== url) continue;
    requests++;
    bytes += e.encodedBodySize || 0;
  }
  return { requests, bytes };
}

/**
 * Create the message handler; `post` sends a message (with buffers to transfer).
 * @param {Post} post @returns {(msg: any) => void}
 */
export function createFrameHandler(post) {
  /** @type {GridInfo | null} */
  let info = null;
  /** @type {string | null} the stream's URL, for counting its requests */
  let url = null;
  /** @type {Map<number | string, number>} time of the last event of each decode request */
  const last = new Map();
  if (typeof performance !== "undefined" && performance.setResourceTimingBufferSize) {
    performance.setResourceTimingBufferSize(100000); // one entry per Range request
  }
  const inner = createWorkerHandler((msg, transfer = []) => {
    const now = performance.now();
    if (msg.event === "opened") {
      info = gridInfo(msg.header);
      post({ ...msg, ...fetched(url) });
    } else if (msg.event === "frame") {
      const m = /** @type {any} */ (msg);
      const decodeMs = now - (last.get(m.id) ?? now);
      const frame = prepareFrame(m.density, m.features, /** @type {GridInfo} */ (info));
      const prepareMs = performance.now() - now;
      post({ event: "frame", id: m.id, index: m.index, frameType: m.frameType, frame, decodeMs, prepareMs }, frameBuffers(frame));
      last.set(m.id, performance.now());
    } else if (msg.event === "progress") {
      post({ ...msg, requests: fetched(url).requests }, transfer);
      last.set(msg.id, performance.now()); // the chunk is read: decoding starts now
    } else {
      if (msg.event === "done" || msg.event === "error") last.delete(msg.id);
      post({ ...msg, ...fetched(url) }, transfer);
    }
  });
  /** @type {Promise<void>} keeps messages in order while a Blob is read */
  let chain = Promise.resolve();
  return (msg) => {
    if (msg.cmd === "abort" || msg.cmd === "reset") {
      inner(msg);
      return;
    }
    if (msg.cmd === "decode") last.set(msg.id, performance.now());
    if (msg.cmd === "open") url = typeof msg.source === "string" ? msg.source : null;
    if (msg.cmd === "open" && typeof Blob !== "undefined" && msg.source instanceof Blob) {
      const blob = msg.source;
      chain = chain.then(async () => inner({ ...msg, source: await blob.arrayBuffer() }));
      return;
    }
    chain = chain.then(() => inner(msg));
  };
}
