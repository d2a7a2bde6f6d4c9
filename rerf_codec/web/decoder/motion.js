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
 * @param {Uint8Array} section @param {Int32Array} sb @param {Int32Array} prevCoarse (NSB*3)
 * @returns {{mv: Int32Array, coarse: Int32Array}}
 */
export function decodeMotion(section, sb, prevCoarse) {
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
  const counts = [used.length, sb.length];
  for (let t = 0; t < 2; t++) {
    if (counts[t] === 0 && tables[t].kind !== 'unused') {
      throw new RerfFormatError('motion section declares a table for an empty symbol list');
    }
  }
  const nu = used.length;
  const cls = new Int32Array(3 * (nu + sb.length));
  decodeClasses(dec, tables[0], 3 * nu, cls, 0, 1);
  decodeClasses(dec, tables[1], 3 * sb.length, cls, 3 * nu, 1);
  const m = new MantissaReader(mant);
  for (let i = 0; i < cls.length; i++) cls[i] = classToLevel(cls[i], m);
  m.finish();
  const coarse = prevCoarse.slice();
  for (let k = 0; k < nu; k++) {
    for (let a = 0; a < 3; a++) coarse[3 * used[k] + a] = prevCoarse[3 * used[k] + a] + cls[3 * k + a];
  }
  const mv = new Int32Array(3 * sb.length);
  let bad = false;
  for (let b = 0; b < sb.length; b++) {
    for (let a = 0; a < 3; a++) {
      const v = coarse[3 * sb[b] + a] + cls[3 * (nu + b) + a];
      if (v > MAX_MV || v < -MAX_MV) bad = true;
      mv[3 * b + a] = v;
    }
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

/**
 * Predict one block of one channel (§10.4) into `out` (512 lattice integers, 64x + 8y + z).
 * @param {Float32Array} plane previous frame's channel (X, Y, Z) values
 * @param {number} scale 2^e_c (value -> lattice, exact)
 * @param {[number, number, number]} grid (X, Y, Z)
 * @param {number} bx @param {number} by @param {number} bz block coordinates
 * @param {number} mx @param {number} my @param {number} mz vector in eighth voxels
 * @param {Float64Array} out
 */
export function predictBlock(plane, scale, grid, bx, by, bz, mx, my, mz, out) {
  const [X, Y, Z] = grid;
  const ix = mx >> 3;
  const iy = my >> 3;
  const iz = mz >> 3;
  const fx = mx & 7;
  const fy = my & 7;
  const fz = mz & 7;
  const x0 = 8 * bx + ix - 1;
  const y0 = 8 * by + iy - 1;
  const z0 = 8 * bz + iz - 1;
  for (let t = 0; t < 11; t++) {
    const cx = x0 + t;
    const cy = y0 + t;
    const cz = z0 + t;
    IX[t] = (cx < 0 ? 0 : cx >= X ? X - 1 : cx) * Y * Z;
    IY[t] = (cy < 0 ? 0 : cy >= Y ? Y - 1 : cy) * Z;
    IZ[t] = cz < 0 ? 0 : cz >= Z ? Z - 1 : cz;
  }
  if (fx === 0 && fy === 0 && fz === 0) {
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
  const tx = FILTER_TAPS[fx];
  const ty = FILTER_TAPS[fy];
  const tz = FILTER_TAPS[fz];
  for (let a = 0; a < 11; a++) {
    for (let b = 0; b < 11; b++) {
      const row = IX[a] + IY[b];
      const o = (a * 11 + b) * 11;
      for (let c = 0; c < 11; c++) REGION[o + c] = plane[row + IZ[c]] * scale;
    }
  }
  const z0t = tz[0];
  const z1t = tz[1];
  const z2t = tz[2];
  const z3t = tz[3];
  for (let ab = 0; ab < 121; ab++) {
    const i = ab * 11;
    const o = ab * 8;
    for (let z = 0; z < 8; z++) {
      PASS_Z[o + z] = z0t * REGION[i + z] + z1t * REGION[i + z + 1] + z2t * REGION[i + z + 2] + z3t * REGION[i + z + 3];
    }
  }
  const y0t = ty[0];
  const y1t = ty[1];
  const y2t = ty[2];
  const y3t = ty[3];
  for (let a = 0; a < 11; a++) {
    for (let y = 0; y < 8; y++) {
      const i = (a * 11 + y) * 8;
      const o = (a * 8 + y) * 8;
      for (let z = 0; z < 8; z++) {
        PASS_Y[o + z] = y0t * PASS_Z[i + z] + y1t * PASS_Z[i + 8 + z] + y2t * PASS_Z[i + 16 + z] + y3t * PASS_Z[i + 24 + z];
      }
    }
  }
  const x0t = tx[0];
  const x1t = tx[1];
  const x2t = tx[2];
  const x3t = tx[3];
  for (let x = 0; x < 8; x++) {
    for (let yz = 0; yz < 64; yz++) {
      const i = x * 64 + yz;
      const acc = x0t * PASS_Y[i] + x1t * PASS_Y[i + 64] + x2t * PASS_Y[i + 128] + x3t * PASS_Y[i + 192];
      out[i] = Math.floor((acc + 131072) * 3.814697265625e-6); // (acc + 2^17) * 2^-18
    }
  }
}
