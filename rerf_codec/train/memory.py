"""Whether a training run fits in this machine's memory, checked before anything is written.

Why: the trainer's peak memory grows with the grid (a residual frame's dense grids, sparse tables,
gradients and Adam moments, and the keyframe's: about 0.43 kB per voxel at 13 channels) and with the
training images (each frame's rays, colours and masks: about 60 bytes per pixel). ``--resolution
384`` needs ~23 GB, a capture of 74 cameras at 1080p imported without ``--downscale`` ~9 GB; on a
laptop either ends, after minutes of work, in the kernel's out-of-memory kill: no message, no exit
code the user can read. A run that cannot fit is refused up front with what it needs, what the
machine has and the largest resolution that fits.

The figures are peak resident set sizes measured on CPU (BENCHMARKS, "Session 14"); a CUDA run keeps
its grids and rays on the GPU, so it is not checked here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rerf_codec.datasets import DatasetMeta
from rerf_codec.errors import RerfUsageError
from rerf_codec.field import Camera, GridGeometry
from rerf_codec.train.config import TrainConfig

BYTES_PER_VOXEL_CHANNEL = 33
"""Peak per voxel and grid channel (density + features), reached in a residual frame: the demo scene's
first two frames at 128³ / 192³ / 256³ with 13 channels peaked at 1.20 / 2.93 / 6.76 GB (this
estimate: 6–14 % above)."""
BYTES_PER_PIXEL = 60
"""Peak per training pixel: 16 cameras at 1024² on a 32³ grid, two frames, peaked at 1.40 GB."""
BASE_BYTES = 512 * 2**20
"""torch, the compiled kernels and the Python process itself (0.45–0.67 GB at small sizes)."""
GIB = 2**30


@dataclass(frozen=True)
class MachineMemory:
    """Bytes the process can have at most (RAM + swap, or a cgroup's limit) and can have now."""

    limit: int
    available: int


def estimate_peak_bytes(grid_shape: Sequence[int], channels: int, train_pixels: int) -> int:
    """Peak memory of training a grid of ``grid_shape`` with ``channels`` feature channels on
    ``train_pixels`` training pixels per frame (CPU)."""
    voxels = math.prod(int(n) for n in grid_shape)
    return BASE_BYTES + BYTES_PER_VOXEL_CHANNEL * voxels * (1 + channels) + BYTES_PER_PIXEL * train_pixels


def train_pixels(cameras: Sequence[Camera]) -> int:
    """Pixels per frame the trainer holds as rays."""
    return sum(c.w * c.h for c in cameras)


def _meminfo(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return out


def _cgroup_limit(root: Path) -> int | None:
    """cgroup v2 ``memory.max`` (+ ``memory.swap.max``) of this process's group, if it sets one."""
    try:
        rel = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
        group = root / rel.strip().lstrip("/")
        mem = (group / "memory.max").read_text().strip()
    except (OSError, StopIteration):
        return None
    if not mem.isdigit():
        return None
    try:
        swap = (group / "memory.swap.max").read_text().strip()
    except OSError:
        swap = "0"
    return int(mem) + (int(swap) if swap.isdigit() else 0)


def machine_memory(meminfo: Path = Path("/proc/meminfo"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> MachineMemory | None:
    """This machine's memory from ``/proc/meminfo`` and the cgroup limit; None where they cannot be read
    (not Linux), and then nothing is checked."""
    try:
        info = _meminfo(meminfo)
        limit = info["MemTotal"] + info.get("SwapTotal", 0)
        available = info.get("MemAvailable", info["MemTotal"]) + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError):
        return None
    group = _cgroup_limit(cgroup_root)
    if group is not None:
        limit, available = min(limit, group), min(available, group)
    return MachineMemory(limit, available)


def _gb(n: float) -> str:
    return f"{n / GIB:.1f} GB"


def check_training_memory(
    xyz_min: Sequence[float], xyz_max: Sequence[float], resolution: int, channels: int, train_pixels: int,
    device_type: str, memory: MachineMemory | None = None,
) -> str | None:  # fmt: skip
    """Refuse (``RerfUsageError``) a CPU run whose estimated peak exceeds what the machine can hold at
    all; return a note when it exceeds what is free now (other programs may give it back), else None."""
    if device_type != "cpu":
        return None
    mem = memory if memory is not None else machine_memory()
    if mem is None:
        return None
    def peak(r: int) -> tuple[tuple[int, int, int], int]:
        shape = GridGeometry.for_resolution(tuple(xyz_min), tuple(xyz_max), r).shape
        return shape, estimate_peak_bytes(shape, channels, train_pixels)

    shape, need = peak(resolution)
    if need > mem.limit:
        grid = "×".join(map(str, shape))
        have = f"this machine has {_gb(mem.limit)}"
        images = BASE_BYTES + BYTES_PER_PIXEL * train_pixels
        if images > mem.limit:
            raise RerfUsageError(f"training needs about {_gb(need)} of memory, its {train_pixels:,} training pixels per "
                                 f"frame alone {_gb(images)}; {have}: import the dataset downscaled")  # fmt: skip
        fits = [r for r in range(8, resolution, 8) if peak(r)[1] <= mem.limit]
        hint = f"use {fits[-1]} or less" if fits else "no resolution fits with these images"
        raise RerfUsageError(f"{resolution}: training a {grid} grid needs about {_gb(need)} of memory; {have}: {hint}",
                             param="resolution")  # fmt: skip
    if need > mem.available:
        return f"training needs about {_gb(need)} of memory and {_gb(mem.available)} is free now"
    return None


def check_run(meta: DatasetMeta, config: TrainConfig, device_type: str) -> str | None:
    """:func:`check_training_memory` for training ``meta``'s cameras with ``config`` (both trainers)."""
    return check_training_memory(meta.xyz_min, meta.xyz_max, config.resolution, config.feature_channels,
                                 train_pixels(meta.train_cameras), device_type)  # fmt: skip
