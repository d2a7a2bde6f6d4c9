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

/**
 * Inverse transform of one block: `Y` holds the dequantised coefficients Y[u][v][w] at
 * f = 64u + 8v + w, zero (or unread) outside bands 0..last; writes V[x][y][z] (clamped to
 * ±(2^24 - 1)) to `out` at 64x + 8y + z.
 * @param {Float64Array} Y @param {number} last 0..21 @param {Float64Array} out
 */
export function inverseDct(Y, last, out) {
  const umax = last < 7 ? last : 7;
  // pass 1 along w
  for (let u = 0; u <= umax; u++) {
    const vmax = last - u < 7 ? last - u : 7;
    for (let v = 0; v <= vmax; v++) {
      const kmax = last - u - v < 7 ? last - u - v : 7;
      const row = u * 64 + v * 8;
      for (let z = 0; z < 8; z++) {
        let s = 0;
        for (let k = 0; k <= kmax; k++) s += Y[row + k] * PW[k * 8 + z];
        R1[row + z] = Math.floor(s + 0.5);
      }
    }
  }
  // pass 2 along v
  for (let u = 0; u <= umax; u++) {
    const vmax = last - u < 7 ? last - u : 7;
    const base = u * 64;
    for (let y = 0; y < 8; y++) {
      for (let z = 0; z < 8; z++) {
        let s = 0;
        for (let k = 0; k <= vmax; k++) s += R1[base + k * 8 + z] * PV[k * 8 + y];
        R2[base + y * 8 + z] = Math.floor(s + 0.5);
      }
    }
  }
  // pass 3 along u
  for (let x = 0; x < 8; x++) {
    for (let yz = 0; yz < 64; yz++) {
      let s = 0;
      for (let k = 0; k <= umax; k++) s += R2[k * 64 + yz] * PU[k * 8 + x];
      let v = Math.floor(s + 0.5);
      if (v > MAX_SAMPLE) v = MAX_SAMPLE;
      else if (v < -MAX_SAMPLE) v = -MAX_SAMPLE;
      out[x * 64 + yz] = v;
    }
  }
}
