"""A grid held only where rays can reach it: the residual and motion fits' view of a frame.

Why: a residual frame optimises ~10 % of a 128³ grid's voxels, but rendering a dense grid
with ``grid_sample`` makes every iteration copy the whole (1 + 12)-channel grid (to add the
trainable voxels in) and zero and fill a dense gradient of the same size (108 MB at 128³),
whatever the batch touches. That fixed cost was ~100 ms of crane's ~140 ms residual
iteration on one CPU thread. A ``SparseGrid`` keeps one row per voxel that a sample's
trilinear lookup can touch — trainable rows for the voxels being fitted, frozen rows for the
one-voxel ring around the occupancy (a sample whose nearest voxel is occupied reads its 8
neighbours) — so a lookup gathers 8 rows and the gradient lands in a table of the fitted
voxels alone. It gives the values ``grid_sample(..., align_corners=True,
padding_mode="border")`` gives on the same dense grid (to float rounding; tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rerf_codec.field import native_train


@dataclass(frozen=True)
class SparseLayout:
    """Which dense voxel each table row holds: rows ``0..M-1`` the trainable voxels (in the order
    given), rows ``M..M+R-1`` the frozen ring; ``rows[v]`` is voxel ``v``'s row or -1."""

    shape: tuple[int, int, int]
    rows: torch.Tensor  # (X·Y·Z,) int64
    trainable: torch.Tensor  # (M,) flat voxel indices
    ring: torch.Tensor  # (R,) flat voxel indices

    @staticmethod
    def build(shape: tuple[int, int, int], trainable: torch.Tensor, reach: torch.Tensor) -> SparseLayout:
        """Rows for ``trainable`` (flat indices) and for every other voxel within one voxel of ``reach``
        (X, Y, Z) bool — the occupancy a renderer's samples are kept by (nearest voxel set)."""
        if min(shape) < 2:
            raise ValueError(f"a sparse grid needs at least 2 voxels per axis, got {shape}")
        n = shape[0] * shape[1] * shape[2]
        dev = trainable.device
        rows = torch.full((n,), -1, dtype=torch.int64, device=dev)
        m = trainable.numel()
        rows[trainable] = torch.arange(m, device=dev)
        near = F.max_pool3d(reach.float().reshape(1, 1, *shape), 3, 1, 1).reshape(-1) > 0
        ring = (near & (rows < 0)).nonzero()[:, 0]
        rows[ring] = m + torch.arange(ring.numel(), device=dev)
        return SparseLayout(shape, rows, trainable, ring)


_CORNERS = [(dx, dy, dz) for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]


class SparseGrid:
    """A (C, X, Y, Z) grid given by the table rows of ``layout``: ``trainable`` (M, C), ``frozen`` (R, C)."""

    def __init__(self, layout: SparseLayout, trainable: torch.Tensor, frozen: torch.Tensor) -> None:
        if trainable.shape[0] != layout.trainable.numel() or frozen.shape[0] != layout.ring.numel():
            raise ValueError("table rows do not match the layout")
        self.layout = layout
        self.trainable, self.frozen = trainable, frozen
        self.channels = int(trainable.shape[1])

    def sample(self, index: torch.Tensor) -> torch.Tensor:
        """Trilinear values (K, C) at continuous voxel indices ``index`` (K, 3), clamped to the grid.

        On CPU in float32 through the compiled kernels when they are built (``native_train``;
        ``RERF_RENDERER=torch`` turns them off); otherwise in torch (CUDA, no compiler). Both give
        the same values to float32 rounding (tested)."""
        if native_train.usable(self.trainable, self.frozen, index) and not self.frozen.requires_grad:
            return _NativeLookup.apply(self.trainable, self.frozen, index, self.layout.rows, self.layout.shape)
        return self._sample_torch(index)

    def planned(self, index: torch.Tensor) -> LookupPlan:
        """A lookup at ``index`` (K, 3) to repeat on this layout with other table values (``sample_planned``):
        on the compiled path the points' rows and weights are found once. Why: the residual's coarse
        stage reads the same K points of its lattice every iteration."""
        if native_train.usable(self.trainable, self.frozen, index):
            _, rows, weights = native_train.sparse_gather(index.contiguous(), self.layout.rows, self.layout.shape,
                                                          self.trainable.detach(), self.frozen.detach())  # fmt: skip
            return LookupPlan(self.layout, index, rows, weights)
        return LookupPlan(self.layout, index, None, None)

    def sample_planned(self, plan: LookupPlan) -> torch.Tensor:
        """``sample(plan.index)`` — the same values — reusing the plan's rows and weights where it has them."""
        if plan.layout is not self.layout:
            raise ValueError("the lookup plan was made for another layout")
        compiled = plan.rows is not None and plan.weights is not None and not self.frozen.requires_grad
        if compiled and native_train.usable(self.trainable, self.frozen):
            return _PlannedLookup.apply(self.trainable, self.frozen, plan.rows, plan.weights)
        return self.sample(plan.index)

    def _sample_torch(self, index: torch.Tensor) -> torch.Tensor:
        shape = self.layout.shape
        hi = torch.tensor([n - 1 for n in shape], dtype=index.dtype, device=index.device)
        x = torch.minimum(index.clamp_min(0), hi)
        i0 = torch.minimum(x.floor(), hi - 1)
        w = x - i0
        i0 = i0.long()
        sy, sz = shape[1] * shape[2], shape[2]
        base = i0[:, 0] * sy + i0[:, 1] * sz + i0[:, 2]
        offsets = torch.tensor([dx * sy + dy * sz + dz for dx, dy, dz in _CORNERS], device=index.device)
        rows = self.layout.rows[base[:, None] + offsets]  # (K, 8)
        if rows.numel() and int(rows.min()) < 0:
            raise RuntimeError(native_train.OUT_OF_REACH)
        wx, wy, wz = (torch.stack([1 - w[:, a], w[:, a]], 1) for a in range(3))
        weights = (wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]).reshape(-1, 8)
        table = torch.cat([self.trainable, self.frozen], 0)
        values = table.index_select(0, rows.reshape(-1)).view(-1, 8, self.channels)
        return (values * weights[:, :, None]).sum(1)


def _table_grad(ctx: Any, grad: torch.Tensor) -> torch.Tensor | None:
    """Both compiled lookups' backward: the trainable table's gradient from the rows and weights the
    forward saved (the frozen ring gets none), or None when the table needs none."""
    if not ctx.needs_input_grad[0]:
        return None
    rows, weights = ctx.saved_tensors
    return native_train.sparse_scatter(grad, rows, weights, ctx.trainable_rows)


@dataclass(frozen=True)
class LookupPlan:
    """Points of a ``SparseGrid`` lookup and, on the compiled path, their table rows and weights (K, 8)."""

    layout: SparseLayout
    index: torch.Tensor  # (K, 3)
    rows: torch.Tensor | None
    weights: torch.Tensor | None


class _PlannedLookup(torch.autograd.Function):
    """``_NativeLookup`` with the rows and weights given: values forward, the same scatter backward."""

    @staticmethod
    def forward(ctx: Any, trainable: torch.Tensor, frozen: torch.Tensor, rows: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(rows, weights)
        ctx.trainable_rows = trainable.shape[0]
        return native_train.sparse_values(rows, weights, trainable.detach(), frozen.detach())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        return _table_grad(ctx, grad), None, None, None


class _NativeLookup(torch.autograd.Function):
    """``SparseGrid.sample`` in C: gather forward, scatter backward (gradient for the trainable rows only:
    the frozen ring is a constant wherever the trainer builds a ``SparseGrid``)."""

    @staticmethod
    def forward(ctx: Any, trainable: torch.Tensor, frozen: torch.Tensor, index: torch.Tensor, rows_of: torch.Tensor,
                shape: tuple[int, int, int]) -> torch.Tensor:  # fmt: skip
        out, rows, weights = native_train.sparse_gather(index.detach(), rows_of, shape, trainable.detach(),
                                                        frozen.detach())  # fmt: skip
        ctx.save_for_backward(rows, weights)
        ctx.trainable_rows = trainable.shape[0]
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None]:
        return _table_grad(ctx, grad), None, None, None, None
