// Motion vectors (FORMAT.md §10.3) and exact motion compensation (§10.4); mirrors
// rerf_codec/codec/motion.py.

import { RerfFormatError } from './errors.js';
import { readTables, decodeClasses, MantissaReader, classToLevel } from './coefficients.js';
import { RangeDecoder } from './range-decoder.js';

export const MV_FRAC_BITS = 3;
export const MAX_MV = 2 ** 14;
/** Interpolation taps per phase (§10.4, normative). */
export const FILTER_TAPS = [
  [0, 64, 0, 0],
  [-2, 58, 10, -2],
  [-4, 54, 16, -2],
  [-6, 46, 28, -4],
  [-4, 36, 36, -4],
  [-4, 28, 46, -6],
  [-2, 16, 54, -4],
  [-2, 10, 58, -2],
];

/**
 * Superblock of every occupied block (§10.3).
 * @param {Int32Array} coords (N, 3) block coordinates @param {[number, number, number]} blockShape
 * @returns {{sb: Int32Array, nsb: number}}
 */
export function superblocks(coords, blockShape) {
  const SX = Math.ceil(blockShape[0] / 2);
  const SY = Math.ceil(blockShape[1] / 2);
  const SZ = Math.ceil(blockShape[2] / 2);
  const n = coords.length / 3;
  const sb = new Int32Array(n);
  for (let b = 0; b < n; b++) {
    sb[b] = ((coords[3 * b] >> 1) * SY + (coords[3 * b + 1] >> 1)) * SZ + (coords[3 * b + 2] >> 1);
  }
  return { sb, nsb: SX * SY * SZ };
}

/**
 * Decode the motion section -> block vectors (N, 3) and the new coarse field (NSB, 3).
 * With block modes (§10.6) `sb` holds the superblocks of the inter and skip blocks only, and
 * `fine[b]` says which of them code a fine difference (inter); the others (skip) take their
 * superblock's coarse vector.
 * @param {Uint8Array} section @param {Int32Array} sb @param {Int32Array} prevCoarse (NSB*3)
 * @param {Uint8Array | null} [fine] null: every block (a frame without block modes)
 * @returns {{mv: Int32Array, coarse: Int32Array}}
 */
export function decodeMotion(section, sb, prevCoarse, fine = null) {
  if (section.length < 2) throw new RerfFormatError('motion section truncated');
  const nt = section[0] | (section[1] << 8);
  let pos = 2 + nt;
  if (pos + 4 > section.length) throw new RerfFormatError('motion section truncated');
  const tables = readTables(section.subarray(2, pos), 2, false);
  const dv = new DataView(section.buffer, section.byteOffset, section.byteLength);
  const nm = dv.getUint32(pos, true);
  pos += 4;
  if (pos + nm > section.length) throw new RerfFormatError('motion section truncated');
  const mant = section.subarray(pos, pos + nm);
  const dec = new RangeDecoder(section.subarray(pos + nm));
  const nsb = prevCoarse.length / 3;
  const isUsed = new Uint8Array(nsb);
  for (let i = 0; i < sb.length; i++) isUsed[sb[i]] = 1;
  const used = [];
  for (let s = 0; s < nsb; s++) if (isUsed[s]) used.push(s);
  let nFine = sb.length;
  if (fine) {
    nFine = 0;
    for (let b = 0; b < sb.length; b++) nFine += fine[b] ? 1 : 0;
  }
  const counts = [used.length, nFine];
  for (let t = 0; t < 2; t++) {
    if (counts[t] === 0 && tables[t].kind !== 'unused') {
      throw new RerfFormatError('motion section declares a table for an empty symbol list');
    }
  }
  const nu = used.length;
  const cls = new Int32Array(3 * (nu + nFine));
  decodeClasses(dec, tables[0], 3 * nu, cls, 0, 1);
  decodeClasses(dec, tables[1], 3 * nFine, cls, 3 * nu, 1);
  const m = new MantissaReader(mant);
  for (let i = 0; i < cls.length; i++) cls[i] = classToLevel(cls[i], m);
  m.finish();
  const coarse = prevCoarse.slice();
  for (let k = 0; k < nu; k++) {
    for (let a = 0; a < 3; a++) coarse[3 * used[k] + a] = prevCoarse[3 * used[k] + a] + cls[3 * k + a];
  }
  const mv = new Int32Array(3 * sb.length);
  let bad = false;
  for (let b = 0, j = 0; b < sb.length; b++) {
    const f = !fine || fine[b];
    for (let a = 0; a < 3; a++) {
      const v = coarse[3 * sb[b] + a] + (f ? cls[3 * (nu + j) + a] : 0);
      if (v > MAX_MV || v < -MAX_MV) bad = true;
      mv[3 * b + a] = v;
    }
    if (f) j++;
  }
  if (bad) throw new RerfFormatError("motion vector outside the format's range");
  for (let i = 0; i < coarse.length; i++) {
    if (coarse[i] > MAX_MV || coarse[i] < -MAX_MV) throw new RerfFormatError("coarse motion vector outside the format's range");
  }
  return { mv, coarse };
}

const REGION = new Float64Array(11 * 11 * 11);
const PASS_Z = new Float64Array(11 * 11 * 8);
const PASS_Y = new Float64Array(11 * 8 * 8);
const IX = new Int32Array(11);
const IY = new Int32Array(11);
const IZ = new Int32Array(11);

let FX = 0;
let FY = 0;
let FZ = 0;

/**
 * Set up the prediction of one block (§10.4): clamped sample coordinates and phases, shared
 * by every channel; then call {@link predictChannel} per channel.
 * @param {[number, number, number]} grid (X, Y, Z)
 * @param {number} bx @param {number} by @param {number} bz block coordinates
 * @param {number} mx @param {number} my @param {number} mz vector in eighth voxels
 */
export function prepareBlock(grid, bx, by, bz, mx, my, mz) {
  const [X, Y, Z] = grid;
  const x0 = 8 * bx + (mx >> 3) - 1;
  const y0 = 8 * by + (my >> 3) - 1;
  const z0 = 8 * bz + (mz >> 3) - 1;
  FX = mx & 7;
  FY = my & 7;
  FZ = mz & 7;
  for (let t = 0; t < 11; t++) {
    const cx = x0 + t;
    const cy = y0 + t;
    const cz = z0 + t;
    IX[t] = (cx < 0 ? 0 : cx >= X ? X - 1 : cx) * Y * Z;
    IY[t] = (cy < 0 ? 0 : cy >= Y ? Y - 1 : cy) * Z;
    IZ[t] = cz < 0 ? 0 : cz >= Z ? Z - 1 : cz;
  }
}

/**
 * Predict the block set up by {@link prepareBlock} for one channel into `out` (512 lattice
 * integers at 64x + 8y + z). An axis with phase 0 has taps (0, 64, 0, 0): its pass is a
 * multiplication by 64, still exact, so the single final rounding is unchanged.
 * @param {Float32Array} plane previous frame's channel (X, Y, Z) values
 * @param {number} scale 2^e_c (value -> lattice, exact)
 * @param {Float64Array} out
 */
export function predictChannel(plane, scale, out) {
  if (FX === 0 && FY === 0 && FZ === 0) {
    // integer vector: acc = 64^3 * P exactly, so the prediction is the sample itself
    for (let x = 0; x < 8; x++) {
      for (let y = 0; y < 8; y++) {
        const row = IX[x + 1] + IY[y + 1];
        const o = x * 64 + y * 8;
        for (let z = 0; z < 8; z++) out[o + z] = plane[row + IZ[z + 1]] * scale;
      }
    }
    return;
  }
  for (let a = 0; a < 11; a++) {
    for (let b = 0; b < 11; b++) {
      const row = IX[a] + IY[b];
      const o = (a * 11 + b) * 11;
      for (let c = 0; c < 11; c++) REGION[o + c] = plane[row + IZ[c]] * scale;
    }
  }
  if (FZ === 0) {
    for (let ab = 0; ab < 121; ab++) {
      const i = ab * 11 + 1;
      const o = ab * 8;
      for (let z = 0; z < 8; z++) PASS_Z[o + z] = 64 * REGION[i + z];
    }
  } else {
    const [t0, t1, t2, t3] = FILTER_TAPS[FZ];
    for (let ab = 0; ab < 121; ab++) {
      const i = ab * 11;
      const o = ab * 8;
      for (let z = 0; z < 8; z++) {
        PASS_Z[o + z] = t0 * REGION[i + z] + t1 * REGION[i + z + 1] + t2 * REGION[i + z + 2] + t3 * REGION[i + z + 3];
      }
    }
  }
  if (FY === 0) {
    for (let a = 0; a < 11; a++) {
      for (let y = 0; y < 8; y++) {
        const i = (a * 11 + y + 1) * 8;
        const o = (a * 8 + y) * 8;
        for (let z = 0; z < 8; z++) PASS_Y[o + z] = 64 * PASS_Z[i + z];
      }
    }
  } else {
    const [t0, t1, t2, t3] = FILTER_TAPS[FY];
    for (let a = 0; a < 11; a++) {
      for (let y = 0; y < 8; y++) {
        const i = (a * 11 + y) * 8;
        const o = (a * 8 + y) * 8;
        for (let z = 0; z < 8; z++) {
          PASS_Y[o + z] = t0 * PASS_Z[i + z] + t1 * PASS_Z[i + 8 + z] + t2 * PASS_Z[i + 16 + z] + t3 * PASS_Z[i + 24 + z];
        }
      }
    }
  }
  if (FX === 0) {
    for (let i = 0; i < 512; i++) out[i] = Math.floor((64 * PASS_Y[i + 64] + 131072) * 3.814697265625e-6);
  } else {
    const [t0, t1, t2, t3] = FILTER_TAPS[FX];
    for (let i = 0; i < 512; i++) {
      const acc = t0 * PASS_Y[i] + t1 * PASS_Y[i + 64] + t2 * PASS_Y[i + 128] + t3 * PASS_Y[i + 192];
      out[i] = Math.floor((acc + 131072) * 3.814697265625e-6); // (acc + 2^17) * 2^-18
    }
  }
}

/**
 * Predict one block of one channel (§10.4) into `out` (512 lattice integers, 64x + 8y + z).
 * @param {Float32Array} plane @param {number} scale @param {[number, number, number]} grid
 * @param {number} bx @param {number} by @param {number} bz @param {number} mx @param {number} my
 * @param {number} mz @param {Float64Array} out
 */
export function predictBlock(plane, scale, grid, bx, by, bz, mx, my, mz, out) {
  prepareBlock(grid, bx, by, bz, mx, my, mz);
  predictChannel(plane, scale, out);
}
