"""The ``rerf`` command line: happy paths, --json documents, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `cli` is a top-level package next to rerf_codec
    sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

from cli.main import cli  # noqa: E402
from rerf_codec.errors import RerfUsageError  # noqa: E402
from rerf_codec.framerange import FrameRange  # noqa: E402
from rerf_codec.gridseq import read_frame, read_meta  # noqa: E402
from rerf_codec.synthetic import SyntheticSpec, write_synthetic_sequence  # noqa: E402

SPEC = SyntheticSpec(shape=(24, 20, 17), feature_channels=3, num_frames=5, seed=1)
RERF = ROOT / ".venv" / "bin" / "rerf"


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def assert_one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.stdout
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rerf: error: ") if code == 2 else lines[0].startswith("rerf: ")
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    write_synthetic_sequence(d / "seq", SPEC)
    res = run("encode", d / "seq", "-o", d / "a.rerf", "--gof", "2", "--json")
    assert res.exit_code == 0, res.stderr
    return d, json.loads(res.stdout)


@pytest.fixture(scope="module")
def full_decode(work):
    d, _ = work
    res = run("decode", d / "a.rerf", "-o", d / "full", "--json")
    assert res.exit_code == 0, res.stderr
    return d / "full", json.loads(res.stdout)


# --------------------------------------------------------------------------- encode


def test_encode_json(work):
    d, rep = work
    size = (d / "a.rerf").stat().st_size
    for key in ("output", "num_frames", "file_bytes", "sha256", "seconds", "frames", "totals", "compression_ratio"):
        assert key in rep
    assert rep["num_frames"] == 5 and rep["file_bytes"] == size and len(rep["frames"]) == 5
    assert sum(rep["totals"].values()) == size
    assert len(rep["sha256"]) == 64


def test_encode_human_and_options(tmp_path, work):
    d, _ = work
    out = tmp_path / "b.rerf"
    res = run(
        "encode", d / "seq", "-o", out, "--quality", "40", "--density-quality", "90", "--gof", "3", "--gof-fixed"
    )
    assert res.exit_code == 0, res.stderr
    assert "encoded 5 frames" in res.stdout and "sha256 " in res.stdout
    assert res.stderr == ""  # no progress bar off a terminal
    info = json.loads(run("info", out, "--json").stdout)
    enc = info["header"]["encoder"]
    assert (enc["quality"], enc["density_quality"], enc["gof"], enc["gof_fixed"]) == (40, 90, 3, True)
    assert [g["num_frames"] for g in info["gofs"]] == [3, 2]
    assert [g["start_reason"] for g in info["gofs"]] == ["first", "max-length"]
    assert info["gofs"][0]["density_quality"] == 90 and info["gofs"][0]["quality"] == 40


def test_existing_output_needs_force(tmp_path, work):
    d, _ = work
    out = tmp_path / "x.rerf"
    out.write_bytes(b"keep me")
    line = assert_one_line_error(run("encode", d / "seq", "-o", out))
    assert "--force" in line
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.rerf"]
    assert run("encode", d / "seq", "-o", out, "--force").exit_code == 0
    assert out.read_bytes()[:4] == b"RERF"


# --------------------------------------------------------------------------- info


def test_info_json_sums_to_file_size(work):
    d, enc = work
    size = (d / "a.rerf").stat().st_size
    res = run("info", d / "a.rerf", "--json")
    assert res.exit_code == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["file_bytes"] == size
    assert set(info["totals"]) == {"mask", "motion", "coefficients", "side_info", "header", "container"}
    assert sum(info["totals"].values()) == size
    assert info["totals"] == enc["totals"]
    h = info["header"]
    assert h["grid_shape"] == [24, 20, 17] and h["feature_channels"] == 3 and h["num_frames"] == 5
    assert h["gof_size"] == 2 and h["encoder"]["quality"] == 75 and h["tensors"] == {}
    assert [g["first_frame"] for g in info["gofs"]] == [0, 2, 4]
    assert sum(g["bytes"] for g in info["gofs"]) + h["header_bytes"] < size  # + index + footer
    assert [f["index"] for f in info["frames"]] == list(range(5))
    for f in info["frames"]:
        assert f["type"] == ("intra" if f["index"] % 2 == 0 else "residual")  # gof 2
        assert sum(f["bytes"].values()) == f["total_bytes"]
    for f, e in zip(info["frames"], enc["frames"], strict=True):
        assert f["total_bytes"] == e["total_bytes"]


def test_info_human_and_stdin(work):
    d, _ = work
    res = run("info", d / "a.rerf")
    assert res.exit_code == 0, res.stderr
    for word in ("24×20×17", "GOF", "frame", "coefficients", "container", "total"):
        assert word in res.stdout
    data = (d / "a.rerf").read_bytes()
    via_stdin = json.loads(run("info", "-", "--json", input=data).stdout)
    assert via_stdin == json.loads(run("info", d / "a.rerf", "--json").stdout)


# --------------------------------------------------------------------------- decode


def test_decode_matches_encoder_sha(work, full_decode):
    d, enc = work
    out, rep = full_decode
    assert rep["sha256"] == enc["sha256"]
    for key in ("out_dir", "frames", "num_frames", "sha256", "seconds", "frames_per_second", "damaged"):
        assert key in rep
    assert rep["frames"] == [0, 5] and rep["damaged"] == []
    assert sorted(p.name for p in (out / "frames").iterdir()) == [f"{i:06d}.npz" for i in range(5)]
    meta = read_meta(out)
    assert meta.num_frames == 5 and meta.first_frame == 0 and meta.grid_shape == (24, 20, 17)
    res = run("decode", d / "a.rerf", "-o", d / "verified", "--verify", enc["sha256"].upper())
    assert res.exit_code == 0, res.stderr
    assert f"sha256 {enc['sha256']}  (verified)" in res.stdout


def test_decode_verify_mismatch_writes_nothing(tmp_path, work):
    d, enc = work
    wrong = ("0" if enc["sha256"][0] != "0" else "1") + enc["sha256"][1:]
    line = assert_one_line_error(run("decode", d / "a.rerf", "-o", tmp_path / "out", "--verify", wrong))
    assert "does not match" in line
    assert list(tmp_path.iterdir()) == []


def test_decode_existing_output_needs_force(tmp_path, work, full_decode):
    d, enc = work
    out = tmp_path / "out"
    out.mkdir()
    (out / "note.txt").write_text("mine")
    assert_one_line_error(run("decode", d / "a.rerf", "-o", out))
    assert (out / "note.txt").read_text() == "mine"
    # --force replaces a grid sequence (not an arbitrary directory)
    seq = tmp_path / "seq"
    assert run("decode", d / "a.rerf", "-o", seq, "--frames", "0:1").exit_code == 0
    assert_one_line_error(run("decode", d / "a.rerf", "-o", seq))
    res = run("decode", d / "a.rerf", "-o", seq, "--force", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["sha256"] == enc["sha256"]


def test_decode_frame_range(tmp_path, work, full_decode):
    d, _ = work
    full, _ = full_decode
    res = run("decode", d / "a.rerf", "-o", tmp_path / "part", "--frames", "2:4", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["frames"] == [2, 4] and rep["num_frames"] == 2
    part = tmp_path / "part"
    assert sorted(p.name for p in (part / "frames").iterdir()) == ["000002.npz", "000003.npz"]
    meta, full_meta = read_meta(part), read_meta(full)
    assert meta.first_frame == 2 and meta.num_frames == 2
    for i in (2, 3):
        a, b = read_frame(part, i, meta), read_frame(full, i, full_meta)
        assert np.array_equal(a.density, b.density) and np.array_equal(a.features, b.features)
    # open-ended forms
    rep = json.loads(run("decode", d / "a.rerf", "-o", tmp_path / "tail", "--frames", "3:", "--json").stdout)
    assert rep["frames"] == [3, 5]


def test_decode_stdin(tmp_path, work):
    d, enc = work
    res = run("decode", "-", "-o", tmp_path / "out", "--json", input=(d / "a.rerf").read_bytes())
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["sha256"] == enc["sha256"]


def _corrupt(src: Path, dst: Path, gof: int) -> None:
    info = json.loads(run("info", src, "--json").stdout)
    g = info["gofs"][gof]
    data = bytearray(src.read_bytes())
    data[g["offset"] + g["bytes"] // 2] ^= 0xFF
    dst.write_bytes(bytes(data))


def test_damaged_stream(tmp_path, work, full_decode):
    d, _ = work
    full, _ = full_decode
    bad = tmp_path / "bad.rerf"
    _corrupt(d / "a.rerf", bad, gof=1)
    line = assert_one_line_error(run("decode", bad, "-o", tmp_path / "x"))
    assert "CRC32" in line and str(bad) in line
    assert not (tmp_path / "x").exists()
    assert_one_line_error(run("info", bad))

    res = run("decode", bad, "-o", tmp_path / "x", "--skip-damaged", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["damaged_frames"] == [2, 3]
    assert rep["damaged"][0]["frames"] == [2, 4] and "CRC32" in rep["damaged"][0]["reason"]
    warn = res.stderr.strip().splitlines()
    assert len(warn) == 1 and warn[0].startswith("rerf: warning: frames 2:4 damaged")
    meta = read_meta(tmp_path / "x")
    assert meta.extra["damaged_frames"] == [2, 3] and meta.num_frames == 5
    prev = read_frame(full, 1, read_meta(full))
    for i in (2, 3):  # frozen on the last good frame
        fr = read_frame(tmp_path / "x", i, meta)
        assert np.array_equal(fr.density, prev.density) and np.array_equal(fr.features, prev.features)
    good = read_frame(tmp_path / "x", 4, meta)
    assert np.array_equal(good.features, read_frame(full, 4, read_meta(full)).features)

    # the first GOF damaged: concealed with an empty (transparent) frame
    bad0 = tmp_path / "bad0.rerf"
    _corrupt(d / "a.rerf", bad0, gof=0)
    rep = json.loads(run("decode", bad0, "-o", tmp_path / "y", "--skip-damaged", "--json").stdout)
    assert rep["damaged_frames"] == [0, 1]
    fr = read_frame(tmp_path / "y", 0, read_meta(tmp_path / "y"))
    assert not fr.features.any() and (fr.density <= 0).all()


# --------------------------------------------------------------------------- residual frames, motion, rate control

MOVING = SyntheticSpec(shape=(40, 40, 40), feature_channels=3, num_frames=8, seed=2)


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """A small moving sequence encoded at fixed quality with GOF 4 (2 GOFs: 1 intra + 3 residual each)."""
    d = tmp_path_factory.mktemp("moving")
    write_synthetic_sequence(d / "seq", MOVING)
    res = run("encode", d / "seq", "-o", d / "fixed.rerf", "--gof", "4", "--json")
    assert res.exit_code == 0, res.stderr
    return d, json.loads(res.stdout)


def _index_bytes(num_gofs: int) -> int:
    from rerf_codec.bitstream import CHUNK_HEAD, FOOTER, INDEX_ENTRY

    return CHUNK_HEAD.size + 4 + INDEX_ENTRY.size * num_gofs + 4 + FOOTER.size


def test_encode_residual_frames_json(moving):
    d, rep = moving
    size = (d / "fixed.rerf").stat().st_size
    assert [f["frame_type"] for f in rep["frames"]] == ["intra", "residual", "residual", "residual"] * 2
    for f in rep["frames"]:
        assert (f["bytes"]["motion"] > 0) == (f["frame_type"] == "residual")
    assert rep["target_kbpf"] is None and rep["kb_per_frame"] == pytest.approx(size / 8 / 1e3)
    assert rep["frame_types"]["intra"]["frames"] == 2 and rep["frame_types"]["residual"]["frames"] == 6
    assert rep["totals"]["motion"] == rep["frame_types"]["residual"]["by_category"]["motion"] > 0
    gofs = rep["gofs"]
    assert [(g["first_frame"], g["num_frames"]) for g in gofs] == [(0, 4), (4, 4)]
    assert all((g["quality"], g["density_quality"]) == (75, 75) for g in gofs)
    assert rep["header_bytes"] + sum(g["bytes"] for g in gofs) + _index_bytes(2) == size
    info = json.loads(run("info", d / "fixed.rerf", "--json").stdout)
    assert [g["bytes"] for g in info["gofs"]] == [g["bytes"] for g in gofs]
    assert [g["offset"] for g in info["gofs"]] == [g["offset"] for g in gofs]
    assert info["frame_types"] == rep["frame_types"]


def test_encode_human_summary_shows_frame_types(tmp_path, moving):
    d, _ = moving
    res = run("encode", d / "seq", "-o", tmp_path / "h.rerf", "--gof", "4", "--quality", "60")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "2 intra (avg" in out and "6 residual (avg" in out and "; motion " in out
    assert "GOF qualities (density/features): 0:4 60/60, 4:8 60/60" in out
    assert "motion search" in out and "target" not in out


def test_target_kbpf_lands_near_target(tmp_path, moving):
    d, fixed = moving
    target = round(0.7 * fixed["kb_per_frame"], 3)
    out = tmp_path / "rc.rerf"
    res = run("encode", d / "seq", "-o", out, "--gof", "4", "--target-kbpf", str(target), "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    size = out.stat().st_size
    achieved = size / 8 / 1e3
    assert rep["target_kbpf"] == target and rep["kb_per_frame"] == pytest.approx(achieved)
    assert abs(achieved / target - 1) <= 0.10, (achieved, target)
    qs = [g["quality"] for g in rep["gofs"]]
    assert len(qs) == 2 and all(1 <= q <= 100 for q in qs) and min(qs) < 75  # fewer bytes than quality 75
    assert all(g["density_quality"] == g["quality"] for g in rep["gofs"])
    info = json.loads(run("info", out, "--json").stdout)
    assert [(g["density_quality"], g["quality"]) for g in info["gofs"]] == [
        (g["density_quality"], g["quality"]) for g in rep["gofs"]
    ]
    assert info["header"]["encoder"]["target_kbpf"] == target
    dec = run("decode", out, "-o", tmp_path / "dec", "--verify", rep["sha256"])
    assert dec.exit_code == 0, dec.stderr

    res = run("encode", d / "seq", "-o", tmp_path / "rc2.rerf", "--gof", "4", "--target-kbpf", str(target))
    assert res.exit_code == 0, res.stderr
    assert f"(target {target:,.2f}, " in res.stdout and "rate control from quality 75" in res.stdout
    assert "GOF qualities (density/features): 0:4 " in res.stdout


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", ""])
def test_bad_target_kbpf(tmp_path, moving, value):
    d, _ = moving
    line = assert_one_line_error(run("encode", d / "seq", "-o", tmp_path / "o.rerf", "--target-kbpf", value))
    assert "--target-kbpf" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["zero", "trainer", "search"])
def test_motion_modes_decode_to_reported_sha(tmp_path, moving, mode):
    d, _ = moving
    # --gof-fixed: without motion compensation ("zero") some frames would be cheaper as keyframes
    res = run("encode", d / "seq", "-o", tmp_path / "m.rerf", "--gof", "4", "--gof-fixed", "--motion", mode, "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["config"]["motion"] == mode
    assert rep["frame_types"]["residual"]["frames"] == 6
    res = run("decode", tmp_path / "m.rerf", "-o", tmp_path / "out", "--verify", rep["sha256"], "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["verified"] is True
    info = json.loads(run("info", tmp_path / "m.rerf", "--json").stdout)
    assert info["header"]["encoder"]["motion"] == mode


def test_motion_bad_choice(tmp_path, moving):
    d, _ = moving
    line = assert_one_line_error(run("encode", d / "seq", "-o", tmp_path / "o.rerf", "--motion", "fast"))
    assert "--motion" in line


def test_gof_1_is_intra_only(tmp_path, moving):
    d, _ = moving
    res = run("encode", d / "seq", "-o", tmp_path / "i.rerf", "--gof", "1", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert {f["frame_type"] for f in rep["frames"]} == {"intra"}
    assert list(rep["frame_types"]) == ["intra"] and rep["totals"]["motion"] == 0
    assert [g["num_frames"] for g in rep["gofs"]] == [1] * 8
    info = json.loads(run("info", tmp_path / "i.rerf", "--json").stdout)
    assert {f["type"] for f in info["frames"]} == {"intra"} and len(info["gofs"]) == 8
    human = run("info", tmp_path / "i.rerf").stdout
    assert " residual " not in human.replace("residual B/frame", "")


def test_info_per_gof_qualities_and_frame_types(tmp_path, moving):
    d, _ = moving
    out = tmp_path / "q.rerf"
    res = run("encode", d / "seq", "-o", out, "--gof", "3", "--quality", "50", "--density-quality", "80")
    assert res.exit_code == 0, res.stderr
    info = json.loads(run("info", out, "--json").stdout)
    assert [(g["first_frame"], g["num_frames"]) for g in info["gofs"]] == [(0, 3), (3, 3), (6, 2)]
    for g in info["gofs"]:
        assert (g["quality"], g["density_quality"]) == (50, 80)
        assert not {"quality_features", "quality_density"} & g.keys()  # one name per value, as README says
        assert g["frame_types"] == {"intra": 1, "residual": g["num_frames"] - 1}
        n_frames = [f for f in info["frames"] if f["gof"] == info["gofs"].index(g)]
        assert sum(f["total_bytes"] for f in n_frames) == sum(g["frame_bytes"].values())
    ft = info["frame_types"]
    assert ft["intra"]["frames"] == 3 and ft["residual"]["frames"] == 5
    assert sum(e["bytes"] for e in ft.values()) + info["totals"]["header"] + info["totals"]["container"] == (
        info["file_bytes"]
    )
    assert ft["residual"]["by_category"]["motion"] == info["totals"]["motion"] > 0
    human = run("info", out).stdout
    for word in ("q dens/feat", "80/50", "residual B/frame", "frame type", "intra", "residual", "motion"):
        assert word in human


def test_skip_damaged_with_residual_frames(tmp_path, moving):
    """A damaged GOF conceals all its frames (keyframe and residual); later GOFs decode exactly."""
    d, _ = moving
    src = tmp_path / "g.rerf"
    enc = json.loads(run("encode", d / "seq", "-o", src, "--gof", "3", "--json").stdout)
    full = tmp_path / "full"
    assert run("decode", src, "-o", full, "--verify", enc["sha256"]).exit_code == 0
    full_meta = read_meta(full)
    for gof, lost, frozen_on in ((1, [3, 4, 5], 2), (0, [0, 1, 2], None)):
        bad, out = tmp_path / f"bad{gof}.rerf", tmp_path / f"out{gof}"
        _corrupt(src, bad, gof=gof)
        assert_one_line_error(run("decode", bad, "-o", out))
        res = run("decode", bad, "-o", out, "--skip-damaged", "--json")
        assert res.exit_code == 0, res.stderr
        rep = json.loads(res.stdout)
        assert rep["damaged_frames"] == lost
        assert rep["damaged"][0]["frames"] == [lost[0], lost[-1] + 1]
        meta = read_meta(out)
        for i in lost:
            fr = read_frame(out, i, meta)
            if frozen_on is None:
                assert not fr.features.any()
            else:
                prev = read_frame(full, frozen_on, full_meta)
                assert np.array_equal(fr.density, prev.density) and np.array_equal(fr.features, prev.features)
        for i in sorted(set(range(8)) - set(lost)):  # every other frame, residual ones included, is exact
            a, b = read_frame(out, i, meta), read_frame(full, i, full_meta)
            assert np.array_equal(a.density, b.density) and np.array_equal(a.features, b.features), i


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "{d}/missing", "-o", "{t}/o.rerf"],
        ["encode", "{d}/seq", "-o", "{t}/o.rerf", "--quality", "0"],
        ["encode", "{d}/seq", "-o", "{t}/o.rerf", "--gof", "0"],
        ["encode", "{d}/seq", "-o", "{t}/no/such/dir/o.rerf"],
        ["encode", "{d}/seq"],
        ["decode", "{d}/seq/sequence.json", "-o", "{t}/out"],
        ["decode", "{d}/missing.rerf", "-o", "{t}/out"],
        ["decode", "{d}/seq", "-o", "{t}/out"],
        ["decode", "{d}/a.rerf", "-o", "{t}/out", "--frames", "5:3"],
        ["decode", "{d}/a.rerf", "-o", "{t}/out", "--frames", "a:b"],
        ["decode", "{d}/a.rerf", "-o", "{t}/out", "--frames", "0:99"],
        ["decode", "{d}/a.rerf", "-o", "{t}/out", "--frames", "1:2:3"],
        ["decode", "{d}/a.rerf", "-o", "{t}/out", "--verify", "xyz"],
        ["decode", "{d}/a.rerf", "-o", "{t}/no/such/out"],
        ["info", "{d}/seq/sequence.json"],
        ["info", "{d}/missing.rerf", "--json"],
        ["frobnicate"],
        ["encode", "--no-such-option"],
    ],
)
def test_bad_input_one_line(tmp_path, work, args):
    d, _ = work
    res = run(*[a.format(d=d, t=tmp_path) for a in args])
    assert_one_line_error(res)
    assert res.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_truncated_stream(tmp_path, work):
    d, _ = work
    data = (d / "a.rerf").read_bytes()
    for n in (3, 30, len(data) // 2, len(data) - 1):
        (tmp_path / "t.rerf").write_bytes(data[:n])
        assert_one_line_error(run("info", tmp_path / "t.rerf"))
        if n < len(data) - 20:  # the decoder stops after the last GOF; index/footer damage is info's business
            assert_one_line_error(run("decode", tmp_path / "t.rerf", "-o", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_internal_error_and_interrupt(monkeypatch, work):
    import rerf_codec.codec.accounting as files

    d, _ = work

    def boom(f):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(files, "describe_stream", boom)
    res = run("info", d / "a.rerf")
    assert res.exit_code == 1
    assert res.stderr.strip() == (
        "rerf: internal error: RuntimeError: boom second line (set RERF_DEBUG=1 for a traceback)"
    )

    def interrupted(f):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "describe_stream", interrupted)
    res = run("info", d / "a.rerf")
    assert res.exit_code == 130 and "Traceback" not in res.stderr and "interrupted" in res.stderr


def test_parse_frame_range():
    """One frame-range type: the CLI parses the text once, the library resolves it against what exists."""
    total = range(10, 20)
    assert FrameRange.parse("12:15").resolve(total) == range(12, 15)
    assert FrameRange.parse(":15").resolve(total) == range(10, 15)
    assert FrameRange.parse("15:").resolve(total) == range(15, 20)
    assert FrameRange.parse(":").resolve(total) == total
    assert FrameRange.parse("13").resolve(total) == range(13, 14)
    for bad in ("15:12", "12:12", "a:b", "5:15", "12:21", "-1:3", "1:2:3", ""):
        with pytest.raises(RerfUsageError, match=r"frame|range|A:B"):
            FrameRange.parse(bad).resolve(total)
    # the CLI names the option, the library the value
    res = run("decode", "x.rerf", "-o", "y", "--frames", "a:b")
    assert res.exit_code == 2 and "--frames" in res.stderr and "'a:b'" in res.stderr


def test_help_and_version():
    res = run("--help")
    assert res.exit_code == 0 and "encode" in res.stdout and "decode" in res.stdout
    res = run("decode", "--help")
    assert res.exit_code == 0 and "--skip-damaged" in res.stdout and "freezes" in res.stdout
    assert run("--version").stdout.startswith("rerf ")


# --------------------------------------------------------------------------- demo: tests/test_demo.py


# --------------------------------------------------------------------------- the real executable


def _rerf(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RERF_DEBUG", None)
    return subprocess.run([str(RERF), *args], capture_output=True, env=env, timeout=60, **kw)


@pytest.mark.skipif(not RERF.exists(), reason="console script not installed")
def test_executable_exit_codes_and_stdin(tmp_path, work):
    d, enc = work
    p = _rerf("decode", str(d / "seq"), "-o", str(tmp_path / "x"))
    assert p.returncode == 2 and p.stdout == b""
    assert p.stderr.decode().count("\n") == 1 and p.stderr.startswith(b"rerf: error: ")
    p = _rerf("encode", str(d / "seq"), "-o", str(tmp_path / "x.rerf"), "--quality", "101")
    assert p.returncode == 2 and b"Traceback" not in p.stderr and p.stderr.count(b"\n") == 1
    # `rerf decode - -o out < file` and a real (non-seekable) pipe
    with open(d / "a.rerf", "rb") as f:
        p = _rerf("decode", "-", "-o", str(tmp_path / "s1"), "--json", stdin=f)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["sha256"] == enc["sha256"]
    p = _rerf("decode", "-", "-o", str(tmp_path / "s2"), "--frames", "1:3", input=(d / "a.rerf").read_bytes())
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in (tmp_path / "s2" / "frames").iterdir()) == ["000001.npz", "000002.npz"]


def test_no_torch_on_cli_paths():
    code = (
        "import sys, cli.main, rerf_codec.codec.files, rerf_codec.demo; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()


@pytest.mark.skipif(not RERF.exists(), reason="console script not installed")
def test_executable_target_kbpf_errors(tmp_path, moving):
    d, _ = moving
    for value in ("0", "-1", "abc"):
        p = _rerf("encode", str(d / "seq"), "-o", str(tmp_path / "o.rerf"), "--target-kbpf", value)
        assert p.returncode == 2 and p.stdout == b"", (value, p.stderr)
        err = p.stderr.decode()
        assert err.count("\n") == 1 and err.startswith("rerf: error: ") and "--target-kbpf" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not RERF.exists() or sys.platform == "win32", reason="needs the console script and a pty")
def test_executable_tty_progress_shows_frame_types(tmp_path, moving):
    """On a terminal, encode's progress line names each frame's type (and stdout keeps the summary)."""
    import pty

    d, _ = moving
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    try:
        p = subprocess.Popen(
            [str(RERF), "encode", str(d / "seq"), "-o", str(tmp_path / "t.rerf"), "--gof", "4"],
            stdout=subprocess.PIPE, stderr=slave, env=env,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                b = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not b:
                break
            chunks.append(b)
        out, _ = p.communicate(timeout=60)
    finally:
        os.close(master)
    assert p.returncode == 0
    err = b"".join(chunks).decode(errors="replace")
    assert "frame 0 intra" in err and "frame 7 residual" in err
    assert b"encoded 8 frames" in out


def test_library_errors_name_parameters_and_the_cli_names_options(tmp_path):
    import io

    from rerf_codec.codec.files import decode_to_directory
    """The library never talks in --options; the CLI renders its parameters as the options that set them."""
    from rerf_codec.codec.encoder import EncoderConfig

    with pytest.raises(RerfUsageError) as ei:
        EncoderConfig(density_quality=0).validate()
    assert str(ei.value).startswith("density_quality must be in 1..100") and "--" not in str(ei.value)
    (tmp_path / "out").mkdir()
    (tmp_path / "x.rerf").write_bytes(b"")
    res = run("decode", tmp_path / "x.rerf", "-o", tmp_path / "out")
    assert res.exit_code == 2 and res.stderr.strip().endswith("exists; use --force to overwrite"), res.stderr
    with pytest.raises(RerfUsageError, match=r"exists; use force=True to overwrite$"):
        decode_to_directory(io.BytesIO(), tmp_path / "out")
