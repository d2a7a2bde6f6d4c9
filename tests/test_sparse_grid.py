"""The residual and motion fits' sparse grid and the trainer's compiled kernels render what the dense grid renders.

``SparseGrid`` holds only the voxels a kept sample can read (trainable rows plus a frozen ring);
its lookups must equal ``grid_sample`` on the dense grid, in value and in gradient, in torch and
through the compiled gather/scatter; the compiled sample list must be ``march_rays`` +
``occupied`` exactly; and ``render_rays`` over sparse grids must match it over dense ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rerf_codec.field import GridGeometry, MLPConfig, render_rays, sample_grid, seeded_mlp
from rerf_codec.field import native_render as nr
from rerf_codec.field import native_train as nt
from rerf_codec.field.render import march_rays, occupied, occupied_window
from rerf_codec.field.sparse_grid import SparseGrid, SparseLayout

GEO = GridGeometry((-1.0, -0.8, -1.2), (1.1, 1.0, 0.9), (21, 17, 26))
native = pytest.mark.skipif(not nr.available(), reason="the compiled kernels are not built (pip install -e .)")


def _scene(channels: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A dense grid (C, X, Y, Z), an occupancy (a few blobs) and the flat indices of the trainable voxels."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.randn(channels, *GEO.shape, generator=g)
    occ = torch.zeros(GEO.shape, dtype=torch.bool)
    occ[3:9, 2:12, 5:20] = True
    occ[14:20, 10:16, 0:4] = True  # touching the grid's faces: the clamped corners
    occ &= torch.rand(GEO.shape, generator=g) < 0.7
    return grid, occ, occ.reshape(-1).nonzero()[:, 0]


def _points_in(occ: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Continuous voxel indices whose nearest voxel is set in ``occ`` (what the renderer keeps)."""
    g = torch.Generator().manual_seed(seed)
    hi = torch.tensor([s - 1 for s in GEO.shape], dtype=torch.float32)
    pts = torch.rand(n, 3, generator=g) * (hi + 1.0) - 0.5  # also just past the faces: clamped
    near = pts.round().long().clamp(min=0)
    near = torch.minimum(near, hi.long())
    return pts[occ[near[:, 0], near[:, 1], near[:, 2]]]


def _sparse(grid: torch.Tensor, occ: torch.Tensor, active: torch.Tensor) -> tuple[SparseGrid, torch.Tensor]:
    layout = SparseLayout.build(GEO.shape, active, occ)
    flat = grid.reshape(grid.shape[0], -1)
    trainable = flat[:, active].t().contiguous().requires_grad_(True)
    return SparseGrid(layout, trainable, flat[:, layout.ring].t().contiguous()), trainable


def _dense_lookup(grid: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    unit = (index / torch.tensor([s - 1 for s in GEO.shape]) * 2 - 1).flip(-1)
    return sample_grid(grid[None], unit)


@pytest.mark.parametrize("channels", [1, 12])
def test_sparse_lookup_equals_grid_sample_in_value_and_gradient(channels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(nr.ENV, "torch")
    grid, occ, active = _scene(channels)
    idx = _points_in(occ, 12000, 1)
    assert idx.shape[0] > 800
    sparse, trainable = _sparse(grid, occ, active)
    dense = grid.clone().requires_grad_(True)
    a, b = sparse.sample(idx), _dense_lookup(dense, idx)
    assert torch.allclose(a, b, atol=2e-6), (a - b).abs().max()
    weight = torch.randn(a.shape, generator=torch.Generator().manual_seed(3))
    (ga,) = torch.autograd.grad((a * weight).sum(), trainable)
    (gb,) = torch.autograd.grad((b * weight).sum(), dense)
    gb_active = gb.reshape(channels, -1)[:, active].t()
    assert torch.allclose(ga, gb_active, atol=1e-5), (ga - gb_active).abs().max()
    assert ga.abs().sum() > 0


def _points_along_rays(occ: torch.Tensor, rays: int, seed: int) -> torch.Tensor:
    """Samples in a renderer's order: along straight lines every half voxel, so consecutive samples
    often share a cell (the compiled gather reuses that cell's rows) and lines jump across the grid."""
    g = torch.Generator().manual_seed(seed)
    hi = torch.tensor([s - 1 for s in GEO.shape], dtype=torch.float32)
    start = torch.rand(rays, 1, 3, generator=g) * hi
    direction = torch.nn.functional.normalize(torch.randn(rays, 1, 3, generator=g), dim=-1)
    pts = (start + 0.5 * torch.arange(40, dtype=torch.float32)[None, :, None] * direction).reshape(-1, 3)
    near = torch.minimum(pts.round().long().clamp(min=0), hi.long())
    inside = ((pts >= -0.5) & (pts <= hi + 0.5)).all(1)
    return pts[inside & occ[near[:, 0], near[:, 1], near[:, 2]]]


@native
@pytest.mark.parametrize("channels", [1, 5, 12, 13])
def test_compiled_lookup_equals_the_torch_lookup(channels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every channel count the kernels specialise (1, 12) and the general loop (5, 13); random
    samples and samples along rays (consecutive ones in one cell: the rows are reused)."""
    grid, occ, active = _scene(channels, seed=5)
    idx = torch.cat([_points_in(occ, 12000, 6), _points_along_rays(occ, 300, 8)])
    assert idx.shape[0] > 1200
    sparse, trainable = _sparse(grid, occ, active)
    weight = torch.randn(idx.shape[0], channels, generator=torch.Generator().manual_seed(7))
    results = {}
    for choice in ("torch", "native"):
        monkeypatch.setenv(nr.ENV, choice)
        out = sparse.sample(idx)
        (grad,) = torch.autograd.grad((out * weight).sum(), trainable)
        results[choice] = out.detach(), grad
    assert torch.allclose(results["torch"][0], results["native"][0], atol=1e-6)
    assert torch.allclose(results["torch"][1], results["native"][1], atol=1e-5)
    # The trainable rows as a column slice of a wider table (the motion fit's density and features
    # are slices of one warped table): read in place through its row stride, the same values.
    wide = torch.cat([torch.zeros(trainable.shape[0], 1), trainable.detach(), torch.ones(trainable.shape[0], 2)], 1)
    wide.requires_grad_(True)
    sliced = SparseGrid(sparse.layout, wide[:, 1 : 1 + channels], sparse.frozen)
    out = sliced.sample(idx)
    (grad,) = torch.autograd.grad((out * weight).sum(), wide)
    assert torch.equal(out.detach(), results["native"][0])
    assert torch.equal(grad[:, 1 : 1 + channels], results["native"][1])
    assert not grad[:, 0].any() and not grad[:, 1 + channels :].any()
    called = []
    monkeypatch.setattr(nt, "sparse_gather", lambda *a: called.append(1) or (_ for _ in ()).throw(AssertionError))
    monkeypatch.setenv(nr.ENV, "torch")
    sparse.sample(idx)
    assert not called  # RERF_RENDERER=torch leaves the kernel uncalled


@pytest.mark.parametrize("choice", ["torch", pytest.param("native", marks=native)])
@pytest.mark.parametrize("channels", [1, 13])
def test_a_planned_lookup_repeats_the_lookup_bit_for_bit(choice: str, channels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The residual's coarse stage plans its lookup once and repeats it with new table values every
    iteration: the same values and table gradient as ``sample``, bit for bit, after the table changed."""
    monkeypatch.setenv(nr.ENV, choice)
    grid, occ, active = _scene(channels, seed=9)
    idx = torch.cat([_points_in(occ, 8000, 10), _points_along_rays(occ, 200, 11)])
    sparse, trainable = _sparse(grid, occ, active)
    plan = sparse.planned(idx)
    assert (plan.rows is not None) == (choice == "native")
    weight = torch.randn(idx.shape[0], channels, generator=torch.Generator().manual_seed(12))
    for step in range(2):
        with torch.no_grad():
            trainable.mul_(0.5).add_(0.1 * step)  # new values, same layout
        a, b = sparse.sample(idx), sparse.sample_planned(plan)
        (ga,) = torch.autograd.grad((a * weight).sum(), trainable)
        (gb,) = torch.autograd.grad((b * weight).sum(), trainable)
        assert torch.equal(a, b) and torch.equal(ga, gb)
    other, _ = _sparse(grid, occ, active)
    with pytest.raises(ValueError, match="another layout"):
        other.sample_planned(plan)


@pytest.mark.parametrize("choice", ["torch", pytest.param("native", marks=native)])
def test_a_sample_outside_the_layouts_reach_is_an_error(choice: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(nr.ENV, choice)
    grid, occ, active = _scene(3)
    sparse, _ = _sparse(grid, occ, active)
    far = torch.tensor([[20.0, 0.0, 25.0]])  # a corner of the grid no occupied voxel is near
    assert not occ[19:, :2, 24:].any()
    with pytest.raises(RuntimeError, match="outside the sparse grid's reach"):
        sparse.sample(far)


@native
@pytest.mark.parametrize("windowed", [False, True])
def test_compiled_sample_list_is_march_rays_and_occupied_exactly(windowed: bool) -> None:
    _, occ, _ = _scene(1)
    g = torch.Generator().manual_seed(2)
    o = torch.randn(3000, 3, generator=g) * 0.4 + torch.tensor([0.0, 0.0, 3.0])
    d = torch.nn.functional.normalize(torch.randn(3000, 3, generator=g) * 0.4 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    o[:300] = torch.rand(300, 3, generator=g) - 0.5  # starting inside the box
    step = 0.5 * GEO.voxel_size
    window = occupied_window(occ) if windowed else None
    ray_id, _, pts, _, _ = march_rays(o, d, GEO, step, window)
    keep = occupied(occ, GEO, pts)
    ray_c, pts_c = nt.march_samples(o, d, occ, GEO, window, step)
    assert ray_c.shape[0] == int(keep.sum()) > 1000
    assert torch.equal(ray_c, ray_id[keep]) and torch.equal(pts_c, pts[keep])


@pytest.mark.parametrize("shading", ["per_sample", "deferred"])
@pytest.mark.parametrize("choice", ["torch", pytest.param("native", marks=native)])
def test_render_over_sparse_grids_matches_the_dense_render(
    shading: str, choice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(nr.ENV, choice)
    grid, occ, active = _scene(5, seed=9)
    grid[0] = grid[0] * 3 - 2  # density: some opaque, some empty
    mlp = seeded_mlp(MLPConfig(feature_channels=4, viewbase_pe=2, width=16), 3)
    g = torch.Generator().manual_seed(4)
    o = torch.randn(600, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    d = torch.nn.functional.normalize(torch.randn(600, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    bg = torch.tensor([1.0, 0.5, 0.25])
    sd, td = _sparse(grid[:1], occ, active)
    sf, tf = _sparse(grid[1:], occ, active)
    dd = grid[:1][None].clone().requires_grad_(True)
    df = grid[1:][None].clone().requires_grad_(True)
    outs = [
        render_rays(a, b, mlp, GEO, -1.0, o, d, bg, occupancy=occ, shading=shading) for a, b in ((sd, sf), (dd, df))
    ]
    assert outs[0].samples == outs[1].samples > 0 and outs[0].shaded == outs[1].shaded > 0
    assert torch.allclose(outs[0].rgb, outs[1].rgb, atol=1e-5)
    w = torch.from_numpy(np.random.default_rng(0).normal(size=(600, 3)).astype(np.float32))
    g_sparse = torch.autograd.grad((outs[0].rgb * w).sum(), [td, tf])
    g_dense = torch.autograd.grad((outs[1].rgb * w).sum(), [dd, df])
    for gs, gd in zip(g_sparse, g_dense, strict=True):
        gd_active = gd[0].reshape(gd.shape[1], -1)[:, active].t()
        assert torch.allclose(gs, gd_active, atol=1e-5), (gs - gd_active).abs().max()
