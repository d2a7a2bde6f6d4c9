"""The residual-coding benchmark runs end to end on a tiny config and reports sane figures."""

from __future__ import annotations

import json
import math

import pytest

from rerf_codec.bench import residual_bench

TINY = ["--sequences", "synthetic", "--resolution", "24", "--frames", "4", "--qualities", "60,75", "--runs", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("residual-bench")
    js, md = d / "bench.json", d / "bench.md"
    assert residual_bench.main([*TINY, "--json-out", str(js), "--md-out", str(md)]) == 0
    return json.loads(js.read_text(encoding="utf-8")), md.read_text(encoding="utf-8")


def test_json_has_every_figure(tiny):
    res, _ = tiny
    for key in ("command", "date_utc", "machine", "loadavg_start", "loadavg_end", "settings", "targets", "sequences"):
        assert key in res, key
    assert res["command"].startswith("python -m rerf_codec.bench.residual_bench")
    assert res["machine"]["cpu"] and res["machine"]["numpy"]
    assert list(res["sequences"]) == ["synthetic"]
    seq = res["sequences"]["synthetic"]
    assert seq["grid_shape"] == [24, 24, 24] and seq["channels_total"] == 13 and seq["frames"] == 4
    assert set(seq["pass"]) == set(residual_bench.TARGETS)
    for key in residual_bench.TARGETS:
        assert key in seq["figures"], key
    for key in ("curves", "equal_psnr", "encode", "decode", "intra_decode", "rate_control"):
        assert key in seq, key


def test_curves(tiny):
    res, _ = tiny
    curves = res["sequences"]["synthetic"]["curves"]
    assert list(curves) == list(residual_bench.MODES)
    for mode, pts in curves.items():
        assert [p["quality"] for p in pts] == [60, 75], mode
        lo, hi = pts
        assert hi["file_bytes"] > lo["file_bytes"] > 0
        assert hi["feature_psnr_db"] > lo["feature_psnr_db"] > 20
        assert hi["density_psnr_db"] > 20
        assert hi["bit_exact"] and lo["bit_exact"]
        assert math.isclose(lo["bytes_per_frame"], lo["file_bytes"] / 4)
        expected = {"intra": 4} if mode == "intra" else {"intra": 1, "residual": 3}
        assert lo["frame_types"] == expected, mode
    assert res["sequences"]["synthetic"]["all_bit_exact"] is True


def test_figures_are_sane(tiny):
    res, _ = tiny
    seq = res["sequences"]["synthetic"]
    f = seq["figures"]
    eq = seq["equal_psnr"]
    assert f["encode_fps"] > 0 and f["decode_fps"] > 0 and f["intra_decode_fps"] > 0
    assert 0 < f["residual_vs_intra_bytes"] < 2
    assert set(eq["bytes_per_frame"]) == set(residual_bench.MODES)
    assert all(b > 0 for b in eq["bytes_per_frame"].values())
    b = eq["bytes_per_frame"]
    assert math.isclose(f["residual_vs_intra_bytes"], b["search"] / b["intra"])
    if f["motion_gain_recovery"] is not None:
        assert math.isclose(f["motion_gain_recovery"], (b["zero"] - b["search"]) / (b["zero"] - b["trainer"]))
    d = seq["decode"]
    assert d["frame_types"] == ["intra", "residual", "residual", "residual"]
    assert d["keyframe_ms_mean"] > 0 and d["residual_frame_ms_mean"] > 0
    assert len(seq["encode"]["seconds"]) == 1


def test_rate_control(tiny):
    res, _ = tiny
    rc = res["sequences"]["synthetic"]["rate_control"]
    assert [r["fraction_of_default"] for r in rc] == [0.6, 1.5]
    for r in rc:
        assert r["achieved_bytes_per_frame"] > 0
        assert math.isclose(r["achieved_over_target"], r["achieved_bytes_per_frame"] / r["target_bytes_per_frame"])
        assert 0.5 < r["achieved_over_target"] < 2
    assert rc[1]["achieved_bytes_per_frame"] > rc[0]["achieved_bytes_per_frame"]


def test_markdown_and_table(tiny):
    res, md = tiny
    assert md.startswith("## Residual coding (GOF, motion, rate control)")
    assert "| Figure | Target | synthetic | Command |" in md
    assert "python -m rerf_codec.bench.residual_bench" in md
    # the formatters work on the JSON round trip too
    assert residual_bench.format_markdown(res).startswith("## Residual coding")
    assert "decode fps" in residual_bench.format_table(res)


def test_bytes_at_psnr_interpolates_log_linearly():
    pts = [{"feature_psnr_db": 40.0, "bytes_per_frame": 1000.0}, {"feature_psnr_db": 50.0, "bytes_per_frame": 4000.0}]
    b, ex = residual_bench.bytes_at_psnr(pts, 45.0)
    assert math.isclose(b, 2000.0) and not ex
    b, ex = residual_bench.bytes_at_psnr(pts, 55.0)
    assert math.isclose(b, 8000.0) and ex


def test_missing_mesh_is_skipped(tmp_path):
    res = residual_bench.run_bench(
        sequences=["crane"], mesh=str(tmp_path / "missing.npz"), resolution=24, frames=2, qualities=[75], runs=1,
        log=lambda _msg: None,
    )
    assert "skipped" in res["sequences"]["crane"]
    md = residual_bench.format_markdown(res)
    assert "missing" in md


def test_bad_arguments_exit_2():
    assert residual_bench.main(["--sequences", "nope"]) == 2
    assert residual_bench.main([*TINY, "--runs", "0"]) == 2
