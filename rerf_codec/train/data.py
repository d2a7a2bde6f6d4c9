"""One frame of a dataset as training material: rays, target colours, a visual hull.

Why a hull: the datasets carry alpha masks, and a voxel that projects onto
background in any camera that sees it cannot hold anything visible. Carving those
voxels before training means samples there are skipped from the first iteration
(most of a bounding box is empty), and rays that meet no hull voxel at all render
the background exactly, so they are dropped from the ray pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rerf_codec.datasets import Camera, Dataset, composite
from rerf_codec.field import GridGeometry, native_train
from rerf_codec.field.render import march_rays, occupied, occupied_window

HULL_ALPHA = 0.05  # pixels below this alpha count as background for carving
HULL_MARGIN_PX = 2  # the masks are dilated by this many pixels before carving


@dataclass
class FrameRays:
    """All training pixels of one frame (float32, on the training device)."""

    origins: torch.Tensor  # (N, 3)
    dirs: torch.Tensor  # (N, 3)
    rgb: torch.Tensor  # (N, 3) target, composited on the background
    frame: int
    alpha: torch.Tensor | None = None  # (N,) the images' alpha (the silhouette), when they have one


def load_frame_images(dataset: Dataset, frame: int, cameras: Sequence[Camera]) -> list[np.ndarray]:
    return [dataset.load_image(frame, c) for c in cameras]


def frame_rays(
    cameras: Sequence[Camera], images: Sequence[np.ndarray], background: Sequence[float], frame: int,
    device: torch.device,
) -> FrameRays:  # fmt: skip
    """Every pixel ray of ``cameras`` with its composited target colour.

    Written camera by camera into the final arrays: gathering per-camera arrays and concatenating
    them held every value twice (16 cameras at 1024²: 1.3 GB for 0.7 GB of rays)."""
    n = sum(cam.h * cam.w for cam in cameras)
    origins, dirs = np.empty((n, 3), np.float32), np.empty((n, 3), np.float32)
    rgb, alpha = np.empty((n, 3), np.float32), np.empty(n, np.float32)
    i = 0
    for cam, img in zip(cameras, images, strict=True):
        k = cam.h * cam.w
        o, d = cam.rays()
        origins[i : i + k], dirs[i : i + k] = o.reshape(-1, 3), d.reshape(-1, 3)
        rgb[i : i + k] = composite(img, background).reshape(-1, 3)
        alpha[i : i + k] = img[..., 3].reshape(-1)
        i += k
    return FrameRays(
        origins=torch.from_numpy(origins).to(device),
        dirs=torch.from_numpy(dirs).to(device),
        rgb=torch.from_numpy(rgb).to(device),
        frame=frame,
        alpha=torch.from_numpy(alpha).to(device),
    )


def visual_hull(geometry: GridGeometry, cameras: Sequence[Camera], images: Sequence[np.ndarray]) -> np.ndarray:
    """Bool (X, Y, Z): voxels that no camera sees as background (dilated masks, one-voxel dilated result)."""
    lin = [np.linspace(geometry.xyz_min[a], geometry.xyz_max[a], geometry.shape[a], dtype=np.float32) for a in range(3)]
    pts = np.stack(np.meshgrid(*lin, indexing="ij"), -1).reshape(-1, 3)
    keep = np.ones(pts.shape[0], dtype=bool)
    for cam, img in zip(cameras, images, strict=True):
        fg = torch.from_numpy(np.ascontiguousarray(img[..., 3] >= HULL_ALPHA, dtype=np.float32))[None, None]
        k = 2 * HULL_MARGIN_PX + 1
        fg = F.max_pool2d(fg, k, stride=1, padding=HULL_MARGIN_PX)[0, 0].numpy() > 0
        idx = np.nonzero(keep)[0]
        uv, depth = cam.project(pts[idx])
        with np.errstate(invalid="ignore"):
            u, v = uv[:, 0], uv[:, 1]
            inside = (depth > 0) & (u >= 0) & (u < cam.w) & (v >= 0) & (v < cam.h)
        u = np.where(inside, u, 0)
        v = np.where(inside, v, 0)
        ui = np.clip(u, 0, cam.w - 1).astype(np.int64)
        vi = np.clip(v, 0, cam.h - 1).astype(np.int64)
        background = inside & ~fg[vi, ui]
        keep[idx[background]] = False
    hull = torch.from_numpy(keep.reshape(geometry.shape).astype(np.float32))[None, None]
    return (F.max_pool3d(hull, 3, stride=1, padding=1)[0, 0] > 0).numpy()


def rays_meeting(occupancy: torch.Tensor, geometry: GridGeometry, rays: FrameRays, chunk: int = 16384) -> torch.Tensor:
    """Bool (N,): rays that pass through at least one occupied voxel (marched at one-voxel steps)."""
    out = torch.zeros(rays.origins.shape[0], dtype=torch.bool, device=occupancy.device)
    step = 0.5 * float(geometry.spacing.min())
    window = occupied_window(occupancy)
    if window is None:
        return out
    for i in range(0, out.shape[0], chunk):
        o, d = rays.origins[i : i + chunk], rays.dirs[i : i + chunk]
        if native_train.usable(o, d):  # the same samples, marched in C
            rid, _ = native_train.march_samples(o, d, occupancy, geometry, window, step)
        else:
            rid, _, pts, _, _ = march_rays(o, d, geometry, step, window)
            rid = rid[occupied(occupancy, geometry, pts)]
        out[i : i + chunk].index_fill_(0, rid.unique(), True)
    return out
