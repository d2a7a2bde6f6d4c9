"""The trainer's compiled CPU kernels (in ``_march.c``, beside the inference renderer).

Why: at 128³ a residual iteration's fixed costs were torch's, not the maths — building the
sample list (``march_rays`` + ``occupied``), gathering 8 trilinear corners per sample and
scattering their gradient, and ~20 element-wise passes of Adam and the L1 rule over millions of
residual values. Each kernel here does one of those in a single pass; each has a torch
equivalent that stays the reference (CUDA, no compiler, ``RERF_RENDERER=torch``) and agrees with
it to float32 rounding — the sample list exactly (tests/test_sparse_grid.py, test_train.py).
"""

from __future__ import annotations

import ctypes

import torch

from rerf_codec.errors import RerfUsageError
from rerf_codec.field import native_render
from rerf_codec.field.geometry import GridGeometry

OUT_OF_REACH = "a sample reads a voxel outside the sparse grid's reach (layout built for another occupancy)"
"""A sparse lookup's error when a sample's corner has no table row (a bug in the caller's layout)."""


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels apply: the library is built and enabled, and every tensor is float32 on the CPU."""
    ok = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
    return ok and native_render.enabled()


def march_samples(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    occupancy: torch.Tensor,
    geometry: GridGeometry,
    window: tuple[tuple[int, int, int], tuple[int, int, int]] | None,
    step: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``render.march_rays`` then ``render.occupied`` in one pass: the kept samples' ray index (K,)
    int64 and world position (K, 3) float32, sorted by ray then distance (the same samples, tested)."""
    lib = native_render.library()
    assert lib is not None
    origins, dirs = origins.contiguous(), dirs.contiguous()
    occ = occupancy.reshape(geometry.shape).contiguous()
    if occ.dtype != torch.bool:
        occ = occ.to(torch.bool).contiguous()
    box = native_render.kernel_box(geometry, window)
    r = origins.shape[0]
    cap = max(1, 64 * r)
    while True:
        ray = torch.empty(cap, dtype=torch.int64)
        pts = torch.empty(cap, 3, dtype=torch.float32)
        count = lib.rerf_march_samples(origins.data_ptr(), dirs.data_ptr(), r, occ.data_ptr(), *geometry.shape,
                                       box.ctypes.data, int(window is not None), step, cap, ray.data_ptr(),
                                       pts.data_ptr())  # fmt: skip
        if count < 0:
            raise RerfUsageError(f"compiled marcher: unsupported grid {geometry.shape}")
        if count <= cap:
            return ray[:count], pts[:count]
        cap = int(count)


def _table_rows(trainable: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The trainable table as the kernels read it — rows of contiguous channels, read in place through
    their stride (a column slice of a wider table is) — and that row stride in floats."""
    if trainable.stride(1) != 1 or (trainable.shape[0] > 1 and trainable.stride(0) < trainable.shape[1]):
        trainable = trainable.contiguous()
    return trainable, trainable.stride(0) if trainable.shape[0] > 1 else trainable.shape[1]


def sparse_gather(
    index: torch.Tensor, rows_of: torch.Tensor, shape: tuple[int, int, int], trainable: torch.Tensor,
    frozen: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Trilinear values (K, C) of the table-backed grid at voxel indices ``index`` (K, 3), and each
    sample's eight table rows (K, 8) and weights (K, 8) for ``sparse_scatter``. Rows below
    ``len(trainable)`` are ``trainable``'s (M, C; rows may be strided, as a column slice of a wider
    table is), the rest ``frozen``'s (R, C) — two tables, so no per-iteration concatenation."""
    lib = native_render.library()
    assert lib is not None
    index, frozen = index.contiguous(), frozen.contiguous()
    trainable, row_stride = _table_rows(trainable)
    k, c = index.shape[0], trainable.shape[1]
    out = torch.empty(k, c, dtype=torch.float32)
    rows = torch.empty(k, 8, dtype=torch.int64)
    weights = torch.empty(k, 8, dtype=torch.float32)
    status = lib.rerf_sparse_gather(index.data_ptr(), k, rows_of.data_ptr(), *shape, trainable.data_ptr(),
                                    trainable.shape[0], row_stride, frozen.data_ptr(), c, out.data_ptr(),
                                    rows.data_ptr(), weights.data_ptr())  # fmt: skip
    if status == -1:
        raise RuntimeError(OUT_OF_REACH)
    if status != 0:
        raise RerfUsageError(f"compiled lookup: unsupported grid {shape} x {c}")
    return out, rows, weights


def sparse_values(rows: torch.Tensor, weights: torch.Tensor, trainable: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
    """``sparse_gather``'s values (K, C) from the rows (K, 8) and weights (K, 8) it returned for the same
    points — the same loop, so the same bits — without finding them again."""
    lib = native_render.library()
    assert lib is not None
    frozen = frozen.contiguous()
    trainable, row_stride = _table_rows(trainable)
    k, c = rows.shape[0], trainable.shape[1]
    out = torch.empty(k, c, dtype=torch.float32)
    status = lib.rerf_sparse_values(rows.data_ptr(), weights.data_ptr(), k, trainable.data_ptr(), trainable.shape[0],
                                    row_stride, frozen.data_ptr(), c, out.data_ptr())  # fmt: skip
    if status != 0:
        raise RerfUsageError(f"compiled lookup: unsupported table {tuple(trainable.shape)}")
    return out


def sparse_scatter(grad: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, trainable_rows: int) -> torch.Tensor:
    """The backward of ``sparse_gather``: the trainable table's gradient (M, C) from the values' (K, C)."""
    lib = native_render.library()
    assert lib is not None
    grad = grad.contiguous().to(torch.float32)
    out = torch.zeros(trainable_rows, grad.shape[1], dtype=torch.float32)
    lib.rerf_sparse_scatter(grad.data_ptr(), grad.shape[0], rows.data_ptr(), weights.data_ptr(), grad.shape[1],
                            trainable_rows, out.data_ptr())  # fmt: skip
    return out


def prox_adam_step(
    param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, *, lam: float,
    beta1: float, beta2: float, lr: float, eps: float, step: int,
) -> None:  # fmt: skip
    """In place, one step of ``train.proximal.ProximalAdam`` (contiguous float32 CPU tensors of one shape)."""
    lib = native_render.library()
    assert lib is not None
    tensors = (param, grad, exp_avg, exp_avg_sq)
    if any(not t.is_contiguous() or t.shape != param.shape for t in tensors):
        raise ValueError("prox_adam_step takes contiguous tensors of one shape")
    if len({t.data_ptr() for t in tensors}) < len(tensors) and param.numel():
        raise ValueError("prox_adam_step takes four separate tensors (the kernel's pointers are restrict)")
    lib.rerf_prox_adam_step(param.data_ptr(), grad.data_ptr(), exp_avg.data_ptr(), exp_avg_sq.data_ptr(), param.numel(),
                            lam, beta1, beta2, lr, eps, step)  # fmt: skip


def _check_warp_inputs(grid: torch.Tensor, motion: torch.Tensor, coords: torch.Tensor, check_voxels: bool = True) -> None:
    """The kernels index the motion by each voxel's block: every voxel must lie in the grid and the
    motion must have one vector per 8³ block of it (otherwise a read would leave the arrays)."""
    blocks = tuple(-(-n // 8) for n in grid.shape[1:])
    if grid.dim() != 4 or motion.shape != (3, *blocks):
        raise ValueError(f"block motion {tuple(motion.shape)} does not fit a grid of {tuple(grid.shape[1:])} voxels")
    if coords.dim() != 2 or coords.shape[1] != 3:
        raise ValueError(f"voxel coordinates must be (K, 3), got {tuple(coords.shape)}")
    if check_voxels and coords.numel() and (bool((coords.amin(0) < 0).any()) or
                           bool((coords.amax(0) > torch.tensor(grid.shape[1:], dtype=coords.dtype) - 1).any())):
        raise ValueError("voxel coordinates outside the grid")


def block_warp(grid: torch.Tensor, motion: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Values (K, C) of ``grid`` (C, X, Y, Z) at voxels ``coords`` (K, 3) moved by their block's vector
    of ``motion`` (3, bx, by, bz), clamped: ``trainer_form.warp_previous`` at those voxels."""
    lib = native_render.library()
    assert lib is not None
    _check_warp_inputs(grid, motion, coords)
    grid, motion, coords = grid.contiguous(), motion.contiguous(), coords.contiguous()
    out = torch.empty(coords.shape[0], grid.shape[0], dtype=torch.float32)
    status = lib.rerf_block_warp(grid.data_ptr(), grid.shape[0], *grid.shape[1:], motion.data_ptr(), *motion.shape[1:],
                                 coords.data_ptr(), coords.shape[0], out.data_ptr())  # fmt: skip
    if status != 0:
        raise RerfUsageError(f"compiled warp: unsupported grid {tuple(grid.shape)} / motion {tuple(motion.shape)}")
    return out


def block_warp_backward(grid: torch.Tensor, motion: torch.Tensor, coords: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The gradient (3, bx, by, bz) of ``block_warp`` in ``motion`` from the values' gradient ``grad`` (K, C)."""
    lib = native_render.library()
    assert lib is not None
    _check_warp_inputs(grid, motion, coords, check_voxels=False)  # the forward pass checked the voxels
    if grad.shape != (coords.shape[0], grid.shape[0]):
        raise ValueError(f"warp gradient {tuple(grad.shape)} does not match {coords.shape[0]} voxels x {grid.shape[0]}")
    grid, motion, coords = grid.contiguous(), motion.contiguous(), coords.contiguous()
    grad = grad.contiguous().to(torch.float32)
    out = torch.zeros(motion.shape, dtype=torch.float64)
    lib.rerf_block_warp_backward(grid.data_ptr(), grid.shape[0], *grid.shape[1:], motion.data_ptr(), *motion.shape[1:],
                                 coords.data_ptr(), coords.shape[0], grad.data_ptr(), out.data_ptr())  # fmt: skip
    return out.to(torch.float32)


def _tv_layout_ok(grid: torch.Tensor) -> bool:
    return grid.dim() == 5 and grid.shape[0] == 1 and grid.is_contiguous() and min(grid.shape[2:]) >= 2


def tv_applies(grid: torch.Tensor) -> bool:
    """Whether the TV kernels take ``grid``: the kernels are usable and it is a contiguous float32 CPU
    (1, C, X, Y, Z) grid with at least two voxels a side."""
    return _tv_layout_ok(grid) and usable(grid)


def _tv_shape(grid: torch.Tensor) -> tuple[int, int, int, int]:
    if not _tv_layout_ok(grid):
        raise ValueError(f"total variation takes a contiguous (1, C, X, Y, Z) grid of >= 2 voxels a side, got "
                         f"{tuple(grid.shape)}")  # fmt: skip
    _, c, x, y, z = grid.shape
    return c, x, y, z


def tv_sums(grid: torch.Tensor) -> tuple[float, float, float]:
    """Σ of squared neighbour differences along x, y and z of a (1, C, X, Y, Z) float32 grid (binary64 sums)."""
    lib = native_render.library()
    assert lib is not None
    sums = (ctypes.c_double * 3)()
    lib.rerf_tv_sums(grid.data_ptr(), *_tv_shape(grid), sums)
    return sums[0], sums[1], sums[2]


def tv_grad(grid: torch.Tensor, scales: tuple[float, float, float]) -> torch.Tensor:
    """The gradient of ``Σ_a scales[a]·Σ(difference along a)²`` as autograd computes it from the torch
    formula (the same bits; ``scales`` are float32 values, the means' gradients over their counts)."""
    lib = native_render.library()
    assert lib is not None
    out = torch.empty_like(grid)
    lib.rerf_tv_grad(grid.data_ptr(), *_tv_shape(grid), *scales, out.data_ptr())
    return out
