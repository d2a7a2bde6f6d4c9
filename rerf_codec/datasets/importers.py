"""Importers into the native dataset format (DESIGN.md decision 7): NeRF-synthetic and the ReRF/NHR capture layout.

Both write through ``DatasetWriter``, so a failure at any point (bad pose, missing or
unreadable image or video, inconsistent counts) raises one ``RerfFormatError`` naming the
offending file (and line or field) and leaves nothing behind; an existing output is only
replaced with ``force``.

NeRF-synthetic (``import_nerf``)
================================

``DIR/transforms_{train,val,test}.json`` (Mildenhall et al. 2020; the layout of
``../shared/data/lego200``):
``{"camera_angle_x": fov, "frames": [{"file_path": "./train/r_0", "transform_matrix": 4×4}]}``.
``transform_matrix`` is camera-to-world in the OpenGL convention already (the native one);
``file_path`` is relative to DIR, ``.png`` appended when it has no extension. Focal length
``fl = 0.5·w / tan(0.5·camera_angle_x)`` (``camera_angle_y`` gives ``fl_y`` if present), principal
point at the image centre. Optional instant-ngp/nerfstudio keys ``fl_x, fl_y, cx, cy, w, h`` (top
level or per frame) override; a non-zero lens distortion (``k1 k2 k3 k4 p1 p2``) is refused.
Static scene: ``num_frames = 1``, every view is a camera (``cam000``.. train views first,
then test views). Backgrounds are white (the NeRF-synthetic convention); RGBA sources stay
RGBA, RGB sources give an RGB dataset. Scene box ``[-1.5, 1.5]³`` (where NeRF-synthetic
objects lie) unless the JSON has a ``bbox``/``aabb`` key. A lone ``DIR/transforms.json``
(instant-ngp style) is accepted too; its held-out views are then chosen by
``split_cameras``.

ReRF / NHR capture (``import_rerf``)
====================================

What the public sources say (read through the code index; repository and path):

* ``aoliao12138/ReRF_Dataset README.md`` -- the released scenes (kpop 4000 frames, box 1000,
  sing 800) are folders with ``image/000.mp4 .. 075.mp4`` ("Captured videos with **white
  background**", one video per camera index), ``mask/000.mp4 ..`` (the masks, same naming),
  ``bbox.json`` ("the bounding box of the scene"), ``CamPose.inf`` and ``Intrinsic.inf``
  ("in the NHR format").
* ``wuminye/NHR README.md`` -- "CamPose.inf: Camera extrinsics. In each row, the 3x4 [R T]
  matrix is displayed in columns, with the third column followed by columns 1, 2, and 4,
  where R*X^{camera}+T=X^{world}." So one line of 12 numbers per camera, camera-to-world:
  ``z-axis(3) x-axis(3) y-axis(3) centre(3)``. "Intrinsic.inf: The format of each intrinsics
  is: "idx \\n fx 0 cx \\n 0 fy cy \\n 0 0 1 \\n \\n" (idx starts from 0)".
* ``wuminye/NHR tools/cameras_from_metashape.py`` -- the writer of both files: CamPose rows are
  ``concatenate([A[:,2], A[:,0], A[:,1], A[:,3]])`` of Metashape's camera-to-world transform;
  Intrinsic blocks are ``"%d\\n" + "%f %f %f\\n %f %f %f\\n %f %f %f\\n" + "\\n"`` with
  ``K = [[fx, b2, cx], [0, fy, cy], [0, 0, 1]]`` (``b2`` = Metashape skew; accepted while it
  moves no pixel by more than half a pixel, then ignored) and ``cx = width/2 + offset``.
* ``aoliao12138/ReRF data_util.py`` (identical in ``wuminye/TeTriRF
  tools/rerf_to_nhr_conversion.py``) -- ``campose_to_extrinsic`` puts numbers 0:3 in column 2,
  3:6 in column 0, 6:9 in column 1, 9:12 in column 3; ``read_intrinsics`` skips the index
  and blank lines (lines of <= 5 characters) and reads three rows per camera; videos are
  ``image/{i:03d}.mp4`` + ``mask/{i:03d}.mp4`` for camera ``i``; masks are used as
  ``mask/255`` (soft alpha). That script also recentres and rescales the camera centres for
  its trainer; this importer keeps the file's own world frame (so ``bbox.json`` applies as is).
* ``aoliao12138/ReRF configs/rerf/kpop.py`` + ``lib/dvgo.py get_rays`` -- ``inverse_y=True``:
  ray direction ``((i+0.5-cx)/fx, (j+0.5-cy)/fy, 1)`` in camera space, i.e. the OpenCV
  convention (x right, y down, looking along +z) with pixel centres at ``+0.5``, and
  ``white_bkgd=True``.

So this importer reads ``CamPose.inf`` as OpenCV camera-to-world and converts it with
``c2w_gl = c2w_cv @ diag(1, −1, −1, 1)``; uses ``K`` as is (same pixel-centre convention as
the native format); composes ``RGBA = (image RGB, mask luminance)``; and sets the background
to white (the captures' and ReRF's own choice; ``background=`` overrides). The public
sources do not document the keys of ``bbox.json``; accepted are ``{"xyz_min", "xyz_max"}``,
``{"min", "max"}``, ``{"bbox_min", "bbox_max"}``, ``{"aabb": [min, max]}``, ``[min, max]`` or
6 numbers, in the ``CamPose.inf`` world frame, and the box's centre must lie in front of
most cameras (a box in another frame is caught). Videos are decoded by the ffmpeg binary
of ``imageio-ffmpeg``, one camera at a time (two decoder processes per worker, one frame
in memory each), never the whole capture.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rerf_codec.datasets.format import (
    MAX_CAMERAS,
    MAX_IMAGE_SIDE,
    TRANSFORMS_JSON,
    Camera,
    DatasetMeta,
    DatasetWriter,
    split_cameras,
)
from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.framerange import FrameRange, parse_frame_range
from rerf_codec.jsonfile import read_bounded

__all__ = ["NERF_DEFAULT_BBOX", "import_nerf", "import_rerf", "parse_campose", "parse_intrinsics"]

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)`` after each written image."""

NERF_DEFAULT_BBOX = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))
_SOURCE_ROT_TOL = 1e-3  # source files print 4-6 decimals; anything worse is not a rotation
_OPENCV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])
_MAX_SOURCE_JSON = 64 << 20
_SOFT_LO, _SOFT_HI = 8, 247  # soft masks: codec noise near black/white snaps to exactly 0/255


# --------------------------------------------------------------------------- shared helpers


def _progress(progress: ProgressFn | None, lock: threading.Lock) -> Callable[[int], None]:
    state = {"done": 0}

    def step(total: int) -> None:
        if progress is None:
            return
        with lock:
            state["done"] += 1
            progress(state["done"], total)

    return step


def _rigid(m: np.ndarray, where: str) -> np.ndarray:
    """Check a camera-to-world 4×4 is rigid (orthonormal rotation, det +1) and snap it to exactly so."""
    if not np.all(np.isfinite(m)):
        raise RerfFormatError(f"{where}: non-finite numbers in the camera pose")
    rot = m[:3, :3]
    dev = float(np.max(np.abs(rot.T @ rot - np.eye(3))))
    if dev > _SOURCE_ROT_TOL:
        raise RerfFormatError(
            f"{where}: rotation is not orthonormal (max |RᵀR − I| = {dev:.3g}, tolerance {_SOURCE_ROT_TOL:g})"
        )
    if np.linalg.det(rot) < 0:
        raise RerfFormatError(f"{where}: rotation has determinant −1 (a reflection, not a rotation)")
    u, _, vt = np.linalg.svd(rot)
    out = np.eye(4)
    out[:3, :3] = u @ vt
    out[:3, 3] = m[:3, 3]
    return out


def _read_json(path: Path) -> Any:
    raw = read_bounded(path, _MAX_SOURCE_JSON)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RerfFormatError(f"{path}: invalid JSON: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise RerfFormatError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise RerfFormatError(f"{path}: invalid JSON: nested too deeply") from None


def _vec3(v: Any) -> tuple[float, float, float] | None:
    if isinstance(v, (list, tuple)) and len(v) == 3:
        try:
            out = tuple(float(x) for x in v)
        except (TypeError, ValueError):
            return None
        if all(math.isfinite(x) for x in out) and not any(isinstance(x, bool) for x in v):
            return out  # type: ignore[return-value]
    return None


def _parse_bbox(d: Any, where: str) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """A box from the usual spellings (see the module docstring); None when ``d`` holds none of them."""
    pair: Any = None
    if isinstance(d, dict):
        for lo, hi in (("xyz_min", "xyz_max"), ("min", "max"), ("bbox_min", "bbox_max"), ("aabb_min", "aabb_max")):
            if lo in d or hi in d:
                pair = (d.get(lo), d.get(hi))
                break
        else:
            for key in ("bbox", "aabb"):
                if key in d:
                    return _parse_bbox(d[key], f"{where} field '{key}'") or _bad_bbox(d[key], where)
            return None
    elif isinstance(d, (list, tuple)):
        if len(d) == 6:
            pair = (d[:3], d[3:])
        elif len(d) == 2:
            pair = (d[0], d[1])
        else:
            _bad_bbox(d, where)
    else:
        _bad_bbox(d, where)
    lo3, hi3 = _vec3(pair[0]), _vec3(pair[1])
    if lo3 is None or hi3 is None:
        _bad_bbox(d, where)
    assert lo3 is not None and hi3 is not None
    if not all(a < b for a, b in zip(lo3, hi3, strict=True)):
        raise RerfFormatError(f"{where}: bounding box min must be < max on every axis, got min={lo3} max={hi3}")
    return lo3, hi3


def _bad_bbox(v: Any, where: str) -> Any:
    text = json.dumps(v) if isinstance(v, (list, dict, int, float, str)) else repr(v)
    raise RerfFormatError(
        f'{where}: expected a bounding box {{"xyz_min": [x,y,z], "xyz_max": [x,y,z]}} '
        f"(or min/max, bbox_min/bbox_max, [min, max], 6 numbers), got {text[:80]}"
    )


def _cam_name(i: int, n: int) -> str:
    return f"cam{i:0{max(3, len(str(n - 1)))}d}"


# --------------------------------------------------------------------------- NeRF-synthetic


_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")


@dataclass
class _NerfView:
    json_path: Path
    index: int
    image: Path
    c2w: np.ndarray
    intr: dict[str, Any]
    split: str
    size: tuple[int, int] = (0, 0)
    alpha: bool = False


def _number(v: Any, where: str, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise RerfFormatError(f"{where} must be a finite number, got {json.dumps(v)[:40]}")
    if positive and float(v) <= 0:
        raise RerfFormatError(f"{where} must be > 0, got {v}")
    return float(v)


def _nerf_views(json_path: Path, split: str) -> list[_NerfView]:
    d = _read_json(json_path)
    if not isinstance(d, dict):
        raise RerfFormatError(f"{json_path}: top level must be a JSON object")
    if d.get("format") == "rerf-dataset":
        raise RerfUsageError(f"{json_path}: this is already a rerf dataset; nothing to import")
    frames = d.get("frames")
    if not isinstance(frames, list) or not frames:
        raise RerfFormatError(f"{json_path}: field 'frames' must be a non-empty list")
    if len(frames) > MAX_CAMERAS:
        raise RerfFormatError(f"{json_path}: {len(frames)} views, at most {MAX_CAMERAS} cameras are supported")
    top = {k: d[k] for k in (*_INTRINSIC_KEYS, *_DISTORTION_KEYS) if k in d}
    views = []
    for i, f in enumerate(frames):
        where = f"{json_path}: frames[{i}]"
        if not isinstance(f, dict):
            raise RerfFormatError(f"{where} must be an object")
        fp = f.get("file_path")
        if not isinstance(fp, str) or not fp:
            raise RerfFormatError(f"{where}: field 'file_path' must be a non-empty string")
        image = json_path.parent / fp
        if not image.suffix:
            image = image.with_name(image.name + ".png")
        m = f.get("transform_matrix")
        try:
            c2w = np.array(m, dtype=np.float64)
        except (TypeError, ValueError):
            c2w = np.zeros(0)
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
        if c2w.shape != (4, 4) or np.max(np.abs(c2w[3] - [0, 0, 0, 1])) > 1e-6:
            raise RerfFormatError(f"{where}: field 'transform_matrix' must be a 4×4 rigid transform, got {m!r:.80}")
        c2w = _rigid(c2w, f"{where} field 'transform_matrix'")
        intr = {**top, **{k: f[k] for k in (*_INTRINSIC_KEYS, *_DISTORTION_KEYS) if k in f}}
        for k in _DISTORTION_KEYS:
            if k in intr and _number(intr[k], f"{where}: field '{k}'") != 0.0:
                raise RerfFormatError(f"{where}: lens distortion ('{k}' = {intr[k]}) is not supported; undistort first")
        if "fl_x" not in intr and "camera_angle_x" not in intr:
            raise RerfFormatError(f"{json_path}: missing field 'camera_angle_x' (or 'fl_x')")
        views.append(_NerfView(json_path, i, image, c2w, intr, split))
    return views


def _probe_png(view: _NerfView) -> None:
    from PIL import Image

    where = f"{view.image} ({view.json_path.name} frames[{view.index}])"
    try:
        with Image.open(view.image) as im:
            view.size = (int(im.width), int(im.height))
            view.alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info)
    except FileNotFoundError:
        raise RerfFormatError(f"{where}: image is missing") from None
    except Exception as exc:  # PIL raises anything from OSError to SyntaxError on bad data
        raise RerfFormatError(f"{where}: cannot read image: {exc}") from None
    w, h = view.size
    if not (1 <= w <= MAX_IMAGE_SIDE and 1 <= h <= MAX_IMAGE_SIDE):
        raise RerfFormatError(f"{where}: image is {w}×{h}, sides must be 1..{MAX_IMAGE_SIDE}")


def _load_png(path: Path, mode: str, where: str) -> np.ndarray:
    """Decode any 8/16-bit PNG-like image to uint8 RGBA or RGB (gray expanded, 16-bit scaled, alpha added)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode in ("PA", "La", "RGBa"):
                im = im.convert("RGBA")
            arr = np.asarray(im)
    except Exception as exc:
        raise RerfFormatError(f"{where}: cannot decode image: {exc}") from None
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype in (np.uint16, np.int32, np.dtype(">u2"), np.dtype("<u2")) and arr.size and arr.min() >= 0:
        arr = (np.minimum(arr.astype(np.int64), 65535) >> 8).astype(np.uint8)
    else:
        raise RerfFormatError(f"{where}: unsupported sample type {arr.dtype} (expected 8- or 16-bit)")
    if arr.ndim == 2:
        arr = arr[..., None]
    c = arr.shape[2]
    if c in (1, 2):  # gray (+ alpha)
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=2), arr[..., 1:]], axis=2)
    elif c not in (3, 4):
        raise RerfFormatError(f"{where}: unsupported image with {c} channels")
    if mode == "RGBA" and arr.shape[2] == 3:
        arr = np.concatenate([arr, np.full((*arr.shape[:2], 1), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(arr[..., :4] if mode == "RGBA" else arr[..., :3])


def _nerf_camera(view: _NerfView, name: str) -> Camera:
    w, h = view.size
    intr = view.intr
    where = f"{view.json_path}: frames[{view.index}]"
    for k in ("w", "h"):
        if k in intr and int(_number(intr[k], f"{where}: field '{k}'")) != (w if k == "w" else h):
            raise RerfFormatError(f"{where}: field '{k}' = {intr[k]} but {view.image} is {w}×{h}")
    if "fl_x" in intr:
        fl_x = _number(intr["fl_x"], f"{where}: field 'fl_x'", positive=True)
    else:
        ang = _number(intr["camera_angle_x"], f"{view.json_path}: field 'camera_angle_x'", positive=True)
        if ang >= math.pi:
            raise RerfFormatError(f"{view.json_path}: field 'camera_angle_x' = {ang} must be < π (radians)")
        fl_x = 0.5 * w / math.tan(0.5 * ang)
    if "fl_y" in intr:
        fl_y = _number(intr["fl_y"], f"{where}: field 'fl_y'", positive=True)
    elif "camera_angle_y" in intr:
        ang = _number(intr["camera_angle_y"], f"{view.json_path}: field 'camera_angle_y'", positive=True)
        if ang >= math.pi:
            raise RerfFormatError(f"{view.json_path}: field 'camera_angle_y' = {ang} must be < π (radians)")
        fl_y = 0.5 * h / math.tan(0.5 * ang)
    else:
        fl_y = fl_x
    cx = _number(intr["cx"], f"{where}: field 'cx'") if "cx" in intr else w / 2
    cy = _number(intr["cy"], f"{where}: field 'cy'") if "cy" in intr else h / 2
    return Camera(name, view.split, fl_x, fl_y, cx, cy, w, h, view.c2w)


def _spread(n: int, keep: int) -> list[int]:
    """``keep`` of ``n`` indices spread evenly (the middle of each of ``keep`` equal runs)."""
    if keep >= n:
        return list(range(n))
    return [int((i + 0.5) * n / keep) for i in range(keep)]


def import_nerf(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    force: bool = False,
    test_split: str = "test",
    max_test: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Import a NeRF-synthetic scene (``transforms_{train,test}.json`` + PNGs) as a one-frame dataset.

    Args:
        src_dir: the scene folder (holding ``transforms_train.json``).
        out_dir: the dataset folder to create (atomically).
        force: replace an existing dataset at ``out_dir``.
        test_split: which file gives the held-out cameras: ``"test"`` or ``"val"``.
        max_test: keep at most this many held-out views, spread evenly over the file's order.
        progress: ``progress(done, total)`` after each image.

    Returns:
        A summary: ``path``, ``num_frames``, ``cameras``, ``train``, ``test``, ``image_mode``,
        ``size`` (``[w, h]`` of the first camera), ``fps``, ``xyz_min``, ``xyz_max``.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise RerfUsageError(f"{src}: not a directory (expected a NeRF-synthetic scene folder)")
    if test_split not in ("test", "val"):
        raise RerfUsageError(f'test_split must be "test" or "val", got {test_split!r}')
    if max_test is not None and (isinstance(max_test, bool) or not isinstance(max_test, int) or max_test < 1):
        raise RerfUsageError(f"max_test must be an integer >= 1, got {max_test!r}")
    train_json = src / "transforms_train.json"
    bbox_docs: list[tuple[Path, Any]] = []
    if train_json.is_file():
        test_json = src / f"transforms_{test_split}.json"
        if not test_json.is_file():
            raise RerfFormatError(
                f"{test_json}: file is missing (the held-out {test_split} views; a dataset always has test cameras)"
            )
        train = _nerf_views(train_json, "train")
        test = _nerf_views(test_json, "test")
        if max_test is not None:
            test = [test[i] for i in _spread(len(test), max_test)]
        views = train + test
        bbox_docs = [(train_json, _read_json(train_json)), (test_json, _read_json(test_json))]
    elif (src / TRANSFORMS_JSON).is_file():
        single = src / TRANSFORMS_JSON
        views = _nerf_views(single, "train")
        if len(views) < 2:
            raise RerfFormatError(f"{single}: 1 view; a dataset needs train and test cameras")
        n_test = min(max_test or 4, max(1, len(views) // 8), len(views) - 1)
        for v, s in zip(views, split_cameras(len(views), n_test), strict=True):
            v.split = s
        bbox_docs = [(single, _read_json(single))]
    else:
        raise RerfFormatError(f"{train_json}: file is missing (not a NeRF-synthetic scene folder)")
    if len(views) > MAX_CAMERAS:
        raise RerfFormatError(f"{src}: {len(views)} views, at most {MAX_CAMERAS} cameras are supported")

    for v in views:
        _probe_png(v)
    mode = "RGBA" if any(v.alpha for v in views) else "RGB"
    cameras = [_nerf_camera(v, _cam_name(i, len(views))) for i, v in enumerate(views)]
    bbox = None
    for path, doc in bbox_docs:
        if isinstance(doc, dict) and ("bbox" in doc or "aabb" in doc):
            bbox = _parse_bbox({k: doc[k] for k in ("bbox", "aabb") if k in doc}, str(path))
            break
    xyz_min, xyz_max = bbox or NERF_DEFAULT_BBOX
    meta = DatasetMeta(
        num_frames=1,
        first_frame=0,
        fps=30.0,
        xyz_min=xyz_min,
        xyz_max=xyz_max,
        image_mode=mode,
        background=(1.0, 1.0, 1.0),
        cameras=tuple(cameras),
        source={"importer": "nerf", "path": str(src.resolve()), "test_split": test_split, "max_test": max_test},
    )
    step = _progress(progress, threading.Lock())
    with DatasetWriter(out_dir, meta, force=force) as writer:
        for v, cam in zip(views, cameras, strict=True):
            where = f"{v.image} ({v.json_path.name} frames[{v.index}])"
            img = _load_png(v.image, mode, where)
            if img.shape[:2] != (cam.h, cam.w):
                raise RerfFormatError(f"{where}: image changed size while importing")
            writer.write_image(0, cam, img)
            step(len(views))
    return _summary(out_dir, meta)


def _summary(out_dir: str | Path, meta: DatasetMeta) -> dict[str, Any]:
    return {
        "path": str(out_dir),
        "num_frames": meta.num_frames,
        "first_frame": meta.first_frame,
        "cameras": len(meta.cameras),
        "train": len(meta.train_cameras),
        "test": len(meta.test_cameras),
        "image_mode": meta.image_mode,
        "size": [meta.cameras[0].w, meta.cameras[0].h],
        "fps": meta.fps,
        "xyz_min": list(meta.xyz_min),
        "xyz_max": list(meta.xyz_max),
    }


# --------------------------------------------------------------------------- ReRF / NHR: calibration files


def _floats(tokens: list[str], where: str) -> list[float]:
    try:
        vals = [float(t) for t in tokens]
    except ValueError:
        raise RerfFormatError(f"{where}: expected numbers, got {' '.join(tokens)[:80]!r}") from None
    if not all(math.isfinite(x) for x in vals):
        raise RerfFormatError(f"{where}: non-finite number")
    return vals


def _read_text(path: Path) -> list[str]:
    raw = read_bounded(path, _MAX_SOURCE_JSON)
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise RerfFormatError(f"{path}: not a text file (not UTF-8)") from None


def parse_campose(path: str | Path) -> list[np.ndarray]:
    """``CamPose.inf`` → one OpenGL camera-to-world 4×4 per camera (see the module docstring).

    Each non-empty line holds 12 numbers: the camera's z axis, x axis, y axis (columns of the
    OpenCV camera-to-world rotation) and its centre. The rotation must be orthonormal with
    determinant +1 (``RerfFormatError`` naming the file and line otherwise).
    """
    p = Path(path)
    poses = []
    for ln, line in enumerate(_read_text(p), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{p}: line {ln}"
        if len(tokens) != 12:
            raise RerfFormatError(f"{where}: expected 12 numbers (z axis, x axis, y axis, centre), got {len(tokens)}")
        v = _floats(tokens, where)
        cv = np.eye(4)
        cv[:3, 2], cv[:3, 0], cv[:3, 1], cv[:3, 3] = v[0:3], v[3:6], v[6:9], v[9:12]
        poses.append(_rigid(cv, where) @ _OPENCV_TO_GL)
        if len(poses) > MAX_CAMERAS:
            raise RerfFormatError(f"{p}: more than {MAX_CAMERAS} cameras")
    if not poses:
        raise RerfFormatError(f"{p}: no camera poses")
    return poses


def parse_intrinsics(path: str | Path) -> list[np.ndarray]:
    """``Intrinsic.inf`` → one 3×3 ``K`` per camera.

    Blocks of an index line (``0``, ``1``, ... in order; optional) and three rows of three
    numbers (or one row of nine), blank lines anywhere. ``K`` must be
    ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` with ``fx, fy > 0``.
    """
    p = Path(path)
    ks: list[np.ndarray] = []
    rows: list[list[float]] = []
    start_line = 0
    indexed: bool | None = None
    for ln, line in enumerate(_read_text(p), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{p}: line {ln}"
        if len(tokens) == 1:
            if rows:
                raise RerfFormatError(f"{where}: camera index inside an unfinished 3×3 matrix (from line {start_line})")
            try:
                idx = int(tokens[0])
            except ValueError:
                raise RerfFormatError(f"{where}: expected a camera index, got {tokens[0]!r}") from None
            if indexed is False or idx != len(ks):
                raise RerfFormatError(f"{where}: camera index {idx} out of order, expected {len(ks)}")
            indexed = True
            start_line = ln
            continue
        if len(tokens) not in (3, 9) or (len(tokens) == 9 and rows):
            raise RerfFormatError(f"{where}: expected 3 numbers (a row of K), got {len(tokens)}")
        if not rows:
            if indexed is None:
                indexed = False
            if not indexed or start_line == 0:
                start_line = ln
        vals = _floats(tokens, where)
        rows.extend(vals[j : j + 3] for j in range(0, len(vals), 3))
        if len(rows) == 3:
            k = np.array(rows, dtype=np.float64)
            rows = []
            cam = f"{p}: camera {len(ks)} (line {start_line})"
            start_line = 0
            if np.max(np.abs(k[2] - [0, 0, 1])) > 1e-6 or abs(k[1, 0]) > 1e-6:
                raise RerfFormatError(f"{cam}: K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {k.tolist()}")
            if k[0, 0] <= 0 or k[1, 1] <= 0:
                raise RerfFormatError(f"{cam}: focal lengths must be > 0, got fx={k[0, 0]:g} fy={k[1, 1]:g}")
            ks.append(k)
            if len(ks) > MAX_CAMERAS:
                raise RerfFormatError(f"{p}: more than {MAX_CAMERAS} cameras")
    if rows:
        raise RerfFormatError(f"{p}: unfinished 3×3 matrix at the end of the file (from line {start_line})")
    if not ks:
        raise RerfFormatError(f"{p}: no camera intrinsics")
    return ks


# --------------------------------------------------------------------------- ReRF / NHR: videos


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - a declared dependency
        raise RerfUsageError("importing videos needs the imageio-ffmpeg package (pip install imageio-ffmpeg)") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class _VideoInfo:
    frames: int
    w: int
    h: int
    fps: float | None


_SIZE_RE = re.compile(r",\s*(\d{1,6})x(\d{1,6})\b")
_FPS_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:fps|tbr)\b")
_FRAME_RE = re.compile(r"frame=\s*(\d+)")


def _probe_video(path: Path) -> _VideoInfo:
    """Frame count (packets of the first video stream, no decoding), size and frame rate via ffmpeg."""
    if not path.is_file():
        raise RerfFormatError(f"{path}: video is missing")
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-noautorotate", "-i", str(path)]
    cmd += ["-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RerfFormatError(f"{path}: cannot run ffmpeg to read the video: {exc}") from None
    text = r.stderr.decode("utf-8", errors="replace")
    if r.returncode != 0:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"ffmpeg exit code {r.returncode}"
        raise RerfFormatError(f"{path}: cannot read video ({reason[:200]})")
    video = next((ln for ln in text.splitlines() if "Video:" in ln), None)
    size = _SIZE_RE.search(video) if video else None
    if video is None or size is None:
        raise RerfFormatError(f"{path}: no video stream found")
    w, h = int(size.group(1)), int(size.group(2))
    if not (1 <= w <= MAX_IMAGE_SIDE and 1 <= h <= MAX_IMAGE_SIDE):
        raise RerfFormatError(f"{path}: video is {w}×{h}, sides must be 1..{MAX_IMAGE_SIDE}")
    fps_m = _FPS_RE.search(video)
    fps = float(fps_m.group(1)) if fps_m and float(fps_m.group(1)) > 0 else None
    counts = _FRAME_RE.findall(text)
    frames = int(counts[-1]) if counts else 0
    if frames <= 0:
        raise RerfFormatError(f"{path}: video has no frames")
    return _VideoInfo(frames, w, h, fps)


class _VideoReader:
    """Frames ``start .. start+count-1`` of a video as uint8 arrays, decoded lazily by one ffmpeg process."""

    def __init__(self, path: Path, gray: bool, w: int, h: int, start: int, count: int) -> None:
        self.path, self.w, self.h, self.count = path, w, h, count
        self.ch = 1 if gray else 3
        self.read_frames = 0
        cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-noautorotate", "-i", str(path)]
        cmd += ["-map", "0:v:0"]
        if start:
            cmd += ["-vf", f"select=gte(n\\,{start})", "-fps_mode", "passthrough"]
        cmd += ["-frames:v", str(count), "-f", "rawvideo", "-pix_fmt", "gray" if gray else "rgb24", "-"]
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the reader; closed in close()
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err)
        except OSError as exc:
            self._err.close()
            raise RerfFormatError(f"{path}: cannot run ffmpeg to decode the video: {exc}") from None

    def read(self) -> np.ndarray:
        size = self.w * self.h * self.ch
        buf = np.empty(size, dtype=np.uint8)
        view = memoryview(buf)
        got = 0
        assert self._proc.stdout is not None
        while got < size:
            n = self._proc.stdout.readinto(view[got:])
            if not n:
                break
            got += n
        if got < size:
            self._proc.wait()
            self._err.seek(0)
            msg = self._err.read().decode("utf-8", errors="replace").strip().splitlines()
            detail = f" ({msg[-1].strip()})" if msg else ""
            raise RerfFormatError(
                f"{self.path}: video ended after {self.read_frames} of the {self.count} frames to import{detail}"
            )
        self.read_frames += 1
        return buf.reshape(self.h, self.w, self.ch)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._err.close()


def _compose(rgb: np.ndarray, mask: np.ndarray, threshold: int | None, scale: int) -> np.ndarray:
    """RGBA from an RGB frame and a gray mask frame, box-downscaled by ``scale`` (premultiplied)."""
    m = mask[..., 0]
    if threshold is None:
        alpha = m.copy()
        alpha[m <= _SOFT_LO] = 0
        alpha[m >= _SOFT_HI] = 255
    else:
        alpha = np.where(m > threshold, 255, 0).astype(np.uint8)
    if scale == 1:
        return np.concatenate([rgb, alpha[..., None]], axis=2)
    h, w = alpha.shape[0] // scale, alpha.shape[1] // scale
    a = alpha.astype(np.float32).reshape(h, scale, w, scale).sum(axis=(1, 3))
    c = rgb.astype(np.float32).reshape(h, scale, w, scale, 3)
    prem = (c * alpha.astype(np.float32).reshape(h, scale, w, scale, 1)).sum(axis=(1, 3))
    plain = c.mean(axis=(1, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        col = np.where(a[..., None] > 0, prem / a[..., None], plain)
    out = np.empty((h, w, 4), dtype=np.uint8)
    out[..., :3] = np.clip(np.rint(col), 0, 255)
    out[..., 3] = np.clip(np.rint(a / (scale * scale)), 0, 255)
    return out


# --------------------------------------------------------------------------- ReRF / NHR: import


def _frame_range(frames: FrameRange | range | str | None) -> tuple[int, int | None]:
    """(start, stop or None for "to the end"): the video's length is known only once it is read."""
    fr = parse_frame_range(frames)
    return (0, None) if fr is None else (fr.start or 0, fr.stop)


def _test_split(n: int, test_cameras: Any, where: Path) -> list[str]:
    if n < 2:
        raise RerfFormatError(f"{where}: {n} camera; a dataset needs at least 2 (train and held-out test)")
    if test_cameras is None:
        return split_cameras(n, min(4, max(1, n // 4)))
    if isinstance(test_cameras, int) and not isinstance(test_cameras, bool):
        if not 1 <= test_cameras < n:
            raise RerfUsageError(f"test_cameras: need 1..{n - 1} test cameras of {n}, got {test_cameras}")
        return split_cameras(n, test_cameras)
    try:
        idx = [int(i) for i in test_cameras if not isinstance(i, bool) and int(i) == i]
    except (TypeError, ValueError):
        raise RerfUsageError(
            f"test_cameras must be a count or a list of camera indices, got {test_cameras!r}"
        ) from None
    if len(idx) != len(list(test_cameras)) or len(set(idx)) != len(idx) or not all(0 <= i < n for i in idx):
        raise RerfUsageError(f"test_cameras: need distinct camera indices in 0..{n - 1}, got {test_cameras!r}")
    if not 1 <= len(idx) < n:
        raise RerfUsageError(f"test_cameras: need 1..{n - 1} test cameras of {n}, got {len(idx)}")
    return ["test" if i in set(idx) else "train" for i in range(n)]


def _video_paths(folder: Path, n: int, campose: Path) -> list[Path]:
    """``folder/{i:03d}.mp4`` for every camera; a missing one, or a video without a camera, is an error."""
    if not folder.is_dir():
        raise RerfFormatError(f"{folder}: folder is missing (expected one video per camera, 000.mp4 ..)")
    paths = [folder / f"{i:03d}.mp4" for i in range(n)]
    for p in paths:
        if not p.is_file():
            raise RerfFormatError(f"{p}: video is missing ({campose.name} lists {n} cameras)")
    expected = {p.name for p in paths}
    for e in sorted(folder.iterdir()):
        if e.suffix.lower() == ".mp4" and e.name not in expected:
            raise RerfFormatError(
                f"{e}: video without a camera ({campose.name} lists {n} cameras, videos 000.mp4..{n - 1:03d}.mp4)"
            )
    return paths


def _check_bbox_in_view(bbox: tuple[Any, Any], cams: Sequence[Camera], where: str) -> None:
    center = (np.asarray(bbox[0]) + np.asarray(bbox[1])) / 2
    in_front = sum(1 for c in cams if c.project(center)[1] > 0)
    if 2 * in_front < len(cams) or not any(bool(c.visible(center)) for c in cams):
        raise RerfFormatError(
            f"{where}: the bounding box centre {center.round(4).tolist()} is in front of only {in_front} of "
            f"{len(cams)} cameras and inside no image; is the box in another coordinate frame than CamPose.inf?"
        )


def import_rerf(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    force: bool = False,
    frames: FrameRange | range | str | None = None,
    test_cameras: Any = None,
    progress: ProgressFn | None = None,
    bbox: Any = None,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    mask_threshold: int | None = None,
    downscale: int = 1,
    workers: int | None = None,
) -> dict[str, Any]:
    """Import a ReRF/NHR capture (``CamPose.inf``, ``Intrinsic.inf``, ``bbox.json``, ``image/`` + ``mask/`` videos).

    Args:
        src_dir: the capture folder.
        out_dir: the dataset folder to create (atomically).
        force: replace an existing dataset at ``out_dir``.
        frames: frames to import (a FrameRange, a range or ``A:B`` text; half-open, open ends allowed); None = all.
            Output frame numbers are the video frame numbers.
        test_cameras: held-out cameras: a count (spread by ``split_cameras``) or a list of camera
            indices; default ``min(4, max(1, n // 4))`` spread over the rig.
        progress: ``progress(done, total)`` after each image.
        bbox: override ``bbox.json``: ``(xyz_min, xyz_max)``.
        background: the colour RGBA images are composited on (white, as the captures).
        mask_threshold: None = mask luminance as alpha (near-black/white snapped to 0/255, as ReRF's
            ``mask / 255``); an integer ``t`` = binary alpha ``mask > t``.
        downscale: integer box-downscale factor (premultiplied alpha); intrinsics scaled to match.
        workers: cameras decoded in parallel (default ``min(4, cpu count)``).

    Returns:
        The summary of ``import_nerf``.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise RerfUsageError(f"{src}: not a directory (expected a ReRF/NHR capture folder)")
    start, stop = _frame_range(frames)
    if isinstance(downscale, bool) or not isinstance(downscale, int) or not 1 <= downscale <= 64:
        raise RerfUsageError(f"downscale must be an integer in 1..64, got {downscale!r}")
    if mask_threshold is not None and (
        isinstance(mask_threshold, bool) or not isinstance(mask_threshold, int) or not 0 <= mask_threshold < 255
    ):
        raise RerfUsageError(f"mask_threshold must be None or an integer in 0..254, got {mask_threshold!r}")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RerfUsageError(f"workers must be an integer >= 1, got {workers!r}")

    campose, intrinsic, bbox_json = src / "CamPose.inf", src / "Intrinsic.inf", src / "bbox.json"
    poses = parse_campose(campose)
    ks = parse_intrinsics(intrinsic)
    n = len(poses)
    if len(ks) != n:
        raise RerfFormatError(
            f"{intrinsic}: {len(ks)} camera intrinsics, but {campose.name} has {n} camera poses (one each expected)"
        )
    splits = _test_split(n, test_cameras, campose)
    if bbox is not None:
        box = _parse_bbox(list(bbox) if isinstance(bbox, tuple) else bbox, "bbox argument")
        if box is None:
            raise RerfUsageError(f"bbox must be (xyz_min, xyz_max), got {bbox!r}")
        box_where = "bbox argument"
    else:
        if not bbox_json.is_file():
            raise RerfFormatError(f"{bbox_json}: file is missing (the scene bounding box; or pass bbox=)")
        box = _parse_bbox(_read_json(bbox_json), str(bbox_json))
        if box is None:
            _bad_bbox(_read_json(bbox_json), str(bbox_json))
        box_where = str(bbox_json)
    assert box is not None
    images = _video_paths(src / "image", n, campose)
    masks = _video_paths(src / "mask", n, campose)

    with ThreadPoolExecutor(max_workers=max(workers, 4)) as pool:
        infos = list(pool.map(_probe_video, images + masks))
    img_info, mask_info = infos[:n], infos[n:]
    counts = Counter(i.frames for i in infos)
    common = counts.most_common(1)[0][0]
    for p, info in zip(images + masks, infos, strict=True):
        if info.frames != common:
            raise RerfFormatError(
                f"{p}: {info.frames} frames, but the other videos have {common} (all cameras must have the same count)"
            )
    for i in range(n):
        if (mask_info[i].w, mask_info[i].h) != (img_info[i].w, img_info[i].h):
            raise RerfFormatError(
                f"{masks[i]}: mask is {mask_info[i].w}×{mask_info[i].h}, "
                f"its image video is {img_info[i].w}×{img_info[i].h}"
            )
        if img_info[i].w % downscale or img_info[i].h % downscale:
            raise RerfUsageError(
                f"downscale {downscale} does not divide the {img_info[i].w}×{img_info[i].h} video {images[i]}"
            )
    fps = img_info[0].fps or 30.0
    for p, info in zip(images, img_info, strict=True):
        if info.fps is not None and abs(info.fps - fps) > 1e-3 * fps:
            raise RerfFormatError(f"{p}: {info.fps:g} fps, but {images[0].name} has {fps:g} fps")
    if start >= common:
        raise RerfUsageError(f"frames: start {start} is past the end of the videos ({common} frames)")
    stop = common if stop is None else stop
    if stop > common:
        raise RerfUsageError(f"frames: stop {stop} is past the end of the videos ({common} frames)")

    cams = []
    for i in range(n):
        k, info = ks[i], img_info[i]
        skew_px = abs(k[0, 1]) * info.h / (2 * k[1, 1])
        where = f"{intrinsic}: camera {i}"
        if skew_px > 0.5:
            raise RerfFormatError(f"{where}: skew {k[0, 1]:g} shifts pixels by up to {skew_px:.2f}; not supported")
        if not (0 < k[0, 2] < info.w and 0 < k[1, 2] < info.h):
            raise RerfFormatError(
                f"{where}: principal point ({k[0, 2]:g}, {k[1, 2]:g}) outside the {info.w}×{info.h} video "
                f"{images[i].name} (intrinsics for another resolution?)"
            )
        s = float(downscale)
        cams.append(
            Camera(
                _cam_name(i, n),
                splits[i],
                k[0, 0] / s,
                k[1, 1] / s,
                k[0, 2] / s,
                k[1, 2] / s,
                info.w // downscale,
                info.h // downscale,
                poses[i],
            )
        )
    _check_bbox_in_view(box, cams, box_where)
    meta = DatasetMeta(
        num_frames=stop - start,
        first_frame=start,
        fps=fps,
        xyz_min=box[0],
        xyz_max=box[1],
        image_mode="RGBA",
        background=tuple(float(x) for x in background),  # type: ignore[arg-type]
        cameras=tuple(cams),
        source={
            "importer": "rerf",
            "path": str(src.resolve()),
            "frames": [start, stop],
            "video_frames": common,
            "mask_threshold": mask_threshold,
            "downscale": downscale,
        },
    )
    total = n * (stop - start)
    step = _progress(progress, threading.Lock())
    stop_flag = threading.Event()

    def one_camera(i: int, writer: DatasetWriter) -> None:
        info = img_info[i]
        readers = [
            _VideoReader(images[i], False, info.w, info.h, start, stop - start),
            _VideoReader(masks[i], True, info.w, info.h, start, stop - start),
        ]
        try:
            for f in range(start, stop):
                if stop_flag.is_set():
                    return
                rgb, mask = readers[0].read(), readers[1].read()
                writer.write_image(f, cams[i], _compose(rgb, mask, mask_threshold, downscale))
                step(total)
        finally:
            for r in readers:
                r.close()

    # Pool inside the writer: on any failure (or Ctrl-C) the workers stop at their next
    # frame, the pool joins them, then the writer deletes everything it wrote.
    with DatasetWriter(out_dir, meta, force=force) as writer, ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one_camera, i, writer) for i in range(n)]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            for fut in futures:
                exc = fut.exception() if fut.done() else None
                if exc is not None:
                    raise exc
        except BaseException:
            stop_flag.set()
            for fut in futures:
                fut.cancel()
            raise
    return _summary(out_dir, meta)
