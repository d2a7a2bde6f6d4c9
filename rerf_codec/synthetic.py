"""Synthetic ReRF-style grid sequences that stand in for trained DVGO/ReRF grids.

A frame is a density grid ``(X, Y, Z)`` (raw, pre-activation values; DVGO adds
``density_shift`` before the softplus) and a feature grid ``(C, X, Y, Z)``. The content
is built to have the statistics of a trained grid, so that codec benchmarks on it are
honest:

* **Empty space** keeps its initialisation: density ~0 (transparent with the shift of
  -13.8) plus tiny clipped noise (``|x| <= 0.4``), features ~0 plus noise of std
  ``1e-3`` of the channel's range.
* **Objects** (3-6 ellipsoids, tori, bumpy blobs, rounded boxes; their union) are
  hollow *shells*: the density peaks at the surface (10..40, varying smoothly over the
  surface), falls off over 1-3 voxels outside and a few voxels inside, and is back to 0
  deep inside. Features live in a band around the surface, are smooth functions of
  the object's *material* coordinates (low-frequency sinusoids and gaussians mixed
  into correlated channels, plus a weaker texture-scale term; channel ranges from
  about +-0.5 to +-3), and carry per-frame "training" noise: gaussian of std
  ``spec.noise`` x channel range with a heavier tail on a few percent of voxels.
* **Motion**: every object moves rigidly along a smooth Lissajous path (peak speed
  ``spec.motion`` voxels per frame for the fastest one) and one rotates slowly. Frame
  ``t`` is the analytic fields evaluated at the inverse-transformed coordinates, so
  there is no resampling drift; most of the noise is attached to the material (it moves with
  the content, as in trained ReRF grids) and a ``noise_innovation`` fraction of the voxels
  redraw theirs each frame (ReRF's L1-sparse residual).
* The size of the objects is calibrated (bisection at frame 0, deterministic) so that
  the fraction of occupied 8^3 blocks (any voxel with density > 5.0) is about
  ``spec.occupancy``.

Everything is deterministic: the same spec gives bit-identical float32 arrays.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rerf_codec.errors import RerfError, RerfUsageError

__all__ = [
    "DENSITY_SHIFT",
    "MOTION_BLOCK",
    "OCCUPANCY_THRESHOLD",
    "SyntheticSpec",
    "synthetic_frames",
    "synthetic_meta",
    "write_synthetic_sequence",
]

#: DVGO's density shift for ``alpha_init = 1e-6``: ``log(1 / (1 - 1e-6) - 1)``.
DENSITY_SHIFT = math.log(1.0 / (1.0 - 1e-6) - 1.0)
#: A block whose max raw density is not above this is empty (as the codec treats it).
OCCUPANCY_THRESHOLD = 5.0
#: Edge of the cubic blocks the ground-truth motion is given for.
MOTION_BLOCK = 8
FPS = 30.0

# Density profile across the surface (signed distance s, voxels, > 0 outside).
_W_OUT = 1.2  # e-folding width of the falloff outside the surface
_W_IN = 2.5  # ... and inside
_BAND_OUT = 4.5  # content is evaluated for -_BAND_IN < s < _BAND_OUT only
_BAND_IN = 9.0
_ENV_OUT = 1.5  # features at full strength for -_ENV_IN <= s <= _ENV_OUT
_ENV_IN = 5.0
# Empty space.
_EMPTY_DENSITY_STD = 0.05
_EMPTY_DENSITY_CLIP = 0.4
_EMPTY_FEATURE_REL = 1e-3  # std relative to the channel's range
# Heavy tail of the "training" noise.
_TAIL_FRACTION = 0.03
_TAIL_FACTOR = 5.0
# Feature bases per object.
_N_LOW = 4  # low-frequency sinusoids (wavelength 1.5..4 object sizes)
_N_MID = 2  # texture-scale sinusoids (wavelength 5..12 voxels)
_N_GAUSS = 2

_KINDS = ("torus", "ellipsoid", "blob", "box", "ellipsoid", "blob")


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic sequence (all lengths in voxels)."""

    shape: tuple[int, int, int] = (128, 128, 128)
    feature_channels: int = 12  # + density => 13 channels in total (ReRF: density + 12 features)
    num_frames: int = 13
    occupancy: float = 0.10  # target fraction of occupied 8^3 blocks
    noise: float = 0.02  # std of the "trained-grid" noise relative to the feature range
    motion: float = 1.5  # voxels per frame of the moving content (peak), 0 => static
    seed: int = 0
    noise_innovation: float = 0.1  # fraction of occupied voxels whose noise is redrawn each frame (ReRF: >= 90% of residual voxels are zero); the rest moves with the material


def _validate(spec: SyntheticSpec) -> SyntheticSpec:
    if not isinstance(spec, SyntheticSpec):
        raise RerfUsageError(f"expected a SyntheticSpec, got {type(spec).__name__}")
    shape = tuple(spec.shape)
    if len(shape) != 3 or not all(isinstance(n, int | np.integer) and n >= 1 for n in shape):
        raise RerfUsageError(f"synthetic shape must be three positive ints, got {spec.shape!r}")
    if not 1 <= spec.feature_channels <= 1024:
        raise RerfUsageError(f"feature_channels must be in 1..1024, got {spec.feature_channels}")
    if spec.num_frames < 1:
        raise RerfUsageError(f"num_frames must be >= 1, got {spec.num_frames}")
    if not 0.0 < spec.occupancy < 1.0:
        raise RerfUsageError(f"occupancy must be in (0, 1), got {spec.occupancy}")
    if not (spec.noise >= 0.0 and math.isfinite(spec.noise)):
        raise RerfUsageError(f"noise must be >= 0, got {spec.noise}")
    if not 0.0 <= spec.noise_innovation <= 1.0:
        raise RerfUsageError(f"noise_innovation must be in 0..1, got {spec.noise_innovation}")
    if not (spec.motion >= 0.0 and math.isfinite(spec.motion)):
        raise RerfUsageError(f"motion must be >= 0, got {spec.motion}")
    if spec.seed < 0:
        raise RerfUsageError(f"seed must be >= 0, got {spec.seed}")
    return SyntheticSpec(
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        feature_channels=int(spec.feature_channels),
        num_frames=int(spec.num_frames),
        occupancy=float(spec.occupancy),
        noise=float(spec.noise),
        motion=float(spec.motion),
        seed=int(spec.seed),
        noise_innovation=float(spec.noise_innovation),
    )


def synthetic_meta(spec: SyntheticSpec) -> dict:
    """The ``sequence.json`` dict of the sequence ``spec`` describes."""
    spec = _validate(spec)
    synth = asdict(spec)
    synth["shape"] = list(spec.shape)
    return {
        "format": "rerf-grid-sequence",
        "version": 1,
        "num_frames": spec.num_frames,
        "fps": FPS,
        "grid_shape": list(spec.shape),
        "feature_channels": spec.feature_channels,
        "xyz_min": [-1.0, -1.0, -1.0],
        "xyz_max": [1.0, 1.0, 1.0],
        "density_shift": DENSITY_SHIFT,
        "motion_block": MOTION_BLOCK,
        "decoder": None,
        "synthetic": synth,
    }


# --------------------------------------------------------------------------- geometry


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def _unit(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    v = rng.standard_normal(3 if n is None else (n, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class _Object:
    """One rigid object: geometry in material coordinates, its path and its fields."""

    def __init__(self, kind: str, size: float, proto: dict, center0: np.ndarray, rot0: np.ndarray):
        self.kind = kind
        self.size = size
        self.center0 = center0
        self.rot0 = rot0
        p = proto
        if kind == "ellipsoid":
            self.radii = (size * p["radii"]).astype(np.float32)
            surf = float(self.radii.max())
        elif kind == "torus":
            self.major = np.float32(size)
            self.minor = np.float32(size * p["minor"])
            surf = float(self.major + self.minor)
        elif kind == "blob":
            self.radius = np.float32(size * 0.9)
            self.bump_w = p["bump_w"].astype(np.float32)  # (3, 3) frequencies on the unit direction
            self.bump_phi = p["bump_phi"].astype(np.float32)
            self.bump_amp = p["bump_amp"].astype(np.float32)
            surf = float(self.radius * (1.0 + self.bump_amp.sum()))
        elif kind == "box":
            self.half = (size * p["half"]).astype(np.float32)
            self.round = np.float32(size * 0.2)
            surf = float(np.linalg.norm(self.half) + self.round)
        else:  # pragma: no cover - internal
            raise AssertionError(kind)
        self.surface_radius = surf
        self.bound = surf + _BAND_OUT + 1.0
        # Peak shell density, a smooth field over the surface in [lo, hi].
        self.peak_lo = np.float32(p["peak_lo"])
        self.peak_hi = np.float32(p["peak_hi"])
        self.peak_w = (p["peak_dir"] * (2 * math.pi / (p["peak_wl"] * size))).astype(np.float32)
        self.peak_phi = np.float32(p["peak_phi"])
        # Motion (set by _attach_motion); static by default.
        self.amp = np.zeros(3)
        self.omega = np.zeros(3)
        self.phase = np.zeros(3)
        self.rot_axis = np.array([0.0, 0.0, 1.0])
        self.rot_rate = 0.0

    # -- pose -------------------------------------------------------------------------
    def pose(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(center, rotation) at frame ``t``: world = center + rotation @ material."""
        c = self.center0 + self.amp * (np.sin(self.omega * t + self.phase) - np.sin(self.phase))
        r = self.rot0 if self.rot_rate == 0.0 else _axis_angle(self.rot_axis, self.rot_rate * t) @ self.rot0
        return c, r

    # -- fields -----------------------------------------------------------------------
    def sdf(self, u0: np.ndarray, u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
        """Approximate signed distance (voxels) at material coordinates."""
        if self.kind == "ellipsoid":
            r = self.radii
            k0 = np.sqrt((u0 / r[0]) ** 2 + (u1 / r[1]) ** 2 + (u2 / r[2]) ** 2)
            k1 = np.sqrt((u0 / r[0] ** 2) ** 2 + (u1 / r[1] ** 2) ** 2 + (u2 / r[2] ** 2) ** 2)
            return k0 * (k0 - 1.0) / np.maximum(k1, np.float32(1e-6))
        if self.kind == "torus":
            q = np.sqrt(u0 * u0 + u1 * u1) - self.major
            return np.sqrt(q * q + u2 * u2) - self.minor
        if self.kind == "blob":
            n = np.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
            inv = 1.0 / np.maximum(n, np.float32(1e-6))
            d0, d1, d2 = u0 * inv, u1 * inv, u2 * inv
            bump = np.zeros_like(n)
            for j in range(self.bump_w.shape[0]):
                w = self.bump_w[j]
                bump += self.bump_amp[j] * np.sin(w[0] * d0 + w[1] * d1 + w[2] * d2 + self.bump_phi[j])
            return (n - self.radius * (1.0 + bump)) * np.float32(1.0 / 1.2)
        # rounded box
        q0, q1, q2 = np.abs(u0) - self.half[0], np.abs(u1) - self.half[1], np.abs(u2) - self.half[2]
        outside = np.sqrt(np.maximum(q0, 0) ** 2 + np.maximum(q1, 0) ** 2 + np.maximum(q2, 0) ** 2)
        inside = np.minimum(np.maximum(np.maximum(q0, q1), q2), 0)
        return outside + inside - self.round

    def density(self, u: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """Noise-free raw density at material coordinates ``u`` (3, n) with signed distance ``sd``."""
        ph = self.peak_w[0] * u[0] + self.peak_w[1] * u[1] + self.peak_w[2] * u[2] + self.peak_phi
        peak = self.peak_lo + (self.peak_hi - self.peak_lo) * (np.float32(0.5) + np.float32(0.5) * np.sin(ph))
        w = np.where(sd > 0, np.float32(_W_OUT), np.float32(_W_IN))
        return peak * np.exp(-((sd / w) ** 2))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _envelope(sd: np.ndarray) -> np.ndarray:
    """Feature strength across the surface: 1 in the shell, 0 outside the band."""
    out = _smoothstep((np.float32(_BAND_OUT) - sd) / np.float32(_BAND_OUT - _ENV_OUT))
    inn = _smoothstep((sd + np.float32(_BAND_IN)) / np.float32(_BAND_IN - _ENV_IN))
    return (out * inn).astype(np.float32)


def _geometry_protos(shape: tuple[int, int, int], seed: int) -> list[tuple[str, float, dict, np.ndarray, np.ndarray]]:
    """Scale-free object layout: (kind, relative size, params, center0, rot0) per object."""
    rng = np.random.default_rng([seed, 1])
    n = int(rng.integers(3, 7))
    kinds = list(_KINDS[:n])
    rng.shuffle(kinds)
    ext = np.array(shape, dtype=np.float64) - 1.0
    protos = []
    for kind in kinds:
        rel = float(rng.uniform(0.7, 1.3))
        center = rng.uniform(0.3, 0.7, 3) * ext
        rot0 = _random_rotation(rng)
        p: dict = {
            "peak_lo": rng.uniform(10.0, 20.0),
            "peak_hi": rng.uniform(25.0, 40.0),
            "peak_dir": _unit(rng),
            "peak_wl": rng.uniform(1.5, 3.0),
            "peak_phi": rng.uniform(0, 2 * math.pi),
        }
        if kind == "ellipsoid":
            p["radii"] = rng.permutation(np.array([1.0, rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.8)]))
        elif kind == "torus":
            p["minor"] = rng.uniform(0.25, 0.4)
        elif kind == "blob":
            p["bump_w"] = _unit(rng, 3) * rng.uniform(2.0, 4.0, (3, 1))
            p["bump_phi"] = rng.uniform(0, 2 * math.pi, 3)
            p["bump_amp"] = rng.uniform(0.04, 0.1, 3)
        else:
            p["half"] = np.array([0.8, rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.7)])
        protos.append((kind, rel, p, center, rot0))
    return protos


def _objects_at_scale(shape: tuple[int, int, int], seed: int, scale: float) -> list[_Object]:
    length = float(np.cbrt(np.prod(np.array(shape, dtype=np.float64))))
    return [
        _Object(kind, rel * scale * length, p, center, rot0)
        for kind, rel, p, center, rot0 in _geometry_protos(shape, seed)
    ]


def _union_geometry(objects: list[_Object], shape: tuple[int, int, int], t: int):
    """Per object within its bounding box: material coords and signed distance; the union's
    min signed distance and owner per voxel (owner -1 = no object near)."""
    sd_min = np.full(shape, np.inf, dtype=np.float32)
    owner = np.full(shape, -1, dtype=np.int8)
    parts = []
    for k, obj in enumerate(objects):
        c, r = obj.pose(t)
        lo = np.maximum(np.floor(c - obj.bound).astype(np.int64), 0)
        hi = np.minimum(np.ceil(c + obj.bound).astype(np.int64) + 1, np.array(shape))
        if np.any(hi <= lo):
            parts.append(None)
            continue
        d = [(np.arange(lo[a], hi[a], dtype=np.float64) - c[a]).astype(np.float32) for a in range(3)]
        d0, d1, d2 = d[0][:, None, None], d[1][None, :, None], d[2][None, None, :]
        rf = r.astype(np.float32)
        u = [rf[0, a] * d0 + rf[1, a] * d1 + rf[2, a] * d2 for a in range(3)]
        sd = obj.sdf(*u)
        sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        view = sd_min[sl]
        better = sd < view
        view[better] = sd[better]
        owner[sl][better] = k
        parts.append((sl, lo, u, sd))
    return sd_min, owner, parts


def _band_voxels(k: int, part, sd_min: np.ndarray, owner: np.ndarray):
    """Voxels of object ``k``'s band it owns: (index tuple, material coords (3, n), sd (n,))."""
    sl, lo, u, sd = part
    sel = (owner[sl] == k) & (sd > -_BAND_IN) & (sd < _BAND_OUT)
    loc = np.nonzero(sel)
    idx = tuple(loc[a] + lo[a] for a in range(3))
    us = np.stack([u[a][sel] for a in range(3)])
    return idx, us, sd[sel]


def _block_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(-(-n // MOTION_BLOCK) for n in shape)  # type: ignore[return-value]


def _occupancy_at(shape: tuple[int, int, int], seed: int, scale: float) -> float:
    objects = _objects_at_scale(shape, seed, scale)
    sd_min, owner, parts = _union_geometry(objects, shape, 0)
    bshape = _block_shape(shape)
    occupied = np.zeros(int(np.prod(bshape)), dtype=bool)
    for k, part in enumerate(parts):
        if part is None:
            continue
        idx, us, sd = _band_voxels(k, part, sd_min, owner)
        hit = objects[k].density(us, sd) > OCCUPANCY_THRESHOLD
        b = np.ravel_multi_index(tuple(i[hit] // MOTION_BLOCK for i in idx), bshape)
        occupied[b] = True
    return float(occupied.mean())


@functools.lru_cache(maxsize=32)
def _calibrated_scale(shape: tuple[int, int, int], occupancy: float, seed: int) -> float:
    """Object size scale (relative to the grid's edge) that hits the target block occupancy."""
    lo, hi = math.log(0.003), math.log(0.6)
    best_scale, best_err = math.exp(0.5 * (lo + hi)), math.inf
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        occ = _occupancy_at(shape, seed, math.exp(mid))
        err = abs(occ - occupancy)
        if err < best_err:
            best_scale, best_err = math.exp(mid), err
        if err <= 0.02 * occupancy or hi - lo < 1e-3:
            break
        if occ < occupancy:
            lo = mid
        else:
            hi = mid
    return best_scale


# --------------------------------------------------------------------------- the sequence


def _channel_scales(c: int, rng: np.random.Generator) -> np.ndarray:
    if c == 1:
        return np.array([2.0])
    return rng.permutation(np.geomspace(0.5, 3.0, c))


def _attach_fields(objects: list[_Object], spec: SyntheticSpec) -> np.ndarray:
    """Set each object's motion and feature parameters; returns the channel ranges (C,)."""
    shape = np.array(spec.shape, dtype=np.float64)
    mrng = np.random.default_rng([spec.seed, 3])
    for k, obj in enumerate(objects):
        speed = spec.motion * (1.0 if k == 0 else float(mrng.uniform(0.4, 1.0)))
        direction = _unit(mrng)
        # Periods of 30..60 frames, faster if needed so the path stays within 20% of the grid.
        omega_lo = np.maximum(2 * math.pi / 60.0, speed / np.maximum(0.2 * shape, 1.0))
        obj.omega = omega_lo * mrng.uniform(1.0, 1.8, 3)
        obj.amp = speed * direction / obj.omega
        obj.phase = np.zeros(3) if k == 0 else mrng.uniform(0, 2 * math.pi, 3)
    # The torus (always present) turns slowly: its surface moves at most 0.6 x motion.
    spinner = next(o for o in objects if o.kind == "torus")
    spinner.rot_axis = _unit(mrng)
    spinner.rot_rate = 0.6 * spec.motion / max(spinner.surface_radius, 1.0)

    c = spec.feature_channels
    frng = np.random.default_rng([spec.seed, 2, c])
    scales = _channel_scales(c, frng)
    n_base = _N_LOW + _N_MID + _N_GAUSS
    for obj in objects:
        size = max(obj.size, 1.0)
        wl = np.concatenate([frng.uniform(1.5, 4.0, _N_LOW) * size, frng.uniform(5.0, 12.0, _N_MID)])
        obj.feat_w = (_unit(frng, _N_LOW + _N_MID) * (2 * math.pi / wl)[:, None]).T.astype(np.float32)
        obj.feat_phi = frng.uniform(0, 2 * math.pi, _N_LOW + _N_MID).astype(np.float32)
        obj.gauss_mu = (_unit(frng, _N_GAUSS) * (obj.surface_radius * frng.uniform(0.7, 1.1, (_N_GAUSS, 1)))).astype(
            np.float32
        )
        obj.gauss_inv_var = (1.0 / (size * frng.uniform(0.3, 0.6, _N_GAUSS)) ** 2).astype(np.float32)
        mix = frng.standard_normal((n_base, c))
        mix[_N_LOW : _N_LOW + _N_MID] *= 0.3  # texture is the weaker component
        mix *= 0.85 * scales / np.maximum(np.abs(mix).sum(axis=0), 1e-9)
        obj.mix = mix.astype(np.float32)
        obj.bias = (0.15 * scales * frng.uniform(-1.0, 1.0, c)).astype(np.float32)
    return 2.0 * scales


def _features(obj: _Object, us: np.ndarray) -> np.ndarray:
    """Noise-free features (n, C) at material coordinates ``us`` (3, n)."""
    v = us.T  # (n, 3)
    sines = np.sin(v @ obj.feat_w + obj.feat_phi)
    d2 = ((v[:, None, :] - obj.gauss_mu[None]) ** 2).sum(axis=-1) * obj.gauss_inv_var
    gauss = np.exp(-d2)
    return np.concatenate([sines, gauss], axis=1) @ obj.mix + obj.bias


# RMS of trilinear interpolation of unit-variance lattice noise at uniform positions: (2/3)**1.5.
_VALUE_NOISE_RMS = (2.0 / 3.0) ** 1.5


def _material_noise(obj: _Object, us: np.ndarray, channels: int, seed: int, k: int) -> np.ndarray:
    """Unit-variance "training" noise ``(n, 1 + channels)`` attached to material coordinates.

    Trained ReRF grids carry their noise along: frame t is the warped frame t−1 plus a
    sparse residual, so most of a voxel's noise moves with the content. This is value
    noise on a 1-voxel lattice in the object's material frame, trilinearly interpolated.
    """
    lattice = getattr(obj, "_noise_lattice", None)
    half = math.ceil(obj.bound) + 2
    if lattice is None:
        rng = np.random.default_rng([seed, 5, k])
        side = 2 * half + 2
        lattice = _heavy_normal(rng, side**3 * (1 + channels)).reshape(side, side, side, 1 + channels)
        obj._noise_lattice = lattice  # type: ignore[attr-defined]
    p = np.clip(us.T.astype(np.float64) + half, 0, 2 * half)
    i0 = np.floor(p).astype(np.int64)
    f = (p - i0).astype(np.float32)
    out = np.zeros((us.shape[1], 1 + channels), dtype=np.float32)
    for cx in (0, 1):
        wx = f[:, 0] if cx else 1 - f[:, 0]
        for cy in (0, 1):
            wy = wx * (f[:, 1] if cy else 1 - f[:, 1])
            for cz in (0, 1):
                w = wy * (f[:, 2] if cz else 1 - f[:, 2])
                out += w[:, None] * lattice[i0[:, 0] + cx, i0[:, 1] + cy, i0[:, 2] + cz]
    out *= np.float32(1.0 / _VALUE_NOISE_RMS)
    return out


def _heavy_normal(rng: np.random.Generator, size) -> np.ndarray:
    z = rng.standard_normal(size, dtype=np.float32)
    z[rng.random(size, dtype=np.float32) < _TAIL_FRACTION] *= np.float32(_TAIL_FACTOR)
    return z


def synthetic_frames(spec: SyntheticSpec) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(density (X,Y,Z), features (C,X,Y,Z), true_block_motion (3,BX,BY,BZ))`` per frame.

    All float32. ``true_block_motion[:, b]`` of frame ``t >= 1`` is the backward motion of
    block ``b`` in voxels: the content at voxel ``p`` of frame ``t`` comes from
    ``p + motion`` in frame ``t - 1`` (mean over the block's occupied voxels; zero for
    empty blocks and for frame 0). Frames are generated lazily, one at a time.
    """
    spec = _validate(spec)
    return _frames(spec)


def _frames(spec: SyntheticSpec) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    shape = spec.shape
    c = spec.feature_channels
    scale = _calibrated_scale(shape, spec.occupancy, spec.seed)
    objects = _objects_at_scale(shape, spec.seed, scale)
    ranges = _attach_fields(objects, spec)
    empty_std = (_EMPTY_FEATURE_REL * ranges).astype(np.float32)
    noise_std = (spec.noise * ranges).astype(np.float32)
    bshape = _block_shape(shape)
    nblocks = int(np.prod(bshape))
    for t in range(spec.num_frames):
        rng = np.random.default_rng([spec.seed, 4, t])
        density = rng.standard_normal(shape, dtype=np.float32)
        density *= np.float32(_EMPTY_DENSITY_STD)
        np.clip(density, -_EMPTY_DENSITY_CLIP, _EMPTY_DENSITY_CLIP, out=density)
        features = rng.standard_normal((c, *shape), dtype=np.float32)
        features *= empty_std[:, None, None, None]
        fflat = features.reshape(c, -1)
        msum = np.zeros((3, nblocks), dtype=np.float64)
        mcount = np.zeros(nblocks, dtype=np.float64)
        sd_min, owner, parts = _union_geometry(objects, shape, t)
        for k, part in enumerate(parts):
            if part is None:
                continue
            obj = objects[k]
            idx, us, sd = _band_voxels(k, part, sd_min, owner)
            n = sd.shape[0]
            if n == 0:
                continue
            dens = obj.density(us, sd)
            mat = _material_noise(obj, us, c, spec.seed, k)
            redraw = rng.random(n) < spec.noise_innovation
            mat[redraw] = _heavy_normal(rng, (int(redraw.sum()), 1 + c))
            dens *= 1.0 + np.float32(spec.noise) * mat[:, 0]
            density[idx] += dens
            env = _envelope(sd)
            feat = _features(obj, us)
            feat += mat[:, 1:] * noise_std
            feat *= env[:, None]
            flat = np.ravel_multi_index(idx, shape)
            fflat[:, flat] += feat.T
            if t > 0:
                occ = density[idx] > OCCUPANCY_THRESHOLD
                if np.any(occ):
                    # p_prev = c(t-1) + R(t-1) R(t)^T (p - c(t)); R(t-1) R(t)^T = turn by -rate.
                    c_now, _ = obj.pose(t)
                    c_prev, _ = obj.pose(t - 1)
                    rel = _axis_angle(obj.rot_axis, -obj.rot_rate) - np.eye(3)
                    p = np.stack([i[occ] for i in idx]).astype(np.float64) - c_now[:, None]
                    disp = (c_prev - c_now)[:, None] + rel @ p
                    b = np.ravel_multi_index(tuple(i[occ] // MOTION_BLOCK for i in idx), bshape)
                    for a in range(3):
                        msum[a] += np.bincount(b, weights=disp[a], minlength=nblocks)
                    mcount += np.bincount(b, minlength=nblocks)
        motion = np.zeros((3, nblocks), dtype=np.float32)
        has = mcount > 0
        motion[:, has] = (msum[:, has] / mcount[has]).astype(np.float32)
        yield density, features, motion.reshape(3, *bshape)


# --------------------------------------------------------------------------- on disk


def write_synthetic_sequence(out_dir: str | os.PathLike, spec: SyntheticSpec, *, force: bool = False) -> None:
    """Write the sequence as a grid-sequence directory: ``sequence.json`` and
    ``frames/{t:06d}.npz`` (float32 ``density`` and ``features``, uncompressed).

    The directory is built next to ``out_dir`` and renamed into place, so a reader never
    sees a half-written sequence. An existing ``out_dir`` is an error unless ``force``.
    """
    spec = _validate(spec)
    out = Path(out_dir)
    if (out.exists() or out.is_symlink()) and not force:
        raise RerfUsageError(f"output {out} already exists", hint=("force", "to overwrite"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        (tmp / "frames").mkdir(parents=True)
        for t, (density, features, _motion) in enumerate(synthetic_frames(spec)):
            with open(tmp / "frames" / f"{t:06d}.npz", "wb") as f:
                np.savez(f, density=density, features=features)
        with open(tmp / "sequence.json", "w", encoding="utf-8") as f:
            json.dump(synthetic_meta(spec), f, indent=2)
            f.write("\n")
        if out.is_symlink() or out.is_file():
            out.unlink()
        elif out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            if trash.exists():
                shutil.rmtree(trash)
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
            return
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m rerf_codec.synthetic OUT_DIR [options]``: write a synthetic sequence."""
    d = SyntheticSpec()
    ap = argparse.ArgumentParser(prog="python -m rerf_codec.synthetic", description=main.__doc__)
    ap.add_argument("out_dir")
    ap.add_argument("--shape", type=int, nargs=3, default=list(d.shape), metavar=("X", "Y", "Z"))
    ap.add_argument("--channels", type=int, default=d.feature_channels)
    ap.add_argument("--frames", type=int, default=d.num_frames)
    ap.add_argument("--occupancy", type=float, default=d.occupancy)
    ap.add_argument("--noise", type=float, default=d.noise)
    ap.add_argument("--motion", type=float, default=d.motion)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    spec = SyntheticSpec(tuple(a.shape), a.channels, a.frames, a.occupancy, a.noise, a.motion, a.seed)
    try:
        write_synthetic_sequence(a.out_dir, spec, force=a.force)
    except RerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
