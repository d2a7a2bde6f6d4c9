// Node side of the JS decoder benchmark (driven by js_decoder_bench.py; prints one JSON line).
//
//   node js_decode_bench.mjs speed STREAM RUNS     single-thread decode, no hash, reused buffers
//   node js_decode_bench.mjs workers STREAM N RUNS GOFs decoded in parallel by N worker_threads
//   node js_decode_bench.mjs memory STREAM         peak RSS of one decode above the post-open RSS
//   node js_decode_bench.mjs http URL              time to first frame and bytes fetched over HTTP Range
import fs from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { openStream } from '../web/decoder/stream.js';
import { decodeGof, framePool } from '../web/decoder/gof.js';

const median = (/** @type {number[]} */ a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

/** @param {string} path */
function load(path) {
  const b = fs.readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

async function speed(path, runs) {
  const bytes = load(path);
  const out = { runs: [], per_type_ms: {} };
  for (let r = 0; r < runs; r++) {
    const s = await openStream(bytes);
    const alloc = framePool();
    /** @type {Record<string, number[]>} */
    const types = {};
    const t0 = performance.now();
    let t = t0;
    let n = 0;
    for await (const f of s.frames({ alloc })) {
      const now = performance.now();
      (types[f.frameType] ??= []).push(now - t);
      t = now;
      n++;
    }
    out.runs.push((performance.now() - t0) / 1000);
    out.frames = n;
    for (const [k, v] of Object.entries(types)) (out.per_type_ms[k] ??= []).push(median(v));
  }
  out.seconds = median(out.runs);
  out.fps = out.frames / out.seconds;
  for (const k of Object.keys(out.per_type_ms)) out.per_type_ms[k] = median(out.per_type_ms[k]);
  return out;
}

async function workers(path, nWorkers, runs) {
  const bytes = load(path);
  const s = await openStream(bytes);
  const gofs = s.gofs ?? [];
  const shared = new SharedArrayBuffer(bytes.length);
  new Uint8Array(shared).set(bytes);
  const pool = [];
  for (let i = 0; i < nWorkers; i++) {
    const w = new Worker(new URL(import.meta.url), { workerData: { shared }, execArgv: [] });
    await new Promise((resolve) => w.once('message', resolve)); // ready (stream opened)
    pool.push(w);
  }
  const times = [];
  for (let r = 0; r < runs; r++) {
    let next = 0;
    let frames = 0;
    const t0 = performance.now();
    await Promise.all(pool.map((w) => new Promise((resolve) => {
      const pull = () => {
        if (next >= gofs.length) { w.off('message', onMsg); resolve(undefined); return; }
        w.postMessage(next++);
      };
      const onMsg = (/** @type {number} */ n) => { frames += n; pull(); };
      w.on('message', onMsg);
      pull();
    })));
    times.push((performance.now() - t0) / 1000);
    if (frames !== s.numFrames) throw new Error(`decoded ${frames} frames of ${s.numFrames}`);
  }
  for (const w of pool) await w.terminate();
  return { workers: nWorkers, gofs: gofs.length, frames: s.numFrames, runs: times, seconds: median(times), fps: s.numFrames / median(times) };
}

async function memory(path) {
  const bytes = load(path);
  const s = await openStream(bytes);
  globalThis.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const alloc = framePool();
  for await (const _f of s.frames({ alloc })) peak = Math.max(peak, process.memoryUsage().rss);
  const maxRss = process.resourceUsage().maxRSS * 1024;
  const [X, Y, Z] = s.header.grid_shape;
  return { base_rss: base, peak_rss: Math.max(peak, maxRss), above_base: Math.max(peak, maxRss) - base,
    dense_frame_bytes: X * Y * Z * s.header.num_channels * 4 };
}

async function http(url) {
  const t0 = performance.now();
  const s = await openStream(url);
  const tOpen = performance.now() - t0;
  const bytesOpen = s.stats.bytes;
  const it = s.frames({ start: s.firstFrame, end: s.firstFrame + 1 });
  await it.next();
  const tFirst = performance.now() - t0;
  return { open_ms: tOpen, first_frame_ms: tFirst, bytes_open: bytesOpen, bytes_first_frame: s.stats.bytes,
    requests: s.stats.requests, seekable: s.seekable };
}

if (!isMainThread) {
  // worker: decode the GOF index it is sent, reply with the number of frames
  const bytes = new Uint8Array(workerData.shared);
  const s = await openStream(bytes);
  const alloc = framePool();
  parentPort?.postMessage('ready');
  parentPort?.on('message', async (/** @type {number} */ k) => {
    const entry = /** @type {any} */ (s.gofs)[k];
    const gof = await s.readGof(entry);
    let n = 0;
    for (const _f of decodeGof(gof, s.header, { alloc })) n++;
    parentPort?.postMessage(n);
  });
} else {
  const [cmd, a, b, c] = process.argv.slice(2);
  let out;
  if (cmd === 'speed') out = await speed(a, Number(b ?? 3));
  else if (cmd === 'workers') out = await workers(a, Number(b ?? 2), Number(c ?? 3));
  else if (cmd === 'memory') out = await memory(a);
  else if (cmd === 'http') out = await http(a);
  else throw new Error('usage: speed|workers|memory|http ...');
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
