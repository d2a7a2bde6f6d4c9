// Coefficient levels (FORMAT.md §9.4–9.6): side-info count tables, last-band symbols,
// band/context classes, mantissas. Mirrors rerf_codec/codec/coefficients.py and entropy.py.

import { RerfFormatError } from './errors.js';
import { RangeDecoder, countsCdf } from './range-decoder.js';

export const N_BANDS = 22;
export const N_GROUPS = 2;
export const DIRECT = 16;
export const MAX_CLASS = 42;
export const CONTEXT_CONTEXTS = 4;

/** BAND_ORDER: the 512 frequencies sorted by band u+v+w, ties by flat index (§9.4). */
export const BAND_ORDER = new Uint16Array(512);
/** BAND_STARTS[b]..BAND_STARTS[b+1]: band b's run in BAND_ORDER. */
export const BAND_STARTS = new Uint16Array(N_BANDS + 1);
/** Band of each flat frequency f = 64u + 8v + w. */
export const BAND_OF = new Uint8Array(512);
{
  let k = 0;
  for (let b = 0; b < N_BANDS; b++) {
    BAND_STARTS[b] = k;
    for (let f = 0; f < 512; f++) {
      const band = (f >> 6) + ((f >> 3) & 7) + (f & 7);
      if (b === 0) BAND_OF[f] = band;
      if (band === b) BAND_ORDER[k++] = f;
    }
  }
  BAND_STARTS[N_BANDS] = 512;
}

/**
 * A coding table (§9.4). `kind` 'unused' (1,0), 'repeat' (2,0), 'merge' (3,0) or 'table';
 * a 'table' with lo === hi is trivial (cdf null); a count table keeps its `counts` (the block-mode
 * tables of §10.6 are checked against them).
 * @typedef {{kind: 'unused' | 'repeat' | 'merge' | 'table', lo: number, hi: number, cdf: Uint32Array | null,
 *   counts?: Float64Array}} Table
 */

/** @type {Table} */ export const UNUSED = Object.freeze({ kind: 'unused', lo: 1, hi: 0, cdf: null });
/** @type {Table} */ const REPEAT = Object.freeze({ kind: 'repeat', lo: 2, hi: 0, cdf: null });
/** @type {Table} */ const MERGE = Object.freeze({ kind: 'merge', lo: 3, hi: 0, cdf: null });

/**
 * Parse `count` tables (entropy.read_tables). With `allowMarkers` (coefficient mode 1) the
 * pairs (2,0) and (3,0) are the repeat and merge markers.
 * @param {Uint8Array} data @param {number} count @param {boolean} allowMarkers @returns {Table[]}
 */
export function readTables(data, count, allowMarkers) {
  /** @type {Table[]} */
  const tables = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + 2 > data.length) throw new RerfFormatError(`side info truncated in table ${i}`);
    const lo = (data[pos] << 24) >> 24;
    const hi = (data[pos + 1] << 24) >> 24;
    pos += 2;
    if (lo > hi) {
      if (allowMarkers && lo === 2 && hi === 0) tables.push(REPEAT);
      else if (allowMarkers && lo === 3 && hi === 0) tables.push(MERGE);
      else if (lo === 1 && hi === 0) tables.push(UNUSED);
      else throw new RerfFormatError(`side info table ${i}: bad range ${lo}..${hi}`);
      continue;
    }
    if (lo < -MAX_CLASS || hi > MAX_CLASS) {
      throw new RerfFormatError(`side info table ${i}: class range ${lo}..${hi} outside ±${MAX_CLASS}`);
    }
    if (lo === hi) {
      tables.push({ kind: 'table', lo, hi, cdf: null });
      continue;
    }
    const n = hi - lo + 1;
    const counts = new Float64Array(n);
    let sum = 0;
    for (let k = 0; k < n; k++) {
      let v = 0;
      let shift = 0;
      for (;;) {
        if (pos >= data.length) throw new RerfFormatError('side info truncated inside a count');
        const b = data[pos++];
        v += (b & 0x7f) * 2 ** shift;
        if (!(b & 0x80)) break;
        shift += 7;
        if (shift > 28) throw new RerfFormatError('side info count too long');
      }
      if (v > 2 ** 24) throw new RerfFormatError(`side info table ${i}: count ${v} too large`);
      counts[k] = v;
      sum += v;
    }
    if (sum === 0) throw new RerfFormatError(`side info table ${i}: all counts are zero`);
    tables.push({ kind: 'table', lo, hi, cdf: countsCdf(counts), counts });
  }
  if (pos !== data.length) throw new RerfFormatError(`side info has ${data.length - pos} trailing bytes`);
  return tables;
}

/** Number of tables in a frame's side info. @param {number} mode */
export function nTables(mode) {
  return N_GROUPS * (1 + N_BANDS * (mode === 0 ? 1 : CONTEXT_CONTEXTS));
}

/**
 * Decode `n` classes with `table` into out[o], out[o + stride], ... (entropy.SymbolDecoder.decode).
 * @param {RangeDecoder} dec @param {Table} table @param {number} n
 * @param {Int32Array} out @param {number} o @param {number} stride
 */
export function decodeClasses(dec, table, n, out, o, stride) {
  if (n === 0) return;
  if (table.kind === 'unused') throw new RerfFormatError('symbols coded with an unused table');
  const lo = table.lo;
  const cdf = table.cdf;
  if (cdf === null) {
    for (let i = 0; i < n; i++) out[o + i * stride] = lo;
    return;
  }
  for (let i = 0; i < n; i++) out[o + i * stride] = lo + dec.decode(cdf);
}

/** @type {WeakMap<Table, Uint8Array>} */
const LUTS = new WeakMap();

/**
 * Symbol lookup of a count table: lut[q >> 12] = the symbol holding quantile (q >> 12) << 12,
 * so the search for q's symbol starts at most a few steps below it.
 * @param {Table} table @returns {Uint8Array}
 */
export function symbolLut(table) {
  let lut = LUTS.get(table);
  if (lut) return lut;
  const cdf = /** @type {Uint32Array} */ (table.cdf);
  lut = new Uint8Array(4096);
  let s = 0;
  for (let i = 0; i < 4096; i++) {
    while (cdf[s + 1] <= i * 4096) s++;
    lut[i] = s;
  }
  LUTS.set(table, lut);
  return lut;
}

/** MSB-first bit reader over a mantissa section; reads zeros past the end (length is checked once). */
export class MantissaReader {
  /** @param {Uint8Array} data */
  constructor(data) {
    this.data = data;
    this.bit = 0;
  }

  /** @param {number} n 1..30 @returns {number} */
  read(n) {
    let v = 0;
    const d = this.data;
    let bit = this.bit;
    for (let i = 0; i < n; i++, bit++) {
      const byte = bit >> 3;
      v = v * 2 + (byte < d.length ? (d[byte] >> (7 - (bit & 7))) & 1 : 0);
    }
    this.bit = bit;
    return v;
  }

  /** Check the section length against the bits used (§9.6). */
  finish() {
    const T = this.bit;
    if (T === 0) {
      if (this.data.length) {
        throw new RerfFormatError(`mantissa section holds ${this.data.length} bytes, the classes need none`);
      }
    } else if (((T + 7) >> 3) !== this.data.length) {
      throw new RerfFormatError(`mantissa section holds ${this.data.length} bytes, the classes need ${(T + 7) >> 3}`);
    }
  }
}

/** Class -> level, reading its mantissa when |k| >= 16 (§9.6). @param {number} k @param {MantissaReader} m */
export function classToLevel(k, m) {
  if (k > -DIRECT && k < DIRECT) return k;
  const mag = k < 0 ? -k : k;
  const v = 2 ** (mag - 12) + m.read(mag - 12);
  return k < 0 ? -v : v;
}

/**
 * Decoded levels of one frame.
 * @typedef {object} Levels
 * @property {Int32Array} levels (C_total, N, 512) levels in band order: levels[(c*N + b)*512 + j] is the
 *   level of frequency BAND_ORDER[j]; only bands <= last of each (c, b) are written
 * @property {Int8Array} last (C_total, N) last non-zero band, -1 when all zero
 * @property {Table[]} tables the tables in effect (markers resolved), for the next frame's repeats
 */

/**
 * Scratch buffers reused from frame to frame: `levels` (level set 0), `levels1` (level set 1,
 * the intra blocks of a 1.2 residual frame), `tmp`.
 * @typedef {{levels?: Int32Array, levels1?: Int32Array, tmp?: Int32Array}} LevelScratch
 */

/**
 * Replace the repeat and merge markers of one level set's tables (numbered from 0) by the
 * tables they stand for (coefficients._resolve_tables).
 * @param {Table[]} raw @param {Table[] | null} prevTables null in an intra frame
 * @returns {Table[]}
 */
export function resolveTables(raw, prevTables) {
  const count = raw.length;
  const perGroup = count / N_GROUPS;
  /** @type {Table[]} */
  const eff = [];
  for (let i = 0; i < raw.length; i++) {
    let t = raw[i];
    if (t.kind === 'merge') {
      const j = i % perGroup;
      if (j === 0 || (j - 1) % CONTEXT_CONTEXTS === 0) {
        throw new RerfFormatError(`side info table ${i} shares the table before it, but is not a context 1..3 table`);
      }
      if (eff[i - 1].kind === 'unused') {
        throw new RerfFormatError(`side info table ${i} shares the table before it, which is unused`);
      }
      t = eff[i - 1];
    } else if (t.kind === 'repeat') {
      if (prevTables === null) {
        throw new RerfFormatError(`side info table ${i} repeats a table, but the frame is a keyframe`);
      }
      if (prevTables.length !== count || prevTables[i].kind === 'unused') {
        throw new RerfFormatError(`side info table ${i} repeats a table the previous frame did not have`);
      }
      t = prevTables[i];
    }
    eff.push(t);
  }
  return eff;
}

/**
 * Decode a frame's coefficient levels (§9.4–9.6; coefficients.decode_levels_tables).
 * @param {Uint8Array} tableBytes side info after the mode byte (decompressed)
 * @param {Uint8Array} words coeff_words section
 * @param {Uint8Array} mantissa mantissa section
 * @param {number} numChannels C_total @param {number} N occupied blocks
 * @param {number} mode coefficient mode @param {Table[] | null} prevTables null in an intra frame
 * @param {LevelScratch} [scratch] reusable buffers
 * @returns {Levels}
 */
export function decodeLevels(tableBytes, words, mantissa, numChannels, N, mode, prevTables, scratch = {}) {
  return decodeLevelSets(tableBytes, words, mantissa, numChannels, [N], mode, [prevTables], scratch)[0];
}

/**
 * Decode one or more *level sets* sharing a frame's three coefficient sections (§10.6; a
 * frame with block modes codes its inter blocks, then its intra blocks): the side info holds
 * each set's tables one after the other, one range decoder reads the sets' classes in order,
 * and the mantissa section is each set's bits, each padded to whole bytes, one after the other
 * (coefficients.decode_level_sets).
 * @param {Uint8Array} tableBytes @param {Uint8Array} words @param {Uint8Array} mantissa
 * @param {number} numChannels C_total
 * @param {number[]} sizes blocks of each set (set k's block j is its j-th block in block-index order)
 * @param {number} mode coefficient mode
 * @param {(Table[] | null)[]} prevTables what each set's repeat markers refer to (null: keyframe)
 * @param {LevelScratch} [scratch]
 * @returns {Levels[]} one per set
 */
export function decodeLevelSets(tableBytes, words, mantissa, numChannels, sizes, mode, prevTables, scratch = {}) {
  const count = nTables(mode);
  const raw = readTables(tableBytes, count * sizes.length, mode === 1);
  const effs = sizes.map((_, k) => resolveTables(raw.slice(k * count, (k + 1) * count), prevTables[k]));
  const dec = new RangeDecoder(words);
  /** @type {Levels[]} */
  const out = [];
  let pos = 0;
  for (let k = 0; k < sizes.length; k++) {
    const m = new MantissaReader(mantissa.subarray(pos));
    const key = k === 0 ? 'levels' : 'levels1';
    const { levels, last } = decodeLevelSet(dec, effs[k], m, numChannels, sizes[k], mode, scratch, key);
    if (k === sizes.length - 1) m.finish();
    else {
      const size = (m.bit + 7) >> 3;
      if (pos + size > mantissa.length) {
        throw new RerfFormatError(`mantissa section holds ${mantissa.length} bytes, the classes need more`);
      }
      pos += size;
    }
    out.push({ levels, last, tables: effs[k] });
  }
  return out;
}

/**
 * The classes and levels of one level set (§9.5, §9.6) with its tables in effect `eff`.
 * @param {RangeDecoder} dec @param {Table[]} eff @param {MantissaReader} m
 * @param {number} numChannels @param {number} N @param {number} mode
 * @param {LevelScratch} scratch @param {'levels' | 'levels1'} key which scratch buffer holds the levels
 * @returns {{levels: Int32Array, last: Int8Array}}
 */
function decodeLevelSet(dec, eff, m, numChannels, N, mode, scratch, key) {
  const K = mode === 0 ? 1 : CONTEXT_CONTEXTS;
  const total = numChannels * N * 512;
  let levels = scratch[key];
  if (!levels || levels.length < total) levels = scratch[key] = new Int32Array(total);
  const last = new Int8Array(numChannels * N);
  const maxPairs = Math.max(1, (numChannels - 1) * N);
  const lastTmp = new Int32Array(maxPairs);
  const sel = new Int32Array(maxPairs);
  const nonzero = new Int32Array(maxPairs);
  const nextNonzero = new Int32Array(maxPairs);
  let tmp = scratch.tmp;
  if (!tmp || tmp.length < 48 * maxPairs) tmp = scratch.tmp = new Int32Array(48 * maxPairs);
  let ti = 0;
  for (let g = 0; g < N_GROUPS; g++) {
    const cg = g === 0 ? 1 : numChannels - 1;
    const pairs = cg * N;
    const pairBase = (g === 0 ? 0 : 1) * N;
    const lastTable = eff[ti++];
    decodeClasses(dec, lastTable, pairs, lastTmp, 0, 1);
    for (let p = 0; p < pairs; p++) {
      const v = lastTmp[p];
      if (v < -1 || v >= N_BANDS) throw new RerfFormatError('last-band symbol outside -1..21');
    }
    for (let p = 0; p < pairs; p++) last[pairBase + p] = lastTmp[p];
    nonzero.fill(0, 0, pairs);
    for (let b = 0; b < N_BANDS; b++) {
      const s0 = BAND_STARTS[b];
      const size = BAND_STARTS[b + 1] - s0;
      const prevSize = b > 0 ? s0 - BAND_STARTS[b - 1] : 0;
      if (K > 1) nextNonzero.fill(0, 0, pairs);
      for (let k = 0; k < K; k++) {
        const table = eff[ti++];
        let n = 0;
        for (let p = 0; p < pairs; p++) {
          if (lastTmp[p] < b) continue;
          if (K > 1) {
            const nz = nonzero[p];
            const ctx = (nz > 0 ? 1 : 0) + (4 * nz > prevSize ? 1 : 0) + (2 * nz > prevSize ? 1 : 0);
            if (ctx !== k) continue;
          }
          sel[n++] = p;
        }
        if (n === 0) {
          if (table.kind !== 'unused') {
            throw new RerfFormatError('side info declares a table for a band with no symbols');
          }
          continue;
        }
        if (table.kind === 'unused') throw new RerfFormatError('symbols coded with an unused table');
        // classes in decoding order (frequency-major, pair fastest) into tmp, mantissas inline
        const cnt = size * n;
        const lo = table.lo;
        const cdf = table.cdf;
        if (cdf === null) {
          if (lo >= DIRECT || lo <= -DIRECT) {
            for (let i = 0; i < cnt; i++) tmp[i] = classToLevel(lo, m);
          } else tmp.fill(lo, 0, cnt);
        } else {
          const lut = symbolLut(table);
          for (let i = 0; i < cnt; i++) {
            const kls = lo + dec.decodeLut(cdf, lut);
            tmp[i] = kls < DIRECT && kls > -DIRECT ? kls : classToLevel(kls, m);
          }
        }
        // transpose into the band-sorted rows: levels[pair * 512 + j], j = position in BAND_ORDER
        for (let i = 0; i < n; i++) {
          const row = (pairBase + sel[i]) * 512 + s0;
          let nz = 0;
          for (let j = 0; j < size; j++) {
            const v = tmp[j * n + i];
            levels[row + j] = v;
            if (v !== 0) nz++;
          }
          if (K > 1) nextNonzero[sel[i]] = nz;
        }
      }
      if (K > 1) nonzero.set(nextNonzero.subarray(0, pairs));
    }
  }
  return { levels, last };
}
