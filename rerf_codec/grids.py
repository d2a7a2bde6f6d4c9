"""Grid sequences on disk: interchange format 1 (a directory), read, validated and written.

A grid sequence is what the trainer produces, the encoder consumes and the decoder
writes back (``DESIGN.md``, "Interchange format 1")::

    SEQ/sequence.json        metadata (``SequenceMeta``), extra keys allowed and kept
    SEQ/frames/NNNNNN.npz    one frame each: full (``GridFrame``) or trainer form (``TrainerFrame``)
    SEQ/decoder.npz          optional global MLP weights (plain numeric arrays)

Everything read from disk is untrusted: every field is checked, and every error is a
``RerfFormatError`` whose message names the file and the field, so a user can fix the
file without reading this code. Array shapes and dtypes are checked from the ``.npy``
headers *before* any array is allocated, so a corrupt or hostile file cannot make us
allocate terabytes; arrays are never unpickled.

Frame file names use the original frame numbers (``first_frame`` .. ``first_frame +
num_frames - 1``), so a sub-range cut from a longer sequence keeps its numbering.

This module never imports torch: the decoder side depends on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from rerf_codec.atomic import AtomicDirectory
from rerf_codec.checks import is_int as _is_int
from rerf_codec.checks import is_number as _is_number
from rerf_codec.checks import show as _show
from rerf_codec.errors import RerfError, RerfFormatError, RerfUsageError
from rerf_codec.jsonfile import loads_strict, read_bounded

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_CHANNELS",
    "MAX_FRAMES",
    "MAX_GRID_DIM",
    "MAX_VOXELS",
    "GridFrame",
    "SequenceMeta",
    "SequenceWriter",
    "TrainerFrame",
    "frame_path",
    "frames_sha256",
    "iter_full_frames",
    "raw_float32_bytes",
    "read_decoder",
    "read_frame",
    "read_meta",
    "update_frame_hash",
    "warp_previous",
    "write_sequence",
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

MOTION_BLOCK = 8
"""The only motion block size this version supports (the codec's 8³ DCT block)."""

SEQUENCE_JSON = "sequence.json"
FRAMES_DIR = "frames"
DECODER_NPZ = "decoder.npz"

_MAX_JSON_BYTES = 64 * 2**20
"""sequence.json is metadata; anything larger is not one of ours."""
_MAX_DECODER_BYTES = 2**32
"""Cap on the total size of decoder.npz arrays (MLP weights are a few MB)."""
_READ_CHUNK = 16 * 2**20

_FULL_KEYS = ("density", "features")
_TRAINER_KEYS = ("motion", "residual_density", "residual_features")

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


def read_meta(seq_dir: str | Path) -> SequenceMeta:
    """Read and validate ``SEQ/sequence.json``.

    Strict JSON (no NaN/Infinity, no duplicate keys), because a sequence.json that
    different readers would parse differently is a bug waiting to happen.
    """
    seq = Path(seq_dir)
    if not seq.exists():
        raise RerfFormatError(f"{seq}: grid sequence directory does not exist")
    if not seq.is_dir():
        raise RerfFormatError(f"{seq}: not a directory (expected a grid sequence directory)")
    path = seq / SEQUENCE_JSON
    source = str(path)
    d = loads_strict(read_bounded(path, _MAX_JSON_BYTES, " (not a grid sequence?)"), source)
    return SequenceMeta.from_json_dict(d, source)


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


def frame_path(seq_dir: str | Path, index: int) -> Path:
    """``SEQ/frames/{index:06d}.npz``: the file of frame number ``index``."""
    return Path(seq_dir) / FRAMES_DIR / f"{index:06d}.npz"


def _expected_shapes(meta: SequenceMeta, full: bool) -> dict[str, tuple[int, ...]]:
    x, y, z = meta.grid_shape
    c = meta.feature_channels
    if full:
        return {"density": (x, y, z), "features": (c, x, y, z)}
    return {
        "motion": (3, *meta.motion_shape),
        "residual_density": (x, y, z),
        "residual_features": (c, x, y, z),
    }


def _is_float32(dt: np.dtype) -> bool:
    return dt.kind == "f" and dt.itemsize == 4 and dt.fields is None and dt.subdtype is None


def _dtype_name(dt: np.dtype) -> str:
    if dt.kind == "f" and dt.itemsize == 4:
        return "float32" if dt.isnative else f"float32 ({dt.str})"
    return "object" if dt.kind == "O" else (dt.name if dt.fields is None else str(dt))


class _NpzMember:
    """One ``.npy`` member of an npz whose header has been read but whose data has not."""

    __slots__ = ("data_bytes", "dtype", "fortran", "name", "shape", "stored_bytes")

    def __init__(
        self, name: str, shape: tuple[int, ...], fortran: bool, dtype: np.dtype, stored_bytes: int
    ) -> None:
        self.name = name
        self.shape = shape
        self.fortran = fortran
        self.dtype = dtype
        self.data_bytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
        self.stored_bytes = stored_bytes  # data bytes the zip entry says it holds

    def check_size(self, source: str) -> None:
        """Reject a member whose zip entry cannot hold exactly the declared array."""
        if self.stored_bytes != self.data_bytes:
            raise RerfFormatError(
                f"{source}: field '{self.name}' is truncated or padded: its header declares "
                f"shape {self.shape} {_dtype_name(self.dtype)} ({self.data_bytes} bytes) but "
                f"the member holds {self.stored_bytes} data bytes"
            )


def _read_npy_header(
    fp: IO[bytes], source: str, key: str
) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Parse an .npy header without touching the data (no allocation, no pickle)."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise RerfFormatError(
                f"{source}: field '{key}' uses unsupported .npy format version {version}"
            )
    except RerfError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise RerfFormatError(f"{source}: field '{key}' has a corrupt .npy header: {exc}") from None
    return tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype)


def _open_npz(path: Path, source: str, what: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise RerfFormatError(f"{source}: {what} file is missing") from None
    except IsADirectoryError:
        raise RerfFormatError(f"{source}: is a directory, expected a {what} .npz file") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise RerfFormatError(f"{source}: not a valid .npz (zip) file: {exc}") from None


def _npz_keys(zf: zipfile.ZipFile, source: str) -> list[str]:
    """Array names of an npz (member names minus ``.npy``), rejecting anything else."""
    names = zf.namelist()
    if len(set(names)) != len(names):
        raise RerfFormatError(f"{source}: the zip archive has duplicate members")
    keys = []
    for name in names:
        if not name.endswith(".npy") or len(name) <= 4:
            raise RerfFormatError(
                f"{source}: unexpected member {name!r} (only .npy arrays allowed)"
            )
        keys.append(name[:-4])
    return keys


# What zipfile / numpy raise on a damaged npz member; each becomes one RerfFormatError.
_NPZ_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, NotImplementedError, RuntimeError)


def _scan_members(zf: zipfile.ZipFile, keys: Iterable[str], source: str) -> dict[str, _NpzMember]:
    """Read every member's .npy header (nothing else); object dtypes are rejected here."""
    members: dict[str, _NpzMember] = {}
    for key in keys:
        name = key + ".npy"
        try:
            info = zf.getinfo(name)
            with zf.open(info) as fp:
                shape, fortran, dtype = _read_npy_header(fp, source, key)
                header_len = fp.tell()
        except RerfError:
            raise
        except _NPZ_ERRORS as exc:
            raise RerfFormatError(f"{source}: field '{key}' cannot be read: {exc}") from None
        if dtype.hasobject:
            raise RerfFormatError(
                f"{source}: field '{key}' has dtype object; only numeric arrays are allowed"
            )
        members[key] = _NpzMember(key, shape, fortran, dtype, info.file_size - header_len)
    return members


def _load_member(zf: zipfile.ZipFile, m: _NpzMember, source: str) -> np.ndarray:
    """Read the data of a member whose header was already validated, in bounded chunks."""
    name = m.name + ".npy"
    alloc_shape = m.shape[::-1] if m.fortran else m.shape
    arr = np.empty(alloc_shape, dtype=m.dtype)
    buf = arr.reshape(-1).view(np.uint8).data
    try:
        with zf.open(name) as fp:
            _read_npy_header(fp, source, m.name)
            pos = 0
            while pos < m.data_bytes:
                chunk = fp.read(min(_READ_CHUNK, m.data_bytes - pos))
                if not chunk:
                    raise RerfFormatError(
                        f"{source}: field '{m.name}' is truncated ({pos} of {m.data_bytes} data bytes)"
                    )
                buf[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
            if fp.read(1):  # also makes zipfile verify the CRC-32
                raise RerfFormatError(f"{source}: field '{m.name}' has trailing data")
    except RerfError:
        raise
    except _NPZ_ERRORS as exc:
        raise RerfFormatError(f"{source}: field '{m.name}' is corrupt: {exc}") from None
    if m.fortran:
        arr = arr.T
    if not arr.dtype.isnative:
        arr = arr.byteswap().view(arr.dtype.newbyteorder("="))
    return arr


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


def read_frame(seq_dir: str | Path, index: int, meta: SequenceMeta) -> GridFrame | TrainerFrame:
    """Read and validate frame number ``index`` (full or trainer form, as stored).

    A full frame has exactly the arrays ``density`` and ``features``; the trainer form
    exactly ``motion``, ``residual_density`` and ``residual_features``. All float32, exact
    shapes, finite. The frame at ``meta.first_frame`` must be full (nothing precedes it).
    """
    if not _is_int(index) or index not in meta.frame_indices:
        raise RerfUsageError(
            f"frame {index} is outside the sequence's frames "
            f"{meta.first_frame}:{meta.first_frame + meta.num_frames}"
        )
    path = frame_path(seq_dir, int(index))
    source = str(path)
    with _open_npz(path, source, "frame") as zf:
        keys = _npz_keys(zf, source)
        full = not any(k in _TRAINER_KEYS for k in keys)
        expected = _expected_shapes(meta, full)
        form = "a full frame" if full else "a trainer-form frame"
        for key in expected:
            if key not in keys:
                raise RerfFormatError(
                    f"{source}: field '{key}' is missing ({form} has exactly {', '.join(expected)})"
                )
        for key in keys:
            if key not in expected:
                raise RerfFormatError(
                    f"{source}: field '{key}' is unexpected ({form} has exactly "
                    f"{', '.join(expected)})"
                )
        if not full and index == meta.first_frame:
            raise RerfFormatError(
                f"{source}: field 'motion': frame {index} is the first frame of the sequence and "
                f"must be a full frame (density, features), not the trainer form"
            )
        members = _scan_members(zf, expected, source)
        for key, shape in expected.items():
            m = members[key]
            if not _is_float32(m.dtype):
                raise RerfFormatError(
                    f"{source}: field '{key}' has dtype {_dtype_name(m.dtype)}, expected float32"
                )
            if m.shape != shape:
                raise RerfFormatError(
                    f"{source}: field '{key}' has shape {m.shape}, expected {shape}"
                )
            m.check_size(source)
        arrays: dict[str, np.ndarray] = {}
        for key in expected:
            arr = _load_member(zf, members[key], source)
            where = _first_nonfinite(arr)
            if where is not None:
                raise RerfFormatError(
                    f"{source}: field '{key}' contains a non-finite value "
                    f"({arr[where]!r} at index {where})"
                )
            arrays[key] = arr
    return GridFrame(**arrays) if full else TrainerFrame(**arrays)


def _peek_is_full(seq_dir: Path, index: int) -> bool:
    """Whether frame ``index`` is stored full, from the zip directory alone (cheap)."""
    path = frame_path(seq_dir, index)
    source = str(path)
    with _open_npz(path, source, "frame") as zf:
        keys = _npz_keys(zf, source)
    return not any(k in _TRAINER_KEYS for k in keys)


# --------------------------------------------------------------------------- motion compensation


def _axis_windows(
    motion_axis: np.ndarray, axis: int, n: int, block: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Sample windows of every block along one axis.

    For block ``b`` with motion ``m`` the voxels ``p = b*block + l`` (l < block) sample at
    ``c = p + m``; with ``f0 = floor(b*block + m)`` and ``f = m - floor(m)``, voxel ``l``
    interpolates the window entries ``l`` and ``l + 1`` with weights ``1 - f`` and ``f``,
    where window entry ``k`` is the clamped index ``clip(f0 + k, 0, n - 1)``. Clamping
    the indices is exactly clamping the coordinate to [0, n - 1] (both corners fall on
    the same edge voxel outside the grid).

    Returns (window indices ``motion.shape + (block + 1,)``, fractions, any fraction).
    """
    m = np.clip(motion_axis.astype(np.float64), -(n + 1), n + 1)  # beyond this, all clamped
    fl = np.floor(m)
    frac = (m - fl).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = motion_axis.shape[axis]
    base = (np.arange(motion_axis.shape[axis]) * block).reshape(shape) + fl.astype(np.intp)
    win = np.clip(base[..., None] + np.arange(block + 1), 0, n - 1)
    return win, frac, bool(np.any(frac))


def _lerp(g: np.ndarray, frac: np.ndarray, axis: int, block: int) -> np.ndarray:
    """Linear interpolation between window entries ``l`` and ``l + 1`` along ``axis``."""
    lo = [slice(None)] * g.ndim
    hi = [slice(None)] * g.ndim
    lo[axis] = slice(0, block)
    hi[axis] = slice(1, block + 1)
    a = g[tuple(lo)]
    b = g[tuple(hi)]
    out: np.ndarray = a + (b - a) * frac
    return out


def warp_previous(prev: GridFrame, motion: np.ndarray, block: int = MOTION_BLOCK) -> GridFrame:
    """Backward motion compensation: what the trainer form *means*.

    For every voxel ``p = (x, y, z)`` the warped value is the previous frame sampled
    trilinearly at ``p + motion[:, x // block, y // block, z // block]`` (the motion
    vector of the block containing ``p``, in voxel units). Sample coordinates outside
    the grid are clamped to ``[0, n - 1]`` on each axis (edge replicate), i.e.
    ``scipy.ndimage.map_coordinates(prev, p + motion, order=1, mode='nearest')``. The same
    rule applies to density and to every feature channel. A trainer-form frame ``t`` is
    ``warp_previous(frame t-1, motion) + residual``; the trainer must use this definition.

    Computed in float32 (interpolation rounding differs from a float64 evaluation by a
    few ulp; integer motion is an exact copy). Blocks are processed a slab at a time: each
    block gathers one (block+1)³ window and interpolates separably, which is much cheaper
    than eight scattered gathers per voxel.
    """
    density = np.asarray(prev.density)
    features = np.asarray(prev.features)
    motion = np.asarray(motion)
    if density.ndim != 3:
        raise RerfUsageError(f"warp_previous: density must be 3-D, got shape {density.shape}")
    if features.ndim != 4 or features.shape[1:] != density.shape:
        raise RerfUsageError(
            f"warp_previous: features must have shape (C, *{density.shape}), got {features.shape}"
        )
    if not _is_int(block) or block < 1:
        raise RerfUsageError(f"warp_previous: block must be a positive integer, got {block!r}")
    dims = density.shape
    nb = tuple(-(-n // block) for n in dims)
    if motion.shape != (3, *nb):
        raise RerfUsageError(f"warp_previous: motion has shape {motion.shape}, expected {(3, *nb)}")
    if motion.dtype.kind not in "fiu" or _first_nonfinite(motion.astype(np.float64)) is not None:
        raise RerfUsageError("warp_previous: motion must be finite numbers")

    nx, ny, nz = nb
    X, Y, Z = dims
    C = features.shape[0]
    src_d = np.ascontiguousarray(density, dtype=np.float32).reshape(1, -1)
    src_f = np.ascontiguousarray(features, dtype=np.float32).reshape(C, -1)
    out_d = np.empty(dims, np.float32)
    out_f = np.empty((C, *dims), np.float32)

    wins, fracs, has = [], [], []
    for axis in range(3):
        w, f, h = _axis_windows(motion[axis], axis, dims[axis], block)
        wins.append(w)
        fracs.append(f)
        has.append(h)
    # Flat source index contributions per axis, shape (nx, ny, nz, block+1).
    wx = wins[0] * (Y * Z)
    wy = wins[1] * Z
    wz = wins[2]

    # Chunk over x-slabs and, for wide grids, over y so one chunk stays a few MB per channel.
    by_step = max(1, 4096 // nz)
    for bx in range(nx):
        x0 = bx * block
        x1 = min(x0 + block, X)
        for by0 in range(0, ny, by_step):
            by1 = min(by0 + by_step, ny)
            sl = (bx, slice(by0, by1))
            kx = block + 1 if has[0] else block
            ky = block + 1 if has[1] else block
            kz = block + 1 if has[2] else block
            # (nby, nz, kx, ky, kz) flat indices of each block's window.
            idx = (
                wx[sl][..., :kx, None, None]
                + wy[sl][..., None, :ky, None]
                + wz[sl][..., None, None, :kz]
            )
            fx = fracs[0][sl][..., None, None, None]
            fy = fracs[1][sl][..., None, None, None]
            fz = fracs[2][sl][..., None, None, None]
            ys = slice(by0 * block, min(by1 * block, Y))
            for src, out in ((src_d, out_d[None]), (src_f, out_f)):
                g = np.take(src, idx, axis=1)  # (Cc, nby, nz, kx, ky, kz)
                if has[0]:
                    g = _lerp(g, fx, 3, block)
                if has[1]:
                    g = _lerp(g, fy, 4, block)
                if has[2]:
                    g = _lerp(g, fz, 5, block)
                cc = g.shape[0]
                nby = by1 - by0
                # (Cc, by, bz, lx, ly, lz) -> (Cc, lx, by, ly, bz, lz) -> (Cc, block, Y', Z')
                g = g.transpose(0, 3, 1, 4, 2, 5).reshape(cc, block, nby * block, nz * block)
                out[:, x0:x1, ys, :] = g[:, : x1 - x0, : ys.stop - ys.start, :Z]
    return GridFrame(density=out_d, features=out_f)


def _apply_trainer(prev: GridFrame, tf: TrainerFrame, block: int) -> GridFrame:
    warped = warp_previous(prev, tf.motion, block)
    np.add(warped.density, tf.residual_density, out=warped.density)
    np.add(warped.features, tf.residual_features, out=warped.features)
    return warped


def _check_frame_range(frames: range | None, meta: SequenceMeta) -> range:
    seq = meta.frame_indices
    if frames is None:
        return seq
    if not isinstance(frames, range):
        raise RerfUsageError(f"frames must be a range, got {type(frames).__name__}")
    if frames.step < 1:
        raise RerfUsageError(f"frames must be an increasing range, got step {frames.step}")
    if len(frames) == 0:
        raise RerfUsageError(f"frame range {frames.start}:{frames.stop} is empty")
    if frames[0] < seq.start or frames[-1] >= seq.stop:
        raise RerfUsageError(
            f"frame range {frames.start}:{frames.stop} is outside the sequence's frames "
            f"{seq.start}:{seq.stop}"
        )
    return frames


def iter_full_frames(
    seq_dir: str | Path, meta: SequenceMeta | None = None, frames: range | None = None
) -> Iterator[tuple[int, GridFrame]]:
    """Yield ``(frame_number, GridFrame)`` for ``frames`` (default: all), trainer form resolved.

    Trainer-form frames depend on every frame back to the latest full one, so frames
    before ``frames.start`` are decoded (not yielded) from that full frame on; at most two
    frames are in memory at a time. Arguments are checked now, not at the first ``next``.
    """
    seq = Path(seq_dir)
    if meta is None:
        meta = read_meta(seq)
    wanted = _check_frame_range(frames, meta)
    return _iter_full_frames(seq, meta, wanted)


def _iter_full_frames(
    seq: Path, meta: SequenceMeta, wanted: range
) -> Iterator[tuple[int, GridFrame]]:
    start = wanted[0]
    while start > meta.first_frame and not _peek_is_full(seq, start):
        start -= 1
    prev: GridFrame | None = None
    for index in range(start, wanted[-1] + 1):
        fr = read_frame(seq, index, meta)
        if isinstance(fr, TrainerFrame):
            assert prev is not None  # read_frame guarantees the first frame is full
            fr = _apply_trainer(prev, fr, meta.motion_block)
        prev = fr
        if index in wanted:
            yield index, fr


def iter_frames_with_motion(
    seq_dir: str | Path, meta: SequenceMeta | None = None
) -> Iterator[tuple[int, GridFrame, np.ndarray | None]]:
    """Like :func:`iter_full_frames` over the whole sequence, also yielding each frame's
    trainer motion (``None`` for frames stored full), so an encoder can reuse it."""
    seq = Path(seq_dir)
    if meta is None:
        meta = read_meta(seq)
    prev: GridFrame | None = None
    for index in meta.frame_indices:
        fr = read_frame(seq, index, meta)
        motion = None
        if isinstance(fr, TrainerFrame):
            assert prev is not None  # read_frame guarantees the first frame is full
            motion = fr.motion
            fr = _apply_trainer(prev, fr, meta.motion_block)
        prev = fr
        yield index, fr, motion


# --------------------------------------------------------------------------- decoder weights


def read_decoder(seq_dir: str | Path, meta: SequenceMeta) -> dict[str, np.ndarray] | None:
    """Load ``decoder.npz`` (the MLP weights) as name → array; None if none is declared.

    Only plain numeric arrays (bool, int, uint, float), finite, no pickles; sizes are
    checked from the headers before anything is allocated.
    """
    if meta.decoder is None:
        return None
    path = Path(seq_dir) / meta.decoder
    source = str(path)
    out: dict[str, np.ndarray] = {}
    with _open_npz(path, source, "decoder") as zf:
        keys = _npz_keys(zf, source)
        members = _scan_members(zf, keys, source)
        total = 0
        for key, m in members.items():
            dt = m.dtype
            if dt.kind not in "biuf" or dt.fields is not None or dt.subdtype is not None:
                raise RerfFormatError(
                    f"{source}: field '{key}' has dtype {_dtype_name(dt)}; "
                    "only plain numeric arrays are allowed"
                )
            m.check_size(source)
            total += m.data_bytes
            if total > _MAX_DECODER_BYTES:
                raise RerfFormatError(
                    f"{source}: field '{key}': arrays exceed {_MAX_DECODER_BYTES} bytes in total"
                )
        for key, m in members.items():
            arr = _load_member(zf, m, source)
            if arr.dtype.kind == "f":
                where = _first_nonfinite(arr)
                if where is not None:
                    raise RerfFormatError(
                        f"{source}: field '{key}' contains a non-finite value at index {where}"
                    )
            out[key] = arr
    return out


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


# --------------------------------------------------------------------------- writing

_DECODER_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an uncompressed npz (what ``np.savez`` writes) without pickles.

    Done by hand because ``np.savez(file, **arrays)`` breaks on an array named ``file``.
    Uncompressed: frames are float noise to deflate, and reading stays fast.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


def _check_write_array(arr: Any, name: str, shape: tuple[int, ...], index: int) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise RerfUsageError(
            f"frame {index}: field '{name}' must be a numpy array, got {type(arr).__name__}"
        )
    if arr.dtype != np.float32:
        raise RerfUsageError(
            f"frame {index}: field '{name}' has dtype {_dtype_name(arr.dtype)}, expected float32"
        )
    if arr.shape != shape:
        raise RerfUsageError(
            f"frame {index}: field '{name}' has shape {arr.shape}, expected {shape}"
        )
    where = _first_nonfinite(arr)
    if where is not None:
        raise RerfUsageError(
            f"frame {index}: field '{name}' contains a non-finite value at index {where}"
        )
    return arr


def _check_decoder_arrays(decoder: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, arr in decoder.items():
        if not isinstance(key, str) or not _DECODER_KEY.match(key) or key in (".", ".."):
            raise RerfUsageError(f"decoder: array name {key!r} must match [A-Za-z0-9_.-]+")
        if not isinstance(arr, np.ndarray):
            raise RerfUsageError(
                f"decoder: field '{key}' must be a numpy array, got {type(arr).__name__}"
            )
        dt = arr.dtype
        if dt.kind not in "biuf" or dt.fields is not None or dt.subdtype is not None:
            raise RerfUsageError(
                f"decoder: field '{key}' has dtype {_dtype_name(dt)}; only plain numeric arrays"
            )
        if dt.kind == "f" and _first_nonfinite(arr) is not None:
            raise RerfUsageError(f"decoder: field '{key}' contains non-finite values")
        out[key] = arr
    return out


class SequenceWriter(AtomicDirectory):
    """Write a grid sequence atomically (see :class:`rerf_codec.atomic.AtomicDirectory`).

    Only a complete and valid sequence (every frame of ``meta.frame_indices`` written) is
    renamed into place; ``--force`` replaces only an existing grid sequence or an empty
    directory.
    """

    MARKER = SEQUENCE_JSON
    KIND = "grid sequence"

    def __init__(
        self,
        out_dir: str | Path,
        meta: SequenceMeta,
        *,
        force: bool = False,
        decoder: dict[str, np.ndarray] | None = None,
    ) -> None:
        if not isinstance(meta, SequenceMeta):
            raise RerfUsageError(f"meta must be a SequenceMeta, got {type(meta).__name__}")
        if decoder is not None:
            decoder = _check_decoder_arrays(decoder)
            if meta.decoder is None:
                meta = dataclasses.replace(meta, decoder=DECODER_NPZ)
        elif meta.decoder is not None:
            raise RerfUsageError(
                f"meta declares decoder={meta.decoder!r} but no decoder arrays were given"
            )
        super().__init__(out_dir, force=force)
        self.meta = meta
        self._written: set[int] = set()
        try:
            (self._tmp / FRAMES_DIR).mkdir()
            if decoder is not None:
                _write_npz(self._tmp / DECODER_NPZ, decoder)
            text = json.dumps(meta.to_json_dict(), indent=2, allow_nan=False)
            (self._tmp / SEQUENCE_JSON).write_text(text + "\n", encoding="utf-8")
        except BaseException:
            self.abort()
            raise

    def write_frame(self, index: int, frame: GridFrame | TrainerFrame) -> None:
        """Validate (float32, exact shapes, finite) and write frame number ``index``."""
        self._check_open()
        meta = self.meta
        if not _is_int(index) or index not in meta.frame_indices:
            raise RerfUsageError(
                f"frame {index} is outside the sequence's frames "
                f"{meta.first_frame}:{meta.first_frame + meta.num_frames}"
            )
        index = int(index)
        if index in self._written:
            raise RerfUsageError(f"frame {index} was already written")
        if isinstance(frame, GridFrame):
            full = True
        elif isinstance(frame, TrainerFrame):
            full = False
            if index == meta.first_frame:
                raise RerfUsageError(
                    f"frame {index} is the first frame of the sequence and must be a GridFrame"
                )
        else:
            raise RerfUsageError(
                f"frame {index}: expected GridFrame or TrainerFrame, got {type(frame).__name__}"
            )
        arrays = {
            name: _check_write_array(getattr(frame, name), name, shape, index)
            for name, shape in _expected_shapes(meta, full).items()
        }
        _write_npz(self._tmp / FRAMES_DIR / f"{index:06d}.npz", arrays)
        self._written.add(index)

    def update_extra(self, **extra: Any) -> None:
        """Add or replace extra sequence.json keys before commit (e.g. ``damaged_frames``)."""
        self._check_open()
        meta = dataclasses.replace(self.meta, extra={**self.meta.extra, **extra})
        text = json.dumps(meta.to_json_dict(), indent=2, allow_nan=False)
        (self._tmp / SEQUENCE_JSON).write_text(text + "\n", encoding="utf-8")
        self.meta = meta

    def write_file(self, name: str, data: bytes) -> None:
        """Add a side file (e.g. the trainer's ``train.json``) next to ``sequence.json``."""
        self._check_open()
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}", name) or name in (SEQUENCE_JSON, DECODER_NPZ):
            raise RerfUsageError(f"side file name {name!r} is not allowed")
        (self._tmp / name).write_bytes(data)

    def _check_complete(self) -> None:
        missing = [i for i in self.meta.frame_indices if i not in self._written]
        if missing:
            raise RerfUsageError(
                f"{self.out_dir}: {len(missing)} of {self.meta.num_frames} frames were not "
                f"written (first missing: {missing[0]}); nothing was written"
            )


def write_sequence(
    out_dir: str | Path,
    meta: SequenceMeta,
    frames: Iterable[tuple[int, GridFrame | TrainerFrame]],
    *,
    force: bool = False,
    decoder: dict[str, np.ndarray] | None = None,
) -> None:
    """Write a whole sequence atomically (see ``SequenceWriter``)."""
    with SequenceWriter(out_dir, meta, force=force, decoder=decoder) as w:
        for index, frame in frames:
            w.write_frame(index, frame)
