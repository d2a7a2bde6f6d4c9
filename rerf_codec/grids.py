"""Grid sequences in memory: the metadata (``sequence.json``) and the frame types the codec works on.

A grid sequence is what the trainer produces, the encoder consumes and the decoder writes back
(``DESIGN.md``, "Interchange format 1"). This module holds what every layer shares and that needs
no file: :class:`SequenceMeta` (validated on construction: ``RerfUsageError``; from a file:
``RerfFormatError`` naming the file and field), :class:`GridFrame` (a full frame),
:class:`TrainerFrame` (motion + residual relative to the previous frame), the decoded-grid
hash (``update_frame_hash``, FORMAT.md §11) and the raw size every compression ratio is
measured against. The directory format (read, validate, write) is ``rerf_codec.gridseq``; what a
trainer-form frame means (the warp) is ``rerf_codec.trainer_form``.

This module never imports torch: the decoder side depends on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rerf_codec.checks import is_int as _is_int
from rerf_codec.checks import is_number as _is_number
from rerf_codec.checks import show as _show
from rerf_codec.errors import RerfError, RerfFormatError, RerfUsageError

__all__ = [
    "DECODER_NPZ",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_CHANNELS",
    "MAX_FRAMES",
    "MAX_GRID_DIM",
    "MAX_VOXELS",
    "MOTION_BLOCK",
    "GridFrame",
    "SequenceMeta",
    "TrainerFrame",
    "frames_sha256",
    "raw_float32_bytes",
    "update_frame_hash",
]

FORMAT_NAME = "rerf-grid-sequence"
FORMAT_VERSION = 1

MAX_GRID_DIM = 2048
"""Largest grid size along one axis."""
MAX_CHANNELS = 256
"""Largest number of feature channels."""
MAX_FRAMES = 1_000_000
"""Largest number of frames; also bounds the last frame index (file names have 6 digits)."""
MAX_VOXELS = 2**31
"""Largest ``X * Y * Z``: keeps flat voxel indices within 32 bits."""

DECODER_NPZ = "decoder.npz"
"""The only decoder file name sequence.json may name."""

MOTION_BLOCK = 8
"""The only motion block size this version supports (the codec's 8³ DCT block)."""

# Keys of sequence.json that map to SequenceMeta fields (everything else goes to ``extra``).
_REQUIRED_KEYS = (
    "format",
    "version",
    "num_frames",
    "fps",
    "grid_shape",
    "feature_channels",
    "xyz_min",
    "xyz_max",
    "density_shift",
    "motion_block",
    "decoder",
)
_RESERVED_KEYS = frozenset(_REQUIRED_KEYS) | {"first_frame", "keyframes"}


# --------------------------------------------------------------------------- validation helpers


def _field_error(err: type[RerfError], source: str, name: str, what: str, value: Any) -> RerfError:
    return err(f"{source}: field '{name}' must be {what}, got {_show(value)}")


def _check_int(
    values: Mapping[str, Any], name: str, lo: int, hi: int, source: str, err: type[RerfError]
) -> int:
    v = values[name]
    if not _is_int(v) or not lo <= int(v) <= hi:
        raise _field_error(err, source, name, f"an integer in {lo}..{hi}", v)
    return int(v)


def _check_finite(values: Mapping[str, Any], name: str, source: str, err: type[RerfError]) -> float:
    v = values[name]
    if not _is_number(v) or not math.isfinite(float(v)):
        raise _field_error(err, source, name, "a finite number", v)
    return float(v)


def _check_vec3(
    values: Mapping[str, Any], name: str, source: str, err: type[RerfError]
) -> tuple[float, float, float]:
    v = values[name]
    if (
        not isinstance(v, (list, tuple))
        or len(v) != 3
        or not all(_is_number(x) and math.isfinite(float(x)) for x in v)
    ):
        raise _field_error(err, source, name, "3 finite numbers", v)
    return (float(v[0]), float(v[1]), float(v[2]))


def _validate_meta_values(
    values: Mapping[str, Any], source: str, err: type[RerfError]
) -> dict[str, Any]:
    """Check the SequenceMeta fields in ``values``; return them normalised to plain Python types.

    Shared by the JSON reader (``RerfFormatError``: the file is bad) and the dataclass
    constructor (``RerfUsageError``: the calling code is bad), so both enforce one rule set.
    """
    out: dict[str, Any] = {}
    out["num_frames"] = _check_int(values, "num_frames", 1, MAX_FRAMES, source, err)

    fps = values["fps"]
    if not _is_number(fps) or not math.isfinite(float(fps)) or float(fps) <= 0:
        raise _field_error(err, source, "fps", "a finite number > 0", fps)
    out["fps"] = float(fps)

    gs = values["grid_shape"]
    if (
        not isinstance(gs, (list, tuple))
        or len(gs) != 3
        or not all(_is_int(n) and int(n) >= 1 for n in gs)
    ):
        raise _field_error(err, source, "grid_shape", "3 positive integers", gs)
    if any(int(n) > MAX_GRID_DIM for n in gs):
        raise _field_error(
            err, source, "grid_shape", f"3 positive integers <= {MAX_GRID_DIM} (MAX_GRID_DIM)", gs
        )
    if math.prod(int(n) for n in gs) > MAX_VOXELS:
        raise _field_error(
            err, source, "grid_shape", "a grid of at most 2**31 voxels (MAX_VOXELS)", gs
        )
    out["grid_shape"] = (int(gs[0]), int(gs[1]), int(gs[2]))

    out["feature_channels"] = _check_int(values, "feature_channels", 1, MAX_CHANNELS, source, err)
    lo = _check_vec3(values, "xyz_min", source, err)
    hi = _check_vec3(values, "xyz_max", source, err)
    for axis in range(3):
        if not hi[axis] > lo[axis]:
            raise err(
                f"{source}: field 'xyz_max' must exceed 'xyz_min' on every axis, "
                f"got xyz_min={_show(list(lo))} xyz_max={_show(list(hi))}"
            )
    out["xyz_min"], out["xyz_max"] = lo, hi
    out["density_shift"] = _check_finite(values, "density_shift", source, err)

    mb = values["motion_block"]
    if not _is_int(mb) or int(mb) != MOTION_BLOCK:
        raise err(
            f"{source}: field 'motion_block' must be {MOTION_BLOCK} "
            f"(the only motion block size this version supports), got {_show(mb)}"
        )
    out["motion_block"] = int(mb)

    dec = values["decoder"]
    if dec is not None and dec != DECODER_NPZ:
        raise _field_error(err, source, "decoder", f"'{DECODER_NPZ}' or null", dec)
    out["decoder"] = dec

    ff = values["first_frame"]
    if not _is_int(ff) or not 0 <= int(ff) <= MAX_FRAMES - 1:
        raise _field_error(err, source, "first_frame", f"an integer in 0..{MAX_FRAMES - 1}", ff)
    out["first_frame"] = int(ff)
    if out["first_frame"] + out["num_frames"] > MAX_FRAMES:
        raise err(
            f"{source}: field 'first_frame' + 'num_frames' must be <= {MAX_FRAMES} "
            f"(frame numbers have 6 digits), got {out['first_frame']} + {out['num_frames']}"
        )

    kf = values.get("keyframes", ())
    first, last = out["first_frame"], out["first_frame"] + out["num_frames"] - 1
    want = f"a sorted list of distinct frame numbers in {first}..{last}"
    if not isinstance(kf, (list, tuple)) or not all(_is_int(k) for k in kf):
        raise _field_error(err, source, "keyframes", want, kf)
    keys = tuple(int(k) for k in kf)
    if any(b <= a for a, b in itertools.pairwise(keys)) or any(not first <= k <= last for k in keys):
        raise _field_error(err, source, "keyframes", want, kf)
    out["keyframes"] = keys
    return out


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class SequenceMeta:
    """Contents of ``sequence.json``.

    Validated on construction (``RerfUsageError``) and when read from a file
    (``RerfFormatError`` naming the file and field). Unknown keys of sequence.json
    (e.g. the MLP's configuration) are carried verbatim in ``extra`` so that a
    read → write round trip loses nothing.
    """

    num_frames: int
    fps: float
    grid_shape: tuple[int, int, int]
    feature_channels: int
    xyz_min: tuple[float, float, float]
    xyz_max: tuple[float, float, float]
    density_shift: float
    motion_block: int = MOTION_BLOCK
    decoder: str | None = None
    first_frame: int = 0
    keyframes: tuple[int, ...] = ()
    """Frames that must start a GOF (DESIGN.md decision 14): frames the trainer re-fitted whole,
    GOF starts of parallel training. Written to sequence.json only when not empty."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        norm = _validate_meta_values(values, "SequenceMeta", RerfUsageError)
        for name, value in norm.items():
            object.__setattr__(self, name, value)
        extra = self.extra
        if not isinstance(extra, Mapping):
            raise RerfUsageError(f"SequenceMeta: field 'extra' must be a dict, got {_show(extra)}")
        clash = sorted(k for k in extra if k in _RESERVED_KEYS)
        if clash:
            raise RerfUsageError(
                f"SequenceMeta: field 'extra' must not contain the reserved key(s) {clash}"
            )
        if not all(isinstance(k, str) for k in extra):
            raise RerfUsageError("SequenceMeta: field 'extra' keys must be strings")
        try:
            json.dumps(extra, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RerfUsageError(
                f"SequenceMeta: field 'extra' is not JSON-serialisable: {exc}"
            ) from None
        object.__setattr__(self, "extra", dict(extra))

    @property
    def motion_shape(self) -> tuple[int, int, int]:
        """Blocks per axis of the motion field: ``ceil(X / motion_block)`` etc."""
        b = self.motion_block
        x, y, z = self.grid_shape
        return (-(-x // b), -(-y // b), -(-z // b))

    @property
    def frame_indices(self) -> range:
        """The frame numbers of this sequence (they name the frame files)."""
        return range(self.first_frame, self.first_frame + self.num_frames)

    def to_json_dict(self) -> dict[str, Any]:
        """The complete sequence.json content: standard keys first, then the extras."""
        d: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "grid_shape": list(self.grid_shape),
            "feature_channels": self.feature_channels,
            "xyz_min": list(self.xyz_min),
            "xyz_max": list(self.xyz_max),
            "density_shift": self.density_shift,
            "motion_block": self.motion_block,
            "decoder": self.decoder,
            "first_frame": self.first_frame,
        }
        if self.keyframes:
            d["keyframes"] = list(self.keyframes)
        d.update(self.extra)
        return d

    @classmethod
    def from_json_dict(cls, d: dict[str, Any], source: str) -> SequenceMeta:
        """Validate a parsed sequence.json; ``source`` (the file) prefixes every error."""
        if not isinstance(d, dict):
            raise RerfFormatError(f"{source}: must hold a JSON object, got {type(d).__name__}")
        if "format" not in d:
            raise RerfFormatError(f"{source}: field 'format' is missing (expected '{FORMAT_NAME}')")
        if d["format"] != FORMAT_NAME:
            raise _field_error(RerfFormatError, source, "format", f"'{FORMAT_NAME}'", d["format"])
        if "version" not in d:
            raise RerfFormatError(f"{source}: field 'version' is missing")
        version = d["version"]
        if not _is_int(version):
            raise _field_error(RerfFormatError, source, "version", "an integer", version)
        if version != FORMAT_VERSION:
            raise RerfFormatError(
                f"{source}: field 'version' is {version}; this reader supports version {FORMAT_VERSION}"
            )
        for key in _REQUIRED_KEYS:
            if key not in d:
                raise RerfFormatError(f"{source}: field '{key}' is missing")
        values = dict(d)
        values.setdefault("first_frame", 0)
        norm = _validate_meta_values(values, source, RerfFormatError)
        extra = {k: v for k, v in d.items() if k not in _RESERVED_KEYS}
        return cls(**norm, extra=extra)


def raw_float32_bytes(grid_shape: tuple[int, int, int], channels: int, frames: int) -> int:
    """Size of ``frames`` uncompressed frames (``channels`` = density + features) as float32.

    The yardstick of every compression ratio rerf reports (encode, info, demo, benches).
    """
    x, y, z = grid_shape
    return x * y * z * channels * 4 * frames


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, eq=False)
class GridFrame:
    """One full frame: ``density`` float32 (X, Y, Z) and ``features`` float32 (C, X, Y, Z)."""

    density: np.ndarray
    features: np.ndarray


@dataclass(frozen=True, eq=False)
class TrainerFrame:
    """A frame relative to the previous one, as the trainer produces it.

    ``motion`` float32 (3, ceil(X/8), ceil(Y/8), ceil(Z/8)) in voxel units, backward
    (see ``warp_previous``); the frame is ``warp_previous(previous, motion)`` plus the
    residuals ``residual_density`` (X, Y, Z) and ``residual_features`` (C, X, Y, Z).
    """

    motion: np.ndarray
    residual_density: np.ndarray
    residual_features: np.ndarray


# --------------------------------------------------------------------------- array checks (shared with gridseq, trainer_form)


def _is_float32(dt: np.dtype) -> bool:
    return dt.kind == "f" and dt.itemsize == 4 and dt.fields is None and dt.subdtype is None


def _dtype_name(dt: np.dtype) -> str:
    if dt.kind == "f" and dt.itemsize == 4:
        return "float32" if dt.isnative else f"float32 ({dt.str})"
    return "object" if dt.kind == "O" else (dt.name if dt.fields is None else str(dt))


def _first_nonfinite(arr: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first NaN/Inf, or None. The fast path allocates nothing big.

    A float64 sum of float32 values cannot overflow (|x| < 3.5e38, at most 2**31 terms),
    so the sum is finite exactly when every value is.
    """
    if arr.size == 0 or math.isfinite(float(arr.sum(dtype=np.float64))):
        return None
    bad = ~np.isfinite(arr)
    if not bad.any():  # pragma: no cover - the sum argument above says this cannot happen
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), arr.shape))


# --------------------------------------------------------------------------- hashing


def _le_f32_view(arr: np.ndarray, what: str) -> memoryview:
    a = np.asarray(arr)
    if not _is_float32(a.dtype):
        raise RerfUsageError(f"frame hash: {what} must be float32, got {_dtype_name(a.dtype)}")
    if a.size == 0:
        return memoryview(b"")
    return np.ascontiguousarray(a, dtype="<f4").data.cast("B")


def update_frame_hash(h: hashlib._Hash, frame: GridFrame) -> None:
    """Feed one frame into ``h``: raw little-endian float32 density then features, C order.

    This byte layout is the codec's official decoded-grid hash (conformance vectors,
    closed-loop checks), independent of how the arrays are stored in memory.
    """
    h.update(_le_f32_view(frame.density, "density"))
    h.update(_le_f32_view(frame.features, "features"))


def frames_sha256(frames: Iterable[GridFrame]) -> str:
    """Hex SHA-256 of ``frames`` in order (see ``update_frame_hash``)."""
    h = hashlib.sha256()
    for fr in frames:
        update_frame_hash(h, fr)
    return h.hexdigest()
