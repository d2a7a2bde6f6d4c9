"""Occupancy of 8³ blocks: which blocks are coded, and how the mask itself is coded.

A block is *occupied* when any of its voxels has raw density above the
``occupancy_threshold`` carried in the sequence header. The default threshold is the
raw density whose activated value ``softplus(d + density_shift)`` equals 1e-4: at
DVGO's half-voxel sampling step such a voxel has alpha below 5e-5, i.e. it is
invisible, so dropping blocks made only of such voxels costs no rendered quality.
Unoccupied blocks decode to the per-channel fill value of their GOF.

The mask is coded as an octree, coarse to fine, fully vectorised:
level ``k + 1`` is the 2×2×2 OR-pooling of level ``k`` (ceil-sized) up to a single
cell. The root bit is coded first; then, for each finer level, only the children of
occupied parents are coded, each with a context = number of occupied 6-neighbours of
its parent (bucketed 0 | 1–2 | 3–4 | 5–6). Per level and context the encoder sends
P(1) as 8 bits (uniform-coded) before that context's bits, so the decoder learns the
probabilities in the order it needs them.
"""

from __future__ import annotations

import math

import numpy as np

from rerf_codec.codec.entropy import SymbolDecoder, SymbolEncoder
from rerf_codec.codec.transform import BLOCK
from rerf_codec.errors import RerfFormatError

N_CONTEXTS = 4
_BUCKET = np.array([0, 1, 1, 2, 2, 3, 3], dtype=np.int64)


def default_threshold(density_shift: float, min_activated: float = 1e-4) -> float:
    """Raw density whose ``softplus(d + shift)`` equals ``min_activated`` (encoder side)."""
    return math.log(math.expm1(min_activated)) - density_shift


def block_grid_shape(grid_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Number of 8³ blocks per axis (ceil)."""
    return tuple(-(-int(s) // BLOCK) for s in grid_shape)  # type: ignore[return-value]


def block_max(density: np.ndarray) -> np.ndarray:
    """Max density per 8³ block, edge blocks over their valid voxels only."""
    x, y, z = density.shape
    bx, by, bz = block_grid_shape(density.shape)
    padded = np.full((bx * BLOCK, by * BLOCK, bz * BLOCK), -np.inf, dtype=np.float32)
    padded[:x, :y, :z] = density
    maxima: np.ndarray = padded.reshape(bx, BLOCK, by, BLOCK, bz, BLOCK).max(axis=(1, 3, 5))
    return maxima


def occupancy_mask(density: np.ndarray, threshold: float) -> np.ndarray:
    """Bool ``(bx, by, bz)``: blocks with any voxel above ``threshold``."""
    return np.asarray(block_max(density) > threshold, dtype=bool)


def _pyramid(mask: np.ndarray) -> list[np.ndarray]:
    """[level0 = mask, level1, ..., single cell], each the ceil 2×2×2 OR-pool of the previous."""
    levels = [mask.astype(bool)]
    while levels[-1].size > 1:
        m = levels[-1]
        sx, sy, sz = (-(-s // 2) for s in m.shape)
        p = np.zeros((sx * 2, sy * 2, sz * 2), dtype=bool)
        p[: m.shape[0], : m.shape[1], : m.shape[2]] = m
        levels.append(np.asarray(p.reshape(sx, 2, sy, 2, sz, 2).any(axis=(1, 3, 5))))
    return levels


def _pyramid_shapes(shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    shapes = [tuple(int(s) for s in shape)]
    while math.prod(shapes[-1]) > 1:
        shapes.append(tuple(-(-s // 2) for s in shapes[-1]))
    return shapes  # type: ignore[return-value]


def _neighbour_count(parent: np.ndarray) -> np.ndarray:
    """Occupied 6-neighbours of every parent cell (out of grid counts as empty)."""
    p = np.pad(parent.astype(np.int64), 1)
    return (
        p[:-2, 1:-1, 1:-1] + p[2:, 1:-1, 1:-1] + p[1:-1, :-2, 1:-1]
        + p[1:-1, 2:, 1:-1] + p[1:-1, 1:-1, :-2] + p[1:-1, 1:-1, 2:]
    )


def _candidates(parent: np.ndarray, child_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of children whose parent is occupied, and their contexts (raster order)."""
    cx, cy, cz = child_shape
    ix, iy, iz = np.meshgrid(np.arange(cx) // 2, np.arange(cy) // 2, np.arange(cz) // 2, indexing="ij")
    par_occ = parent[ix, iy, iz].ravel()
    ctx_parent = _BUCKET[_neighbour_count(parent)]
    ctx = ctx_parent[ix, iy, iz].ravel()
    idx = np.flatnonzero(par_occ)
    return idx, ctx[idx]


def _p_one(bits: np.ndarray) -> int:
    return int(min(255, max(1, round(256.0 * float(bits.mean())))))


def encode_mask(mask: np.ndarray, enc: SymbolEncoder) -> None:
    """Code ``mask`` (bool, block grid) into ``enc``."""
    levels = _pyramid(mask)
    enc.encode_bits(np.array([int(levels[-1].ravel()[0])]), 128)
    for k in range(len(levels) - 2, -1, -1):
        idx, ctx = _candidates(levels[k + 1], levels[k].shape)
        bits = levels[k].ravel()[idx].astype(np.int32)
        for c in range(N_CONTEXTS):
            sel = ctx == c
            if not sel.any():
                continue
            p = _p_one(bits[sel])
            enc.encode_uniform(np.array([p]), 256)
            enc.encode_bits(bits[sel], p)


def decode_mask(shape: tuple[int, int, int], dec: SymbolDecoder) -> np.ndarray:
    """Mirror of :func:`encode_mask`; ``shape`` is the block grid shape."""
    shapes = _pyramid_shapes(shape)
    cur = dec.decode_bits(1, 128).astype(bool).reshape(1, 1, 1)
    for k in range(len(shapes) - 2, -1, -1):
        idx, ctx = _candidates(cur, shapes[k])
        child = np.zeros(math.prod(shapes[k]), dtype=bool)
        for c in range(N_CONTEXTS):
            sel = ctx == c
            n = int(sel.sum())
            if n == 0:
                continue
            p = int(dec.decode_uniform(1, 256)[0])
            p = min(255, max(1, p))
            child[idx[sel]] = dec.decode_bits(n, p).astype(bool)
        cur = child.reshape(shapes[k])
    return cur


def _inter_contexts(prev_mask: np.ndarray) -> np.ndarray:
    """Context of every block of a residual frame: previous occupancy × neighbour bucket (0..7)."""
    contexts: np.ndarray = prev_mask.astype(np.int64) * N_CONTEXTS + _BUCKET[_neighbour_count(prev_mask)]
    return contexts.ravel()


def encode_mask_inter(mask: np.ndarray, prev_mask: np.ndarray, enc: SymbolEncoder) -> None:
    """Code a residual frame's mask with the previous frame's mask as context.

    Every block is coded (no octree): its context is whether the same block was
    occupied before and how many of its 6 neighbours were (bucketed), so a still or
    slowly moving scene costs a few bits per frame. Per context in ascending order:
    P(1) as 8 uniform bits, then the bits of that context's blocks in raster order.
    """
    ctx = _inter_contexts(prev_mask)
    bits = mask.ravel().astype(np.int32)
    for c in range(2 * N_CONTEXTS):
        sel = ctx == c
        if not sel.any():
            continue
        p = _p_one(bits[sel])
        enc.encode_uniform(np.array([p]), 256)
        enc.encode_bits(bits[sel], p)


def decode_mask_inter(prev_mask: np.ndarray, dec: SymbolDecoder) -> np.ndarray:
    """Mirror of :func:`encode_mask_inter`."""
    ctx = _inter_contexts(prev_mask)
    out = np.zeros(ctx.size, dtype=bool)
    for c in range(2 * N_CONTEXTS):
        sel = ctx == c
        n = int(sel.sum())
        if n == 0:
            continue
        p = int(dec.decode_uniform(1, 256)[0])
        if p == 0:
            raise RerfFormatError("occupancy probability 0 in a residual frame's mask")
        out[sel] = dec.decode_bits(n, p).astype(bool)
    return out.reshape(prev_mask.shape)
