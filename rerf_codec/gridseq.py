"""Grid sequences on disk: interchange format 1 (a directory), read, validated and written.

The in-memory types (``SequenceMeta``, ``GridFrame``, ``TrainerFrame``) are ``rerf_codec.grids``;
reading a trainer-form frame applies ``rerf_codec.trainer_form.apply_trainer``.

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
import json
import math
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from rerf_codec.atomic import AtomicDirectory
from rerf_codec.checks import is_int as _is_int
from rerf_codec.errors import RerfError, RerfFormatError, RerfUsageError
from rerf_codec.grids import (
    DECODER_NPZ,
    GridFrame,
    SequenceMeta,
    TrainerFrame,
    _dtype_name,
    _first_nonfinite,
    _is_float32,
)
from rerf_codec.jsonfile import loads_strict, read_bounded
from rerf_codec.trainer_form import apply_trainer

__all__ = [
    "SequenceWriter",
    "frame_path",
    "iter_frames_with_motion",
    "iter_full_frames",
    "read_decoder",
    "read_frame",
    "read_meta",
    "write_sequence",
]

SEQUENCE_JSON = "sequence.json"
FRAMES_DIR = "frames"

_MAX_JSON_BYTES = 64 * 2**20
"""sequence.json is metadata; anything larger is not one of ours."""
_MAX_DECODER_BYTES = 2**32
"""Cap on the total size of decoder.npz arrays (MLP weights are a few MB)."""
_READ_CHUNK = 16 * 2**20

_FULL_KEYS = ("density", "features")
_TRAINER_KEYS = ("motion", "residual_density", "residual_features")

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
            fr = apply_trainer(prev, fr, meta.motion_block)
        prev = fr
        if index in wanted:
            yield index, fr


def iter_frames_with_motion(
    seq_dir: str | Path, meta: SequenceMeta | None = None, frames: range | None = None
) -> Iterator[tuple[int, GridFrame, np.ndarray | None]]:
    """Like :func:`iter_full_frames` (default: the whole sequence), also yielding each frame's
    trainer motion (``None`` for frames stored full), so an encoder can reuse it."""
    seq = Path(seq_dir)
    if meta is None:
        meta = read_meta(seq)
    wanted = _check_frame_range(frames, meta)
    return _iter_frames_with_motion(seq, meta, wanted)


def _iter_frames_with_motion(
    seq: Path, meta: SequenceMeta, wanted: range
) -> Iterator[tuple[int, GridFrame, np.ndarray | None]]:
    start = wanted[0]
    while start > meta.first_frame and not _peek_is_full(seq, start):
        start -= 1
    prev: GridFrame | None = None
    for index in range(start, wanted[-1] + 1):
        fr = read_frame(seq, index, meta)
        motion = None
        if isinstance(fr, TrainerFrame):
            assert prev is not None  # read_frame guarantees the first frame is full
            motion = fr.motion
            fr = apply_trainer(prev, fr, meta.motion_block)
        prev = fr
        if index in wanted:
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
