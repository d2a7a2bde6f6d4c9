"""Where the voxel grid sits in the world, and how rays meet it.

The grid-sequence format pins voxel ``i`` of an axis at
``xyz_min + i * (xyz_max - xyz_min) / (n - 1)`` (DESIGN.md), i.e. voxel centres on the
box's corners — the ``align_corners=True`` convention of ``torch.grid_sample``. Every
lookup in ``field`` goes through ``GridGeometry`` so trainer and player agree on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rerf_codec.errors import RerfUsageError


@dataclass(frozen=True)
class GridGeometry:
    """A grid's box and shape; ``voxel_size`` is the unit of the density's optical depth."""

    xyz_min: tuple[float, float, float]
    xyz_max: tuple[float, float, float]
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        lo = np.asarray(self.xyz_min, np.float64)
        hi = np.asarray(self.xyz_max, np.float64)
        if lo.shape != (3,) or hi.shape != (3,) or not (hi > lo).all() or not np.isfinite([lo, hi]).all():
            raise RerfUsageError(f"grid box must satisfy xyz_min < xyz_max, got {self.xyz_min} .. {self.xyz_max}")
        if len(self.shape) != 3 or min(self.shape) < 2:
            raise RerfUsageError(f"grid shape must be 3 sizes >= 2, got {self.shape}")
        object.__setattr__(self, "xyz_min", tuple(float(v) for v in lo))
        object.__setattr__(self, "xyz_max", tuple(float(v) for v in hi))
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))

    @property
    def spacing(self) -> np.ndarray:
        """World distance between neighbouring voxels, per axis."""
        return (np.asarray(self.xyz_max) - np.asarray(self.xyz_min)) / (np.asarray(self.shape) - 1)

    @property
    def voxel_size(self) -> float:
        """Mean voxel spacing: the length over which density is an optical depth per voxel."""
        return float(np.prod(self.spacing) ** (1 / 3))

    @staticmethod
    def for_resolution(
        xyz_min: tuple[float, float, float], xyz_max: tuple[float, float, float], resolution: int
    ) -> GridGeometry:
        """Cubic-ish voxels with ``resolution`` voxels along the box's longest axis."""
        lo = np.asarray(xyz_min, np.float64)
        hi = np.asarray(xyz_max, np.float64)
        ext = hi - lo
        step = ext.max() / (resolution - 1)
        shape = tuple(max(2, math.ceil(e / step - 1e-9) + 1) for e in ext)
        # Grow the box so the voxel spacing is exactly ``step`` on every axis.
        centre = (lo + hi) / 2
        half = (np.asarray(shape) - 1) * step / 2
        return GridGeometry(tuple(centre - half), tuple(centre + half), shape)

    def resized(self, shape: tuple[int, int, int]) -> GridGeometry:
        """The same box at another resolution (progressive growth)."""
        return GridGeometry(self.xyz_min, self.xyz_max, shape)

    def window_box(self, window: tuple[tuple[int, int, int], tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """World box (min, max) of a voxel window (lowest, highest index per axis), one voxel of margin
        past each end: a sample whose *rounded* index lies in the window can sit up to ½ voxel outside it."""
        sp = self.spacing
        lo = np.asarray(self.xyz_min) + (np.asarray(window[0]) - 1.0) * sp
        hi = np.asarray(self.xyz_min) + (np.asarray(window[1]) + 1.0) * sp
        return lo, hi

    def to_index(self, points: torch.Tensor) -> torch.Tensor:
        """World points (..., 3) → continuous voxel indices (..., 3)."""
        lo = torch.as_tensor(self.xyz_min, dtype=points.dtype, device=points.device)
        sp = torch.as_tensor(self.spacing, dtype=points.dtype, device=points.device)
        return (points - lo) / sp

    def to_unit(self, points: torch.Tensor) -> torch.Tensor:
        """World points (..., 3) → grid_sample coordinates in [-1, 1], axis order reversed (z, y, x)."""
        lo = torch.as_tensor(self.xyz_min, dtype=points.dtype, device=points.device)
        hi = torch.as_tensor(self.xyz_max, dtype=points.dtype, device=points.device)
        return ((points - lo) / (hi - lo) * 2 - 1).flip(-1)


def ray_box(
    origins: torch.Tensor, dirs: torch.Tensor, geometry: GridGeometry, near: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test: per ray, the entry and exit distance of the grid box (``t_far <= t_near`` means a miss)."""
    return ray_aabb(origins, dirs, geometry.xyz_min, geometry.xyz_max, near)


def ray_aabb(
    origins: torch.Tensor, dirs: torch.Tensor, box_min: Sequence[float], box_max: Sequence[float], near: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test against any axis-aligned box (world units): per ray, entry and exit distance."""
    lo = torch.as_tensor(box_min, dtype=origins.dtype, device=origins.device)
    hi = torch.as_tensor(box_max, dtype=origins.dtype, device=origins.device)
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (lo - origins) / safe
    t1 = (hi - origins) / safe
    t_near = torch.minimum(t0, t1).amax(-1).clamp_min(near)
    t_far = torch.maximum(t0, t1).amin(-1)
    return t_near, t_far


def box_mismatch(
    grid_min: tuple[float, ...], grid_max: tuple[float, ...], grid_shape: tuple[int, ...],
    data_min: tuple[float, ...], data_max: tuple[float, ...],
) -> str | None:  # fmt: skip
    """Why a dataset's bounding box is not the one a grid was fitted to, or None when it is.

    A trained grid's box is the dataset's grown by at most half a voxel per side (whole voxels at
    one spacing: ``GridGeometry.for_resolution``). Anything else means the images belong to another
    scene or another import, and their PSNR says nothing about the stream: 12 dB, not an error, is
    what evaluating the demo's stream against crane's images printed."""
    lo, hi = np.asarray(grid_min, np.float64), np.asarray(grid_max, np.float64)
    dlo, dhi = np.asarray(data_min, np.float64), np.asarray(data_max, np.float64)
    spacing = (hi - lo) / np.maximum(np.asarray(grid_shape, np.float64) - 1, 1)
    tol = 1e-4 * float(np.max(hi - lo))
    grow = np.stack([dlo - lo, hi - dhi])  # per side, how far the grid's box reaches past the dataset's
    if np.all((grow >= -tol) & (grow <= spacing / 2 + tol)):
        return None
    fmt = lambda v: "[" + ", ".join(f"{x:.4g}" for x in v) + "]"  # noqa: E731
    return (f"the dataset's bounding box {fmt(dlo)}–{fmt(dhi)} is not the one the grids were fitted to "
            f"({fmt(lo)}–{fmt(hi)}): were they trained on another dataset?")  # fmt: skip
