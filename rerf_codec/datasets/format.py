"""Native multi-view dataset format (DESIGN.md decision 7): layout, validating loader, atomic writer.

Layout::

    DATA/transforms.json                       metadata (``DatasetMeta``), see below
    DATA/images/{frame:06d}/{camera}.png        uint8 PNG, RGBA or RGB per ``image_mode``, w×h of that camera

``transforms.json``::

    {"format": "rerf-dataset", "version": 1,
     "num_frames": T, "first_frame": 0, "fps": 30.0,
     "bbox": {"xyz_min": [x, y, z], "xyz_max": [x, y, z]},    # scene bounding box, world units
     "image_mode": "RGBA" | "RGB", "background": [r, g, b],  # floats 0..1
     "cameras": [{"name": "cam000", "split": "train" | "test",
                  "fl_x": .., "fl_y": .., "cx": .., "cy": .., "w": W, "h": H,
                  "transform_matrix": [[4×4]]}, ...],        # camera-to-world
     "source": {...}}                                          # optional free-form provenance

``background``: RGBA images are composited on it by consumers (trainer, preview); RGB
images were rendered or captured on it already. Frame folders use the original frame
numbers (``first_frame`` .. ``first_frame + num_frames - 1``), so a cut keeps its numbering.

Cameras (``transforms.json`` entries) are ``rerf_codec.field.camera.Camera``; the camera and pixel
convention is written down there.

Everything read from disk is untrusted: every error is a ``RerfFormatError`` whose
message names the file (and the field), so a user can fix the file without reading this
code. Images are decoded lazily, one at a time: a 76-camera × 4000-frame sequence is
never read into memory at once; ``open_dataset`` only checks that every image file
exists (directory listings, no decoding).
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from rerf_codec.atomic import AtomicDirectory
from rerf_codec.checks import is_int as _is_int
from rerf_codec.checks import show as _show
from rerf_codec.errors import RerfError, RerfFormatError, RerfUsageError
from rerf_codec.field.camera import MAX_IMAGE_SIDE, ROTATION_TOL, SPLITS, Camera, finite
from rerf_codec.jsonfile import loads_strict, read_bounded

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGES_DIR",
    "MAX_CAMERAS",
    "MAX_FRAMES",
    "MAX_IMAGE_SIDE",
    "ROTATION_TOL",
    "TRANSFORMS_JSON",
    "Camera",
    "Dataset",
    "DatasetMeta",
    "DatasetWriter",
    "composite",
    "open_dataset",
    "read_meta",
    "split_cameras",
    "write_dataset",
]

FORMAT_NAME = "rerf-dataset"
FORMAT_VERSION = 1
TRANSFORMS_JSON = "transforms.json"
IMAGES_DIR = "images"
MAX_CAMERAS = 4096
MAX_FRAMES = 1_000_000
_MAX_JSON_BYTES = 64 << 20
_MODES = {"RGBA": 4, "RGB": 3}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TOP_KEYS = {
    "format",
    "version",
    "num_frames",
    "first_frame",
    "fps",
    "bbox",
    "image_mode",
    "background",
    "cameras",
    "source",
}


def split_cameras(n_total: int, n_test: int) -> list[str]:
    """Deterministic train/test split: ``n_test`` test cameras spread evenly over the ring.

    Returns one of ``"train"`` / ``"test"`` per camera index. Test camera ``i`` is index
    ``floor((i + 0.5) · n_total / n_test)`` -- the middle of each of ``n_test`` equal
    runs -- so held-out views interleave with training views instead of clustering on
    one side of a capture rig, and importers always pick the same ones.
    """
    if not _is_int(n_total) or not _is_int(n_test) or not 1 <= n_test < n_total:
        raise RerfUsageError(
            f"split_cameras: need 1 <= n_test < n_total (a dataset needs train and test cameras), "
            f"got n_total={_show(n_total)} n_test={_show(n_test)}"
        )
    out = ["train"] * n_total
    for i in range(n_test):
        out[int((i + 0.5) * n_total / n_test)] = "test"
    return out


# --------------------------------------------------------------------------- metadata


def _check_meta_values(
    num_frames: Any,
    first_frame: Any,
    fps: Any,
    xyz_min: Any,
    xyz_max: Any,
    image_mode: Any,
    background: Any,
    cameras: Sequence[Camera],
    source_info: Any,
    where: str,
    err: type[RerfError],
) -> None:
    """Checks shared by ``DatasetMeta`` construction (usage errors) and parsing (format errors)."""
    if not _is_int(num_frames) or not 1 <= int(num_frames) <= MAX_FRAMES:
        raise err(f"{where}field 'num_frames' must be an integer in 1..{MAX_FRAMES}, got {_show(num_frames)}")
    if not _is_int(first_frame) or not 0 <= int(first_frame) <= 999_999 - int(num_frames) + 1:
        raise err(
            f"{where}field 'first_frame' must be an integer >= 0 with first_frame + num_frames <= 1000000 "
            f"(frame folders have 6 digits), got {_show(first_frame)}"
        )
    if not finite(fps) or float(fps) <= 0:
        raise err(f"{where}field 'fps' must be a finite number > 0, got {_show(fps)}")
    for key, vec in (("xyz_min", xyz_min), ("xyz_max", xyz_max)):
        if not isinstance(vec, (list, tuple)) or len(vec) != 3 or not all(finite(x) for x in vec):
            raise err(f"{where}field 'bbox.{key}' must be 3 finite numbers, got {_show(vec)}")
    if not all(float(a) < float(b) for a, b in zip(xyz_min, xyz_max, strict=True)):
        raise err(
            f"{where}field 'bbox': xyz_min must be < xyz_max on every axis, "
            f"got xyz_min={_show(list(xyz_min))} xyz_max={_show(list(xyz_max))}"
        )
    if image_mode not in _MODES:
        raise err(f'{where}field \'image_mode\' must be "RGBA" or "RGB", got {_show(image_mode)}')
    if (
        not isinstance(background, (list, tuple))
        or len(background) != 3
        or not all(finite(x) and 0 <= float(x) <= 1 for x in background)
    ):
        raise err(f"{where}field 'background' must be 3 numbers in 0..1 (r, g, b), got {_show(background)}")
    if not isinstance(source_info, dict):
        raise err(f"{where}field 'source' must be an object, got {_show(source_info)}")
    if not 1 <= len(cameras) <= MAX_CAMERAS:
        raise err(f"{where}field 'cameras' must list 1..{MAX_CAMERAS} cameras, got {len(cameras)}")
    seen: set[str] = set()
    for i, cam in enumerate(cameras):
        if cam.name in seen:
            raise err(f"{where}field 'cameras': duplicate camera name {_show(cam.name)} (cameras[{i}])")
        seen.add(cam.name)
    splits = {cam.split for cam in cameras}
    for s in SPLITS:
        if s not in splits:
            raise err(
                f"{where}field 'cameras': no {s} camera (a dataset always holds out >= 1 test camera "
                "and trains on >= 1 other)"
            )


@dataclass(frozen=True)
class DatasetMeta:
    """Everything in ``transforms.json``. Validated on construction (``RerfUsageError``)."""

    num_frames: int
    first_frame: int
    fps: float
    xyz_min: tuple[float, float, float]
    xyz_max: tuple[float, float, float]
    image_mode: str
    background: tuple[float, float, float]
    cameras: tuple[Camera, ...]
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cams = tuple(self.cameras)
        for c in cams:
            if not isinstance(c, Camera):
                raise RerfUsageError(f"DatasetMeta: cameras must be Camera objects, got {type(c).__name__}")
        _check_meta_values(
            self.num_frames, self.first_frame, self.fps, tuple(self.xyz_min), tuple(self.xyz_max),
            self.image_mode, tuple(self.background), cams, self.source, "DatasetMeta: ", RerfUsageError,
        )  # fmt: skip
        object.__setattr__(self, "num_frames", int(self.num_frames))
        object.__setattr__(self, "first_frame", int(self.first_frame))
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "xyz_min", tuple(float(x) for x in self.xyz_min))
        object.__setattr__(self, "xyz_max", tuple(float(x) for x in self.xyz_max))
        object.__setattr__(self, "background", tuple(float(x) for x in self.background))
        object.__setattr__(self, "cameras", cams)

    @property
    def frame_indices(self) -> range:
        """The frame numbers, as used in folder names (``first_frame`` .. ``first_frame + num_frames - 1``)."""
        return range(self.first_frame, self.first_frame + self.num_frames)

    @property
    def train_cameras(self) -> tuple[Camera, ...]:
        return tuple(c for c in self.cameras if c.split == "train")

    @property
    def test_cameras(self) -> tuple[Camera, ...]:
        return tuple(c for c in self.cameras if c.split == "test")

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    @property
    def channels(self) -> int:
        """Channels of the stored PNGs (4 for RGBA, 3 for RGB)."""
        return _MODES[self.image_mode]

    def camera(self, cam: str | Camera) -> Camera:
        """Look a camera up by name (or check a Camera belongs to this dataset)."""
        name = cam.name if isinstance(cam, Camera) else cam
        for c in self.cameras:
            if c.name == name:
                return c
        raise RerfUsageError(f"no camera named {_show(name)} (cameras: {_name_list(self.camera_names)})")

    def to_json(self) -> dict[str, Any]:
        """The ``transforms.json`` object."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "num_frames": self.num_frames,
            "first_frame": self.first_frame,
            "fps": self.fps,
            "bbox": {"xyz_min": list(self.xyz_min), "xyz_max": list(self.xyz_max)},
            "image_mode": self.image_mode,
            "background": list(self.background),
            "cameras": [c.to_json() for c in self.cameras],
            "source": self.source,
        }

    @staticmethod
    def from_json(d: Any, source_path: str | Path = TRANSFORMS_JSON) -> DatasetMeta:
        """Validate a parsed ``transforms.json``; errors are ``RerfFormatError`` naming the file and field."""
        src = str(source_path)
        where = f"{src}: "
        if not isinstance(d, dict):
            raise RerfFormatError(f"{where}top level must be a JSON object")
        if d.get("format") != FORMAT_NAME:
            raise RerfFormatError(f"{where}field 'format' must be {_show(FORMAT_NAME)}, got {_show(d.get('format'))}")
        if d.get("version") != FORMAT_VERSION or not _is_int(d.get("version")):
            raise RerfFormatError(
                f"{where}unsupported version {_show(d.get('version'))} (this reader supports {FORMAT_VERSION})"
            )
        for key in sorted(_TOP_KEYS - {"source", "first_frame"}):
            if key not in d:
                raise RerfFormatError(f"{where}missing field '{key}'")
        extra = sorted(set(d) - _TOP_KEYS)
        if extra:
            raise RerfFormatError(f"{where}unknown field '{extra[0]}' (put provenance under 'source')")
        bbox = d["bbox"]
        if not isinstance(bbox, dict) or set(bbox) != {"xyz_min", "xyz_max"}:
            raise RerfFormatError(f'{where}field \'bbox\' must be {{"xyz_min": [x,y,z], "xyz_max": [x,y,z]}}')
        cams_raw = d["cameras"]
        if not isinstance(cams_raw, list):
            raise RerfFormatError(f"{where}field 'cameras' must be a list, got {_show(cams_raw)}")
        if len(cams_raw) > MAX_CAMERAS:
            raise RerfFormatError(f"{where}field 'cameras' lists {len(cams_raw)} cameras (at most {MAX_CAMERAS})")
        cameras = tuple(Camera.from_json(c, src, i) for i, c in enumerate(cams_raw))
        first = d.get("first_frame", 0)
        source_info = d.get("source", {})
        _check_meta_values(
            d["num_frames"], first, d["fps"], bbox["xyz_min"], bbox["xyz_max"], d["image_mode"],
            d["background"], cameras, source_info, where, RerfFormatError,
        )  # fmt: skip
        return DatasetMeta(
            num_frames=d["num_frames"],
            first_frame=first,
            fps=d["fps"],
            xyz_min=tuple(bbox["xyz_min"]),
            xyz_max=tuple(bbox["xyz_max"]),
            image_mode=d["image_mode"],
            background=tuple(d["background"]),
            cameras=cameras,
            source=source_info,
        )


def _name_list(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def read_meta(path: str | Path) -> DatasetMeta:
    """Read and validate ``transforms.json`` (strict JSON: no NaN/Infinity, no duplicate keys)."""
    p = Path(path)
    source = str(p)
    d = loads_strict(read_bounded(p, _MAX_JSON_BYTES, " (not a rerf dataset?)"), source)
    return DatasetMeta.from_json(d, source)


# --------------------------------------------------------------------------- reading


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header, read before decoding so a wrong or hostile file costs nothing."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except FileNotFoundError:
        raise RerfFormatError(f"{path}: image is missing") from None
    except OSError as exc:
        raise RerfFormatError(f"{path}: cannot read image: {exc.strerror or exc}") from None
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise RerfFormatError(f"{path}: not a PNG file" + (" (empty)" if not head else ""))
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


class Dataset:
    """An opened dataset: validated metadata plus lazy, validated image access."""

    def __init__(self, root: Path, meta: DatasetMeta) -> None:
        self.root = Path(root)
        self.meta = meta

    def __repr__(self) -> str:
        m = self.meta
        return f"Dataset({str(self.root)!r}, {m.num_frames} frames, {len(m.cameras)} cameras, {m.image_mode})"

    def _frame(self, frame: int) -> int:
        if not _is_int(frame) or int(frame) not in self.meta.frame_indices:
            r = self.meta.frame_indices
            raise RerfUsageError(f"frame {_show(frame)} is outside the dataset's frames {r.start}..{r.stop - 1}")
        return int(frame)

    def image_path(self, frame: int, camera: str | Camera) -> Path:
        """``DATA/images/{frame:06d}/{camera}.png`` (frame is the original frame number)."""
        cam = self.meta.camera(camera)
        return self.root / IMAGES_DIR / f"{self._frame(frame):06d}" / f"{cam.name}.png"

    def load_image(self, frame: int, camera: str | Camera) -> np.ndarray:
        """Decode one image as float32 ``(h, w, 4)`` RGBA in [0, 1] (RGB images get alpha 1).

        The PNG header is checked against the camera's size before decoding; any failure
        (missing, unreadable, corrupt, wrong size, wrong channel count, not 8-bit) is a
        ``RerfFormatError`` naming the file.
        """
        cam = self.meta.camera(camera)
        path = self.image_path(frame, cam)
        w, h = _png_size(path)
        if (w, h) != (cam.w, cam.h):
            raise RerfFormatError(f"{path}: image is {w}×{h}, camera {cam.name} expects {cam.w}×{cam.h}")
        try:
            img = iio.imread(path, extension=".png")
        except Exception as exc:  # decoders raise anything from OSError to SyntaxError on bad data
            raise RerfFormatError(f"{path}: cannot decode PNG: {exc}") from None
        img = np.asarray(img)
        if img.dtype != np.uint8:
            raise RerfFormatError(f"{path}: expected 8-bit samples, got {img.dtype}")
        want = self.meta.channels
        if img.shape != (cam.h, cam.w, want):
            got = img.shape[2] if img.ndim == 3 else 1
            raise RerfFormatError(
                f"{path}: expected a {self.meta.image_mode} image ({want} channels, {cam.w}×{cam.h}), "
                f"got {got} channel(s) with shape {img.shape}"
            )
        out = np.empty((cam.h, cam.w, 4), dtype=np.float32)
        np.multiply(img, np.float32(1 / 255), out=out[..., :want], dtype=np.float32)
        if want == 3:
            out[..., 3] = 1.0
        return out

    def _cameras(self, cameras: Iterable[str | Camera] | None) -> list[Camera]:
        cams = list(self.meta.cameras) if cameras is None else [self.meta.camera(c) for c in cameras]
        if not cams:
            raise RerfUsageError("no cameras selected")
        sizes = {(c.w, c.h) for c in cams}
        if len(sizes) > 1:
            raise RerfUsageError(
                f"cameras of different sizes ({', '.join(f'{w}×{h}' for w, h in sorted(sizes))}) cannot be stacked; "
                "load them one by one with load_image"
            )
        return cams

    def load_frame(self, frame: int, cameras: Iterable[str | Camera] | None = None) -> np.ndarray:
        """All (or the given) cameras' images of one frame, float32 ``(n, h, w, 4)``; sizes must match."""
        cams = self._cameras(cameras)
        frame = self._frame(frame)
        out = np.empty((len(cams), cams[0].h, cams[0].w, 4), dtype=np.float32)
        for i, c in enumerate(cams):
            out[i] = self.load_image(frame, c)
        return out

    def iter_frames(self, cameras: Iterable[str | Camera] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame, load_frame(frame, cameras))`` for every frame, decoded one frame at a time."""
        cams = self._cameras(cameras)  # fail now, not at the first next()

        def gen() -> Iterator[tuple[int, np.ndarray]]:
            for f in self.meta.frame_indices:
                yield f, self.load_frame(f, cams)

        return gen()

    def image_bytes(self) -> int:
        """Total size of the image files on disk (directory listings and stats only, nothing decoded)."""
        total = 0
        try:
            with os.scandir(self.root / IMAGES_DIR) as frames:
                for fd in frames:
                    if not fd.is_dir(follow_symlinks=False):
                        continue
                    with os.scandir(fd.path) as files:
                        for e in files:
                            if e.name.endswith(".png") and e.is_file():
                                total += e.stat().st_size
        except FileNotFoundError:  # opened with check_images=False on a folder without images
            pass
        return total


def _check_image_files(root: Path, meta: DatasetMeta) -> None:
    """Every ``images/{frame}/{camera}.png`` exists and is non-empty; no stray frame folders or images.

    Uses directory listings (one ``scandir`` per frame) and one ``stat`` per image, no
    decoding, so it stays fast on a 300 000-image capture.
    """
    images = root / IMAGES_DIR
    if not images.is_dir():
        raise RerfFormatError(f"{images}: image folder is missing")
    expected = {f"{f:06d}" for f in meta.frame_indices}
    try:
        with os.scandir(images) as it:
            present = {e.name for e in it if e.is_dir() and not e.name.startswith(".")}
    except OSError as exc:
        raise RerfFormatError(f"{images}: cannot list: {exc.strerror or exc}") from None
    stray = sorted(present - expected)
    if stray:
        r = meta.frame_indices
        raise RerfFormatError(
            f"{images / stray[0]}: unexpected frame folder ({len(stray)} in all); transforms.json declares "
            f"num_frames={meta.num_frames} (frames {r.start:06d}..{r.stop - 1:06d})"
        )
    want = {f"{c.name}.png" for c in meta.cameras}
    order = [f"{c.name}.png" for c in meta.cameras]
    missing: list[Path] = []
    for f in meta.frame_indices:
        folder = images / f"{f:06d}"
        if folder.name not in present:
            missing.extend(folder / n for n in order)
            continue
        try:
            with os.scandir(folder) as it:
                entries = {e.name: e for e in it}
        except OSError as exc:
            raise RerfFormatError(f"{folder}: cannot list: {exc.strerror or exc}") from None
        extra = sorted(n for n in entries if n.endswith(".png") and n not in want)
        if extra:
            raise RerfFormatError(
                f"{folder / extra[0]}: image of a camera that transforms.json does not list "
                f"({len(extra)} such image(s) in this frame; inconsistent camera set)"
            )
        for n in order:
            e = entries.get(n)
            if e is None or not e.is_file():
                missing.append(folder / n)
            elif e.stat().st_size == 0:
                raise RerfFormatError(f"{folder / n}: image file is empty")
    if missing:
        total = meta.num_frames * len(meta.cameras)
        raise RerfFormatError(f"{missing[0]}: image is missing ({len(missing)} of {total} images are missing)")


def composite(rgba: np.ndarray, background: Sequence[float]) -> np.ndarray:
    """RGBA in [0, 1] → RGB over ``background`` (what a renderer with that background must produce)."""
    a = rgba[..., 3:4]
    return rgba[..., :3] * a + np.asarray(background, np.float32) * (1 - a)


def open_dataset(path: str | Path, *, check_images: bool = True) -> Dataset:
    """Open and validate a dataset directory (or its ``transforms.json``).

    ``transforms.json`` is validated fully. With ``check_images`` every image file must
    exist and no stray frame folders / camera images may be present (no decoding: image
    contents are checked lazily by ``Dataset.load_image``).
    """
    p = Path(path)
    if p.name == TRANSFORMS_JSON and p.is_file():
        p = p.parent
    if not p.exists():
        raise RerfUsageError(f"{p}: dataset does not exist")
    if not p.is_dir():
        raise RerfFormatError(f"{p}: not a directory (expected a dataset directory with {TRANSFORMS_JSON})")
    meta = read_meta(p / TRANSFORMS_JSON)
    if check_images:
        _check_image_files(p, meta)
    return Dataset(p, meta)


# --------------------------------------------------------------------------- writing


def _to_uint8(rgba: Any, cam: Camera, mode: str, where: str) -> np.ndarray:
    if not isinstance(rgba, np.ndarray):
        raise RerfUsageError(f"{where}: image must be a numpy array, got {type(rgba).__name__}")
    ch = _MODES[mode]
    if rgba.shape != (cam.h, cam.w, ch):
        raise RerfUsageError(
            f"{where}: image has shape {rgba.shape}, expected {(cam.h, cam.w, ch)} ({mode}, camera {cam.w}×{cam.h})"
        )
    if rgba.dtype == np.uint8:
        return np.ascontiguousarray(rgba)
    if not np.issubdtype(rgba.dtype, np.floating):
        raise RerfUsageError(f"{where}: image dtype must be uint8 or float in [0, 1], got {rgba.dtype}")
    if not np.all(np.isfinite(rgba)):
        raise RerfUsageError(f"{where}: image contains non-finite values")
    lo, hi = float(rgba.min()), float(rgba.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise RerfUsageError(f"{where}: float image values must be in [0, 1], got {lo:.4g}..{hi:.4g}")
    return np.clip(np.rint(rgba.astype(np.float64) * 255), 0, 255).astype(np.uint8)


class DatasetWriter(AtomicDirectory):
    """Write a dataset atomically (mirrors ``rerf_codec.gridseq.SequenceWriter``).

    Everything goes into a hidden sibling ``.NAME.tmp-XXXX`` first; only a complete
    dataset (every image of every frame and camera written) is renamed into place on a
    clean ``__exit__`` (or ``commit()``). On an exception nothing is left behind and an
    existing output is untouched. With ``force`` an existing dataset (or empty directory)
    is moved aside, the new one renamed in, and the old one deleted; anything else is
    refused, so ``--force`` with a mistyped path cannot wipe unrelated data. No fsync:
    atomic against failures of this process, not against power loss. ``write_image`` may
    be called from several threads (PNG compression releases the GIL).
    """

    MARKER = TRANSFORMS_JSON
    KIND = "rerf dataset"

    def __init__(self, out_dir: str | Path, meta: DatasetMeta, *, force: bool = False) -> None:
        if not isinstance(meta, DatasetMeta):
            raise RerfUsageError(f"meta must be a DatasetMeta, got {type(meta).__name__}")
        super().__init__(out_dir, force=force)
        self.meta = meta
        self._written: set[tuple[int, str]] = set()
        self._lock = threading.Lock()
        try:
            (self._tmp / IMAGES_DIR).mkdir()
            self._write_json()
        except BaseException:
            self.abort()
            raise

    @property
    def tmp_dir(self) -> Path:
        """Where the dataset is being assembled (for tools that write extra files before commit)."""
        return self._tmp

    def _write_json(self) -> None:
        text = json.dumps(self.meta.to_json(), indent=1, allow_nan=False)
        (self._tmp / TRANSFORMS_JSON).write_text(text + "\n", encoding="utf-8")

    def image_path(self, frame: int, camera: str | Camera) -> Path:
        """Temporary path of an image (valid until commit)."""
        cam = self.meta.camera(camera)
        if not _is_int(frame) or int(frame) not in self.meta.frame_indices:
            r = self.meta.frame_indices
            raise RerfUsageError(f"frame {_show(frame)} is outside the dataset's frames {r.start}..{r.stop - 1}")
        return self._tmp / IMAGES_DIR / f"{int(frame):06d}" / f"{cam.name}.png"

    def write_image(self, frame: int, camera: str | Camera, rgba: np.ndarray) -> None:
        """Write one image: uint8 ``(h, w, 4|3)`` matching ``image_mode``, or float in [0, 1] (rounded to uint8)."""
        self._check_open()
        cam = self.meta.camera(camera)
        path = self.image_path(frame, cam)
        key = (int(frame), cam.name)
        where = f"frame {int(frame)} camera {cam.name}"
        with self._lock:
            if key in self._written:
                raise RerfUsageError(f"{where}: image was already written")
            self._written.add(key)
        try:
            data = _to_uint8(rgba, cam, self.meta.image_mode, where)
            path.parent.mkdir(exist_ok=True)
            iio.imwrite(path, data, extension=".png")
        except BaseException:
            with self._lock:
                self._written.discard(key)
            raise

    def _check_complete(self) -> None:
        total = self.meta.num_frames * len(self.meta.cameras)
        if len(self._written) != total:
            first = next(
                (f, c.name) for f in self.meta.frame_indices for c in self.meta.cameras if (f, c.name) not in self._written
            )
            raise RerfUsageError(
                f"{self.out_dir}: {total - len(self._written)} of {total} images were not written "
                f"(first missing: frame {first[0]} camera {first[1]}); nothing was written"
            )


def write_dataset(
    out_dir: str | Path,
    meta: DatasetMeta,
    images: Iterable[tuple[int, str | Camera, np.ndarray]],
    *,
    force: bool = False,
) -> Dataset:
    """Write a whole dataset atomically from ``(frame, camera, image)`` triples; returns it opened."""
    with DatasetWriter(out_dir, meta, force=force) as w:
        for frame, cam, img in images:
            w.write_image(frame, cam, img)
    return Dataset(Path(out_dir), meta)
