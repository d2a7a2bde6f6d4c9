// Every conformance vector decodes to its recorded SHA-256 (FORMAT.md §14), through each
// reading mode. Vectors are looked up in $RERF_CONFORMANCE or the repository's bitstreams/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openStream } from '../stream.js';
import { RerfFormatError } from '../errors.js';
import { framePool } from '../gof.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = process.env.RERF_CONFORMANCE ?? path.resolve(here, '../../../../bitstreams/conformance');
const cases = fs.readdirSync(root).filter((d) => fs.existsSync(path.join(root, d, 'stream.rerf')));

test('conformance vectors are present', () => {
  assert.ok(cases.length >= 7, `found ${cases.length} vectors under ${root}`);
});

for (const name of cases) {
  const bytes = new Uint8Array(fs.readFileSync(path.join(root, name, 'stream.rerf')));
  const want = fs.readFileSync(path.join(root, name, 'decoded.sha256'), 'utf8').trim();
  test(`${name}: seeking decode matches decoded.sha256`, async () => {
    const s = await openStream(bytes);
    assert.equal(s.gofs?.length ? s.gofs[0].first_frame : -1, s.firstFrame);
    const r = await s.sha256();
    assert.equal(r.frames, s.numFrames);
    assert.equal(r.sha256, want);
  });
  test(`${name}: streaming decode (ReadableStream, 1 KiB pieces) matches`, async () => {
    const rs = new ReadableStream({
      start(c) {
        for (let i = 0; i < bytes.length; i += 1024) c.enqueue(bytes.slice(i, i + 1024));
        c.close();
      },
    });
    const s = await openStream(rs);
    assert.equal(s.gofs, null);
    const r = await s.sha256();
    assert.equal(r.sha256, want);
    assert.ok(s.gofs !== null, 'the index is known once the stream has been read');
  });
  test(`${name}: reused output buffers (framePool) give the same hash`, async () => {
    const r = await (await openStream(bytes)).sha256({ alloc: framePool() });
    assert.equal(r.sha256, want);
  });
  test(`${name}: truncated stream is a format error`, async () => {
    await assert.rejects(async () => (await openStream(bytes.subarray(0, bytes.length - 5), { mode: 'stream' })).sha256(),
      RerfFormatError);
  });
}

test('a frame range decodes the same frames as the whole stream', async () => {
  const name = cases.includes('residual_motion') ? 'residual_motion' : cases[0];
  const bytes = new Uint8Array(fs.readFileSync(path.join(root, name, 'stream.rerf')));
  /** @type {import('../gof.js').DecodedFrame[]} */
  const all = [];
  for await (const f of (await openStream(bytes)).frames()) all.push(f);
  const s = await openStream(bytes);
  const got = [];
  for await (const f of s.frames({ start: s.firstFrame + 1, end: s.firstFrame + 3 })) got.push(f);
  assert.deepEqual(got.map((f) => f.index), [s.firstFrame + 1, s.firstFrame + 2]);
  for (const f of got) {
    const ref = all.find((a) => a.index === f.index);
    assert.deepEqual(f.density, ref?.density);
    assert.deepEqual(f.features, ref?.features);
  }
  await assert.rejects(() => s.frames({ start: s.firstFrame - 1 }).next(), RangeError);
});
