"""``rerf dataset ...``: happy paths on tiny inputs, --json documents, refusals and one-line errors.

The library behind each command has its own tests (test_dataset_format, test_mesh_render,
test_importers, test_demo_scene); here only the command-line layer is checked: arguments
reach the library, summaries and JSON documents come out, and every bad input ends with
exit 2, exactly one ``rerf: error:`` line on stderr, no traceback and nothing left behind.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `cli` is a top-level package next to rerf_codec
    sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

from cli.main import cli  # noqa: E402
from rerf_codec.datasets.format import open_dataset  # noqa: E402

RERF = Path(sys.executable).parent / "rerf"

pytest.importorskip("embreex")
pytest.importorskip("trimesh")


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args: object):
    res = run(*args)
    assert res.exit_code == 0, (res.exit_code, res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    return res


def ok_json(*args: object) -> dict:
    res = ok(*args, "--json")
    return json.loads(res.stdout)  # exactly one document: json.loads rejects trailing text


def one_line_error(res, *parts: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("rerf: error:"), lines[0]
    for p in parts:
        assert p in lines[0], lines[0]
    return lines[0]


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# --------------------------------------------------------------------------- tiny inputs


def write_mesh(path: Path, frames: int = 2) -> Path:
    """An octahedron (closed, 6 vertices) moving along +x, as a mesh-sequence .npz."""
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float32) * 0.5
    f = np.array(
        [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]], dtype=np.int32
    )
    np.savez(
        path, vertices=np.stack([v + np.float32([0.1 * t, 0, 0]) for t in range(frames)]).astype(np.float32), faces=f
    )
    return path


def write_nerf(root: Path, n_train: int = 2, n_test: int = 1, size: int = 8) -> Path:
    """A NeRF-synthetic scene: transforms_{train,test}.json + RGBA PNGs (cameras on a circle, looking at 0)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split).mkdir()
        frames = []
        for i in range(n):
            a = 2 * math.pi * (i + (0.5 if split == "test" else 0)) / n
            c2w = np.eye(4)  # rotation about y, camera 4 units out along its +z (it looks along -z)
            c2w[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
            c2w[:3, 3] = 4 * c2w[:3, 2]
            rgba = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
            Image.fromarray(rgba, "RGBA").save(root / split / f"r_{i}.png")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    return root


# ReRF/NHR capture writer: a minimal copy of the one in test_importers.py (same file formats).
CW, CH = 32, 24


def _opencv_look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world (x right, y down, z forward), world up = +z."""
    z = (target - eye) / np.linalg.norm(target - eye)
    down = np.array([0.0, 0.0, -1.0])
    y = down - (down @ z) * z
    y /= np.linalg.norm(y)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = np.cross(y, z), y, z, eye
    return m


def write_capture(root: Path, n_cams: int = 3, n_frames: int = 3) -> Path:
    """``image/NNN.mp4`` + ``mask/NNN.mp4``, ``CamPose.inf``, ``Intrinsic.inf``, ``bbox.json`` (NHR layout)."""
    ffmpeg = pytest.importorskip("imageio_ffmpeg")
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir()

    def video(path: Path, frames: list[np.ndarray], gray: bool) -> None:
        gen = ffmpeg.write_frames(
            str(path), (CW, CH), pix_fmt_in="gray" if gray else "rgb24", fps=25.0, codec="libx264", quality=None,
            macro_block_size=1, ffmpeg_log_level="error", output_params=["-crf", "12"],
        )  # fmt: skip
        gen.send(None)
        for f in frames:
            gen.send(np.ascontiguousarray(f))
        gen.close()

    poses, lines, intr = [], [], ""
    for i in range(n_cams):
        a = 0.3 + 2 * math.pi * i / n_cams
        poses.append(_opencv_look_at(np.array([4 * math.cos(a), 4 * math.sin(a), 0.6]), np.array([0.0, 0.0, 0.1])))
        lines.append(" ".join(f"{x:f}" for x in np.concatenate([poses[i][:3, c] for c in (2, 0, 1, 3)])))
        k = [28.0, 0.0, CW / 2, 0.0, 28.0, CH / 2, 0.0, 0.0, 1.0]
        intr += f"{i}\n" + "{:f} {:f} {:f}\n {:f} {:f} {:f}\n {:f} {:f} {:f}\n".format(*k) + "\n"
        rgbs, masks = [], []
        for t in range(n_frames):
            rgbs.append(np.full((CH, CW, 3), 40 + 50 * t, np.uint8))
            mask = np.zeros((CH, CW), np.uint8)
            mask[5:17, 4 + 2 * t : 18 + 2 * t] = 255
            masks.append(mask)
        video(root / "image" / f"{i:03d}.mp4", rgbs, gray=False)
        video(root / "mask" / f"{i:03d}.mp4", masks, gray=True)
    (root / "CamPose.inf").write_text("\n".join(lines) + "\n")
    (root / "Intrinsic.inf").write_text(intr)
    (root / "bbox.json").write_text(json.dumps({"xyz_min": [-1, -1, -1], "xyz_max": [1, 1, 1]}))
    return root


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dataset_cli")


@pytest.fixture(scope="module")
def mesh_data(work: Path) -> tuple[Path, dict]:
    """from-mesh on the tiny mesh: 2 train + 1 test cameras at 24 px, 2 frames (reused by info/preview)."""
    mesh = write_mesh(work / "octa.npz")
    out = work / "octa"
    rep = ok_json("dataset", "from-mesh", mesh, "-o", out, "--cameras", 2, "--test-cameras", 1, "--size", 24)
    return out, rep


# --------------------------------------------------------------------------- from-mesh


def test_from_mesh_json(mesh_data: tuple[Path, dict]) -> None:
    out, rep = mesh_data
    assert rep["frames"] == 2 and rep["cameras"] == 3 and rep["train_cameras"] == 2 and rep["test_cameras"] == 1
    assert rep["size"] == 24 and rep["first_frame"] == 0 and rep["bytes_on_disk"] > 0
    assert rep["renderer"].startswith("embree")
    ds = open_dataset(out)
    assert ds.meta.num_frames == 2 and [c.split for c in ds.meta.cameras].count("test") == 1
    assert {(c.w, c.h) for c in ds.meta.cameras} == {(24, 24)}
    img = ds.load_image(1, ds.meta.cameras[0])
    assert img.shape == (24, 24, 4) and 0 < img[..., 3].mean() < 1  # the mesh covers part of the view
    assert not [p for p in listing(out.parent) if p.startswith(".")]  # no temp dirs


def test_from_mesh_human_frames_step_and_force(work: Path, mesh_data: tuple[Path, dict]) -> None:
    mesh = write_mesh(work / "octa3.npz", frames=3)
    out = work / "cut"
    args = ("dataset", "from-mesh", mesh, "-o", out, "--cameras", 1, "--test-cameras", 1, "--size", 16)
    res = ok(*args, "--frames", "1:")
    assert "rendered 2 frames × 2 cameras (1 train + 1 test) at 16 px" in res.stdout and "renderer embree" in res.stdout
    assert res.stderr == ""  # no progress bar off a terminal
    assert open_dataset(out).meta.first_frame == 1
    before = (out / "transforms.json").read_bytes()
    one_line_error(run(*args), "exists", "--force")
    assert (out / "transforms.json").read_bytes() == before
    rep = ok_json(*args, "--step", 2, "--force")
    assert rep["frames"] == 2 and rep["step"] == 2
    assert open_dataset(out).meta.num_frames == 2
    assert not [p for p in listing(work) if p.startswith(".")]


@pytest.mark.parametrize(
    ("frames", "message"),
    [("5:3", "empty"), ("x", "A:B"), ("a:b", "A:B"), ("0:-1", ">= 0"), ("-2:", ">= 0"), ("0:9", "0:9")],
)
def test_from_mesh_bad_frames(work: Path, frames: str, message: str) -> None:
    mesh = work / "bad_frames.npz"
    if not mesh.exists():
        write_mesh(mesh)
    before = listing(work)
    res = run("dataset", "from-mesh", mesh, "-o", work / "never", "--frames", frames, "--size", 8)
    one_line_error(res, message)
    assert listing(work) == before


def test_from_mesh_bad_mesh_files(work: Path) -> None:
    before = listing(work)
    one_line_error(run("dataset", "from-mesh", work / "nope.npz", "-o", work / "never"), "nope.npz", "does not exist")
    corrupt = work / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    one_line_error(run("dataset", "from-mesh", corrupt, "-o", work / "never"), "corrupt.npz")
    wrong = work / "wrong.npz"
    np.savez(wrong, verts=np.zeros((1, 3, 3), np.float32))
    one_line_error(run("dataset", "from-mesh", wrong, "-o", work / "never"), "missing field 'vertices'")
    assert listing(work) == before | {"corrupt.npz", "wrong.npz"}
    one_line_error(run("dataset", "from-mesh", wrong, "-o", work / "never", "--size", 4), "--size")


# --------------------------------------------------------------------------- info, preview


def test_info_human_and_json(mesh_data: tuple[Path, dict]) -> None:
    out, _ = mesh_data
    text = ok("dataset", "info", out).stdout
    for piece in ("dataset ", "frames       2 (first 0)", "cameras      3 (2 train, 1 test", "24×24 (3)", "RGBA PNG"):
        assert piece in text, text
    info = ok_json("dataset", "info", out)
    assert {"path", "frames", "first_frame", "fps", "cameras", "resolutions", "images", "bbox", "image_mode",
            "background", "bytes_on_disk", "source"} <= set(info)  # fmt: skip
    assert info["frames"] == 2 and info["images"] == 6
    assert info["cameras"]["total"] == 3 and info["cameras"]["test"] == 1 and len(info["cameras"]["test_names"]) == 1
    assert info["resolutions"] == [{"w": 24, "h": 24, "cameras": 3}]
    assert info["bytes_on_disk"] > 0
    assert ok_json("dataset", "info", out / "transforms.json")["frames"] == 2  # the JSON file works too


def test_info_errors(work: Path, mesh_data: tuple[Path, dict]) -> None:
    one_line_error(run("dataset", "info", work / "missing"), "does not exist")
    one_line_error(run("dataset", "info", work / "octa.npz"), "not a directory")
    # A dataset whose image is missing: info names the first missing file.
    src, _ = mesh_data
    broken = work / "broken"
    broken.mkdir()
    (broken / "transforms.json").write_bytes((src / "transforms.json").read_bytes())
    (broken / "images").mkdir()
    for fr in ("000000", "000001"):
        (broken / "images" / fr).mkdir()
        for png in (src / "images" / fr).iterdir():
            (broken / "images" / fr / png.name).write_bytes(png.read_bytes())
    victim = sorted((broken / "images" / "000001").iterdir())[0]
    victim.unlink()
    one_line_error(run("dataset", "info", broken), victim.name, "image is missing")
    one_line_error(run("dataset", "preview", broken, "-o", work / "never.png"), "image is missing")
    (broken / "transforms.json").write_text("{not json")
    one_line_error(run("dataset", "info", broken), "transforms.json")
    assert not (work / "never.png").exists()


def test_preview(work: Path, mesh_data: tuple[Path, dict]) -> None:
    out, _ = mesh_data
    sheet = work / "sheet.png"
    res = ok("dataset", "preview", out, "-o", sheet, "--size", 16)
    # 3 cameras × 2 frames of 16-px tiles with 2-px separators: (2·16 + 3·2) wide, (3·16 + 4·2) high.
    assert "contact sheet 38×56" in res.stdout
    with Image.open(sheet) as im:
        assert (im.width, im.height, im.mode) == (38, 56, "RGB")
    before = sheet.read_bytes()
    one_line_error(run("dataset", "preview", out, "-o", sheet), "exists", "--force")
    assert sheet.read_bytes() == before
    ok("dataset", "preview", out, "-o", sheet, "--cameras", 1, "--frames", 1, "--size", 8, "--force")
    with Image.open(sheet) as im:
        assert (im.width, im.height) == (12, 12)
    assert not [p for p in listing(work) if p.startswith(".")]


# --------------------------------------------------------------------------- importers


def test_import_nerf(work: Path) -> None:
    src = write_nerf(work / "nerf_src", n_train=3, n_test=2)
    out = work / "nerf"
    res = ok("dataset", "import-nerf", src, "-o", out, "--max-test", 1)
    assert "imported NeRF-synthetic: 1 frame(s) × 4 cameras (3 train + 1 test), 8×8 RGBA" in res.stdout
    ds = open_dataset(out)
    assert ds.meta.num_frames == 1 and [c.split for c in ds.meta.cameras] == ["train"] * 3 + ["test"]
    with Image.open(src / "train" / "r_1.png") as im:
        original = np.asarray(im)
    np.testing.assert_array_equal(np.rint(ds.load_image(0, ds.meta.cameras[1]) * 255).astype(np.uint8), original)
    one_line_error(run("dataset", "import-nerf", src, "-o", out), "exists", "--force")
    rep = ok_json("dataset", "import-nerf", src, "-o", out, "--force")
    assert rep["cameras"] == 5 and rep["train"] == 3 and rep["test"] == 2 and rep["size"] == [8, 8]
    assert rep["num_frames"] == 1 and rep["image_mode"] == "RGBA"

    (src / "test" / "r_1.png").unlink()
    before = listing(work)
    one_line_error(run("dataset", "import-nerf", src, "-o", work / "never"), "r_1.png", "image is missing")
    one_line_error(run("dataset", "import-nerf", work / "no_such", "-o", work / "never"), "not a directory")
    assert listing(work) == before


def test_import_rerf(work: Path) -> None:
    src = write_capture(work / "capture")
    out = work / "rerf"
    res = ok("dataset", "import-rerf", src, "-o", out, "--frames", "1:3", "--test-cameras", 1)
    assert "imported ReRF/NHR capture: 2 frame(s) × 3 cameras (2 train + 1 test), 32×24 RGBA at 25 fps" in res.stdout
    ds = open_dataset(out)
    assert ds.meta.first_frame == 1 and ds.meta.num_frames == 2
    rep = ok_json("dataset", "import-rerf", src, "-o", out, "--downscale", 2, "--force")
    assert rep["num_frames"] == 3 and rep["size"] == [16, 12] and rep["cameras"] == 3
    alpha = open_dataset(out).load_image(0, "cam000")[..., 3]
    assert 0 < alpha.mean() < 1  # the mask video became the alpha channel

    before = listing(work)
    one_line_error(run("dataset", "import-rerf", src, "-o", work / "never", "--frames", "2:9"), "past the end")
    one_line_error(run("dataset", "import-rerf", src, "-o", work / "never", "--frames", "3:1"), "empty")
    one_line_error(run("dataset", "import-rerf", src, "-o", work / "never", "--downscale", 5), "downscale 5")
    (src / "mask" / "001.mp4").unlink()
    one_line_error(run("dataset", "import-rerf", src, "-o", work / "never"), "001.mp4")
    assert listing(work) == before


# --------------------------------------------------------------------------- demo, the installed command


def test_demo_quick(work: Path) -> None:
    out = work / "demo"
    res = ok("dataset", "demo", "-o", out, "--quick")
    assert res.stdout.startswith(f"demo scene → {out}")
    meta = open_dataset(out).meta
    assert (meta.num_frames, len(meta.cameras), meta.cameras[0].w) == (8, 5, 48)
    before = (out / "transforms.json").read_bytes()
    one_line_error(run("dataset", "demo", "-o", out, "--quick"), "exists", "--force")
    assert (out / "transforms.json").read_bytes() == before


def test_installed_command(work: Path, mesh_data: tuple[Path, dict]) -> None:
    if not RERF.exists():
        pytest.skip(f"{RERF} is not installed")
    env = {**os.environ, "RERF_DEBUG": ""}
    out, _ = mesh_data
    proc = subprocess.run([RERF, "dataset", "info", out, "--json"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cameras"]["total"] == 3 and proc.stderr == ""
    proc = subprocess.run(
        [RERF, "dataset", "from-mesh", work / "octa.npz", "-o", work / "never", "--frames", "x"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("rerf: error:") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (work / "never").exists()
