// The worker protocol over a real worker (node:worker_threads runs the same worker.js).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { createSha256, updateFrameHash } from '../sha256.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = process.env.RERF_CONFORMANCE ?? path.resolve(here, '../../../../bitstreams/conformance');

/** A worker and a helper collecting the messages of one request id. */
function start() {
  const w = new Worker(new URL('../worker.js', import.meta.url), { execArgv: [] });
  /** @type {any[]} */
  const msgs = [];
  /** @type {Array<() => void>} */
  let waiters = [];
  w.on('message', (m) => { if (process.env.DEBUGW) console.log('MSG', m.event, m.id); msgs.push(m); for (const f of waiters) f(); });
  /** @param {(m: any) => boolean} pred */
  const until = (pred) => new Promise((resolve) => {
    const check = () => { const m = msgs.find(pred); if (m) { waiters = waiters.filter((f) => f !== check); resolve(m); } };
    waiters.push(check);
    check();
  });
  return { w, msgs, until };
}

test('open + decode in a worker: frames arrive transferred and hash to decoded.sha256', async () => {
  const bytes = fs.readFileSync(path.join(root, 'residual_motion', 'stream.rerf'));
  const want = fs.readFileSync(path.join(root, 'residual_motion', 'decoded.sha256'), 'utf8').trim();
  const { w, msgs, until } = start();
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  w.postMessage({ cmd: 'open', id: 1, source: buf }, [buf]);
  const opened = await until((m) => m.id === 1);
  assert.equal(opened.event, 'opened');
  assert.equal(opened.numFrames, 4);
  w.postMessage({ cmd: 'decode', id: 2 });
  const done = await until((m) => m.id === 2 && m.event === 'done');
  assert.equal(done.frames, 4);
  const frames = msgs.filter((m) => m.id === 2 && m.event === 'frame');
  assert.deepEqual(frames.map((f) => f.index), [0, 1, 2, 3]);
  assert.ok(msgs.some((m) => m.id === 2 && m.event === 'progress'));
  const h = createSha256();
  for (const f of frames) updateFrameHash(h, f);
  assert.equal(h.hexdigest(), want);
  // a range, then a bad request and a damaged stream: errors, not crashes
  w.postMessage({ cmd: 'decode', id: 3, start: 2, end: 4 });
  await until((m) => m.id === 3 && m.event === 'done');
  assert.deepEqual(msgs.filter((m) => m.id === 3 && m.event === 'frame').map((f) => f.index), [2, 3]);
  w.postMessage({ cmd: 'decode', id: 4, start: 9, end: 12 });
  assert.equal((await until((m) => m.id === 4)).error.type, 'usage');
  const bad = new Uint8Array(bytes);
  bad[bad.length - 100] ^= 0xff; // inside the last GOF chunk
  w.postMessage({ cmd: 'open', id: 5, source: bad.buffer, options: { mode: 'stream' } }, [bad.buffer]);
  assert.equal((await until((m) => m.id === 5)).event, 'opened');
  w.postMessage({ cmd: 'decode', id: 6 });
  const err = await until((m) => m.id === 6 && m.event === 'error');
  assert.equal(err.error.type, 'format');
  assert.equal(err.error.fatal, true);
  await w.terminate();
});

test('abort stops a decode request and reset closes the stream', async () => {
  const bytes = fs.readFileSync(path.join(root, 'context_mode', 'stream.rerf'));
  const { w, until } = start();
  w.postMessage({ cmd: 'open', id: 1, source: new Uint8Array(bytes).buffer });
  await until((m) => m.id === 1);
  w.postMessage({ cmd: 'decode', id: 2 });
  w.postMessage({ cmd: 'abort', id: 2 });
  const done = await until((m) => m.id === 2 && m.event === 'done');
  assert.equal(done.aborted, true);
  assert.ok(done.frames < 5);
  w.postMessage({ cmd: 'reset', id: 3 });
  w.postMessage({ cmd: 'decode', id: 4 });
  assert.equal((await until((m) => m.id === 4)).error.type, 'usage');
  await w.terminate();
});

test('reasons: every GOF start reason up front; progress events carry the entry with its reason', async (t) => {
  if (!fs.existsSync(path.join(root, 'gof_reasons', 'stream.rerf'))) {
    t.skip('no gof_reasons vector (format 1.2) here');
    return;
  }
  const bytes = fs.readFileSync(path.join(root, 'gof_reasons', 'stream.rerf'));
  const { w, msgs, until } = start();
  w.postMessage({ cmd: 'open', id: 1, source: new Uint8Array(bytes).buffer });
  const opened = await until((m) => m.id === 1);
  assert.ok(opened.gofs.every((/** @type {any} */ g) => g.start_reason === null));
  w.postMessage({ cmd: 'reasons', id: 2 });
  const r = await until((m) => m.id === 2);
  assert.equal(r.event, 'reasons');
  assert.deepEqual(r.gofs.map((/** @type {any} */ g) => g.start_reason), ['first', 'max-length', 'listed', 'cost']);
  w.postMessage({ cmd: 'decode', id: 3, start: 5 });
  await until((m) => m.id === 3 && m.event === 'done');
  const progress = msgs.filter((m) => m.id === 3 && m.event === 'progress');
  assert.deepEqual(progress.map((m) => [m.gof.first_frame, m.gof.start_reason, m.gof.start_reason_id]), [[5, 'cost', 3]]);
  await w.terminate();
});
