"""The built-in demo scene: a procedural animated scene that needs no input files.

``rerf dataset demo -o DATA`` renders it into the native dataset layout, through the same
ray-cast renderer as imported mesh sequences (:mod:`rerf_codec.datasets.mesh_render`), so the
whole pipeline (dataset → train → encode → decode → render) can run with nothing downloaded.

What is in it (units: the scene fits the box [-1, 1]³, y up):

* **Two blobs, A and B, on a shared orbit** in a slightly tilted plane below the centre. Their
  centre-to-centre separation shrinks from 1.22 to 0.6 and grows back (``(1 + cos 2πs) / 2`` over
  the sequence phase ``s`` ∈ [0, 1]) while the pair turns 1.5 times around the y axis. Below a
  separation of √2·R (R = 0.6, the kernel radius; surface radius ≈ 0.365) the two fields bridge:
  A and B **merge** into one body for the middle ~40 % of the sequence (frames 9–20 of the default
  30) and **split** again, so the surface's topology changes twice. A travels from the left of the
  box to the right: 4.3 units of path, 0.10–0.20 per frame at 30 frames (its own diameter, 0.73,
  every 4–7 frames).
* **A spinning bar** above them: an elongated (anisotropic) blob turning once about y while bobbing
  up and down. It never touches A or B, so a frame has 3 connected components, or 2 while merged.

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
where that point was at frame 0, ``m_b = R_b(0) R_b(t)ᵀ (p − c_b(t)) + c_b(0)``, blended with
sharpened field-contribution weights ``w_b(p)⁴ / Σ w_b(p)⁴``. Away from a merge neck one blob
dominates and the material position is exactly that blob's inverse rigid motion, so the appearance
is carried along with each blob (and rotates with it); in a neck the two patterns meet along a
narrow seam (plain weights ``w_b / Σ w`` smear half a blob's texture into the neck as stripes). The
renderer textures from these positions as it textures an imported mesh from its frame-0 vertices.

``seed`` jitters the orbit's tilt and phase and the bar's phase a little (never the merge/split
schedule, which depends only on the frame's phase), so every seed shows the same events.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rerf_codec.datasets.cameras import ring_cameras
from rerf_codec.datasets.format import DatasetMeta, DatasetWriter
from rerf_codec.errors import RerfUsageError

__all__ = [
    "DEMO_FEATURE_SIZE",
    "QUICK",
    "SCENE_MAX",
    "SCENE_MIN",
    "DemoFrame",
    "demo_mesh_sequence",
    "render_demo_dataset",
]

SCENE_MIN = (-1.0, -1.0, -1.0)
SCENE_MAX = (1.0, 1.0, 1.0)
"""Bounding box of the scene (and of the dataset written by :func:`render_demo_dataset`)."""

DEMO_FEATURE_SIZE = 0.12
"""Half-period of the procedural texture (world units): about six checker cells across a blob."""

QUICK: dict[str, int] = {"frames": 8, "cameras": 4, "test_cameras": 1, "size": 48}
"""Arguments of :func:`render_demo_dataset` for tests and CI (a second or two)."""

ISO = 0.25
"""Iso level T of the summed field; a lone round blob of kernel radius R has surface radius
R·sqrt(1 − T^(1/3)) ≈ 0.608 R."""

_ORBIT_R = 0.6  # kernel radius of blobs A and B (surface radius ≈ 0.365)
_SEP_MAX = 1.22  # centre-to-centre separation at the start and the end
_SEP_MIN = 0.6  # ... in the middle (the bridge forms below √2·R ≈ 0.85)
_TURNS = 1.5  # turns of the pair about y over the sequence
_ORBIT_Y = -0.42
_TILT = 0.2  # tilt of the orbit plane about x (radians), ± 0.05 with the seed
_BAR_HALF = (0.55, 0.14, 0.2)  # the bar's surface half-extents (x, y, z) in its own frame
_BAR_Y = 0.6
_BAR_BOB = 0.06
_SHARPNESS = 4  # material blend weights w_b^k / Σ w^k: a narrow seam in a merge neck, not a long smear


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


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not lo <= value <= hi:
        raise RerfUsageError(f"must be an integer in {lo}..{hi}, got {value!r}", param=name)


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
        out.append(_Blob(np.array([0.0, _ORBIT_Y, 0.0]) + offset, plane @ spin, np.full(3, _ORBIT_R)))
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
    _check_int("num_frames", num_frames, 1, 100_000)
    _check_int("resolution", resolution, 8, 512)
    _check_int("seed", seed, 0, 2**63 - 1)
    import mcubes  # local import: only the dataset tools need it

    rng = np.random.default_rng(seed)
    jitter = np.array([_TILT, 0.0, 0.0]) + rng.uniform(-1.0, 1.0, 3) * np.array([0.05, 0.3, 0.5])
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
        share = w**_SHARPNESS
        total = share.sum(axis=0)
        total[total == 0] = 1.0  # cannot happen on the surface (Σw = T there); guard anyway
        material = np.zeros_like(verts)
        for i, (b, b0) in enumerate(zip(blobs, blobs0, strict=True)):
            back = (verts - b.center) @ b.rot @ b0.rot.T + b0.center  # R0 Rtᵀ (p − c_t) + c_0
            material += (share[i] / total)[:, None] * back
        yield DemoFrame(
            frame=t,
            vertices=verts.astype(np.float32),
            faces=tris.astype(np.int32),
            material=material.astype(np.float32),
            blob=np.argmax(w, axis=0).astype(np.uint8),
            centers=np.array([b.center for b in blobs], dtype=np.float32),
        )


def render_demo_dataset(
    out_dir: str | Path,
    *,
    frames: int = 30,
    cameras: int = 12,
    test_cameras: int = 2,
    size: int = 96,
    resolution: int = 64,
    seed: int = 0,
    fps: float = 30.0,
    supersample: int = 1,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Render the demo scene into a native dataset at ``out_dir`` (atomic; ``rerf dataset demo``).

    ``frames`` frames of the sequence (:func:`demo_mesh_sequence` with ``resolution`` and
    ``seed``) seen by ``cameras`` training plus ``test_cameras`` held-out cameras
    (``ring_cameras`` around the fixed scene box [-1, 1]³) of ``size``×``size`` pixels, RGBA on
    a white background, rendered by ``mesh_render.render_frame`` (Embree) with the material
    positions as the texture's frame-0 positions and a fixed texture scale
    (:data:`DEMO_FEATURE_SIZE`). Deterministic: the same arguments give byte-identical PNGs.
    ``progress(done, total)`` is called after every frame. Returns a summary (counts, seconds,
    views per second, bytes on disk). ``**QUICK`` gives a tiny dataset for tests. Cost on a
    2-core machine: the default (30 frames × 14 views of 96²) ~1.6 s, ``QUICK`` ~0.6 s; meshing
    is ~10 ms a frame at resolution 64, the rest is ray casting and PNG encoding.
    """
    from rerf_codec.datasets.mesh_render import render_frame, renderer_name

    t_start = time.perf_counter()
    _check_int("frames", frames, 1, 100_000)
    _check_int("cameras", cameras, 1, 999)
    _check_int("test_cameras", test_cameras, 1, 999)
    _check_int("size", size, 8, 4096)
    _check_int("resolution", resolution, 8, 512)
    _check_int("seed", seed, 0, 2**63 - 1)
    _check_int("supersample", supersample, 1, 8)
    if cameras + test_cameras > 1000:
        raise RerfUsageError(f"at most 1000 cameras in all, got {cameras + test_cameras}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise RerfUsageError(f"must be a number > 0, got {fps!r}", param="fps")
    renderer = renderer_name()  # fails early, with the install hint, when Embree is missing
    cams = ring_cameras(SCENE_MIN, SCENE_MAX, cameras, test_cameras, size)
    background = (1.0, 1.0, 1.0)
    meta = DatasetMeta(
        num_frames=frames,
        first_frame=0,
        fps=float(fps),
        xyz_min=SCENE_MIN,
        xyz_max=SCENE_MAX,
        image_mode="RGBA",
        background=background,
        cameras=tuple(cams),
        source={
            "type": "demo-scene",
            "generator": "rerf demo scene",
            "seed": int(seed),
            "resolution": int(resolution),
            "events": "two blobs orbit, merge (middle ~40 %) and split again; a bar spins above them",
            "renderer": renderer,
            "supersample": supersample,
            "texture": f"procedural, material positions, feature {DEMO_FEATURE_SIZE:g}",
        },
    )
    mesh_s = render_s = 0.0
    faces_total = 0
    # PNG encoding (zlib releases the GIL) of frame i overlaps the meshing and rendering of frame i + 1.
    with DatasetWriter(out_dir, meta, force=force) as writer, ThreadPoolExecutor(max_workers=2) as pool:
        pending: list[Future[None]] = []
        seq = demo_mesh_sequence(frames, resolution=resolution, seed=seed)
        for i in range(frames):
            t0 = time.perf_counter()
            fr = next(seq)
            t1 = time.perf_counter()
            images = render_frame(
                fr.vertices, fr.faces, fr.material, cams, background=background, supersample=supersample,
                feature_size=DEMO_FEATURE_SIZE,
            )  # fmt: skip
            mesh_s += t1 - t0
            render_s += time.perf_counter() - t1
            faces_total += len(fr.faces)
            for fut in pending:
                fut.result()
            if progress is not None and i > 0:
                progress(i, frames)
            pending = [pool.submit(writer.write_image, i, c, img) for c, img in zip(cams, images, strict=True)]
        for fut in pending:
            fut.result()
        if progress is not None:
            progress(frames, frames)
    seconds = time.perf_counter() - t_start
    nbytes = sum(f.stat().st_size for f in Path(out_dir).rglob("*") if f.is_file())
    return {
        "out_dir": str(out_dir),
        "frames": frames,
        "cameras": len(cams),
        "train_cameras": cameras,
        "test_cameras": test_cameras,
        "size": size,
        "seed": seed,
        "resolution": resolution,
        "mean_faces": faces_total / frames,
        "renderer": renderer,
        "seconds": seconds,
        "mesh_seconds": mesh_s,
        "render_seconds": render_s,
        "views_per_second": frames * len(cams) / seconds if seconds > 0 else float("inf"),
        "bytes_on_disk": nbytes,
    }
