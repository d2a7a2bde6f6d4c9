"""Grid sequences voxelised from mesh sequences: geometry, shell, appearance, true motion, I/O, CLI."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from rerf_codec.bench.meshgrid import (
    DENSITY_SHIFT,
    OCCUPANCY_THRESHOLD,
    MeshGridSpec,
    load_mesh_sequence,
    main,
    meshgrid_frames,
    meshgrid_meta,
    write_meshgrid_sequence,
)
from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.grids import GridFrame, SequenceMeta
from rerf_codec.gridseq import read_frame, read_meta
from rerf_codec.trainer_form import warp_previous

CRANE = Path(__file__).resolve().parents[2] / "shared/data/meshseq/crane.npz"

HALF = np.array([1.0, 0.7, 0.5])  # box half-sizes (world units)


def _box_faces() -> np.ndarray:
    """12 triangles of the axis-aligned cube with corners (+-1, +-1, +-1) (vertex i = bits of i)."""
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], dtype=np.int32)


def _box_vertices() -> np.ndarray:
    corners = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)], dtype=np.float64) * 2 - 1
    return corners * HALF


def _translated_box(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A box mesh sequence: frame t is the box moved by ``offsets[t]`` (T, 3)."""
    v = _box_vertices()[None] + np.asarray(offsets, dtype=np.float64)[:, None, :]
    return v.astype(np.float32), _box_faces()


def _box_distance(p: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Unsigned distance of world points (..., 3) to the surface of the box at ``center``."""
    q = np.abs(p - center) - HALF
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    inside = np.minimum(q.max(axis=-1), 0.0)
    return np.abs(outside + inside)


def _world(meta: dict) -> tuple[np.ndarray, float]:
    """World coordinates of every voxel (X, Y, Z, 3) and the voxel edge."""
    lo, hi, shape = np.array(meta["xyz_min"]), np.array(meta["xyz_max"]), np.array(meta["grid_shape"])
    h = (hi - lo) / (shape - 1)
    assert np.allclose(h, h[0], rtol=1e-9)
    axes = [lo[a] + np.arange(shape[a]) * h[a] for a in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1), float(h[0])


def _occupied_blocks(density: np.ndarray) -> np.ndarray:
    bs = [-(-n // 8) for n in density.shape]
    pad = np.zeros([b * 8 for b in bs], dtype=bool)
    pad[: density.shape[0], : density.shape[1], : density.shape[2]] = density > OCCUPANCY_THRESHOLD
    return pad.reshape(bs[0], 8, bs[1], 8, bs[2], 8).any(axis=(1, 3, 5))


def _integer_shift_sequence(m: int, resolution: int, padding: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Box translated along x by exactly ``m`` voxels per frame (2 frames); returns (v, f, world step)."""
    # Longest padded extent L = (2*HALF_x + T)(1 + 2p) spans resolution - 1 voxels; T = m * L / (res - 1).
    k = 1.0 + 2.0 * padding
    step = m * 2 * HALF[0] * k / (resolution - 1 - m * k)
    v, f = _translated_box(np.array([[0.0, 0.0, 0.0], [step, 0.0, 0.0]]))
    return v, f, step


SPEC = MeshGridSpec(resolution=40, feature_channels=5, seed=3)


@pytest.fixture(scope="module")
def shifted():
    """Integer translation by 3 voxels along x: (spec, meta, frames, vertices, faces)."""
    v, f, _ = _integer_shift_sequence(3, SPEC.resolution, SPEC.padding)
    meta = meshgrid_meta(v, SPEC)
    frames = list(meshgrid_frames(v, f, SPEC))
    return meta, frames, v, f


def test_meta_and_shapes(shifted):
    meta, frames, v, _ = shifted
    assert meta["grid_shape"][0] == 40 and all(8 <= n <= 40 for n in meta["grid_shape"])
    assert meta["num_frames"] == 2 and meta["first_frame"] == 0 and meta["fps"] == 30.0
    assert meta["feature_channels"] == 5 and meta["motion_block"] == 8 and meta["decoder"] is None
    assert math.isclose(meta["density_shift"], DENSITY_SHIFT) and math.isclose(DENSITY_SHIFT, -13.8155, abs_tol=1e-4)
    assert meta["source"]["frames"] == [0, 2] and meta["source"]["step"] == 1
    SequenceMeta.from_json_dict(meta, "<test>")  # a valid sequence.json
    # The padded box contains every vertex of every frame, with the requested margin on the long axis.
    lo, hi = np.array(meta["xyz_min"]), np.array(meta["xyz_max"])
    vmin, vmax = v.min(axis=(0, 1)), v.max(axis=(0, 1))
    assert np.all(lo < vmin) and np.all(hi > vmax)
    assert math.isclose(vmin[0] - lo[0], 0.05 * (vmax[0] - vmin[0]), rel_tol=1e-6)
    X, Y, Z = meta["grid_shape"]
    for density, features, motion in frames:
        assert density.shape == (X, Y, Z) and density.dtype == np.float32
        assert features.shape == (5, X, Y, Z) and features.dtype == np.float32
        assert motion.shape == (3, -(-X // 8), -(-Y // 8), -(-Z // 8)) and motion.dtype == np.float32
        assert np.isfinite(density).all() and np.isfinite(features).all()
    assert not frames[0][2].any()  # frame 0 has no motion


def test_shell_profile(shifted):
    meta, frames, v, _ = shifted
    density, features, _ = frames[0]
    world, h = _world(meta)
    d = _box_distance(world, v[0, :, :].mean(axis=0).astype(np.float64)) / h  # voxels
    spec = SPEC
    band = max(3.0, 3.0 * spec.shell_voxels)
    assert density.min() >= 0.0
    assert density.max() <= 1.3 * spec.peak_density + 1e-3
    # density = peak * profile(d) with the peak varying smoothly in peak_density * [0.7, 1.3].
    s = spec.shell_voxels
    floor = math.exp(-((band / s) ** 2))
    profile = np.maximum(np.exp(-((d / s) ** 2)) - floor, 0.0) / (1.0 - floor)
    near = d < band - 0.5
    ratio = density[near] / profile[near]
    assert ratio.min() > 0.7 * spec.peak_density - 1e-2 and ratio.max() < 1.3 * spec.peak_density + 1e-2
    assert ratio.max() - ratio.min() > 0.1 * spec.peak_density  # it does vary over the surface
    assert density[d < 0.25].min() > 0.7 * spec.peak_density * 0.97
    far = d > band + 0.05
    assert far.any() and not density[far].any() and not features[:, far].any()
    # Occupied (density > threshold) only within a couple of voxels of the surface.
    assert d[density > OCCUPANCY_THRESHOLD].max() < 2.2
    # Features live on the surface with channel-dependent ranges within +-3.
    on = features[:, near]
    assert np.abs(on).max() <= 3.0 and on.std(axis=1).min() > 0.01


def test_features_follow_integer_translation(shifted):
    meta, frames, v, _ = shifted
    (d0, f0, _), (d1, f1, _) = frames
    m = 3
    world, h = _world(meta)
    # Voxel p of frame 0 is voxel p + (m, 0, 0) of frame 1.
    assert np.allclose(v[1, 0] - v[0, 0], [m * h, 0, 0], atol=1e-5)
    a_d, b_d = d0[:-m], d1[m:]
    a_f, b_f = f0[:, :-m], f1[:, m:]
    assert np.abs(a_d - b_d).max() < 1e-2
    # Away from the box's medial planes (ties between faces), features match exactly.
    dist = _box_distance(world[:-m], v[0].mean(axis=0).astype(np.float64))
    inside = np.all(np.abs(world[:-m] - v[0].mean(axis=0)) < HALF, axis=-1)
    sel = ~inside & (dist / h < 4.0)
    assert sel.sum() > 1000
    assert np.abs(a_f[:, sel] - b_f[:, sel]).max() < 1e-3
    # Everywhere (ties included) almost all voxels agree.
    close = np.all(np.abs(a_f - b_f) < 1e-3, axis=0)
    assert close.mean() > 0.99


def test_true_motion_of_translation():
    offsets = np.array([[0.0, 0.0, 0.0], [0.13, -0.07, 0.05], [0.26, -0.14, 0.10]])
    v, f = _translated_box(offsets)
    spec = MeshGridSpec(resolution=32, feature_channels=3, padding=0.5)  # room for empty blocks
    meta = meshgrid_meta(v, spec)
    _, h = _world(meta)
    frames = list(meshgrid_frames(v, f, spec))
    for t in (1, 2):
        density, _, motion = frames[t]
        occ = _occupied_blocks(density)
        assert occ.any() and not occ.all()
        expect = -(offsets[t] - offsets[t - 1]) / h
        assert np.abs(motion[:, occ] - expect[:, None]).max() < 1e-4
        assert not motion[:, ~occ].any()


def test_true_motion_matches_warp_previous(shifted):
    _, frames, _, _ = shifted
    (d0, f0, _), (d1, f1, motion) = frames
    m = 3
    occ = _occupied_blocks(d1)
    assert np.allclose(motion[:, occ], np.array([-m, 0.0, 0.0])[:, None], atol=1e-4)
    warped = warp_previous(GridFrame(d0, f0), motion)
    mask = np.repeat(np.repeat(np.repeat(occ, 8, 0), 8, 1), 8, 2)[: d1.shape[0], : d1.shape[1], : d1.shape[2]]
    mask[:m] = False  # sources left of the grid are clamped (frame 0's shell is cut by the grid there)
    assert np.abs(warped.density - d1)[mask].max() < 1e-2
    assert np.mean(np.all(np.abs(warped.features - f1)[:, mask] < 1e-3, axis=0)) > 0.99


def test_rotation_motion_is_per_block():
    """Non-rigid-looking motion (a rotation): blocks get different motion, each the mean displacement."""
    ang = np.deg2rad([0.0, 6.0])
    base = _box_vertices()
    v = np.stack(
        [base @ np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]).T for a in ang]
    ).astype(np.float32)
    spec = MeshGridSpec(resolution=32, feature_channels=2)
    meta = meshgrid_meta(v, spec)
    world, h = _world(meta)
    density, _, motion = list(meshgrid_frames(v, _box_faces(), spec))[1]
    occ = _occupied_blocks(density)
    # Backward displacement of a point p (world) of frame 1: R(-6deg) p - p, in voxels; blocks average it.
    c, s = math.cos(-ang[1]), math.sin(-ang[1])
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    disp = (world @ rot.T - world) / h
    occ_vox = density > OCCUPANCY_THRESHOLD
    bidx = tuple(np.nonzero(occ_vox)[a] // 8 for a in range(3))
    errs = np.linalg.norm(motion[:, bidx[0], bidx[1], bidx[2]].T - disp[occ_vox], axis=1)
    # Within a block the displacement varies by ~8 voxels x 0.1 rad; the block mean is close to each voxel's.
    assert np.median(errs) < 0.4
    mags = np.linalg.norm(motion[:, occ], axis=0)
    assert mags.max() > 2 * mags.min()


def test_deterministic_and_seeded():
    v, f, _ = _integer_shift_sequence(1, 24, 0.05)
    a = list(meshgrid_frames(v, f, MeshGridSpec(resolution=24, feature_channels=3, seed=1)))
    b = list(meshgrid_frames(v, f, MeshGridSpec(resolution=24, feature_channels=3, seed=1)))
    c = list(meshgrid_frames(v, f, MeshGridSpec(resolution=24, feature_channels=3, seed=2)))
    for x, y in zip(a, b, strict=True):
        for p, q in zip(x, y, strict=True):
            assert np.array_equal(p, q)
    assert not np.array_equal(a[0][1], c[0][1])


def test_frame_selection_and_noise():
    offsets = np.zeros((7, 3))
    offsets[:, 1] = np.arange(7) * 0.05
    v, f = _translated_box(offsets)
    spec = MeshGridSpec(resolution=24, feature_channels=2, frames=(1, 6), step=2)
    meta = meshgrid_meta(v, spec, name="box.npz")
    assert meta["num_frames"] == 3 and meta["source"] == {
        **meta["source"],
        "mesh": "box.npz",
        "frames": [1, 6],
        "step": 2,
    }
    frames = list(meshgrid_frames(v, f, spec))
    assert len(frames) == 3
    _, h = _world(meta)
    occ = _occupied_blocks(frames[1][0])
    assert np.allclose(frames[1][2][1, occ], -0.1 / h, atol=1e-4)  # 2 mesh frames apart
    # Bounding box over the selected frames only (1, 3, 5): centred on their vertices.
    centre = 0.5 * (np.array(meta["xyz_min"]) + np.array(meta["xyz_max"]))
    assert np.allclose(centre, [0.0, 0.15, 0.0], atol=1e-6)
    sub = meshgrid_meta(v, MeshGridSpec(resolution=24, frames=(1, 4), step=2))
    assert np.allclose(0.5 * (np.array(sub["xyz_min"]) + np.array(sub["xyz_max"])), [0.0, 0.1, 0.0], atol=1e-6)
    noisy = next(meshgrid_frames(v, f, MeshGridSpec(resolution=24, feature_channels=2, empty_noise=1e-3)))
    clean = next(meshgrid_frames(v, f, MeshGridSpec(resolution=24, feature_channels=2)))
    assert np.all(noisy[0] != 0) and np.abs(noisy[0] - clean[0]).max() <= 0.4 + 1e-6
    assert 0 < np.abs(noisy[1] - clean[1]).max() < 0.1


@pytest.mark.parametrize(
    "spec",
    [
        MeshGridSpec(resolution=4),
        MeshGridSpec(frames=(0, 9)),
        MeshGridSpec(frames=(2, 2)),
        MeshGridSpec(step=0),
        MeshGridSpec(shell_voxels=0.0),
        MeshGridSpec(peak_density=float("nan")),
        MeshGridSpec(feature_channels=0),
        MeshGridSpec(padding=-0.1),
    ],
)
def test_bad_spec(spec):
    v, f = _translated_box(np.zeros((3, 3)))
    with pytest.raises(RerfUsageError):
        meshgrid_meta(v, spec)
    with pytest.raises(RerfUsageError):
        meshgrid_frames(v, f, spec)


def test_load_errors(tmp_path):
    v, f = _translated_box(np.zeros((2, 3)))
    good = tmp_path / "good.npz"
    np.savez(good, vertices=v, faces=f, name="box", fps=30)
    lv, lf = load_mesh_sequence(good)
    assert lv.dtype == np.float32 and lv.shape == v.shape and np.array_equal(lf, f)
    cases = {
        "nofaces": ({"vertices": v}, "'faces' is missing"),
        "badv": ({"vertices": v[0], "faces": f}, "'vertices'"),
        "badidx": ({"vertices": v, "faces": f + 5}, "'faces'"),
        "nan": ({"vertices": np.where(v > 0, np.nan, v), "faces": f}, "'vertices'"),
        "floatf": ({"vertices": v, "faces": f.astype(np.float32)}, "'faces'"),
    }
    for name, (arrays, what) in cases.items():
        p = tmp_path / f"{name}.npz"
        np.savez(p, **arrays)
        with pytest.raises(RerfFormatError, match=what) as exc:
            load_mesh_sequence(p)
        assert str(p) in str(exc.value)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    for p in (junk, tmp_path / "missing.npz"):
        with pytest.raises(RerfFormatError, match=str(p.name)):
            load_mesh_sequence(p)


def test_write_and_cli(tmp_path, capsys):
    v, f, _ = _integer_shift_sequence(1, 24, 0.05)
    mesh = tmp_path / "box.npz"
    np.savez(mesh, vertices=v, faces=f)
    spec = MeshGridSpec(resolution=24, feature_channels=3)
    out = tmp_path / "seq"
    meta = write_meshgrid_sequence(mesh, out, spec)
    m = read_meta(out)
    assert m.grid_shape == tuple(meta["grid_shape"]) and m.num_frames == 2 and m.extra["source"]["mesh"] == "box.npz"
    frames = list(meshgrid_frames(v, f, spec))
    for i in range(2):
        fr = read_frame(out, i, m)
        assert np.array_equal(fr.density, frames[i][0]) and np.array_equal(fr.features, frames[i][1])
    with pytest.raises(RerfUsageError):
        write_meshgrid_sequence(mesh, out, spec)

    assert main([str(mesh), "-o", str(out), "--resolution", "16", "--frames", "0:2", "--force"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "occupied blocks" in lines[1] and lines[1].startswith("frame 2/2")
    assert read_meta(out).grid_shape[0] == 16
    assert main([str(tmp_path / "nope.npz"), "-o", str(tmp_path / "x")]) == 2
    assert main([str(mesh), "-o", str(tmp_path / "x"), "--frames", "0:5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error: ") for e in err)
    with pytest.raises(SystemExit) as exc:
        main([str(mesh), "-o", str(tmp_path / "x"), "--frames", "banana"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.skipif(not CRANE.exists(), reason=f"{CRANE} not available (shared sample data)")
def test_crane_two_frames():
    v, f = load_mesh_sequence(CRANE)
    assert v.shape[1:] == (10002, 3) and f.shape == (20000, 3)
    spec = MeshGridSpec(resolution=48, frames=(0, 2))
    meta = meshgrid_meta(v, spec, name=CRANE.name)
    assert max(meta["grid_shape"]) == 48 and meta["grid_shape"][1] == 48  # y (height) is the long axis
    frames = list(itertools.islice(meshgrid_frames(v, f, spec), 2))
    density, features, motion = frames[1]
    occ = _occupied_blocks(density)
    assert 0.05 < occ.mean() < 0.9
    assert 20 < density.max() <= 39.01 and np.abs(features).max() <= 3.0
    mags = np.linalg.norm(motion[:, occ], axis=0)
    assert 0 < mags.mean() < 1.0  # about a millimetre per frame, voxels of ~4 cm
