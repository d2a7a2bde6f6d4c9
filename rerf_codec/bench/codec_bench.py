"""Codec benchmark: speed, entropy-coder efficiency, quality and size against baselines.

``python -m rerf_codec.bench.codec_bench [--frames 13] [--shape 128 128 128] [--channels 12]
[--runs 3] [--quality Q] [--qualities 30,50,75,90] [--gof 1] [--json-out PATH] [--json]``

By default every frame is coded intra (``--gof 1``: each frame is its own GOF and
keyframe): this is the *codec core* benchmark. ``--gof N`` measures the sequence codec
with residual frames instead (the frame types used are reported).

One run measures, on a synthetic ReRF-like sequence (:mod:`rerf_codec.synthetic`,
kept in memory, generated once):

* **encode fps**: frames / wall time of :func:`encode_frames` writing a real ``.rerf``
  file; median over ``--runs``. Every run must produce the same file (checked).
* **decode fps**: frames / wall time of opening that file and iterating
  ``Decoder.frames(reuse_buffers=True)`` without touching the output; median over
  ``--runs``. Also **decode + SHA-256 fps** (what ``rerf decode`` pays to verify), which
  also checks that the decoder reproduces the encoder's reconstruction hash bit for bit.
* **entropy-coder overhead**: coded coefficient bytes (range-coded words + raw mantissa
  bytes) against the ideal size under the model actually used
  (``ideal_coefficient_bits / 8``, reported by the encoder).
* **quality**: per frame, feature PSNR with peak = max − min of the original features
  over the voxels of occupied blocks (all channels together), MSE over those voxels and
  all channels; density PSNR likewise; max abs errors there. Mean (and worst) over frames.
* **baselines, same process, same grids**: raw float32 (``X·Y·Z·(1+C)·4`` bytes per
  frame) and float16 + zstd level 19 (density and features cast to float16, compressed
  per frame with ``zstandard.ZstdCompressor(level=19, threads=2)``; real compressed
  bytes). Ratios are baseline bytes / ``.rerf`` file bytes (``os.path.getsize``; the file
  includes the sequence header, index and container overhead).
* **decoder peak memory**: in a fresh subprocess, peak RSS (``VmHWM``; not ``ru_maxrss``,
  see :func:`decoder_memory`) minus the RSS after imports and header parsing, as a
  multiple of one dense frame (``X·Y·Z·(1+C)·4`` bytes); plus the tracemalloc peak
  (numpy allocations) of a second decode pass.
* **quality sweep**: for each ``--qualities`` value, one encode + decode: size, ratios,
  PSNR, overhead.

Progress goes to stderr; the table (or ``--json``: one JSON document) to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import rerf_codec
from rerf_codec.bench.report import int_list, to_json
from rerf_codec.bitstream import StreamReader
from rerf_codec.codec.decoder import DecodedFrame, Decoder
from rerf_codec.codec.encoder import DEFAULT_QUALITY, EncoderConfig, EncodeReport, encode_frames
from rerf_codec.codec.occupancy import occupancy_mask
from rerf_codec.errors import RerfError, RerfUsageError
from rerf_codec.grids import GridFrame, SequenceMeta, update_frame_hash
from rerf_codec.metrics import psnr_from_mse
from rerf_codec.synthetic import SyntheticSpec, synthetic_frames, synthetic_meta

__all__ = ["TARGETS", "main", "run_bench"]

BLOCK = 8
DEFAULT_QUALITIES = (30, 50, 75, 90)
ZSTD_LEVEL = 19
ZSTD_THREADS = 2

#: The issue's acceptance figures (128³ × 13 channels, 2-core machine).
TARGETS: dict[str, dict[str, Any]] = {
    "decode_fps": {"op": ">=", "value": 10.0, "what": "intra decode, frames/s (median)"},
    "encode_fps": {"op": ">=", "value": 3.0, "what": "encode, frames/s (median)"},
    "entropy_overhead_pct": {"op": "<=", "value": 1.0, "what": "coded coefficient bytes over model entropy, %"},
    "feature_psnr_db": {"op": ">=", "value": 40.0, "what": "feature PSNR at the default quality, dB (mean over frames)"},
    "ratio_vs_zstd19_f16": {"op": ">=", "value": 15.0, "what": "float16+zstd-19 bytes / .rerf file bytes"},
    "decoder_peak_dense_frames": {"op": "<=", "value": 3.0, "what": "decoder peak RSS increase / one dense frame"},
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = os.cpu_count()

    def version(name: str) -> str:
        try:
            from importlib.metadata import version as v

            return v(name)
        except Exception:
            return "unknown"

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": mem,
        "numpy": np.__version__,
        "constriction": version("constriction"),
        "zstandard": version("zstandard"),
        "rerf": rerf_codec.__version__,
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


# --------------------------------------------------------------------------- metrics


def voxel_mask(block_mask: np.ndarray, grid_shape: tuple[int, int, int]) -> np.ndarray:
    """Expand an 8³ block mask to voxels, cropped to the grid."""
    full = np.repeat(np.repeat(np.repeat(block_mask, BLOCK, 0), BLOCK, 1), BLOCK, 2)
    return full[: grid_shape[0], : grid_shape[1], : grid_shape[2]]


def frame_quality(orig: GridFrame, recon: GridFrame, threshold: float) -> dict[str, Any]:
    """PSNR and max abs error over the voxels of the original's occupied blocks."""
    vm = voxel_mask(occupancy_mask(orig.density, threshold), orig.density.shape)
    n = int(vm.sum())
    if n == 0:
        return {"occupied_voxels": 0, "feature_psnr_db": None, "density_psnr_db": None,
                "feature_max_abs_err": 0.0, "density_max_abs_err": 0.0}
    fo = orig.features[:, vm].astype(np.float64)
    fr = recon.features[:, vm].astype(np.float64)
    do = orig.density[vm].astype(np.float64)
    dr = recon.density[vm].astype(np.float64)
    fe = fr - fo
    de = dr - do
    return {
        "occupied_voxels": n,
        "feature_peak": float(fo.max() - fo.min()),
        "density_peak": float(do.max() - do.min()),
        "feature_psnr_db": psnr_from_mse(float(np.mean(fe * fe)), float(fo.max() - fo.min())),
        "density_psnr_db": psnr_from_mse(float(np.mean(de * de)), float(do.max() - do.min())),
        "feature_max_abs_err": float(np.abs(fe).max()),
        "density_max_abs_err": float(np.abs(de).max()),
    }


def _finite_mean(values: list[float | None]) -> float | None:
    """Mean over frames of the finite values (a lossless frame has infinite PSNR)."""
    known = [x for x in values if x is not None]
    finite = [x for x in known if math.isfinite(x)]
    if finite:
        return float(np.mean(finite))
    return math.inf if known else None


def quality_pass(path: str, frames: list[GridFrame], first: int) -> dict[str, Any]:
    """Decode ``path`` and compare every frame with the original (untimed)."""
    with open(path, "rb") as f:
        threshold = StreamReader(f).header.occupancy_threshold
    per: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        for item in Decoder(f).frames(reuse_buffers=True):
            assert isinstance(item, DecodedFrame)
            per.append({"index": item.index, **frame_quality(frames[item.index - first], item.frame, threshold)})
    fp = [q["feature_psnr_db"] for q in per]
    dp = [q["density_psnr_db"] for q in per]
    return {
        "occupancy_threshold": threshold,
        "feature_psnr_db": _finite_mean(fp),
        "feature_psnr_db_min": min((x for x in fp if x is not None), default=None),
        "density_psnr_db": _finite_mean(dp),
        "density_psnr_db_min": min((x for x in dp if x is not None), default=None),
        "feature_max_abs_err": max(q["feature_max_abs_err"] for q in per),
        "density_max_abs_err": max(q["density_max_abs_err"] for q in per),
        "per_frame": per,
    }


def entropy_accounting(rep: EncodeReport) -> dict[str, Any]:
    coded = sum(fr.bytes["coefficients"] for fr in rep.frames)
    ideal = sum(fr.ideal_coefficient_bits for fr in rep.frames) / 8.0
    sections = {k: sum(fr.bytes[k] for fr in rep.frames) for k in ("mask", "motion", "coefficients", "side_info")}
    return {
        "coefficient_bytes": coded,
        "ideal_coefficient_bytes": ideal,
        "entropy_overhead_pct": (coded / ideal - 1.0) * 100.0 if ideal > 0 else None,
        "section_bytes": sections,
        "header_bytes": rep.header_bytes,
        "container_bytes": rep.container_bytes,
        "occupied_blocks_mean": float(np.mean([fr.occupied_blocks for fr in rep.frames])),
    }


# --------------------------------------------------------------------------- baselines


def zstd_f16_baseline(frames: list[GridFrame], level: int, threads: int) -> dict[str, Any]:
    """float16 + zstd per frame: density then features, C order, real compressed bytes."""
    import zstandard

    cctx = zstandard.ZstdCompressor(level=level, threads=threads)
    total = 0
    raw16 = 0
    t0 = time.perf_counter()
    for fr in frames:
        x, y, z = fr.density.shape
        buf = np.empty((1 + fr.features.shape[0], x, y, z), dtype=np.float16)
        buf[0] = fr.density
        buf[1:] = fr.features
        raw16 += buf.nbytes
        total += len(cctx.compress(buf.data))
        del buf
    return {
        "level": level,
        "threads": threads,
        "bytes": total,
        "float16_bytes": raw16,
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- timed runs


def _encode_to(path: str, meta: SequenceMeta, frames: list[GridFrame], config: EncoderConfig) -> EncodeReport:
    with open(path, "wb") as f:
        rep = encode_frames(meta, zip(meta.frame_indices, frames, strict=True), f, config, output_name=path)
        f.flush()
    return rep


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def timed_encode(
    path: str, meta: SequenceMeta, frames: list[GridFrame], config: EncoderConfig, runs: int
) -> tuple[EncodeReport, list[float], str]:
    """Encode ``runs`` times into ``path``; returns the last report, wall times and file hash."""
    times: list[float] = []
    rep: EncodeReport | None = None
    digest = None
    for r in range(runs):
        t0 = time.perf_counter()
        rep = _encode_to(path, meta, frames, config)
        times.append(time.perf_counter() - t0)
        d = _file_sha256(path)
        if digest is not None and d != digest:
            raise RerfError("the encoder produced different files for the same input")
        digest = d
        _log(f"  encode run {r + 1}/{runs}: {times[-1]:.2f} s ({len(frames) / times[-1]:.2f} fps)")
    assert rep is not None and digest is not None
    return rep, times, digest


def decode_once(path: str, hash_frames: bool) -> tuple[float, int, str | None]:
    """Open ``path`` and decode every frame; (seconds, frames, frame hash or None)."""
    sha = hashlib.sha256() if hash_frames else None
    n = 0
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        for item in Decoder(f).frames(reuse_buffers=True):
            if not isinstance(item, DecodedFrame):  # pragma: no cover - undamaged file
                raise RerfError("damaged frames in a freshly written file")
            if sha is not None:
                update_frame_hash(sha, item.frame)
            n += 1
    return time.perf_counter() - t0, n, sha.hexdigest() if sha is not None else None


_MEMORY_SCRIPT = r"""
import json, resource, sys, tracemalloc
from rerf_codec.codec.decoder import Decoder, DecodedFrame

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) * 1024
    return out

path = sys.argv[1]
out = {}
with open(path, "rb") as f:
    dec = Decoder(f)  # imports done, header parsed
    st = status()
    out["rss_after_header"] = st["VmRSS"]
    out["hwm_after_header"] = st["VmHWM"]
    out["maxrss_after_header"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    n = 0
    for item in dec.frames(reuse_buffers=True):
        assert isinstance(item, DecodedFrame)
        n += 1
    out["frames"] = n
out["hwm_after_decode"] = status()["VmHWM"]
out["maxrss_after_decode"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with open(path, "rb") as f:
    dec = Decoder(f)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for item in dec.frames(reuse_buffers=True):
        pass
    out["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
print(json.dumps(out))
"""


def decoder_memory(path: str, dense_frame_bytes: int) -> dict[str, Any]:
    """Decoder peak memory, measured in a fresh interpreter so nothing else is resident.

    The peak is the child's ``VmHWM`` (peak resident set of its own address space) after
    the decode minus its ``VmRSS`` after imports and header parsing. ``ru_maxrss`` is
    recorded too but is not used: on Linux it carries over the high-water mark of the
    address space replaced by ``exec``, i.e. of the forked copy of *this* process, which
    holds every benchmark frame in memory.
    """
    env = dict(os.environ)
    root = str(Path(rerf_codec.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, path], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RerfError(f"decoder memory subprocess failed: {proc.stderr.strip()[-2000:]}")
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    base = m["rss_after_header"]
    peak = m["hwm_after_decode"]
    return {
        "method": "child VmHWM after decode - child VmRSS after imports + header parse",
        "dense_frame_bytes": dense_frame_bytes,
        "rss_after_header_bytes": base,
        "peak_rss_bytes": peak,
        "peak_rss_increase_bytes": peak - base,
        "decoder_peak_dense_frames": (peak - base) / dense_frame_bytes,
        "ru_maxrss_after_header_bytes": m["maxrss_after_header"],
        "ru_maxrss_after_decode_bytes": m["maxrss_after_decode"],
        "tracemalloc_peak_bytes": m["tracemalloc_peak"],
        "tracemalloc_peak_dense_frames": m["tracemalloc_peak"] / dense_frame_bytes,
        "frames": m["frames"],
    }


# --------------------------------------------------------------------------- driver


def _check(name: str, value: float | None) -> bool | None:
    if value is None:
        return None
    t = TARGETS[name]
    return value >= t["value"] if t["op"] == ">=" else value <= t["value"]


def run_bench(
    *,
    shape: tuple[int, int, int] = (128, 128, 128),
    channels: int = 12,
    frames: int = 13,
    runs: int = 3,
    quality: int = DEFAULT_QUALITY,
    qualities: Sequence[int] = DEFAULT_QUALITIES,
    gof: int = 1,
    seed: int = 0,
    zstd_level: int = ZSTD_LEVEL,
    zstd_threads: int = ZSTD_THREADS,
    command: str | None = None,
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Run the whole benchmark in this process (decoder memory in a child) and return the results."""
    if runs < 1:
        raise RerfUsageError(f"--runs must be >= 1, got {runs}")
    EncoderConfig(quality=quality, gof=gof).validate()
    for q in qualities:
        EncoderConfig(quality=q, gof=gof).validate()
    started = datetime.datetime.now(datetime.UTC)
    load_start = _loadavg()
    spec = SyntheticSpec(shape=tuple(shape), feature_channels=channels, num_frames=frames, seed=seed)
    meta = SequenceMeta.from_json_dict(synthetic_meta(spec), "<synthetic>")
    x, y, z = meta.grid_shape
    dense_frame_bytes = x * y * z * (1 + channels) * 4

    log(f"generating {frames} synthetic frames {x}x{y}x{z}x{1 + channels} ...")
    t0 = time.perf_counter()
    grid_frames = [GridFrame(d, f) for d, f, _motion in synthetic_frames(spec)]
    gen_s = time.perf_counter() - t0
    log(f"  {gen_s:.1f} s")

    result: dict[str, Any] = {
        "benchmark": "rerf codec core (intra)",
        "command": command,
        "date_utc": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "loadavg_start": load_start,
        "spec": {
            "shape": [x, y, z],
            "feature_channels": channels,
            "channels_total": 1 + channels,
            "frames": frames,
            "occupancy": spec.occupancy,
            "noise": spec.noise,
            "motion": spec.motion,
            "seed": seed,
        },
        "runs": runs,
        "quality": quality,
        "gof": gof,
        "generate_seconds": gen_s,
        "dense_frame_bytes": dense_frame_bytes,
        "targets": TARGETS,
    }

    with tempfile.TemporaryDirectory(prefix="rerf-bench-") as tmp:
        path = os.path.join(tmp, "bench.rerf")

        # ---- encode (timed, real file)
        config = EncoderConfig(quality=quality, gof=gof)
        log(f"encoding at quality {quality}, {runs} run(s) ...")
        rep, enc_times, file_digest = timed_encode(path, meta, grid_frames, config, runs)
        file_bytes = os.path.getsize(path)
        if file_bytes != rep.file_bytes:
            raise RerfError(f"encoder reported {rep.file_bytes} bytes, the file has {file_bytes}")
        enc_med = statistics.median(enc_times)

        # ---- decode (timed) and decode + SHA-256 (timed, checks bit exactness)
        log(f"decoding, {runs} run(s) ...")
        dec_times: list[float] = []
        dec_sha_times: list[float] = []
        bit_exact = True
        for r in range(runs):
            s, n, _ = decode_once(path, hash_frames=False)
            if n != frames:
                raise RerfError(f"decoded {n} frames, expected {frames}")
            dec_times.append(s)
            s2, _, digest = decode_once(path, hash_frames=True)
            dec_sha_times.append(s2)
            bit_exact = bit_exact and digest == rep.sha256
            log(f"  decode run {r + 1}/{runs}: {s:.2f} s ({frames / s:.2f} fps); with SHA-256 {s2:.2f} s")
        dec_med = statistics.median(dec_times)
        dec_sha_med = statistics.median(dec_sha_times)

        # ---- quality and entropy accounting
        log("measuring quality ...")
        qual = quality_pass(path, grid_frames, meta.first_frame)
        ent = entropy_accounting(rep)

        # ---- decoder memory (fresh process)
        log("measuring decoder memory in a subprocess ...")
        mem = decoder_memory(path, dense_frame_bytes)

        # ---- baselines, same process, same grids
        if zstd_level > 0:
            log(f"baseline: float16 + zstd level {zstd_level} ({zstd_threads} threads) on {frames} frames ...")
            zb: dict[str, Any] | None = zstd_f16_baseline(grid_frames, zstd_level, zstd_threads)
            assert zb is not None
            log(f"  {zb['seconds']:.1f} s, {zb['bytes']} bytes")
        else:
            log("baseline: float16 + zstd skipped (--zstd-level 0)")
            zb = None
        zbytes = zb["bytes"] if zb is not None else None
        raw32 = dense_frame_bytes * frames

        # ---- quality sweep: one encode + decode per extra quality
        sweep: list[dict[str, Any]] = []
        for q in qualities:
            if q == quality:
                r_rep, r_bytes, r_qual, r_ent, r_enc_s = rep, file_bytes, qual, ent, enc_med
            else:
                log(f"sweep: quality {q} ...")
                spath = os.path.join(tmp, f"q{q}.rerf")
                t0 = time.perf_counter()
                r_rep = _encode_to(spath, meta, grid_frames, EncoderConfig(quality=q, gof=gof))
                r_enc_s = time.perf_counter() - t0
                r_bytes = os.path.getsize(spath)
                r_qual = quality_pass(spath, grid_frames, meta.first_frame)
                r_ent = entropy_accounting(r_rep)
                os.unlink(spath)
            sweep.append(
                {
                    "quality": q,
                    "file_bytes": r_bytes,
                    "bytes_per_frame": r_bytes / frames,
                    "ratio_vs_raw_f32": raw32 / r_bytes,
                    "ratio_vs_zstd19_f16": zbytes / r_bytes if zbytes else None,
                    "feature_psnr_db": r_qual["feature_psnr_db"],
                    "density_psnr_db": r_qual["density_psnr_db"],
                    "feature_max_abs_err": r_qual["feature_max_abs_err"],
                    "entropy_overhead_pct": r_ent["entropy_overhead_pct"],
                    "encode_fps": frames / r_enc_s,
                    "runs": runs if q == quality else 1,
                }
            )

    figures = {
        "encode_fps": frames / enc_med,
        "decode_fps": frames / dec_med,
        "decode_sha256_fps": frames / dec_sha_med,
        "entropy_overhead_pct": ent["entropy_overhead_pct"],
        "feature_psnr_db": qual["feature_psnr_db"],
        "density_psnr_db": qual["density_psnr_db"],
        "ratio_vs_zstd19_f16": zbytes / file_bytes if zbytes else None,
        "ratio_vs_raw_f32": raw32 / file_bytes,
        "decoder_peak_dense_frames": mem["decoder_peak_dense_frames"],
    }
    result.update(
        {
            "figures": figures,
            "pass": {k: _check(k, figures.get(k)) for k in TARGETS},
            "encode": {
                "seconds": enc_times,
                "median_seconds": enc_med,
                "fps": figures["encode_fps"],
                "file_sha256": file_digest,
                "frame_types": dict(Counter(fr.frame_type for fr in rep.frames)),
                "reconstruction_sha256": rep.sha256,
            },
            "decode": {
                "seconds": dec_times,
                "median_seconds": dec_med,
                "fps": figures["decode_fps"],
                "sha256_seconds": dec_sha_times,
                "sha256_median_seconds": dec_sha_med,
                "sha256_fps": figures["decode_sha256_fps"],
                "bit_exact": bit_exact,
            },
            "size": {
                "file_bytes": file_bytes,
                "bytes_per_frame": file_bytes / frames,
                **ent,
            },
            "quality_metrics": qual,
            "baselines": {
                "raw_f32_bytes": raw32,
                "zstd_f16": zb,
                "ratio_vs_raw_f32": figures["ratio_vs_raw_f32"],
                "ratio_vs_f16_raw": raw32 / 2 / file_bytes,
                "ratio_vs_zstd19_f16": figures["ratio_vs_zstd19_f16"],
            },
            "decoder_memory": mem,
            "sweep": sweep,
            "loadavg_end": _loadavg(),
        }
    )
    return result


# --------------------------------------------------------------------------- output


def _fmt(v: Any, spec: str = ".2f", unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf" + unit
    return format(v, spec) + unit


def format_table(res: dict[str, Any]) -> str:
    m = res["machine"]
    s = res["spec"]
    f = res["figures"]
    ok = res["pass"]
    lines = [
        f"rerf codec bench — {s['shape'][0]}x{s['shape'][1]}x{s['shape'][2]} x {s['channels_total']} channels, "
        f"{s['frames']} frames, quality {res['quality']}, GOF {res['gof']} (frame types "
        f"{res['encode']['frame_types']}), median of {res['runs']} run(s)",
        f"machine: {m['cpu']}, {m['usable_cpus']} usable CPUs, {m['platform']}, Python {m['python']}, "
        f"numpy {m['numpy']}, constriction {m['constriction']}, zstandard {m['zstandard']}",
        f"load average start {res['loadavg_start']} end {res['loadavg_end']}; {res['date_utc']}",
        f"command: {res['command']}",
        "",
        f"{'figure':<34} {'target':>10} {'measured':>12}  ok",
    ]

    def row(label: str, key: str, spec: str = ".2f", unit: str = "") -> None:
        t = TARGETS[key]
        mark = {True: "yes", False: "NO", None: "?"}[ok[key]]
        lines.append(f"{label:<34} {t['op'] + format(t['value'], 'g') + unit:>10} {_fmt(f[key], spec, unit):>12}  {mark}")

    row("decode fps (no hash)", "decode_fps")
    lines.append(f"{'decode + SHA-256 fps':<34} {'':>10} {_fmt(f['decode_sha256_fps']):>12}")
    row("encode fps", "encode_fps")
    row("entropy overhead (coefficients)", "entropy_overhead_pct", ".3f", "%")
    row("feature PSNR (mean over frames)", "feature_psnr_db", ".2f", "dB")
    lines.append(f"{'density PSNR (mean over frames)':<34} {'':>10} {_fmt(f['density_psnr_db'], '.2f', 'dB'):>12}")
    row("ratio vs float16 + zstd-19", "ratio_vs_zstd19_f16", ".1f", "x")
    lines.append(f"{'ratio vs raw float32':<34} {'':>10} {_fmt(f['ratio_vs_raw_f32'], '.1f', 'x'):>12}")
    row("decoder peak / dense frame", "decoder_peak_dense_frames", ".2f", "x")
    sz = res["size"]
    b = res["baselines"]
    mem = res["decoder_memory"]
    lines += [
        "",
        f"sizes (real file bytes): .rerf {sz['file_bytes']} ({sz['bytes_per_frame']:.0f}/frame); "
        + (f"float16+zstd-{b['zstd_f16']['level']} {b['zstd_f16']['bytes']}; " if b["zstd_f16"] else "")
        + f"raw float32 {b['raw_f32_bytes']}",
        f"sections: {sz['section_bytes']}, header {sz['header_bytes']}, container {sz['container_bytes']}",
        f"coefficients: coded {sz['coefficient_bytes']} B, model entropy {sz['ideal_coefficient_bytes']:.0f} B",
        f"decoder: peak RSS {mem['peak_rss_bytes'] / 2**20:.0f} MiB, after header {mem['rss_after_header_bytes'] / 2**20:.0f} MiB, "
        f"tracemalloc peak {mem['tracemalloc_peak_bytes'] / 2**20:.0f} MiB "
        f"({mem['tracemalloc_peak_dense_frames']:.2f} dense frames); dense frame {mem['dense_frame_bytes'] / 2**20:.1f} MiB",
        f"bit exact (decoder hash == encoder hash): {res['decode']['bit_exact']}",
        "",
        f"{'quality':>7} {'bytes/frame':>12} {'vs zstd19':>10} {'vs f32':>8} {'feat PSNR':>10} {'dens PSNR':>10} "
        f"{'overhead':>9} {'enc fps':>8}",
    ]
    for r in res["sweep"]:
        lines.append(
            f"{r['quality']:>7} {r['bytes_per_frame']:>12.0f} {_fmt(r['ratio_vs_zstd19_f16'], '.1f', 'x'):>10} {r['ratio_vs_raw_f32']:>7.1f}x "
            f"{_fmt(r['feature_psnr_db']):>10} {_fmt(r['density_psnr_db']):>10} {_fmt(r['entropy_overhead_pct'], '.3f', '%'):>9} "
            f"{r['encode_fps']:>8.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure the codec on a synthetic ReRF-like grid sequence (see BENCHMARKS.md)."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(prog="python -m rerf_codec.bench.codec_bench", description=main.__doc__)
    ap.add_argument("--frames", type=int, default=13)
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 128, 128], metavar=("X", "Y", "Z"))
    ap.add_argument("--channels", type=int, default=12, help="feature channels (density is one more)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs; the median is reported")
    ap.add_argument("--quality", type=int, default=DEFAULT_QUALITY)
    ap.add_argument(
        "--qualities", type=int_list, default=list(DEFAULT_QUALITIES),
        help="comma-separated qualities for the sweep rows ('' for none)",
    )
    ap.add_argument("--gof", type=int, default=1, help="frames per GOF (1 = every frame intra, the default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zstd-level", type=int, default=ZSTD_LEVEL, help="0 skips the zstd baseline (speed checks only)")
    ap.add_argument("--zstd-threads", type=int, default=ZSTD_THREADS)
    ap.add_argument("--json-out", help="write the results as JSON to this file")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    a = ap.parse_args(args_list)
    command = shlex.join(["python", "-m", "rerf_codec.bench.codec_bench", *args_list])
    try:
        res = run_bench(
            shape=tuple(a.shape), channels=a.channels, frames=a.frames, runs=a.runs, quality=a.quality,
            qualities=a.qualities, gof=a.gof, seed=a.seed, zstd_level=a.zstd_level, zstd_threads=a.zstd_threads,
            command=command,
        )
    except RerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc = to_json(res)
    if a.json_out:
        out = Path(a.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(doc + "\n", encoding="utf-8")
    if a.json:
        print(doc)
    else:
        print(format_table(res))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
