// Format 1.2 (FORMAT.md §6.3, §10.6): GOF start reasons on the stream's index entries, the
// frame-header checks, and damaged modes sections rejected as format errors. Vectors come
// from $RERF_CONFORMANCE or the repository's bitstreams/conformance (block_modes,
// block_modes_bands and gof_reasons arrive with format 1.2).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RerfFormatError } from '../errors.js';
import {
  CHUNK_HEAD_SIZE, FILE_HEADER_SIZE, FRAME_FLAG_BLOCK_MODES, GOF_REASON_NAMES, crc32, parseFileHeader, parseGofPayload,
  parseSequenceHeader,
} from '../format.js';
import { openStream } from '../stream.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = process.env.RERF_CONFORMANCE ?? path.resolve(here, '../../../../bitstreams/conformance');
const cases = fs.readdirSync(root).filter((d) => fs.existsSync(path.join(root, d, 'stream.rerf')));

/** @param {string} name */
const load = (name) => new Uint8Array(fs.readFileSync(path.join(root, name, 'stream.rerf')));
/** @param {string} name */
const want = (name) => fs.readFileSync(path.join(root, name, 'decoded.sha256'), 'utf8').trim();

/**
 * The GOF chunks of a stream (front to back): payload position and parsed records.
 * @param {Uint8Array} bytes
 */
function gofChunks(bytes) {
  const fh = parseFileHeader(bytes.subarray(0, FILE_HEADER_SIZE));
  const header = parseSequenceHeader(fh, bytes.subarray(FILE_HEADER_SIZE, FILE_HEADER_SIZE + fh.header_size));
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let pos = FILE_HEADER_SIZE + fh.header_size;
  while (bytes[pos] === 1) {
    const size = dv.getUint32(pos + 4, true);
    const start = pos + CHUNK_HEAD_SIZE;
    out.push({ start, size, gof: parseGofPayload(bytes.subarray(start, start + size), header) });
    pos = start + size + 4;
  }
  return out;
}

/**
 * A copy of `bytes` with `edit(copy)` applied inside GOF chunk `k`'s payload, its CRC recomputed.
 * @param {Uint8Array} bytes @param {number} k @param {(b: Uint8Array, start: number) => void} edit
 */
function edited(bytes, k, edit) {
  const copy = new Uint8Array(bytes);
  const { start, size } = gofChunks(copy)[k];
  edit(copy, start);
  new DataView(copy.buffer).setUint32(start + size, crc32(copy.subarray(start, start + size)), true);
  return copy;
}

/**
 * Offset in the file of frame record `i`'s 4-byte header (GOF chunk k).
 * @param {Uint8Array} bytes @param {number} k @param {number} i
 */
function frameHeadAt(bytes, k, i) {
  const rec = gofChunks(bytes)[k].gof.frames[i];
  return rec.mask.byteOffset - bytes.byteOffset - 8;
}

/** @param {Uint8Array} bytes @param {'auto' | 'stream'} [mode] */
async function decode(bytes, mode = 'auto') {
  const s = await openStream(bytes, { mode });
  return { s, r: await s.sha256() };
}

const has12 = cases.includes('gof_reasons') && cases.includes('block_modes') && cases.includes('block_modes_bands');
// The repository's FORMAT.md says which version this tree is at: from 1.2 on, its vectors must be there.
const doc = path.resolve(here, '../../../../bitstreams/FORMAT.md');
const docMinor = Number(/version 1\.(\d+)/.exec(fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8').slice(0, 200) : '')?.[1] ?? -1);

test('the format 1.2 vectors are present', { skip: !has12 && docMinor < 2 && `FORMAT.md is 1.${docMinor} here and ${root} has no 1.2 vectors` }, () => {
  assert.ok(has12, `block_modes, block_modes_bands and gof_reasons under ${root} (FORMAT.md 1.${docMinor})`);
});

if (has12) {
  test('gof_reasons: every GOF says why it starts, seeking, streaming and before decoding', async () => {
    const bytes = load('gof_reasons');
    const expected = ['first', 'max-length', 'listed', 'cost'];
    const ids = expected.map((n) => Number(Object.keys(GOF_REASON_NAMES).find((k) => GOF_REASON_NAMES[Number(k)] === n)));
    assert.deepEqual(ids, [1, 2, 4, 3]);
    const seek = await openStream(bytes);
    assert.ok(seek.gofs?.every((g) => g.start_reason === null && g.start_reason_id === null), 'unknown before reading');
    await seek.readStartReasons();
    assert.deepEqual(seek.gofs?.map((g) => [g.first_frame, g.start_reason, g.start_reason_id]),
      [[0, 'first', 1], [3, 'max-length', 2], [4, 'listed', 4], [5, 'cost', 3]]);
    for (const mode of /** @type {const} */ (['auto', 'stream'])) {
      const { s, r } = await decode(bytes, mode);
      assert.equal(r.sha256, want('gof_reasons'));
      assert.deepEqual(s.gofs?.map((g) => g.start_reason), expected, mode);
      assert.deepEqual(s.gofs?.map((g) => g.start_reason_id), ids, mode);
    }
    // a range decode learns the reasons of the GOFs it reads, and only those
    const s = await openStream(bytes);
    for await (const f of s.frames({ start: 4, end: 5 })) assert.equal(f.index, 4);
    assert.deepEqual(s.gofs?.map((g) => g.start_reason), [null, null, 'listed', null]);
  });

  test('streams written before 1.2 report the reason "unknown" (id 0)', async () => {
    for (const name of cases.filter((c) => !['gof_reasons', 'block_modes', 'block_modes_bands'].includes(c))) {
      const { s } = await decode(load(name));
      assert.ok(s.gofs?.every((g) => g.start_reason === 'unknown' && g.start_reason_id === 0), name);
    }
  });

  test('block-mode vectors: residual frames carry the modes section', () => {
    for (const name of ['block_modes', 'block_modes_bands']) {
      const flags = gofChunks(load(name)).flatMap((c) => c.gof.frames.map((f) => f.flags));
      assert.ok(flags.slice(1).every((f) => f === FRAME_FLAG_BLOCK_MODES), `${name}: ${flags}`);
      assert.equal(flags[0], 0);
    }
  });

  test('frame header checks (§6.3, §12): flags, gof_reason and the reserved byte', async () => {
    const bytes = load('block_modes');
    const at1 = frameHeadAt(bytes, 0, 1);
    const at0 = frameHeadAt(bytes, 0, 0);
    const bad = {
      'unknown flag bit': edited(bytes, 0, (b) => { b[at1 + 1] |= 2; }),
      'block_modes flag on the keyframe': edited(bytes, 0, (b) => { b[at0 + 1] = 1; }),
      'gof_reason 7': edited(bytes, 0, (b) => { b[at0 + 2] = 7; }),
      'gof_reason on a record that does not start the GOF': edited(bytes, 0, (b) => { b[at1 + 2] = 1; }),
      'reserved byte 3': edited(bytes, 0, (b) => { b[at0 + 3] = 1; }),
      'block_modes flag cleared (the modes section is read as the next frame)': edited(bytes, 0, (b) => { b[at1 + 1] = 0; }),
    };
    for (const [what, data] of Object.entries(bad)) {
      await assert.rejects(() => decode(data, 'stream'), RerfFormatError, what);
    }
    // every valid reason id decodes (it is informational) and is reported
    for (const id of [0, 2, 5, 6]) {
      const { s, r } = await decode(edited(bytes, 0, (b) => { b[at0 + 2] = id; }));
      assert.equal(r.sha256, want('block_modes'));
      assert.equal(s.gofs?.[0].start_reason, GOF_REASON_NAMES[id]);
    }
  });

  test('damaged modes sections are format errors, never a crash or another frame', async () => {
    const bytes = load('block_modes');
    const rec = gofChunks(bytes)[0].gof.frames[1];
    const m0 = rec.modes.byteOffset - bytes.byteOffset;
    const n = rec.modes.length;
    const dv = new DataView(rec.modes.buffer, rec.modes.byteOffset, n);
    const numBlocks = dv.getUint32(0, true);
    const tablesSize = dv.getUint16(4, true);
    assert.ok(n > 6 + tablesSize, 'the vector has mode words');
    const cases12 = {
      'num_blocks + 1': edited(bytes, 0, (b) => { new DataView(b.buffer).setUint32(m0, numBlocks + 1, true); }),
      'tables_size past the section': edited(bytes, 0, (b) => { new DataView(b.buffer).setUint16(m0 + 4, n, true); }),
      'tables_size - 1 (table bytes left over / words misaligned)':
        edited(bytes, 0, (b) => { new DataView(b.buffer).setUint16(m0 + 4, tablesSize - 1, true); }),
      'mode symbol range 0..3': edited(bytes, 0, (b) => {
        // the first table that is a count table or trivial: raise its hi to 3
        let p = m0 + 6;
        for (let c = 0; c < 12; c++) {
          const lo = (b[p] << 24) >> 24;
          const hi = (b[p + 1] << 24) >> 24;
          if (lo <= hi) { b[p] = 3; b[p + 1] = 3; return; }
          p += 2;
        }
      }),
      'zeroed words': edited(bytes, 0, (b) => { b.fill(0, m0 + 6 + tablesSize, m0 + n); }),
    };
    for (const [what, data] of Object.entries(cases12)) {
      await assert.rejects(() => decode(data, 'stream'), RerfFormatError, what);
    }
  });
}
