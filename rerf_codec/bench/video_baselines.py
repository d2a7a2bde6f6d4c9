"""2D-video baselines: a grid sequence packed into 2D atlases and coded by a stock video codec.

What a user would try first, and what ReRF's successors do (VideoRF: occupied blocks through a
mapping table into H.264/HEVC; TeTriRF: tiled planes as 12-bit gray through libx265). A
baseline is ``CODEC-PACKING``, e.g. ``x265-blocks`` (codecs in
:mod:`rerf_codec.bench.ffmpeg_codecs`). Per setting two real files are written and both count:
the video's raw bitstream and a *layout* file holding every piece of side information needed
to invert the packing. Nothing else is needed to decode: :func:`decode_sequence` reads the
layout file, decodes the video with ffmpeg and unpacks the grids.

**Packings** (the atlas size is fixed for the whole sequence, as a video needs):

* ``blocks`` (VideoRF-style mapping table): per GOF the *union* of the 8³ blocks occupied in
  any of its frames (rerf's occupancy threshold) gets one slot each, in raster (x, y, z) order;
  every frame of the GOF puts block b in the same slot, so the tiles stay still within a GOF
  and the codec's inter prediction sees the block's own change, not a reshuffle. A block
  becomes a 16×32 tile: its eight z-slices (8×8, rows x, columns y) laid out 2 down × 4
  across. Slots fill each channel's mosaic row by row, ``tiles_per_row ≈ √(slots/2)`` so the
  mosaic is near square; mosaics are sized for the largest GOF. The mapping table is the
  union block mask (1 bit per block, zstd).
* ``slices`` (TeTriRF-style plain tiling): every z-slice of the grid (rows x, columns y) tiled
  into a near-square mosaic per channel. Voxels outside the GOF's union of occupied blocks are
  set to the fill value before packing (and restored exactly after decoding from the same
  union mask, also stored), so empty space costs the codec nothing and the quantiser range
  covers occupied voxels only.

Channels (density, then the C features) are separate mosaics side by side in one monochrome
picture (``ceil(√(1+C))`` mosaics across); unused picture area is the mid-grey code.

**Quantiser** (per GOF, per channel k): ``lo_k``, ``hi_k`` = min, max of the channel over the
union-occupied voxels of the GOF's frames; ``code = clip(round((v − lo) · M / (hi − lo)), 0,
M)`` with ``M = 2^bits − 1`` (bits = the codec's sample depth: 12 x265, 10 svt-av1 and vvenc,
8 x264); decoded ``v = lo + code · (hi − lo) / M``. Through a lossless codec the error is at most
``(hi − lo) / (2M)`` per voxel. Per-GOF ranges (not per-frame) keep a value's code the same from
frame to frame, which inter prediction needs. Voxels outside the union get ``fill_k``, the mean
of the channel over the GOF's non-union voxels (as rerf's own decoder fills empty blocks).

**Layout file**: a 56-byte little-endian header (magic ``RVBL``, version, packing, bit depth,
codec, grid shape, channels, frames, GOF, picture and mosaic geometry), then one zstd frame
(level 19) holding per GOF the packed union mask and ``lo, hi, fill`` (float32) per channel.
"""

from __future__ import annotations

import math
import os
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from rerf_codec.bench.ffmpeg_codecs import VIDEO_CODECS, VideoCodec, decode_video, encode_video
from rerf_codec.codec.occupancy import occupancy_mask
from rerf_codec.errors import RerfError
from rerf_codec.grids import GridFrame

__all__ = [
    "BASELINE_NAMES",
    "DEFAULT_BASELINES",
    "PACKINGS",
    "Layout",
    "VideoEncodeReport",
    "decode_sequence",
    "encode_sequence",
    "make_layout",
    "pack_frame",
    "parse_baseline",
    "quantiser_step",
    "read_layout",
    "unpack_frame",
    "write_layout",
]

B = 8
PACKINGS = ("blocks", "slices")
BASELINE_NAMES = tuple(f"{c}-{p}" for c in VIDEO_CODECS for p in PACKINGS)
DEFAULT_BASELINES = ("x265-blocks", "x265-slices", "svt-av1-blocks", "vvenc-blocks", "x264-blocks")
TILE_H, TILE_W = 16, 32
PICTURE_ALIGN = 16
PICTURE_MIN = 64
MAGIC = b"RVBL"
VERSION = 1
_HEADER = struct.Struct("<4sBBBB3IHH2I2I4I")
_CODEC_IDS = {name: i for i, name in enumerate(VIDEO_CODECS)}


def parse_baseline(name: str) -> tuple[VideoCodec, str]:
    """``x265-blocks`` → (the x265 codec, ``blocks``); RerfError for an unknown name."""
    codec, _, packing = name.rpartition("-")
    if codec not in VIDEO_CODECS or packing not in PACKINGS:
        raise RerfError(f"unknown video baseline {name!r} (choose from {', '.join(BASELINE_NAMES)})")
    return VIDEO_CODECS[codec], packing


@dataclass(frozen=True)
class GofInfo:
    """Side information of one GOF: the union block mask and per-channel lo, hi, fill."""

    mask: np.ndarray
    """bool (bx, by, bz)."""
    lo: np.ndarray
    hi: np.ndarray
    fill: np.ndarray


@dataclass(frozen=True)
class Layout:
    """Everything needed to invert the packing (the layout file's content)."""

    packing: str
    codec: str
    bit_depth: int
    grid_shape: tuple[int, int, int]
    channels: int
    num_frames: int
    gof: int
    width: int
    height: int
    mosaic_h: int
    mosaic_w: int
    cells_across: int
    """Tiles (blocks) or slices per mosaic row."""
    mosaics_across: int
    gofs: tuple[GofInfo, ...]

    @property
    def blocks_shape(self) -> tuple[int, int, int]:
        return tuple(-(-s // B) for s in self.grid_shape)  # type: ignore[return-value]

    @property
    def max_code(self) -> int:
        return (1 << self.bit_depth) - 1

    def gof_of(self, frame: int) -> GofInfo:
        return self.gofs[frame // self.gof]


def quantiser_step(layout: Layout, gof: int, channel: int) -> float:
    """Decoded value spacing of one channel in one GOF (the max lossless error is half of it)."""
    g = layout.gofs[gof]
    return float(g.hi[channel] - g.lo[channel]) / layout.max_code


# --------------------------------------------------------------------------- layout


def _align(n: int) -> int:
    return max(PICTURE_MIN, -(-n // PICTURE_ALIGN) * PICTURE_ALIGN)


def _voxel_mask(mask: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    full = np.repeat(np.repeat(np.repeat(mask, B, 0), B, 1), B, 2)
    return full[: shape[0], : shape[1], : shape[2]]


def _channel(frame: GridFrame, k: int) -> np.ndarray:
    return frame.density if k == 0 else frame.features[k - 1]


def _gof_info(frames: Sequence[GridFrame], threshold: float) -> GofInfo:
    mask = np.zeros(occupancy_mask(frames[0].density, threshold).shape, dtype=bool)
    for f in frames:
        mask |= occupancy_mask(f.density, threshold)
    vox = _voxel_mask(mask, frames[0].density.shape)
    n_ch = 1 + frames[0].features.shape[0]
    lo, hi, fill = (np.zeros(n_ch, dtype=np.float32) for _ in range(3))
    any_occ, any_empty = bool(vox.any()), not bool(vox.all())
    for k in range(n_ch):
        vals = [_channel(f, k) for f in frames]
        if any_occ:
            lo[k] = min(float(v[vox].min()) for v in vals)
            hi[k] = max(float(v[vox].max()) for v in vals)
        if any_empty:
            fill[k] = float(np.mean([float(v[~vox].mean()) for v in vals]))
    return GofInfo(mask, lo, hi, fill)


def make_layout(frames: Sequence[GridFrame], threshold: float, codec: VideoCodec, packing: str,
                gof: int) -> Layout:
    """The layout of a sequence: per-GOF side info and the picture geometry (fixed for the video)."""
    if packing not in PACKINGS:
        raise RerfError(f"unknown packing {packing!r} (choose from {', '.join(PACKINGS)})")
    if not frames:
        raise RerfError("no frames to pack")
    if gof < 1:
        raise RerfError(f"GOF must be >= 1, got {gof}")
    x, y, z = (int(s) for s in frames[0].density.shape)
    n_ch = 1 + int(frames[0].features.shape[0])
    gofs = tuple(_gof_info(frames[i: i + gof], threshold) for i in range(0, len(frames), gof))
    if packing == "blocks":
        slots = max(1, max(int(g.mask.sum()) for g in gofs))
        across = max(1, math.ceil(math.sqrt(slots / 2)))
        mh, mw = TILE_H * -(-slots // across), TILE_W * across
    else:
        across = max(1, round(math.sqrt(z * x / y)))
        mh, mw = x * -(-z // across), y * across
    m_across = math.ceil(math.sqrt(n_ch))
    m_down = -(-n_ch // m_across)
    return Layout(packing, codec.name, codec.bit_depth, (x, y, z), n_ch, len(frames), gof,
                  _align(mw * m_across), _align(mh * m_down), mh, mw, across, m_across, gofs)


def write_layout(layout: Layout, path: str) -> tuple[int, int]:
    """Write the layout file; returns (header bytes, compressed body bytes)."""
    import zstandard

    x, y, z = layout.grid_shape
    header = _HEADER.pack(MAGIC, VERSION, PACKINGS.index(layout.packing), layout.bit_depth,
                          _CODEC_IDS[layout.codec], x, y, z, layout.channels, 0, layout.num_frames, layout.gof,
                          layout.width, layout.height, layout.mosaic_h, layout.mosaic_w, layout.cells_across,
                          layout.mosaics_across)
    body = b"".join(np.packbits(g.mask.ravel()).tobytes()
                    + np.stack([g.lo, g.hi, g.fill]).astype("<f4").tobytes() for g in layout.gofs)
    packed = zstandard.ZstdCompressor(level=19).compress(body)
    with open(path, "wb") as f:
        f.write(header)
        f.write(packed)
    return len(header), len(packed)


def read_layout(path: str) -> Layout:
    """Parse a layout file (RerfError naming the file if it is not one)."""
    import zstandard

    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _HEADER.size or data[:4] != MAGIC:
        raise RerfError(f"{path}: not a video-baseline layout file")
    (_m, version, packing, bits, codec_id, x, y, z, n_ch, _pad, frames, gof, width, height,
     mh, mw, across, m_across) = _HEADER.unpack_from(data)
    if version != VERSION or packing >= len(PACKINGS) or codec_id >= len(VIDEO_CODECS) or gof < 1 or frames < 1:
        raise RerfError(f"{path}: unsupported or damaged layout header")
    try:
        body = zstandard.ZstdDecompressor().decompress(data[_HEADER.size:])
    except zstandard.ZstdError as exc:
        raise RerfError(f"{path}: damaged layout body ({exc})") from None
    bshape = tuple(-(-s // B) for s in (x, y, z))
    nb = int(np.prod(bshape))
    mask_bytes = -(-nb // 8)
    per = mask_bytes + 3 * n_ch * 4
    n_gofs = -(-frames // gof)
    if len(body) != per * n_gofs:
        raise RerfError(f"{path}: layout body has {len(body)} bytes, expected {per * n_gofs}")
    gofs = []
    for i in range(n_gofs):
        chunk = body[i * per: (i + 1) * per]
        mask = np.unpackbits(np.frombuffer(chunk[:mask_bytes], np.uint8))[:nb].astype(bool).reshape(bshape)
        lo, hi, fill = np.frombuffer(chunk[mask_bytes:], "<f4").reshape(3, n_ch).astype(np.float32)
        gofs.append(GofInfo(mask, lo, hi, fill))
    return Layout(PACKINGS[packing], list(VIDEO_CODECS)[codec_id], bits, (x, y, z), n_ch, frames, gof,
                  width, height, mh, mw, across, m_across, tuple(gofs))


# --------------------------------------------------------------------------- packing


def _quantise(v: np.ndarray, lo: float, hi: float, m: int) -> np.ndarray:
    scale = m / (hi - lo) if hi > lo else 0.0
    return np.clip(np.rint((v.astype(np.float64) - lo) * scale), 0, m).astype(np.uint16)


def _dequantise(code: np.ndarray, lo: float, hi: float, m: int) -> np.ndarray:
    step = (hi - lo) / m if hi > lo else 0.0
    return (lo + code.astype(np.float64) * step).astype(np.float32)


def _mosaic_slot(layout: Layout, k: int) -> tuple[slice, slice]:
    r, c = divmod(k, layout.mosaics_across)
    return (slice(r * layout.mosaic_h, (r + 1) * layout.mosaic_h),
            slice(c * layout.mosaic_w, (c + 1) * layout.mosaic_w))


def _cells_grid(cells: np.ndarray, across: int, down: int, mid: int) -> np.ndarray:
    """(n, h, w) cells → (down·h, across·w) mosaic, row by row, padding with ``mid``."""
    n, h, w = cells.shape
    full = np.full((down * across, h, w), mid, dtype=cells.dtype)
    full[:n] = cells
    return full.reshape(down, across, h, w).transpose(0, 2, 1, 3).reshape(down * h, across * w)


def _grid_cells(mosaic: np.ndarray, across: int, h: int, w: int, n: int) -> np.ndarray:
    down = mosaic.shape[0] // h
    return mosaic[: down * h, : across * w].reshape(down, h, across, w).transpose(0, 2, 1, 3).reshape(-1, h, w)[:n]


def _padded(v: np.ndarray, fill: float) -> np.ndarray:
    x, y, z = v.shape
    out = np.full((-(-x // B) * B, -(-y // B) * B, -(-z // B) * B), fill, dtype=v.dtype)
    out[:x, :y, :z] = v
    return out


def pack_frame(layout: Layout, index: int, frame: GridFrame) -> np.ndarray:
    """One grid frame → one (height, width) uint16 picture of codes."""
    g = layout.gof_of(index)
    m, mid = layout.max_code, 1 << (layout.bit_depth - 1)
    pic = np.full((layout.height, layout.width), mid, dtype=np.uint16)
    vox = _voxel_mask(g.mask, layout.grid_shape)
    blocks = np.argwhere(g.mask)
    mh, across = layout.mosaic_h, layout.cells_across
    for k in range(layout.channels):
        v = _channel(frame, k)
        lo, hi, fill = float(g.lo[k]), float(g.hi[k]), float(g.fill[k])
        if layout.packing == "blocks":
            p = _padded(v, fill)
            cubes = np.stack([p[bx * B:(bx + 1) * B, by * B:(by + 1) * B, bz * B:(bz + 1) * B]
                              for bx, by, bz in blocks]) if len(blocks) else np.zeros((0, B, B, B), v.dtype)
            # (n, x, y, z) with z = 4·zr + zc → (n, zr·8 + x, zc·8 + y)
            tiles = cubes.reshape(-1, B, B, 2, 4).transpose(0, 3, 1, 4, 2).reshape(-1, TILE_H, TILE_W)
            mosaic = _cells_grid(_quantise(tiles, lo, hi, m), across, mh // TILE_H, mid)
        else:
            vv = np.where(vox, v, np.float32(fill))
            slices = vv.transpose(2, 0, 1)  # (z, x, y)
            mosaic = _cells_grid(_quantise(slices, lo, hi, m), across, mh // v.shape[0], mid)
        rs, cs = _mosaic_slot(layout, k)
        pic[rs, cs] = mosaic
    return pic


def unpack_frame(layout: Layout, index: int, picture: np.ndarray) -> GridFrame:
    """Inverse of :func:`pack_frame` (from the layout and the decoded picture alone)."""
    g = layout.gof_of(index)
    m = layout.max_code
    x, y, z = layout.grid_shape
    vox = _voxel_mask(g.mask, layout.grid_shape)
    blocks = np.argwhere(g.mask)
    across = layout.cells_across
    out = np.empty((layout.channels, x, y, z), dtype=np.float32)
    for k in range(layout.channels):
        lo, hi, fill = float(g.lo[k]), float(g.hi[k]), float(g.fill[k])
        rs, cs = _mosaic_slot(layout, k)
        mosaic = picture[rs, cs]
        if layout.packing == "blocks":
            p = np.full((-(-x // B) * B, -(-y // B) * B, -(-z // B) * B), fill, dtype=np.float32)
            if len(blocks):
                tiles = _grid_cells(mosaic, across, TILE_H, TILE_W, len(blocks))
                cubes = _dequantise(tiles, lo, hi, m).reshape(-1, 2, B, 4, B).transpose(0, 2, 4, 1, 3)
                cubes = cubes.reshape(-1, B, B, B)
                for cube, (bx, by, bz) in zip(cubes, blocks, strict=True):
                    p[bx * B:(bx + 1) * B, by * B:(by + 1) * B, bz * B:(bz + 1) * B] = cube
            out[k] = p[:x, :y, :z]
        else:
            slices = _grid_cells(mosaic, across, x, y, z)
            v = _dequantise(slices, lo, hi, m).transpose(1, 2, 0)
            out[k] = np.where(vox, v, np.float32(fill))
    return GridFrame(density=out[0], features=out[1:])


# --------------------------------------------------------------------------- sequence


@dataclass
class VideoEncodeReport:
    """What one setting wrote: two real files, their bytes, and the time it took."""

    video_path: str
    layout_path: str
    video_bytes: int
    layout_header_bytes: int
    layout_body_bytes: int
    encode_seconds: float
    """Packing + layout file + ffmpeg encode, wall time."""
    layout: Layout

    @property
    def layout_bytes(self) -> int:
        return self.layout_header_bytes + self.layout_body_bytes

    @property
    def file_bytes(self) -> int:
        return self.video_bytes + self.layout_bytes


def encode_sequence(frames: Sequence[GridFrame], threshold: float, baseline: str, setting: str, gof: int,
                    out_prefix: str, fps: float = 30.0, exe: str | None = None) -> VideoEncodeReport:
    """Pack and encode ``frames`` with one baseline at one setting: ``out_prefix.<ext>`` + ``.layout``."""
    codec, packing = parse_baseline(baseline)
    codec.check_setting(setting)
    t0 = time.perf_counter()
    layout = make_layout(frames, threshold, codec, packing, gof)
    layout_path = out_prefix + ".layout"
    video_path = f"{out_prefix}.{codec.extension}"
    hdr, body = write_layout(layout, layout_path)
    pictures = (pack_frame(layout, i, f) for i, f in enumerate(frames))
    encode_video(codec, pictures, layout.width, layout.height, setting, gof, video_path, fps=fps, exe=exe)
    seconds = time.perf_counter() - t0
    if os.path.getsize(layout_path) != hdr + body:
        raise RerfError(f"{layout_path}: size differs from what was written")
    return VideoEncodeReport(video_path, layout_path, os.path.getsize(video_path), hdr, body, seconds, layout)


def decode_sequence(video_path: str, layout_path: str, exe: str | None = None) -> Iterator[GridFrame]:
    """Decode one setting's two files back to grid frames (no other state)."""
    layout = read_layout(layout_path)
    codec = VIDEO_CODECS[layout.codec]
    pictures = decode_video(codec, video_path, layout.width, layout.height, layout.num_frames, exe=exe)
    for i, pic in enumerate(pictures):
        yield unpack_frame(layout, i, pic)
