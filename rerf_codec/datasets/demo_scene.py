"""The built-in demo scene: a procedural animated scene that needs no input files.

``rerf dataset demo -o DATA`` renders it into the native dataset layout, through the same
ray-cast renderer as imported mesh sequences (:mod:`rerf_codec.datasets.mesh_render`), so the
whole pipeline (dataset → train → encode → decode → render) can run with nothing downloaded.

What is in it (units: the scene fits the box [-1, 1]³, y up):

* **Two blobs, A and B, on a shared orbit** in a slightly tilted plane below the centre. Their
  separation shrinks from 1.3 to 0.5 and grows back (``(1 + cos 2πs) / 2`` over the sequence
  phase ``s`` ∈ [0, 1]) while the pair turns 1.5 times around the y axis. Below a separation of
  √2·R (R, the kernel radius, 0.5) the two fields bridge: A and B **merge** into one body in the
  middle third of the sequence and **split** again, so the surface's topology changes twice. A
  travels from the left of the box to the right, about 5 units of path in total (its own diameter,
  0.6, every ~3–4 frames of the default 30).
* **A spinning bar** above them: an elongated (anisotropic) blob turning once about y while bobbing
  up and down. It never touches A or B.

The surface is the level set ``Σ_b w_b(p) = T`` of a metaball field with the compact C² kernel
``w(r) = (1 − r²)³`` for r < 1 (Wyvill et al., "Data structure for soft objects", 1986), where r
is the distance to the blob centre in the blob's own (scaled, rotated) frame. Compact support keeps
a blob's influence local, so two blobs only interact when they are close. Each frame is sampled on a
regular grid and polygonised with marching cubes (Lorensen & Cline 1987) from PyMCubes
(``mcubes.marching_cubes``): a small C extension with wheels on PyPI, already a dependency, and much
lighter than scikit-image for this one function.

**Texture: material coordinates.** Marching cubes produces a different vertex set every frame (the
topology even changes), so the texture cannot be attached to frame-0 vertices. Instead each vertex
gets a *material position*: for each blob b, its position mapped back through b's rigid motion to
where that point was at frame 0, ``m_b = R_b(0) R_b(t)ᵀ (p − c_b(t)) + c_b(0)``, blended with the
field-contribution weights ``w_b(p) / Σ w_b(p)``. Away from a merge neck one blob dominates and the
material position is exactly that blob's inverse rigid motion, so the appearance is carried along
with each blob (and rotates with it); in a neck the patterns of the two blobs blend. The renderer
textures from these positions as it textures an imported mesh from its frame-0 vertices.

``seed`` jitters the orbit's tilt and phase and the bar's phase a little (never the merge/split
schedule, which depends only on the frame's phase), so every seed shows the same events.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_RENDER",
    "QUICK_RENDER",
    "SCENE_MAX",
    "SCENE_MIN",
    "DemoFrame",
    "DemoRenderSpec",
    "demo_mesh_sequence",
    "render_demo_dataset",
]

SCENE_MIN = (-1.0, -1.0, -1.0)
SCENE_MAX = (1.0, 1.0, 1.0)
"""Bounding box of the scene (and of the dataset written by :func:`render_demo_dataset`)."""

ISO = 0.25
"""Iso level T of the summed field; a lone round blob of kernel radius R has surface radius
R·sqrt(1 − T^(1/3)) ≈ 0.608 R."""

_ORBIT_R = 0.5  # kernel radius of blobs A and B (surface radius ≈ 0.30)
_SEP_MAX = 1.3  # centre-to-centre separation at the start and the end
_SEP_MIN = 0.5  # ... in the middle (the bridge forms below √2·R ≈ 0.71)
_TURNS = 1.5  # turns of the pair about y over the sequence
_ORBIT_Y = -0.35
_BAR_HALF = (0.45, 0.14, 0.18)  # the bar's surface half-extents (x, y, z) in its own frame
_BAR_Y = 0.52
_BAR_BOB = 0.08


@dataclass(frozen=True)
class DemoFrame:
    """One frame of the demo mesh sequence."""

    frame: int
    vertices: np.ndarray
    """float32 (V, 3) world positions on the surface."""
    faces: np.ndarray
    """int32 (F, 3) vertex indices, counter-clockwise seen from outside (outward normals)."""
    material: np.ndarray
    """float32 (V, 3) material positions (where each surface point was at frame 0); texture from these."""
    blob: np.ndarray
    """uint8 (V,) index of the blob that dominates each vertex (0 = A, 1 = B, 2 = bar)."""
    centers: np.ndarray
    """float32 (3 blobs, 3) blob centres at this frame."""


@dataclass(frozen=True)
class _Blob:
    center: np.ndarray  # (3,) float64
    rot: np.ndarray  # (3, 3) float64, local → world
    radii: np.ndarray  # (3,) kernel radii along the local axes


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _phase(frame: int, num_frames: int) -> float:
    return frame / (num_frames - 1) if num_frames > 1 else 0.0


def _blobs(s: float, jitter: np.ndarray) -> list[_Blob]:
    """The three blobs at sequence phase ``s`` ∈ [0, 1]."""
    tilt, theta0, bar0 = jitter
    sep = _SEP_MIN + (_SEP_MAX - _SEP_MIN) * 0.5 * (1.0 + math.cos(2.0 * math.pi * s))
    theta = theta0 + 2.0 * math.pi * _TURNS * s
    plane = _rot_x(tilt)
    # A starts at -x and ends at +x (1.5 turns); B is opposite. Each is tidally locked to the orbit
    # (turns with it), so its texture visibly rotates too.
    out = []
    for sign in (-1.0, 1.0):
        spin = _rot_y(theta)
        offset = plane @ spin @ np.array([sign * 0.5 * sep, 0.0, 0.0])
        out.append(
            _Blob(np.array([0.0, _ORBIT_Y, 0.0]) + offset, plane @ spin, np.full(3, _ORBIT_R))
        )
    phi = bar0 + 2.0 * math.pi * s
    kernel = np.asarray(_BAR_HALF) / math.sqrt(1.0 - ISO ** (1.0 / 3.0))
    bar_c = np.array([0.0, _BAR_Y + _BAR_BOB * math.sin(2.0 * math.pi * s), 0.0])
    out.append(_Blob(bar_c, _rot_y(phi), kernel))
    return out


def _kernel(d: list[np.ndarray], b: _Blob) -> np.ndarray:
    """w_b at offsets ``d`` from the centre (three broadcastable world-axis components)."""
    r2 = 0.0
    for k in range(3):  # local coordinate k = (Rᵀ d)_k / radius_k
        local = (d[0] * b.rot[0, k] + d[1] * b.rot[1, k] + d[2] * b.rot[2, k]) / b.radii[k]
        r2 = r2 + local * local
    w = np.maximum(1.0 - r2, 0.0)
    return w * w * w


def _weights(points: np.ndarray, blobs: list[_Blob]) -> np.ndarray:
    """Per-blob kernel values w_b(p) at points (N, 3), shape (blobs, N), float64."""
    return np.stack([_kernel([points[:, k] - b.center[k] for k in range(3)], b) for b in blobs])


def _field(axis: list[np.ndarray], blobs: list[_Blob]) -> np.ndarray:
    """Σ_b w_b on the grid ``axis[0] × axis[1] × axis[2]``, evaluated only inside each blob's support."""
    field = np.zeros([len(a) for a in axis])
    for b in blobs:
        # world-axis half-extent of the support ellipsoid: ‖row i of R·diag(radii)‖
        half = np.sqrt(((b.rot * b.radii) ** 2).sum(axis=1))
        sl = []
        for k in range(3):
            i0, i1 = np.searchsorted(axis[k], [b.center[k] - half[k], b.center[k] + half[k]])
            sl.append(slice(int(i0), int(i1)))
        shape = [s.stop - s.start for s in sl]
        if min(shape) <= 0:
            continue
        d = [(axis[k][sl[k]] - b.center[k]).reshape([-1 if j == k else 1 for j in range(3)]) for k in range(3)]
        field[tuple(sl)] += _kernel(d, b)
    return field


def demo_mesh_sequence(num_frames: int = 30, *, resolution: int = 64, seed: int = 0) -> Iterator[DemoFrame]:
    """Yield the demo scene frame by frame as triangle meshes with material positions.

    Args:
        num_frames: number of frames; the whole choreography (merge in the middle, split again,
            1.5 turns) always spans the sequence, so fewer frames means larger steps.
        resolution: marching-cubes samples per axis over [-1, 1]³ (64: voxel 0.032, a blob ≈ 19
            voxels across).
        seed: small jitter of the orbit tilt/phase and bar phase; same seed, same meshes.

    Frames are generated lazily (a 64³ frame takes a few tens of milliseconds).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if resolution < 8:
        raise ValueError(f"resolution must be >= 8, got {resolution}")
    import mcubes  # local import: only the dataset tools need it

    rng = np.random.default_rng(seed)
    jitter = np.array([0.25, 0.0, 0.0]) + rng.uniform(-1.0, 1.0, 3) * np.array([0.08, 0.3, 0.5])
    lo = np.asarray(SCENE_MIN)
    hi = np.asarray(SCENE_MAX)
    axis = [np.linspace(lo[k], hi[k], resolution) for k in range(3)]
    step = (hi - lo) / (resolution - 1)
    blobs0 = _blobs(0.0, jitter)
    for t in range(num_frames):
        blobs = _blobs(_phase(t, num_frames), jitter)
        field = _field(axis, blobs)
        verts, tris = mcubes.marching_cubes(field - ISO, 0.0)
        verts = lo + verts * step  # index space → world (mcubes keeps the volume's axis order)
        w = _weights(verts, blobs)
        wsum = w.sum(axis=0)
        wsum[wsum == 0] = 1.0  # cannot happen on the surface (Σw = T there); guard anyway
        material = np.zeros_like(verts)
        for i, (b, b0) in enumerate(zip(blobs, blobs0, strict=True)):
            back = (verts - b.center) @ b.rot @ b0.rot.T + b0.center  # R0 Rtᵀ (p − c_t) + c_0
            material += (w[i] / wsum)[:, None] * back
        yield DemoFrame(
            frame=t,
            vertices=verts.astype(np.float32),
            faces=tris.astype(np.int32),
            material=material.astype(np.float32),
            blob=np.argmax(w, axis=0).astype(np.uint8),
            centers=np.array([b.center for b in blobs], dtype=np.float32),
        )
