"""The camera: one type for datasets, the trainer, ``rerf render --camera`` and the browser player.

A camera is exactly a ``cameras[]`` entry of a dataset's ``transforms.json`` (DESIGN.md
decision 12): ``fl_x, fl_y, cx, cy`` (pixels), ``w, h``, ``transform_matrix`` (4×4
camera-to-world, NeRF/OpenGL), ``name`` and ``split``. A camera file
(``rerf render --camera FILE.json``, the player's ``setView``) is that object on its own, with
``name`` and ``split`` optional (:func:`read_camera_file`).

Camera and pixel convention (everything else -- trainer, renderers, importers, bench --
relies on it, so it lives here and nowhere else):

* ``transform_matrix`` is camera-to-world (``c2w``) in the NeRF/OpenGL convention: in
  camera coordinates the camera looks along −z, +y is up and +x is right. Its rotation
  part is orthonormal with determinant +1, its last row is ``[0, 0, 0, 1]``.
* Pixel ``(u, v)`` (column ``u``, row ``v``, origin at the top-left corner) covers the
  square ``[u, u+1) × [v, v+1)``. Its centre ray in camera coordinates is
  ``d = ((u + 0.5 − cx) / fl_x, −(v + 0.5 − cy) / fl_y, −1)``; in world coordinates the
  ray starts at ``c2w[:3, 3]`` and points along ``c2w[:3, :3] @ d``.
* A world point ``P`` projects to ``Pc = inverse(c2w) @ P``,
  ``u = cx + fl_x · Pc.x / (−Pc.z)``, ``v = cy − fl_y · Pc.y / (−Pc.z)`` (continuous pixel
  coordinates, so a pixel centre projects to ``(u + 0.5, v + 0.5)``); it is visible iff
  ``−Pc.z > 0`` and ``(u, v)`` lies in ``[0, w) × [0, h)``.

This module never imports torch (``rerf dataset`` and ``rerf play`` must run without it), and it
also holds the one orbit rig (:func:`direction`, :func:`fit_distance`, :func:`orbit_cameras`)
used by the dataset renderer's camera rings and the player's camera paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rerf_codec.checks import is_int as _is_int
from rerf_codec.checks import is_number as _is_number
from rerf_codec.checks import show as _show
from rerf_codec.errors import RerfError, RerfFormatError, RerfUsageError
from rerf_codec.jsonfile import loads_strict, read_bounded

__all__ = [
    "MAX_IMAGE_SIDE",
    "ORBIT_ELEVATION",
    "ROTATION_TOL",
    "SPIRAL_AMPLITUDE",
    "SPLITS",
    "UP",
    "VIEW_MARGIN",
    "Camera",
    "direction",
    "fit_distance",
    "orbit_cameras",
    "read_camera_file",
]

ROTATION_TOL = 1e-4  # max |RᵀR − I| entry; JSON round trips and float32 exporters stay far below
MAX_IMAGE_SIDE = 16384  # caps checked before any image buffer is allocated (DESIGN.md decision 5)
SPLITS = ("train", "test")
_CAMERA_KEYS = ("name", "split", "fl_x", "fl_y", "cx", "cy", "w", "h", "transform_matrix")
_MAX_CAMERA_JSON = 1 << 20

VIEW_MARGIN = 0.05
"""Fraction of the half-image kept free around the projected box by :func:`fit_distance`."""
UP = np.array([0.0, 1.0, 0.0])
"""World up of every rig (crane and horse-gallop are y-up; so is the demo scene)."""
ORBIT_ELEVATION = 20.0
SPIRAL_AMPLITUDE = 25.0
ORBIT_FOV_X_DEG = 40.0


def finite(v: Any) -> bool:
    """A real, finite number (bools excluded)."""
    return _is_number(v) and math.isfinite(float(v))


def _valid_name(name: Any) -> bool:
    """Camera names become file names: no separators, no hidden files, no surprises."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 128
        and not name.startswith(".")
        and all(c.isalnum() or c in "_-." for c in name)
    )


def _check_c2w(m: Any, where: str, err: type[RerfError]) -> np.ndarray:
    """A finite 4×4 rigid transform: orthonormal rotation with det +1, last row [0, 0, 0, 1]."""
    fld = f"{where}field 'transform_matrix'"
    if isinstance(m, np.ndarray):
        rows = m.tolist() if m.shape == (4, 4) else None
    elif isinstance(m, (list, tuple)) and len(m) == 4 and all(isinstance(r, (list, tuple)) and len(r) == 4 for r in m):
        rows = [list(r) for r in m]
    else:
        rows = None
    if rows is None:
        raise err(f"{fld} must be a 4×4 matrix (list of 4 rows of 4 numbers), got {_show(m)}")
    for r in rows:
        for v in r:
            if not finite(v):
                raise err(f"{fld} must contain finite numbers only, got {_show(v)}")
    a = np.array(rows, dtype=np.float64)
    if np.max(np.abs(a[3] - [0.0, 0.0, 0.0, 1.0])) > 1e-9:
        raise err(f"{fld}: last row must be [0, 0, 0, 1], got {_show(a[3].tolist())}")
    rot = a[:3, :3]
    dev = float(np.max(np.abs(rot.T @ rot - np.eye(3))))
    if dev > ROTATION_TOL:
        raise err(
            f"{fld}: rotation part is not orthonormal (max |RᵀR − I| = {dev:.3g}, tolerance {ROTATION_TOL:g}); "
            "expected a rigid camera-to-world transform without scale"
        )
    det = float(np.linalg.det(rot))
    if det < 0:
        raise err(f"{fld}: rotation part has determinant {det:.4f}, expected +1 (a reflection, not a rotation)")
    return a


def _check_camera_values(
    name: Any, split: Any, fl_x: Any, fl_y: Any, cx: Any, cy: Any, w: Any, h: Any, where: str, err: type[RerfError]
) -> None:
    if not _valid_name(name):
        raise err(
            f"{where}field 'name' must be 1..128 letters, digits, '_', '-' or '.' (not starting with '.'), "
            f"got {_show(name)}"
        )
    if split not in SPLITS:
        raise err(f'{where}field \'split\' must be "train" or "test", got {_show(split)}')
    for key, v in (("w", w), ("h", h)):
        if not _is_int(v) or not 1 <= int(v) <= MAX_IMAGE_SIDE:
            raise err(f"{where}field '{key}' must be an integer in 1..{MAX_IMAGE_SIDE}, got {_show(v)}")
    for key, v in (("fl_x", fl_x), ("fl_y", fl_y)):
        if not finite(v) or float(v) <= 0:
            raise err(f"{where}field '{key}' must be a finite number > 0, got {_show(v)}")
    for key, v in (("cx", cx), ("cy", cy)):
        if not finite(v):
            raise err(f"{where}field '{key}' must be a finite number, got {_show(v)}")


@dataclass(frozen=True)
class Camera:
    """One pinhole camera: intrinsics in pixels and a camera-to-world pose (see the module docstring).

    ``c2w`` is stored as a read-only float64 copy so a frozen camera really is immutable.
    Constructing a camera validates it (``RerfUsageError``); ``from_json`` validates a
    file's camera entry first and raises ``RerfFormatError`` naming the file and field.
    """

    name: str
    split: str
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    w: int
    h: int
    c2w: np.ndarray

    def __post_init__(self) -> None:
        where = f"camera {_show(self.name)}: "
        _check_camera_values(
            self.name, self.split, self.fl_x, self.fl_y, self.cx, self.cy, self.w, self.h, where, RerfUsageError
        )
        c2w = _check_c2w(self.c2w, where, RerfUsageError)
        c2w.flags.writeable = False
        for key in ("fl_x", "fl_y", "cx", "cy"):
            object.__setattr__(self, key, float(getattr(self, key)))
        object.__setattr__(self, "w", int(self.w))
        object.__setattr__(self, "h", int(self.h))
        object.__setattr__(self, "c2w", c2w)

    # ndarray fields break the generated __eq__/__hash__; compare by value instead.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return self._key() == other._key() and bool(np.array_equal(self.c2w, other.c2w))

    def __hash__(self) -> int:
        return hash((*self._key(), self.c2w.tobytes()))

    def _key(self) -> tuple[Any, ...]:
        return (self.name, self.split, self.fl_x, self.fl_y, self.cx, self.cy, self.w, self.h)

    @property
    def center(self) -> np.ndarray:
        """Camera position in world coordinates (``c2w[:3, 3]``)."""
        return self.c2w[:3, 3].copy()

    @property
    def w2c(self) -> np.ndarray:
        """World-to-camera transform (exact inverse of ``c2w``)."""
        return np.linalg.inv(self.c2w)

    def pixel_directions(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unit world directions through continuous pixel positions ``(u, v)`` (centres are ``+0.5``).

        Why separate from ``rays``: trainers sample random pixels and must not build all rays.
        """
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        d = np.stack([(u - self.cx) / self.fl_x, -(v - self.cy) / self.fl_y, -np.ones_like(u)], axis=-1)
        d = d @ self.c2w[:3, :3].T
        # np.linalg.norm's sum, spelled out: the same bits (((x² + y²) + z²), then the root), 3× faster
        # on a (h, w, 3) array, whose 3-long axis numpy reduces slowly
        sq = d * d
        return d / np.sqrt(sq[..., 0] + sq[..., 1] + sq[..., 2])[..., None]

    def rays(self, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
        """Centre rays of every pixel: origins ``(h, w, 3)`` and unit directions ``(h, w, 3)``, world space.

        Computed in float64 and returned as ``dtype`` (float32 by default: a 4K camera's
        rays in float64 would be 400 MB).
        """
        u, v = np.meshgrid(np.arange(self.w) + 0.5, np.arange(self.h) + 0.5)
        dirs = self.pixel_directions(u, v).astype(dtype, copy=False)
        origins = np.empty_like(dirs)
        origins[...] = self.c2w[:3, 3].astype(dtype)
        return origins, dirs

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points ``(..., 3)`` to continuous pixel coordinates ``(..., 2)`` and depth ``(...)``.

        Depth is ``−Pc.z`` (positive in front of the camera); points with depth ≤ 0 get
        non-finite or meaningless pixel coordinates, so callers test ``depth > 0``.
        """
        p = np.asarray(points, dtype=np.float64)
        if p.shape[-1:] != (3,):
            raise RerfUsageError(f"Camera.project: points must have shape (..., 3), got {p.shape}")
        w2c = self.w2c
        pc = p @ w2c[:3, :3].T + w2c[:3, 3]
        depth = -pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.cx + self.fl_x * pc[..., 0] / depth
            v = self.cy - self.fl_y * pc[..., 1] / depth
        return np.stack([u, v], axis=-1), depth

    def visible(self, points: np.ndarray) -> np.ndarray:
        """Boolean mask of the points in front of the camera and inside the image."""
        uv, depth = self.project(points)
        with np.errstate(invalid="ignore"):
            return (depth > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < self.w) & (uv[..., 1] >= 0) & (uv[..., 1] < self.h)


    def resized(self, size: tuple[int, int] | None) -> Camera:
        """The same view at ``size`` = (w, h) pixels: intrinsics scaled per axis (``None``: unchanged)."""
        if size is None or tuple(size) == (self.w, self.h):
            return self
        w, h = size
        sx, sy = w / self.w, h / self.h
        return Camera(self.name, self.split, self.fl_x * sx, self.fl_y * sy, self.cx * sx, self.cy * sy, w, h, self.c2w)

    def to_json(self) -> dict[str, Any]:
        """The ``cameras[]`` entry of ``transforms.json``."""
        return {
            "name": self.name,
            "split": self.split,
            "fl_x": self.fl_x,
            "fl_y": self.fl_y,
            "cx": self.cx,
            "cy": self.cy,
            "w": self.w,
            "h": self.h,
            "transform_matrix": self.c2w.tolist(),
        }

    @staticmethod
    def from_json(d: Any, source: str = "transforms.json", index: int | None = 0) -> Camera:
        """Validate one ``cameras[index]`` entry (``index=None``: a camera file of its own); errors are
        ``RerfFormatError`` naming ``source`` and the field."""
        where = f"{source}: cameras[{index}]" if index is not None else source
        if not isinstance(d, dict):
            raise RerfFormatError(f"{where} must be an object, got {_show(d)}")
        if _valid_name(d.get("name")):
            where += f" ({d['name']})"
        where += ": "
        for key in _CAMERA_KEYS:
            if key not in d:
                raise RerfFormatError(f"{where}missing field '{key}'")
        extra = sorted(set(d) - set(_CAMERA_KEYS))
        if extra:
            raise RerfFormatError(f"{where}unknown field '{extra[0]}' (fields: {', '.join(_CAMERA_KEYS)})")
        _check_camera_values(
            d["name"], d["split"], d["fl_x"], d["fl_y"], d["cx"], d["cy"], d["w"], d["h"], where, RerfFormatError
        )
        c2w = _check_c2w(d["transform_matrix"], where, RerfFormatError)
        return Camera(d["name"], d["split"], d["fl_x"], d["fl_y"], d["cx"], d["cy"], d["w"], d["h"], c2w)

    @staticmethod
    def look_at(
        name: str,
        eye: Sequence[float],
        target: Sequence[float],
        up: Sequence[float],
        fov_x_deg: float,
        w: int,
        h: int,
        split: str = "train",
    ) -> Camera:
        """A camera at ``eye`` looking at ``target`` (projects to the image centre), ``up`` roughly up.

        Square pixels (``fl_y == fl_x``), principal point at the image centre.
        """
        eye_a = np.asarray(eye, dtype=np.float64)
        fwd = np.asarray(target, dtype=np.float64) - eye_a
        up_a = np.asarray(up, dtype=np.float64)
        if eye_a.shape != (3,) or fwd.shape != (3,) or up_a.shape != (3,):
            raise RerfUsageError("Camera.look_at: eye, target and up must be 3-vectors")
        if not (np.all(np.isfinite(eye_a)) and np.all(np.isfinite(fwd)) and np.all(np.isfinite(up_a))):
            raise RerfUsageError("Camera.look_at: eye, target and up must be finite")
        if not (finite(fov_x_deg) and 0 < float(fov_x_deg) < 180):
            raise RerfUsageError(f"Camera.look_at: fov_x_deg must be in (0, 180), got {_show(fov_x_deg)}")
        n = np.linalg.norm(fwd)
        if n == 0:
            raise RerfUsageError("Camera.look_at: eye and target coincide")
        fwd = fwd / n
        right = np.cross(fwd, up_a)
        rn = np.linalg.norm(right)
        if rn < 1e-9 * max(1.0, float(np.linalg.norm(up_a))):
            raise RerfUsageError("Camera.look_at: up is parallel to the viewing direction (or zero)")
        right = right / rn
        true_up = np.cross(right, fwd)
        c2w = np.eye(4)
        c2w[:3, 0] = right
        c2w[:3, 1] = true_up
        c2w[:3, 2] = -fwd
        c2w[:3, 3] = eye_a
        fl = 0.5 * w / math.tan(math.radians(float(fov_x_deg)) / 2)
        return Camera(name, split, fl, fl, w / 2, h / 2, w, h, c2w)


def read_camera_file(path: str | Path) -> Camera:
    """Read one camera from a JSON file: a ``transforms.json`` camera entry (``name``, ``split`` optional).

    Errors are ``RerfFormatError`` naming the file and the field.
    """
    p = Path(path)
    d = loads_strict(read_bounded(p, _MAX_CAMERA_JSON, " (not a camera file?)"), str(p))
    if isinstance(d, dict):
        d = {"name": "camera", "split": "test", **d}
    return Camera.from_json(d, str(p), index=None)


def direction(elev_deg: float, azim_deg: float) -> np.ndarray:
    """Unit vector from the centre towards a camera at this elevation / azimuth (azimuth 0: +z, 90: +x)."""
    e, a = math.radians(elev_deg), math.radians(azim_deg)
    return np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])


def fit_distance(
    xyz_min: Sequence[float], xyz_max: Sequence[float], directions: Iterable[np.ndarray], fov_x_deg: float,
    aspect: float = 1.0,
) -> float:  # fmt: skip
    """Smallest distance from the box centre, along every one of ``directions``, at which the whole box is in view.

    A ``VIEW_MARGIN`` of the half-image stays free; ``aspect`` = width / height (the tighter
    field of view decides); every corner also stays in front of the camera by 5 % of the box size.
    """
    lo, hi = np.asarray(xyz_min, np.float64), np.asarray(xyz_max, np.float64)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    corners -= (lo + hi) / 2
    tan_x = math.tan(math.radians(fov_x_deg) / 2) * (1 - VIEW_MARGIN)
    tan_y = tan_x / aspect
    size = float(np.linalg.norm(corners, axis=1).max())
    best = 0.0
    for d in directions:
        fwd = -d
        right = np.cross(fwd, UP)
        right /= np.linalg.norm(right)
        up = np.cross(right, fwd)
        along = corners @ fwd  # depth of a corner is distance + along
        need = np.maximum(np.abs(corners @ right) / tan_x, np.abs(corners @ up) / tan_y) - along
        need = np.maximum(need, 0.05 * size - along)
        best = max(best, float(need.max()))
    return best


def orbit_cameras(
    xyz_min: Sequence[float], xyz_max: Sequence[float], n: int, size: tuple[int, int], *, spiral: bool = False
) -> list[Camera]:
    """``n`` cameras on one revolution around the box centre, looking at it, world +y up, 40° horizontal FOV.

    Frame ``k`` of ``n`` is at azimuth ``360·k/n`` and elevation ``ORBIT_ELEVATION`` (``spiral``:
    ``± SPIRAL_AMPLITUDE`` twice per revolution), at one distance for the whole path that keeps
    the box in view from every point of it (sampled densely, so a short path does not change it).
    """
    w, h = size
    center = (np.asarray(xyz_min, np.float64) + np.asarray(xyz_max, np.float64)) / 2

    def elevation(k: int, n: int) -> float:
        return ORBIT_ELEVATION + (SPIRAL_AMPLITUDE * math.sin(4 * math.pi * k / n) if spiral else 0.0)

    probe = [direction(elevation(j, 72), 5 * j) for j in range(72)]
    dist = fit_distance(xyz_min, xyz_max, probe, ORBIT_FOV_X_DEG, w / h)
    return [
        Camera.look_at(
            f"path{k:05d}", center + dist * direction(elevation(k, n), 360.0 * k / n), center, UP, ORBIT_FOV_X_DEG, w, h
        )
        for k in range(n)
    ]
