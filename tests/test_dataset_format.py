"""Native dataset format: conventions, validating loader, atomic writer, preview."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from rerf_codec.datasets import (
    Camera,
    Dataset,
    DatasetMeta,
    DatasetWriter,
    open_dataset,
    split_cameras,
)
from rerf_codec.datasets import format as dfmt
from rerf_codec.datasets.preview import contact_sheet, dataset_info, format_info, write_contact_sheet
from rerf_codec.errors import RerfFormatError, RerfUsageError

W, H = 16, 12


def make_meta(n_cams: int = 4, n_frames: int = 3, mode: str = "RGBA", first: int = 0) -> DatasetMeta:
    splits = split_cameras(n_cams, 1)
    cams = []
    for i in range(n_cams):
        a = 2 * np.pi * i / n_cams
        eye = [3 * np.cos(a), 3 * np.sin(a), 1.0]
        cams.append(Camera.look_at(f"cam{i:03d}", eye, [0, 0, 0], [0, 0, 1], 50.0, W, H, split=splits[i]))
    return DatasetMeta(
        num_frames=n_frames,
        first_frame=first,
        fps=25.0,
        xyz_min=(-1.0, -1.0, -1.0),
        xyz_max=(1.0, 1.0, 1.0),
        image_mode=mode,
        background=(1.0, 1.0, 1.0),
        cameras=tuple(cams),
        source={"kind": "test"},
    )


def image_for(frame: int, cam_index: int, channels: int = 4) -> np.ndarray:
    rng = np.random.default_rng(frame * 100 + cam_index)
    return rng.integers(0, 256, size=(H, W, channels), dtype=np.uint8)


def write_ds(root: Path, meta: DatasetMeta | None = None) -> Dataset:
    meta = meta or make_meta()
    with DatasetWriter(root, meta) as w:
        for f in meta.frame_indices:
            for i, c in enumerate(meta.cameras):
                w.write_image(f, c.name, image_for(f, i, meta.channels))
    return open_dataset(root)


def edit_json(root: Path, fn) -> None:
    p = root / "transforms.json"
    d = json.loads(p.read_text())
    fn(d)
    p.write_text(json.dumps(d))


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("mode", ["RGBA", "RGB"])
def test_round_trip(tmp_path: Path, mode: str) -> None:
    meta = make_meta(mode=mode, first=5)
    ds = write_ds(tmp_path / "ds", meta)
    assert ds.meta == meta
    assert list(ds.meta.frame_indices) == [5, 6, 7]
    assert len(ds.meta.test_cameras) == 1 and len(ds.meta.train_cameras) == 3
    assert ds.image_path(6, "cam001") == tmp_path / "ds" / "images" / "000006" / "cam001.png"
    img = ds.load_image(6, "cam001")
    assert img.dtype == np.float32 and img.shape == (H, W, 4)
    src = image_for(6, 1, meta.channels)
    np.testing.assert_allclose(img[..., : meta.channels], src / 255.0, atol=1e-6)
    if mode == "RGB":
        assert np.all(img[..., 3] == 1.0)
    frame = ds.load_frame(7)
    assert frame.shape == (4, H, W, 4)
    np.testing.assert_array_equal(frame[2], ds.load_image(7, ds.meta.cameras[2]))
    assert ds.load_frame(7, ["cam003"]).shape == (1, H, W, 4)
    # opening via the json path works too; nothing temporary left next to the output
    assert open_dataset(tmp_path / "ds" / "transforms.json").meta == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_float_images_are_rounded(tmp_path: Path) -> None:
    meta = make_meta(n_cams=2, n_frames=1)
    with DatasetWriter(tmp_path / "ds", meta) as w:
        for c in meta.cameras:
            w.write_image(0, c.name, np.full((H, W, 4), 0.5, dtype=np.float32))
    img = open_dataset(tmp_path / "ds").load_image(0, "cam000")
    np.testing.assert_allclose(img, 128 / 255, atol=1e-6)


def test_meta_json_round_trip() -> None:
    meta = make_meta()
    again = DatasetMeta.from_json(json.loads(json.dumps(meta.to_json())), "x.json")
    assert again == meta
    assert again.cameras[1].c2w.dtype == np.float64


def test_split_cameras() -> None:
    s = split_cameras(76, 4)
    assert s.count("test") == 4 and len(s) == 76
    assert [i for i, v in enumerate(s) if v == "test"] == [9, 28, 47, 66]
    assert split_cameras(76, 4) == s
    with pytest.raises(RerfUsageError):
        split_cameras(3, 3)
    with pytest.raises(RerfUsageError):
        split_cameras(3, 0)


# --------------------------------------------------------------------------- conventions


def test_rays_and_project_agree() -> None:
    cam = Camera.look_at("c", [1.0, -2.0, 0.5], [0.2, 0.1, 0.0], [0, 0, 1], 60.0, 40, 30)
    cam = Camera("c", "train", 35.0, 33.0, 19.0, 16.5, 40, 30, cam.c2w)  # off-centre, non-square
    origins, dirs = cam.rays(dtype=np.float64)
    assert origins.shape == dirs.shape == (30, 40, 3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(origins, np.broadcast_to(cam.c2w[:3, 3], origins.shape))
    for t in (0.5, 3.0):
        uv, depth = cam.project(origins + t * dirs)
        vv, uu = np.mgrid[0:30, 0:40]
        np.testing.assert_allclose(uv[..., 0], uu + 0.5, atol=1e-9)
        np.testing.assert_allclose(uv[..., 1], vv + 0.5, atol=1e-9)
        assert np.all(depth > 0)
    # float32 default is close enough for pixel work
    o32, d32 = cam.rays()
    assert o32.dtype == np.float32 and d32.dtype == np.float32
    np.testing.assert_allclose(d32, dirs, atol=1e-6)


def test_pixel_convention_explicit() -> None:
    # identity pose: camera at the origin looking down -z, +y up, +x right
    cam = Camera("c", "train", 10.0, 10.0, 8.0, 6.0, 16, 12, np.eye(4))
    uv, depth = cam.project(np.array([[0.0, 0.0, -2.0], [1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]]))
    np.testing.assert_allclose(uv[:3], [[8.0, 6.0], [18.0, 6.0], [8.0, -4.0]])  # +x → right, +y → up (smaller v)
    np.testing.assert_allclose(depth, [2.0, 1.0, 1.0, -1.0])
    assert cam.visible(np.array([[0.0, 0.0, -2.0], [1.0, 0.0, -1.0], [0.0, 0.0, 1.0]])).tolist() == [
        True,
        False,
        False,
    ]
    _, dirs = cam.rays(dtype=np.float64)
    d = np.array([(0 + 0.5 - 8.0) / 10.0, -(0 + 0.5 - 6.0) / 10.0, -1.0])
    np.testing.assert_allclose(dirs[0, 0], d / np.linalg.norm(d))  # top-left pixel looks up-left


def test_look_at_centres_target() -> None:
    target = np.array([0.3, -0.2, 0.1])
    cam = Camera.look_at("c", [2.0, 1.0, 1.5], target, [0, 0, 1], 45.0, 64, 48)
    uv, depth = cam.project(target[None])
    np.testing.assert_allclose(uv[0], [32.0, 24.0], atol=1e-9)
    assert depth[0] == pytest.approx(np.linalg.norm(target - [2.0, 1.0, 1.5]))
    # up stays up: a point above the target projects above the centre (smaller v)
    uv_up, _ = cam.project((target + np.array([0.0, 0.0, 0.1]))[None])
    assert uv_up[0, 1] < 24.0
    assert cam.fl_x == pytest.approx(32.0 / np.tan(np.radians(22.5)))
    assert np.linalg.det(cam.c2w[:3, :3]) == pytest.approx(1.0)
    with pytest.raises(RerfUsageError):
        Camera.look_at("c", [0, 0, 1], [0, 0, 0], [0, 0, 1], 45.0, 8, 8)  # up parallel to view


def test_camera_is_immutable_and_validated() -> None:
    cam = Camera("c", "train", 10.0, 10.0, 8.0, 6.0, 16, 12, np.eye(4))
    with pytest.raises(ValueError):
        cam.c2w[0, 0] = 2.0
    with pytest.raises(RerfUsageError, match="orthonormal"):
        Camera("c", "train", 10.0, 10.0, 8.0, 6.0, 16, 12, np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(RerfUsageError, match="fl_x"):
        Camera("c", "train", 0.0, 10.0, 8.0, 6.0, 16, 12, np.eye(4))
    with pytest.raises(RerfUsageError, match="name"):
        Camera("../x", "train", 1.0, 10.0, 8.0, 6.0, 16, 12, np.eye(4))


# --------------------------------------------------------------------------- validation


def _rot_z(deg: float) -> list[list[float]]:
    a = np.radians(deg)
    m = np.eye(4)
    m[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return m.tolist()


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.pop("fps"), "missing field 'fps'"),
        (lambda d: d["cameras"][1].pop("fl_y"), "cameras[1] (cam001): missing field 'fl_y'"),
        (lambda d: d["cameras"][2].update(transform_matrix=np.diag([1.0, 1.0, 1.1, 1.0]).tolist()), "orthonormal"),
        (lambda d: d["cameras"][2].update(transform_matrix=np.diag([1.0, 1.0, -1.0, 1.0]).tolist()), "determinant"),
        (lambda d: d["cameras"][0]["transform_matrix"][3].__setitem__(0, 0.5), "last row"),
        (lambda d: d["cameras"][0].update(w=16.0), "field 'w'"),
        (lambda d: d["cameras"][0].update(fl_x=-3), "field 'fl_x'"),
        (lambda d: d["cameras"][3].update(name="cam000"), "duplicate camera name"),
        (lambda d: [c.update(split="train") for c in d["cameras"]], "no test camera"),
        (lambda d: [c.update(split="test") for c in d["cameras"]], "no train camera"),
        (lambda d: d["bbox"].update(xyz_min=[0, 2, 0]), "xyz_min must be < xyz_max"),
        (lambda d: d.update(num_frames=0), "field 'num_frames'"),
        (lambda d: d.update(version=2), "unsupported version"),
        (lambda d: d.update(image_mode="L"), "field 'image_mode'"),
        (lambda d: d.update(background=[1, 1]), "field 'background'"),
        (lambda d: d.update(extra_key=1), "unknown field 'extra_key'"),
        (lambda d: d["cameras"][0].update(split="val"), "field 'split'"),
    ],
)
def test_bad_transforms_json(tmp_path: Path, mutate, needle: str) -> None:
    root = tmp_path / "ds"
    write_ds(root)
    edit_json(root, mutate)
    with pytest.raises(RerfFormatError) as ei:
        open_dataset(root)
    msg = str(ei.value)
    assert str(root / "transforms.json") in msg
    assert needle in msg
    assert "\n" not in msg


def test_rotation_within_tolerance_is_accepted(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_ds(root)
    m = np.array(_rot_z(30.0))
    m[:3, :3] *= 1 + 2e-5  # float32-ish exporters
    edit_json(root, lambda d: d["cameras"][0].update(transform_matrix=m.tolist()))
    open_dataset(root)


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_ds(root)
    (root / "transforms.json").write_text('{"format": "rerf-dataset", "fps": NaN}')
    with pytest.raises(RerfFormatError, match="NaN"):
        open_dataset(root)
    (root / "transforms.json").write_text("{")
    with pytest.raises(RerfFormatError, match="invalid JSON"):
        open_dataset(root)
    (root / "transforms.json").unlink()
    with pytest.raises(RerfFormatError, match=r"transforms\.json: file is missing"):
        open_dataset(root)
    with pytest.raises(RerfUsageError, match="does not exist"):
        open_dataset(tmp_path / "nope")


def test_missing_image(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_ds(root)
    (root / "images" / "000001" / "cam002.png").unlink()
    (root / "images" / "000002" / "cam000.png").unlink()
    with pytest.raises(RerfFormatError) as ei:
        open_dataset(root)
    msg = str(ei.value)
    assert str(root / "images" / "000001" / "cam002.png") in msg
    assert "2 of 12 images are missing" in msg
    ds = open_dataset(root, check_images=False)  # lazily, the missing file is named at load time
    with pytest.raises(RerfFormatError, match=r"000001/cam002\.png: image is missing"):
        ds.load_image(1, "cam002")


def test_missing_frame_folder_and_extra_frames(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_ds(root)
    shutil.rmtree(root / "images" / "000002")
    with pytest.raises(RerfFormatError, match=r"000002/cam000.png: image is missing \(4 of 12"):
        open_dataset(root)
    # num_frames mismatch the other way: more folders than declared
    root2 = tmp_path / "ds2"
    write_ds(root2)
    edit_json(root2, lambda d: d.update(num_frames=2))
    with pytest.raises(RerfFormatError) as ei:
        open_dataset(root2)
    assert str(root2 / "images" / "000002") in str(ei.value)
    assert "num_frames=2" in str(ei.value)


def test_inconsistent_camera_set(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_ds(root)
    shutil.copy(root / "images" / "000001" / "cam000.png", root / "images" / "000001" / "cam999.png")
    with pytest.raises(RerfFormatError, match=r"000001/cam999\.png: image of a camera"):
        open_dataset(root)


def test_corrupt_and_wrong_images(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ds = write_ds(root)
    p = ds.image_path(0, "cam001")
    good = p.read_bytes()
    # truncated PNG: header fine, data gone
    p.write_bytes(good[: len(good) // 2])
    ds = open_dataset(root)
    with pytest.raises(RerfFormatError, match=r"cam001\.png: cannot decode PNG"):
        ds.load_image(0, "cam001")
    # not a PNG at all
    p.write_bytes(b"hello, I am not a png file at all")
    with pytest.raises(RerfFormatError, match=r"cam001\.png: not a PNG file"):
        ds.load_image(0, "cam001")
    # empty file: caught already by open_dataset's stat
    p.write_bytes(b"")
    with pytest.raises(RerfFormatError, match=r"cam001\.png: image file is empty"):
        open_dataset(root)
    # wrong size
    iio.imwrite(p, np.zeros((H + 1, W, 4), np.uint8), extension=".png")
    with pytest.raises(RerfFormatError, match=rf"cam001\.png: image is {W}×{H + 1}, camera cam001 expects {W}×{H}"):
        open_dataset(root).load_image(0, "cam001")
    # wrong mode (RGB in an RGBA dataset)
    iio.imwrite(p, np.zeros((H, W, 3), np.uint8), extension=".png")
    with pytest.raises(RerfFormatError, match=r"cam001\.png: expected a RGBA image"):
        open_dataset(root).load_image(0, "cam001")
    # 16-bit
    iio.imwrite(p, np.zeros((H, W), np.uint16), extension=".png")
    with pytest.raises(RerfFormatError, match=r"cam001\.png"):
        open_dataset(root).load_image(0, "cam001")


def test_usage_errors_on_loader(tmp_path: Path) -> None:
    ds = write_ds(tmp_path / "ds")
    with pytest.raises(RerfUsageError, match="frame 9"):
        ds.load_image(9, "cam000")
    with pytest.raises(RerfUsageError, match="no camera named"):
        ds.load_image(0, "camXYZ")
    cams = list(ds.meta.cameras)
    cams[0] = Camera("cam000", "train", 9.0, 9.0, 4.0, 4.0, 8, 8, np.eye(4))
    meta = DatasetMeta(**{**ds.meta.__dict__, "cameras": tuple(cams)})
    with pytest.raises(RerfUsageError, match="different sizes"):
        Dataset(ds.root, meta).load_frame(0)


# --------------------------------------------------------------------------- writer


def test_writer_atomic_on_exception(tmp_path: Path) -> None:
    meta = make_meta()
    with pytest.raises(RuntimeError), DatasetWriter(tmp_path / "ds", meta) as w:
        w.write_image(0, "cam000", image_for(0, 0))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_incomplete_commit_leaves_nothing(tmp_path: Path) -> None:
    meta = make_meta()
    with (
        pytest.raises(RerfUsageError, match="11 of 12 images were not written"),
        DatasetWriter(tmp_path / "ds", meta) as w,
    ):
        w.write_image(0, "cam000", image_for(0, 0))
    assert list(tmp_path.iterdir()) == []


def test_writer_existing_output(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_ds(root)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    with pytest.raises(RerfUsageError, match=r"exists; use force=True"):
        DatasetWriter(root, make_meta())
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before
    # a failed forced rewrite keeps the old dataset
    with pytest.raises(RuntimeError), DatasetWriter(root, make_meta(n_frames=1), force=True):
        raise RuntimeError("boom")
    assert open_dataset(root).meta.num_frames == 3
    # force replaces a dataset
    write_ds_meta = make_meta(n_cams=2, n_frames=1)
    with DatasetWriter(root, write_ds_meta, force=True) as w:
        for i, c in enumerate(write_ds_meta.cameras):
            w.write_image(0, c.name, image_for(0, i))
    assert open_dataset(root).meta.num_frames == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    # force refuses an unrelated non-empty folder
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(RerfUsageError, match="refusing"):
        DatasetWriter(other, make_meta(), force=True)
    assert (other / "precious.txt").read_text() == "x"


def test_writer_rejects_bad_images(tmp_path: Path) -> None:
    meta = make_meta()
    with DatasetWriter(tmp_path / "ds", meta) as w:
        with pytest.raises(RerfUsageError, match="shape"):
            w.write_image(0, "cam000", np.zeros((H, W, 3), np.uint8))  # RGB into RGBA
        with pytest.raises(RerfUsageError, match=r"\[0, 1\]"):
            w.write_image(0, "cam000", np.full((H, W, 4), 2.0))
        with pytest.raises(RerfUsageError, match="outside"):
            w.write_image(3, "cam000", image_for(0, 0))
        w.write_image(0, "cam000", image_for(0, 0))
        with pytest.raises(RerfUsageError, match="already written"):
            w.write_image(0, "cam000", image_for(0, 0))
        w.abort()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- laziness


def test_iteration_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = write_ds(tmp_path / "ds")
    calls: list[str] = []
    real = iio.imread

    def counting(path, *a, **k):
        calls.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(dfmt.iio, "imread", counting)
    assert open_dataset(tmp_path / "ds").meta.num_frames == 3
    assert calls == []  # opening validates without decoding
    it = ds.iter_frames(["cam000", "cam002"])
    assert calls == []
    f, imgs = next(it)
    assert f == 0 and imgs.shape == (2, H, W, 4)
    assert len(calls) == 2
    f, _ = next(it)
    assert f == 1 and len(calls) == 4
    assert [f for f, _ in it] == [2]
    assert len(calls) == 6


# --------------------------------------------------------------------------- preview / info


def test_contact_sheet(tmp_path: Path) -> None:
    ds = write_ds(tmp_path / "ds", make_meta(n_cams=4, n_frames=3))
    sheet = contact_sheet(ds, cameras=3, frames=6, size=32)
    tile_w, tile_h = 32, 24  # 16×12 scaled so the long side is 32
    assert sheet.dtype == np.uint8
    assert sheet.shape == (3 * tile_h + 4 * 2, 3 * tile_w + 4 * 2, 3)  # only 3 frames exist
    # the top-left tile is camera 0, frame 0, upscaled 2× (nearest) and composited on white
    rgba = ds.load_image(0, "cam000")
    comp = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    np.testing.assert_allclose(
        sheet[2:4, 2:4].astype(np.float32) / 255, np.broadcast_to(comp[0, 0], (2, 2, 3)), atol=1 / 255
    )
    assert np.all(sheet[0:2] == 48)  # separator
    out = tmp_path / "sheet.png"
    write_contact_sheet(ds, out, cameras=2, frames=2, size=16)
    assert iio.imread(out).shape == (2 * 12 + 3 * 2, 2 * 16 + 3 * 2, 3)
    with pytest.raises(RerfUsageError, match="exists"):
        write_contact_sheet(ds, out)
    with pytest.raises(RerfUsageError):
        contact_sheet(ds, cameras=0)


def test_contact_sheet_downscales_with_box() -> None:
    img = np.zeros((4, 4, 3), np.float32)
    img[:2, :2] = 1.0
    from rerf_codec.datasets.preview import _resize

    np.testing.assert_allclose(_resize(img, 2, 2)[..., 0], [[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(_resize(img, 1, 1)[..., 0], [[0.25]])


def test_dataset_info(tmp_path: Path) -> None:
    ds = write_ds(tmp_path / "ds")
    info = dataset_info(ds)
    json.dumps(info)
    assert info["frames"] == 3 and info["fps"] == 25.0
    assert info["cameras"]["train"] == 3 and info["cameras"]["test"] == 1
    assert info["resolutions"] == [{"w": W, "h": H, "cameras": 4}]
    assert info["image_mode"] == "RGBA" and info["background"] == [1.0, 1.0, 1.0]
    assert info["bytes_on_disk"] == sum(p.stat().st_size for p in (tmp_path / "ds" / "images").rglob("*.png"))
    assert info["source"] == {"kind": "test"}
    text = format_info(info)
    assert "4 (3 train, 1 test" in text and "16×12" in text
