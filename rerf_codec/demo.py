"""``rerf demo``: the codec end to end on a built-in synthetic grid sequence.

Steps, everything under ``out_dir``::

    out_dir/sequence/    synthetic ReRF-style grid sequence (rerf_codec.bench.synthetic)
    out_dir/demo.rerf    the encoded stream (default encoder settings: one GOF of 20 frames,
                         so one keyframe and the rest residual frames)
    out_dir/decoded/     the stream decoded back to a grid sequence

and a summary: sizes (keyframe vs residual-frame bytes), compression ratio against raw
float32, PSNR of the decoded grids against the input, encode/decode speed, and whether the
encoder's closed-loop reconstruction and the decoder's output have the same SHA-256 (they
must).

PSNR definitions (over all voxels of all frames, float64): feature PSNR uses the
peak = max - min of the input features over *occupied* voxels (input density above
the stream's occupancy threshold), since the empty space is near zero and would make
any peak meaningless; density PSNR uses the same definition on the density grid.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rerf_codec.bench.synthetic import SyntheticSpec, write_synthetic_sequence
from rerf_codec.codec.encoder import EncoderConfig, encode_sequence
from rerf_codec.codec.files import decode_to_directory, frame_type_summary
from rerf_codec.errors import RerfUsageError
from rerf_codec.grids import iter_full_frames, read_meta

DEMO_SPEC = SyntheticSpec(shape=(64, 64, 64), feature_channels=12, num_frames=12, seed=0)
QUICK_SPEC = SyntheticSpec(shape=(32, 32, 32), feature_channels=12, num_frames=6, seed=0)

DemoProgress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: generate, encode, decode, measure."""


def _psnr(sse: float, count: int, peak: float) -> float | None:
    if count == 0 or not peak > 0:
        return None
    mse = sse / count
    if mse == 0:
        return None  # lossless: infinite PSNR (JSON has no infinity)
    return 10.0 * math.log10(peak * peak / mse)


def _measure(
    seq_dir: Path, decoded_dir: Path, threshold: float, progress: DemoProgress | None
) -> dict[str, float | None]:
    """PSNR of the decoded sequence against the input (see the module docstring)."""
    meta = read_meta(seq_dir)
    sse_d = sse_f = 0.0
    n_d = n_f = 0
    lo_d = lo_f = math.inf
    hi_d = hi_f = -math.inf
    pairs = zip(iter_full_frames(seq_dir, meta), iter_full_frames(decoded_dir), strict=True)
    for k, ((i, a), (j, b)) in enumerate(pairs):
        if i != j:
            raise RuntimeError(f"decoded frame {j} where frame {i} was expected")
        occ = a.density > threshold
        if occ.any():
            lo_d = min(lo_d, float(a.density[occ].min()))
            hi_d = max(hi_d, float(a.density[occ].max()))
            f_occ = a.features[:, occ]
            lo_f = min(lo_f, float(f_occ.min()))
            hi_f = max(hi_f, float(f_occ.max()))
        dd = a.density.astype(np.float64) - b.density
        sse_d += float(np.vdot(dd, dd))
        n_d += dd.size
        df = a.features.astype(np.float64) - b.features
        sse_f += float(np.vdot(df, df))
        n_f += df.size
        if progress is not None:
            progress("measure", k + 1, meta.num_frames)
    return {
        "feature_psnr_db": _psnr(sse_f, n_f, hi_f - lo_f),
        "density_psnr_db": _psnr(sse_d, n_d, hi_d - lo_d),
        "feature_peak": hi_f - lo_f if hi_f >= lo_f else None,
        "density_peak": hi_d - lo_d if hi_d >= lo_d else None,
    }


def run_demo(
    out_dir: str | Path = "demo-out",
    *,
    quick: bool = False,
    force: bool = False,
    progress: DemoProgress | None = None,
) -> dict[str, Any]:
    """Generate, encode, decode, verify and measure; returns the summary as a JSON-ready dict.

    ``out_dir`` must not exist unless ``force`` (then only the demo's own outputs in it
    are replaced); its parent folder must exist.
    """
    out = Path(out_dir)
    if out.exists() and not force:
        raise RerfUsageError(f"{out} exists; use --force to overwrite")
    if out.exists() and not out.is_dir():
        raise RerfUsageError(f"{out} exists and is not a directory")
    if not out.parent.is_dir():
        raise RerfUsageError(f"output folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    spec = QUICK_SPEC if quick else DEMO_SPEC
    seq_dir, rerf_path, decoded_dir = out / "sequence", out / "demo.rerf", out / "decoded"

    t0 = time.perf_counter()
    if progress is not None:
        progress("generate", 0, 1)
    write_synthetic_sequence(seq_dir, spec, force=force)
    if progress is not None:
        progress("generate", 1, 1)

    def enc_progress(rep: Any) -> None:
        if progress is not None:
            progress("encode", rep.index + 1, spec.num_frames)

    config = EncoderConfig()
    enc = encode_sequence(seq_dir, rerf_path, config, force=force, progress=enc_progress)
    types = frame_type_summary((fr.frame_type, fr.bytes) for fr in enc.frames)
    intra = types.get("intra", {"frames": 0, "bytes_per_frame": 0.0})
    residual = types.get("residual", {"frames": 0, "bytes_per_frame": 0.0})

    def dec_progress(done: int, total: int) -> None:
        if progress is not None:
            progress("decode", done, total)

    with open(rerf_path, "rb") as f:
        dec = decode_to_directory(f, decoded_dir, force=force, progress=dec_progress)
    quality = _measure(seq_dir, decoded_dir, float(enc.config["occupancy_threshold"]), progress)

    n = spec.num_frames
    voxels = math.prod(spec.shape)
    raw = voxels * (1 + spec.feature_channels) * 4 * n
    return {
        "out_dir": str(out),
        "sequence": str(seq_dir),
        "rerf": str(rerf_path),
        "decoded": str(decoded_dir),
        "quick": quick,
        "frames": n,
        "grid_shape": list(spec.shape),
        "feature_channels": spec.feature_channels,
        "raw_float32_bytes": raw,
        "raw_float32_mb": raw / 1e6,
        "file_bytes": enc.file_bytes,
        "kb_per_frame": enc.file_bytes / n / 1e3,
        "compression_ratio": raw / enc.file_bytes,
        **quality,
        "quality": enc.config["quality"],
        "gof": config.gof,
        "intra_frames": intra["frames"],
        "intra_kb_per_frame": intra["bytes_per_frame"] / 1e3,
        "residual_frames": residual["frames"],
        "residual_kb_per_frame": residual["bytes_per_frame"] / 1e3,
        "motion_bytes": sum(fr.bytes.get("motion", 0) for fr in enc.frames),
        "frame_types": types,
        "encode_seconds": enc.seconds,
        "decode_seconds": dec.seconds,
        "encode_fps": n / enc.seconds if enc.seconds > 0 else None,
        "decode_fps": dec.frames_per_second,
        "encoder_sha256": enc.sha256,
        "decoder_sha256": dec.sha256,
        "sha256_match": enc.sha256 == dec.sha256,
        "seconds": time.perf_counter() - t0,
    }
