// Range decoder of coder id 1 (FORMAT.md §9.1): constriction 0.5's queue RangeDecoder
// (u32 words, u64 state, 24-bit model precision) and the Categorical(perfect=False) models.
//
// State. The decoder only ever uses `point - lower`, so it keeps that difference `d`
// (mod 2^64) instead of both; `lower += scale*cdf[s]` becomes `d -= scale*cdf[s]` and a
// renormalisation shifts `d` and `range` left by 32 bits (pulling in the next word). Once
// the first symbol passed the `q < 2^24` check, `d < range` holds for good. `d` and `range`
// are 64-bit and held as two 32-bit halves in doubles (exact integers); products
// `scale * c` (scale < 2^40, c <= 2^24) are split so that every double operation is exact.
// No BigInt in the hot path; the rare quotient that lands within 2^-26 of an integer is
// recomputed exactly with BigInt.

import { RerfFormatError } from './errors.js';

const TWO32 = 4294967296;
const TWO24 = 16777216;

/**
 * Cumulative table of `Categorical(p, perfect=False)` for binary64 probabilities `p`
 * (FORMAT.md §9.1): every operation is one IEEE-754 binary64 operation, as specified.
 * @param {ArrayLike<number>} p @returns {Uint32Array} cdf[0..n]
 */
export function categoricalCdf(p) {
  const n = p.length;
  let norm = 0;
  for (let i = 0; i < n; i++) norm += p[i];
  const scale = (TWO24 - n) / norm;
  const cdf = new Uint32Array(n + 1);
  let cum = 0;
  for (let i = 0; i < n; i++) {
    cdf[i] = Math.trunc(cum * scale) + i;
    cum += p[i];
  }
  cdf[n] = TWO24;
  return cdf;
}

/** Count-table model (§9.1): p[i] = counts[i] / S, one correctly rounded division each. */
/** @param {ArrayLike<number>} counts @returns {Uint32Array} */
export function countsCdf(counts) {
  let S = 0;
  for (let i = 0; i < counts.length; i++) S += counts[i];
  const p = new Float64Array(counts.length);
  for (let i = 0; i < counts.length; i++) p[i] = counts[i] / S;
  return categoricalCdf(p);
}

/** The first cdf entry of bits(p1), p1 in 1..255 (§9.1: exact). @param {number} p1 */
export function bitsThreshold(p1) {
  return Math.floor(((256 - p1) * (TWO24 - 2)) / 256) + 1;
}

/** Decodes symbols from one range-coded section (a sequence of u32 LE words). */
export class RangeDecoder {
  /** @param {Uint8Array} section length a multiple of 4 */
  constructor(section) {
    if (section.length % 4) {
      throw new RerfFormatError(`range-coded section has ${section.length} bytes, not a multiple of 4`);
    }
    this.words = new DataView(section.buffer, section.byteOffset, section.byteLength);
    this.nWords = section.length / 4;
    this.cursor = 0;
    // d = point - lower, initially point (lower = 0); range = 2^64 - 1.
    this.dHi = this.nWords > 0 ? this.words.getUint32(0, true) : 0;
    this.dLo = this.nWords > 1 ? this.words.getUint32(4, true) : 0;
    this.cursor = Math.min(2, this.nWords);
    this.rHi = TWO32 - 1;
    this.rLo = TWO32 - 1;
  }

  /** Next word or 0 when none remain. */
  nextWord() {
    if (this.cursor < this.nWords) return this.words.getUint32(4 * this.cursor++, true);
    return 0;
  }

  /**
   * Quantile q = d div scale, with the `q < 2^24` check (step 3 of §9.1).
   * @param {number} scale @returns {number}
   */
  quantile(scale) {
    // q >= 2^24  <=>  d >= scale * 2^24 = range with its low 24 bits cleared
    const mLo = this.rLo - (this.rLo % TWO24);
    if (this.dHi > this.rHi || (this.dHi === this.rHi && this.dLo >= mLo)) {
      throw new RerfFormatError('range decoder failed: invalid compressed data');
    }
    const c = (this.dHi * TWO32 + this.dLo) / scale;
    const q = Math.floor(c);
    const fr = c - q; // exact; the true quotient is within 2^-28 of c
    if (fr > 1.5e-8 && fr < 0.9999999) return q;
    const d = (BigInt(this.dHi) << 32n) | BigInt(this.dLo);
    return Number(d / BigInt(scale));
  }

  /**
   * Apply symbol interval [lo, lo + freq) of the current step: d -= scale*lo, range = scale*freq,
   * then renormalise.
   * @param {number} scale @param {number} lo @param {number} freq
   */
  update(scale, lo, freq) {
    // scale = sH * 2^24 + sL (sH < 2^16, sL < 2^24); products below 2^48 are exact.
    const sH = Math.floor(scale / TWO24);
    const sL = scale - sH * TWO24;
    // subtract scale*lo from d
    if (lo !== 0) {
      const t = sL * lo; // < 2^48
      const u = sH * lo; // < 2^40, weight 2^24
      const tHi = Math.floor(t / TWO32);
      const uHi = Math.floor(u / 256);
      let pLo = t - tHi * TWO32 + (u - uHi * 256) * TWO24;
      let pHi = tHi + uHi;
      if (pLo >= TWO32) {
        pLo -= TWO32;
        pHi += 1;
      }
      let dLo = this.dLo - pLo;
      let dHi = this.dHi - pHi;
      if (dLo < 0) {
        dLo += TWO32;
        dHi -= 1;
      }
      this.dLo = dLo;
      this.dHi = dHi;
    }
    // range = scale*freq
    const t = sL * freq;
    const u = sH * freq;
    const tHi = Math.floor(t / TWO32);
    const uHi = Math.floor(u / 256);
    let rLo = t - tHi * TWO32 + (u - uHi * 256) * TWO24;
    let rHi = tHi + uHi;
    if (rLo >= TWO32) {
      rLo -= TWO32;
      rHi += 1;
    }
    if (rHi === 0) {
      // range < 2^32: shift in one word (d < range < 2^32, so d's high half is 0)
      this.rHi = rLo;
      this.rLo = 0;
      this.dHi = this.dLo;
      this.dLo = this.nextWord();
    } else {
      this.rHi = rHi;
      this.rLo = rLo;
    }
  }

  /** One symbol with cumulative table `cdf` (n + 1 entries). @param {Uint32Array} cdf @returns {number} */
  decode(cdf) {
    const scale = this.rHi * 256 + Math.floor(this.rLo / TWO24);
    const q = this.quantile(scale);
    // largest s with cdf[s] <= q (binary search; cdf[0] = 0 <= q < 2^24 = cdf[n])
    let lo = 0;
    let hi = cdf.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] <= q) lo = mid;
      else hi = mid;
    }
    this.update(scale, cdf[lo], cdf[lo + 1] - cdf[lo]);
    return lo;
  }

  /**
   * `decode` with a lookup table from quantile >> 12 to the first candidate symbol.
   * @param {Uint32Array} cdf @param {Uint8Array} lut @returns {number}
   */
  decodeLut(cdf, lut) {
    const scale = this.rHi * 256 + Math.floor(this.rLo / TWO24);
    const q = this.quantile(scale);
    let s = lut[q >>> 12];
    while (cdf[s + 1] <= q) s++;
    this.update(scale, cdf[s], cdf[s + 1] - cdf[s]);
    return s;
  }

  /** One symbol of bits(p1) given its threshold `bitsThreshold(p1)`. @param {number} th @returns {number} */
  decodeBit(th) {
    const scale = this.rHi * 256 + Math.floor(this.rLo / TWO24);
    const q = this.quantile(scale);
    if (q < th) {
      this.update(scale, 0, th);
      return 0;
    }
    this.update(scale, th, TWO24 - th);
    return 1;
  }

  /** One symbol of uniform(256) (cdf[i] = i * 2^16). @returns {number} */
  decodeUniform256() {
    const scale = this.rHi * 256 + Math.floor(this.rLo / TWO24);
    const q = this.quantile(scale);
    const s = Math.floor(q / 65536);
    this.update(scale, s * 65536, 65536);
    return s;
  }
}
