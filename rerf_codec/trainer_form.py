"""What a trainer-form frame means: the previous frame warped by block motion, plus the residual.

A frame stored in trainer form (``motion``, ``residual_density``, ``residual_features``; DESIGN.md
"Interchange format 1") is ``warp_previous(previous, motion) + residual``. The trainer builds its
frames with exactly this numpy function, so a frame it trained is bit for bit what a reader of
the grid sequence reconstructs. Never imports torch.
"""

from __future__ import annotations

import numpy as np

from rerf_codec.checks import is_int as _is_int
from rerf_codec.errors import RerfUsageError
from rerf_codec.grids import MOTION_BLOCK, GridFrame, TrainerFrame, _first_nonfinite

__all__ = ["apply_trainer", "warp_previous"]


def _axis_windows(
    motion_axis: np.ndarray, axis: int, n: int, block: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Sample windows of every block along one axis.

    For block ``b`` with motion ``m`` the voxels ``p = b*block + l`` (l < block) sample at
    ``c = p + m``; with ``f0 = floor(b*block + m)`` and ``f = m - floor(m)``, voxel ``l``
    interpolates the window entries ``l`` and ``l + 1`` with weights ``1 - f`` and ``f``,
    where window entry ``k`` is the clamped index ``clip(f0 + k, 0, n - 1)``. Clamping
    the indices is exactly clamping the coordinate to [0, n - 1] (both corners fall on
    the same edge voxel outside the grid).

    Returns (window indices ``motion.shape + (block + 1,)``, fractions, any fraction).
    """
    m = np.clip(motion_axis.astype(np.float64), -(n + 1), n + 1)  # beyond this, all clamped
    fl = np.floor(m)
    frac = (m - fl).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = motion_axis.shape[axis]
    base = (np.arange(motion_axis.shape[axis]) * block).reshape(shape) + fl.astype(np.intp)
    win = np.clip(base[..., None] + np.arange(block + 1), 0, n - 1)
    return win, frac, bool(np.any(frac))


def _lerp(g: np.ndarray, frac: np.ndarray, axis: int, block: int) -> np.ndarray:
    """Linear interpolation between window entries ``l`` and ``l + 1`` along ``axis``."""
    lo = [slice(None)] * g.ndim
    hi = [slice(None)] * g.ndim
    lo[axis] = slice(0, block)
    hi[axis] = slice(1, block + 1)
    a = g[tuple(lo)]
    b = g[tuple(hi)]
    out: np.ndarray = a + (b - a) * frac
    return out


def warp_previous(prev: GridFrame, motion: np.ndarray, block: int = MOTION_BLOCK) -> GridFrame:
    """Backward motion compensation: what the trainer form *means*.

    For every voxel ``p = (x, y, z)`` the warped value is the previous frame sampled
    trilinearly at ``p + motion[:, x // block, y // block, z // block]`` (the motion
    vector of the block containing ``p``, in voxel units). Sample coordinates outside
    the grid are clamped to ``[0, n - 1]`` on each axis (edge replicate), i.e.
    ``scipy.ndimage.map_coordinates(prev, p + motion, order=1, mode='nearest')``. The same
    rule applies to density and to every feature channel. A trainer-form frame ``t`` is
    ``warp_previous(frame t-1, motion) + residual``; the trainer must use this definition.

    Computed in float32 (interpolation rounding differs from a float64 evaluation by a
    few ulp; integer motion is an exact copy). Blocks are processed a slab at a time: each
    block gathers one (block+1)³ window and interpolates separably, which is much cheaper
    than eight scattered gathers per voxel.
    """
    density = np.asarray(prev.density)
    features = np.asarray(prev.features)
    motion = np.asarray(motion)
    if density.ndim != 3:
        raise RerfUsageError(f"warp_previous: density must be 3-D, got shape {density.shape}")
    if features.ndim != 4 or features.shape[1:] != density.shape:
        raise RerfUsageError(
            f"warp_previous: features must have shape (C, *{density.shape}), got {features.shape}"
        )
    if not _is_int(block) or block < 1:
        raise RerfUsageError(f"warp_previous: block must be a positive integer, got {block!r}")
    dims = density.shape
    nb = tuple(-(-n // block) for n in dims)
    if motion.shape != (3, *nb):
        raise RerfUsageError(f"warp_previous: motion has shape {motion.shape}, expected {(3, *nb)}")
    if motion.dtype.kind not in "fiu" or _first_nonfinite(motion.astype(np.float64)) is not None:
        raise RerfUsageError("warp_previous: motion must be finite numbers")

    nx, ny, nz = nb
    X, Y, Z = dims
    C = features.shape[0]
    src_d = np.ascontiguousarray(density, dtype=np.float32).reshape(1, -1)
    src_f = np.ascontiguousarray(features, dtype=np.float32).reshape(C, -1)
    out_d = np.empty(dims, np.float32)
    out_f = np.empty((C, *dims), np.float32)

    wins, fracs, has = [], [], []
    for axis in range(3):
        w, f, h = _axis_windows(motion[axis], axis, dims[axis], block)
        wins.append(w)
        fracs.append(f)
        has.append(h)
    # Flat source index contributions per axis, shape (nx, ny, nz, block+1).
    wx = wins[0] * (Y * Z)
    wy = wins[1] * Z
    wz = wins[2]

    # Chunk over x-slabs and, for wide grids, over y so one chunk stays a few MB per channel.
    by_step = max(1, 4096 // nz)
    for bx in range(nx):
        x0 = bx * block
        x1 = min(x0 + block, X)
        for by0 in range(0, ny, by_step):
            by1 = min(by0 + by_step, ny)
            sl = (bx, slice(by0, by1))
            kx = block + 1 if has[0] else block
            ky = block + 1 if has[1] else block
            kz = block + 1 if has[2] else block
            # (nby, nz, kx, ky, kz) flat indices of each block's window.
            idx = (
                wx[sl][..., :kx, None, None]
                + wy[sl][..., None, :ky, None]
                + wz[sl][..., None, None, :kz]
            )
            fx = fracs[0][sl][..., None, None, None]
            fy = fracs[1][sl][..., None, None, None]
            fz = fracs[2][sl][..., None, None, None]
            ys = slice(by0 * block, min(by1 * block, Y))
            for src, out in ((src_d, out_d[None]), (src_f, out_f)):
                g = np.take(src, idx, axis=1)  # (Cc, nby, nz, kx, ky, kz)
                if has[0]:
                    g = _lerp(g, fx, 3, block)
                if has[1]:
                    g = _lerp(g, fy, 4, block)
                if has[2]:
                    g = _lerp(g, fz, 5, block)
                cc = g.shape[0]
                nby = by1 - by0
                # (Cc, by, bz, lx, ly, lz) -> (Cc, lx, by, ly, bz, lz) -> (Cc, block, Y', Z')
                g = g.transpose(0, 3, 1, 4, 2, 5).reshape(cc, block, nby * block, nz * block)
                out[:, x0:x1, ys, :] = g[:, : x1 - x0, : ys.stop - ys.start, :Z]
    return GridFrame(density=out_d, features=out_f)


def apply_trainer(prev: GridFrame, tf: TrainerFrame, block: int = MOTION_BLOCK) -> GridFrame:
    """The full frame a trainer-form frame stands for, given the previous full frame."""
    warped = warp_previous(prev, tf.motion, block)
    np.add(warped.density, tf.residual_density, out=warped.density)
    np.add(warped.features, tf.residual_features, out=warped.features)
    return warped
