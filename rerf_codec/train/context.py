"""The frozen field context a residual frame is fitted in: what stays fixed across a sequence.

After the keyframe, every residual frame is rendered through the same colour MLP, grid
geometry, density shift, background and shading mode. Bundling them keeps the trainer's
functions to what actually varies per call (the grids, the rays, the settings) instead of
10–13 positional arguments that must be passed in the same order everywhere (issue 11).
``RadianceField`` is not reused here: it holds one frame's grids (mutable, no gradients),
while the trainer needs the differentiable ``render_rays`` over grids it is optimising.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rerf_codec.field import ColorMLP, GridGeometry, RenderOutput, render_rays
from rerf_codec.field.sparse_grid import SparseGrid


@dataclass(frozen=True)
class FieldContext:
    mlp: ColorMLP
    geometry: GridGeometry
    density_shift: float
    background: torch.Tensor  # (3,) on the training device
    shading: str = "per_sample"

    def render(
        self,
        density: torch.Tensor | SparseGrid,
        features: torch.Tensor | SparseGrid,
        origins: torch.Tensor,
        dirs: torch.Tensor,
        occupancy: torch.Tensor | None,
        window: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
    ) -> RenderOutput:
        """``render_rays`` of grids (1,1,X,Y,Z) / (1,C,X,Y,Z) or ``SparseGrid``s in this context (differentiable
        in the grids); ``window``: ``occupied_window(occupancy)`` when the caller keeps it across calls."""
        return render_rays(
            density, features, self.mlp, self.geometry, self.density_shift, origins, dirs, self.background,
            occupancy=occupancy, shading=self.shading, occupancy_window=window,
        )  # fmt: skip
