// CPU side of the renderer: one decoded frame (dense grids) → free-space cache + bricks for the GPU.
//
// Mirrors rerf_codec/field/render.py: a voxel is "occupied" when its one-step alpha
// 1 - exp(-softplus(d + shift) * step_ratio) exceeds ALPHA_THRESHOLD, dilated by one voxel
// (a sample's trilinear lookup reaches its 8 neighbours); a sample is kept only when its
// *nearest* voxel (round-half-even, as torch.round) is occupied. Only the 8³ blocks that a
// kept sample can interpolate in are uploaded, each as a 9³ brick (its 8³ voxels plus the
// next voxel on each axis, clamped at the grid border = grid_sample's border padding), so
// hardware trilinear filtering inside a brick equals the grid's.

/** Samples per voxel length default and thresholds: field/render.py's constants. */
export const STEP_RATIO = 0.5;
export const ALPHA_THRESHOLD = 1e-4;
export const WEIGHT_THRESHOLD = 1e-4;
export const BLOCK = 8;
export const BRICK = BLOCK + 1;

/**
 * @typedef {object} GridInfo
 * @property {[number, number, number]} shape grid shape (X, Y, Z); arrays are C order, x slowest
 * @property {number} channels feature channels C
 * @property {number} densityShift the sequence's density shift
 * @property {number} stepRatio the stream's render step ratio
 */

/**
 * @typedef {object} PreparedFrame
 * @property {Uint8Array} occupancy X*Y*Z, 1 where a sample is kept (dilated free-space cache)
 * @property {Uint8Array} blockOccupied BX*BY*BZ, 1 where the 8³ block of occupancy holds any set voxel
 * @property {Uint16Array} brickOf BX*BY*BZ, brick number + 1 in the atlas (0: no brick)
 * @property {number} numBricks bricks used
 * @property {Uint16Array[]} brickData one RGBA atlas image per texture (density, features 0-2 | 3-6 | ...), as
 *   IEEE half floats: the atlas textures are RGBA16F, so converting here (in the worker) halves what is
 *   buffered and uploaded and spares the driver a float32 → float16 pass on the page's thread
 * @property {{bricksPerRow: number, width: number, height: number, depth: number}} atlas atlas image size
 * @property {number} occupiedVoxels voxels set in ``occupancy``
 */

/**
 * log(1 + exp(x)) with torch's threshold (x > 20 → x).
 * @param {number} x
 */
export function softplus(x) {
  if (x > 20) return x;
  return Math.log1p(Math.exp(x));
}

/**
 * Density value above which a voxel is occupied: solves 1 - exp(-softplus(d + shift)·r) > thr for d.
 * @param {number} shift
 * @param {number} stepRatio
 */
export function densityThreshold(shift, stepRatio) {
  const tau = -Math.log1p(-ALPHA_THRESHOLD) / stepRatio; // softplus(d + shift) > tau
  return Math.log(Math.expm1(tau)) - shift; // softplus⁻¹(tau) - shift
}

/**
 * Free-space cache and bricks of one frame.
 * @param {Float32Array} density X*Y*Z
 * @param {Float32Array} features C*X*Y*Z
 * @param {GridInfo} info
 * @returns {PreparedFrame}
 */
export function prepareFrame(density, features, info) {
  const [X, Y, Z] = info.shape;
  const C = info.channels;
  const n = X * Y * Z;
  if (density.length !== n || features.length !== C * n) {
    throw new Error(`frame arrays have ${density.length}/${features.length} values, expected ${n}/${C * n}`);
  }
  // Threshold in float64 on the density value: the same decision as the alpha test except
  // at values within rounding of the threshold, where the sample weighs ~1e-4 anyway.
  const dThr = densityThreshold(info.densityShift, info.stepRatio);
  const raw = new Uint8Array(n);
  for (let i = 0; i < n; i++) raw[i] = density[i] > dThr ? 1 : 0;
  const occupancy = dilate(raw, X, Y, Z);
  let occupiedVoxels = 0;
  for (let i = 0; i < n; i++) occupiedVoxels += occupancy[i];

  const BX = Math.ceil(X / BLOCK), BY = Math.ceil(Y / BLOCK), BZ = Math.ceil(Z / BLOCK);
  const blockOccupied = new Uint8Array(BX * BY * BZ);
  const brickOf = new Uint16Array(BX * BY * BZ);
  // Occupancy blocks (for skipping) and data bricks (any set voxel in [8b, 8b+8] per axis).
  const need = new Uint8Array(BX * BY * BZ);
  for (let x = 0; x < X; x++) {
    const bx = (x / BLOCK) | 0, bx0 = x % BLOCK === 0 && bx > 0 ? bx - 1 : -1;
    for (let y = 0; y < Y; y++) {
      const by = (y / BLOCK) | 0, by0 = y % BLOCK === 0 && by > 0 ? by - 1 : -1;
      const row = (x * Y + y) * Z;
      for (let z = 0; z < Z; z++) {
        if (!occupancy[row + z]) continue;
        const bz = (z / BLOCK) | 0, bz0 = z % BLOCK === 0 && bz > 0 ? bz - 1 : -1;
        blockOccupied[(bx * BY + by) * BZ + bz] = 1;
        // Voxel 8b is also the apron (last) voxel of brick b-1.
        for (const ax of bx0 >= 0 ? [bx, bx0] : [bx]) {
          for (const ay of by0 >= 0 ? [by, by0] : [by]) {
            for (const az of bz0 >= 0 ? [bz, bz0] : [bz]) need[(ax * BY + ay) * BZ + az] = 1;
          }
        }
      }
    }
  }
  let numBricks = 0;
  for (let b = 0; b < need.length; b++) if (need[b]) brickOf[b] = ++numBricks;
  const textures = Math.ceil((C + 1) / 4);
  const A = atlasWidth(BX * BY * BZ);
  const slabs = Math.max(1, Math.ceil(numBricks / (A * A)));
  const W = A * BRICK, H = A * BRICK, D = slabs * BRICK;
  const brickData = Array.from({ length: textures }, () => new Uint16Array(W * H * D * 4));
  const clampX = new Int32Array(BRICK), clampY = new Int32Array(BRICK), clampZ = new Int32Array(BRICK);
  for (let bx = 0; bx < BX; bx++) {
    for (let i = 0; i < BRICK; i++) clampX[i] = Math.min(bx * BLOCK + i, X - 1);
    for (let by = 0; by < BY; by++) {
      for (let i = 0; i < BRICK; i++) clampY[i] = Math.min(by * BLOCK + i, Y - 1);
      for (let bz = 0; bz < BZ; bz++) {
        const id = brickOf[(bx * BY + by) * BZ + bz];
        if (!id) continue;
        for (let i = 0; i < BRICK; i++) clampZ[i] = Math.min(bz * BLOCK + i, Z - 1);
        const [ox, oy, oz] = brickOrigin(id - 1, A);
        // Atlas texel (u, v, w) of brick-local voxel (i, j, k): u along grid x, v along y, w along z.
        for (let k = 0; k < BRICK; k++) {
          for (let j = 0; j < BRICK; j++) {
            let o = (((oz + k) * H + oy + j) * W + ox) * 4;
            for (let i = 0; i < BRICK; i++, o += 4) {
              const v = (clampX[i] * Y + clampY[j]) * Z + clampZ[k];
              brickData[0][o] = toHalf(density[v]);
              for (let c = 0; c < C; c++) {
                const t = (c + 1) >> 2;
                brickData[t][o + ((c + 1) & 3)] = toHalf(features[c * n + v]);
              }
            }
          }
        }
      }
    }
  }
  const atlas = { bricksPerRow: A, width: W, height: H, depth: D };
  return { occupancy, blockOccupied, brickOf, numBricks, brickData, atlas, occupiedVoxels };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * IEEE 754 binary16 bits of a number, rounded to nearest, ties to even (what a GPU driver does
 * when it converts float32 texels for an RGBA16F texture): overflow → ±inf, NaN stays NaN,
 * subnormals kept.
 * @param {number} v
 */
export function toHalf(v) {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is right (up to inf)
  return sign | h;
}

/**
 * 3×3×3 max filter of a 0/1 grid (separable: three 1D passes).
 * @param {Uint8Array} a
 * @param {number} X
 * @param {number} Y
 * @param {number} Z
 */
export function dilate(a, X, Y, Z) {
  const b = new Uint8Array(a.length);
  // z pass
  for (let r = 0; r < X * Y; r++) {
    const o = r * Z;
    for (let z = 0; z < Z; z++) b[o + z] = a[o + z] | (z > 0 ? a[o + z - 1] : 0) | (z + 1 < Z ? a[o + z + 1] : 0);
  }
  const c = new Uint8Array(a.length);
  // y pass
  for (let x = 0; x < X; x++) {
    for (let y = 0; y < Y; y++) {
      const o = (x * Y + y) * Z;
      for (let z = 0; z < Z; z++) {
        c[o + z] = b[o + z] | (y > 0 ? b[o - Z + z] : 0) | (y + 1 < Y ? b[o + Z + z] : 0);
      }
    }
  }
  // x pass
  const YZ = Y * Z;
  for (let x = 0; x < X; x++) {
    const o = x * YZ;
    for (let i = 0; i < YZ; i++) b[o + i] = c[o + i] | (x > 0 ? c[o - YZ + i] : 0) | (x + 1 < X ? c[o + YZ + i] : 0);
  }
  return b;
}

/**
 * Bricks per atlas row and column for a grid of ``blocks`` blocks: square slabs of at most
 * 28×28 bricks (9·28 = 252 ≤ 256, WebGL2's smallest guaranteed MAX_3D_TEXTURE_SIZE).
 * @param {number} blocks
 */
export function atlasWidth(blocks) {
  return Math.max(1, Math.min(28, Math.ceil(Math.sqrt(blocks))));
}

/**
 * Texel origin of brick ``b`` (0-based) in an atlas ``A`` bricks wide.
 * @param {number} b
 * @param {number} A
 * @returns {[number, number, number]}
 */
export function brickOrigin(b, A) {
  return [(b % A) * BRICK, (Math.floor(b / A) % A) * BRICK, Math.floor(b / (A * A)) * BRICK];
}
