"""``rerf-reference``: the ReRF paper's codec, re-implemented from its published description.

ReRF (Wang et al., "Neural Residual Radiance Fields for Streamably Free-Viewpoint
Videos", CVPR 2023, Sec. 5) codes each frame's grids with a JPEG-like scheme. This module
rebuilds it as the baseline that ``rerf bench-rate-distortion`` measures rerf against, so
the comparison is against the published method, not a straw man:

* **Blocks and transform**: 8³ blocks, 3D DCT-II (orthonormal, float64), zero-padded
  partial edge blocks; only occupied blocks are coded.
* **Quantisation**: one 8×8×8 JPEG-style table (:func:`quant_table`) scaled by the
  quality with the IJG formula — ``factor = 5000 / q`` for ``q < 50``, else ``200 − 2q``;
  ``step = table × factor / 100`` (float, no rounding or clamping, as ReRF does;
  ``q = 100`` means step 1, as in ReRF's ``quantize_quality``); ``level = rint(coef / step)``.
* **Entropy coding**: every channel of every block is split into eight 8×8 JPEG data
  units (unit ``u`` holds the coefficients ``[u, :, :]``, zig-zagged over ``(v, w)``) and
  coded with baseline JPEG Huffman coding, the standard luminance DC/AC tables and DC
  prediction from the previous unit (:mod:`rerf_codec.reference.huffman`); **one stream
  per channel per frame** (DC prediction restarts in each stream).
* **Side data**: the block mask stored as raw packed bits (one bit per 8³ block, C order);
  block motion of residual frames stored as raw float16 (one flag bit per block, then
  three float16 per block with a non-zero vector).
* **GOF of 20, closed loop**: a keyframe codes the grid itself; a residual frame codes
  ``current − warp(previous decoded frame, block motion)`` on the blocks occupied in the
  current frame or in the previous decoded frame (ReRF's mask), and the decoder adds it
  to the warped previous frame (other blocks keep the warped prediction). The encoder
  predicts from *its own* reconstruction, computed by the decoder's functions.

Points where the description is silent and we had to choose (BENCHMARKS.md repeats them):

1. **Sample scale.** ReRF applies the table to the trained grid's raw values, whose scale
   is whatever training produced. A grid sequence has arbitrary scale, so each channel
   group (density; all features together) is first mapped to JPEG's 8-bit sample range:
   the keyframe's value range over occupied voxels becomes 255 and, for keyframes, its
   midpoint 0 (JPEG's level shift); residuals are scaled, not shifted. The four numbers
   are stored per GOF as float32. Without this no quality reaches rerf's PSNR range
   on unit-scale features (the smallest step, at q = 99, would be 0.32 in raw units).
2. **The 3D table.** ReRF ships its table as an opaque ``quant.npy``. We extend JPEG's
   luminance table (Table K.1) to 3D: ``T[u, v, w] = max(S[u, v], S[v, w], S[u, w])``
   with ``S`` the symmetrised 2D table, so every coordinate plane through the DC is
   JPEG's table and steps grow towards the high 3D frequencies.
3. **Data-unit split**: unit ``u`` = plane ``[u, :, :]`` of the coefficient cube,
   zig-zag over ``(v, w)``, units in order ``u = 0..7``, blocks in C order of the block
   grid (ReRF's C++ ``ac_dc`` coder reshapes 512 coefficients into 8 rows of 64 the same way).
4. **Motion.** ReRF's trainer produces the block motion. We use the sequence's trainer
   motion when it carries one; otherwise rerf's own block motion search (run on the
   reference's own reconstruction), so both codecs get motion of the same quality.
   Prediction is ReRF's: trilinear sampling of the previous decoded frame at
   ``p + motion`` (:func:`rerf_codec.trainer_form.warp_previous`).
5. **Empty blocks of a keyframe** decode to 0 (ReRF's zero fill); occupancy uses rerf's
   threshold (``softplus(density + shift) > 1e-4``) so both codecs code the same blocks.
6. **Range.** Baseline JPEG codes DC differences up to category 11 and AC levels up to
   category 10; the 3D DCT's DC gain (8^1.5 against JPEG's 8) pushes high-quality levels
   past that. Levels are saturated to ±1023 (both fit) and counted (``clipped_levels``
   in the report), so the curve flattens honestly at high quality instead of the stream
   being corrupt (ReRF's coder silently wraps).
7. **Container**: a 34-byte header, then one length-prefixed record per frame (frame type,
   GOF scales on keyframes, mask, motion, then each channel's segment with a u32 length).
   JPEG's markers (SOI, DQT, DHT, SOS…) are not written: the tables are fixed and
   known to both sides, which only favours the reference.

The float inverse DCT makes the output machine-dependent in the last bits (unlike rerf's
exact integer decoder); encoder and decoder share the code, so a decode on the same
machine reproduces the encoder's reconstruction exactly (tested).
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import scipy.fft

from rerf_codec.codec.motion import MV_UNIT
from rerf_codec.codec.motion_search import SearchConfig, search_motion
from rerf_codec.codec.occupancy import block_grid_shape, default_threshold, occupancy_mask
from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.grids import GridFrame, SequenceMeta, update_frame_hash
from rerf_codec.reference.huffman import ZIGZAG, decode_units, encode_units
from rerf_codec.trainer_form import warp_previous

__all__ = [
    "JPEG_LUMINANCE",
    "REFERENCE_GOF",
    "ReferenceConfig",
    "ReferenceReport",
    "decode_reference",
    "dequantize_blocks",
    "encode_reference",
    "quality_steps",
    "quant_table",
]

BLOCK = 8
REFERENCE_GOF = 20
MAGIC = b"RREF"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIIHIIf")  # magic, version, quality, gof, X, Y, Z, C, frames, first, threshold
RECORD_LEN = struct.Struct("<I")
SEG_LEN = struct.Struct("<I")
GOF_PARAMS = struct.Struct("<ffff")  # density scale, density mid, feature scale, feature mid
FRAME_INTRA, FRAME_RESIDUAL = 0, 1
MAX_RECORD = 1 << 31
MAX_LEVEL = 1023
"""Levels are saturated to ±1023: baseline JPEG's range (a DC difference of two such levels
needs category 11, an AC level category 10, the largest the standard tables code)."""

# ITU-T T.81 Table K.1: luminance quantisation table (row = vertical frequency).
JPEG_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)


def quant_table() -> np.ndarray:
    """The 8×8×8 table: ``T[u,v,w] = max(S[u,v], S[v,w], S[u,w])``, ``S`` = symmetrised K.1.

    Every plane through the DC equals (the symmetrised) JPEG table; see choice 2 above.
    """
    s = 0.5 * (JPEG_LUMINANCE + JPEG_LUMINANCE.T)
    u, v, w = np.meshgrid(np.arange(8), np.arange(8), np.arange(8), indexing="ij")
    return np.maximum(np.maximum(s[u, v], s[v, w]), s[u, w])


def quality_steps(quality: int) -> np.ndarray:
    """``(8, 8, 8)`` float steps at ``quality`` 1..100 (IJG scaling, as ReRF's ``quantize_quality``)."""
    q = int(quality)
    if not 1 <= q <= 100:
        raise RerfUsageError(f"rerf-reference quality must be in 1..100, got {quality}")
    if q >= 100:
        return np.ones((8, 8, 8))
    factor = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    return quant_table() * factor / 100.0


@dataclass(frozen=True)
class ReferenceConfig:
    """Settings of the reference codec (the paper's: GOF 20, motion from the trainer)."""

    quality: int = 90
    """IJG quality 1..100 of the JPEG-style table."""
    gof: int = REFERENCE_GOF
    """Frames per group (keyframe + residual frames); 1 = intra only."""
    motion: str = "search"
    """"search" (trainer motion if the input has it, else rerf's block search), "trainer"
    (the input's motion, zero when absent) or "zero"."""

    def validate(self) -> None:
        quality_steps(self.quality)
        if not 1 <= self.gof <= 65535:
            raise RerfUsageError(f"rerf-reference gof must be in 1..65535, got {self.gof}")
        if self.motion not in ("search", "trainer", "zero"):
            raise RerfUsageError(f"rerf-reference motion must be search, trainer or zero, got {self.motion!r}")


@dataclass
class ReferenceFrameReport:
    index: int
    frame_type: str
    bytes: dict[str, int]
    occupied_blocks: int
    clipped_levels: int = 0
    """Levels saturated to ±MAX_LEVEL (baseline JPEG's coefficient range; choice 6)."""

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


@dataclass
class ReferenceReport:
    """What :func:`encode_reference` wrote: bytes per frame and category, reconstruction hash."""

    num_frames: int
    file_bytes: int
    header_bytes: int
    seconds: float
    sha256: str
    config: dict[str, Any]
    frames: list[ReferenceFrameReport] = field(default_factory=list)


# --------------------------------------------------------------------------- blocks


def _to_blocks(planes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(C, X, Y, Z)`` → ``(C, N, 8, 8, 8)`` of the mask's blocks (C order), zero-padded edges."""
    c = planes.shape[0]
    bx, by, bz = mask.shape
    padded = np.zeros((c, bx * BLOCK, by * BLOCK, bz * BLOCK), dtype=np.float64)
    x, y, z = planes.shape[1:]
    padded[:, :x, :y, :z] = planes
    cube = padded.reshape(c, bx, BLOCK, by, BLOCK, bz, BLOCK).transpose(0, 1, 3, 5, 2, 4, 6)
    return cube[:, mask]


def _from_blocks(blocks: np.ndarray, mask: np.ndarray, base: np.ndarray) -> None:
    """Add ``(C, N, 8, 8, 8)`` blocks into ``base`` ``(C, X, Y, Z)`` float64 at the mask's blocks."""
    c = base.shape[0]
    bx, by, bz = mask.shape
    x, y, z = base.shape[1:]
    cube = np.zeros((c, bx, by, bz, BLOCK, BLOCK, BLOCK), dtype=np.float64)
    cube[:, mask] = blocks
    full = cube.transpose(0, 1, 4, 2, 5, 3, 6).reshape(c, bx * BLOCK, by * BLOCK, bz * BLOCK)
    base += full[:, :x, :y, :z]


def _levels_to_units(levels: np.ndarray) -> np.ndarray:
    """``(N, 8, 8, 8)`` levels of one channel → ``(8N, 64)`` zig-zag data units."""
    n = levels.shape[0]
    return levels.reshape(n * BLOCK, 64)[:, ZIGZAG]


def _units_to_levels(units: np.ndarray) -> np.ndarray:
    n = units.shape[0] // BLOCK
    out = np.empty_like(units)
    out[:, ZIGZAG] = units
    return out.reshape(n, BLOCK, BLOCK, BLOCK)


def dequantize_blocks(levels: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``(C, N, 8, 8, 8)`` levels → sample-domain blocks (float inverse DCT); shared by both sides."""
    if levels.size == 0:
        return np.zeros(levels.shape)
    return scipy.fft.idctn(levels * steps, type=2, norm="ortho", axes=(-3, -2, -1))


def _planes(frame: GridFrame) -> np.ndarray:
    return np.concatenate([frame.density[None], frame.features]).astype(np.float64)


def _frame_of(planes: np.ndarray) -> GridFrame:
    out = planes.astype(np.float32)
    return GridFrame(density=out[0], features=out[1:])


@dataclass(frozen=True)
class _GofParams:
    scale: np.ndarray  # (C,) per channel, float32 values
    mid: np.ndarray  # (C,)

    def pack(self) -> bytes:
        return GOF_PARAMS.pack(float(self.scale[0]), float(self.mid[0]), float(self.scale[1]), float(self.mid[1]))

    @staticmethod
    def unpack(data: bytes, channels: int) -> _GofParams:
        ds, dm, fs, fm = GOF_PARAMS.unpack(data)
        if not all(np.isfinite(v) for v in (ds, dm, fs, fm)) or ds <= 0 or fs <= 0:
            raise RerfFormatError("rerf-reference: bad GOF scale parameters")
        scale = np.array([ds] + [fs] * (channels - 1), dtype=np.float64)
        mid = np.array([dm] + [fm] * (channels - 1), dtype=np.float64)
        return _GofParams(scale, mid)


def _gof_params(frame: GridFrame, mask: np.ndarray) -> _GofParams:
    """Map each channel group's value range over occupied voxels to 255 (choice 1)."""
    vm = np.repeat(np.repeat(np.repeat(mask, BLOCK, 0), BLOCK, 1), BLOCK, 2)[
        : frame.density.shape[0], : frame.density.shape[1], : frame.density.shape[2]
    ]
    out = []
    for values in (frame.density[None], frame.features):
        sel = values[:, vm] if vm.any() else values.reshape(values.shape[0], -1)
        lo, hi = (float(sel.min()), float(sel.max())) if sel.size else (0.0, 0.0)
        rng = hi - lo if hi > lo else max(abs(hi), abs(lo), 1.0)
        out.append((np.float32(255.0 / rng), np.float32(0.5 * (lo + hi))))
    p = GOF_PARAMS.pack(float(out[0][0]), float(out[0][1]), float(out[1][0]), float(out[1][1]))
    return _GofParams.unpack(p, 1 + frame.features.shape[0])


def _reconstruct(
    levels: np.ndarray, steps: np.ndarray, mask: np.ndarray, params: _GofParams, pred: np.ndarray | None,
    shape: tuple[int, int, int],
) -> np.ndarray:
    """The decoder's reconstruction ``(C, X, Y, Z)`` float64 (keyframe: ``pred`` None)."""
    samples = dequantize_blocks(levels, steps)
    samples /= params.scale[:, None, None, None, None]
    if pred is None:
        samples += params.mid[:, None, None, None, None]
        base = np.zeros((levels.shape[0], *shape), dtype=np.float64)
    else:
        base = pred.copy()
    _from_blocks(samples, mask, base)
    return base


# --------------------------------------------------------------------------- encoder


def _pack_mask(mask: np.ndarray) -> bytes:
    return np.packbits(mask.reshape(-1).astype(np.uint8)).tobytes()


def _unpack_mask(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    n = int(np.prod(shape))
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:n]
    return bits.astype(bool).reshape(shape)


def _search(
    cur: np.ndarray, prev: np.ndarray, mask: np.ndarray, params: _GofParams, steps: np.ndarray,
    grid_shape: tuple[int, int, int], trainer: np.ndarray | None,
) -> np.ndarray:
    """Block motion ``(3, bx, by, bz)`` in voxels for the mask's blocks (rerf's search, choice 4)."""
    blocks = np.nonzero(mask)
    n = blocks[0].size
    motion = np.zeros((3, *mask.shape), dtype=np.float64)
    if n == 0:
        return motion
    scale = params.scale
    var = cur[1:].reshape(cur.shape[0] - 1, -1).var(axis=1)
    sel = np.concatenate([[0], 1 + np.sort(np.argsort(-var, kind="stable")[:4])])
    cur_blocks = _to_blocks(cur[sel], mask).reshape(len(sel), n, -1) * scale[sel, None, None]
    weights = np.full(len(sel), 1.0 / float(steps[0, 0, 0]) ** 2)
    candidates = [np.zeros((n, 3), dtype=np.int64)]
    if trainer is not None:
        candidates.append(np.round(np.asarray(trainer, dtype=np.float64)[:, blocks[0], blocks[1], blocks[2]].T * MV_UNIT)
                          .astype(np.int64))
    mv = search_motion(
        cur_blocks, [np.ascontiguousarray(prev[c]) for c in sel], grid_shape, blocks, weights, candidates,
        SearchConfig(), scale[sel],
    )
    motion[:, blocks[0], blocks[1], blocks[2]] = mv.T / MV_UNIT
    return motion


ProgressFn = Callable[[ReferenceFrameReport], None]


def encode_reference(
    meta: SequenceMeta,
    frames: Iterable[tuple[int, GridFrame] | tuple[int, GridFrame, np.ndarray | None]],
    out: BinaryIO,
    config: ReferenceConfig,
    *,
    progress: ProgressFn | None = None,
) -> ReferenceReport:
    """Encode full frames (in order) with the reference codec into ``out``; closed loop."""
    config.validate()
    t0 = time.perf_counter()
    shape: tuple[int, int, int] = (int(meta.grid_shape[0]), int(meta.grid_shape[1]), int(meta.grid_shape[2]))
    channels = 1 + meta.feature_channels
    threshold = default_threshold(meta.density_shift)
    head = HEADER.pack(MAGIC, VERSION, config.quality, config.gof, *shape, meta.feature_channels,
                       meta.num_frames, meta.first_frame, threshold)
    out.write(head)
    written = len(head)
    steps = quality_steps(config.quality)
    sha = hashlib.sha256()
    reports: list[ReferenceFrameReport] = []
    prev: np.ndarray | None = None
    params: _GofParams | None = None
    for i, item in enumerate(frames):
        idx, frame = item[0], item[1]
        trainer = item[2] if len(item) > 2 else None  # type: ignore[misc]
        if frame.density.shape != shape or frame.features.shape != (meta.feature_channels, *shape):
            raise RerfUsageError(f"frame {idx}: grid shapes do not match the sequence metadata")
        cur = _planes(frame)
        parts: dict[str, int] = {"mask": 0, "motion": 0, "coefficients": 0, "side_info": 0}
        record = bytearray()
        cur_occ = occupancy_mask(frame.density, threshold)
        if i % config.gof == 0 or prev is None:
            ftype = FRAME_INTRA
            mask = cur_occ
            params = _gof_params(frame, mask)
            record += bytes([FRAME_INTRA]) + params.pack()
            parts["side_info"] += 1 + GOF_PARAMS.size
            record += _pack_mask(mask)
            parts["mask"] += len(_pack_mask(mask))
            samples = (cur - params.mid[:, None, None, None]) * params.scale[:, None, None, None]
            pred = None
        else:
            assert params is not None
            ftype = FRAME_RESIDUAL
            mask = cur_occ | occupancy_mask(prev[0], threshold)
            if config.motion == "zero":
                motion = np.zeros((3, *mask.shape))
            elif config.motion == "trainer" or (trainer is not None and config.motion != "search"):
                motion = np.zeros((3, *mask.shape)) if trainer is None else np.asarray(trainer, dtype=np.float64)
            else:
                motion = _search(cur, prev, mask, params, steps, shape, trainer)
            motion16 = motion.astype(np.float16)
            moving = (motion16 != 0).any(axis=0)
            mbytes = _pack_mask(moving) + np.ascontiguousarray(motion16[:, moving].T).astype("<f2").tobytes()
            record += bytes([FRAME_RESIDUAL]) + _pack_mask(mask) + mbytes
            parts["side_info"] += 1
            parts["mask"] += len(_pack_mask(mask))
            parts["motion"] += len(mbytes)
            pred = _planes(warp_previous(_frame_of(prev), motion16.astype(np.float32), BLOCK))
            samples = (cur - pred) * params.scale[:, None, None, None]
        blocks = _to_blocks(samples, mask)
        coefs = scipy.fft.dctn(blocks, type=2, norm="ortho", axes=(-3, -2, -1)) if blocks.size else blocks
        levels = np.rint(coefs / steps).astype(np.int64)
        clipped = int(np.count_nonzero(np.abs(levels) > MAX_LEVEL))
        np.clip(levels, -MAX_LEVEL, MAX_LEVEL, out=levels)
        for c in range(channels):
            seg = encode_units(_levels_to_units(levels[c]))
            record += SEG_LEN.pack(len(seg)) + seg
            parts["coefficients"] += len(seg)
            parts["side_info"] += SEG_LEN.size
        recon = _reconstruct(levels, steps, mask, params, pred, shape)
        prev = recon
        out.write(RECORD_LEN.pack(len(record)))
        out.write(record)
        parts["side_info"] += RECORD_LEN.size
        written += RECORD_LEN.size + len(record)
        fr = _frame_of(recon)
        update_frame_hash(sha, fr)
        rep = ReferenceFrameReport(
            idx, "intra" if ftype == FRAME_INTRA else "residual", parts, int(mask.sum()), clipped
        )
        reports.append(rep)
        if progress:
            progress(rep)
    if len(reports) != meta.num_frames:
        raise RerfUsageError(f"the sequence has {len(reports)} frames, its num_frames says {meta.num_frames}")
    return ReferenceReport(
        num_frames=len(reports), file_bytes=written, header_bytes=HEADER.size, seconds=time.perf_counter() - t0,
        sha256=sha.hexdigest(), config={"codec": "rerf-reference", "quality": config.quality, "gof": config.gof,
                                        "motion": config.motion},
        frames=reports,
    )


# --------------------------------------------------------------------------- decoder


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise RerfFormatError(f"rerf-reference: truncated {what}")
    return data


def decode_reference(f: BinaryIO) -> Iterator[tuple[int, str, GridFrame]]:
    """Yield ``(frame index, frame type, GridFrame)`` for every frame of a reference stream."""
    magic, version, quality, _gof, x, y, z, c, num, first, _threshold = HEADER.unpack(
        _read_exact(f, HEADER.size, "header")
    )
    if magic != MAGIC or version != VERSION:
        raise RerfFormatError("not a rerf-reference stream (bad magic or version)")
    if not (1 <= quality <= 100 and min(x, y, z) >= 1 and max(x, y, z) <= 4096 and c <= 256):
        raise RerfFormatError("rerf-reference: header values out of range")
    shape = (x, y, z)
    channels = 1 + c
    bshape = block_grid_shape(shape)
    nb = int(np.prod(bshape))
    mask_bytes = (nb + 7) // 8
    steps = quality_steps(quality)
    prev: np.ndarray | None = None
    params: _GofParams | None = None
    for i in range(num):
        (length,) = RECORD_LEN.unpack(_read_exact(f, RECORD_LEN.size, f"frame {first + i} length"))
        if length > MAX_RECORD:
            raise RerfFormatError(f"rerf-reference: frame {first + i} record too large")
        rec = memoryview(_read_exact(f, length, f"frame {first + i}"))
        if len(rec) < 1:
            raise RerfFormatError(f"rerf-reference: empty frame {first + i}")
        ftype = rec[0]
        pos = 1
        if ftype == FRAME_INTRA:
            params = _GofParams.unpack(bytes(rec[pos : pos + GOF_PARAMS.size]), channels)
            pos += GOF_PARAMS.size
            mask = _unpack_mask(bytes(rec[pos : pos + mask_bytes]), bshape)
            pos += mask_bytes
            pred = None
        elif ftype == FRAME_RESIDUAL and prev is not None and params is not None:
            mask = _unpack_mask(bytes(rec[pos : pos + mask_bytes]), bshape)
            pos += mask_bytes
            moving = _unpack_mask(bytes(rec[pos : pos + mask_bytes]), bshape)
            pos += mask_bytes
            nm = int(moving.sum())
            mv = np.frombuffer(bytes(rec[pos : pos + 6 * nm]), dtype="<f2")
            if mv.size != 3 * nm:
                raise RerfFormatError(f"rerf-reference: frame {first + i}: truncated motion")
            pos += 6 * nm
            motion16 = np.zeros((3, *bshape), dtype=np.float16)
            motion16[:, moving] = mv.reshape(nm, 3).T
            pred = _planes(warp_previous(_frame_of(prev), motion16.astype(np.float32), BLOCK))
        else:
            raise RerfFormatError(f"rerf-reference: frame {first + i}: bad frame type {ftype}")
        n = int(mask.sum())
        levels = np.empty((channels, n, BLOCK, BLOCK, BLOCK), dtype=np.int64)
        for ch in range(channels):
            if pos + SEG_LEN.size > len(rec):
                raise RerfFormatError(f"rerf-reference: frame {first + i}: truncated channel {ch}")
            (sl,) = SEG_LEN.unpack(rec[pos : pos + SEG_LEN.size])
            pos += SEG_LEN.size
            if pos + sl > len(rec):
                raise RerfFormatError(f"rerf-reference: frame {first + i}: truncated channel {ch}")
            levels[ch] = _units_to_levels(decode_units(bytes(rec[pos : pos + sl]), n * BLOCK))
            pos += sl
        if pos != len(rec):
            raise RerfFormatError(f"rerf-reference: frame {first + i}: {len(rec) - pos} trailing bytes")
        assert params is not None
        prev = _reconstruct(levels, steps, mask, params, pred, shape)
        yield first + i, "intra" if ftype == FRAME_INTRA else "residual", _frame_of(prev)
    if f.read(1):
        raise RerfFormatError("rerf-reference: trailing data after the last frame")
