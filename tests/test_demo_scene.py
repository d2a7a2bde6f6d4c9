"""The built-in demo scene: topology change, large motion, material coordinates, rendered dataset."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import maximum_filter
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from rerf_codec.datasets.demo_scene import (
    DEMO_FEATURE_SIZE,
    QUICK,
    SCENE_MAX,
    SCENE_MIN,
    DemoFrame,
    demo_mesh_sequence,
    render_demo_dataset,
)
from rerf_codec.datasets.format import open_dataset
from rerf_codec.errors import RerfUsageError

BOX = float(np.max(np.subtract(SCENE_MAX, SCENE_MIN)))


def components(fr: DemoFrame) -> int:
    """Connected components of the mesh (vertices joined by triangle edges)."""
    f = fr.faces.astype(np.int64)
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    n = len(fr.vertices)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return int(connected_components(graph, directed=False)[0])


@pytest.fixture(scope="module")
def seq() -> list[DemoFrame]:
    return list(demo_mesh_sequence(30))


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "quick"
    summary = render_demo_dataset(out, **QUICK)
    return out, summary


def test_meshes_are_closed_and_in_the_box(seq: list[DemoFrame]) -> None:
    for fr in seq:
        assert fr.vertices.dtype == np.float32 and fr.faces.dtype == np.int32
        assert fr.material.shape == fr.vertices.shape and fr.material.dtype == np.float32
        assert fr.blob.shape == (len(fr.vertices),)
        assert np.all(fr.vertices > np.asarray(SCENE_MIN) + 0.01) and np.all(fr.vertices < np.asarray(SCENE_MAX) - 0.01)
        # Watertight: every undirected edge is shared by exactly two triangles, in opposite directions.
        e = np.concatenate([fr.faces[:, [0, 1]], fr.faces[:, [1, 2]], fr.faces[:, [2, 0]]]).astype(np.int64)
        n = len(fr.vertices)
        directed = e[:, 0] * n + e[:, 1]
        assert len(np.unique(directed)) == len(directed)
        assert np.array_equal(np.sort(directed), np.sort(e[:, 1] * n + e[:, 0]))
        # Outward orientation: positive signed volume.
        v = fr.vertices.astype(np.float64)[fr.faces]
        assert np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6 > 0.1


def test_topology_merges_and_splits(seq: list[DemoFrame]) -> None:
    counts = [components(fr) for fr in seq]
    assert counts[0] == 3 and counts[-1] == 3  # A, B and the bar
    merged = [i for i, c in enumerate(counts) if c == 2]
    assert merged, counts
    # One merged stretch in the middle, separate before and after: 3 → 2 → 3.
    assert merged == list(range(merged[0], merged[-1] + 1)), counts
    assert 0 < merged[0] < len(seq) // 2 < merged[-1] < len(seq) - 1, counts
    assert min(counts) == 2


def test_same_events_for_other_seeds() -> None:
    a = [components(fr) for fr in demo_mesh_sequence(12, resolution=48, seed=1)]
    b = [components(fr) for fr in demo_mesh_sequence(12, resolution=48, seed=7)]
    assert a == b and a[0] == 3 and 2 in a


def test_motion_is_large(seq: list[DemoFrame]) -> None:
    def centroid(fr: DemoFrame, blob: int) -> np.ndarray:
        return fr.vertices[fr.blob == blob].mean(axis=0)

    for blob in (0, 1):
        moved = np.linalg.norm(centroid(seq[-1], blob) - centroid(seq[0], blob))
        assert moved >= 0.3 * BOX, (blob, moved)
    steps = np.linalg.norm(np.diff([fr.centers[0] for fr in seq], axis=0), axis=1)
    assert steps.max() > 0.15  # per frame, at 30 frames: a blob's diameter (0.73) in under 5 frames
    assert steps.sum() > 3.0


def test_deterministic() -> None:
    a = list(demo_mesh_sequence(3, resolution=32, seed=5))
    b = list(demo_mesh_sequence(3, resolution=32, seed=5))
    c = list(demo_mesh_sequence(3, resolution=32, seed=6))
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.vertices, y.vertices) and np.array_equal(x.faces, y.faces)
        assert np.array_equal(x.material, y.material)
    assert any(
        x.vertices.shape != z.vertices.shape or not np.array_equal(x.vertices, z.vertices)
        for x, z in zip(a, c, strict=True)
    )


def test_material_positions_follow_each_blob(seq: list[DemoFrame]) -> None:
    """Away from the merge the material map is the blob's inverse rigid motion onto its frame-0 surface."""
    from rerf_codec.datasets.mesh_render import texture

    first = seq[0]
    for t in (3, 27):  # not merged
        fr = seq[t]
        for blob in (0, 1, 2):
            sel = fr.blob == blob
            p, m = fr.vertices[sel].astype(np.float64), fr.material[sel].astype(np.float64)
            # Rigid: distances between points are preserved.
            rng = np.random.default_rng(blob)
            i, j = rng.integers(0, len(p), (2, 300))
            assert np.allclose(np.linalg.norm(p[i] - p[j], axis=1), np.linalg.norm(m[i] - m[j], axis=1), atol=1e-4)
            # On the frame-0 surface of the same blob (within a marching-cubes voxel).
            tree = cKDTree(first.vertices[first.blob == blob])
            dist, idx = tree.query(m)
            assert dist.max() < 0.04, (t, blob, dist.max())
            # So the albedo a point gets at frame t is the albedo of that material point at frame 0.
            a_t = texture(m, DEMO_FEATURE_SIZE)
            a_0 = texture(first.material[first.blob == blob][idx], DEMO_FEATURE_SIZE)
            assert np.median(np.abs(a_t - a_0)) < 0.03
    # Frame 0's material positions are the positions themselves.
    assert np.allclose(first.material, first.vertices, atol=1e-5)


def test_quick_dataset(quick: tuple[Path, dict]) -> None:
    out, summary = quick
    ds = open_dataset(out)
    meta = ds.meta
    assert meta.num_frames == QUICK["frames"] and meta.first_frame == 0
    assert len(meta.train_cameras) == QUICK["cameras"] and len(meta.test_cameras) == QUICK["test_cameras"]
    assert meta.image_mode == "RGBA" and meta.xyz_min == SCENE_MIN and meta.xyz_max == SCENE_MAX
    assert meta.source["generator"] == "rerf demo scene" and meta.source["seed"] == 0
    assert summary["frames"] == QUICK["frames"] and summary["cameras"] == QUICK["cameras"] + QUICK["test_cameras"]


def test_alpha_covers_the_object(quick: tuple[Path, dict]) -> None:
    out, _ = quick
    ds = open_dataset(out)
    frames = list(demo_mesh_sequence(QUICK["frames"]))
    for f in (0, QUICK["frames"] // 2, QUICK["frames"] - 1):
        for cam in ds.meta.cameras:
            img = ds.load_image(f, cam)
            alpha = img[..., 3]
            assert 0.02 < (alpha > 0).mean() < 0.6
            assert set(np.unique(alpha)) <= {0.0, 1.0}  # one ray per pixel: hit or miss
            # The silhouette is where the surface projects: every vertex lands on a covered pixel (or
            # next to one, at the edge), and every covered pixel has a vertex in or next to it.
            uv, depth = cam.project(frames[f].vertices)
            assert np.all(depth > 0)
            px = np.floor(uv).astype(int)
            assert np.all((px >= 0) & (px < [cam.w, cam.h]))
            covered = alpha > 0
            assert np.all(maximum_filter(covered, size=3)[px[:, 1], px[:, 0]])
            assert covered[px[:, 1], px[:, 0]].mean() > 0.7
            hit = np.zeros_like(covered)
            hit[px[:, 1], px[:, 0]] = True
            assert np.all(maximum_filter(hit, size=3)[covered])
            # Where there is nothing, the background (white) is stored.
            assert np.all(img[alpha == 0][:, :3] == 1.0)


def test_rendering_is_deterministic(quick: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = quick
    again = tmp_path / "again"
    render_demo_dataset(again, **QUICK)

    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))
        }

    a, b = digests(out), digests(again)
    assert len(a) == QUICK["frames"] * (QUICK["cameras"] + QUICK["test_cameras"])
    assert a == b
    assert (out / "transforms.json").read_bytes() == (again / "transforms.json").read_bytes()


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "d"
    small = {"frames": 2, "cameras": 2, "test_cameras": 1, "size": 16, "resolution": 24}
    render_demo_dataset(out, **small)
    before = (out / "transforms.json").read_bytes()
    with pytest.raises(RerfUsageError, match="exists"):
        render_demo_dataset(out, **small)
    assert (out / "transforms.json").read_bytes() == before
    render_demo_dataset(out, **{**small, "seed": 3}, force=True)
    assert open_dataset(out).meta.source["seed"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary folders left behind


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frames": 0}, "frames must"),
        ({"cameras": 0}, "^cameras must"),
        ({"test_cameras": 0}, "test_cameras must"),
        ({"size": 4}, "size must"),
        ({"resolution": 2}, "resolution must"),
        ({"seed": -1}, "seed must"),
        ({"frames": 2.5}, "frames must"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(RerfUsageError, match=match):
        render_demo_dataset(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()
    with pytest.raises(RerfUsageError):
        next(demo_mesh_sequence(0))


def test_progress_is_reported(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    render_demo_dataset(
        tmp_path / "p",
        frames=3,
        cameras=1,
        test_cameras=1,
        size=16,
        resolution=24,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]
