"""Render a mesh sequence into a multi-view dataset (``rerf dataset from-mesh``).

**Renderer: Intel Embree, a CPU ray caster**, reached through trimesh's
``trimesh.ray.ray_pyembree.RayMeshIntersector`` on top of the ``embreex`` bindings.
Why this one: ``embreex`` ships manylinux/macOS/Windows wheels with Embree built in, so
``pip install`` is all a fresh machine needs -- no OpenGL, EGL, OSMesa or GPU driver.
pyrender (the usual choice) needs an OpenGL context; on a headless CI box that means
system EGL or OSMesa libraries that pip cannot install, and it fails at run time, not at
install time. Embree is a production ray tracer (BVH build + packet traversal), fast
enough that PNG encoding, not ray casting, dominates (figures in BENCHMARKS.md).

**No silent fallback.** If ``embreex`` cannot be imported, rendering raises
``RerfUsageError`` saying how to install it. trimesh's pure-Python ``ray_triangle``
intersector is not a fallback: it needs ``rtree`` (not a dependency) and is orders of
magnitude slower, so a "working" fallback would turn a minute into hours without saying so.

What one frame is (``render_frame``):

* One ray per pixel centre (or ``s×s`` per pixel with ``supersample=s``), following the
  pixel convention of ``rerf_codec.datasets.format``; the rays of all cameras go to Embree
  in one call. Embree reports the first triangle hit; the hit distance and barycentric
  coordinates are recomputed here in float64 with the Möller–Trumbore formula on that
  triangle (Embree works in float32 and trimesh returns no barycentrics).
* **Appearance that moves with the surface**: the albedo is a procedural 3D texture
  evaluated at the hit's *frame-0 position* (barycentric interpolation of frame-0 vertex
  positions), so a material point keeps its colour as the mesh moves and deforms. The
  texture (``texture``) combines a 3D checker of smooth sinusoids (half-period
  ``feature_size``, ≈ 4.6 cm on the 1.85 m crane: 2.5 % of the frame-0 extent) in a
  rotated frame (so no body plane coincides with a nodal plane), fine stripes, and
  slowly varying hues (~30 cm) so that body parts are told apart. Smooth, not hard-edged,
  so 1 sample per pixel does not alias badly at 128 px.
* **Shading that shows shape**: smooth vertex normals of the current frame (area-weighted),
  interpolated; Lambert from a key and a fill directional light fixed in the world, a
  hemispherical ambient term (brighter from above), and a small Blinn–Phong highlight of
  the key light (so there is a little view dependence, as in real captures). The result is
  gamma-encoded (1/2.2) to 8 bits. Back faces (open meshes) are shaded with flipped normals.
* **Alpha** is 1 where a ray hits and 0 elsewhere (with supersampling: the fraction of
  sub-rays that hit). RGB is the straight (not premultiplied) colour of the hits and the
  background colour where nothing was hit; consumers composite on the background stored
  in ``transforms.json``.

Frames (``render_mesh_sequence``): ``frames=(a, b)`` is half-open over the mesh's frames and
``step`` keeps every ``step``-th; dataset frame ``a + i`` is mesh frame ``a + i·step`` (with
``step = 1`` the original numbering is kept) and the dataset's fps is ``fps / step``. The
bounding box (and so the camera rig) covers the selected frames only; the texture always
comes from the mesh's frame 0, so any cut of a sequence has the same appearance.
"""

from __future__ import annotations

import math
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rerf_codec.datasets.cameras import bbox_of, ring_cameras
from rerf_codec.datasets.format import MAX_FRAMES, Camera, DatasetMeta, DatasetWriter
from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.framerange import FrameRange, parse_frame_range

__all__ = [
    "MAX_FACES",
    "MAX_TOTAL_VERTICES",
    "MAX_VERTICES",
    "TEXTURE_FEATURE_FRACTION",
    "load_mesh_sequence",
    "render_frame",
    "render_mesh_sequence",
    "renderer_name",
    "texture",
]

MAX_VERTICES = 20_000_000  # caps checked on the .npy headers, before anything is loaded
MAX_FACES = 40_000_000
MAX_TOTAL_VERTICES = 200_000_000  # frames × vertices (2.4 GB as float32)
MAX_RAYS_PER_CALL = 1 << 26  # render_frame refuses more rays than this per frame (memory)
TEXTURE_FEATURE_FRACTION = 0.025  # texture half-period as a fraction of the frame-0 extent

# Lighting, world-fixed (y up). Directions point towards the lights.
_KEY_DIR = np.array([0.45, 0.75, 0.55]) / np.linalg.norm([0.45, 0.75, 0.55])
_FILL_DIR = np.array([-0.7, 0.25, -0.45]) / np.linalg.norm([-0.7, 0.25, -0.45])
_KEY, _FILL = 0.85, 0.25
_AMBIENT_LO, _AMBIENT_HI = 0.05, 0.16  # hemisphere ambient: from below .. from above
_SPECULAR, _SHININESS = 0.12, 40.0
_GAMMA = 1 / 2.2

# Texture frame: a fixed rotation so that no axis-aligned body plane lies on a nodal plane.
_TEX_ROT = np.array(
    [
        [0.8660254, -0.3535534, 0.3535534],
        [0.3535534, 0.9330127, 0.0669873],
        [-0.3535534, 0.0669873, 0.9330127],
    ]
)


def _intersector_class() -> Any:
    try:
        from trimesh.ray.ray_pyembree import RayMeshIntersector
    except ImportError as exc:  # embreex (or trimesh) missing or broken
        raise RerfUsageError(
            f"mesh rendering needs Intel Embree through trimesh + embreex ({exc}); "
            "install them with: pip install trimesh embreex"
        ) from None
    return RayMeshIntersector


def renderer_name() -> str:
    """``"embree (embreex X) via trimesh Y"``, recorded in the dataset's ``source``."""
    _intersector_class()
    return f"embree (embreex {metadata.version('embreex')}) via trimesh {metadata.version('trimesh')}"


# --------------------------------------------------------------------------- appearance


def texture(p0: np.ndarray, feature_size: float) -> np.ndarray:
    """Albedo (linear RGB in [0, 1]) of material points at frame-0 positions ``p0`` ``(n, 3)``.

    ``feature_size`` is the half-period of the checker (world units).
    """
    q = (np.asarray(p0, dtype=np.float64) @ _TEX_ROT.T) * (math.pi / feature_size)
    # 3D checker from smooth sinusoids, sharpened but still band-limited.
    checker = np.tanh(6.0 * np.sin(q[:, 0]) * np.sin(q[:, 1] + 0.7) * np.sin(q[:, 2] + 1.9))
    # Fine diagonal stripes (period ≈ 1.3 features).
    stripes = np.sin((q[:, 0] + 0.6 * q[:, 1] - 0.8 * q[:, 2]) * (2 / 1.3))
    # Slowly varying hue (scale ≈ 6–12 features) so that body parts get different colours.
    hue = 0.5 + 0.35 * (np.sin(q[:, 0] / 6.1 + 0.3) + np.sin(q[:, 1] / 7.3 + 1.1) * np.sin(q[:, 2] / 9.7 + 2.3))
    phase = 2 * math.pi * (hue[:, None] + np.array([0.0, 1 / 3, 2 / 3]))
    base = 0.55 + 0.33 * np.cos(phase)
    albedo = base * (0.58 + 0.37 * checker[:, None]) * (0.88 + 0.12 * stripes[:, None])
    return np.clip(albedo, 0.0, 1.0)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted smooth vertex normals and unit face normals (zero vectors stay zero)."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 × area
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-30)
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-30)
    return vn, fn


def _shade(albedo: np.ndarray, normals: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Linear RGB of lit points; ``normals`` unit, facing the viewer; ``dirs`` unit ray directions."""
    key = np.clip(normals @ _KEY_DIR, 0.0, None)
    fill = np.clip(normals @ _FILL_DIR, 0.0, None)
    ambient = _AMBIENT_LO + (_AMBIENT_HI - _AMBIENT_LO) * (0.5 + 0.5 * normals[:, 1])
    half = _KEY_DIR - dirs
    half /= np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-30)
    spec = _SPECULAR * np.clip(np.einsum("ij,ij->i", normals, half), 0.0, None) ** _SHININESS * (key > 0)
    return albedo * (ambient + _KEY * key + _FILL * fill)[:, None] + spec[:, None]


# --------------------------------------------------------------------------- ray casting


def _hits(
    vertices: np.ndarray, faces: np.ndarray, origins: np.ndarray, dirs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First hit of each ray: ``(ray index, triangle, distance t, barycentrics (n, 3))`` for the rays that hit.

    Embree picks the triangle; ``t`` and the barycentrics are recomputed in float64
    (Möller–Trumbore) and clamped to the triangle (Embree's float32 hit may graze an edge).
    """
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)
    tri = _intersector_class()(mesh).intersects_first(origins, dirs)
    ray = np.flatnonzero(tri >= 0)
    tri = tri[ray].astype(np.int64)
    o, d = origins[ray].astype(np.float64), dirs[ray].astype(np.float64)
    v0, v1, v2 = (vertices[faces[tri, k]] for k in range(3))
    e1, e2 = v1 - v0, v2 - v0
    pvec = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, pvec)
    ok = np.abs(det) > 1e-300
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    tvec = o - v0
    b1 = np.einsum("ij,ij->i", tvec, pvec) * inv
    qvec = np.cross(tvec, e1)
    b2 = np.einsum("ij,ij->i", d, qvec) * inv
    t = np.einsum("ij,ij->i", e2, qvec) * inv
    # Degenerate (edge-on) triangles: centroid, distance to the centroid along the ray.
    b1 = np.where(ok, np.clip(b1, 0.0, 1.0), 1 / 3)
    b2 = np.where(ok, np.clip(b2, 0.0, 1.0), 1 / 3)
    s = b1 + b2
    over = s > 1
    b1 = np.where(over, b1 / np.where(over, s, 1.0), b1)
    b2 = np.where(over, b2 / np.where(over, s, 1.0), b2)
    t = np.where(ok, t, np.einsum("ij,ij->i", (v0 + v1 + v2) / 3 - o, d))
    bary = np.stack([1.0 - b1 - b2, b1, b2], axis=1)
    return ray, tri, t, bary


def _check_frame_arrays(vertices_t: Any, faces: Any, vertices_0: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.asarray(vertices_t, dtype=np.float64)
    f = np.asarray(faces)
    v0 = np.asarray(vertices_0, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 3:
        raise RerfUsageError(f"render_frame: vertices must have shape (V, 3) with V >= 3, got {v.shape}")
    if v0.shape != v.shape:
        raise RerfUsageError(f"render_frame: frame-0 positions have shape {v0.shape}, vertices {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] < 1 or not np.issubdtype(f.dtype, np.integer):
        raise RerfUsageError(f"render_frame: faces must be integers of shape (F, 3), got {f.dtype} {f.shape}")
    if f.min() < 0 or f.max() >= v.shape[0]:
        raise RerfUsageError(f"render_frame: face indices must be in 0..{v.shape[0] - 1}")
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(v0))):
        raise RerfUsageError("render_frame: vertex positions must be finite")
    return v, f.astype(np.int64, copy=False), v0


def render_frame(
    vertices_t: np.ndarray,
    faces: np.ndarray,
    vertices_0: np.ndarray,
    cameras: Sequence[Camera],
    *,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    supersample: int = 1,
    feature_size: float | None = None,
    return_depth: bool = False,
) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
    """Render one frame from every camera: a list of uint8 RGBA ``(h, w, 4)`` images.

    ``vertices_t`` ``(V, 3)``: the frame's positions; ``vertices_0`` ``(V, 3)``: each vertex's
    frame-0 (material) position, which the texture is computed from; ``faces`` ``(F, 3)``.
    ``supersample=s`` casts ``s×s`` rays per pixel (anti-aliased colour and alpha edges, s²
    times the cost). ``feature_size``: the texture's half-period in world units; ``None``
    means ``TEXTURE_FEATURE_FRACTION`` of the largest extent of ``vertices_0`` -- callers
    rendering a sequence whose material positions change per frame should pass it fixed.
    With ``return_depth`` also returns per-camera float32 depth maps ``(h, w)`` (camera-space
    depth ``−z``, as ``Camera.project`` reports it; averaged over the sub-rays that hit;
    NaN where nothing was hit).
    """
    v, f, v0 = _check_frame_arrays(vertices_t, faces, vertices_0)
    cams = list(cameras)
    if not cams or not all(isinstance(c, Camera) for c in cams):
        raise RerfUsageError("render_frame: cameras must be a non-empty list of Camera")
    if not isinstance(supersample, int) or not 1 <= supersample <= 8:
        raise RerfUsageError(f"render_frame: supersample must be an integer in 1..8, got {supersample!r}")
    bg = np.asarray(background, dtype=np.float64)
    if bg.shape != (3,) or not np.all((bg >= 0) & (bg <= 1)):
        raise RerfUsageError(f"render_frame: background must be 3 numbers in [0, 1], got {background!r}")
    if feature_size is None:
        feature_size = TEXTURE_FEATURE_FRACTION * max(float(np.max(np.ptp(v0, axis=0))), 1e-12)
    if not (math.isfinite(feature_size) and feature_size > 0):
        raise RerfUsageError(f"render_frame: feature_size must be > 0, got {feature_size!r}")
    s = supersample
    n_rays = sum(c.w * c.h for c in cams) * s * s
    if n_rays > MAX_RAYS_PER_CALL:
        raise RerfUsageError(f"render_frame: {n_rays} rays in one frame exceeds the cap of {MAX_RAYS_PER_CALL}")

    # Rays of every camera, sub-pixel sample k of pixel (u, v) at (u + (i+½)/s, v + (j+½)/s).
    sub = (np.arange(s) + 0.5) / s
    origins = np.empty((n_rays, 3))
    dirs = np.empty((n_rays, 3))
    starts = [0]
    for c in cams:
        uu = (np.arange(c.w)[None, :, None, None] + sub[None, None, None, :]) + np.zeros((c.h, 1, s, 1))
        vv = (np.arange(c.h)[:, None, None, None] + sub[None, None, :, None]) + np.zeros((1, c.w, 1, s))
        a, b = starts[-1], starts[-1] + c.w * c.h * s * s
        dirs[a:b] = c.pixel_directions(uu.reshape(-1), vv.reshape(-1))  # rows (v, u, j, i)
        origins[a:b] = c.c2w[:3, 3]
        starts.append(b)

    ray, tri, t, bary = _hits(v, f, origins, dirs)
    vn, fn = _vertex_normals(v, f)
    fv = f[tri]
    normal = np.einsum("nk,nkd->nd", bary, vn[fv])
    d_hit = dirs[ray]
    back = np.einsum("ij,ij->i", fn[tri], d_hit) > 0
    normal[back] *= -1
    nl = np.linalg.norm(normal, axis=1, keepdims=True)
    bad = nl[:, 0] < 1e-12
    normal = np.where(bad[:, None], np.where(back[:, None], -fn[tri], fn[tri]), normal / np.maximum(nl, 1e-30))
    p0 = np.einsum("nk,nkd->nd", bary, v0[fv])
    rgb_hit = np.clip(_shade(texture(p0, feature_size), normal, d_hit), 0.0, 1.0)

    # Per-ray buffers → per-pixel averages.
    hit = np.zeros(n_rays, dtype=bool)
    hit[ray] = True
    rgb = np.zeros((n_rays, 3))
    rgb[ray] = rgb_hit
    depth = np.zeros(n_rays)
    if return_depth:
        pos = origins[ray] + t[:, None] * d_hit
        for k, c in enumerate(cams):
            sel = (ray >= starts[k]) & (ray < starts[k + 1])
            depth[ray[sel]] = c.project(pos[sel])[1]

    images, depths = [], []
    for k, c in enumerate(cams):
        a, b = starts[k], starts[k + 1]
        h_ = hit[a:b].reshape(c.h, c.w, s * s)
        cnt = h_.sum(axis=2)
        alpha = cnt / (s * s)
        col = rgb[a:b].reshape(c.h, c.w, s * s, 3).sum(axis=2) / np.maximum(cnt, 1)[..., None]
        col = np.where((cnt > 0)[..., None], col**_GAMMA, bg)
        img = np.empty((c.h, c.w, 4), dtype=np.uint8)
        img[..., :3] = np.clip(np.rint(col * 255), 0, 255)
        img[..., 3] = np.clip(np.rint(alpha * 255), 0, 255)
        images.append(img)
        if return_depth:
            dsum = depth[a:b].reshape(c.h, c.w, s * s).sum(axis=2)
            with np.errstate(invalid="ignore", divide="ignore"):
                depths.append(np.where(cnt > 0, dsum / cnt, np.nan).astype(np.float32))
    return (images, depths) if return_depth else images


# --------------------------------------------------------------------------- sequences


def _npy_header(z: zipfile.ZipFile, member: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array of an .npz from its header, without loading it."""
    try:
        with z.open(member) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
            else:
                raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        field = member.removesuffix(".npy")
        raise RerfFormatError(f"{path}: field '{field}': unreadable array ({exc})") from None
    return tuple(shape), dtype


def load_mesh_sequence(path: str | Path) -> dict[str, Any]:
    """Load and validate a mesh-sequence ``.npz`` (``vertices`` float ``[T, V, 3]``, ``faces`` int ``[F, 3]``).

    Returns ``{"vertices": float32 (T, V, 3), "faces": int64 (F, 3), "name": str, "fps": float}``
    (``name`` defaults to the file stem, ``fps`` to 30). Shapes, dtypes and caps are checked on
    the array headers before anything is loaded; then finiteness and face index range. Every
    error is a ``RerfFormatError`` naming the file and the field.
    """
    p = Path(path)
    if not p.exists():
        raise RerfUsageError(f"{p}: mesh file does not exist")
    if not p.is_file():
        raise RerfUsageError(f"{p}: not a file (expected a mesh-sequence .npz)")
    try:
        z = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise RerfFormatError(f"{p}: not a .npz archive ({exc})") from None
    with z:
        members = set(z.namelist())
        for key in ("vertices", "faces"):
            if f"{key}.npy" not in members:
                have = ", ".join(sorted(m.removesuffix(".npy") for m in members)) or "nothing"
                raise RerfFormatError(f"{p}: missing field '{key}' (the archive holds: {have})")
        vshape, vdtype = _npy_header(z, "vertices.npy", p)
        fshape, fdtype = _npy_header(z, "faces.npy", p)
    if len(vshape) != 3 or vshape[2] != 3 or vshape[0] < 1 or vshape[1] < 3:
        raise RerfFormatError(f"{p}: field 'vertices' must have shape [T, V, 3] with T >= 1, V >= 3, got {vshape}")
    if vdtype.kind != "f":
        raise RerfFormatError(f"{p}: field 'vertices' must be floating point, got {vdtype}")
    if vshape[0] > MAX_FRAMES or vshape[1] > MAX_VERTICES or vshape[0] * vshape[1] > MAX_TOTAL_VERTICES:
        raise RerfFormatError(
            f"{p}: field 'vertices' shape {vshape} exceeds the caps ({MAX_FRAMES} frames, {MAX_VERTICES} vertices, "
            f"{MAX_TOTAL_VERTICES} frames × vertices)"
        )
    if len(fshape) != 2 or fshape[1] != 3 or fshape[0] < 1:
        raise RerfFormatError(f"{p}: field 'faces' must have shape [F, 3] with F >= 1, got {fshape}")
    if fdtype.kind not in "iu":
        raise RerfFormatError(f"{p}: field 'faces' must be integers, got {fdtype}")
    if fshape[0] > MAX_FACES:
        raise RerfFormatError(f"{p}: field 'faces' has {fshape[0]} faces (at most {MAX_FACES})")
    try:
        with np.load(p, allow_pickle=False) as data:
            vertices = np.asarray(data["vertices"], dtype=np.float32)
            faces = np.asarray(data["faces"]).astype(np.int64)
            name = str(data["name"]) if "name" in data.files and data["name"].dtype.kind == "U" else p.stem
            fps = 30.0
            if "fps" in data.files:
                raw = data["fps"]
                if raw.shape != () or raw.dtype.kind not in "iuf" or not (math.isfinite(float(raw)) and raw > 0):
                    raise RerfFormatError(f"{p}: field 'fps' must be a number > 0, got {raw!r}")
                fps = float(raw)
    except RerfFormatError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise RerfFormatError(f"{p}: cannot read arrays ({exc})") from None
    bad = ~np.isfinite(vertices).all(axis=(1, 2))
    if bad.any():
        raise RerfFormatError(
            f"{p}: field 'vertices' holds non-finite values (first in frame {int(np.argmax(bad))}, "
            f"{int(bad.sum())} frame(s) affected)"
        )
    if faces.min() < 0 or faces.max() >= vshape[1]:
        raise RerfFormatError(
            f"{p}: field 'faces' indices must be in 0..{vshape[1] - 1}, got {int(faces.min())}..{int(faces.max())}"
        )
    return {"vertices": vertices, "faces": faces, "name": name, "fps": fps}


def _frame_range(frames: FrameRange | range | str | None, total: int, step: Any) -> range:
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise RerfUsageError(f"must be an integer >= 1, got {step!r}", param="step")
    fr = parse_frame_range(frames)
    r = range(total) if fr is None else fr.resolve(range(total))
    return range(r.start, r.stop, step)


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def render_mesh_sequence(
    mesh_path: str | Path,
    out_dir: str | Path,
    *,
    cameras: int = 24,
    test_cameras: int = 4,
    size: int = 128,
    frames: FrameRange | range | str | None = None,
    step: int = 1,
    force: bool = False,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    supersample: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Render every selected frame of a mesh sequence into a native dataset at ``out_dir`` (atomic).

    ``cameras`` training plus ``test_cameras`` held-out cameras (``ring_cameras``) of
    ``size``×``size`` pixels around the bounding box of the selected frames. One frame is
    rendered and written at a time (memory does not grow with the sequence length).
    ``progress(done, total)`` is called after every frame. Returns a summary: frame and
    camera counts, seconds (total and rendering alone), views per second (frames × cameras
    / total seconds) and bytes on disk.
    """
    t_start = time.perf_counter()
    for name, n, lo, hi in (("cameras", cameras, 1, 999), ("test_cameras", test_cameras, 1, 999)):
        if not isinstance(n, int) or isinstance(n, bool) or not lo <= n <= hi:
            raise RerfUsageError(f"must be an integer in {lo}..{hi}, got {n!r}", param=name)
    if cameras + test_cameras > 1000:
        raise RerfUsageError(f"at most 1000 cameras in all, got {cameras + test_cameras}")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 4096:
        raise RerfUsageError(f"must be an integer in 8..4096, got {size!r}", param="size")
    if not isinstance(supersample, int) or isinstance(supersample, bool) or not 1 <= supersample <= 8:
        raise RerfUsageError(f"supersample must be an integer in 1..8, got {supersample!r}")
    renderer = renderer_name()  # fail early when Embree is missing
    mesh = load_mesh_sequence(mesh_path)
    vertices, faces = mesh["vertices"], mesh["faces"]
    sel = _frame_range(frames, vertices.shape[0], step)
    lo, hi = bbox_of(vertices, sel)
    cams = ring_cameras(lo, hi, cameras, test_cameras, size)
    background = tuple(float(x) for x in background)
    meta = DatasetMeta(
        num_frames=len(sel),
        first_frame=sel.start,
        fps=mesh["fps"] / step,
        xyz_min=tuple(lo),
        xyz_max=tuple(hi),
        image_mode="RGBA",
        background=background,
        cameras=tuple(cams),
        source={
            "type": "mesh-render",
            "mesh": mesh["name"],
            "file": Path(mesh_path).name,
            "frames": [sel.start, sel.stop],
            "step": step,
            "renderer": renderer,
            "supersample": supersample,
            "texture": f"procedural, frame-0 positions, feature {TEXTURE_FEATURE_FRACTION:g} of extent",
        },
    )
    v0 = vertices[0].astype(np.float64)
    feature = TEXTURE_FEATURE_FRACTION * max(float(np.max(np.ptp(v0, axis=0))), 1e-12)
    render_s = 0.0
    # PNG encoding (zlib releases the GIL) of frame i overlaps the rendering of frame i + 1;
    # at most two frames of images are alive at any time.
    with DatasetWriter(out_dir, meta, force=force) as writer, ThreadPoolExecutor(max_workers=2) as pool:
        pending: list[Future[None]] = []
        for i, mesh_frame in enumerate(sel):
            t0 = time.perf_counter()
            images = render_frame(
                vertices[mesh_frame], faces, v0, cams, background=background, supersample=supersample,
                feature_size=feature,
            )  # fmt: skip
            render_s += time.perf_counter() - t0
            for fut in pending:
                fut.result()
            if progress is not None and i > 0:
                progress(i, len(sel))
            pending = [
                pool.submit(writer.write_image, sel.start + i, c, img) for c, img in zip(cams, images, strict=True)
            ]
        for fut in pending:
            fut.result()
        if progress is not None:
            progress(len(sel), len(sel))
    seconds = time.perf_counter() - t_start
    views = len(sel) * len(cams)
    nbytes = _dir_bytes(Path(out_dir))
    return {
        "out_dir": str(out_dir),
        "mesh": mesh["name"],
        "frames": len(sel),
        "first_frame": sel.start,
        "step": step,
        "cameras": len(cams),
        "train_cameras": cameras,
        "test_cameras": test_cameras,
        "size": size,
        "renderer": renderer,
        "seconds": seconds,
        "render_seconds": render_s,
        "views_per_second": views / seconds if seconds > 0 else float("inf"),
        "bytes_on_disk": nbytes,
        "bytes_per_frame": nbytes / len(sel),
    }
