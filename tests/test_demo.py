"""rerf demo: the whole pipeline (--quick, as CI runs it; the full demo as `make demo` runs it, marked slow:
it trains for 5–15 minutes on 2 cores) and the codec-only demo."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from rerf_codec.demo import DEMO_SCENE, QUICK_SCENE, SHEET_GAP

# Floors for the demo's figures (measured, quick: PSNR ~20 dB, SSIM ~0.84, ratio ~39×, coding
# loss ~0.02 dB, stream vs uncompressed renders ~54 dB; full: ~20.7 dB, ~0.85, ~111×, ~0.04 dB,
# ~45 dB). A broken trainer, renderer, codec or evaluation lands far below them; the floors leave
# room for trainer tuning and machine noise.
PSNR_FLOOR_DB = 15.0
SSIM_FLOOR = 0.5
RATIO_FLOOR = 10.0
CODING_LOSS_CEILING_DB = 2.0
VS_REFERENCE_FLOOR_DB = 35.0


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(res) -> None:
    assert res.exit_code == 2 and res.stderr.startswith("rerf: error: ") and res.stderr.count("\n") == 1, res.stderr


@pytest.mark.parametrize("quick", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["quick", "full"])
def test_demo_pipeline(tmp_path, quick):
    torch.set_num_threads(1)
    out = tmp_path / "demo"
    scene = QUICK_SCENE if quick else DEMO_SCENE
    quick_flag = ["--quick"] if quick else []
    res = run("demo", "-o", out, *quick_flag, "--json")
    assert res.exit_code == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["sha256_match"] is True and s["encoder_sha256"] == s["decoder_sha256"]
    assert s["frames"] == scene["frames"] and s["feature_channels"] == 12
    # the figures are sane, not just present
    assert s["psnr_db"] > PSNR_FLOOR_DB and s["ssim"] > SSIM_FLOOR
    assert s["reference_psnr_db"] > PSNR_FLOOR_DB
    assert s["compression_ratio"] > RATIO_FLOOR
    assert -0.5 < s["psnr_loss_from_coding_db"] < CODING_LOSS_CEILING_DB
    assert s["psnr_vs_reference_db"] > VS_REFERENCE_FLOOR_DB
    assert s["psnr_loss_from_coding_db"] == s["reference_psnr_db"] - s["psnr_db"]
    assert s["raw_float32_bytes"] == np.prod(s["grid_shape"]) * 13 * 4 * s["frames"]
    assert s["file_bytes"] == (out / "demo.rerf").stat().st_size
    assert abs(s["kb_per_frame"] * 1e3 * s["frames"] - s["file_bytes"]) < 1
    for key in ("encode_fps", "decode_fps", "render_fps", "player_fps", "realtime_factor"):
        assert s[key] > 0, key
    assert s["lpips"] == "not available offline"
    # everything under DIR
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["dataset", "sequence", "demo.rerf", "decoded", "eval.json", "turntable.mp4", "contact_sheet.png",
         "summary.json"]
    )  # fmt: skip
    assert list(tmp_path.iterdir()) == [out]
    assert json.loads((out / "summary.json").read_text())["file_bytes"] == s["file_bytes"]
    ev = json.loads((out / "eval.json").read_text())
    assert ev["num_frames"] == s["frames"] and ev["mean"]["psnr"] == s["psnr_db"]
    assert (out / "turntable.mp4").stat().st_size > 1000
    sheet = iio.imread(out / "contact_sheet.png")
    rows, cams, size = len(s["contact_sheet_frames"]), len(s["test_cameras"]), scene["size"]
    assert sheet.shape == (rows * (size + SHEET_GAP) + SHEET_GAP, 3 * cams * (size + SHEET_GAP) + SHEET_GAP, 3)
    # the table a person reads
    assert_one_line_error(run("demo", "-o", out, *quick_flag))


def test_demo_table_format(tmp_path, monkeypatch):
    """The human table from a canned summary (the pipeline itself is tested above)."""
    import rerf_codec.demo as demo

    s = {
        "out_dir": str(tmp_path), "grid_shape": [32, 32, 32], "render_size": [64, 64], "frames": 4,
        "scene": dict(QUICK_SCENE), "feature_channels": 12, "train_seconds": 30.0, "train_seconds_per_frame": 7.5,
        "raw_float32_mb": 6.8, "file_bytes": 175000, "kb_per_frame": 43.75, "quality": 75, "gof": 20,
        "compression_ratio": 38.9, "psnr_db": 20.4, "reference_psnr_db": 20.42, "test_cameras": ["cam003"],
        "psnr_loss_from_coding_db": 0.02, "psnr_vs_reference_db": 54.0, "ssim": 0.83, "reference_ssim": 0.84,
        "lpips": "not available offline", "encode_fps": 12.0, "encode_seconds": 0.3, "decode_fps": 27.0,
        "decode_seconds": 0.14, "render_fps": 18.0, "device": "cpu", "player_fps": 10.0, "realtime_factor": 0.34,
        "sha256_match": True, "decoder_sha256": "ab" * 32, "seconds": 38.0,
        "play_command": "rerf play demo-out/demo.rerf --dataset demo-out/dataset",
    }  # fmt: skip
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: s)
    res = run("demo", "-o", tmp_path / "x")
    assert res.exit_code == 0, res.stderr
    for word in ("kB/frame", "38.9× vs raw", "PSNR vs GT", "20.40 dB stream", "coding loss", "0.02 dB",
                 "render", "real-time factor", "sha256 match  yes", "lpips not available offline",
                 "watch it in the browser: rerf play demo-out/demo.rerf"):  # fmt: skip
        assert word in res.stdout, word
    s["sha256_match"] = False
    res = run("demo", "-o", tmp_path / "x")
    assert res.exit_code == 1 and "differs" in res.stderr


def test_demo_codec_only(tmp_path):
    out = tmp_path / "demo"
    res = run("demo", "-o", out, "--quick", "--codec-only", "--json")
    assert res.exit_code == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["sha256_match"] is True and s["encoder_sha256"] == s["decoder_sha256"]
    assert s["frames"] == 6 and s["grid_shape"] == [32, 32, 32]
    assert s["feature_psnr_db"] > 30 and s["density_psnr_db"] > 30
    assert s["compression_ratio"] > 10
    # the default GOF (20) holds the whole sequence: one keyframe, then residual frames
    assert s["gof"] == 20 and s["intra_frames"] == 1 and s["residual_frames"] == 5
    assert s["intra_kb_per_frame"] > 0 and s["residual_kb_per_frame"] > 0 and s["motion_bytes"] > 0
    kb = s["intra_kb_per_frame"] * 1 + s["residual_kb_per_frame"] * 5
    assert kb * 1e3 < s["file_bytes"]  # + header and container
    assert s["file_bytes"] == (out / "demo.rerf").stat().st_size
    assert sorted(p.name for p in out.iterdir()) == ["decoded", "demo.rerf", "sequence"]
    assert list(tmp_path.iterdir()) == [out]
    assert_one_line_error(run("demo", "-o", out, "--quick", "--codec-only"))
    res = run("demo", "-o", out, "--quick", "--codec-only", "--force")
    assert res.exit_code == 0, res.stderr
    for word in ("compression", "feature PSNR", "density PSNR", "sha256 match  yes", "keyframes", "residual"):
        assert word in res.stdout
