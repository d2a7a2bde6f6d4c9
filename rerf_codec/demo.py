"""``rerf demo``: the whole pipeline on the built-in scene, or the codec alone.

**Full demo** (:func:`run_demo`, ``rerf demo`` / ``make demo``), everything under ``out_dir``::

    out_dir/dataset/          the built-in procedural scene rendered into a multi-view dataset
                              (rerf_codec.datasets.demo_scene; 21 train + 2 test cameras)
    out_dir/sequence/         the grid sequence trained from it (short, small: DEMO_TRAIN)
    out_dir/demo.rerf         the sequence encoded (default encoder settings at DEMO_QUALITY)
    out_dir/decoded/          the stream decoded back to a grid sequence (SHA-256 checked)
    out_dir/eval.json         rerf eval of the stream on the test cameras, with the sequence as reference
    out_dir/turntable.mp4     the stream rendered along an orbit (one revolution)
    out_dir/contact_sheet.png a few frames (rows) × test cameras: ground truth | uncompressed grids | stream
    out_dir/summary.json      the summary table below

Summary: frames, raw float32 size of the grids, ``.rerf`` kB/frame, compression ratio, PSNR of
the stream's renders against ground truth (test cameras), the same for the uncompressed grids and
the difference (the PSNR lost by coding), SSIM, and encode / decode / render speed. The trainer's
settings are deliberately tiny (the demo must finish in minutes on a 2-core CPU), so the PSNR is
far below what ``rerf train`` reaches with its defaults; the point is the pipeline and the codec's
share of the loss.

**Codec-only demo** (:func:`run_codec_demo`, ``rerf demo --codec-only``), the codec end to end on
a built-in synthetic grid sequence::

    out_dir/sequence/    synthetic ReRF-style grid sequence (rerf_codec.synthetic)
    out_dir/demo.rerf    the encoded stream (default encoder settings: one GOF of 20 frames,
                         so one keyframe and the rest residual frames)
    out_dir/decoded/     the stream decoded back to a grid sequence

and a summary: sizes (keyframe vs residual-frame bytes), compression ratio against raw
float32, PSNR of the decoded grids against the input, encode/decode speed, and whether the
encoder's closed-loop reconstruction and the decoder's output have the same SHA-256 (they
must).

PSNR definitions of the codec-only demo (over all voxels of all frames, float64): feature PSNR
uses the peak = max - min of the input features over *occupied* voxels (input density above
the stream's occupancy threshold), since the empty space is near zero and would make
any peak meaningless; density PSNR uses the same definition on the density grid.

Neither imports torch at module import (the codec-only path never needs it).
"""

from __future__ import annotations

import json
import math
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rerf_codec.codec.accounting import frame_type_summary
from rerf_codec.codec.encoder import EncoderConfig, encode_sequence
from rerf_codec.codec.files import decode_to_directory
from rerf_codec.errors import RerfUsageError
from rerf_codec.gridseq import iter_full_frames, read_meta
from rerf_codec.metrics import psnr_from_mse
from rerf_codec.synthetic import SyntheticSpec, write_synthetic_sequence

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
    return psnr_from_mse(mse, peak)


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


def _prepare_out_dir(out_dir: str | Path, force: bool) -> Path:
    """The demo's output folder: refused if it exists (unless ``force``) or its parent is missing."""
    out = Path(out_dir)
    if out.exists() and not force:
        raise RerfUsageError(f"{out} exists", hint=("force", "to overwrite"))
    if out.exists() and not out.is_dir():
        raise RerfUsageError(f"{out} exists and is not a directory")
    if not out.parent.is_dir():
        raise RerfUsageError(f"output folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    return out


def run_codec_demo(
    out_dir: str | Path = "demo-out",
    *,
    quick: bool = False,
    force: bool = False,
    progress: DemoProgress | None = None,
) -> dict[str, Any]:
    """The codec alone (``rerf demo --codec-only``): generate, encode, decode, verify, measure.

    Returns the summary as a JSON-ready dict.

    ``out_dir`` must not exist unless ``force`` (then only the demo's own outputs in it
    are replaced); its parent folder must exist.
    """
    out = _prepare_out_dir(out_dir, force)
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
    raw = enc.raw_float32_bytes
    return {
        "out_dir": str(out),
        "sequence": str(seq_dir),
        "rerf": str(rerf_path),
        "play_command": f"rerf play {shlex.quote(str(rerf_path))}",  # the browser player
        "decoded": str(decoded_dir),
        "quick": quick,
        "frames": n,
        "grid_shape": list(spec.shape),
        "feature_channels": spec.feature_channels,
        "raw_float32_bytes": raw,
        "raw_float32_mb": raw / 1e6,
        "file_bytes": enc.file_bytes,
        "kb_per_frame": enc.kb_per_frame,
        "compression_ratio": enc.compression_ratio,
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


# --------------------------------------------------------------------------- the full pipeline

DEMO_SCENE: dict[str, Any] = {"frames": 20, "cameras": 21, "test_cameras": 2, "size": 64}
QUICK_SCENE: dict[str, Any] = {"frames": 4, "cameras": 6, "test_cameras": 1, "size": 48}
"""Arguments of ``render_demo_dataset`` (full demo / ``--quick``). 21 training cameras (7 per ring),
was 12: with 12 views of 64 px each frame's quality was set by the views, not the trainer (frames
fitted alone scored 25.6–29.5 dB), and 5 of 19 residual frames fell more than 1 dB below the
keyframe. Residual frames within 1 dB of the keyframe for 12 / 15 / 18 / **21** / 24 cameras:
14 / 14 / 19 / **19** / 15 of 19, mean 28.2 / 28.0 / 29.3 / **29.4** / 29.6 dB (12: demo run 18;
the others: all 20 frames trained by the demo's settings, 1 thread; BENCHMARKS, "Session 7").
21 leaves the widest margin (0.4 dB). The cost is the dataset's render (~2 s) and its size;
training draws the same number of rays per iteration."""

DEMO_TRAIN: dict[str, Any] = {"resolution": 48, "iters_key": 300, "iters_motion": 70,
                              "iters_refresh": 100, "batch_rays": 2048, "batch_rays_residual": 1024,
                              "mlp_width": 64, "lr_residual": 0.16, "l1": 1e-4, "iters_residual": 120,
                              "tv_features": 0.01}  # fmt: skip
QUICK_TRAIN: dict[str, Any] = {"resolution": 32, "iters_key": 200, "iters_motion": 15, "iters_residual": 30,
                               "iters_refresh": 40, "batch_rays": 1024, "batch_rays_residual": 512, "mlp_width": 32,
                               "growth": (0.3,)}  # fmt: skip
"""``TrainConfig`` overrides: a few minutes (full) or seconds (quick) of training on a 2-core CPU.
With deferred shading (session 4) 70 motion / 120 residual iterations give the same residual
frames as 80 / 150 (mean 27.61 against 27.59 dB test PSNR, worst 26.38 against 25.94) for 22 %
less CPU per frame (BENCHMARKS, "Deferred shading, session 4"). Residual step 0.16 and L1 1e-4 (session 5,
was 0.08 / 3e-4): frames 1–10 0.75 dB better on average (28.49 against 27.75 dB), 9 of 10 within 1 dB
of the keyframe against 4, residual zeros 94 % against 95 % (BENCHMARKS, "Session 5"). The rescue step
is the residual's own, 0.16 (the default since session 7: `lr_rescue` None; it was 1.0, tuned on
crane's 0.3 residual step), so the rescue of a drifting frame is 100 more iterations at the same
step. With 1.0 the one frame of the 21-camera demo that needed it came out with features up to 13
(±5 elsewhere), 0.7 dB below its neighbours, and as the keyframe of the encoder's second GOF it set that GOF's quantiser 3× coarser;
0.16 / 0.25 / 0.4 / 1.0 gave that frame 28.74 / 28.78 / 28.65 / 27.98 dB with features within
±5.1 / ±5.9 / ±7.0 / ±13.2 (BENCHMARKS, "Session 7")."""

DEMO_QUALITY = 55
"""Encoder quality of the full demo: the knee of its rate–distortion curve. Measured on the demo's
trained sequence (BENCHMARKS, "Session 5", run 15), PSNR against ground truth / kB per frame:
q50 27.84 dB / 10.2, **q55 28.11 / 18.2**, q58 28.20 / 25.5, q60 28.23 / 31.6 — q60 costs 74 %
more bytes than q55 for 0.12 dB (session 4: q60; session 3, per-sample shading: q65). Re-measured
on the 21-camera demo (session 7, run 21): q50 28.54 / 8.8, **q55 28.96 / 15.6**, q58 29.13 / 22.3,
q60 29.20 / 28.0, q62 29.25 / 34.7 — still the knee (q60: +79 % bytes for +0.24 dB).
With residuals fitted coarse to fine (session 8, run 23): q50 28.34 / 7.2, **q55 28.71 / 11.4**,
q58 28.89 / 15.1, q60 28.99 / 18.3, q65 29.18 / 29.2 — the knee still (q60: +61 % for +0.28 dB).
``--quick`` keeps the encoder's default."""

TURNTABLE_SIZE = {False: (128, 128), True: (64, 64)}
SHEET_ROWS = 4
SHEET_GAP = 2


def _contact_sheet(kept: dict[tuple[int, str], dict[str, np.ndarray]], frames: list[int], cams: list[str]) -> np.ndarray:
    """Rows: frames; per test camera three tiles: ground truth | uncompressed grids | stream (white gaps)."""
    tiles = []
    for f in frames:
        row = []
        for c in cams:
            k = kept[(f, c)]
            row += [k["gt"], k["reference"], k["stream"]]
        tiles.append(row)
    h, w = tiles[0][0].shape[:2]
    g = SHEET_GAP
    n_rows, n_cols = len(tiles), len(tiles[0])
    sheet = np.full((n_rows * (h + g) + g, n_cols * (w + g) + g, 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            sheet[g + r * (h + g) : g + r * (h + g) + h, g + c * (w + g) : g + c * (w + g) + w] = tile
    return sheet


def run_demo(
    out_dir: str | Path = "demo-out",
    *,
    quick: bool = False,
    force: bool = False,
    progress: DemoProgress | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """dataset → train → encode → decode → eval → turntable + contact sheet; returns the summary.

    ``out_dir`` must not exist unless ``force`` (then the demo's own outputs in it are replaced);
    its parent folder must exist. ``progress(stage, done, total)``; stages: dataset, train,
    encode, decode, eval, render.
    """
    import imageio.v3 as iio

    from rerf_codec.atomic import atomic_file
    from rerf_codec.datasets.demo_scene import render_demo_dataset
    from rerf_codec.eval import LPIPS_STATUS, evaluate
    from rerf_codec.player import play
    from rerf_codec.train.config import TrainConfig
    from rerf_codec.train.driver import TrainRequest, train_sequence

    out = _prepare_out_dir(out_dir, force)
    scene = QUICK_SCENE if quick else DEMO_SCENE
    train_cfg = TrainConfig(**(QUICK_TRAIN if quick else DEMO_TRAIN))
    data_dir, seq_dir, rerf_path = out / "dataset", out / "sequence", out / "demo.rerf"
    decoded_dir, video, sheet_path = out / "decoded", out / "turntable.mp4", out / "contact_sheet.png"
    n = int(scene["frames"])

    def step(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    t0 = time.perf_counter()
    render_demo_dataset(data_dir, **scene, force=force, progress=lambda d, t: step("dataset", d, t))
    t_data = time.perf_counter() - t0

    trained = 0

    def train_events(kind: str, info: dict[str, Any]) -> None:
        nonlocal trained
        if kind == "frame":
            trained += 1
            step("train", trained, n)

    t1 = time.perf_counter()
    summary_train = train_sequence(TrainRequest(data_dir, seq_dir, device=device, force=force), train_cfg, train_events)
    t_train = time.perf_counter() - t1

    config = EncoderConfig() if quick else EncoderConfig(quality=DEMO_QUALITY)
    enc = encode_sequence(seq_dir, rerf_path, config, force=force,
                          progress=lambda rep: step("encode", rep.index + 1, n))  # fmt: skip
    with open(rerf_path, "rb") as f:
        dec = decode_to_directory(f, decoded_dir, force=force, progress=lambda d, t: step("decode", d, t))

    keep = sorted({round(i * (n - 1) / max(1, SHEET_ROWS - 1)) for i in range(min(SHEET_ROWS, n))})
    with open(rerf_path, "rb") as f:
        ev = evaluate(f, data_dir, reference=seq_dir, device=device, keep=set(keep), stream_name=str(rerf_path),
                      progress=lambda d, t, m: step("eval", d, t))  # fmt: skip
    ev_json = ev.to_json()
    with atomic_file(out / "eval.json", force=force) as f:
        f.write((json.dumps(ev_json, indent=2, allow_nan=False) + "\n").encode())

    with open(rerf_path, "rb") as f:
        player = play(f, video, camera="orbit", size=TURNTABLE_SIZE[quick], device=device, force=force,
                      progress=lambda fr, d, t: step("render", d, t))  # fmt: skip
    sheet = _contact_sheet(ev.kept, keep, ev.cameras)
    with atomic_file(sheet_path, force=force) as f:
        f.write(iio.imwrite("<bytes>", sheet, extension=".png"))

    meta = read_meta(seq_dir)
    raw = enc.raw_float32_bytes
    mean = ev_json["mean"]
    pj = player.to_json()
    s: dict[str, Any] = {
        "out_dir": str(out),
        "quick": quick,
        "device": device,
        "dataset": str(data_dir),
        "sequence": str(seq_dir),
        "rerf": str(rerf_path),
        "play_command": f"rerf play {shlex.quote(str(rerf_path))} --dataset {shlex.quote(str(data_dir))}",
        "decoded": str(decoded_dir),
        "eval": str(out / "eval.json"),
        "turntable": str(video),
        "contact_sheet": str(sheet_path),
        "contact_sheet_frames": keep,
        "frames": n,
        "scene": dict(scene),
        "train_config": train_cfg.to_json(),
        "grid_shape": list(meta.grid_shape),
        "feature_channels": meta.feature_channels,
        "raw_float32_bytes": raw,
        "raw_float32_mb": raw / 1e6,
        "file_bytes": enc.file_bytes,
        "kb_per_frame": enc.kb_per_frame,
        "compression_ratio": enc.compression_ratio,
        "quality": enc.config["quality"],
        "gof": config.gof,
        "test_cameras": ev.cameras,
        "psnr_db": mean["psnr"],
        "ssim": mean["ssim"],
        "reference_psnr_db": mean["reference_psnr"],
        "reference_ssim": mean["reference_ssim"],
        "psnr_loss_from_coding_db": mean["psnr_loss_from_coding"],
        "psnr_vs_reference_db": mean["psnr_vs_reference"],
        "lpips": LPIPS_STATUS,
        "keyframe_train_test_psnr": summary_train["keyframe_test_psnr"],
        "dataset_seconds": t_data,
        "train_seconds": t_train,
        "train_seconds_per_frame": t_train / n,
        "encode_seconds": enc.seconds,
        "encode_fps": n / enc.seconds if enc.seconds > 0 else None,
        "decode_seconds": dec.seconds,
        "decode_fps": dec.frames_per_second,
        "render_size": list(TURNTABLE_SIZE[quick]),
        "player_decode_ms_per_frame": pj["decode_ms_per_frame"],
        "render_ms_per_frame": pj["render_ms_per_frame"],
        "render_fps": 1e3 / pj["render_ms_per_frame"] if pj["render_ms_per_frame"] > 0 else None,
        "player_fps": pj["frames_per_second"],
        "realtime_factor": pj["realtime_factor"],
        "eval_seconds": ev.seconds,
        "encoder_sha256": enc.sha256,
        "decoder_sha256": dec.sha256,
        "sha256_match": enc.sha256 == dec.sha256,
    }
    s["seconds"] = time.perf_counter() - t0
    with atomic_file(out / "summary.json", force=force) as f:
        f.write((json.dumps(s, indent=2, allow_nan=False) + "\n").encode())
    return s
