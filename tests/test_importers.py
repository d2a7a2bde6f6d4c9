"""Importers: NeRF-synthetic and the ReRF/NHR capture layout (DESIGN.md decision 7, issue part 3 and 6).

The ReRF capture is written here in the published layout (``CamPose.inf`` / ``Intrinsic.inf``
exactly as ``wuminye/NHR tools/cameras_from_metashape.py`` writes them, H.264 videos): each
camera sees a bright dot at the OpenCV projection of a moving world point, so the imported
OpenGL cameras must project that point onto the same pixel.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rerf_codec.datasets import importers
from rerf_codec.datasets.format import open_dataset
from rerf_codec.datasets.importers import import_nerf, import_rerf, parse_campose, parse_intrinsics
from rerf_codec.errors import RerfFormatError, RerfUsageError

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

LEGO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lego200"

W, H, T, FPS = 32, 24, 5, 25.0
BG = 60


# --------------------------------------------------------------------------- helpers


def _single_line_error(exc: pytest.ExceptionInfo[BaseException], *parts: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for p in parts:
        assert p in msg, msg
    return msg


def _assert_nothing_left(out: Path, before: set[str]) -> None:
    assert not out.exists()
    assert {p.name for p in out.parent.iterdir()} == before


def _opencv_look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world (x right, y down, z forward), world up = +z."""
    z = (target - eye) / np.linalg.norm(target - eye)
    down = np.array([0.0, 0.0, -1.0])
    y = down - (down @ z) * z
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, eye
    return m


CAMS_CV = [
    _opencv_look_at(np.array([4 * math.cos(a), 4 * math.sin(a), 0.6]), np.array([0.0, 0.0, 0.1]))
    for a in (0.3, 0.3 + 2 * math.pi / 3, 0.3 + 4 * math.pi / 3)
]
KS = [np.array([[28.0 + i, 0.0, 15.3 + 0.2 * i], [0.0, 30.0 - i, 11.6 - 0.1 * i], [0.0, 0.0, 1.0]]) for i in range(3)]


def _point(t: int) -> np.ndarray:
    return np.array([0.3 * math.cos(1.3 * t), 0.3 * math.sin(1.3 * t), 0.1 * t - 0.15])


def _project_cv(i: int, p: np.ndarray) -> np.ndarray:
    c2w, k = CAMS_CV[i], KS[i]
    pc = c2w[:3, :3].T @ (p - c2w[:3, 3])
    return np.array([k[0, 0] * pc[0] / pc[2] + k[0, 2], k[1, 1] * pc[1] / pc[2] + k[1, 2]])


def _mask_box(t: int) -> tuple[slice, slice]:
    return slice(5, 17), slice(4 + 2 * t, 18 + 2 * t)


def _write_video(path: Path, frames: list[np.ndarray], gray: bool = False) -> None:
    gen = imageio_ffmpeg.write_frames(
        str(path), (W, H), pix_fmt_in="gray" if gray else "rgb24", fps=FPS, codec="libx264", quality=None,
        macro_block_size=1, ffmpeg_log_level="error", output_params=["-crf", "12"],
    )  # fmt: skip
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()


def _campose_text(poses: list[np.ndarray]) -> str:
    lines = []
    for a in poses:
        row = np.concatenate([a[:3, 2], a[:3, 0], a[:3, 1], a[:3, 3]])
        lines.append(" ".join(f"{x:f}" for x in row))
    return "\n".join(lines) + "\n"


def _intrinsic_text(ks: list[np.ndarray]) -> str:
    out = ""
    for i, k in enumerate(ks):
        out += f"{i}\n" + "{:f} {:f} {:f}\n {:f} {:f} {:f}\n {:f} {:f} {:f}\n".format(*k.reshape(9)) + "\n"
    return out


def _camera_frames(i: int, n_frames: int = T) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rgbs, masks = [], []
    for t in range(n_frames):
        rgb = np.full((H, W, 3), BG, np.uint8)
        u, v = _project_cv(i, _point(t))
        rgb[int(v), int(u)] = 255
        mask = np.zeros((H, W), np.uint8)
        mask[_mask_box(t)] = 255
        rgbs.append(rgb)
        masks.append(mask)
    return rgbs, masks


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-camera, 5-frame, 32×24 capture in the ReRF layout."""
    root = tmp_path_factory.mktemp("rerf") / "capture"
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir()
    for i in range(3):
        rgbs, masks = _camera_frames(i)
        _write_video(root / "image" / f"{i:03d}.mp4", rgbs)
        _write_video(root / "mask" / f"{i:03d}.mp4", masks, gray=True)
    (root / "CamPose.inf").write_text(_campose_text(CAMS_CV))
    (root / "Intrinsic.inf").write_text(_intrinsic_text(KS))
    (root / "bbox.json").write_text(json.dumps({"xyz_min": [-1, -1, -1], "xyz_max": [1, 1, 1]}))
    return root


@pytest.fixture
def capture_copy(capture: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(capture, dst)
    return dst


# --------------------------------------------------------------------------- ReRF / NHR


def test_rerf_import_poses_images_masks(capture: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    out = tmp_path / "data"
    summary = import_rerf(capture, out, progress=lambda d, t: calls.append((d, t)), workers=2)
    assert summary["num_frames"] == T and summary["cameras"] == 3 and summary["test"] == 1
    assert calls[-1] == (3 * T, 3 * T) and len(calls) == 3 * T
    ds = open_dataset(out)
    m = ds.meta
    assert (m.num_frames, m.first_frame, m.fps, m.image_mode) == (T, 0, FPS, "RGBA")
    assert m.background == (1.0, 1.0, 1.0)
    assert (m.xyz_min, m.xyz_max) == ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    assert [c.name for c in m.cameras] == ["cam000", "cam001", "cam002"]
    assert [c.split for c in m.cameras] == ["train", "test", "train"]
    for i, cam in enumerate(m.cameras):
        assert (cam.w, cam.h) == (W, H)
        assert (cam.fl_x, cam.fl_y, cam.cx, cam.cy) == pytest.approx(
            (KS[i][0, 0], KS[i][1, 1], KS[i][0, 2], KS[i][1, 2])
        )
        np.testing.assert_allclose(cam.center, CAMS_CV[i][:3, 3], atol=1e-6)
        for t in range(T):
            p = _point(t)
            uv, depth = cam.project(p)
            assert depth > 0
            np.testing.assert_allclose(uv, _project_cv(i, p), atol=1e-3)
            img = ds.load_image(t, cam)
            lum = img[..., :3].mean(axis=2)
            v, u = np.unravel_index(np.argmax(lum), lum.shape)
            assert (u, v) == (int(uv[0]), int(uv[1])), (i, t)
            # the camera's ray through that pixel passes next to the point
            d = cam.pixel_directions(np.array(uv[0]), np.array(uv[1]))
            off = p - cam.center
            assert np.linalg.norm(off - (off @ d) * d) < 1e-6
            # alpha from the mask video, away from the box edges (lossy video)
            rows, cols = _mask_box(t)
            a = img[..., 3]
            assert np.all(a[rows.start + 2 : rows.stop - 2, cols.start + 2 : cols.stop - 2] == 1.0)
            outside = np.ones((H, W), bool)
            outside[rows.start - 2 : rows.stop + 2, cols.start - 2 : cols.stop + 2] = False
            assert np.all(a[outside] == 0.0)
            assert abs(float(np.median(img[..., :3])) * 255 - BG) <= 3


def test_rerf_frame_range_test_cameras_binary_mask_downscale(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "cut"
    import_rerf(capture, out, frames=range(1, 4), test_cameras=[0, 2], mask_threshold=127)
    ds = open_dataset(out)
    assert (ds.meta.first_frame, ds.meta.num_frames) == (1, 3)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000001", "000002", "000003"]
    assert [c.split for c in ds.meta.cameras] == ["test", "train", "test"]
    for t in (1, 3):  # original frame numbers: the dot of frame t
        cam = ds.meta.cameras[2]
        img = ds.load_image(t, cam)
        assert set(np.unique(img[..., 3]).tolist()) <= {0.0, 1.0}
        lum = img[..., :3].mean(axis=2)
        v, u = np.unravel_index(np.argmax(lum), lum.shape)
        uv, _ = cam.project(_point(t))
        assert (u, v) == (int(uv[0]), int(uv[1]))

    half = tmp_path / "half"
    import_rerf(capture, half, frames="3:", downscale=2, test_cameras=1)
    hm = open_dataset(half).meta
    assert (hm.first_frame, hm.num_frames) == (3, 2)
    c = hm.cameras[0]
    assert (c.w, c.h, c.fl_x, c.cx) == (W // 2, H // 2, pytest.approx(KS[0][0, 0] / 2), pytest.approx(KS[0][0, 2] / 2))
    uv, _ = c.project(_point(4))
    np.testing.assert_allclose(uv, _project_cv(0, _point(4)) / 2, atol=1e-3)


def test_rerf_refuses_existing_output_and_bad_arguments(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(RerfUsageError):
        import_rerf(capture, out, force=True)  # not a dataset: never replaced
    assert (out / "keep.txt").exists()
    for kwargs in ({"frames": "3:3"}, {"frames": range(0, 6)}, {"frames": "7:"}, {"frames": (0, 1)}, {"test_cameras": 3},
                   {"test_cameras": [0, 0]}, {"test_cameras": [5]}, {"downscale": 5}):  # fmt: skip
        with pytest.raises(RerfUsageError):
            import_rerf(capture, tmp_path / "x", **kwargs)
        assert not (tmp_path / "x").exists()


def _rewrite_mask_frames(src: Path, cam: int, n: int) -> None:
    _, masks = _camera_frames(cam, n)
    _write_video(src / "mask" / f"{cam:03d}.mp4", masks, gray=True)


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing_mask", "mask/002.mp4"),
        ("missing_image", "image/001.mp4"),
        ("extra_video", "image/003.mp4"),
        ("intrinsics_count", "Intrinsic.inf"),
        ("campose_count", "Intrinsic.inf"),
        ("non_orthonormal", "CamPose.inf: line 2"),
        ("reflection", "CamPose.inf: line 3"),
        ("campose_numbers", "CamPose.inf: line 1"),
        ("frame_count", "mask/001.mp4"),
        ("unreadable_video", "image/000.mp4"),
        ("empty_video", "mask/000.mp4"),
        ("bad_bbox", "bbox.json"),
        ("missing_bbox", "bbox.json"),
        ("bbox_elsewhere", "bbox.json"),
        ("principal_point", "Intrinsic.inf: camera 1"),
    ],
)
def test_rerf_bad_input_one_line_nothing_left(capture_copy: Path, tmp_path: Path, case: str, needle: str) -> None:
    src = capture_copy
    if case == "missing_mask":
        (src / "mask" / "002.mp4").unlink()
    elif case == "missing_image":
        (src / "image" / "001.mp4").unlink()
    elif case == "extra_video":
        shutil.copy(src / "image" / "000.mp4", src / "image" / "003.mp4")
    elif case == "intrinsics_count":
        (src / "Intrinsic.inf").write_text(_intrinsic_text(KS[:2]))
    elif case == "campose_count":
        (src / "CamPose.inf").write_text(_campose_text([*CAMS_CV, CAMS_CV[0]]))
    elif case == "non_orthonormal":
        bad = [c.copy() for c in CAMS_CV]
        bad[1][:3, 0] *= 1.2
        (src / "CamPose.inf").write_text(_campose_text(bad))
    elif case == "reflection":
        bad = [c.copy() for c in CAMS_CV]
        bad[2][:3, 0] *= -1
        (src / "CamPose.inf").write_text(_campose_text(bad))
    elif case == "campose_numbers":
        (src / "CamPose.inf").write_text("1 2 3\n" + _campose_text(CAMS_CV[1:]))
    elif case == "frame_count":
        _rewrite_mask_frames(src, 1, T - 1)
    elif case == "unreadable_video":
        (src / "image" / "000.mp4").write_bytes(b"this is not a video" * 10)
    elif case == "empty_video":
        (src / "mask" / "000.mp4").write_bytes(b"")
    elif case == "bad_bbox":
        (src / "bbox.json").write_text('{"xyz_min": [0, 0], "xyz_max": [1, 1, 1]}')
    elif case == "missing_bbox":
        (src / "bbox.json").unlink()
    elif case == "bbox_elsewhere":
        (src / "bbox.json").write_text(json.dumps({"xyz_min": [100, 100, 100], "xyz_max": [101, 101, 101]}))
    elif case == "principal_point":
        ks = [k.copy() for k in KS]
        ks[1][0, 2] = 3 * W
        (src / "Intrinsic.inf").write_text(_intrinsic_text(ks))
    out = tmp_path / "out" / "data"
    out.parent.mkdir()
    with pytest.raises(RerfFormatError) as exc:
        import_rerf(src, out)
    _single_line_error(exc, needle)
    _assert_nothing_left(out, set())


def test_rerf_failure_while_writing_leaves_nothing(
    capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importers._compose
    calls = {"n": 0}

    def flaky(*args: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 7:
            raise RerfFormatError("image/001.mp4: simulated decode failure")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(importers, "_compose", flaky)
    out = tmp_path / "data"
    before = {p.name for p in tmp_path.iterdir()}
    with pytest.raises(RerfFormatError, match="simulated"):
        import_rerf(capture, out, workers=2)
    _assert_nothing_left(out, before)


def test_rerf_replace_with_force(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    import_rerf(capture, out, frames=range(0, 1))
    with pytest.raises(RerfUsageError, match="exists"):
        import_rerf(capture, out, frames=range(0, 2))
    import_rerf(capture, out, frames=range(0, 2), force=True)
    assert open_dataset(out).meta.num_frames == 2


def test_parse_calibration_variants(tmp_path: Path) -> None:
    k = tmp_path / "Intrinsic.inf"
    # one 9-number line per camera, no index lines (another NHR-family writer)
    k.write_text("\n".join(" ".join(f"{x:g}" for x in kk.reshape(9)) for kk in KS) + "\n")
    np.testing.assert_allclose(parse_intrinsics(k), KS)
    k.write_text(_intrinsic_text(KS).replace("\n0\n", "\n0\n"))
    np.testing.assert_allclose(parse_intrinsics(k), KS, atol=1e-6)
    k.write_text("0\n1 0 2\n0 1 2\n0 0 1\n\n2\n1 0 2\n0 1 2\n0 0 1\n")
    with pytest.raises(RerfFormatError, match=r"line 6: camera index 2 out of order"):
        parse_intrinsics(k)
    k.write_text("0\n1 0 2\n0 1 2\n")
    with pytest.raises(RerfFormatError, match="unfinished"):
        parse_intrinsics(k)
    k.write_text("0\n1 0 2\n0 1 2\n0 1 1\n")
    with pytest.raises(RerfFormatError, match=r"camera 0 \(line 1\)"):
        parse_intrinsics(k)
    p = tmp_path / "CamPose.inf"
    p.write_text(_campose_text(CAMS_CV))
    gl = parse_campose(p)
    for cv, g in zip(CAMS_CV, gl, strict=True):
        np.testing.assert_allclose(g @ np.diag([1.0, -1.0, -1.0, 1.0]), cv, atol=1e-6)
        np.testing.assert_allclose(g[:3, :3].T @ g[:3, :3], np.eye(3), atol=1e-12)
    p.write_text(_campose_text(CAMS_CV).replace("0.", "x.", 1))
    with pytest.raises(RerfFormatError, match="line 1: expected numbers"):
        parse_campose(p)


@pytest.mark.parametrize(
    "doc",
    [
        {"xyz_min": [-1, -2, -3], "xyz_max": [1, 2, 3]},
        {"min": [-1, -2, -3], "max": [1, 2, 3]},
        {"bbox_min": [-1, -2, -3], "bbox_max": [1, 2, 3]},
        {"aabb": [[-1, -2, -3], [1, 2, 3]]},
        {"bbox": {"xyz_min": [-1, -2, -3], "xyz_max": [1, 2, 3]}},
        [[-1, -2, -3], [1, 2, 3]],
        [-1, -2, -3, 1, 2, 3],
    ],
)
def test_bbox_spellings(doc: object) -> None:
    assert importers._parse_bbox(doc, "bbox.json") == ((-1, -2, -3), (1, 2, 3))


def test_bbox_rejects_inverted_and_garbage() -> None:
    with pytest.raises(RerfFormatError, match="min must be < max"):
        importers._parse_bbox({"xyz_min": [1, 0, 0], "xyz_max": [0, 1, 1]}, "bbox.json")
    for bad in ("box", [1, 2, 3], {"aabb": "x"}, {"xyz_min": [0, 0, True], "xyz_max": [1, 1, 1]}):
        with pytest.raises(RerfFormatError, match=r"bbox\.json"):
            importers._parse_bbox(bad, "bbox.json")


# --------------------------------------------------------------------------- NeRF-synthetic


def _nerf_c2w(angle: float) -> list[list[float]]:
    """A Blender/OpenGL camera-to-world at radius 4 looking at the origin."""
    eye = np.array([4 * math.cos(angle), 4 * math.sin(angle), 1.0])
    back = eye / np.linalg.norm(eye)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, eye
    return m.tolist()


def _nerf_scene(root: Path, mode: str = "RGBA", extra: dict | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    images = {}
    for split, n in (("train", 2), ("test", 1)):
        (root / split).mkdir(parents=True)
        frames = []
        for i in range(n):
            arr = rng.integers(0, 256, (16, 16, len(mode)), dtype=np.uint8)
            Image.fromarray(arr, mode).save(root / split / f"r_{i}.png")
            images[f"{split}/r_{i}"] = arr
            frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.0, "transform_matrix": _nerf_c2w(i + 0.5 * (split == "test"))})  # fmt: skip
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames, **(extra or {})}))  # fmt: skip
    return images


def test_nerf_tiny_scene(tmp_path: Path) -> None:
    src = tmp_path / "scene"
    images = _nerf_scene(src)
    out = tmp_path / "data"
    summary = import_nerf(src, out)
    assert summary["cameras"] == 3 and summary["train"] == 2 and summary["test"] == 1
    ds = open_dataset(out)
    m = ds.meta
    assert (m.num_frames, m.first_frame, m.fps, m.image_mode, m.background) == (1, 0, 30.0, "RGBA", (1.0, 1.0, 1.0))
    assert (m.xyz_min, m.xyz_max) == ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))
    assert m.source["importer"] == "nerf"
    assert [(c.name, c.split) for c in m.cameras] == [("cam000", "train"), ("cam001", "train"), ("cam002", "test")]
    fl = 0.5 * 16 / math.tan(0.4)
    for cam, key, angle in zip(m.cameras, ("train/r_0", "train/r_1", "test/r_0"), (0.0, 1.0, 0.5), strict=True):
        assert (cam.fl_x, cam.fl_y, cam.cx, cam.cy, cam.w, cam.h) == (
            pytest.approx(fl),
            pytest.approx(fl),
            8,
            8,
            16,
            16,
        )
        np.testing.assert_allclose(cam.c2w, _nerf_c2w(angle), atol=1e-12)
        uv, depth = cam.project(np.zeros(3))  # every camera looks at the origin
        assert depth > 0
        np.testing.assert_allclose(uv, (8, 8), atol=1e-9)
        got = np.rint(ds.load_image(0, cam) * 255).astype(np.uint8)
        np.testing.assert_array_equal(got, images[key])


def test_nerf_rgb_bbox_and_val_split(tmp_path: Path) -> None:
    src = tmp_path / "scene"
    images = _nerf_scene(src, "RGB", {"aabb": [[-1, -1, 0], [1, 1, 2]]})
    shutil.copy(src / "transforms_test.json", src / "transforms_val.json")
    out = tmp_path / "data"
    import_nerf(src, out, test_split="val")
    ds = open_dataset(out)
    assert ds.meta.image_mode == "RGB" and ds.meta.background == (1.0, 1.0, 1.0)
    assert (ds.meta.xyz_min, ds.meta.xyz_max) == ((-1, -1, 0), (1, 1, 2))
    got = np.rint(ds.load_image(0, "cam002")[..., :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, images["test/r_0"])


@pytest.mark.parametrize("case", ["missing_image", "corrupt_image", "non_orthonormal", "no_test_file", "no_angle"])
def test_nerf_bad_input(tmp_path: Path, case: str) -> None:
    src = tmp_path / "scene"
    _nerf_scene(src)
    needle = ""
    if case == "missing_image":
        (src / "train" / "r_1.png").unlink()
        needle = "train/r_1.png"
    elif case == "corrupt_image":
        (src / "test" / "r_0.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
        needle = "test/r_0.png"
    elif case == "non_orthonormal":
        d = json.loads((src / "transforms_train.json").read_text())
        d["frames"][1]["transform_matrix"][0][0] *= 1.5
        (src / "transforms_train.json").write_text(json.dumps(d))
        needle = "transforms_train.json: frames[1]"
    elif case == "no_test_file":
        (src / "transforms_test.json").unlink()
        needle = "transforms_test.json"
    elif case == "no_angle":
        d = json.loads((src / "transforms_test.json").read_text())
        del d["camera_angle_x"]
        (src / "transforms_test.json").write_text(json.dumps(d))
        needle = "camera_angle_x"
    out = tmp_path / "out" / "data"
    out.parent.mkdir()
    with pytest.raises(RerfFormatError) as exc:
        import_nerf(src, out)
    _single_line_error(exc, needle)
    _assert_nothing_left(out, set())


@pytest.mark.skipif(not LEGO.is_dir(), reason="sample data ../shared/data/lego200 is not present")
def test_nerf_lego200(tmp_path: Path) -> None:
    out = tmp_path / "lego"
    summary = import_nerf(LEGO, out, max_test=4)
    assert (summary["cameras"], summary["train"], summary["test"], summary["size"]) == (104, 100, 4, [200, 200])
    ds = open_dataset(out)
    train = json.loads((LEGO / "transforms_train.json").read_text())
    test = json.loads((LEGO / "transforms_test.json").read_text())
    fl = 0.5 * 200 / math.tan(0.5 * train["camera_angle_x"])
    cam0 = ds.meta.camera("cam000")
    assert (cam0.fl_x, cam0.cx, cam0.cy) == (pytest.approx(fl), 100, 100)
    assert ds.meta.image_mode == "RGBA"
    np.testing.assert_allclose(cam0.c2w, train["frames"][0]["transform_matrix"], atol=1e-6)
    kept = [25, 75, 125, 175]  # 4 of 200 test views, spread evenly
    for j, idx in enumerate(kept):
        cam = ds.meta.camera(f"cam{100 + j:03d}")
        assert cam.split == "test"
        np.testing.assert_allclose(cam.c2w, test["frames"][idx]["transform_matrix"], atol=1e-6)
    for name, rel in (("cam000", train["frames"][0]["file_path"]), ("cam101", test["frames"][75]["file_path"])):
        src = np.asarray(Image.open(LEGO / (rel + ".png")).convert("RGBA"))
        got = np.rint(ds.load_image(0, name) * 255).astype(np.uint8)
        np.testing.assert_array_equal(got, src)
    # the object sits inside the default box, in front of every camera
    assert all(c.visible(np.zeros(3)) for c in ds.meta.cameras)


def test_compose_soft_binary_and_downscale() -> None:
    rgb = np.zeros((2, 4, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[..., 1][rgb[..., 0] == 0] = 200
    mask = np.array([[255, 3, 250, 128], [0, 0, 6, 249]], np.uint8)[..., None]
    soft = importers._compose(rgb, mask, None, 1)
    assert soft[..., 3].tolist() == [[255, 0, 255, 128], [0, 0, 0, 255]]  # codec noise snapped
    assert importers._compose(rgb, mask, 127, 1)[..., 3].tolist() == [[255, 0, 255, 255], [0, 0, 0, 255]]
    mask2 = np.zeros((2, 4, 1), np.uint8)
    mask2[0, 0] = 255
    half = importers._compose(rgb, mask2, None, 2)
    assert half.shape == (1, 2, 4)
    assert half[0, 0].tolist() == [255, 0, 0, 64]  # premultiplied: the transparent green does not bleed in
    assert half[0, 1].tolist() == [0, 200, 0, 0]  # fully transparent block keeps its plain mean colour
