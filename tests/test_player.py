"""Player: streaming decode + render along camera paths, outputs, seeking, stdin, damage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from player_fixtures import FRAMES, GOF, build, eval_cameras

from cli.main import cli
from rerf_codec.codec.accounting import describe_stream
from rerf_codec.codec.files import decode_to_directory
from rerf_codec.errors import RerfUsageError
from rerf_codec.field import RadianceField
from rerf_codec.field.camera import orbit_cameras
from rerf_codec.gridseq import iter_full_frames, read_decoder, read_meta
from rerf_codec.player import camera_path, play

ROOT = Path(__file__).resolve().parents[1]
RERF = Path(sys.executable).with_name("rerf")
SIZE = (24, 20)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    d = build(tmp_path_factory.mktemp("player"))
    with open(d["rerf"], "rb") as f:
        decode_to_directory(f, d["root"] / "decoded")
    return d


def run(*args: object, input: bytes | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def _pngs(out: Path) -> dict[int, np.ndarray]:
    return {int(p.stem.split("_")[1]): iio.imread(p) for p in sorted(out.glob("frame_*.png"))}


def _direct(seq: Path, cams, frames: range) -> dict[int, np.ndarray]:
    """Render a grid sequence (here: `rerf decode` output) straight through RadianceField."""
    meta = read_meta(seq)
    field = RadianceField.for_sequence(meta, read_decoder(seq, meta))
    out = {}
    for k, (i, fr) in enumerate(iter_full_frames(seq, meta, frames)):
        field.set_grids(fr.density, fr.features)
        out[i] = (np.clip(field.render_camera(cams[k]), 0, 1) * 255 + 0.5).astype(np.uint8)
    return out


def test_render_matches_rendering_the_decoded_grids(work, tmp_path):
    out = tmp_path / "frames"
    res = run("render", work["rerf"], "-o", out, "--size", *SIZE, "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["num_frames"] == FRAMES and rep["format"] == "png" and rep["camera"]["kind"] == "orbit"
    assert rep["decode_ms_per_frame"] > 0 and rep["render_ms_per_frame"] > 0 and rep["realtime_factor"] > 0
    got = _pngs(out)
    assert sorted(got) == list(range(FRAMES)) and got[0].shape == (SIZE[1], SIZE[0], 3)
    h = read_meta(work["root"] / "decoded")
    cams = orbit_cameras(h.xyz_min, h.xyz_max, FRAMES, SIZE)
    want = _direct(work["root"] / "decoded", cams, range(FRAMES))
    for i in range(FRAMES):
        assert np.array_equal(got[i], want[i]), i
        # the ball is in the picture: not just background
        assert (got[i] < 200).any(axis=-1).mean() > 0.05
    # the orbit turns: the cameras differ frame to frame, one revolution in all
    assert not np.allclose(cams[0].c2w, cams[1].c2w)
    assert json.loads((out / "render.json").read_text())["num_frames"] == FRAMES
    # a second run refuses to overwrite, --force replaces
    res = run("render", work["rerf"], "-o", out, "--size", *SIZE)
    assert res.exit_code == 2 and "exists" in res.stderr and res.stderr.count("\n") == 1
    assert run("render", work["rerf"], "-o", out, "--size", *SIZE, "--force").exit_code == 0


def test_video_outputs(work, tmp_path):
    mp4, gif = tmp_path / "a.mp4", tmp_path / "a.gif"
    res = run("render", work["rerf"], "-o", mp4, "--size", 32, 24, "--camera", "spiral", "--fps", 12)
    assert res.exit_code == 0, res.stderr
    assert "real-time factor" in res.stdout and "ms/frame" in res.stdout
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(mp4), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout  # fmt: skip
    assert len(raw) == FRAMES * 24 * 32 * 3
    frames = np.frombuffer(raw, np.uint8).reshape(FRAMES, 24, 32, 3)
    assert (frames < 200).any(axis=-1).mean() > 0.02  # H.264 kept the ball
    assert run("render", work["rerf"], "-o", gif, "--size", 24, 24, "--frames", "1:4").exit_code == 0
    g = iio.imread(gif, index=None)
    assert g.shape[0] == 3 and g.shape[1:3] == (24, 24)
    # odd sizes cannot be H.264 yuv420p: refused before anything is written
    res = run("render", work["rerf"], "-o", tmp_path / "odd.mp4", "--size", 25, 24)
    assert res.exit_code == 2 and "even" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "a.mp4"]


def test_frames_seek_through_the_index(work, tmp_path, monkeypatch):
    from rerf_codec.bitstream import StreamReader

    seeks = []
    orig = StreamReader.seek_to
    monkeypatch.setattr(StreamReader, "seek_to", lambda self, e: (seeks.append(e.first_frame), orig(self, e))[1])
    out = tmp_path / "part"
    with open(work["rerf"], "rb") as f:
        rep = play(f, out, frames="3:5", size=SIZE)
    assert seeks == [2]  # the GOF holding frame 3 (GOFs of 2: 0:2, 2:4, 4:6)
    got = _pngs(out)
    assert sorted(got) == [3, 4] and rep.frames == range(3, 5)
    h = read_meta(work["root"] / "decoded")
    want = _direct(work["root"] / "decoded", orbit_cameras(h.xyz_min, h.xyz_max, 2, SIZE), range(3, 5))
    assert all(np.array_equal(got[i], want[i]) for i in (3, 4))


@pytest.mark.skipif(not RERF.exists(), reason="console script not installed")
def test_stdin_streaming_matches_file(work, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    data = work["rerf"].read_bytes()
    # a real pipe (not seekable): `cat clip.rerf | rerf render - -o piped`
    p = subprocess.run([str(RERF), "render", "-", "-o", str(tmp_path / "piped"), "--size", *map(str, SIZE), "--json"],
                       input=data, capture_output=True, env=env, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)["num_frames"] == FRAMES
    assert run("render", work["rerf"], "-o", tmp_path / "file", "--size", *SIZE).exit_code == 0
    a, b = _pngs(tmp_path / "piped"), _pngs(tmp_path / "file")
    assert sorted(a) == sorted(b) == list(range(FRAMES))
    assert all(np.array_equal(a[i], b[i]) for i in a)


def _damaged_copy(work, tmp_path) -> Path:
    with open(work["rerf"], "rb") as f:
        gofs = describe_stream(f)["gofs"]
    assert len(gofs) == FRAMES // GOF
    mid = gofs[1]
    data = bytearray(work["rerf"].read_bytes())
    data[mid["offset"] + mid["bytes"] // 2] ^= 0x5A
    bad = tmp_path / "bad.rerf"
    bad.write_bytes(bytes(data))
    return bad


def test_damaged_gof_is_reported_and_playback_continues(work, tmp_path):
    bad = _damaged_copy(work, tmp_path)
    res = run("render", bad, "-o", tmp_path / "x.mp4", "--size", *SIZE)
    assert res.exit_code == 2 and res.stderr.startswith("rerf: error: ") and res.stderr.count("\n") == 1
    assert not (tmp_path / "x.mp4").exists() and [p.name for p in tmp_path.iterdir()] == ["bad.rerf"]
    out = tmp_path / "concealed"
    res = run("render", bad, "-o", out, "--size", *SIZE, "--skip-damaged", "--json")
    assert res.exit_code == 0, res.stderr
    assert "rerf: warning: frames 2:4 damaged" in res.stderr
    rep = json.loads(res.stdout)
    assert rep["concealed_frames"] == [2, 3] and rep["damaged"][0]["frames"] == [2, 4]
    got = _pngs(out)
    assert sorted(got) == list(range(FRAMES))
    # frames after the damage decode normally (the next GOF starts with a keyframe) ...
    h = read_meta(work["root"] / "decoded")
    cams = orbit_cameras(h.xyz_min, h.xyz_max, FRAMES, SIZE)
    want = _direct(work["root"] / "decoded", cams, range(FRAMES))
    for i in (0, 1, 4, 5):
        assert np.array_equal(got[i], want[i]), i
    # ... and a concealed frame is the last good frame (1) seen from the lost frame's camera
    frozen = _direct(work["root"] / "decoded", [cams[2], cams[3]] * 1, range(1, 2))
    assert np.array_equal(got[2], frozen[1])
    assert not np.array_equal(got[2], want[2])


def test_a_dataset_camera_of_another_scene_is_noted(work, tmp_path):
    """``--camera dataset:DATA`` with DATA of another scene renders, but says so: the stream's grid box is
    DATA's grown by at most half a voxel per side (as ``rerf eval``)."""
    from rerf_codec.datasets import DatasetWriter, open_dataset

    src = open_dataset(work["data"])
    lo, hi = np.asarray(src.meta.xyz_min), np.asarray(src.meta.xyz_max)
    other = tmp_path / "other"
    meta = src.meta.__class__(**{**src.meta.__dict__, "num_frames": 1, "xyz_min": tuple(2 * lo), "xyz_max": tuple(2 * hi)})
    with DatasetWriter(other, meta) as w:
        for c in meta.cameras:
            w.write_image(0, c, src.load_image(0, c))
    res = run("render", work["rerf"], "-o", tmp_path / "o", "--camera", f"dataset:{other}", "--frames", "0:1", "--json")
    assert res.exit_code == 0, res.stderr
    notes = json.loads(res.stdout)["notes"]
    assert len(notes) == 1 and "bounding box" in notes[0] and notes[0].endswith("Rendered anyway")
    assert res.stderr.strip() == f"rerf: note: {notes[0]}"


def test_dataset_camera_path_and_errors(work, tmp_path):
    out = tmp_path / "ds"
    res = run("render", work["rerf"], "-o", out, "--camera", f"dataset:{work['data']}", "--camera-name", "cam001",
              "--json")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["camera"]["camera_name"] == "cam001" and rep["camera"]["size"] == [24, 24]
    assert rep["notes"] == [] and "note" not in res.stderr
    cam = eval_cameras()[1]
    want = _direct(work["root"] / "decoded", [cam] * FRAMES, range(FRAMES))
    got = _pngs(out)
    assert all(np.array_equal(got[i], want[i]) for i in range(FRAMES))
    # the default dataset camera is the first test camera
    p = camera_path(f"dataset:{work['data']}", (-1, -1, -1), (1, 1, 1))
    assert p.camera is not None and p.camera.name == "cam000"
    p = camera_path(f"dataset:{work['data']}", (-1, -1, -1), (1, 1, 1), size=(48, 40))
    assert (p.camera.w, p.camera.h) == (48, 40) and p.camera.fl_x == pytest.approx(2 * eval_cameras()[0].fl_x)
    with pytest.raises(RerfUsageError, match="orbit, spiral, dataset:DATA or a camera file"):
        camera_path("helix", (-1, -1, -1), (1, 1, 1))
    for args, word in (
        (("--camera", "helix"), "orbit, spiral"),
        (("--frames", "4:99"), "outside"),
        (("--device", "tpu"), "--device"),
        (("--camera", f"dataset:{work['data']}", "--camera-name", "nope"), "nope"),
    ):
        res = run("render", work["rerf"], "-o", tmp_path / "e.gif", *args)
        assert res.exit_code == 2 and word in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)
    res = run("render", work["rerf"], "-o", tmp_path / "e.avi")
    assert res.exit_code == 2 and ".mp4" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_camera_file_is_a_transforms_json_entry(work, tmp_path):
    """`--camera FILE.json` takes exactly a dataset camera entry (name/split optional) and renders what it sees."""
    cam = eval_cameras()[1]
    entry = cam.to_json()
    del entry["name"], entry["split"]
    (tmp_path / "cam.json").write_text(json.dumps(entry))
    out = tmp_path / "file"
    res = run("render", work["rerf"], "-o", out, "--camera", tmp_path / "cam.json", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["camera"]["kind"] == "file" and rep["camera"]["size"] == [cam.w, cam.h]
    want = _direct(work["root"] / "decoded", [cam] * FRAMES, range(FRAMES))
    got = _pngs(out)
    assert all(np.array_equal(got[i], want[i]) for i in range(FRAMES))
    # --size rescales the intrinsics as dataset: does
    p = camera_path(str(tmp_path / "cam.json"), (-1, -1, -1), (1, 1, 1), size=(48, 40))
    assert (p.camera.w, p.camera.h) == (48, 40) and p.camera.fl_x == pytest.approx(2 * cam.fl_x)
    # a bad camera file: one line naming the file and the field, nothing written
    bad = dict(entry, fl_x=-1)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "notjson.json").write_text("{")
    for f, word in (("bad.json", "fl_x"), ("notjson.json", "notjson.json"), ("missing.json", "missing.json")):
        res = run("render", work["rerf"], "-o", tmp_path / "e.gif", "--camera", tmp_path / f)
        assert res.exit_code == 2 and word in res.stderr and res.stderr.count("\n") == 1, (f, res.stderr)
    assert not (tmp_path / "e.gif").exists()


def test_codec_only_stream_cannot_be_rendered(tmp_path):
    from conftest import encode_to_bytes
    from player_fixtures import blob_frame

    from rerf_codec.codec.encoder import EncoderConfig

    stream, _ = encode_to_bytes([blob_frame(0)], EncoderConfig(gof=1))
    (tmp_path / "c.rerf").write_bytes(stream)
    res = run("render", tmp_path / "c.rerf", "-o", tmp_path / "o.gif")
    assert res.exit_code == 2 and "MLP" in res.stderr and not (tmp_path / "o.gif").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_cuda_matches_cpu(work, tmp_path):
    assert run("render", work["rerf"], "-o", tmp_path / "g", "--size", *SIZE, "--device", "cuda").exit_code == 0
    assert run("render", work["rerf"], "-o", tmp_path / "c", "--size", *SIZE).exit_code == 0
    a, b = _pngs(tmp_path / "g"), _pngs(tmp_path / "c")
    assert all(np.abs(a[i].astype(int) - b[i]).max() <= 2 for i in a)
