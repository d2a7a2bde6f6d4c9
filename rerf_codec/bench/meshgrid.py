"""Grid sequences voxelised from a captured mesh sequence (e.g. ``crane.npz``).

"Made from crane.npz: voxelise the moving surface into density + 12 features that move
with it." A real, non-rigid motion for the codec benchmark's residual/motion coding, in
the same conventions as ``rerf_codec.synthetic``:

* **Grid.** The box is the bounding box of the mesh over *all selected frames* (so the
  grid is fixed), padded on every side by ``padding`` x its longest edge. Voxels are
  cubes of edge ``h``; ``resolution`` voxels span the longest axis and the other axes get
  ``max(8, ceil(extent / h) + 1)`` voxels, their box widened symmetrically to exactly
  ``(n - 1) h``. Voxel index ``i`` sits at ``xyz_min + i * h`` (DVGO's
  ``align_corners=True``), so ``xyz_max = xyz_min + (shape - 1) * h``; grid axes are the
  mesh's x, y, z (crane: y up).
* **Density** (raw, pre-activation; the renderer adds ``density_shift`` ~ -13.8, so 0 is
  transparent) is a smooth *shell* around the surface, a function of the unsigned distance
  ``d`` (voxels) to the closest surface point: ``peak * (exp(-(d/s)^2) - e) / (1 - e)``
  with ``s = shell_voxels``, ``e = exp(-(band/s)^2)`` and ``band = max(3, 3 s)``, i.e. it
  reaches exactly 0 at ``band`` and is 0 beyond. ``peak`` varies smoothly over the
  surface in ``peak_density * [0.7, 1.3]`` (21..39 by default), like synthetic.py's
  10..40 shells. The surface need not be closed, so inside and outside are alike.
* **Features** (``C`` channels, about +-0.5 .. +-3) at a voxel are a smooth function of
  the closest surface point's *material* coordinate, its position in mesh frame 0
  (barycentric interpolation of the triangle's frame-0 vertices): a mix of low-frequency
  sinusoids shared by all channels plus one texture-scale sinusoid per channel, fixed by
  ``seed`` and scaled to the frame-0 mesh, so every subset and resolution of one mesh
  shows the same appearance, and the appearance moves with the surface. They fade out
  (smoothstep) between ``band / 2`` and ``band``.
* **Empty space** is exactly 0 (density and features) unless ``empty_noise > 0``: then
  deterministic gaussian noise is added everywhere, features with std ``empty_noise`` x
  the channel's range, density with std ``50 * empty_noise`` clipped to ``+-8`` std
  (``empty_noise=1e-3`` is synthetic.py's empty space).
* **True motion** of frame ``t >= 1`` (per 8^3 block, voxels, backward as
  ``rerf_codec.trainer_form.warp_previous``): the mean over the block's occupied voxels
  (``density > OCCUPANCY_THRESHOLD``) of ``q(t-1) - q(t)``, where ``q(t)`` is the closest
  surface point and ``q(t-1)`` the same material point (same triangle, same barycentric
  weights) in the previous *selected* frame; zeros for empty blocks and frame 0.

Closest points: every triangle is sampled on a barycentric lattice of spacing <= 0.5
voxel, voxels within reach of a sample are marked (a cube dilation), a ``cKDTree`` of the
samples gives each marked voxel its few nearest samples, and the voxel is projected
exactly onto those samples' triangles (the closest wins). Everything is deterministic.

CLI: ``python -m rerf_codec.bench.meshgrid MESH.npz -o SEQ [--resolution 128]
[--frames A:B] [--step K] [--force]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from rerf_codec.errors import RerfError, RerfFormatError, RerfUsageError
from rerf_codec.grids import MAX_CHANNELS, MAX_GRID_DIM, MAX_VOXELS, GridFrame, SequenceMeta
from rerf_codec.gridseq import SequenceWriter

__all__ = [
    "DENSITY_SHIFT",
    "MOTION_BLOCK",
    "OCCUPANCY_THRESHOLD",
    "MeshGridSpec",
    "load_mesh_sequence",
    "meshgrid_frames",
    "meshgrid_meta",
    "write_meshgrid_sequence",
]

#: DVGO's density shift for ``alpha_init = 1e-6``: ``log(1 / (1 - 1e-6) - 1)``.
DENSITY_SHIFT = math.log(1.0 / (1.0 - 1e-6) - 1.0)
#: A voxel with raw density above this is occupied (for the true block motion).
OCCUPANCY_THRESHOLD = 4.6
#: Edge of the cubic blocks the ground-truth motion is given for.
MOTION_BLOCK = 8
FPS = 30.0

_SAMPLE_SPACING = 0.5  # max lattice spacing of the surface samples along an edge (voxels)
_SAMPLE_SLACK = 0.5  # nearest-sample distance may exceed the surface distance by this much
_KNN = 4  # nearest samples whose triangles are tried per voxel
_PEAK_VARIATION = 0.3  # peak density in peak_density * [1 - v, 1 + v]
_N_LOW = 5  # shared low-frequency sinusoids (wavelength 0.25..0.8 x the mesh's size)
_TEX_WAVELENGTH = (0.045, 0.1)  # texture sinusoid per channel (x the mesh's size; ~5..12 voxels at 128)
_MAX_SAMPLES = 200_000_000  # refuse meshes whose triangles are absurdly large for the grid


@dataclass(frozen=True)
class MeshGridSpec:
    """How to voxelise a mesh sequence (lengths in voxels unless said otherwise)."""

    resolution: int = 128  # voxels along the longest bbox axis; other axes proportional (>= 8)
    feature_channels: int = 12
    frames: tuple[int, int] | None = None  # half-open [a, b) subset of the mesh frames; None = all
    step: int = 1  # take every step-th frame
    shell_voxels: float = 1.5  # density falloff width (voxels) around the surface
    peak_density: float = 30.0
    padding: float = 0.05  # bbox margin, fraction of the longest extent of the selected frames' bbox
    seed: int = 0
    empty_noise: float = 0.0  # 0: empty space exactly 0; 1e-3: synthetic.py's empty-space noise


# --------------------------------------------------------------------------- input


def load_mesh_sequence(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read ``vertices`` float32 [T, V, 3] and ``faces`` int64 [F, 3] from a mesh-sequence .npz.

    Every problem is a ``RerfFormatError`` naming the file and the field.
    """
    src = str(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RerfFormatError(f"{src}: mesh sequence file does not exist") from None
    except IsADirectoryError:
        raise RerfFormatError(f"{src}: is a directory, expected a mesh sequence .npz") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise RerfFormatError(f"{src}: not a readable .npz file: {exc}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise RerfFormatError(f"{src}: not an .npz archive (expected arrays 'vertices' and 'faces')")
    with npz:
        arrays = {}
        for key in ("vertices", "faces"):
            if key not in npz.files:
                raise RerfFormatError(f"{src}: field '{key}' is missing")
            try:
                arrays[key] = npz[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise RerfFormatError(f"{src}: field '{key}' cannot be read: {exc}") from None
    v, f = arrays["vertices"], arrays["faces"]
    if v.dtype.kind != "f" or v.ndim != 3 or v.shape[2] != 3 or v.shape[0] < 1 or v.shape[1] < 3:
        raise RerfFormatError(f"{src}: field 'vertices' must be a float array [T>=1, V>=3, 3], got {v.dtype} {v.shape}")
    v = v.astype(np.float32, copy=False)
    if not np.isfinite(v).all():
        raise RerfFormatError(f"{src}: field 'vertices' contains non-finite values")
    if f.dtype.kind not in "iu" or f.ndim != 2 or f.shape[1] != 3 or f.shape[0] < 1:
        raise RerfFormatError(f"{src}: field 'faces' must be an integer array [F>=1, 3], got {f.dtype} {f.shape}")
    nv = v.shape[1]
    if int(f.min()) < 0 or int(f.max()) >= nv:
        raise RerfFormatError(
            f"{src}: field 'faces' has vertex indices outside 0..{nv - 1} (min {int(f.min())}, max {int(f.max())})"
        )
    return np.ascontiguousarray(v), f.astype(np.int64)


def _check_number(name: str, value, lo: float, *, strict: bool) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if ok:
        x = float(value)
        ok = math.isfinite(x) and (x > lo if strict else x >= lo)
    if not ok:
        raise RerfUsageError(f"{name} must be a finite number {'>' if strict else '>='} {lo}, got {value!r}")
    return float(value)


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or not lo <= int(value) <= hi:
        raise RerfUsageError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _validate(spec: MeshGridSpec, num_mesh_frames: int) -> tuple[MeshGridSpec, range]:
    """Normalised spec and the selected mesh frame numbers."""
    if not isinstance(spec, MeshGridSpec):
        raise RerfUsageError(f"expected a MeshGridSpec, got {type(spec).__name__}")
    frames = spec.frames
    if frames is None:
        a, b = 0, num_mesh_frames
    else:
        if not isinstance(frames, tuple | list) or len(frames) != 2:
            raise RerfUsageError(f"frames must be (a, b) or None, got {frames!r}")
        a = _check_int(f"frames start (the mesh has {num_mesh_frames} frames)", frames[0], 0, num_mesh_frames - 1)
        b = _check_int(f"frames end (the mesh has {num_mesh_frames} frames)", frames[1], a + 1, num_mesh_frames)
    norm = MeshGridSpec(
        resolution=_check_int("resolution", spec.resolution, 8, MAX_GRID_DIM),
        feature_channels=_check_int("feature_channels", spec.feature_channels, 1, MAX_CHANNELS),
        frames=None if frames is None else (a, b),
        step=_check_int("step", spec.step, 1, 1_000_000),
        shell_voxels=_check_number("shell_voxels", spec.shell_voxels, 0.0, strict=True),
        peak_density=_check_number("peak_density", spec.peak_density, 0.0, strict=True),
        padding=_check_number("padding", spec.padding, 0.0, strict=False),
        seed=_check_int("seed", spec.seed, 0, 2**63 - 1),
        empty_noise=_check_number("empty_noise", spec.empty_noise, 0.0, strict=False),
    )
    if norm.shell_voxels > 64:
        raise RerfUsageError(f"shell_voxels must be <= 64, got {norm.shell_voxels}")
    return norm, range(a, b, norm.step)


def _check_vertices(vertices: np.ndarray, faces: np.ndarray | None = None) -> np.ndarray:
    v = np.asarray(vertices)
    if v.ndim != 3 or v.shape[2] != 3 or v.shape[0] < 1 or v.shape[1] < 3 or v.dtype.kind != "f":
        raise RerfUsageError(f"vertices must be a float array [T, V>=3, 3], got {v.dtype} {v.shape}")
    if not np.isfinite(v).all():
        raise RerfUsageError("vertices contain non-finite values")
    if faces is not None:
        f = np.asarray(faces)
        if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] < 1 or f.dtype.kind not in "iu":
            raise RerfUsageError(f"faces must be an integer array [F, 3], got {f.dtype} {f.shape}")
        if int(f.min()) < 0 or int(f.max()) >= v.shape[1]:
            raise RerfUsageError(f"faces index vertices outside 0..{v.shape[1] - 1}")
    return v


# --------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int, int]
    xyz_min: np.ndarray  # (3,) float64
    voxel: float  # edge h (world units)

    @property
    def xyz_max(self) -> np.ndarray:
        return self.xyz_min + (np.array(self.shape) - 1) * self.voxel


def _grid(vertices: np.ndarray, spec: MeshGridSpec, sel: range) -> _Grid:
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for t in sel:  # frame by frame: no float64 copy of the whole sequence
        lo = np.minimum(lo, vertices[t].min(axis=0).astype(np.float64))
        hi = np.maximum(hi, vertices[t].max(axis=0).astype(np.float64))
    ext = hi - lo
    longest = float(ext.max())
    if not longest > 0:
        raise RerfUsageError("the mesh has zero extent over the selected frames (all vertices coincide)")
    margin = spec.padding * longest
    lo -= margin
    hi += margin
    ext = hi - lo
    h = float(ext.max()) / (spec.resolution - 1)
    shape = []
    for a in range(3):
        n = spec.resolution if ext[a] >= ext.max() else max(8, math.ceil(ext[a] / h - 1e-9) + 1)
        shape.append(int(n))
    if math.prod(shape) > MAX_VOXELS:
        raise RerfUsageError(f"grid {shape} has more than 2**31 voxels; lower the resolution")
    size = (np.array(shape) - 1) * h
    xyz_min = 0.5 * (lo + hi) - 0.5 * size
    return _Grid(shape=(shape[0], shape[1], shape[2]), xyz_min=xyz_min, voxel=h)


def meshgrid_meta(vertices: np.ndarray, spec: MeshGridSpec, *, name: str | None = None) -> dict:
    """The ``sequence.json`` dict of the grid sequence made from ``vertices`` [T, V, 3] with ``spec``.

    ``name`` (e.g. the mesh file's name) goes into ``source.mesh``.
    """
    v = _check_vertices(vertices)
    spec, sel = _validate(spec, v.shape[0])
    grid = _grid(v, spec, sel)
    source = {
        "mesh": name,
        "frames": [sel.start, sel.stop],
        "step": spec.step,
        "mesh_frames": v.shape[0],
        **{k: val for k, val in asdict(spec).items() if k not in ("frames", "step")},
    }
    return {
        "format": "rerf-grid-sequence",
        "version": 1,
        "num_frames": len(sel),
        "first_frame": 0,
        "fps": FPS,
        "grid_shape": list(grid.shape),
        "feature_channels": spec.feature_channels,
        "xyz_min": [float(x) for x in grid.xyz_min],
        "xyz_max": [float(x) for x in grid.xyz_max],
        "density_shift": DENSITY_SHIFT,
        "motion_block": MOTION_BLOCK,
        "decoder": None,
        "source": source,
    }


# --------------------------------------------------------------------------- appearance


@dataclass(frozen=True)
class _Appearance:
    low_w: np.ndarray  # (3, N_LOW) angular frequencies (per world unit of the frame-0 position)
    low_phi: np.ndarray  # (N_LOW,)
    mix: np.ndarray  # (N_LOW, C)
    tex_w: np.ndarray  # (3, C)
    tex_phi: np.ndarray  # (C,)
    tex_amp: np.ndarray  # (C,)
    bias: np.ndarray  # (C,)
    peak_w: np.ndarray  # (3,)
    peak_phi: float
    ranges: np.ndarray  # (C,) nominal channel ranges (2 x scale)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _appearance(vertices0: np.ndarray, channels: int, seed: int) -> _Appearance:
    """Deterministic feature/peak fields over the frame-0 surface (scaled to its size)."""
    size = float((vertices0.max(axis=0) - vertices0.min(axis=0)).astype(np.float64).max())
    size = size if size > 0 else 1.0
    rng = np.random.default_rng([seed, 0x6D65, channels])
    scales = np.array([2.0]) if channels == 1 else rng.permutation(np.geomspace(0.5, 3.0, channels))
    low_wl = rng.uniform(0.25, 0.8, _N_LOW) * size
    low_w = (_unit(rng, _N_LOW) * (2 * math.pi / low_wl)[:, None]).T
    low_phi = rng.uniform(0, 2 * math.pi, _N_LOW)
    mix = rng.standard_normal((_N_LOW, channels))
    mix *= 0.75 * scales / np.maximum(np.abs(mix).sum(axis=0), 1e-9)
    tex_wl = rng.uniform(*_TEX_WAVELENGTH, channels) * size
    tex_w = (_unit(rng, channels) * (2 * math.pi / tex_wl)[:, None]).T
    tex_phi = rng.uniform(0, 2 * math.pi, channels)
    tex_amp = 0.2 * scales
    bias = 0.05 * scales * rng.uniform(-1.0, 1.0, channels)
    peak_w = _unit(rng, 1)[0] * (2 * math.pi / (0.5 * size))
    peak_phi = float(rng.uniform(0, 2 * math.pi))
    return _Appearance(low_w, low_phi, mix, tex_w, tex_phi, tex_amp, bias, peak_w, peak_phi, 2.0 * scales)


def _features(app: _Appearance, x0: np.ndarray) -> np.ndarray:
    """Features (n, C) float32 at frame-0 positions ``x0`` (n, 3), float64 world units."""
    low = np.sin(x0 @ app.low_w + app.low_phi)
    tex = np.sin(x0 @ app.tex_w + app.tex_phi)
    return (low @ app.mix + tex * app.tex_amp + app.bias).astype(np.float32)


def _peak(app: _Appearance, x0: np.ndarray, peak_density: float) -> np.ndarray:
    return peak_density * (1.0 + _PEAK_VARIATION * np.sin(x0 @ app.peak_w + app.peak_phi))


# --------------------------------------------------------------------------- closest points


_LATTICES: dict[int, np.ndarray] = {}


def _lattice(n: int) -> np.ndarray:
    """Barycentric lattice of a triangle with ``n`` subdivisions: (k, 3) float64."""
    lat = _LATTICES.get(n)
    if lat is None:
        i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = i + j <= n
        i, j = i[keep], j[keep]
        lat = np.stack([n - i - j, i, j], axis=1).astype(np.float64) / n
        if len(_LATTICES) < 256:
            _LATTICES[n] = lat
    return lat


def _surface_samples(tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lattice samples of triangles ``tri`` (F, 3, 3) (voxel coords): points (N, 3), face ids (N,)."""
    edges = np.stack([tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 1], tri[:, 0] - tri[:, 2]], axis=1)
    longest = np.sqrt((edges**2).sum(axis=2)).max(axis=1)
    nsub = np.maximum(1, np.ceil(longest / _SAMPLE_SPACING - 1e-9)).astype(np.int64)
    total = int(((nsub + 1) * (nsub + 2) // 2).sum())
    if total > _MAX_SAMPLES:
        raise RerfUsageError(
            f"the mesh would need {total} surface samples at this resolution (triangles too large); "
            "lower the resolution or subdivide the mesh"
        )
    pts = np.empty((total, 3), dtype=np.float64)
    fid = np.empty(total, dtype=np.int64)
    pos = 0
    for n in np.unique(nsub):
        faces_n = np.flatnonzero(nsub == n)
        lat = _lattice(int(n))
        k = lat.shape[0] * faces_n.shape[0]
        pts[pos : pos + k] = np.einsum("kj,fjc->fkc", lat, tri[faces_n]).reshape(-1, 3)
        fid[pos : pos + k] = np.repeat(faces_n, lat.shape[0])
        pos += k
    return pts, fid


def _closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest points of triangles (a, b, c) to points ``p`` (all (n, 3) float64).

    Returns (squared distance (n,), barycentric weights (n, 3)). Ericson, "Real-Time
    Collision Detection" 5.1.5, vectorised; degenerate triangles are handled.
    """
    ab, ac = b - a, c - a
    ap, bp, cp = p - a, p - b, p - c
    d1 = np.einsum("ij,ij->i", ab, ap)
    d2 = np.einsum("ij,ij->i", ac, ap)
    d3 = np.einsum("ij,ij->i", ab, bp)
    d4 = np.einsum("ij,ij->i", ac, bp)
    d5 = np.einsum("ij,ij->i", ab, cp)
    d6 = np.einsum("ij,ij->i", ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2

    def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.clip(num / np.where(den == 0, 1.0, den), 0.0, 1.0)

    # Default: the face interior.
    den = va + vb + vc
    v = np.where(den != 0, vb / np.where(den == 0, 1.0, den), 0.0)
    w = np.where(den != 0, vc / np.where(den == 0, 1.0, den), 0.0)
    u = 1.0 - v - w
    # Edge regions, then vertex regions (later assignments take priority, as in the
    # sequential algorithm where vertex tests come first).
    m = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)  # edge BC
    t = safe_div(d4 - d3, (d4 - d3) + (d5 - d6))
    u, v, w = np.where(m, 0.0, u), np.where(m, 1.0 - t, v), np.where(m, t, w)
    m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)  # edge AC
    t = safe_div(d2, d2 - d6)
    u, v, w = np.where(m, 1.0 - t, u), np.where(m, 0.0, v), np.where(m, t, w)
    m = (d6 >= 0) & (d5 <= d6)  # vertex C
    u, v, w = np.where(m, 0.0, u), np.where(m, 0.0, v), np.where(m, 1.0, w)
    m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)  # edge AB
    t = safe_div(d1, d1 - d3)
    u, v, w = np.where(m, 1.0 - t, u), np.where(m, t, v), np.where(m, 0.0, w)
    m = (d3 >= 0) & (d4 <= d3)  # vertex B
    u, v, w = np.where(m, 0.0, u), np.where(m, 1.0, v), np.where(m, 0.0, w)
    m = (d1 <= 0) & (d2 <= 0)  # vertex A
    u, v, w = np.where(m, 1.0, u), np.where(m, 0.0, v), np.where(m, 0.0, w)
    q = u[:, None] * a + v[:, None] * b + w[:, None] * c
    diff = p - q
    return np.einsum("ij,ij->i", diff, diff), np.stack([u, v, w], axis=1)


def _dilate_cube(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^3 cube, separably."""
    out = mask
    for axis in range(3):
        src = out
        out = src.copy()
        n = src.shape[axis]
        for s in range(1, min(r, n - 1) + 1):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis] = slice(0, n - s)
            hi[axis] = slice(s, n)
            out[tuple(hi)] |= src[tuple(lo)]
            out[tuple(lo)] |= src[tuple(hi)]
    return out


def _closest_points(
    pts: np.ndarray, faces: np.ndarray, shape: tuple[int, int, int], band: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Voxels within ``band`` of the surface with vertices ``pts`` (V, 3) in voxel coords.

    Returns (flat voxel indices (n,), distance (n,), face (n,), barycentric (n, 3)).
    """
    tri = pts[faces]  # (F, 3, 3)
    samples, sample_face = _surface_samples(tri)
    # Candidate voxels: near the rounded samples (Chebyshev reach covers band + slack + rounding).
    mask = np.zeros(shape, dtype=bool)
    vox = np.rint(samples).astype(np.int64)
    for a in range(3):
        np.clip(vox[:, a], 0, shape[a] - 1, out=vox[:, a])
    mask[vox[:, 0], vox[:, 1], vox[:, 2]] = True
    del vox
    reach = math.floor(band + _SAMPLE_SLACK + math.sqrt(3) / 2)
    cand = np.flatnonzero(_dilate_cube(mask, reach))
    del mask
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 3)))
    if cand.size == 0:
        return empty
    p = np.stack(np.unravel_index(cand, shape), axis=1).astype(np.float64)
    tree = cKDTree(samples, balanced_tree=False, compact_nodes=False)  # ~4x faster queries here
    k = min(_KNN, samples.shape[0])
    dist, idx = tree.query(p, k=k, distance_upper_bound=band + _SAMPLE_SLACK, workers=-1)
    if k == 1:
        dist, idx = dist[:, None], idx[:, None]
    near = np.isfinite(dist[:, 0])
    cand, p, idx = cand[near], p[near], idx[near]
    if cand.size == 0:
        return empty
    valid = idx < samples.shape[0]
    fk = np.where(valid, sample_face[np.minimum(idx, samples.shape[0] - 1)], -1)
    # Try each distinct face among the k nearest samples once per voxel.
    todo = valid.copy()
    for j in range(1, k):
        for i in range(j):
            todo[:, j] &= fk[:, j] != fk[:, i]
    rows, cols = np.nonzero(todo)
    f = fk[rows, cols]
    d2, bary = _closest_on_triangles(p[rows], tri[f, 0], tri[f, 1], tri[f, 2])
    best_d2 = np.full(todo.shape, np.inf)
    best_d2[rows, cols] = d2
    choice = np.argmin(best_d2, axis=1)
    slot = np.full(todo.shape, -1, dtype=np.int64)
    slot[rows, cols] = np.arange(rows.size)
    pick = slot[np.arange(todo.shape[0]), choice]
    d = np.sqrt(best_d2[np.arange(todo.shape[0]), choice])
    keep = d < band
    pick = pick[keep]
    return cand[keep], d[keep], f[pick], bary[pick]


# --------------------------------------------------------------------------- frames


def _block_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    return (-(-shape[0] // MOTION_BLOCK), -(-shape[1] // MOTION_BLOCK), -(-shape[2] // MOTION_BLOCK))


def meshgrid_frames(
    vertices: np.ndarray, faces: np.ndarray, spec: MeshGridSpec
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(density (X,Y,Z), features (C,X,Y,Z), true_block_motion (3,BX,BY,BZ))`` per selected frame.

    All float32, generated lazily one frame at a time; see the module docstring for the
    definitions. The grid is ``meshgrid_meta(vertices, spec)``'s.
    """
    v = _check_vertices(vertices, faces)
    spec, sel = _validate(spec, v.shape[0])
    return _frames(v, np.asarray(faces, dtype=np.int64), spec, sel)


def _frames(
    v: np.ndarray, faces: np.ndarray, spec: MeshGridSpec, sel: range
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    grid = _grid(v, spec, sel)
    shape = grid.shape
    c = spec.feature_channels
    app = _appearance(v[0], c, spec.seed)
    x0_vertices = v[0].astype(np.float64)
    s = spec.shell_voxels
    band = max(3.0, 3.0 * s)
    floor = math.exp(-((band / s) ** 2))
    bshape = _block_shape(shape)
    nblocks = math.prod(bshape)
    prev_pts = None
    for t, mesh_t in enumerate(sel):
        pts = (v[mesh_t].astype(np.float64) - grid.xyz_min) / grid.voxel
        flat, d, f, bary = _closest_points(pts, faces, shape, band)
        tri_f = faces[f]
        x0 = np.einsum("nj,njc->nc", bary, x0_vertices[tri_f])
        dens = _peak(app, x0, spec.peak_density) * np.maximum(np.exp(-((d / s) ** 2)) - floor, 0.0) / (1.0 - floor)
        env = np.clip((band - d) / (0.5 * band), 0.0, 1.0)
        env = env * env * (3.0 - 2.0 * env)
        feat = _features(app, x0) * env[:, None].astype(np.float32)

        if spec.empty_noise > 0:
            rng = np.random.default_rng([spec.seed, 0x6E, t])
            density = rng.standard_normal(shape, dtype=np.float32) * np.float32(50.0 * spec.empty_noise)
            lim = np.float32(400.0 * spec.empty_noise)
            np.clip(density, -lim, lim, out=density)
            features = rng.standard_normal((c, *shape), dtype=np.float32)
            features *= (spec.empty_noise * app.ranges).astype(np.float32)[:, None, None, None]
            dflat = density.reshape(-1)
            dflat[flat] += dens.astype(np.float32)
            features.reshape(c, -1)[:, flat] += feat.T
        else:
            density = np.zeros(shape, dtype=np.float32)
            features = np.zeros((c, *shape), dtype=np.float32)
            dflat = density.reshape(-1)
            dflat[flat] = dens.astype(np.float32)
            features.reshape(c, -1)[:, flat] = feat.T

        motion = np.zeros((3, nblocks), dtype=np.float32)
        if prev_pts is not None:
            occ = dflat[flat] > OCCUPANCY_THRESHOLD
            if np.any(occ):
                tri_o = tri_f[occ]
                w = bary[occ]
                q_now = np.einsum("nj,njc->nc", w, pts[tri_o])
                q_prev = np.einsum("nj,njc->nc", w, prev_pts[tri_o])
                disp = q_prev - q_now
                ijk = np.unravel_index(flat[occ], shape)
                b = np.ravel_multi_index(tuple(i // MOTION_BLOCK for i in ijk), bshape)
                count = np.bincount(b, minlength=nblocks)
                has = count > 0
                for a in range(3):
                    msum = np.bincount(b, weights=disp[:, a], minlength=nblocks)
                    motion[a, has] = (msum[has] / count[has]).astype(np.float32)
        prev_pts = pts
        yield density, features, motion.reshape(3, *bshape)


# --------------------------------------------------------------------------- on disk


def _occupied_blocks(density: np.ndarray) -> np.ndarray:
    """(BX, BY, BZ) bool: blocks holding a voxel with density > OCCUPANCY_THRESHOLD."""
    bs = _block_shape(density.shape)
    pad = np.zeros([b * MOTION_BLOCK for b in bs], dtype=bool)
    pad[: density.shape[0], : density.shape[1], : density.shape[2]] = density > OCCUPANCY_THRESHOLD
    return pad.reshape(bs[0], MOTION_BLOCK, bs[1], MOTION_BLOCK, bs[2], MOTION_BLOCK).any(axis=(1, 3, 5))


def _occupied_block_fraction(density: np.ndarray) -> float:
    return float(_occupied_blocks(density).mean())


def write_meshgrid_sequence(
    mesh_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    spec: MeshGridSpec,
    *,
    force: bool = False,
    progress: Callable[[int, int, np.ndarray, np.ndarray, float], None] | None = None,
) -> dict:
    """Voxelise ``mesh_path`` into the grid-sequence directory ``out_dir`` (atomically); return its meta.

    ``progress(index, num_frames, density, true_block_motion, seconds)`` is called after
    each frame is generated.
    """
    vertices, faces = load_mesh_sequence(mesh_path)
    meta_dict = meshgrid_meta(vertices, spec, name=Path(mesh_path).name)
    meta = SequenceMeta.from_json_dict(meta_dict, "<meshgrid>")
    n = meta.num_frames
    with SequenceWriter(out_dir, meta, force=force) as writer:
        it = meshgrid_frames(vertices, faces, spec)
        for i in range(n):
            t0 = time.perf_counter()
            density, features, motion = next(it)
            seconds = time.perf_counter() - t0
            writer.write_frame(i, GridFrame(density=density, features=features))
            if progress is not None:
                progress(i, n, density, motion, seconds)
            del density, features
    return meta_dict


def _frame_range(text: str) -> tuple[int, int]:
    a, sep, b = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(a), int(b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B (two integers), got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m rerf_codec.bench.meshgrid MESH.npz -o SEQ``: voxelise a mesh sequence into a grid sequence."""
    d = MeshGridSpec()
    ap = _Parser(prog="python -m rerf_codec.bench.meshgrid", description=main.__doc__)
    ap.add_argument("mesh", help="mesh sequence .npz (vertices [T,V,3], faces [F,3])")
    ap.add_argument("-o", "--out", required=True, help="output grid-sequence directory")
    ap.add_argument("--resolution", type=int, default=d.resolution, help="voxels along the longest axis")
    ap.add_argument("--frames", type=_frame_range, default=None, metavar="A:B", help="mesh frames [A, B)")
    ap.add_argument("--step", type=int, default=d.step, help="take every K-th frame")
    ap.add_argument("--channels", type=int, default=d.feature_channels)
    ap.add_argument("--shell", type=float, default=d.shell_voxels, help="shell width (voxels)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--empty-noise", type=float, default=d.empty_noise)
    ap.add_argument("--force", action="store_true", help="replace an existing output sequence")
    a = ap.parse_args(argv)
    spec = MeshGridSpec(
        resolution=a.resolution,
        feature_channels=a.channels,
        frames=a.frames,
        step=a.step,
        shell_voxels=a.shell,
        seed=a.seed,
        empty_noise=a.empty_noise,
    )

    def report(i: int, n: int, density: np.ndarray, motion: np.ndarray, seconds: float) -> None:
        occ = _occupied_blocks(density)
        mag = np.sqrt((motion.astype(np.float64) ** 2).sum(axis=0))[occ]
        mean = float(mag.mean()) if mag.size else 0.0
        print(
            f"frame {i + 1}/{n}: grid {'x'.join(map(str, density.shape))}, "
            f"occupied blocks {_occupied_block_fraction(density):.1%}, "
            f"mean |motion| {mean:.3f} vox, {seconds:.2f} s",
            flush=True,
        )

    try:
        write_meshgrid_sequence(a.mesh, a.out, spec, force=a.force, progress=report)
    except RerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
