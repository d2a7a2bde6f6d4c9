// Occupancy of 8×8×8 blocks (FORMAT.md §9.2, §9.3 intra octree, §10.2 inter mask);
// mirrors rerf_codec/codec/occupancy.py.

import { RerfFormatError } from './errors.js';
import { RangeDecoder, bitsThreshold } from './range-decoder.js';

const BUCKET = [0, 1, 1, 2, 2, 3, 3];

/** Block grid (ceil(X/8), ceil(Y/8), ceil(Z/8)). @param {[number, number, number]} grid @returns {[number, number, number]} */
export function blockGridShape(grid) {
  return [Math.ceil(grid[0] / 8), Math.ceil(grid[1] / 8), Math.ceil(grid[2] / 8)];
}

/**
 * Occupied 6-neighbours of every cell of a (sx, sy, sz) grid (outside counts as 0).
 * @param {Uint8Array} m @param {number} sx @param {number} sy @param {number} sz @returns {Uint8Array}
 */
function neighbourCount(m, sx, sy, sz) {
  const out = new Uint8Array(m.length);
  const syz = sy * sz;
  for (let x = 0; x < sx; x++) {
    for (let y = 0; y < sy; y++) {
      for (let z = 0; z < sz; z++) {
        const i = x * syz + y * sz + z;
        let n = 0;
        if (x > 0) n += m[i - syz];
        if (x < sx - 1) n += m[i + syz];
        if (y > 0) n += m[i - sz];
        if (y < sy - 1) n += m[i + sz];
        if (z > 0) n += m[i - 1];
        if (z < sz - 1) n += m[i + 1];
        out[i] = n;
      }
    }
  }
  return out;
}

/**
 * Decode the octree-coded intra mask (§9.3) from section `mask`.
 * @param {[number, number, number]} shape block grid @param {Uint8Array} section @returns {Uint8Array} C order, 0/1
 */
export function decodeMaskIntra(shape, section) {
  const dec = new RangeDecoder(section);
  /** @type {[number, number, number][]} */
  const shapes = [shape];
  while (shapes[shapes.length - 1][0] * shapes[shapes.length - 1][1] * shapes[shapes.length - 1][2] > 1) {
    const s = shapes[shapes.length - 1];
    shapes.push([Math.ceil(s[0] / 2), Math.ceil(s[1] / 2), Math.ceil(s[2] / 2)]);
  }
  let cur = new Uint8Array([dec.decodeBit(bitsThreshold(128))]);
  for (let k = shapes.length - 2; k >= 0; k--) {
    const [px, py, pz] = shapes[k + 1];
    const [cx, cy, cz] = shapes[k];
    const nb = neighbourCount(cur, px, py, pz);
    const child = new Uint8Array(cx * cy * cz);
    /** @type {number[][]} */
    const lists = [[], [], [], []];
    for (let x = 0; x < cx; x++) {
      for (let y = 0; y < cy; y++) {
        for (let z = 0; z < cz; z++) {
          const pi = ((x >> 1) * py + (y >> 1)) * pz + (z >> 1);
          if (cur[pi]) lists[BUCKET[nb[pi]]].push((x * cy + y) * cz + z);
        }
      }
    }
    for (let c = 0; c < 4; c++) {
      const list = lists[c];
      if (list.length === 0) continue;
      const p = Math.min(255, Math.max(1, dec.decodeUniform256()));
      const th = bitsThreshold(p);
      for (const i of list) child[i] = dec.decodeBit(th);
    }
    cur = child;
  }
  return cur;
}

/**
 * Decode a residual frame's mask (§10.2) with the previous mask as context.
 * @param {Uint8Array} prev previous mask (block grid, C order) @param {[number, number, number]} shape
 * @param {Uint8Array} section @returns {Uint8Array}
 */
export function decodeMaskInter(prev, shape, section) {
  const dec = new RangeDecoder(section);
  const nb = neighbourCount(prev, shape[0], shape[1], shape[2]);
  const ctx = new Uint8Array(prev.length);
  const present = new Uint8Array(8);
  for (let i = 0; i < prev.length; i++) {
    ctx[i] = 4 * prev[i] + BUCKET[nb[i]];
    present[ctx[i]] = 1;
  }
  const out = new Uint8Array(prev.length);
  for (let c = 0; c < 8; c++) {
    if (!present[c]) continue;
    const p = dec.decodeUniform256();
    if (p === 0) throw new RerfFormatError("occupancy probability 0 in a residual frame's mask");
    const th = bitsThreshold(p);
    for (let i = 0; i < prev.length; i++) if (ctx[i] === c) out[i] = dec.decodeBit(th);
  }
  return out;
}

/**
 * Coordinates of occupied blocks in raster order (the block index b).
 * @param {Uint8Array} mask @param {[number, number, number]} shape @returns {Int32Array} (N, 3) flat
 */
export function blockCoords(mask, shape) {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  const out = new Int32Array(3 * n);
  const [, by, bz] = shape;
  let j = 0;
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    out[j++] = Math.floor(i / (by * bz));
    out[j++] = Math.floor(i / bz) % by;
    out[j++] = i % bz;
  }
  return out;
}
