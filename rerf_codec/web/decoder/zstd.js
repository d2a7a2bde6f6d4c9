// Zstandard decoder (RFC 8878), written here so the decoder has no runtime dependency.
//
// Why our own and not an npm package: the format needs exact frame semantics that general
// decoders do not expose (exactly one frame filling the field, the declared content size
// checked against a limit before decompressing, output capped while it grows, §1 and §12 of
// FORMAT.md), the page must work offline with nothing installed, and the differential fuzz
// compares rejections with libzstd's: the checks below follow libzstd's (block size,
// window size, unused bits in every bitstream, Huffman weight rules, checksum). Sizes in
// .rerf streams are small (metadata, tensors, side info), so clarity beats speed here.
// No dictionaries (a frame naming one is rejected, as libzstd does without a dictionary).

import { RerfFormatError } from './errors.js';

const MAGIC = 0xfd2fb528;
const BLOCK_MAX = 1 << 17;
const WINDOW_MAX = 2 ** 27 + 1; // libzstd's default maxWindowSize

/** @param {string} what @param {string} why @returns {never} */
function fail(what, why) {
  throw new RerfFormatError(`${what}: corrupt zstd data (${why})`);
}

// --- bit readers -------------------------------------------------------------------------

/** Backward bitstream (FSE/Huffman): bits are read from the end towards the start. */
class BackwardBits {
  /**
   * @param {Uint8Array} buf @param {number} start @param {number} end @param {string} what
   * @param {number} [floor] lowest byte that reads below `start` may reach (default `start`:
   *   zeros below it); libzstd's fast 4-stream Huffman path reads the bytes before a stream
   * @param {boolean} [fastInit] libzstd's fast-path initialisation: a zero last byte is data, not an error
   */
  constructor(buf, start, end, what, floor = start, fastInit = false) {
    if (end <= start) fail(what, 'empty bitstream');
    const last = buf[end - 1];
    if (last === 0 && !fastInit) fail(what, 'bitstream without end mark');
    this.buf = buf;
    this.start = start;
    this.floor = floor;
    /** Bits left to read (may go negative: reads continue below the start, down to `floor`). */
    this.pos = (end - start) * 8 - (last === 0 ? 0 : 8 - (31 - Math.clz32(last)));
  }

  /** @param {number} n bits (0..32) @returns {number} */
  read(n) {
    if (n === 0) return 0;
    const v = this.peek(n);
    this.pos -= n;
    return v;
  }

  /** The next n bits without consuming them. @param {number} n */
  peek(n) {
    const lo = this.pos - n; // bit index of the lowest bit wanted
    const buf = this.buf;
    if (lo >= 0) {
      // fast path: up to 4 bytes hold the bits
      const b0 = this.start + (lo >> 3);
      const sh = lo & 7;
      const w = buf[b0] | ((buf[b0 + 1] ?? 0) << 8) | ((buf[b0 + 2] ?? 0) << 16);
      if (sh + n <= 24) return (w >>> sh) & ((1 << n) - 1);
    }
    let v = 0;
    for (let i = n - 1; i >= 0; i--) {
      const bit = lo + i;
      const byte = this.start + Math.floor(bit / 8);
      v = v * 2 + (byte >= this.floor ? (buf[byte] >> (bit & 7)) & 1 : 0);
    }
    return v;
  }
}

// --- FSE ---------------------------------------------------------------------------------

/**
 * @typedef {{log: number, symbol: Uint8Array, nbBits: Uint8Array, base: Uint16Array}} FseTable
 */

/**
 * Read an FSE table description (normalised counts), forward bit order.
 * @param {Uint8Array} buf @param {number} pos @param {number} end
 * @param {number} maxSymbol @param {number} maxLog @param {string} what
 * @returns {{counts: Int16Array, log: number, size: number}}
 */
function readNCount(buf, pos, end, maxSymbol, maxLog, what) {
  let bit = 0;
  const avail = (end - pos) * 8;
  /** @param {number} n */
  const peek = (n) => {
    let v = 0;
    for (let i = n - 1; i >= 0; i--) {
      const b = bit + i;
      v = v * 2 + (b < avail ? (buf[pos + (b >> 3)] >> (b & 7)) & 1 : 0);
    }
    return v;
  };
  const log = peek(4) + 5;
  bit += 4;
  if (log > maxLog) fail(what, 'FSE table log too large');
  const counts = new Int16Array(maxSymbol + 1);
  let remaining = (1 << log) + 1;
  let threshold = 1 << log;
  let nbBits = log + 1;
  let sym = 0;
  while (remaining > 1 && sym <= maxSymbol) {
    const max = 2 * threshold - 1 - remaining;
    let count;
    const low = peek(nbBits - 1);
    if (low < max) {
      count = low;
      bit += nbBits - 1;
    } else {
      count = peek(nbBits);
      if (count >= threshold) count -= max;
      bit += nbBits;
    }
    count -= 1;
    remaining -= count < 0 ? -count : count;
    counts[sym++] = count;
    if (count === 0) {
      for (;;) {
        const rep = peek(2);
        bit += 2;
        sym += rep;
        if (rep !== 3) break;
      }
      if (sym > maxSymbol + 1) fail(what, 'FSE symbol out of range');
    }
    while (remaining < threshold) {
      nbBits--;
      threshold >>= 1;
    }
  }
  if (remaining !== 1) fail(what, 'FSE counts do not add up');
  if (sym > maxSymbol + 1) fail(what, 'FSE symbol out of range');
  const size = (bit + 7) >> 3;
  if (size > end - pos) fail(what, 'FSE table description truncated');
  return { counts, log, size };
}

/** @param {Int16Array | number[]} counts @param {number} log @param {string} what @returns {FseTable} */
function buildFse(counts, log, what) {
  const size = 1 << log;
  const symbol = new Uint8Array(size);
  const nbBits = new Uint8Array(size);
  const base = new Uint16Array(size);
  const next = new Uint32Array(counts.length);
  let high = size - 1;
  for (let s = 0; s < counts.length; s++) {
    if (counts[s] === -1) {
      symbol[high--] = s;
      next[s] = 1;
    } else next[s] = counts[s];
  }
  const step = (size >> 1) + (size >> 3) + 3;
  const mask = size - 1;
  let p = 0;
  for (let s = 0; s < counts.length; s++) {
    for (let i = 0; i < counts[s]; i++) {
      symbol[p] = s;
      do p = (p + step) & mask;
      while (p > high);
    }
  }
  if (p !== 0) fail(what, 'bad FSE distribution');
  for (let u = 0; u < size; u++) {
    const s = symbol[u];
    const ns = next[s]++;
    const nb = log - (31 - Math.clz32(ns));
    nbBits[u] = nb;
    base[u] = (ns << nb) - size;
  }
  return { log, symbol, nbBits, base };
}

/** @param {number} s @param {number} log @returns {FseTable} */
function rleFse(s, log = 0) {
  return { log, symbol: new Uint8Array([s]), nbBits: new Uint8Array(1), base: new Uint16Array(1) };
}

// --- Huffman -----------------------------------------------------------------------------

/** @typedef {{log: number, symbol: Uint8Array, nbBits: Uint8Array}} HufTable */

/**
 * Huffman tree description at buf[pos..end). Returns the table and the bytes used.
 * @param {Uint8Array} buf @param {number} pos @param {number} end @param {string} what
 * @returns {{table: HufTable, size: number}}
 */
function readHuffman(buf, pos, end, what) {
  if (pos >= end) fail(what, 'truncated Huffman header');
  const head = buf[pos];
  const weights = new Uint8Array(256);
  let n = 0;
  let size;
  if (head >= 128) {
    n = head - 127;
    size = 1 + ((n + 1) >> 1);
    if (size > end - pos) fail(what, 'truncated Huffman weights');
    for (let i = 0; i < n; i++) {
      const b = buf[pos + 1 + (i >> 1)];
      weights[i] = i & 1 ? b & 15 : b >> 4;
    }
  } else {
    size = 1 + head;
    if (size > end - pos) fail(what, 'truncated Huffman weights');
    const start = pos + 1;
    const stop = pos + 1 + head;
    const nc = readNCount(buf, start, stop, 255, 6, what);
    const fse = buildFse(nc.counts.subarray(0, 256), nc.log, what);
    const bits = new BackwardBits(buf, start + nc.size, stop, what);
    let s1 = bits.read(fse.log);
    let s2 = bits.read(fse.log);
    for (;;) {
      if (n > 253) fail(what, 'too many Huffman weights');
      weights[n++] = fse.symbol[s1];
      s1 = fse.base[s1] + bits.read(fse.nbBits[s1]);
      if (bits.pos < 0) {
        weights[n++] = fse.symbol[s2];
        break;
      }
      if (n > 253) fail(what, 'too many Huffman weights');
      weights[n++] = fse.symbol[s2];
      s2 = fse.base[s2] + bits.read(fse.nbBits[s2]);
      if (bits.pos < 0) {
        weights[n++] = fse.symbol[s1];
        break;
      }
    }
  }
  // weights of symbols 0..n-1; the last symbol's weight is implied.
  let total = 0;
  const rank = new Uint32Array(13);
  for (let i = 0; i < n; i++) {
    if (weights[i] > 12) fail(what, 'Huffman weight too large');
    rank[weights[i]]++;
    if (weights[i]) total += 1 << (weights[i] - 1);
  }
  if (total === 0) fail(what, 'Huffman weights all zero');
  const log = 32 - Math.clz32(total);
  if (log > 12) fail(what, 'Huffman table too deep');
  const rest = (1 << log) - total;
  const lastW = 32 - Math.clz32(rest);
  if (1 << (lastW - 1) !== rest) fail(what, 'Huffman weights do not complete a tree');
  weights[n] = lastW;
  rank[lastW]++;
  const nSym = n + 1;
  if (rank[1] < 2 || rank[1] & 1) fail(what, 'bad Huffman weight distribution');
  const tsize = 1 << log;
  const symbol = new Uint8Array(tsize);
  const nbBits = new Uint8Array(tsize);
  const start = new Uint32Array(14);
  let acc = 0;
  for (let w = 1; w <= log; w++) {
    start[w] = acc;
    acc += rank[w] << (w - 1);
  }
  for (let s = 0; s < nSym; s++) {
    const w = weights[s];
    if (!w) continue;
    const len = (1 << w) >> 1;
    const nb = log + 1 - w;
    for (let u = start[w]; u < start[w] + len; u++) {
      symbol[u] = s;
      nbBits[u] = nb;
    }
    start[w] += len;
  }
  return { table: { log, symbol, nbBits }, size };
}

/**
 * Decode one Huffman stream of exactly `count` symbols into out[o..o+count).
 * @param {HufTable} t @param {Uint8Array} buf @param {number} start @param {number} end
 * @param {Uint8Array} out @param {number} o @param {number} count @param {string} what
 * @param {number} [floor] >= 0: decode as libzstd's fast path (reads down to `floor`, no end check)
 */
function huffStream(t, buf, start, end, out, o, count, what, floor = -1) {
  const fast = floor >= 0;
  const bits = new BackwardBits(buf, start, end, what, fast ? floor : start, fast);
  for (let i = 0; i < count; i++) {
    const v = bits.peek(t.log);
    out[o + i] = t.symbol[v];
    bits.pos -= t.nbBits[v];
  }
  // libzstd checks exact consumption except on its fast 4-stream path (which it takes on
  // 64-bit CPUs with BMI2); the differential fuzz found the difference.
  if (!fast && bits.pos !== 0) fail(what, 'Huffman stream not consumed exactly');
}

// --- sequences ---------------------------------------------------------------------------

const LL_BASE = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 28, 32, 40, 48, 64, 128,
  256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
const LL_BITS = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11, 12,
  13, 14, 15, 16];
const ML_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
  30, 31, 32, 33, 34, 35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515, 1027, 2051, 4099, 8195, 16387,
  32771, 65539];
const ML_BITS = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
  1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const LL_DEFAULT = [4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1,
  -1, -1, -1, -1];
const ML_DEFAULT = [1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1];
const OF_DEFAULT = [1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1];

/** @type {FseTable | null} */ let llDefault = null;
/** @type {FseTable | null} */ let mlDefault = null;
/** @type {FseTable | null} */ let ofDefault = null;

// --- XXH64 (content checksum; not hot) ----------------------------------------------------

const P1 = 11400714785074694791n;
const P2 = 14029467366897019727n;
const P3 = 1609587929392839161n;
const P4 = 9650029242287828579n;
const P5 = 2870177450012600261n;
const M64 = (1n << 64n) - 1n;
/** @param {bigint} x @param {bigint} r */
const rotl = (x, r) => ((x << r) | (x >> (64n - r))) & M64;
/** @param {bigint} acc @param {bigint} lane */
const round64 = (acc, lane) => (rotl((acc + lane * P2) & M64, 31n) * P1) & M64;
/** @param {bigint} acc @param {bigint} v */
const merge64 = (acc, v) => (((acc ^ round64(0n, v)) * P1 + P4) & M64);

/** XXH64 with seed 0. @param {Uint8Array} data @returns {bigint} */
export function xxh64(data) {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = data.length;
  let p = 0;
  let h;
  if (n >= 32) {
    let v1 = (P1 + P2) & M64;
    let v2 = P2;
    let v3 = 0n;
    let v4 = (0n - P1) & M64;
    while (p + 32 <= n) {
      v1 = round64(v1, dv.getBigUint64(p, true));
      v2 = round64(v2, dv.getBigUint64(p + 8, true));
      v3 = round64(v3, dv.getBigUint64(p + 16, true));
      v4 = round64(v4, dv.getBigUint64(p + 24, true));
      p += 32;
    }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & M64;
    h = merge64(h, v1);
    h = merge64(h, v2);
    h = merge64(h, v3);
    h = merge64(h, v4);
  } else {
    h = P5;
  }
  h = (h + BigInt(n)) & M64;
  while (p + 8 <= n) {
    h = (rotl(h ^ round64(0n, dv.getBigUint64(p, true)), 27n) * P1 + P4) & M64;
    p += 8;
  }
  if (p + 4 <= n) {
    h = (rotl(h ^ ((BigInt(dv.getUint32(p, true)) * P1) & M64), 23n) * P2 + P3) & M64;
    p += 4;
  }
  while (p < n) {
    h = (rotl(h ^ ((BigInt(data[p]) * P5) & M64), 11n) * P1) & M64;
    p++;
  }
  h ^= h >> 33n;
  h = (h * P2) & M64;
  h ^= h >> 29n;
  h = (h * P3) & M64;
  h ^= h >> 32n;
  return h;
}

// --- frame -------------------------------------------------------------------------------

/** Growable output with a hard cap. */
class Output {
  /** @param {number} limit @param {number} hint @param {string} what */
  constructor(limit, hint, what) {
    this.limit = limit;
    this.what = what;
    this.buf = new Uint8Array(Math.max(64, Math.min(hint, limit)));
    this.n = 0;
  }

  /** @param {number} extra */
  reserve(extra) {
    const need = this.n + extra;
    if (need > this.limit) throw new RerfFormatError(`${this.what}: decompressed size exceeds ${this.limit} bytes`);
    if (need > this.buf.length) {
      const b = new Uint8Array(Math.min(this.limit, Math.max(need, this.buf.length * 2)));
      b.set(this.buf.subarray(0, this.n));
      this.buf = b;
    }
  }
}

/**
 * Frame header fields (RFC 8878 §3.1.1.1).
 * @param {Uint8Array} src @param {string} what
 * @returns {{contentSize: number, windowSize: number, checksum: boolean, pos: number}}
 */
export function zstdFrameHeader(src, what) {
  if (src.length < 5) fail(what, 'frame header truncated');
  const magic = (src[0] | (src[1] << 8) | (src[2] << 16) | (src[3] << 24)) >>> 0;
  if (magic !== MAGIC) fail(what, 'unknown frame magic');
  const fhd = src[4];
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const checksum = ((fhd >> 2) & 1) === 1;
  const dictFlag = fhd & 3;
  const fcsSize = fcsFlag === 0 ? single : [1, 2, 4, 8][fcsFlag];
  const dictSize = [0, 1, 2, 4][dictFlag];
  const hsize = 5 + (single ? 0 : 1) + dictSize + fcsSize;
  if (src.length < hsize) fail(what, 'frame header truncated');
  if (fhd & 8) fail(what, 'reserved frame header bit set');
  let pos = 5;
  let windowSize = 0;
  if (!single) {
    const wd = src[pos++];
    const wlog = 10 + (wd >> 3);
    if (wlog > 31) fail(what, 'window too large');
    const base = 2 ** wlog;
    windowSize = base + (base / 8) * (wd & 7);
  }
  let dictId = 0;
  for (let i = 0; i < dictSize; i++) dictId += src[pos + i] * 2 ** (8 * i);
  pos += dictSize;
  let contentSize = -1;
  if (fcsSize) {
    contentSize = 0;
    for (let i = 0; i < fcsSize; i++) contentSize += src[pos + i] * 2 ** (8 * i);
    if (fcsSize === 2) contentSize += 256;
    pos += fcsSize;
  }
  if (single) windowSize = contentSize;
  if (dictId !== 0) fail(what, 'frame needs a dictionary');
  return { contentSize, windowSize, checksum, pos };
}

/**
 * Decompress exactly one zstd frame filling `src`, at most `limit` bytes of output
 * (FORMAT.md §1). Throws RerfFormatError on any corruption, trailing byte or excess size.
 * @param {Uint8Array} src @param {number} limit @param {string} what
 * @returns {Uint8Array}
 */
export function zstdDecompress(src, limit, what) {
  const fh = zstdFrameHeader(src, what);
  if (fh.contentSize > limit) {
    throw new RerfFormatError(`${what}: declared size ${fh.contentSize} exceeds the limit ${limit} bytes`);
  }
  if (fh.windowSize > WINDOW_MAX) fail(what, 'window too large');
  const blockMax = Math.min(BLOCK_MAX, Math.max(fh.windowSize, 0));
  const out = new Output(limit, fh.contentSize >= 0 ? fh.contentSize : src.length * 4, what);
  let pos = fh.pos;
  const rep = [1, 4, 8];
  /** @type {HufTable | null} */ let huf = null;
  /** @type {(FseTable | null)[]} */ const prevFse = [null, null, null];
  let lit = new Uint8Array(BLOCK_MAX);
  for (;;) {
    if (pos + 3 > src.length) fail(what, 'incomplete frame');
    const bh = src[pos] | (src[pos + 1] << 8) | (src[pos + 2] << 16);
    pos += 3;
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) fail(what, 'reserved block type');
    if (size > blockMax) fail(what, 'block too large');
    if (type === 0) {
      if (pos + size > src.length) fail(what, 'incomplete frame');
      out.reserve(size);
      out.buf.set(src.subarray(pos, pos + size), out.n);
      out.n += size;
      pos += size;
    } else if (type === 1) {
      if (pos + 1 > src.length) fail(what, 'incomplete frame');
      out.reserve(size);
      out.buf.fill(src[pos], out.n, out.n + size);
      out.n += size;
      pos += 1;
    } else {
      if (pos + size > src.length) fail(what, 'incomplete frame');
      const end = pos + size;
      const blockStart = out.n;
      // literals section
      let p = pos;
      const b0 = src[p];
      const ltype = b0 & 3;
      const sf = (b0 >> 2) & 3;
      let litSize;
      if (ltype <= 1) {
        if (sf === 0 || sf === 2) {
          litSize = b0 >> 3;
          p += 1;
        } else if (sf === 1) {
          if (p + 2 > end) fail(what, 'truncated literals header');
          litSize = (b0 >> 4) + (src[p + 1] << 4);
          p += 2;
        } else {
          if (p + 3 > end) fail(what, 'truncated literals header');
          litSize = (b0 >> 4) + (src[p + 1] << 4) + (src[p + 2] << 12);
          p += 3;
        }
        if (litSize > blockMax) fail(what, 'literals too large');
        if (ltype === 0) {
          if (p + litSize > end) fail(what, 'truncated literals');
          lit.set(src.subarray(p, p + litSize), 0);
          p += litSize;
        } else {
          if (p + 1 > end) fail(what, 'truncated literals');
          lit.fill(src[p], 0, litSize);
          p += 1;
        }
      } else {
        const hsz = sf <= 1 ? 3 : sf === 2 ? 4 : 5;
        const bits = sf <= 1 ? 10 : sf === 2 ? 14 : 18;
        if (p + hsz > end) fail(what, 'truncated literals header');
        let h = 0;
        for (let i = hsz - 1; i >= 0; i--) h = h * 256 + src[p + i];
        const mask = 2 ** bits;
        litSize = Math.floor(h / 16) % mask;
        const compSize = Math.floor(h / 16 / mask) % mask;
        p += hsz;
        const streams = sf === 0 ? 1 : 4;
        if (litSize > blockMax) fail(what, 'literals too large');
        if (streams === 4 && litSize < 6) fail(what, 'literals too short for 4 streams');
        if (p + compSize > end) fail(what, 'truncated literals');
        const cend = p + compSize;
        let q = p;
        if (ltype === 2) {
          const r = readHuffman(src, q, cend, what);
          huf = r.table;
          q += r.size;
        } else if (!huf) fail(what, 'treeless literals without a previous table');
        const table = /** @type {HufTable} */ (huf);
        if (streams === 1) {
          huffStream(table, src, q, cend, lit, 0, litSize, what);
        } else {
          if (cend - q < 10) fail(what, 'truncated jump table');
          const s1 = src[q] | (src[q + 1] << 8);
          const s2 = src[q + 2] | (src[q + 3] << 8);
          const s3 = src[q + 4] | (src[q + 5] << 8);
          q += 6;
          if (q + s1 + s2 + s3 > cend) fail(what, 'bad jump table');
          const seg = (litSize + 3) >> 2;
          let o = 0;
          const bounds = [q, q + s1, q + s1 + s2, q + s1 + s2 + s3, cend];
          // libzstd's fast path (HUF_DecompressFastArgs_init): table log <= 11, every stream
          // >= 8 bytes, and a non-empty last segment; its streams may read down to the jump table.
          const fast = table.log <= 11 && s1 >= 8 && s2 >= 8 && s3 >= 8 && cend - bounds[3] >= 8 && 3 * seg < litSize;
          for (let k = 0; k < 4; k++) {
            const cnt = k < 3 ? seg : litSize - 3 * seg;
            if (cnt < 0) fail(what, 'bad literal split');
            huffStream(table, src, bounds[k], bounds[k + 1], lit, o, cnt, what, fast ? q - 6 : -1);
            o += cnt;
          }
        }
        p = cend;
      }
      // sequences section
      if (p >= end) fail(what, 'truncated sequences header');
      let nbSeq = src[p++];
      if (nbSeq >= 128) {
        if (nbSeq === 255) {
          if (p + 2 > end) fail(what, 'truncated sequences header');
          nbSeq = src[p] + (src[p + 1] << 8) + 0x7f00;
          p += 2;
        } else {
          if (p + 1 > end) fail(what, 'truncated sequences header');
          nbSeq = ((nbSeq - 128) << 8) + src[p];
          p += 1;
        }
      }
      let litPos = 0;
      if (nbSeq === 0) {
        if (p !== end) fail(what, 'bytes after an empty sequences section');
      } else {
        if (p >= end) fail(what, 'truncated sequences header');
        const modes = src[p++];
        if (modes & 3) fail(what, 'reserved sequence mode bits');
        /** @type {FseTable[]} */
        const tabs = [];
        const kinds = [
          { mode: modes >> 6, max: 35, log: 9, dflt: () => (llDefault ??= buildFse(LL_DEFAULT, 6, what)) },
          { mode: (modes >> 4) & 3, max: 31, log: 8, dflt: () => (ofDefault ??= buildFse(OF_DEFAULT, 5, what)) },
          { mode: (modes >> 2) & 3, max: 52, log: 9, dflt: () => (mlDefault ??= buildFse(ML_DEFAULT, 6, what)) },
        ];
        for (let k = 0; k < 3; k++) {
          const { mode, max, log, dflt } = kinds[k];
          let t;
          if (mode === 0) t = dflt();
          else if (mode === 1) {
            if (p >= end) fail(what, 'truncated RLE symbol');
            const s = src[p++];
            if (s > max) fail(what, 'RLE symbol out of range');
            t = rleFse(s);
          } else if (mode === 2) {
            const nc = readNCount(src, p, end, max, log, what);
            t = buildFse(nc.counts, nc.log, what);
            p += nc.size;
          } else {
            const prev = prevFse[k];
            if (!prev) fail(what, 'repeat table without a previous one');
            t = prev;
          }
          tabs.push(t);
          prevFse[k] = t;
        }
        const [llT, ofT, mlT] = tabs;
        const bits = new BackwardBits(src, p, end, what);
        let llS = bits.read(llT.log);
        let ofS = bits.read(ofT.log);
        let mlS = bits.read(mlT.log);
        for (let i = 0; i < nbSeq; i++) {
          const llCode = llT.symbol[llS];
          const ofCode = ofT.symbol[ofS];
          const mlCode = mlT.symbol[mlS];
          if (ofCode > 31) fail(what, 'offset code out of range');
          let offVal = 2 ** ofCode + bits.read(ofCode);
          const ml = ML_BASE[mlCode] + bits.read(ML_BITS[mlCode]);
          const ll = LL_BASE[llCode] + bits.read(LL_BITS[llCode]);
          let offset;
          if (offVal > 3) {
            offset = offVal - 3;
            rep[2] = rep[1];
            rep[1] = rep[0];
            rep[0] = offset;
          } else {
            if (ll === 0) offVal += 1;
            if (offVal === 1) offset = rep[0];
            else if (offVal === 2) {
              offset = rep[1];
              rep[1] = rep[0];
              rep[0] = offset;
            } else if (offVal === 3) {
              offset = rep[2];
              rep[2] = rep[1];
              rep[1] = rep[0];
              rep[0] = offset;
            } else {
              offset = rep[0] - 1;
              if (offset === 0) fail(what, 'zero offset');
              rep[2] = rep[1];
              rep[1] = rep[0];
              rep[0] = offset;
            }
          }
          if (i < nbSeq - 1) {
            llS = llT.base[llS] + bits.read(llT.nbBits[llS]);
            mlS = mlT.base[mlS] + bits.read(mlT.nbBits[mlS]);
            ofS = ofT.base[ofS] + bits.read(ofT.nbBits[ofS]);
          }
          if (litPos + ll > litSize) fail(what, 'literals overrun');
          if (out.n - blockStart + ll + ml > blockMax) fail(what, 'block output too large');
          out.reserve(ll + ml);
          const ob = out.buf;
          ob.set(lit.subarray(litPos, litPos + ll), out.n);
          out.n += ll;
          litPos += ll;
          if (offset > out.n) fail(what, 'offset beyond the start of the output');
          let from = out.n - offset;
          let to = out.n;
          for (let j = 0; j < ml; j++) ob[to++] = ob[from++];
          out.n = to;
        }
        if (bits.pos !== 0) fail(what, 'sequence bitstream not consumed exactly');
      }
      const restLit = litSize - litPos;
      if (out.n - blockStart + restLit > blockMax) fail(what, 'block output too large');
      out.reserve(restLit);
      out.buf.set(lit.subarray(litPos, litSize), out.n);
      out.n += restLit;
      pos = end;
    }
    if (last) break;
  }
  if (fh.checksum) {
    if (pos + 4 > src.length) fail(what, 'incomplete frame');
    const want = (src[pos] | (src[pos + 1] << 8) | (src[pos + 2] << 16) | (src[pos + 3] << 24)) >>> 0;
    const got = Number(xxh64(out.buf.subarray(0, out.n)) & 0xffffffffn);
    if (want !== got) fail(what, 'checksum mismatch');
    pos += 4;
  }
  if (fh.contentSize >= 0 && out.n !== fh.contentSize) fail(what, 'content size mismatch');
  if (pos !== src.length) throw new RerfFormatError(`${what}: trailing bytes after the zstd frame`);
  lit = new Uint8Array(0);
  return out.buf.subarray(0, out.n);
}
