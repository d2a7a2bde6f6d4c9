"""Mesh-sequence renderer (Embree) and ring camera rigs: poses, masks, depth, texture, input validation."""

from __future__ import annotations

import io
import itertools
import math
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("embreex")
trimesh = pytest.importorskip("trimesh")

from rerf_codec.datasets.cameras import bbox_of, ring_cameras  # noqa: E402
from rerf_codec.datasets.format import Camera, open_dataset, split_cameras  # noqa: E402
from rerf_codec.datasets.mesh_render import (  # noqa: E402
    load_mesh_sequence,
    render_frame,
    render_mesh_sequence,
)
from rerf_codec.errors import RerfFormatError, RerfUsageError  # noqa: E402

CRANE = Path(__file__).resolve().parents[2] / "shared" / "data" / "meshseq" / "crane.npz"
RADIUS = 0.5
SHIFT = np.array([0.125, 0.0, -0.0625])  # per-frame translation of the test sphere (exact in binary)


def _sphere() -> tuple[np.ndarray, np.ndarray]:
    s = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    return np.asarray(s.vertices, dtype=np.float64), np.asarray(s.faces, dtype=np.int32)


def _sequence(frames: int = 3) -> tuple[np.ndarray, np.ndarray]:
    v, f = _sphere()
    return np.stack([v + t * SHIFT for t in range(frames)]).astype(np.float32), f


@pytest.fixture
def sphere_npz(tmp_path: Path) -> Path:
    v, f = _sequence()
    p = tmp_path / "ball.npz"
    np.savez(p, vertices=v, faces=f, name=np.array("ball"), fps=np.array(30))
    return p


def _sphere_hit_depth(cam: Camera, center: np.ndarray, radius: float) -> np.ndarray:
    """Analytic camera depth of the first hit of every pixel-centre ray with a sphere (NaN: miss)."""
    o, d = cam.rays(np.float64)
    oc = o - center
    b = np.einsum("hwk,hwk->hw", oc, d)
    c = np.einsum("hwk,hwk->hw", oc, oc) - radius**2
    disc = b * b - c
    with np.errstate(invalid="ignore"):
        t = -b - np.sqrt(disc)
    fwd = -cam.c2w[:3, 2]
    return np.where(disc >= 0, t * np.einsum("hwk,k->hw", d, fwd), np.nan)


# --------------------------------------------------------------------------- cameras


def test_ring_cameras_look_at_center_and_frame_the_box() -> None:
    lo, hi = np.array([-0.4, 0.0, -0.3]), np.array([0.5, 1.85, 0.35])
    cams = ring_cameras(lo, hi, 24, 4, 128)
    center = (lo + hi) / 2
    corners = np.array(list(itertools.product(*zip(lo, hi, strict=True))))
    assert [c.name for c in cams] == [f"cam{i:03d}" for i in range(28)]
    assert [c.split for c in cams] == split_cameras(28, 4)
    dists = {round(float(np.linalg.norm(c.center - center)), 9) for c in cams}
    assert len(dists) == 1  # one sphere of cameras
    for c in cams:
        uv, depth = c.project(center)
        assert depth > 0
        np.testing.assert_allclose(uv, [64.0, 64.0], atol=0.5)
        assert (c.w, c.h) == (128, 128)
        assert np.all(c.visible(corners)), c.name
        # y-up world: the camera's up vector has a positive y component.
        assert c.c2w[1, 1] > 0
    # Held-out viewpoints differ from every training viewpoint (direction from the centre).
    dirs = {c.name: (c.center - center) / np.linalg.norm(c.center - center) for c in cams}
    train = [dirs[c.name] for c in cams if c.split == "train"]
    for c in cams:
        if c.split == "test":
            assert max(float(dirs[c.name] @ t) for t in train) < math.cos(math.radians(5))
    # Deterministic.
    assert ring_cameras(lo, hi, 24, 4, 128) == cams


def test_ring_cameras_elevations_and_errors() -> None:
    cams = ring_cameras([-1, -1, -1], [1, 1, 1], 6, 2, 16, elevations=(0.0, 30.0))
    elev = sorted({round(math.degrees(math.asin(c.center[1] / np.linalg.norm(c.center))), 6) for c in cams})
    assert elev == [0.0, 15.0, 30.0]  # train rings at 0 and 30, test between them
    with pytest.raises(RerfUsageError):
        ring_cameras([0, 0, 0], [1, 0, 1], 4, 1, 16)  # flat box
    with pytest.raises(RerfUsageError):
        ring_cameras([0, 0, 0], [1, 1, 1], 4, 0, 16)  # no test camera
    with pytest.raises(RerfUsageError):
        ring_cameras([0, 0, 0], [1, 1, 1], 4, 1, 16, elevations=(90,))


def test_bbox_of_selected_frames_with_margin() -> None:
    v, _ = _sequence(3)
    lo, hi = bbox_of(v, range(1, 3))
    raw_lo = v[1:3].min(axis=(0, 1))
    raw_hi = v[1:3].max(axis=(0, 1))
    assert np.all(lo < raw_lo) and np.all(hi > raw_hi)
    assert np.all(raw_lo - lo < 0.05 * np.max(raw_hi - raw_lo))
    lo_all, _ = bbox_of(v)
    assert lo_all[0] < lo[0]  # frame 0 extends further to -x


# --------------------------------------------------------------------------- one frame


def test_mask_and_depth_match_the_analytic_sphere() -> None:
    v, f = _sphere()
    center = np.array([0.1, -0.2, 0.05])
    cams = ring_cameras(center - 0.6, center + 0.6, 3, 1, 32)
    images, depths = render_frame(v + center, f, v, cams, return_depth=True)
    for cam, img, dep in zip(cams, images, depths, strict=True):
        assert img.shape == (32, 32, 4) and img.dtype == np.uint8 and dep.shape == (32, 32)
        alpha = img[..., 3]
        assert set(np.unique(alpha)) <= {0, 255}
        # The icosphere lies between its inscribed and circumscribed spheres.
        inner = _sphere_hit_depth(cam, center, RADIUS * 0.985)
        outer = _sphere_hit_depth(cam, center, RADIUS)
        assert np.all(alpha[np.isfinite(inner)] == 255)
        assert np.all(alpha[~np.isfinite(outer)] == 0)
        assert alpha[0, 0] == alpha[0, -1] == alpha[-1, 0] == alpha[-1, -1] == 0
        # Background is composited where alpha = 0.
        assert np.all(img[alpha == 0, :3] == 255)
        # Depth of every hit pixel lies between the two spheres' depths.
        hit = np.isfinite(inner)
        assert np.all(dep[hit] <= inner[hit] + 1e-4) and np.all(dep[hit] >= outer[hit] - 1e-4)
        assert np.all(np.isnan(dep[alpha == 0]))
        # The sphere centre projects to a hit pixel whose depth is distance - radius (within facets).
        (u, vv), d = cam.project(center)
        px = (int(vv), int(u))
        assert alpha[px] == 255
        assert abs(dep[px] - (d - RADIUS)) < 0.02


def test_known_vertex_projects_to_its_rendered_position() -> None:
    v, f = _sphere()
    cams = ring_cameras([-0.6] * 3, [0.6] * 3, 3, 1, 32)
    images, depths = render_frame(v, f, v, cams, return_depth=True)
    for cam, img, dep in zip(cams, images, depths, strict=True):
        # The vertex facing the camera most directly is visible; its pixel must be covered and hold its depth.
        k = int(np.argmax(v @ (cam.center / np.linalg.norm(cam.center))))
        (u, vv), d = cam.project(v[k])
        px = (int(vv), int(u))
        assert img[px][3] == 255
        assert abs(dep[px] - d) < 0.01  # surface is nearly perpendicular to the view there


def test_shading_shows_shape_and_texture_has_detail() -> None:
    v, f = _sphere()
    cam = Camera.look_at("c", [0, 0, 3], [0, 0, 0], [0, 1, 0], 30, 64, 64)
    # Large texture features: the shading gradient dominates.
    (img,) = render_frame(v, f, v, [cam], feature_size=100.0)
    lum = img[..., :3].astype(float).mean(axis=2)
    mask = img[..., 3] == 255
    assert lum[mask].max() - lum[mask].min() > 60  # lit side vs shadow side
    # Default texture (2.5 % of the extent): neighbouring pixels differ.
    (img2,) = render_frame(v, f, v, [cam])
    rgb = img2[..., :3].astype(float)
    m2 = mask[:, 1:] & mask[:, :-1]
    assert np.abs(np.diff(rgb, axis=1))[m2].mean() > 8


def test_texture_moves_with_the_surface() -> None:
    """Translate the mesh and the camera together: the image is unchanged (texture from frame-0 positions)."""
    v, f = _sphere()
    cam = Camera.look_at("c", [0.5, 0.75, 2.5], [0, 0, 0], [0, 1, 0], 40, 48, 48)
    c2w = cam.c2w.copy()
    c2w[:3, 3] += 4 * SHIFT
    moved = Camera("c", "train", cam.fl_x, cam.fl_y, cam.cx, cam.cy, cam.w, cam.h, c2w)
    (a,) = render_frame(v, f, v, [cam])
    (b,) = render_frame(v + 4 * SHIFT, f, v, [moved])
    assert np.mean(a[..., 3] != b[..., 3]) < 0.01
    both = (a[..., 3] == 255) & (b[..., 3] == 255)
    diff = np.abs(a[..., :3].astype(int) - b[..., :3].astype(int))[both]
    assert np.mean(diff <= 2) > 0.99
    # Control: a texture of the *current* positions would change (the check above is not vacuous).
    (c,) = render_frame(v + 4 * SHIFT, f, v + 4 * SHIFT, [moved])
    assert np.abs(a[..., :3].astype(int) - c[..., :3].astype(int))[both].mean() > 10


def test_supersampling_antialiases_alpha() -> None:
    v, f = _sphere()
    cam = Camera.look_at("c", [0, 0, 3], [0, 0, 0], [0, 1, 0], 30, 32, 32)
    (one,) = render_frame(v, f, v, [cam])
    (four,) = render_frame(v, f, v, [cam], supersample=2)
    partial = (four[..., 3] > 0) & (four[..., 3] < 255)
    assert partial.sum() > 10  # the silhouette gets fractional coverage
    assert np.all(four[..., 3][one[..., 3] == 0] < 255) and np.all(four[..., 3][one[..., 3] == 255] > 0)
    inner = (one[..., 3] == 255) & (four[..., 3] == 255)
    assert np.abs(one[..., :3].astype(int) - four[..., :3].astype(int))[inner].mean() < 25


def test_render_frame_rejects_bad_arguments() -> None:
    v, f = _sphere()
    cam = Camera.look_at("c", [0, 0, 3], [0, 0, 0], [0, 1, 0], 30, 8, 8)
    with pytest.raises(RerfUsageError):
        render_frame(v, f + len(v), v, [cam])
    with pytest.raises(RerfUsageError):
        render_frame(v, f, v[:-1], [cam])
    with pytest.raises(RerfUsageError):
        render_frame(v, f, v, [cam], supersample=0)
    with pytest.raises(RerfUsageError):
        render_frame(v, f, v, [])


def test_missing_embree_is_a_clear_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trimesh.ray.ray_pyembree", None)
    v, f = _sphere()
    cam = Camera.look_at("c", [0, 0, 3], [0, 0, 0], [0, 1, 0], 30, 8, 8)
    with pytest.raises(RerfUsageError, match="embreex"):
        render_frame(v, f, v, [cam])


# --------------------------------------------------------------------------- sequences


def test_render_sequence_writes_a_valid_dataset(sphere_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    calls: list[tuple[int, int]] = []
    summary = render_mesh_sequence(
        sphere_npz, out, cameras=3, test_cameras=1, size=32, progress=lambda a, b: calls.append((a, b))
    )
    assert calls[-1] == (3, 3)
    ds = open_dataset(out)
    meta = ds.meta
    assert (meta.num_frames, meta.first_frame, meta.fps) == (3, 0, 30.0)
    assert [c.split for c in meta.cameras] == split_cameras(4, 1)
    assert meta.image_mode == "RGBA" and meta.background == (1.0, 1.0, 1.0)
    src = meta.source
    assert src["mesh"] == "ball" and src["frames"] == [0, 3] and src["step"] == 1
    assert src["renderer"].startswith("embree (embreex ") and " via trimesh " in src["renderer"]
    for fr in range(3):
        for c in meta.cameras:
            assert (out / "images" / f"{fr:06d}" / f"{c.name}.png").is_file()
    assert summary["frames"] == 3 and summary["cameras"] == 4
    assert summary["views_per_second"] > 0 and summary["bytes_on_disk"] > 0
    # Every frame's sphere centre (moving) projects inside that frame's mask; the corners are empty.
    for fr in range(3):
        for c in meta.cameras:
            img = ds.load_image(fr, c)
            (u, v), _ = c.project(fr * SHIFT)
            assert img[int(v), int(u), 3] == 1.0
            assert img[0, 0, 3] == img[-1, -1, 3] == 0.0
    # Refuses to overwrite without force; replaces with force.
    with pytest.raises(RerfUsageError, match="exists"):
        render_mesh_sequence(sphere_npz, out, cameras=3, test_cameras=1, size=16)
    render_mesh_sequence(sphere_npz, out, cameras=3, test_cameras=1, size=16, force=True)
    assert open_dataset(out).meta.cameras[0].w == 16


def test_frame_range_and_step(sphere_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "cut"
    render_mesh_sequence(sphere_npz, out, cameras=2, test_cameras=1, size=16, frames=range(1, 3))
    meta = open_dataset(out).meta
    assert (meta.first_frame, meta.num_frames) == (1, 2)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000001", "000002"]
    # The bbox covers the selected frames only.
    v, _ = _sequence()
    assert meta.xyz_min[0] > float(v[0, :, 0].min())

    stepped = tmp_path / "stepped"
    render_mesh_sequence(sphere_npz, stepped, cameras=2, test_cameras=1, size=16, frames=range(0, 3), step=2)
    ds = open_dataset(stepped)
    assert (ds.meta.first_frame, ds.meta.num_frames, ds.meta.fps) == (0, 2, 15.0)
    assert ds.meta.source["step"] == 2 and ds.meta.source["frames"] == [0, 3]
    # Dataset frame 1 is mesh frame 2: its sphere centre is at 2 × SHIFT.
    direct = render_frame(v[2], _sequence()[1], v[0], ds.meta.cameras)
    for c, img in zip(ds.meta.cameras, direct, strict=True):
        np.testing.assert_array_equal(np.rint(ds.load_image(1, c) * 255).astype(np.uint8), img)

    for bad in ["2:2", range(0, 4), "-1:2"]:
        with pytest.raises(RerfUsageError, match=r"range|frame"):
            render_mesh_sequence(sphere_npz, tmp_path / "x", cameras=2, test_cameras=1, size=16, frames=bad)
    with pytest.raises(RerfUsageError, match="step must"):
        render_mesh_sequence(sphere_npz, tmp_path / "x", cameras=2, test_cameras=1, size=16, step=0)
    assert not (tmp_path / "x").exists()


def _write_npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("missing-faces", "faces"),
        ("missing-vertices", "vertices"),
        ("vertices-2d", "vertices"),
        ("vertices-xy", "vertices"),
        ("vertices-int", "vertices"),
        ("vertices-nan", "vertices"),
        ("faces-float", "faces"),
        ("faces-quads", "faces"),
        ("faces-range", "faces"),
        ("faces-negative", "faces"),
        ("faces-object", "faces"),
        ("fps-bad", "fps"),
    ],
)
def test_bad_mesh_npz_is_a_format_error_naming_file_and_field(tmp_path: Path, case: str, field: str) -> None:
    v, f = _sequence(2)
    arrays: dict[str, object] = {"vertices": v, "faces": f}
    if case == "missing-faces":
        del arrays["faces"]
    elif case == "missing-vertices":
        del arrays["vertices"]
    elif case == "vertices-2d":
        arrays["vertices"] = v[0]
    elif case == "vertices-xy":
        arrays["vertices"] = v[..., :2]
    elif case == "vertices-int":
        arrays["vertices"] = v.astype(np.int32)
    elif case == "vertices-nan":
        v = v.copy()
        v[1, 5, 0] = np.nan
        arrays["vertices"] = v
    elif case == "faces-float":
        arrays["faces"] = f.astype(np.float32)
    elif case == "faces-quads":
        arrays["faces"] = np.zeros((4, 4), np.int32)
    elif case == "faces-range":
        arrays["faces"] = np.where(f == 0, v.shape[1], f)
    elif case == "faces-negative":
        arrays["faces"] = f - 1
    elif case == "faces-object":
        arrays["faces"] = np.array([[0, 1, 2], None], dtype=object)
    elif case == "fps-bad":
        arrays["fps"] = np.array(-3.0)
    p = _write_npz(tmp_path / f"{case}.npz", **arrays)
    with pytest.raises(RerfFormatError) as err:
        load_mesh_sequence(p)
    assert str(p) in str(err.value) and field in str(err.value)
    # And nothing is written by the dataset command.
    with pytest.raises(RerfFormatError):
        render_mesh_sequence(p, tmp_path / "out", cameras=2, test_cameras=1, size=8)
    assert not (tmp_path / "out").exists()


def test_not_an_npz_and_missing_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(RerfFormatError, match=r"junk\.npz"):
        load_mesh_sequence(junk)
    truncated = tmp_path / "trunc.npz"
    buf = io.BytesIO()
    v, f = _sequence(2)
    np.savez(buf, vertices=v, faces=f)
    truncated.write_bytes(buf.getvalue()[:200])
    with pytest.raises(RerfFormatError, match=r"trunc\.npz"):
        load_mesh_sequence(truncated)
    # A member named vertices.npy that is not an array.
    fake = tmp_path / "fake.npz"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("vertices.npy", b"hello")
        z.writestr("faces.npy", b"world")
    with pytest.raises(RerfFormatError, match=r"fake\.npz.*vertices"):
        load_mesh_sequence(fake)
    with pytest.raises(RerfUsageError, match="does not exist"):
        load_mesh_sequence(tmp_path / "nope.npz")


@pytest.mark.skipif(not CRANE.is_file(), reason=f"sample data {CRANE} not present")
def test_crane_renders_with_consistent_poses(tmp_path: Path) -> None:
    out = tmp_path / "crane"
    render_mesh_sequence(CRANE, out, cameras=2, test_cameras=1, size=64, frames=range(40, 42))
    ds = open_dataset(out)
    assert (ds.meta.first_frame, ds.meta.num_frames, len(ds.meta.cameras)) == (40, 2, 3)
    verts = load_mesh_sequence(CRANE)["vertices"]
    for fr in (40, 41):
        for c in ds.meta.cameras:
            img = ds.load_image(fr, c)
            alpha = img[..., 3]
            assert 0.03 < alpha.mean() < 0.6  # a person, not an empty or a full frame
            assert img[..., :3][alpha == 1].std() > 0.05  # textured and shaded
            # Every vertex (visible or hidden) projects onto the silhouette: into a covered pixel, or next to
            # one (thin limbs and silhouette edges are narrower than a pixel at 64 px).
            uv, depth = c.project(verts[fr])
            assert np.all(depth > 0) and np.all(c.visible(verts[fr]))
            px = np.floor(uv).astype(int)
            padded = np.pad(alpha == 1, 1)
            near = np.zeros_like(alpha, dtype=bool)
            for dy, dx in itertools.product(range(3), range(3)):
                near |= padded[dy : dy + alpha.shape[0], dx : dx + alpha.shape[1]]
            assert (alpha[px[:, 1], px[:, 0]] == 1).mean() > 0.85
            assert near[px[:, 1], px[:, 0]].mean() > 0.995, (fr, c.name, near[px[:, 1], px[:, 0]].mean())
