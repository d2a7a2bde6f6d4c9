"""Rate–distortion bench: rerf against its baselines on one grid sequence (``rerf bench-rate-distortion``).

For every codec and quality the sequence (held in memory) is encoded to a **real file**
and decoded back; the figures per setting are:

* **bytes**: ``os.path.getsize`` of the file / frames, split into keyframe and residual
  frames and into mask / motion / coefficients / side info / header / container (the
  raw-float32 size is computed, ``X·Y·Z·(1+C)·4`` per frame, not written);
* **grid PSNR** (:func:`rerf_codec.metrics.grid_psnr`): over the voxels of the
  original frame's occupied 8³ blocks (rerf's occupancy threshold, the same for every
  codec), peak = max − min of the original there; *feature* PSNR over all feature
  channels together, *density* PSNR on the raw density, and the headline *grid* PSNR
  over all channels (:func:`combined_psnr`); each the mean over frames (and worst);
* **speed**: encode frames/s (wall time of the encode call writing the file) and decode
  frames/s (wall time inside the decoder's frame iterator only; quality measurement and
  rendering excluded); one run each — the bench is about size, speed figures are a guide;
* **rendered** (``dataset``; needs a decoder MLP in the sequence and
  ``rerf_codec.field``): PSNR/SSIM (:mod:`rerf_codec.metrics`) of renders of the
  decoded grids on the dataset's test cameras against the ground-truth images and
  against renders of the uncompressed grids, on ``render_frames`` frames spread evenly.

Codecs (all on the same grids in the same run): ``rerf`` (the defaults at each quality,
``--gof``), ``rerf-intra`` (``--gof 1``), ``rerf-nomotion`` (``--motion zero``),
``rerf-reference`` (:mod:`rerf_codec.reference`, swept over its own IJG qualities),
``float16-zstd`` (float16 + zstd level 19) and ``raw-float32``; and the 2D-video baselines
``CODEC-PACKING`` (:mod:`rerf_codec.bench.video_baselines`: the grids packed into pictures and
coded by x265 / SVT-AV1 / vvenc / x264 of the bundled ffmpeg, each over its sweep; bytes = video
bitstream + layout file). A video baseline whose encoder is missing is skipped with one line, as
is one setting ffmpeg fails on (``skipped`` in results.json).
BD-rate (:mod:`rerf_codec.bench.bdrate`) of every curve against ``rerf-reference``, and of rerf
against each video baseline and the strongest of them (``bd_rate_vs_video``).

Outputs (a directory, written atomically): ``results.json`` (CompressAI-style: one
``{"name", "description", "results": {...}}`` entry per codec, plus the settings, the
machine, BD-rates and every point in full), ``results.csv``, ``rd.png`` and
``results.md``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import io
import math
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rerf_codec.atomic import AtomicDirectory
from rerf_codec.bench.bdrate import bd_rate
from rerf_codec.bench.report import to_json
from rerf_codec.bench.video_baselines import BASELINE_NAMES as VIDEO_BASELINES
from rerf_codec.bench.video_baselines import DEFAULT_BASELINES as DEFAULT_VIDEO_BASELINES
from rerf_codec.codec.decoder import Decoder
from rerf_codec.codec.encoder import DEFAULT_GOF, DEFAULT_QUALITY, EncoderConfig, encode_frames
from rerf_codec.codec.occupancy import default_threshold, occupancy_mask
from rerf_codec.errors import RerfError, RerfUsageError
from rerf_codec.grids import GridFrame, update_frame_hash
from rerf_codec.gridseq import iter_frames_with_motion, read_meta
from rerf_codec.metrics import grid_psnr, psnr, ssim
from rerf_codec.reference import REFERENCE_GOF, ReferenceConfig, decode_reference, encode_reference

__all__ = [
    "ANCHOR",
    "BASELINES",
    "CODECS",
    "DEFAULT_QUALITIES",
    "DEFAULT_REFERENCE_QUALITIES",
    "VIDEO_BASELINES",
    "RDSettings",
    "format_markdown",
    "format_summary",
    "parse_baselines",
    "parse_video_sweeps",
    "run_rate_distortion",
]

CODECS = ("rerf", "rerf-intra", "rerf-nomotion", "rerf-reference", "float16-zstd", "raw-float32")
BASELINES = CODECS[1:]
ANCHOR = "rerf-reference"
CURVE_CODECS = ("rerf", "rerf-intra", "rerf-nomotion", "rerf-reference")
DEFAULT_QUALITIES = (55, 65, 75, 85, 95)
DEFAULT_REFERENCE_QUALITIES = (50, 75, 90, 95, 98)
ZSTD_LEVEL = 19
MAX_IN_MEMORY = 8 << 30
"""The bench holds the whole sequence in memory; refuse beyond this many bytes."""
METRICS = ("grid_psnr_db", "feature_psnr_db", "density_psnr_db", "rendered_psnr_db", "rendered_psnr_vs_uncompressed_db")
RESULTS_FORMAT = "rerf-rd-results"


@dataclass(frozen=True)
class RDSettings:
    """What one bench run measures (every field is recorded in ``results.json``)."""

    qualities: tuple[int, ...] = DEFAULT_QUALITIES
    """rerf qualities (rerf, rerf-intra, rerf-nomotion)."""
    reference_qualities: tuple[int, ...] = DEFAULT_REFERENCE_QUALITIES
    """IJG qualities of rerf-reference (its scale differs from rerf's)."""
    gof: int = DEFAULT_GOF
    """GOF of rerf and rerf-nomotion (rerf-reference always uses the paper's 20)."""
    baselines: tuple[str, ...] = BASELINES
    """Which baselines to run besides rerf."""
    zstd_level: int = ZSTD_LEVEL
    render_frames: int = 4
    """Frames rendered for rendered metrics (evenly spaced), with a dataset."""
    default_quality: int = DEFAULT_QUALITY

    video_sweeps: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Per video codec (``x265``, ``svt-av1``, ``vvenc``, ``x264``) the settings to sweep, replacing
    its default sweep (:mod:`rerf_codec.bench.ffmpeg_codecs`)."""

    def video_sweep(self, codec: str) -> tuple[str, ...]:
        from rerf_codec.bench.ffmpeg_codecs import VIDEO_CODECS

        return dict(self.video_sweeps).get(codec, VIDEO_CODECS[codec].default_sweep)

    def validate(self) -> None:
        from rerf_codec.bench.ffmpeg_codecs import VIDEO_CODECS

        for name, qs in (("--qualities", self.qualities), ("--reference-qualities", self.reference_qualities)):
            if not qs:
                raise RerfUsageError(f"{name} must list at least one quality")
            bad = [q for q in qs if not 1 <= q <= 100]
            if bad:
                raise RerfUsageError(f"{name}: qualities must be in 1..100, got {bad[0]}")
        unknown = [b for b in self.baselines if b not in BASELINES and b not in VIDEO_BASELINES]
        if unknown:
            raise RerfUsageError(f"--baselines: unknown baseline {unknown[0]!r} (choose from "
                                 f"{', '.join(BASELINES + VIDEO_BASELINES)}, or 'video' for "
                                 f"{','.join(DEFAULT_VIDEO_BASELINES)})")
        for codec, sweep in self.video_sweeps:
            if codec not in VIDEO_CODECS:
                raise RerfUsageError(f"--video-sweep: unknown video codec {codec!r} (choose from {', '.join(VIDEO_CODECS)})")
            if not sweep:
                raise RerfUsageError(f"--video-sweep {codec}: list at least one setting")
            for token in sweep:
                try:
                    VIDEO_CODECS[codec].check_setting(token)
                except RerfError as exc:
                    raise RerfUsageError(f"--video-sweep: {exc}") from None
        if not 1 <= self.gof <= 4096:
            raise RerfUsageError(f"--gof must be in 1..4096, got {self.gof}")
        if not 1 <= self.zstd_level <= 22:
            raise RerfUsageError(f"zstd level must be in 1..22, got {self.zstd_level}")
        if self.render_frames < 1:
            raise RerfUsageError("--render-frames must be >= 1")


@dataclass
class _Point:
    """One encoded + decoded setting."""

    codec: str
    quality: int | None
    file_bytes: int
    frames: int
    raw_bytes: int
    bytes: dict[str, int]
    frame_bytes: list[tuple[str, int]]
    encode_seconds: float
    decode_seconds: float
    feature_psnr: list[float | None] = field(default_factory=list)
    density_psnr: list[float | None] = field(default_factory=list)
    grid_psnr: list[float | None] = field(default_factory=list)
    bit_exact: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    rendered: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        intra = [b for t, b in self.frame_bytes if t == "intra"]
        res = [b for t, b in self.frame_bytes if t == "residual"]
        return {
            "codec": self.codec,
            "quality": self.quality,
            "file_bytes": self.file_bytes,
            "frames": self.frames,
            "bytes_per_frame": self.file_bytes / self.frames,
            "ratio_vs_raw_float32": self.raw_bytes / self.file_bytes,
            "keyframes": len(intra),
            "keyframe_bytes_mean": float(np.mean(intra)) if intra else None,
            "residual_frames": len(res),
            "residual_frame_bytes_mean": float(np.mean(res)) if res else None,
            "bytes": dict(self.bytes),
            "grid_psnr_db": _mean(self.grid_psnr),
            "grid_psnr_db_min": _min(self.grid_psnr),
            "feature_psnr_db": _mean(self.feature_psnr),
            "feature_psnr_db_min": _min(self.feature_psnr),
            "density_psnr_db": _mean(self.density_psnr),
            "density_psnr_db_min": _min(self.density_psnr),
            "encode_seconds": self.encode_seconds,
            "decode_seconds": self.decode_seconds,
            "encode_fps": self.frames / self.encode_seconds if self.encode_seconds > 0 else None,
            "decode_fps": self.frames / self.decode_seconds if self.decode_seconds > 0 else None,
            "bit_exact": self.bit_exact,
            **self.extra,
            "rendered": self.rendered,
            "rendered_psnr_db": (self.rendered or {}).get("psnr_db"),
            "rendered_psnr_vs_uncompressed_db": (self.rendered or {}).get("psnr_vs_uncompressed_db"),
        }


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the finite values; ``inf`` when every known value is (lossless), None if none."""
    known = [v for v in values if v is not None]
    finite = [v for v in known if math.isfinite(v)]
    if finite:
        return float(np.mean(finite))
    return math.inf if known else None


def _min(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(min(known)) if known else None


# --------------------------------------------------------------------------- input


class _Sequence:
    """The grid sequence in memory: full frames and the trainer's motion (None when stored full)."""

    def __init__(self, seq_dir: str | Path) -> None:
        self.path = Path(seq_dir)
        self.meta = read_meta(seq_dir)
        x, y, z = self.meta.grid_shape
        self.channels = 1 + self.meta.feature_channels
        self.frame_bytes = x * y * z * self.channels * 4
        total = self.frame_bytes * self.meta.num_frames
        if total > MAX_IN_MEMORY:
            raise RerfUsageError(
                f"{seq_dir}: {self.meta.num_frames} frames of {x}×{y}×{z}×{self.channels} float32 are "
                f"{total / 2**30:.1f} GiB; the bench holds the sequence in memory (limit {MAX_IN_MEMORY >> 30} GiB)"
            )
        self.frames: list[GridFrame] = []
        self.motion: list[np.ndarray | None] = []
        for _idx, fr, mv in iter_frames_with_motion(seq_dir, self.meta):
            self.frames.append(fr)
            self.motion.append(mv)
        self.threshold = default_threshold(self.meta.density_shift)
        self.voxels = [_voxel_mask(occupancy_mask(f.density, self.threshold), f.density.shape) for f in self.frames]

    def items(self) -> Iterator[tuple[int, GridFrame, np.ndarray | None]]:
        return zip(self.meta.frame_indices, self.frames, self.motion, strict=True)  # type: ignore[return-value]

    def quality(self, i: int, decoded: GridFrame) -> tuple[float | None, float | None, float | None]:
        """(feature, density, grid) PSNR of frame ``i`` (see :func:`combined_psnr`)."""
        o, vm = self.frames[i], self.voxels[i]
        fp = grid_psnr(o.features, decoded.features, vm)
        dp = grid_psnr(o.density, decoded.density, vm)
        return fp, dp, combined_psnr(fp, dp, self.meta.feature_channels)


def combined_psnr(feature_db: float | None, density_db: float | None, feature_channels: int) -> float | None:
    """Grid PSNR over all channels: each group's MSE relative to its own peak², weighted by
    channel count (density 1, features C): ``−10 log10((m_d + C m_f) / (1 + C))``.

    Why: one number for the whole grid that neither group can buy at the other's expense
    (a codec spending its bytes on density alone would win a density-only BD-rate).
    """
    if feature_db is None or density_db is None:
        return None
    m = (10.0 ** (-density_db / 10.0) + feature_channels * 10.0 ** (-feature_db / 10.0)) / (1 + feature_channels)
    return math.inf if m == 0.0 else -10.0 * math.log10(m)


def _voxel_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    full = np.repeat(np.repeat(np.repeat(mask, 8, 0), 8, 1), 8, 2)
    return full[: shape[0], : shape[1], : shape[2]]


# --------------------------------------------------------------------------- rendered metrics


class _Renderer:
    """Rendered PSNR/SSIM of decoded grids on the dataset's test cameras (the --dataset path).

    Checked up front, before any encoding: the sequence must carry a decoder MLP and
    ``rerf_codec.field.RadianceField`` must be importable; otherwise RerfUsageError.
    """

    def __init__(self, seq: _Sequence, dataset: str | Path, render_frames: int) -> None:
        meta = seq.meta
        if meta.decoder is None:
            raise RerfUsageError(
                f"{seq.path}: rendered metrics need the sequence's decoder MLP, but sequence.json has \"decoder\": null "
                "(drop --dataset for grid-domain metrics only)"
            )
        try:
            from rerf_codec.field import RadianceField  # type: ignore[attr-defined]
        except ImportError as exc:
            raise RerfUsageError(
                f"rendered metrics need the renderer (rerf_codec.field.RadianceField), which cannot be imported: {exc}"
            ) from None
        from rerf_codec.datasets.format import open_dataset
        from rerf_codec.gridseq import read_decoder

        self.field_cls = RadianceField
        self.seq_meta = meta
        self.decoder_arrays = read_decoder(seq.path, meta)
        self.data = open_dataset(dataset)
        self.cameras = list(self.data.meta.test_cameras)
        if not self.cameras:
            raise RerfUsageError(f"{dataset}: the dataset has no test cameras")
        common = [f for f in meta.frame_indices if f in self.data.meta.frame_indices]
        if not common:
            raise RerfUsageError(f"{dataset}: no frame numbers in common with the sequence {seq.path}")
        pick = np.unique(np.round(np.linspace(0, len(common) - 1, min(render_frames, len(common)))).astype(int))
        self.frames = [common[i] for i in pick]
        self.background = np.asarray(self.data.meta.background, dtype=np.float32)
        self.gt: dict[tuple[int, str], np.ndarray] = {}
        for f in self.frames:
            for cam in self.cameras:
                rgba = self.data.load_image(f, cam)
                self.gt[(f, cam.name)] = rgba[..., :3] * rgba[..., 3:] + self.background * (1.0 - rgba[..., 3:])
        first = meta.first_frame
        self.uncompressed: dict[tuple[int, str], np.ndarray] = {}
        for f in self.frames:
            imgs = self._render(seq.frames[f - first])
            for cam, img in zip(self.cameras, imgs, strict=True):
                self.uncompressed[(f, cam.name)] = img

    def _render(self, frame: GridFrame) -> list[np.ndarray]:
        rf = self.field_cls.from_arrays(
            frame.density, frame.features, self.seq_meta, self.decoder_arrays, device="cpu"
        )
        return [np.asarray(rf.render_camera(cam), dtype=np.float32) for cam in self.cameras]  # background: SEQ's

    def wants(self, index: int) -> bool:
        return index in self.frames

    def measure(self, index: int, frame: GridFrame) -> list[dict[str, float]]:
        out = []
        for cam, img in zip(self.cameras, self._render(frame), strict=True):
            gt = self.gt[(index, cam.name)]
            unc = self.uncompressed[(index, cam.name)]
            out.append({
                "psnr_db": psnr(img, gt), "ssim": ssim(img, gt),
                "psnr_vs_uncompressed_db": psnr(img, unc), "ssim_vs_uncompressed": ssim(img, unc),
            })
        return out

    def uncompressed_quality(self) -> dict[str, Any]:
        vals = [
            {"psnr_db": psnr(self.uncompressed[k], self.gt[k]), "ssim": ssim(self.uncompressed[k], self.gt[k])}
            for k in self.gt
        ]
        return {"psnr_db": _mean([v["psnr_db"] for v in vals]), "ssim": float(np.mean([v["ssim"] for v in vals])),
                "frames": self.frames, "cameras": [c.name for c in self.cameras]}


def _summarise_rendered(rows: list[dict[str, float]]) -> dict[str, Any] | None:
    if not rows:
        return None
    return {k: _mean([r[k] for r in rows]) for k in rows[0]} | {"images": len(rows)}


# --------------------------------------------------------------------------- codecs


def _timed_decode(it: Iterator[Any]) -> Iterator[tuple[Any, float]]:
    """Yield each item of ``it`` with the seconds its ``next`` took."""
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        yield item, time.perf_counter() - t0


def _measure_decoded(
    seq: _Sequence, point: _Point, decoded: Iterable[tuple[int, GridFrame]], renderer: _Renderer | None
) -> str:
    """PSNR of every decoded frame (and renders); returns the SHA-256 of the decoded grids."""
    sha = hashlib.sha256()
    rows: list[dict[str, float]] = []
    first = seq.meta.first_frame
    for idx, frame in decoded:
        update_frame_hash(sha, frame)
        fp, dp, gp = seq.quality(idx - first, frame)
        point.feature_psnr.append(fp)
        point.density_psnr.append(dp)
        point.grid_psnr.append(gp)
        if renderer is not None and renderer.wants(idx):
            rows.extend(renderer.measure(idx, frame))
    point.rendered = _summarise_rendered(rows)
    return sha.hexdigest()


def _run_rerf(seq: _Sequence, path: str, codec: str, quality: int, gof: int,
              renderer: _Renderer | None) -> _Point:
    cfg = {
        "rerf": EncoderConfig(quality=quality, gof=gof),
        "rerf-intra": EncoderConfig(quality=quality, gof=1),
        "rerf-nomotion": EncoderConfig(quality=quality, gof=gof, motion="zero"),
    }[codec]
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        rep = encode_frames(seq.meta, seq.items(), f, cfg, output_name=path)
    enc = time.perf_counter() - t0
    size = os.path.getsize(path)
    if size != rep.file_bytes:
        raise RerfError(f"encoder reported {rep.file_bytes} bytes, the file has {size}")
    cats = {k: sum(fr.bytes.get(k, 0) for fr in rep.frames) for k in ("mask", "motion", "coefficients", "side_info")}
    cats |= {"header": rep.header_bytes, "container": rep.container_bytes}
    point = _Point(codec, quality, size, seq.meta.num_frames, seq.frame_bytes * seq.meta.num_frames, cats,
                   [(fr.frame_type, fr.total_bytes) for fr in rep.frames], enc, 0.0)
    dec_s = 0.0

    def frames() -> Iterator[tuple[int, GridFrame]]:
        nonlocal dec_s
        with open(path, "rb") as f:
            for sf in Decoder(f).session(reuse_buffers=True):
                dec_s += sf.decode_seconds
                assert sf.frame is not None  # damage raises: nothing is concealed in a bench
                yield sf.index, sf.frame

    sha = _measure_decoded(seq, point, frames(), renderer)
    point.decode_seconds = dec_s
    point.bit_exact = sha == rep.sha256
    return point


def _run_reference(seq: _Sequence, path: str, quality: int, renderer: _Renderer | None) -> _Point:
    cfg = ReferenceConfig(quality=quality, gof=REFERENCE_GOF)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        rep = encode_reference(seq.meta, seq.items(), f, cfg)
    enc = time.perf_counter() - t0
    size = os.path.getsize(path)
    if size != rep.file_bytes:
        raise RerfError(f"rerf-reference reported {rep.file_bytes} bytes, the file has {size}")
    cats = {k: sum(fr.bytes.get(k, 0) for fr in rep.frames) for k in ("mask", "motion", "coefficients", "side_info")}
    cats |= {"header": rep.header_bytes, "container": 0}
    point = _Point(ANCHOR, quality, size, seq.meta.num_frames, seq.frame_bytes * seq.meta.num_frames, cats,
                   [(fr.frame_type, fr.total_bytes) for fr in rep.frames], enc, 0.0,
                   extra={"clipped_levels": sum(fr.clipped_levels for fr in rep.frames)})
    dec_s = 0.0

    def frames() -> Iterator[tuple[int, GridFrame]]:
        nonlocal dec_s
        with open(path, "rb") as f:
            for (idx, _t, fr), s in _timed_decode(decode_reference(f)):
                dec_s += s
                yield idx, fr

    sha = _measure_decoded(seq, point, frames(), renderer)
    point.decode_seconds = dec_s
    point.bit_exact = sha == rep.sha256
    return point


_LEN = struct.Struct("<I")


def _run_zstd(seq: _Sequence, path: str, level: int, renderer: _Renderer | None) -> _Point:
    """float16 + zstd: per frame one zstd frame of density then features as float16, C order."""
    import zstandard

    cctx = zstandard.ZstdCompressor(level=level, threads=2)
    n = seq.meta.num_frames
    payload = 0
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for fr in seq.frames:
            buf = np.concatenate([fr.density[None], fr.features]).astype(np.float16)
            data = cctx.compress(buf.tobytes())
            f.write(_LEN.pack(len(data)))
            f.write(data)
            payload += len(data)
    enc = time.perf_counter() - t0
    size = os.path.getsize(path)
    shape = (seq.channels, *seq.meta.grid_shape)
    point = _Point("float16-zstd", None, size, n, seq.frame_bytes * n,
                   {"mask": 0, "motion": 0, "coefficients": payload, "side_info": 0, "header": 0,
                    "container": size - payload}, [("intra", size // n)] * n, enc, 0.0,
                   extra={"zstd_level": level})
    dctx = zstandard.ZstdDecompressor()
    dec_s = 0.0

    def frames() -> Iterator[tuple[int, GridFrame]]:
        nonlocal dec_s
        with open(path, "rb") as f:
            for idx in seq.meta.frame_indices:
                t = time.perf_counter()
                (ln,) = _LEN.unpack(f.read(_LEN.size))
                arr = np.frombuffer(dctx.decompress(f.read(ln)), dtype=np.float16).reshape(shape).astype(np.float32)
                dec_s += time.perf_counter() - t
                yield idx, GridFrame(density=arr[0], features=arr[1:])

    _measure_decoded(seq, point, frames(), renderer)
    point.decode_seconds = dec_s
    return point


def _run_raw(seq: _Sequence, renderer: _Renderer | None) -> _Point:
    n = seq.meta.num_frames
    raw = seq.frame_bytes * n
    point = _Point("raw-float32", None, raw, n, raw,
                   {"mask": 0, "motion": 0, "coefficients": raw, "side_info": 0, "header": 0, "container": 0},
                   [("intra", seq.frame_bytes)] * n, 0.0, 0.0, extra={"computed_size": True})
    _measure_decoded(seq, point, zip(seq.meta.frame_indices, seq.frames, strict=True), renderer)
    return point


def _missing_video_encoders(settings: RDSettings, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Video baselines whose encoder the bundled ffmpeg lacks: one line each, skipped by name."""
    from rerf_codec.bench.ffmpeg_codecs import missing_encoder
    from rerf_codec.bench.video_baselines import parse_baseline

    out: list[dict[str, Any]] = []
    for name in settings.baselines:
        if name not in VIDEO_BASELINES:
            continue
        reason = missing_encoder(parse_baseline(name)[0])
        if reason is not None:
            say(f"{name}: skipped: {reason}")
            out.append({"name": name, "setting": None, "reason": reason})
    return out


def _run_video(seq: _Sequence, prefix: str, codec: str, setting: str, gof: int,
               renderer: _Renderer | None) -> _Point | str:
    """One video baseline at one setting: two real files (video + layout), decoded back from them alone.

    Returns the one-line reason instead when ffmpeg fails on this setting (e.g. an access unit
    larger than ffmpeg's libvvenc wrapper allocates at QP 0).
    """
    from rerf_codec.bench.ffmpeg_codecs import packet_sizes
    from rerf_codec.bench.video_baselines import decode_sequence, encode_sequence, parse_baseline

    vc, packing = parse_baseline(codec)
    try:
        rep = encode_sequence(seq.frames, seq.threshold, codec, setting, gof, prefix, fps=seq.meta.fps)
        packets = packet_sizes(vc, rep.video_path)
    except RerfError as exc:
        return str(exc)
    size = os.path.getsize(rep.video_path) + os.path.getsize(rep.layout_path)
    if size != rep.file_bytes:
        raise RerfError(f"{codec}: reported {rep.file_bytes} bytes, the files have {size}")
    payload = sum(b for _k, b in packets)
    cats = {"mask": 0, "motion": 0, "coefficients": payload, "side_info": rep.layout_body_bytes,
            "header": rep.layout_header_bytes, "container": rep.video_bytes - payload}
    n = seq.meta.num_frames
    quality = None if not setting.lstrip("-").isdigit() else int(setting)
    lay = rep.layout
    point = _Point(codec, quality, size, n, seq.frame_bytes * n, cats,
                   [("intra" if key else "residual", b) for key, b in packets], rep.encode_seconds, 0.0,
                   extra={"setting": setting if quality is None else f"{vc.rate_control} {setting}",
                          "video_codec": vc.encoder, "pix_fmt": vc.pix_fmt, "bit_depth": vc.bit_depth,
                          "packing": packing, "picture": [lay.width, lay.height],
                          "video_bytes": rep.video_bytes, "layout_bytes": rep.layout_bytes,
                          "slots_max": int(max(g.mask.sum() for g in lay.gofs))})
    dec_s = 0.0

    def frames() -> Iterator[tuple[int, GridFrame]]:
        nonlocal dec_s
        timed = _timed_decode(decode_sequence(rep.video_path, rep.layout_path))
        for idx, (fr, s) in zip(seq.meta.frame_indices, timed, strict=True):
            dec_s += s
            yield idx, fr

    try:
        _measure_decoded(seq, point, frames(), renderer)
    except RerfError as exc:
        return str(exc)
    finally:
        for p in (rep.video_path, rep.layout_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
    point.decode_seconds = dec_s
    return point


def _video_description(name: str) -> str:
    from rerf_codec.bench.video_baselines import parse_baseline

    vc, packing = parse_baseline(name)
    how = ("occupied 8³ blocks as 16×32 tiles in a per-GOF mapping table (VideoRF-style)" if packing == "blocks"
           else "every z-slice tiled, empty space set to a fill value (TeTriRF-style)")
    return (f"{vc.description}; packing: {how}; per-GOF per-channel {vc.bit_depth}-bit linear quantiser, "
            "GOP = GOF; bytes = video bitstream + layout file (mapping table, ranges, header)")


DESCRIPTIONS = {
    "rerf": "rerf with its default settings (GOF {gof}, motion search), swept over --quality",
    "rerf-intra": "rerf intra-only (--gof 1)",
    "rerf-nomotion": "rerf without motion compensation (GOF {gof}, --motion zero)",
    "rerf-reference": (
        "the ReRF paper's codec re-implemented (rerf_codec.reference): 8³ 3D DCT, one JPEG-style table scaled by "
        "IJG quality, baseline JPEG Huffman (standard luminance tables, DC prediction), one stream per channel per "
        "frame, raw mask bits, float16 block motion, GOF 20, closed loop"
    ),
    "float16-zstd": "grids cast to float16, one zstd level-{zstd} frame per grid frame",
    "raw-float32": "uncompressed float32 grids (size computed: X·Y·Z·(1+C)·4 bytes per frame)",
}


# --------------------------------------------------------------------------- the run


class _RDOutput(AtomicDirectory):
    MARKER = "results.json"
    KIND = "rate-distortion output"

    @property
    def tmp_dir(self) -> Path:
        return self._tmp

    def _check_complete(self) -> None:
        for name in ("results.json", "results.csv", "rd.png", "results.md"):
            if not (self._tmp / name).is_file():
                raise RerfUsageError(f"rate-distortion output incomplete: {name} missing")


def parse_baselines(text: str) -> tuple[str, ...]:
    """``--baselines`` text → names; ``video`` stands for the default video baselines."""
    out: list[str] = []
    for b in (t.strip() for t in text.split(",")):
        for name in (DEFAULT_VIDEO_BASELINES if b == "video" else (b,) if b else ()):
            if name not in out:
                out.append(name)
    return tuple(out)


def parse_video_sweeps(items: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``--video-sweep CODEC=S1,S2,...`` values → ((codec, settings), ...) (checked by RDSettings.validate)."""
    out = []
    for item in items:
        codec, eq, rest = item.partition("=")
        if not eq:
            raise RerfUsageError(f"--video-sweep must be CODEC=SETTING,SETTING,... (e.g. x265=lossless,8,24), got {item!r}")
        out.append((codec.strip(), tuple(t.strip() for t in rest.split(",") if t.strip())))
    return tuple(out)


def _settings_plan(settings: RDSettings) -> list[tuple[str, int | str | None]]:
    """(codec, quality) per run; a video baseline's quality is its sweep token (text)."""
    plan: list[tuple[str, int | str | None]] = [("rerf", q) for q in settings.qualities]
    for b in BASELINES:
        if b not in settings.baselines:
            continue
        if b in ("rerf-intra", "rerf-nomotion"):
            plan += [(b, q) for q in settings.qualities]
        elif b == ANCHOR:
            plan += [(b, q) for q in settings.reference_qualities]
        else:
            plan.append((b, None))
    for b in VIDEO_BASELINES:
        if b in settings.baselines:
            plan += [(b, token) for token in settings.video_sweep(b.rpartition("-")[0])]
    return plan


def run_rate_distortion(
    seq_dir: str | Path,
    out_dir: str | Path,
    settings: RDSettings,
    *,
    dataset: str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the bench on ``seq_dir`` and write ``out_dir``; returns the ``results.json`` object.

    Everything is checked before the first encode (settings, the output directory, the
    --dataset prerequisites); the output appears only when the whole run succeeded.
    """
    settings.validate()
    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    load0 = _loadavg()
    with _RDOutput(out_dir, force=force) as out:
        seq = _Sequence(seq_dir)
        renderer = _Renderer(seq, dataset, settings.render_frames) if dataset is not None else None
        skipped = _missing_video_encoders(settings, say)
        x, y, z = seq.meta.grid_shape
        say(f"sequence {seq_dir}: {seq.meta.num_frames} frames of {x}×{y}×{z}, density + "
            f"{seq.meta.feature_channels} features ({seq.frame_bytes * seq.meta.num_frames / 1e6:,.1f} MB raw)")
        plan = [(c, q) for c, q in _settings_plan(settings) if c not in {s["name"] for s in skipped}]
        points: list[_Point] = []
        with tempfile.TemporaryDirectory(prefix="rerf-rd-") as scratch:
            for i, (codec, q) in enumerate(plan, 1):
                path = os.path.join(scratch, f"{codec}-{q}.bin")
                if isinstance(q, str):
                    vp = _run_video(seq, os.path.join(scratch, f"{codec}-{q}"), codec, q, settings.gof, renderer)
                    if isinstance(vp, str):  # this setting failed in ffmpeg: said, recorded, the run goes on
                        say(f"[{i}/{len(plan)}] {codec} {q}: skipped: {vp}")
                        skipped.append({"name": codec, "setting": q, "reason": vp})
                        continue
                    points.append(vp)
                    say(_progress_line(i, len(plan), vp.to_json()))
                    continue
                if codec in ("rerf", "rerf-intra", "rerf-nomotion"):
                    assert q is not None
                    p = _run_rerf(seq, path, codec, q, settings.gof, renderer)
                elif codec == ANCHOR:
                    assert q is not None
                    p = _run_reference(seq, path, q, renderer)
                elif codec == "float16-zstd":
                    p = _run_zstd(seq, path, settings.zstd_level, renderer)
                else:
                    p = _run_raw(seq, renderer)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                points.append(p)
                say(_progress_line(i, len(plan), p.to_json()))
        result = _assemble(seq, settings, points, renderer, dataset, command, time.perf_counter() - t_start, load0)
        result["skipped"] = skipped
        _write_outputs(out.tmp_dir, result)
    return result


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _fmt_db(v: float | None) -> str:
    if v is None:
        return "-"
    return "lossless" if math.isinf(v) else f"{v:.2f} dB"


def _progress_line(i: int, n: int, p: dict[str, Any]) -> str:
    q = f" {p['setting']}" if p.get("setting") else ("" if p["quality"] is None else f" q{p['quality']}")
    r = "" if p["rendered_psnr_db"] is None else f", rendered {_fmt_db(p['rendered_psnr_db'])}"
    exact = "" if p["bit_exact"] in (None, True) else "  ** decoder output differs from the encoder's reconstruction **"
    return (f"[{i}/{n}] {p['codec']}{q}: {p['bytes_per_frame']:,.0f} B/frame, grid {_fmt_db(p['grid_psnr_db'])}, "
            f"features {_fmt_db(p['feature_psnr_db'])}, "
            f"density {_fmt_db(p['density_psnr_db'])}{r}; encode {p['encode_seconds']:.1f} s, "
            f"decode {p['decode_seconds']:.1f} s{exact}")


def _assemble(
    seq: _Sequence, settings: RDSettings, points: list[_Point], renderer: _Renderer | None,
    dataset: str | Path | None, command: str | None, seconds: float, load0: list[float] | None,
) -> dict[str, Any]:
    from rerf_codec.bench.codec_bench import machine_info

    pts = [p.to_json() for p in points]
    codecs = []
    for name in CODECS + VIDEO_BASELINES:
        mine = [p for p in pts if p["codec"] == name]
        if not mine:
            continue
        cols = ("quality", "file_bytes", "bytes_per_frame", "ratio_vs_raw_float32", "keyframe_bytes_mean",
                "residual_frame_bytes_mean", "grid_psnr_db", "feature_psnr_db", "density_psnr_db", "rendered_psnr_db",
                "rendered_psnr_vs_uncompressed_db", "encode_fps", "decode_fps")
        codecs.append({
            "name": name,
            "description": (DESCRIPTIONS[name].format(gof=settings.gof, zstd=settings.zstd_level)
                            if name in DESCRIPTIONS else _video_description(name)),
            "results": {c: [p.get(c) for p in mine] for c in cols},
        })
    bd: dict[str, Any] = {"anchor": ANCHOR, "method": "Bjøntegaard delta rate, PCHIP over the overlapping PSNR range, %"}
    anchor = [p for p in pts if p["codec"] == ANCHOR]
    for metric in METRICS:
        row: dict[str, float | None] = {}
        for name in CURVE_CODECS + VIDEO_BASELINES:
            mine = [p for p in pts if p["codec"] == name]
            if name in VIDEO_BASELINES:
                mine = _pareto(mine, metric)
            if not mine or not anchor or name == ANCHOR:
                continue
            row[name] = bd_rate([p["bytes_per_frame"] for p in anchor], [p[metric] for p in anchor],
                                [p["bytes_per_frame"] for p in mine], [p[metric] for p in mine])
        if any(v is not None for v in row.values()):
            bd[metric] = row
    x, y, z = seq.meta.grid_shape
    default = next((p for p in pts if p["codec"] == "rerf" and p["quality"] == settings.default_quality), None)
    return {
        "format": RESULTS_FORMAT,
        "version": 1,
        "name": f"rate-distortion of {seq.path.name}",
        "description": "Real file bytes per frame against grid-domain (and rendered) PSNR, one entry per codec; "
                       "definitions in rerf_codec/bench/rd.py and BENCHMARKS.md",
        "command": command,
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "loadavg_start": load0,
        "loadavg_end": _loadavg(),
        "wall_seconds": seconds,
        "sequence": {
            "path": str(seq.path), "num_frames": seq.meta.num_frames, "first_frame": seq.meta.first_frame,
            "grid_shape": [x, y, z], "feature_channels": seq.meta.feature_channels,
            "raw_float32_bytes_per_frame": seq.frame_bytes, "occupancy_threshold": seq.threshold,
            "occupied_blocks_mean": float(np.mean([
                occupancy_mask(f.density, seq.threshold).sum() for f in seq.frames])),
            "trainer_motion": any(m is not None for m in seq.motion),
        },
        "settings": {
            "qualities": list(settings.qualities), "reference_qualities": list(settings.reference_qualities),
            "gof": settings.gof, "reference_gof": REFERENCE_GOF, "baselines": list(settings.baselines),
            "zstd_level": settings.zstd_level, "default_quality": settings.default_quality,
            "dataset": None if dataset is None else str(dataset),
            "render_frames": settings.render_frames if renderer else None,
        },
        "codecs": codecs,
        "bd_rate": bd,
        "bd_rate_vs_video": _bd_vs_video(pts),
        "default_quality_point": default,
        "uncompressed_rendered": renderer.uncompressed_quality() if renderer else None,
        "all_bit_exact": all(p["bit_exact"] is not False for p in pts),
        "points": pts,
    }


def _pareto(points: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The points no other point beats on both bytes and ``metric`` (a video codec's sweep can hold a
    dominated setting: SVT-AV1 at CRF 1 costs more than its lossless mode at a lower PSNR; left in,
    it would bend the interpolated curve)."""
    known = [p for p in points if p.get(metric) is not None]
    return [p for p in known if not any(
        q is not p and q["bytes_per_frame"] <= p["bytes_per_frame"] and q[metric] >= p[metric]
        and (q["bytes_per_frame"], q[metric]) != (p["bytes_per_frame"], p[metric]) for q in known)]


def _bd_vs_video(pts: list[dict[str, Any]]) -> dict[str, Any]:
    """BD-rate of rerf against each video baseline, and against the strongest one, per metric.

    The strongest baseline of a metric is the one rerf gains least against (highest BD-rate
    of rerf; baselines whose curve does not overlap rerf's in that metric are left out).
    """
    out: dict[str, Any] = {"method": "BD-rate of rerf with each video baseline as the anchor (its Pareto-optimal "
                                     "settings), %; negative = rerf needs fewer bytes at equal PSNR"}
    rerf = [p for p in pts if p["codec"] == "rerf"]
    names = [n for n in VIDEO_BASELINES if any(p["codec"] == n for p in pts)]
    if not rerf or not names:
        return out
    for metric in METRICS:
        row: dict[str, float | None] = {}
        for name in names:
            mine = _pareto([p for p in pts if p["codec"] == name], metric)
            row[name] = bd_rate([p["bytes_per_frame"] for p in mine], [p[metric] for p in mine],
                                [p["bytes_per_frame"] for p in rerf], [p[metric] for p in rerf])
        known = {k: v for k, v in row.items() if v is not None}
        if not known and all(p.get(metric) is None for p in rerf):
            continue
        strongest = max(known, key=lambda k: known[k]) if known else None
        out[metric] = {"rerf_vs": row, "strongest": strongest,
                       "rerf_vs_strongest": known[strongest] if strongest else None}
    return out


# --------------------------------------------------------------------------- outputs


CSV_COLUMNS = (
    "codec", "quality", "setting", "file_bytes", "frames", "bytes_per_frame", "ratio_vs_raw_float32", "keyframe_bytes_mean",
    "residual_frame_bytes_mean", "mask_bytes", "motion_bytes", "coefficient_bytes", "side_info_bytes",
    "header_bytes", "container_bytes", "grid_psnr_db", "grid_psnr_db_min", "feature_psnr_db", "feature_psnr_db_min", "density_psnr_db",
    "density_psnr_db_min", "rendered_psnr_db", "rendered_ssim", "rendered_psnr_vs_uncompressed_db",
    "rendered_ssim_vs_uncompressed", "encode_fps", "decode_fps", "bit_exact",
)


def _csv(result: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for p in result["points"]:
        b, r = p["bytes"], p["rendered"] or {}
        row = {**p, "mask_bytes": b["mask"], "motion_bytes": b["motion"], "coefficient_bytes": b["coefficients"],
               "side_info_bytes": b["side_info"], "header_bytes": b["header"], "container_bytes": b["container"],
               "rendered_ssim": r.get("ssim"), "rendered_ssim_vs_uncompressed": r.get("ssim_vs_uncompressed")}
        w.writerow(["" if row.get(c) is None else row[c] for c in CSV_COLUMNS])
    return buf.getvalue()


def format_markdown(result: dict[str, Any]) -> str:
    """The markdown table of a run (what BENCHMARKS.md quotes)."""
    seq = result["sequence"]
    x, y, z = seq["grid_shape"]
    lines = [
        f"Sequence `{seq['path']}`: {seq['num_frames']} frames of {x}×{y}×{z}, density + {seq['feature_channels']} "
        f"features, {seq['occupied_blocks_mean']:.0f} occupied 8³ blocks per frame; raw float32 "
        f"{seq['raw_float32_bytes_per_frame']:,} B/frame. Bench wall time {result['wall_seconds']:.0f} s.",
        "",
        "| codec | quality | bytes/frame | × smaller than raw | keyframe B | residual B/frame | grid PSNR | "
        "feature PSNR | density PSNR | rendered PSNR | enc fps | dec fps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def num(v: float | None, spec: str = ",.0f") -> str:
        return "-" if v is None else format(v, spec)

    for p in result["points"]:
        lines.append(
            f"| {p['codec']} | {_quality_label(p)} | {p['bytes_per_frame']:,.0f} | "
            f"{p['ratio_vs_raw_float32']:,.1f} | {num(p['keyframe_bytes_mean'])} | "
            f"{num(p['residual_frame_bytes_mean'])} | {_fmt_db(p['grid_psnr_db'])} | {_fmt_db(p['feature_psnr_db'])} | "
            f"{_fmt_db(p['density_psnr_db'])} | {_fmt_db(p['rendered_psnr_db'])} | {num(p['encode_fps'], '.2f')} | "
            f"{num(p['decode_fps'], '.2f')} |"
        )
    lines += ["", f"BD-rate against `{ANCHOR}` (negative = fewer bytes at equal PSNR):", "",
              "| codec | " + " | ".join(m for m in METRICS if m in result["bd_rate"]) + " |",
              "|---|" + "---|" * sum(m in result["bd_rate"] for m in METRICS)]
    for name in CURVE_CODECS + VIDEO_BASELINES:
        if name == ANCHOR:
            continue
        vals = [result["bd_rate"][m].get(name) for m in METRICS if m in result["bd_rate"]]
        if any(v is not None for v in vals):
            lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:+.1f} %" for v in vals) + " |")
    vid = result.get("bd_rate_vs_video") or {}
    vm = [m for m in METRICS if m in vid]
    if vm:
        lines += ["", "BD-rate of rerf against each video baseline (that baseline the anchor; negative = rerf needs "
                  "fewer bytes):", "", "| anchor | " + " | ".join(vm) + " |", "|---|" + "---|" * len(vm)]
        for name in vid[vm[0]]["rerf_vs"]:
            vals = [vid[m]["rerf_vs"].get(name) for m in vm]
            lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:+.1f} %" for v in vals) + " |")
        lines.append("| **strongest** | " + " | ".join(
            "-" if vid[m]["strongest"] is None else f"{vid[m]['rerf_vs_strongest']:+.1f} % ({vid[m]['strongest']})"
            for m in vm) + " |")
    for sk in result.get("skipped") or []:
        lines.append(f"\nSkipped: {sk['name']}{'' if sk.get('setting') is None else ' ' + sk['setting']}: {sk['reason']}")
    return "\n".join(lines) + "\n"


def _quality_label(p: dict[str, Any]) -> str:
    if p.get("setting"):
        return str(p["setting"])
    return "-" if p["quality"] is None else str(p["quality"])


def format_summary(result: dict[str, Any]) -> str:
    """The short summary ``rerf bench-rate-distortion`` prints at the end."""
    lines = []
    bd = result["bd_rate"]
    for m in METRICS:
        if m in bd:
            parts = [f"{k} {'n/a' if v is None else f'{v:+.1f}%'}" for k, v in bd[m].items()]
            lines.append(f"BD-rate vs {ANCHOR} ({m}): " + ", ".join(parts))
    vid = result.get("bd_rate_vs_video") or {}
    for m in METRICS:
        if m in vid and vid[m]["strongest"] is not None:
            parts = [f"{k} {'n/a' if v is None else f'{v:+.1f}%'}" for k, v in vid[m]["rerf_vs"].items()]
            lines.append(f"BD-rate of rerf vs the strongest video baseline ({m}): {vid[m]['rerf_vs_strongest']:+.1f}% "
                         f"vs {vid[m]['strongest']} (rerf vs {ANCHOR}: "
                         + (f"{bd[m]['rerf']:+.1f}%" if m in bd and bd[m].get("rerf") is not None else "n/a")
                         + "); each: " + ", ".join(parts))
    for sk in result.get("skipped") or []:
        lines.append(f"skipped {sk['name']}{'' if sk.get('setting') is None else ' ' + sk['setting']}: {sk['reason']}")
    d = result["default_quality_point"]
    if d:
        lines.append(
            f"rerf at the default quality {d['quality']}: {d['bytes_per_frame']:,.0f} B/frame, "
            f"{d['ratio_vs_raw_float32']:,.0f}× smaller than raw float32, grid {_fmt_db(d['grid_psnr_db'])}, "
            f"features {_fmt_db(d['feature_psnr_db'])}, "
            f"density {_fmt_db(d['density_psnr_db'])}"
            + ("" if d["rendered_psnr_db"] is None else f", rendered {_fmt_db(d['rendered_psnr_db'])}")
        )
    lines.append(f"{len(result['points'])} settings in {result['wall_seconds']:.0f} s"
                 + ("" if result["all_bit_exact"] else "; SOME DECODES DIFFER FROM THE ENCODER'S RECONSTRUCTION"))
    return "\n".join(lines)


def _plot(result: dict[str, Any], path: Path) -> None:
    """rd.png: bytes/frame (log x) against each PSNR, one curve per codec, single points as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if any(p.get(m) is not None for p in result["points"])]
    labels = {"grid_psnr_db": "grid PSNR, all channels (dB)", "feature_psnr_db": "feature PSNR (dB)", "density_psnr_db": "density PSNR (dB)",
              "rendered_psnr_db": "rendered PSNR vs ground truth (dB)",
              "rendered_psnr_vs_uncompressed_db": "rendered PSNR vs uncompressed (dB)"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 4.8), squeeze=False)
    styles = {"rerf": "o-", "rerf-intra": "s--", "rerf-nomotion": "^--", "rerf-reference": "D-",
              "float16-zstd": "*", "raw-float32": "x"}
    video_marks = {"x265": "v", "svt-av1": "P", "vvenc": "X", "x264": "h"}
    for name in VIDEO_BASELINES:
        codec, _, packing = name.rpartition("-")
        styles[name] = video_marks[codec] + ("-." if packing == "blocks" else ":")
    curve_codecs = CURVE_CODECS + VIDEO_BASELINES
    for ax, metric in zip(axes[0], metrics, strict=True):
        curve_vals = [p[metric] for p in result["points"]
                      if p["codec"] in curve_codecs and p.get(metric) is not None and math.isfinite(p[metric])]
        # the axis spans rerf's family (+6 dB): the video codecs' lossless points (~70-90 dB, the
        # quantiser alone) would squash every curve; they are in results.md
        own = [p[metric] for p in result["points"]
               if p["codec"] in CURVE_CODECS and p.get(metric) is not None and math.isfinite(p[metric])]
        top = (max(own) + 6.0 if own else max(curve_vals) + 2.0) if curve_vals else None
        for name in CODECS + VIDEO_BASELINES:
            pts = [p for p in result["points"] if p["codec"] == name and p.get(metric) is not None]
            if not pts:
                continue
            if name in curve_codecs:
                finite = sorted((p for p in pts if math.isfinite(p[metric])), key=lambda p: p["bytes_per_frame"])
                ax.plot([p["bytes_per_frame"] for p in finite], [p[metric] for p in finite], styles[name],
                        label=name, markersize=6)
                continue
            # single-point baselines (near-lossless): a vertical line at their size, PSNR in the label,
            # so they do not squash the curves' axis
            v = pts[0][metric]
            ax.axvline(pts[0]["bytes_per_frame"], linestyle=":", color="gray" if name == "raw-float32" else "purple",
                       label=f"{name} ({_fmt_db(v)})")
        if top is not None:
            lo = min(curve_vals) - 2.0
            ax.set_ylim(lo, top)
        ax.set_xscale("log")
        ax.set_xlabel("bytes per frame (real file bytes, log scale)")
        ax.set_ylabel(labels[metric])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    seq = result["sequence"]
    fig.suptitle(f"{Path(seq['path']).name}: {seq['num_frames']} frames of {'×'.join(map(str, seq['grid_shape']))}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_outputs(out: Path, result: dict[str, Any]) -> None:
    (out / "results.json").write_text(to_json(result) + "\n", encoding="utf-8")
    (out / "results.csv").write_text(_csv(result), encoding="utf-8")
    (out / "results.md").write_text(format_markdown(result), encoding="utf-8")
    _plot(result, out / "rd.png")
