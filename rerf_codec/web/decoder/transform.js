// Exact integer inverse 8×8×8 DCT (FORMAT.md §9.7, transform id 1: B = 14, G = 3).
//
// The shifts are folded into the matrices (T · 2^-s is exact) and every partial sum is an
// integer multiple of 2^-s below 2^53, so binary64 arithmetic is exact and
// floor(sum + 1/2) is rs(z, s). Coefficients are zero above a block's last band, so the
// passes skip the rows that are known to be zero (the result is the same).

/** Integer DCT matrix T[k][n] (§9.7, normative values). */
export const INT_DCT = [
  [5793, 5793, 5793, 5793, 5793, 5793, 5793, 5793],
  [8035, 6811, 4551, 1598, -1598, -4551, -6811, -8035],
  [7568, 3135, -3135, -7568, -7568, -3135, 3135, 7568],
  [6811, -1598, -8035, -4551, 4551, 8035, 1598, -6811],
  [5793, -5793, -5793, 5793, 5793, -5793, -5793, 5793],
  [4551, -8035, 1598, 6811, -6811, -1598, 8035, -4551],
  [3135, -7568, 7568, -3135, -3135, 7568, -7568, 3135],
  [1598, -4551, 6811, -8035, 8035, -6811, 4551, -1598],
];
export const MAX_COEFF = 2 ** 29;
export const MAX_SAMPLE = 2 ** 24 - 1;

/** @param {number} s @returns {Float64Array} T[k][n] * 2^-s, flat [k*8 + n] */
function scaled(s) {
  const m = new Float64Array(64);
  for (let k = 0; k < 8; k++) for (let n = 0; n < 8; n++) m[k * 8 + n] = INT_DCT[k][n] * 2 ** -s;
  return m;
}
const PW = scaled(11);
const PV = scaled(14);
const PU = scaled(17);

const R1 = new Float64Array(512);
const R2 = new Float64Array(512);
const [w0, w1, w2, w3, w4, w5, w6, w7] = [0, 1, 2, 3, 4, 5, 6, 7].map((k) => PW.slice(k * 8, k * 8 + 8));
const [v0, v1, v2, v3, v4, v5, v6, v7] = [0, 1, 2, 3, 4, 5, 6, 7].map((k) => PV.slice(k * 8, k * 8 + 8));

const ACTIVE = new Int32Array(8);

/**
 * Inverse transform of one block: `Y` holds the dequantised coefficients Y[u][v][w] at
 * f = 64u + 8v + w and must be zero outside bands 0..last; writes V[x][y][z] (clamped to
 * ±(2^24 - 1)) to `out` at 64x + 8y + z. Rows that are all zero stay zero through a pass
 * (rs(0) = 0), so they are skipped: the result is the full transform's.
 * @param {Float64Array} Y @param {number} last 0..21 @param {Float64Array} out
 */
export function inverseDct(Y, last, out) {
  const umax = last < 7 ? last : 7;
  let nActive = 0;
  // pass 1 along w, then pass 2 along v, one u-slab at a time
  for (let u = 0; u <= umax; u++) {
    let slab = false;
    for (let v = 0; v < 8; v++) {
      const row = u * 64 + v * 8;
      const y0 = Y[row], y1 = Y[row + 1], y2 = Y[row + 2], y3 = Y[row + 3];
      const y4 = Y[row + 4], y5 = Y[row + 5], y6 = Y[row + 6], y7 = Y[row + 7];
      if (u + v > last || (y0 === 0 && y1 === 0 && y2 === 0 && y3 === 0 && y4 === 0 && y5 === 0 && y6 === 0 && y7 === 0)) {
        R1.fill(0, row, row + 8);
        continue;
      }
      slab = true;
      for (let z = 0; z < 8; z++) {
        const s = y0 * w0[z] + y1 * w1[z] + y2 * w2[z] + y3 * w3[z] + y4 * w4[z] + y5 * w5[z] + y6 * w6[z] + y7 * w7[z];
        R1[row + z] = Math.floor(s + 0.5);
      }
    }
    if (!slab) continue; // R2[u] is zero
    ACTIVE[nActive++] = u;
    const b = u * 64;
    for (let z = 0; z < 8; z++) {
      const r0 = R1[b + z], r1 = R1[b + 8 + z], r2 = R1[b + 16 + z], r3 = R1[b + 24 + z];
      const r4 = R1[b + 32 + z], r5 = R1[b + 40 + z], r6 = R1[b + 48 + z], r7 = R1[b + 56 + z];
      for (let y = 0; y < 8; y++) {
        const s = r0 * v0[y] + r1 * v1[y] + r2 * v2[y] + r3 * v3[y] + r4 * v4[y] + r5 * v5[y] + r6 * v6[y] + r7 * v7[y];
        R2[b + y * 8 + z] = Math.floor(s + 0.5);
      }
    }
  }
  if (nActive === 0) {
    out.fill(0);
    return;
  }
  // pass 3 along u over the non-zero slabs
  for (let yz = 0; yz < 64; yz++) {
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (let j = 0; j < nActive; j++) {
      const k = ACTIVE[j];
      const r = R2[k * 64 + yz];
      const p = k * 8;
      a0 += r * PU[p]; a1 += r * PU[p + 1]; a2 += r * PU[p + 2]; a3 += r * PU[p + 3];
      a4 += r * PU[p + 4]; a5 += r * PU[p + 5]; a6 += r * PU[p + 6]; a7 += r * PU[p + 7];
    }
    out[yz] = clampRound(a0);
    out[64 + yz] = clampRound(a1);
    out[128 + yz] = clampRound(a2);
    out[192 + yz] = clampRound(a3);
    out[256 + yz] = clampRound(a4);
    out[320 + yz] = clampRound(a5);
    out[384 + yz] = clampRound(a6);
    out[448 + yz] = clampRound(a7);
  }
}

/** @param {number} s */
function clampRound(s) {
  const v = Math.floor(s + 0.5);
  return v > MAX_SAMPLE ? MAX_SAMPLE : v < -MAX_SAMPLE ? -MAX_SAMPLE : v;
}
