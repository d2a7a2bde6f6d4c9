"""The trainer's compiled CPU kernels (in ``_march.c``, beside the inference renderer).

Why: at 128³ a residual iteration's fixed costs were torch's, not the maths — building the
sample list (``march_rays`` + ``occupied``), gathering 8 trilinear corners per sample and
scattering their gradient, and ~20 element-wise passes of Adam and the L1 rule over millions of
residual values. Each kernel here does one of those in a single pass; each has a torch
equivalent that stays the reference (CUDA, no compiler, ``RERF_RENDERER=torch``) and agrees with
it to float32 rounding — the sample list exactly (tests/test_sparse_grid.py, test_train.py).
"""

from __future__ import annotations

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


def sparse_gather(
    index: torch.Tensor, rows_of: torch.Tensor, shape: tuple[int, int, int], table: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Trilinear values (K, C) of the table-backed grid at voxel indices ``index`` (K, 3), and each
    sample's eight table rows (K, 8) and weights (K, 8) for ``sparse_scatter``."""
    lib = native_render.library()
    assert lib is not None
    index, table = index.contiguous(), table.contiguous()
    k, c = index.shape[0], table.shape[1]
    out = torch.empty(k, c, dtype=torch.float32)
    rows = torch.empty(k, 8, dtype=torch.int64)
    weights = torch.empty(k, 8, dtype=torch.float32)
    status = lib.rerf_sparse_gather(index.data_ptr(), k, rows_of.data_ptr(), *shape, table.data_ptr(), c,
                                    out.data_ptr(), rows.data_ptr(), weights.data_ptr())  # fmt: skip
    if status == -1:
        raise RuntimeError(OUT_OF_REACH)
    if status != 0:
        raise RerfUsageError(f"compiled lookup: unsupported grid {shape} x {c}")
    return out, rows, weights


def sparse_scatter(grad: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, table_rows: int) -> torch.Tensor:
    """The backward of ``sparse_gather``: the table's gradient (rows, C) from the values' (K, C)."""
    lib = native_render.library()
    assert lib is not None
    grad = grad.contiguous().to(torch.float32)
    out = torch.zeros(table_rows, grad.shape[1], dtype=torch.float32)
    lib.rerf_sparse_scatter(grad.data_ptr(), grad.shape[0], rows.data_ptr(), weights.data_ptr(), grad.shape[1],
                            out.data_ptr())  # fmt: skip
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
    lib.rerf_prox_adam_step(param.data_ptr(), grad.data_ptr(), exp_avg.data_ptr(), exp_avg_sq.data_ptr(), param.numel(),
                            lam, beta1, beta2, lr, eps, step)  # fmt: skip
