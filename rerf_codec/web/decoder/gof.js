// Decoding one GOF (FORMAT.md §9.8, §10.1, §10.5): frame records -> dense float32 grids.
//
// Frame records are dispatched on frame_type through FRAME_DECODERS, each one a pair
// (parse: entropy decoding only, reconstruct: exact integer arithmetic), so a new frame
// type or per-block mode (format 1.2) is one more entry, not a new branch in the loop.

import { RerfFormatError } from './errors.js';
import {
  BLOCK_MODE_INTER, BLOCK_MODE_INTRA, BLOCK_MODE_SKIP, FRAME_FLAG_BLOCK_MODES, FRAME_INTRA, FRAME_RESIDUAL,
  FRAME_TYPE_NAMES, decodeSideInfo,
} from './format.js';
import { BAND_ORDER, BAND_STARTS, decodeLevelSets, decodeLevels } from './coefficients.js';
import { decodeModes, previousModes } from './modes.js';
import { blockCoords, blockGridShape, decodeMaskInter, decodeMaskIntra } from './occupancy.js';
import { decodeMotion, predictChannel, prepareBlock, superblocks } from './motion.js';
import { MAX_COEFF, MAX_SAMPLE, inverseDct } from './transform.js';

/** @typedef {import('./format.js').SequenceHeader} SequenceHeader */
/** @typedef {import('./format.js').GofChunk} GofChunk */
/** @typedef {import('./format.js').FrameRecord} FrameRecord */
/** @typedef {import('./coefficients.js').Table} Table */
/** @typedef {import('./coefficients.js').Levels} Levels */

export const MAX_QSTEP = 2 ** 30;

/**
 * A decoded frame: `density` (X, Y, Z) and `features` (C, X, Y, Z), float32, C order.
 * @typedef {object} DecodedFrame
 * @property {number} index frame number
 * @property {string} frameType 'intra' | 'residual'
 * @property {Float32Array} density
 * @property {Float32Array} features
 * @property {[number, number, number]} shape grid (X, Y, Z)
 * @property {number} channels feature channels C
 * @property {boolean} ref true when the next frame of the GOF predicts from this one: its
 *   arrays are read again when that frame is decoded, so transfer or modify them only after
 *   asking for the next frame
 */

/**
 * What a residual frame needs from the previous frame of its GOF (§10.1).
 * @typedef {object} GofState
 * @property {Float32Array[]} planes previous frame, one (X, Y, Z) plane per channel
 * @property {Uint8Array} mask previous block mask
 * @property {Int32Array} coarse coarse motion field (NSB*3)
 * @property {Table[]} tables coefficient tables in effect (Tprev; with block modes: the inter set's)
 * @property {Table[]} intraTables tables of the GOF's latest intra level set (Tintra, §10.1)
 * @property {Uint8Array | null} bprev previous-mode map over the block grid (Bprev, §10.1);
 *   null after a keyframe (MODE_NONE everywhere)
 */

/**
 * Per-GOF decoding context.
 * @typedef {object} GofContext
 * @property {SequenceHeader} header
 * @property {GofChunk} gof
 * @property {[number, number, number]} blockShape
 * @property {Float64Array} qstep (C_total, 512)
 * @property {import('./coefficients.js').LevelScratch} scratch
 */

/**
 * A frame-type decoder: parse the record (entropy decoding, all format checks), then
 * reconstruct into `planes` given the state; returns the new state.
 * @typedef {(ctx: GofContext, record: FrameRecord, state: GofState | null, planes: Float32Array[]) => GofState} FrameDecoder
 */

/** Quantiser steps of a GOF (§9.6). @param {SequenceHeader} header @param {import('./format.js').ChannelParams[]} channels */
export function qstepTable(header, channels) {
  const out = new Float64Array(channels.length * 512);
  for (let c = 0; c < channels.length; c++) {
    const g = c === 0 ? 0 : 1;
    for (let f = 0; f < 512; f++) {
      const s = Math.max(1, Math.floor((header.qmatrix[g * 512 + f] * channels[c].qscale + 8) / 16));
      if (s > MAX_QSTEP) throw new RerfFormatError(`quantiser step ${s} exceeds the limit ${MAX_QSTEP}`);
      out[c * 512 + f] = s;
    }
  }
  return out;
}

const Y = new Float64Array(512);
const V = new Float64Array(512);
const PRED = new Float64Array(512);

/**
 * Dequantise (c, b)'s levels into Y (bands 0..last; the rest zero), checking |Y| <= 2^29.
 * @param {Levels} lv @param {Float64Array} qstep @param {number} c @param {number} N @param {number} b
 */
function dequantize(lv, qstep, c, N, b) {
  const last = lv.last[c * N + b];
  Y.fill(0);
  const base = (c * N + b) * 512;
  const lev = lv.levels;
  const qs = c * 512;
  const stop = last < 0 ? 0 : BAND_STARTS[last + 1];
  for (let j = 0; j < stop; j++) {
    const l = lev[base + j];
    if (l === 0) continue;
    const f = BAND_ORDER[j];
    const y = l * qstep[qs + f];
    if (y > MAX_COEFF || y < -MAX_COEFF) {
      throw new RerfFormatError('stream carries a coefficient outside the decodable range (corrupt data)');
    }
    Y[f] = y;
  }
  return last;
}

/**
 * Write a block's 512 lattice values (scaled by 2^-e) into a plane, cropping at the grid edge.
 * @param {Float32Array} plane @param {[number, number, number]} grid @param {number} bx @param {number} by
 * @param {number} bz @param {Float64Array} vals @param {number} inv
 */
function writeBlock(plane, grid, bx, by, bz, vals, inv) {
  const [X, Yd, Z] = grid;
  const nx = Math.min(8, X - 8 * bx);
  const ny = Math.min(8, Yd - 8 * by);
  const nz = Math.min(8, Z - 8 * bz);
  for (let x = 0; x < nx; x++) {
    for (let y = 0; y < ny; y++) {
      const o = ((8 * bx + x) * Yd + 8 * by + y) * Z + 8 * bz;
      const i = x * 64 + y * 8;
      for (let z = 0; z < nz; z++) plane[o + z] = vals[i + z] * inv;
    }
  }
}

/** What a reused output buffer holds outside the blocks last written: fill key and block mask. */
/** @type {WeakMap<Float32Array, {key: string, mask: Uint8Array}>} */
const FILLED = new WeakMap();

/**
 * Fill every voxel of unoccupied blocks with the channel's fill value. A reused buffer that
 * already holds the same fills is only refilled where a block held data and is empty now.
 * @param {GofContext} ctx @param {Float32Array[]} planes @param {Uint8Array} mask
 */
function fillPlanes(ctx, planes, mask) {
  const ch = ctx.gof.channels;
  const key = ch.map((c) => `${c.fill},${c.exponent}`).join(';');
  const prev = FILLED.get(planes[0]);
  if (prev && prev.key === key && prev.mask.length === mask.length) {
    const [, by, bz] = ctx.blockShape;
    const grid = ctx.header.grid_shape;
    for (let i = 0; i < mask.length; i++) {
      if (!prev.mask[i] || mask[i]) continue;
      const bx = Math.floor(i / (by * bz));
      const byy = Math.floor(i / bz) % by;
      for (let c = 0; c < planes.length; c++) {
        fillBlock(planes[c], grid, bx, byy, i % bz, ch[c].fill * 2 ** -ch[c].exponent);
      }
    }
  } else {
    for (let c = 0; c < planes.length; c++) planes[c].fill(ch[c].fill * 2 ** -ch[c].exponent);
  }
  FILLED.set(planes[0], { key, mask });
}

/**
 * @param {Float32Array} plane @param {[number, number, number]} grid @param {number} bx @param {number} by
 * @param {number} bz @param {number} value
 */
function fillBlock(plane, grid, bx, by, bz, value) {
  const [X, Yd, Z] = grid;
  const nx = Math.min(8, X - 8 * bx);
  const ny = Math.min(8, Yd - 8 * by);
  const nz = Math.min(8, Z - 8 * bz);
  for (let x = 0; x < nx; x++) {
    for (let y = 0; y < ny; y++) {
      const o = ((8 * bx + x) * Yd + 8 * by + y) * Z + 8 * bz;
      plane.fill(value, o, o + nz);
    }
  }
}

/** @param {Uint8Array} tables @param {Uint8Array} words @param {Uint8Array} mant @param {GofContext} ctx
 *  @param {number} N @param {Table[] | null} prev */
function levelsOf(tables, words, mant, ctx, N, prev) {
  return decodeLevels(tables, words, mant, ctx.header.num_channels, N, ctx.header.coeff_mode, prev, ctx.scratch);
}

/** @type {FrameDecoder} */
function decodeIntra(ctx, rec, _state, planes) {
  if (rec.motion.length) throw new RerfFormatError('intra frame carries a motion section');
  const mask = decodeMaskIntra(ctx.blockShape, rec.mask);
  const coords = blockCoords(mask, ctx.blockShape);
  const N = coords.length / 3;
  const lv = levelsOf(decodeSideInfo(rec.side_info), rec.coeff_words, rec.mantissa, ctx, N, null);
  fillPlanes(ctx, planes, mask);
  const grid = ctx.header.grid_shape;
  for (let c = 0; c < planes.length; c++) {
    const inv = 2 ** -ctx.gof.channels[c].exponent;
    for (let b = 0; b < N; b++) {
      const last = dequantize(lv, ctx.qstep, c, N, b);
      if (last < 0) V.fill(0);
      else inverseDct(Y, last, V);
      writeBlock(planes[c], grid, coords[3 * b], coords[3 * b + 1], coords[3 * b + 2], V, inv);
    }
  }
  const { nsb } = superblocks(new Int32Array(0), ctx.blockShape);
  return { planes, mask, coarse: new Int32Array(3 * nsb), tables: lv.tables, intraTables: lv.tables, bprev: null };
}

/** @type {FrameDecoder} */
function decodeResidual(ctx, rec, state, planes) {
  if (state === null) throw new RerfFormatError('residual frame without a preceding keyframe in its GOF');
  const mask = decodeMaskInter(state.mask, ctx.blockShape, rec.mask);
  const coords = blockCoords(mask, ctx.blockShape);
  const N = coords.length / 3;
  const { sb } = superblocks(coords, ctx.blockShape);
  const tableBytes = decodeSideInfo(rec.side_info);
  const h = ctx.header;
  /** @type {Uint8Array | null} */
  let modes = null;
  /** set[b]: block b's index inside its level set (§10.6; every block is in set A without block modes) */
  let setIndex = null;
  let mv;
  let coarse;
  let intraTables = state.intraTables;
  let levelSets;
  if (!(rec.flags & FRAME_FLAG_BLOCK_MODES)) {
    ({ mv, coarse } = decodeMotion(rec.motion, sb, state.coarse));
    levelSets = [decodeLevels(tableBytes, rec.coeff_words, rec.mantissa, h.num_channels, N, h.coeff_mode, state.tables, ctx.scratch)];
  } else {
    modes = decodeModes(rec.modes, mask, ctx.blockShape, state.bprev);
    setIndex = new Int32Array(N);
    let nInter = 0;
    let nSkip = 0;
    let nIntra = 0;
    for (let b = 0; b < N; b++) {
      const m = modes[b];
      setIndex[b] = m === BLOCK_MODE_INTER ? nInter++ : m === BLOCK_MODE_SKIP ? nSkip++ : nIntra++;
    }
    // motion: the inter and skip blocks, fine differences for the inter ones
    const sbPred = new Int32Array(nInter + nSkip);
    const fine = new Uint8Array(nInter + nSkip);
    for (let b = 0, k = 0; b < N; b++) {
      if (modes[b] === BLOCK_MODE_INTRA) continue;
      sbPred[k] = sb[b];
      fine[k++] = modes[b] === BLOCK_MODE_INTER ? 1 : 0;
    }
    const m = decodeMotion(rec.motion, sbPred, state.coarse, fine);
    coarse = m.coarse;
    mv = new Int32Array(3 * N);
    for (let b = 0, k = 0; b < N; b++) {
      if (modes[b] === BLOCK_MODE_INTRA) continue;
      mv.set(m.mv.subarray(3 * k, 3 * k + 3), 3 * b);
      k++;
    }
    levelSets = decodeLevelSets(tableBytes, rec.coeff_words, rec.mantissa, h.num_channels, [nInter, nIntra], h.coeff_mode,
      [state.tables, state.intraTables], ctx.scratch);
    if (nIntra > 0) intraTables = levelSets[1].tables;
  }
  const grid = h.grid_shape;
  fillPlanes(ctx, planes, mask);
  const nc = planes.length;
  const scales = ctx.gof.channels.map((ch) => 2 ** ch.exponent);
  const invs = ctx.gof.channels.map((ch) => 2 ** -ch.exponent);
  const setN = levelSets.map((lv) => lv.last.length / nc);
  // channel-major: consecutive blocks of one plane share cached neighbourhoods
  for (let c = 0; c < nc; c++) {
    const prev = state.planes[c];
    for (let b = 0; b < N; b++) {
      const bx = coords[3 * b];
      const by = coords[3 * b + 1];
      const bz = coords[3 * b + 2];
      const mode = modes === null ? BLOCK_MODE_INTER : modes[b];
      // inter: prediction + set A's residual; skip: prediction only; intra: 0 + set B's levels
      let k = -1;
      if (mode === BLOCK_MODE_INTRA) {
        PRED.fill(0);
        k = 1;
      } else {
        prepareBlock(grid, bx, by, bz, mv[3 * b], mv[3 * b + 1], mv[3 * b + 2]);
        predictChannel(prev, scales[c], PRED);
        if (mode === BLOCK_MODE_INTER) k = 0;
      }
      const j = setIndex === null ? b : setIndex[b];
      const last = k < 0 ? -1 : levelSets[k].last[c * setN[k] + j];
      if (last >= 0) {
        dequantize(levelSets[k], ctx.qstep, c, setN[k], j);
        inverseDct(Y, last, V);
        for (let i = 0; i < 512; i++) {
          const v = PRED[i] + V[i];
          PRED[i] = v > MAX_SAMPLE ? MAX_SAMPLE : v < -MAX_SAMPLE ? -MAX_SAMPLE : v;
        }
      } else {
        for (let i = 0; i < 512; i++) {
          const v = PRED[i];
          if (v > MAX_SAMPLE) PRED[i] = MAX_SAMPLE;
          else if (v < -MAX_SAMPLE) PRED[i] = -MAX_SAMPLE;
        }
      }
      writeBlock(planes[c], grid, bx, by, bz, PRED, invs[c]);
    }
  }
  return { planes, mask, coarse, tables: levelSets[0].tables, intraTables, bprev: previousModes(mask, modes) };
}

/** Frame decoders by frame_type (§6.3). @type {Record<number, FrameDecoder>} */
export const FRAME_DECODERS = { [FRAME_INTRA]: decodeIntra, [FRAME_RESIDUAL]: decodeResidual };

/**
 * Allocates the output arrays of one frame. The default gives fresh arrays (the caller
 * owns them); a pool may hand out reused ones.
 * @typedef {(header: SequenceHeader) => {density: Float32Array, features: Float32Array}} FrameAllocator
 */

/** @type {FrameAllocator} */
export function freshFrame(header) {
  const [X, Yd, Z] = header.grid_shape;
  const v = X * Yd * Z;
  return { density: new Float32Array(v), features: new Float32Array(header.feature_channels * v) };
}

/**
 * An allocator that rotates two output buffers (like the Python decoder's BufferPool): no
 * allocation and no page faults per frame. A yielded frame stays valid until the frame after
 * the next one is decoded.
 * @returns {FrameAllocator}
 */
export function framePool() {
  /** @type {{density: Float32Array, features: Float32Array}[]} */
  const slots = [];
  let k = 0;
  return (header) => {
    k = 1 - k;
    const [X, Yd, Z] = header.grid_shape;
    const v = X * Yd * Z;
    if (!slots[k] || slots[k].density.length !== v || slots[k].features.length !== header.feature_channels * v) {
      slots[k] = freshFrame(header);
    }
    return slots[k];
  };
}

/**
 * Decode every frame of one GOF in order (a GOF depends on nothing outside itself).
 * The previous frame's arrays are read while the next frame decodes: a consumer that
 * transfers or edits a frame must wait until it has asked for the next one.
 * @param {GofChunk} gof @param {SequenceHeader} header
 * @param {{alloc?: FrameAllocator, scratch?: import('./coefficients.js').LevelScratch}} [opts]
 * @returns {Generator<DecodedFrame>}
 */
export function* decodeGof(gof, header, opts = {}) {
  const alloc = opts.alloc ?? freshFrame;
  /** @type {GofContext} */
  let ctx;
  try {
    ctx = {
      header, gof, blockShape: blockGridShape(header.grid_shape), qstep: qstepTable(header, gof.channels),
      scratch: opts.scratch ?? {},
    };
  } catch (e) {
    if (e instanceof RerfFormatError) throw new RerfFormatError(`GOF at frame ${gof.first_frame}: ${e.message}`);
    throw e;
  }
  /** @type {GofState | null} */
  let state = null;
  const [X, Yd, Z] = header.grid_shape;
  const v = X * Yd * Z;
  for (let i = 0; i < gof.frames.length; i++) {
    const rec = gof.frames[i];
    const idx = gof.first_frame + i;
    const decoder = FRAME_DECODERS[rec.frame_type];
    const out = alloc(header);
    /** @type {Float32Array[]} */
    const planes = [out.density];
    for (let c = 0; c < header.feature_channels; c++) planes.push(out.features.subarray(c * v, (c + 1) * v));
    try {
      if (!decoder) throw new RerfFormatError(`unsupported frame type ${rec.frame_type}`);
      if (state && state.planes[0].length !== v) throw new Error('the previous frame was detached before the next one was decoded');
      state = decoder(ctx, rec, state, planes);
    } catch (e) {
      if (e instanceof RerfFormatError) throw new RerfFormatError(`frame ${idx}: ${e.message}`);
      throw e;
    }
    yield {
      index: idx, frameType: FRAME_TYPE_NAMES[rec.frame_type], density: out.density, features: out.features,
      shape: [X, Yd, Z], channels: header.feature_channels,
      ref: i + 1 < gof.frames.length && gof.frames[i + 1].frame_type !== FRAME_INTRA,
    };
  }
}
