// Block modes of residual frames (FORMAT.md §10.6, format 1.2): inter / skip / intra per
// occupied block, range-coded with one exact count table per context, the context of a block
// depending only on the previous frame's modes (Bprev). Mirrors rerf_codec/codec/modes.py.

import { RerfFormatError } from './errors.js';
import { readTables } from './coefficients.js';
import { RangeDecoder } from './range-decoder.js';

/** Mode symbols are 0..2 (inter, skip, intra). */
export const N_BLOCK_MODES = 3;
/** Bprev value of a block without a mode (unoccupied, or the previous frame was a keyframe). */
export const MODE_NONE = 3;
/** 4 previous modes x 3 neighbour classes. */
export const N_MODE_CONTEXTS = 12;
const MODES_HEAD_SIZE = 6; // u32 num_blocks, u16 tables_size

/**
 * The Bprev map a residual frame leaves (§10.1): its modes at occupied blocks (all inter,
 * 0, without the block_modes flag), MODE_NONE elsewhere.
 * @param {Uint8Array} mask block mask (C order) @param {Uint8Array | null} modes (N) in block-index order
 * @returns {Uint8Array}
 */
export function previousModes(mask, modes) {
  const out = new Uint8Array(mask.length);
  let k = 0;
  for (let i = 0; i < mask.length; i++) out[i] = mask[i] ? (modes ? modes[k++] : 0) : MODE_NONE;
  return out;
}

/**
 * Mode context 3·t + q (0..11) of block `i` of the block grid (§10.6 "Contexts").
 * @param {Uint8Array | null} bprev null: MODE_NONE everywhere (after a keyframe)
 * @param {[number, number, number]} shape block grid @param {number} i flat block index
 */
function modeContext(bprev, shape, i) {
  if (bprev === null) return 3 * MODE_NONE;
  const [, BY, BZ] = shape;
  const x = Math.floor(i / (BY * BZ));
  const y = Math.floor(i / BZ) % BY;
  const z = i % BZ;
  let nS = 0;
  let nI = 0;
  /** @param {number} j */
  const see = (j) => {
    const v = bprev[j];
    if (v === 1) nS++;
    else if (v === 2) nI++;
  };
  if (x > 0) see(i - BY * BZ);
  if (x + 1 < shape[0]) see(i + BY * BZ);
  if (y > 0) see(i - BZ);
  if (y + 1 < BY) see(i + BZ);
  if (z > 0) see(i - 1);
  if (z + 1 < BZ) see(i + 1);
  const q = nS + nI === 0 ? 0 : nS >= nI ? 1 : 2;
  return 3 * bprev[i] + q;
}

/**
 * Decode the `modes` section (§10.6) -> (N) modes of the occupied blocks, block-index order.
 * Every inconsistency is a RerfFormatError.
 * @param {Uint8Array} section @param {Uint8Array} mask block mask of this frame
 * @param {[number, number, number]} shape block grid @param {Uint8Array | null} bprev previous-mode map
 * @returns {Uint8Array}
 */
export function decodeModes(section, mask, shape, bprev) {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  if (section.length < MODES_HEAD_SIZE) throw new RerfFormatError('modes section truncated');
  const dv = new DataView(section.buffer, section.byteOffset, section.byteLength);
  const numBlocks = dv.getUint32(0, true);
  const tablesSize = dv.getUint16(4, true);
  if (numBlocks !== n) {
    throw new RerfFormatError(`modes section codes ${numBlocks} blocks, the frame has ${n} occupied blocks`);
  }
  const end = MODES_HEAD_SIZE + tablesSize;
  if (end > section.length) throw new RerfFormatError('modes section truncated');
  let tables;
  try {
    tables = readTables(section.subarray(MODES_HEAD_SIZE, end), N_MODE_CONTEXTS, false);
  } catch (e) {
    if (e instanceof RerfFormatError) throw new RerfFormatError(`modes section: ${e.message}`);
    throw e;
  }
  const ctx = new Uint8Array(n);
  const perCtx = new Int32Array(N_MODE_CONTEXTS);
  for (let i = 0, b = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    const c = modeContext(bprev, shape, i);
    ctx[b++] = c;
    perCtx[c]++;
  }
  const dec = new RangeDecoder(section.subarray(end));
  const out = new Uint8Array(n);
  for (let c = 0; c < N_MODE_CONTEXTS; c++) {
    const t = tables[c];
    const rows = perCtx[c];
    if (t.kind !== 'unused' && (t.lo < 0 || t.hi >= N_BLOCK_MODES)) {
      throw new RerfFormatError(`modes section: table ${c} has mode symbols ${t.lo}..${t.hi} outside 0..2`);
    }
    if (rows === 0) {
      if (t.kind !== 'unused') throw new RerfFormatError(`modes section declares a table for context ${c}, which has no blocks`);
      continue;
    }
    if (t.kind === 'unused') throw new RerfFormatError(`modes section has no table for context ${c}, which has ${rows} blocks`);
    const counts = t.counts;
    if (t.cdf === null || !counts) {
      for (let b = 0; b < n; b++) if (ctx[b] === c) out[b] = t.lo;
      continue;
    }
    let sum = 0;
    for (let k = 0; k < counts.length; k++) sum += counts[k];
    if (sum !== rows) {
      throw new RerfFormatError(`modes section: context ${c} counts ${sum} symbols, it has ${rows} blocks`);
    }
    const got = new Float64Array(counts.length);
    for (let b = 0; b < n; b++) {
      if (ctx[b] !== c) continue;
      const s = dec.decode(t.cdf);
      got[s]++;
      out[b] = t.lo + s;
    }
    for (let k = 0; k < counts.length; k++) {
      if (got[k] !== counts[k]) {
        throw new RerfFormatError(`modes section: context ${c} decodes to other counts than declared (corrupt data)`);
      }
    }
  }
  return out;
}
