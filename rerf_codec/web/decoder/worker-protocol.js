// The decoder's worker message protocol, independent of the worker flavour (a browser Web
// Worker or Node's worker_threads: worker.js binds it to either).
//
// In (main thread -> worker), every message has `cmd` and `id`:
//   {cmd: 'open', id, source, options?}  source: URL string, ArrayBuffer or ReadableStream;
//                                        options: openStream's ({mode, http})
//   {cmd: 'decode', id, start?, end?}    decode frames [start, end) of the open stream
//   {cmd: 'reasons', id}                 read every GOF's start reason (1.2) up front
//   {cmd: 'abort', id}                   stop the decode request `id` (e.g. on seek)
//   {cmd: 'reset', id}                   abort everything and close the stream
// Out (worker -> main thread), every message has `event` and `id` (the request's):
//   {event: 'opened', id, header, numFrames, firstFrame, gofs}
//   {event: 'frame', id, index, frameType, shape, channels, density, features}
//                                        density/features are transferred Float32Arrays
//   {event: 'progress', id, gof, bytes}  a GOF chunk was read (bytes: read so far; gof: its index
//                                        entry, start_reason included)
//   {event: 'reasons', id, gofs}         the index entries with start_reason / start_reason_id
//   {event: 'done', id, frames}          the decode request finished (or was aborted: aborted true)
//   {event: 'error', id, error: {type, details, fatal}}
//                                        type: 'format' (bad stream), 'source' (network/HTTP),
//                                        'usage' (bad request), 'internal'; fatal: the stream
//                                        must be reopened
// Requests run one at a time in arrival order, except abort/reset, which act at once.

import { RerfAbortError, RerfFormatError, RerfSourceError } from './errors.js';
import { openStream } from './stream.js';

/** @typedef {{event: string, id: number | string, [k: string]: unknown}} OutMessage */
/** @typedef {(msg: OutMessage, transfer?: ArrayBuffer[]) => void} Post */

/** A macrotask turn, so that queued messages are handled (decoding itself only awaits microtasks). */
function yieldToEvents() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** @param {unknown} e */
function describe(e) {
  const err = /** @type {Error} */ (e);
  if (e instanceof RerfFormatError) return { type: 'format', details: err.message, fatal: true };
  if (e instanceof RerfSourceError) return { type: 'source', details: err.message, fatal: false };
  if (e instanceof RangeError || e instanceof TypeError) return { type: 'usage', details: err.message, fatal: false };
  return { type: 'internal', details: `${err?.name}: ${err?.message}`, fatal: true };
}

/**
 * Create the message handler; `post` sends a message (with buffers to transfer).
 * @param {Post} post @returns {(msg: any) => void}
 */
export function createWorkerHandler(post) {
  /** @type {import('./stream.js').RerfStream | null} */
  let stream = null;
  /** @type {Map<number | string, AbortController>} */
  const running = new Map();
  /** @type {Set<number | string>} abort requests for decodes still queued */
  const abortedEarly = new Set();
  /** @type {Promise<void>} */
  let queue = Promise.resolve();

  /** @param {any} msg */
  async function run(msg) {
    const { id } = msg;
    if (msg.cmd === 'open') {
      stream?.close();
      stream = null;
      stream = await openStream(msg.source, msg.options ?? {});
      const { tensors, ...header } = stream.header;
      post({
        event: 'opened', id, header: { ...header, tensors: [...tensors].map(([name, t]) => ({ name, ...t })) },
        numFrames: stream.numFrames, firstFrame: stream.firstFrame, gofs: stream.gofs,
      });
      return;
    }
    if (msg.cmd === 'reasons') {
      if (!stream) throw new TypeError('reasons before open');
      post({ event: 'reasons', id, gofs: await stream.readStartReasons() });
      return;
    }
    if (msg.cmd === 'decode') {
      if (!stream) throw new TypeError('decode before open');
      const ctl = new AbortController();
      running.set(id, ctl);
      if (abortedEarly.delete(id)) ctl.abort();
      let n = 0;
      /** @type {import('./gof.js').DecodedFrame | null} */
      let held = null;
      /** @param {import('./gof.js').DecodedFrame} f */
      const send = (f) => {
        post({ event: 'frame', id, index: f.index, frameType: f.frameType, shape: f.shape, channels: f.channels,
          density: f.density, features: f.features }, [f.density.buffer, f.features.buffer]);
        n++;
      };
      try {
        const it = stream.frames({
          start: msg.start, end: msg.end, signal: ctl.signal,
          onGof: (p) => post({ event: 'progress', id, gof: p.gof, bytes: p.bytes }),
        });
        for await (const f of it) {
          await yieldToEvents(); // lets an abort or reset message in between frames
          if (ctl.signal.aborted) throw new RerfAbortError();
          if (held) send(held); // the frame after it is decoded: its buffers are free to go
          held = null;
          if (f.ref) held = f;
          else send(f);
        }
        if (held) send(held);
        post({ event: 'done', id, frames: n });
      } catch (e) {
        if (e instanceof RerfAbortError) post({ event: 'done', id, frames: n, aborted: true });
        else throw e;
      } finally {
        running.delete(id);
      }
      return;
    }
    throw new TypeError(`unknown command ${msg.cmd}`);
  }

  return (msg) => {
    if (msg.cmd === 'abort') {
      const ctl = running.get(msg.id);
      if (ctl) ctl.abort();
      else abortedEarly.add(msg.id);
      return;
    }
    if (msg.cmd === 'reset') {
      for (const c of running.values()) c.abort();
      const old = stream;
      stream = null;
      queue = queue.then(() => old?.close());
      return;
    }
    queue = queue.then(() => run(msg)).catch((e) => post({ event: 'error', id: msg.id, error: describe(e) }));
  };
}
