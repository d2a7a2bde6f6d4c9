"""The codec benchmark runs end to end on a tiny config and reports sane figures."""

from __future__ import annotations

import json
import math

import pytest

from rerf_codec.bench import codec_bench

TINY = ["--shape", "24", "24", "24", "--frames", "2", "--runs", "1", "--channels", "4", "--qualities", "50,90"]


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert codec_bench.main([*TINY, "--json-out", str(out)]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_json_has_every_figure(tiny_result):
    res = tiny_result
    for key in ("command", "date_utc", "machine", "spec", "figures", "pass", "encode", "decode", "size",
                "quality_metrics", "baselines", "decoder_memory", "sweep", "targets"):
        assert key in res, key
    assert set(res["pass"]) == set(codec_bench.TARGETS)
    for key in codec_bench.TARGETS:
        assert key in res["figures"], key
    assert res["command"].startswith("python -m rerf_codec.bench.codec_bench")
    assert res["machine"]["cpu"] and res["machine"]["numpy"]
    assert res["spec"]["shape"] == [24, 24, 24] and res["spec"]["channels_total"] == 5


def test_figures_are_sane(tiny_result):
    f = tiny_result["figures"]
    assert f["encode_fps"] > 0 and f["decode_fps"] > 0 and f["decode_sha256_fps"] > 0
    assert f["feature_psnr_db"] > 20
    assert f["density_psnr_db"] > 20
    assert f["ratio_vs_zstd19_f16"] > 1
    assert f["ratio_vs_raw_f32"] > 1
    assert 0 <= f["entropy_overhead_pct"] < 5
    assert math.isfinite(f["decoder_peak_dense_frames"]) and f["decoder_peak_dense_frames"] > 0
    assert tiny_result["decode"]["bit_exact"] is True


def test_sizes_are_real_file_bytes(tiny_result):
    size = tiny_result["size"]
    sections = sum(size["section_bytes"].values())
    # the file is the frame records plus the sequence header and the container (GOF headers, index)
    assert size["file_bytes"] == sections + size["header_bytes"] + size["container_bytes"]
    assert tiny_result["baselines"]["raw_f32_bytes"] == 24**3 * 5 * 4 * 2
    assert tiny_result["baselines"]["zstd_f16"]["bytes"] > 0


def test_sweep_rows(tiny_result):
    qs = [r["quality"] for r in tiny_result["sweep"]]
    assert qs == [50, 90]
    # better quality costs bytes and buys PSNR
    lo, hi = tiny_result["sweep"]
    assert hi["file_bytes"] > lo["file_bytes"]
    assert hi["feature_psnr_db"] > lo["feature_psnr_db"]


def test_table_prints(tiny_result, capsys):
    # the table formatter works on the same result (round-tripped through JSON)
    text = codec_bench.format_table(tiny_result)
    assert "decode fps" in text and "ratio vs float16 + zstd-19" in text


def test_bad_arguments_exit_2():
    assert codec_bench.main(["--shape", "24", "24", "24", "--frames", "1", "--runs", "0", "--qualities", ""]) == 2


def test_default_is_intra_only(tiny_result):
    assert tiny_result["gof"] == 1
    assert tiny_result["encode"]["frame_types"] == {"intra": 2}


def test_zstd_baseline_can_be_skipped(tmp_path, capsys):
    out = tmp_path / "b.json"
    argv = ["--shape", "16", "16", "16", "--frames", "1", "--runs", "1", "--channels", "2", "--qualities", "",
            "--zstd-level", "0", "--json-out", str(out)]
    assert codec_bench.main(argv) == 0
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["baselines"]["zstd_f16"] is None
    assert res["figures"]["ratio_vs_zstd19_f16"] is None and res["pass"]["ratio_vs_zstd19_f16"] is None
    assert "ratio vs float16 + zstd-19" in capsys.readouterr().out
