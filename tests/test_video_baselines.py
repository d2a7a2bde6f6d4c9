"""2D-video baselines of ``rerf bench-rate-distortion``: pack → encode (bundled ffmpeg) → decode →
unpack within the quantiser's error, empty and full frames, the layout file alone inverting the
packing, and a missing encoder reported in one line and skipped by name."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `cli` is a top-level package next to rerf_codec
    sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

from cli.main import cli  # noqa: E402
from rerf_codec.bench import ffmpeg_codecs as fc  # noqa: E402
from rerf_codec.bench import rd  # noqa: E402
from rerf_codec.bench import video_baselines as vb  # noqa: E402
from rerf_codec.errors import RerfError  # noqa: E402
from rerf_codec.grids import GridFrame, SequenceMeta  # noqa: E402
from rerf_codec.gridseq import SequenceWriter  # noqa: E402

THRESHOLD = -1.0
SHAPE = (20, 17, 24)  # not multiples of 8: edge blocks are partial
C = 3


def _frames(n: int = 5, *, empty: tuple[int, ...] = (), full: tuple[int, ...] = ()) -> list[GridFrame]:
    """Smooth moving features, a moving dense box; ``empty`` frames have no occupied block, ``full`` all."""
    rng = np.random.default_rng(7)
    xx, yy, zz = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in SHAPE), indexing="ij")
    out = []
    for t in range(n):
        d = np.full(SHAPE, -10.0, dtype=np.float32) + 0.1 * rng.standard_normal(SHAPE).astype(np.float32)
        d[4 + t: 12 + t, 3:11, 5:15] = 2.0 + np.sin(xx[4 + t: 12 + t, 3:11, 5:15] / 3.0)
        if t in empty:
            d[...] = -5.0
        if t in full:
            d = 1.0 + np.cos(zz / 4.0) * np.sin(yy / 5.0)
        f = np.stack([np.sin((xx + t) / 4 + c) * np.cos(yy / 5) + 0.3 * np.sin(zz / 3) for c in range(C)])
        f = f.astype(np.float32) + 0.01 * rng.standard_normal((C, *SHAPE)).astype(np.float32)
        out.append(GridFrame(d.astype(np.float32), f))
    return out


def _channel(f: GridFrame, k: int) -> np.ndarray:
    return f.density if k == 0 else f.features[k - 1]


def _max_error_in_steps(layout: vb.Layout, original: list[GridFrame], decoded: list[GridFrame]) -> float:
    """Largest |error| over occupied (union) voxels, in units of the channel's quantiser step."""
    worst = 0.0
    for i, (a, b) in enumerate(zip(original, decoded, strict=True)):
        g = layout.gof_of(i)
        vox = vb._voxel_mask(g.mask, layout.grid_shape)
        for k in range(layout.channels):
            if not vox.any():
                continue
            step = vb.quantiser_step(layout, i // layout.gof, k)
            err = float(np.abs(_channel(a, k) - _channel(b, k))[vox].max())
            slack = 4 * np.finfo(np.float32).eps * float(np.abs(_channel(a, k)).max())  # float32 output rounding
            worst = max(worst, max(0.0, err - slack) / step if step > 0 else (0.0 if err <= slack else np.inf))
    return worst


def _outside_is_fill(layout: vb.Layout, decoded: list[GridFrame]) -> None:
    for i, b in enumerate(decoded):
        g = layout.gof_of(i)
        vox = vb._voxel_mask(g.mask, layout.grid_shape)
        for k in range(layout.channels):
            assert np.all(_channel(b, k)[~vox] == np.float32(g.fill[k]))


@pytest.mark.parametrize("name", vb.BASELINE_NAMES)
def test_round_trip_within_the_quantiser(name, tmp_path):
    codec, _packing = vb.parse_baseline(name)
    frames = _frames()
    finest = codec.default_sweep[0]
    rep = vb.encode_sequence(frames, THRESHOLD, name, finest, 4, str(tmp_path / "v"))
    assert os.path.getsize(rep.video_path) == rep.video_bytes > 0
    assert os.path.getsize(rep.layout_path) == rep.layout_bytes
    assert rep.video_path.endswith("." + codec.extension)
    decoded = list(vb.decode_sequence(rep.video_path, rep.layout_path))
    assert len(decoded) == len(frames)
    assert decoded[0].features.shape == (C, *SHAPE) and decoded[0].density.dtype == np.float32
    layout = rep.layout
    assert len(layout.gofs) == 2 and layout.bit_depth == codec.bit_depth
    err = _max_error_in_steps(layout, frames, decoded)
    if finest == fc.LOSSLESS:
        assert err <= 0.5 + 1e-6, err  # exactly the quantiser's error: half a step
    else:  # vvenc: no lossless mode; QP 0 is near-lossless
        assert err <= 16, err
    _outside_is_fill(layout, decoded)
    # a coarse setting of the same baseline decodes too, smaller and less exact
    coarse = codec.default_sweep[-1]
    rep2 = vb.encode_sequence(frames, THRESHOLD, name, coarse, 4, str(tmp_path / "c"))
    dec2 = list(vb.decode_sequence(rep2.video_path, rep2.layout_path))
    assert rep2.video_bytes < rep.video_bytes
    assert _max_error_in_steps(layout, frames, dec2) > err


@pytest.mark.parametrize("packing", vb.PACKINGS)
def test_empty_and_full_frames(packing, tmp_path):
    frames = _frames(4, empty=(0, 1), full=(2,))
    # GOF 2: the first GOF has no occupied block at all (zero slots), the second one all blocks
    rep = vb.encode_sequence(frames, THRESHOLD, f"x265-{packing}", fc.LOSSLESS, 2, str(tmp_path / "v"))
    layout = rep.layout
    assert layout.gofs[0].mask.sum() == 0 and layout.gofs[1].mask.all()
    decoded = list(vb.decode_sequence(rep.video_path, rep.layout_path))
    assert _max_error_in_steps(layout, frames, decoded) <= 0.5 + 1e-6
    for i in (0, 1):  # nothing occupied: every voxel is the fill, below the occupancy threshold
        assert np.all(decoded[i].density == np.float32(layout.gofs[0].fill[0]))
        assert decoded[i].density.max() < THRESHOLD
    _outside_is_fill(layout, decoded)


def test_layout_file_alone_inverts_the_packing(tmp_path):
    frames = _frames(5)
    codec = fc.VIDEO_CODECS["x265"]
    for packing in vb.PACKINGS:
        layout = vb.make_layout(frames, THRESHOLD, codec, packing, 3)
        path = str(tmp_path / f"{packing}.layout")
        hdr, body = vb.write_layout(layout, path)
        assert os.path.getsize(path) == hdr + body
        back = vb.read_layout(path)  # a fresh object from the file's bytes only
        for field in ("packing", "codec", "bit_depth", "grid_shape", "channels", "num_frames", "gof", "width",
                      "height", "mosaic_h", "mosaic_w", "cells_across", "mosaics_across"):
            assert getattr(back, field) == getattr(layout, field), field
        for g0, g1 in zip(layout.gofs, back.gofs, strict=True):
            assert np.array_equal(g0.mask, g1.mask)
            assert np.array_equal(g0.lo, g1.lo) and np.array_equal(g0.hi, g1.hi) and np.array_equal(g0.fill, g1.fill)
        # unpacking with the file's layout reproduces what the packer's layout gives
        pics = [vb.pack_frame(layout, i, f) for i, f in enumerate(frames)]
        assert pics[0].shape == (layout.height, layout.width) and pics[0].max() <= codec.max_code
        assert layout.width % 16 == 0 and layout.height % 16 == 0
        for i, p in enumerate(pics):
            a, b = vb.unpack_frame(layout, i, p), vb.unpack_frame(back, i, p)
            assert np.array_equal(a.density, b.density) and np.array_equal(a.features, b.features)
        assert _max_error_in_steps(back, frames, [vb.unpack_frame(back, i, p) for i, p in enumerate(pics)]) <= 0.5
    with open(path, "r+b") as f:  # damaged: a clear error naming the file
        f.seek(60)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(RerfError, match="layout"):
        vb.read_layout(path)
    (tmp_path / "junk.layout").write_bytes(b"nope")
    with pytest.raises(RerfError, match="not a video-baseline layout"):
        vb.read_layout(str(tmp_path / "junk.layout"))


def test_block_packing_keeps_tile_positions_within_a_gof():
    frames = _frames(4)
    layout = vb.make_layout(frames, THRESHOLD, fc.VIDEO_CODECS["x265"], "blocks", 4)
    g = layout.gofs[0]
    occupied = [vb.occupancy_mask(f.density, THRESHOLD) for f in frames]
    assert np.array_equal(g.mask, np.logical_or.reduce(occupied))  # the union: one slot per block for the GOF
    # a block's tile is at the same place in every frame: the tile of the first slot holds that block's data
    bx, by, bz = np.argwhere(g.mask)[0]
    for i, f in enumerate(frames):
        pic = vb.pack_frame(layout, i, f)
        tile = pic[:vb.TILE_H, :vb.TILE_W].astype(np.float64)
        block = f.density[bx * 8:(bx + 1) * 8, by * 8:(by + 1) * 8, bz * 8:(bz + 1) * 8]
        scale = layout.max_code / (g.hi[0] - g.lo[0])
        expect = np.clip(np.rint((block.astype(np.float64) - g.lo[0]) * scale), 0, layout.max_code)
        assert tile[0:8, 0:8].tolist() == expect[:, :, 0].tolist()  # z-slice 0 top left, rows x, columns y


def test_bad_names_and_settings():
    with pytest.raises(RerfError, match="unknown video baseline"):
        vb.parse_baseline("x266-blocks")
    with pytest.raises(RerfError, match="no lossless"):
        fc.VIDEO_CODECS["vvenc"].check_setting("lossless")
    with pytest.raises(RerfError, match=r"0\.\.51"):
        fc.VIDEO_CODECS["x265"].check_setting("60")


# --------------------------------------------------------------------------- in the bench


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("vb") / "seq"
    frames = _frames(4)
    meta = SequenceMeta(num_frames=4, fps=30.0, grid_shape=SHAPE, feature_channels=C, xyz_min=(-1.0, -1.0, -1.0),
                        xyz_max=(1.0, 1.0, 1.0), density_shift=-1.0)
    with SequenceWriter(d, meta) as w:
        for i, f in enumerate(frames):
            w.write_frame(i, f)
    return d


def test_bench_runs_video_baselines(seq_dir, tmp_path):
    settings = rd.RDSettings(qualities=(55, 75, 95), baselines=("rerf-reference", "x265-blocks", "x264-slices"),
                             reference_qualities=(50, 90), gof=2,
                             video_sweeps=(("x265", ("lossless", "12", "30")), ("x264", ("6", "24"))))
    lines: list[str] = []
    res = rd.run_rate_distortion(seq_dir, tmp_path / "o", settings, log=lines.append)
    video = [p for p in res["points"] if p["codec"] in ("x265-blocks", "x264-slices")]
    assert [(p["codec"], p["setting"]) for p in video] == [
        ("x265-blocks", "lossless"), ("x265-blocks", "crf 12"), ("x265-blocks", "crf 30"),
        ("x264-slices", "crf 6"), ("x264-slices", "crf 24")]
    for p in video:
        b = p["bytes"]
        assert p["file_bytes"] == p["video_bytes"] + p["layout_bytes"] == sum(b.values())
        assert b["side_info"] > 0 and b["header"] == vb._HEADER.size and b["coefficients"] > 0
        assert p["keyframes"] == 2 and p["residual_frames"] == 2  # GOP = GOF 2
        assert p["encode_fps"] > 0 and p["decode_fps"] > 0
    lossless = video[0]
    # the finest setting converges to the quantiser alone: 12 bits ≈ 20·log10(4095) + 10.8 dB
    assert lossless["grid_psnr_db"] > 75
    assert video[0]["grid_psnr_db"] > video[1]["grid_psnr_db"] > video[2]["grid_psnr_db"]
    vid = res["bd_rate_vs_video"]["grid_psnr_db"]
    assert set(vid["rerf_vs"]) == {"x265-blocks", "x264-slices"}
    known = {k: v for k, v in vid["rerf_vs"].items() if v is not None}
    assert known and vid["strongest"] == max(known, key=lambda k: known[k])
    assert vid["rerf_vs_strongest"] == known[vid["strongest"]]
    assert "x265-blocks" in res["bd_rate"]["grid_psnr_db"]  # against rerf-reference too
    on_disk = json.loads((tmp_path / "o" / "results.json").read_text())
    assert on_disk["bd_rate_vs_video"]["grid_psnr_db"]["strongest"] == vid["strongest"]
    names = [c["name"] for c in on_disk["codecs"]]
    assert names[-2:] == ["x265-blocks", "x264-slices"] and "packing" in on_disk["codecs"][-1]["description"]
    md = (tmp_path / "o" / "results.md").read_text()
    assert "| x265-blocks | lossless |" in md and "**strongest**" in md
    assert "setting" in (tmp_path / "o" / "results.csv").read_text().splitlines()[0]
    summary = rd.format_summary(res)
    assert "BD-rate of rerf vs the strongest video baseline (grid_psnr_db)" in summary
    assert (tmp_path / "o" / "rd.png").stat().st_size > 0
    assert res["skipped"] == []


def test_missing_encoder_is_one_line_and_skipped_by_name(seq_dir, tmp_path, monkeypatch):
    real = fc.available_encoders()
    monkeypatch.setattr(fc, "available_encoders", lambda exe=None: real - {"libvvenc"})
    settings = rd.RDSettings(qualities=(75,), baselines=("vvenc-blocks", "x264-blocks"),
                             video_sweeps=(("x264", ("18",)),))
    lines: list[str] = []
    res = rd.run_rate_distortion(seq_dir, tmp_path / "o", settings, log=lines.append)
    said = [ln for ln in lines if "vvenc-blocks" in ln]
    assert len(said) == 1 and said[0].startswith("vvenc-blocks: skipped: ") and "libvvenc" in said[0]
    assert [s["name"] for s in res["skipped"]] == ["vvenc-blocks"]
    assert {p["codec"] for p in res["points"]} == {"rerf", "x264-blocks"}
    assert "skipped vvenc-blocks" in rd.format_summary(res)
    # a bogus encoder name, asked of the real ffmpeg
    bogus = fc.VideoCodec(**{**fc.VIDEO_CODECS["x264"].__dict__, "encoder": "libbogus264"})
    reason = fc.missing_encoder(bogus)
    assert reason is not None and "libbogus264" in reason and "\n" not in reason
    # no ffmpeg at all: one line too
    monkeypatch.undo()
    reason = fc.missing_encoder(fc.VIDEO_CODECS["x265"], exe=str(tmp_path / "no-ffmpeg"))
    assert reason is not None and reason.startswith("no usable ffmpeg") and "\n" not in reason


def test_ffmpeg_failure_on_one_setting_is_skipped_not_fatal(seq_dir, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RerfError("ffmpeg encode (libx264) failed (exit 1): simulated")

    monkeypatch.setattr(vb, "encode_video", boom)
    settings = rd.RDSettings(qualities=(75,), baselines=("x264-blocks",), video_sweeps=(("x264", ("18",)),))
    lines: list[str] = []
    res = rd.run_rate_distortion(seq_dir, tmp_path / "o", settings, log=lines.append)
    assert any(ln.endswith("x264-blocks 18: skipped: ffmpeg encode (libx264) failed (exit 1): simulated")
               for ln in lines)
    assert res["skipped"][0]["setting"] == "18"
    assert not list((tmp_path).glob("**/*.h264"))


def _invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize(
    ("args", "part"),
    [
        (["--baselines", "x266-blocks"], "unknown baseline 'x266-blocks'"),
        (["--baselines", "video", "--video-sweep", "vvenc=lossless"], "vvenc has no lossless mode"),
        (["--baselines", "video", "--video-sweep", "x265"], "CODEC=SETTING"),
        (["--baselines", "video", "--video-sweep", "h266=10"], "unknown video codec 'h266'"),
        (["--baselines", "video", "--video-sweep", "x264=70"], "0..51"),
    ],
)
def test_cli_refuses_bad_video_options(seq_dir, tmp_path, args, part):
    res = _invoke("bench-rate-distortion", seq_dir, "-o", tmp_path / "o", *args)
    assert res.exit_code == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rerf: error:") and part in lines[0], res.stderr
    assert not (tmp_path / "o").exists()


def test_cli_video_shorthand_and_json(seq_dir, tmp_path):
    res = _invoke("bench-rate-distortion", seq_dir, "-o", tmp_path / "o", "--qualities", "75", "--baselines",
                  "x265-slices", "--video-sweep", "x265=20", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [p["setting"] for p in doc["points"] if p["codec"] == "x265-slices"] == ["crf 20"]
    assert "--video-sweep x265=20" in doc["command"]
    assert rd.parse_baselines("video,x264-blocks") == vb.DEFAULT_BASELINES
    assert rd.parse_baselines("rerf-intra,video")[0] == "rerf-intra"


def test_rendered_metrics_of_video_baselines(seq_dir, tmp_path, monkeypatch):
    """With --dataset, a video baseline's decoded grids are rendered like rerf's (renderer hooks faked)."""
    import shutil

    import rerf_codec.datasets.format as fmt
    import rerf_codec.field as field_pkg
    from tests.test_rd_bench import _FakeData, _FakeField

    seq = tmp_path / "with-mlp"
    shutil.copytree(seq_dir, seq)
    meta = json.loads((seq / "sequence.json").read_text())
    meta["decoder"] = "decoder.npz"
    (seq / "sequence.json").write_text(json.dumps(meta))
    np.savez(seq / "decoder.npz", w=np.ones(3, dtype=np.float32))
    monkeypatch.setattr(field_pkg, "RadianceField", _FakeField, raising=False)
    monkeypatch.setattr(fmt, "open_dataset", lambda path: _FakeData())
    settings = rd.RDSettings(qualities=(60, 90), baselines=("x265-blocks",), render_frames=2,
                             video_sweeps=(("x265", ("lossless", "10", "30")),))
    res = rd.run_rate_distortion(seq, tmp_path / "out", settings, dataset="fake")
    video = [p for p in res["points"] if p["codec"] == "x265-blocks"]
    assert len(video) == 3
    for p in video:
        assert p["rendered"]["images"] == 4 and p["rendered_psnr_db"] is not None
    assert video[0]["rendered_psnr_vs_uncompressed_db"] > video[2]["rendered_psnr_vs_uncompressed_db"]
    assert "rendered_psnr_db" in res["bd_rate_vs_video"]


def test_dominated_settings_leave_the_bd_curve():
    pts = [{"bytes_per_frame": b, "m": q} for b, q in ((10, 30.0), (20, 35.0), (500, 48.0), (400, 74.0), (30, None))]
    assert [p["bytes_per_frame"] for p in rd._pareto(pts, "m")] == [10, 20, 400]
