"""The shared radiance field: gradients, compositing rules, free-space skipping, MLP I/O, devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.field import (
    ColorMLP,
    GridGeometry,
    MLPConfig,
    RadianceField,
    RenderSettings,
    encode_directions,
    occupancy_from_density,
    ray_box,
    render_rays,
    resolve_device,
    seeded_mlp,
)
from rerf_codec.grids import SequenceMeta


def _rays(n: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g, dtype=dtype)
    o = o / o.norm(dim=-1, keepdim=True) * 3
    target = torch.randn(n, 3, generator=g, dtype=dtype) * 0.3
    d = target - o
    return o, d / d.norm(dim=-1, keepdim=True)


def test_gradients_match_finite_differences() -> None:
    geo = GridGeometry((-1, -1, -1), (1, 1, 1), (6, 5, 7))
    g = torch.Generator().manual_seed(1)
    dens = (torch.randn(1, 1, 6, 5, 7, generator=g, dtype=torch.float64) * 2).requires_grad_()
    feat = torch.randn(1, 4, 6, 5, 7, generator=g, dtype=torch.float64).requires_grad_()
    mlp = seeded_mlp(MLPConfig(feature_channels=4, width=8, viewbase_pe=2), 0).double()
    o, d = _rays(5)
    bg = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)

    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return render_rays(a, b, mlp, geo, -1.0, o, d, bg, weight_threshold=0).rgb

    assert torch.autograd.gradcheck(f, (dens, feat), eps=1e-6, atol=1e-5, fast_mode=True)
    # and through the MLP weights
    w = mlp.net[0].weight

    def fw(weight: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            w.copy_(weight)
        return render_rays(dens.detach(), feat.detach(), mlp, geo, -1.0, o, d, bg, weight_threshold=0).rgb

    out = render_rays(dens.detach(), feat.detach(), mlp, geo, -1.0, o, d, bg, weight_threshold=0).rgb.sum()
    (grad,) = torch.autograd.grad(out, w)
    base = w.detach().clone()
    eps = 1e-6
    for idx in [(0, 0), (3, 5), (7, 10)]:
        plus, minus = base.clone(), base.clone()
        plus[idx] += eps
        minus[idx] -= eps
        fd = (fw(plus).sum() - fw(minus).sum()) / (2 * eps)
        assert float(fd.detach()) == pytest.approx(float(grad[idx]), rel=1e-4, abs=1e-7)
    with torch.no_grad():
        w.copy_(base)


def test_empty_grid_renders_background_and_solid_grid_hides_it() -> None:
    geo = GridGeometry((-1, -1, -1), (1, 1, 1), (8, 8, 8))
    mlp = seeded_mlp(MLPConfig(feature_channels=2, width=8), 0)
    o, d = _rays(16, torch.float32)
    bg = torch.tensor([0.2, 0.4, 0.6])
    empty = torch.full((1, 1, 8, 8, 8), -30.0)
    feats = torch.zeros(1, 2, 8, 8, 8)
    out = render_rays(empty, feats, mlp, geo, 0.0, o, d, bg)
    assert torch.allclose(out.rgb, bg.expand(16, 3), atol=1e-6)
    assert float(out.acc.max()) < 1e-6
    solid = torch.full((1, 1, 8, 8, 8), 30.0)
    out = render_rays(solid, feats, mlp, geo, 0.0, o, d, bg)
    assert float(out.acc.min()) > 0.999
    # an opaque grid shows the MLP's colour for its features, not the background
    with torch.no_grad():
        expected = mlp(torch.zeros(16, 2), encode_directions(d, mlp.config.viewbase_pe))
    assert torch.allclose(out.rgb, expected, atol=1e-4)


def test_alpha_matches_the_dvgo_formula_for_a_homogeneous_slab() -> None:
    """One axis-aligned ray through a constant density: opacity = 1 - exp(-softplus(d + s) * length / voxel)."""
    geo = GridGeometry((0, 0, 0), (1, 1, 1), (11, 11, 11))  # voxel 0.1
    mlp = seeded_mlp(MLPConfig(feature_channels=1, width=4), 0)
    d_raw, shift = -2.0, 0.5
    dens = torch.full((1, 1, 11, 11, 11), d_raw, dtype=torch.float64)
    feats = torch.zeros(1, 1, 11, 11, 11, dtype=torch.float64)
    o = torch.tensor([[0.5, 0.5, -1.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    out = render_rays(dens, feats, mlp.double(), geo, shift, o, d, torch.zeros(3, dtype=torch.float64))
    expected = 1 - math.exp(-math.log1p(math.exp(d_raw + shift)) * 1.0 / 0.1)
    assert float(out.acc[0]) == pytest.approx(expected, rel=1e-9)


def test_occupancy_skipping_changes_nothing_visible() -> None:
    geo = GridGeometry((-1, -1, -1), (1, 1, 1), (16, 16, 16))
    x = torch.linspace(-1, 1, 16)
    xx, yy, zz = torch.meshgrid(x, x, x, indexing="ij")
    dens = (20 * (0.3 - (xx**2 + yy**2 + zz**2).sqrt()) - 5)[None, None]
    feats = torch.randn(1, 3, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    mlp = seeded_mlp(MLPConfig(feature_channels=3, width=16), 0)
    o, d = _rays(256, torch.float32)
    bg = torch.ones(3)
    occ = occupancy_from_density(dens, 0.0)
    assert 0.01 < float(occ.float().mean()) < 0.3
    full = render_rays(dens, feats, mlp, geo, 0.0, o, d, bg)
    fast = render_rays(dens, feats, mlp, geo, 0.0, o, d, bg, occupancy=occ)
    assert fast.samples < full.samples / 2
    assert torch.allclose(full.rgb, fast.rgb, atol=2e-3)


@pytest.mark.parametrize("shape", [(2, 2, 2), (5, 3, 7), (17, 2, 9), (24, 21, 19)])
def test_occupancy_dilation_is_the_3x3x3_max_pool(shape: tuple[int, int, int]) -> None:
    """The free-space cache's dilation (three one-axis ORs) keeps exactly the voxels a 3x3x3 max pool
    keeps, and the occupied window is the box of the set voxels, at any density and edge size."""
    from rerf_codec.field.render import dilate_by_one, occupied_window

    rng = np.random.default_rng(sum(shape))
    for p in (0.0, 0.005, 0.05, 0.5):
        occ = torch.from_numpy(rng.random(shape) < p)
        pooled = torch.nn.functional.max_pool3d(occ.float()[None, None], 3, 1, 1)[0, 0] > 0
        assert torch.equal(dilate_by_one(occ), pooled)
        idx = occ.nonzero()
        box = None if idx.numel() == 0 else (tuple(idx.min(0).values.tolist()), tuple(idx.max(0).values.tolist()))
        assert occupied_window(occ) == box


def test_ray_box_clips_and_misses() -> None:
    geo = GridGeometry((0, 0, 0), (1, 2, 3), (4, 4, 4))
    o = torch.tensor([[0.5, 1.0, -1.0], [5.0, 5.0, 5.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    t0, t1 = ray_box(o, d, geo)
    assert float(t0[0]) == pytest.approx(1.0) and float(t1[0]) == pytest.approx(4.0)
    assert float(t1[1]) <= float(t0[1])


def test_for_resolution_gives_cubic_voxels_covering_the_box() -> None:
    geo = GridGeometry.for_resolution((0, 0, 0), (1.0, 0.5, 0.25), 65)
    assert geo.shape[0] == 65
    assert np.allclose(geo.spacing, geo.spacing[0])
    assert all(lo <= b for lo, b in zip(geo.xyz_min, (0, 0, 0), strict=True))
    assert all(hi >= b for hi, b in zip(geo.xyz_max, (1.0, 0.5, 0.25), strict=True))


def test_mlp_arrays_round_trip_and_validation() -> None:
    cfg = MLPConfig()
    mlp = seeded_mlp(cfg, 3)
    arrays = mlp.to_arrays()
    assert cfg.in_dim == 12 + 3 + 24 and len(arrays) == 6
    back = ColorMLP.from_arrays(cfg, arrays)
    f, e = torch.randn(5, 12), torch.randn(5, cfg.in_dim - 12)
    assert torch.equal(mlp(f, e), back(f, e))
    assert MLPConfig.from_json(cfg.to_json()) == cfg
    bad = dict(arrays)
    bad["mlp.net.0.weight"] = bad["mlp.net.0.weight"][:, :5]
    with pytest.raises(RerfFormatError, match="shape"):
        ColorMLP.from_arrays(cfg, bad)
    with pytest.raises(RerfFormatError, match="missing"):
        ColorMLP.from_arrays(cfg, {k: v for k, v in arrays.items() if "net.2" not in k})
    with pytest.raises(RerfFormatError, match="mlp"):
        MLPConfig.from_json({"kind": "something-else"})
    # same seed, same weights; different seed, different weights
    assert all(np.array_equal(a, b) for a, b in zip(arrays.values(), seeded_mlp(cfg, 3).to_arrays().values(), strict=True))
    assert not np.array_equal(arrays["mlp.net.0.weight"], seeded_mlp(cfg, 4).to_arrays()["mlp.net.0.weight"])


def _meta(shape: tuple[int, int, int], channels: int, mlp: MLPConfig | None) -> SequenceMeta:
    extra = {"render": RenderSettings((1.0, 1.0, 1.0)).to_json()}
    if mlp is not None:
        extra["mlp"] = mlp.to_json()
    return SequenceMeta(num_frames=1, fps=30.0, grid_shape=shape, feature_channels=channels,
                        xyz_min=(-1, -1, -1), xyz_max=(1, 1, 1), density_shift=0.0, extra=extra)  # fmt: skip


def test_radiance_field_from_sequence_metadata_renders_a_camera() -> None:
    from rerf_codec.datasets import Camera

    cfg = MLPConfig(feature_channels=2, width=8)
    meta = _meta((8, 8, 8), 2, cfg)
    dens = np.full((8, 8, 8), -30, np.float32)
    dens[2:6, 2:6, 2:6] = 10
    feats = np.zeros((2, 8, 8, 8), np.float32)
    field = RadianceField.from_arrays(dens, feats, meta, seeded_mlp(cfg, 0).to_arrays())
    cam = Camera.look_at("c", eye=(0, 0, 4), target=(0, 0, 0), up=(0, 1, 0), fov_x_deg=40, w=16, h=12, split="test")
    img = field.render_camera(cam)
    assert img.shape == (12, 16, 3) and img.dtype == np.float32
    assert np.allclose(img[0, 0], 1.0)  # corner: background
    assert not np.allclose(img[6, 8], 1.0, atol=0.05)  # centre: the cube
    with pytest.raises(RerfUsageError, match="no decoder"):
        RadianceField.from_arrays(dens, feats, meta, None)
    with pytest.raises(RerfFormatError, match="'mlp'"):
        RadianceField.from_arrays(dens, feats, _meta((8, 8, 8), 2, None), {"x": np.zeros(1)})


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(RerfUsageError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RerfUsageError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("shading", ["per_sample", "deferred"])
def test_cpu_and_cuda_agree(shading: str) -> None:
    geo = GridGeometry((-1, -1, -1), (1, 1, 1), (16, 16, 16))
    g = torch.Generator().manual_seed(0)
    dens = torch.randn(1, 1, 16, 16, 16, generator=g) * 3
    feats = torch.randn(1, 12, 16, 16, 16, generator=g)
    mlp = seeded_mlp(MLPConfig(), 0)
    o, d = _rays(512, torch.float32)
    bg = torch.ones(3)
    cpu = render_rays(dens, feats, mlp, geo, 0.0, o, d, bg, weight_threshold=0, shading=shading).rgb
    dev = torch.device("cuda")
    gpu = render_rays(dens.to(dev), feats.to(dev), mlp.to(dev), geo, 0.0, o.to(dev), d.to(dev), bg.to(dev),
                      weight_threshold=0, shading=shading).rgb.cpu()  # fmt: skip
    assert torch.allclose(cpu, gpu, atol=1e-4)


def test_distortion_prefers_a_thin_surface_and_has_correct_gradients() -> None:
    """mip-NeRF 360's distortion: same opacity, concentrated weights cost less; gradients check out."""
    geo = GridGeometry((0, 0, 0), (1, 1, 1), (21, 21, 21))
    mlp = seeded_mlp(MLPConfig(feature_channels=1, width=4), 0).double()
    o = torch.tensor([[0.5, 0.5, -1.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    feats = torch.zeros(1, 1, 21, 21, 21, dtype=torch.float64)
    bg = torch.zeros(3, dtype=torch.float64)

    def slab(z0: int, z1: int, value: float) -> torch.Tensor:
        g = torch.full((1, 1, 21, 21, 21), -40.0, dtype=torch.float64)
        g[..., z0:z1] = value
        return g

    thin = render_rays(slab(10, 12, 3.0), feats, mlp, geo, 0.0, o, d, bg, distortion=True)
    thick = render_rays(slab(4, 18, 0.1), feats, mlp, geo, 0.0, o, d, bg, distortion=True)
    assert float(thin.acc[0]) > 0.9 and float(thick.acc[0]) > 0.9
    assert float(thin.distortion) < 0.3 * float(thick.distortion)

    g = torch.Generator().manual_seed(2)
    dens = (torch.randn(1, 1, 5, 4, 6, generator=g, dtype=torch.float64)).requires_grad_()
    small = GridGeometry((-1, -1, -1), (1, 1, 1), (5, 4, 6))
    o2, d2 = _rays(4)

    def f(a: torch.Tensor) -> torch.Tensor:
        return render_rays(a, torch.zeros(1, 1, 5, 4, 6, dtype=torch.float64), mlp, small, 0.0, o2, d2, bg,
                           weight_threshold=0, distortion=True).distortion  # fmt: skip

    assert torch.autograd.gradcheck(f, (dens,), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_marching_only_the_occupied_box_keeps_exactly_the_same_samples(dtype: torch.dtype) -> None:
    """The occupancy window skips samples before they cost anything; the occupancy test would drop them anyway."""
    from rerf_codec.field.render import march_rays, occupied, occupied_window

    geo = GridGeometry((-1.0, -0.8, -1.2), (1.0, 1.1, 0.9), (20, 17, 23))
    g = torch.Generator().manual_seed(4)
    occ = torch.zeros(20, 17, 23, dtype=torch.bool)
    occ[3:9, 5:12, 10:18] = torch.rand(6, 7, 8, generator=g) > 0.5
    occ[3, 5, 10] = occ[8, 11, 17] = True
    assert occupied_window(occ) == ((3, 5, 10), (8, 11, 17))
    assert occupied_window(torch.zeros_like(occ)) is None
    o, d = _rays(3000, dtype, seed=5)
    o = o * 0.5  # some rays start inside the box
    step = 0.5 * geo.voxel_size
    full = march_rays(o, d, geo, step)
    part = march_rays(o, d, geo, step, occupied_window(occ))
    keep_full = occupied(occ, geo, full[2])
    keep_part = occupied(occ, geo, part[2])
    assert part[0].shape[0] < 0.5 * full[0].shape[0]
    assert int(keep_full.sum()) > 500
    assert torch.equal(full[0][keep_full], part[0][keep_part]) and torch.equal(full[1][keep_full], part[1][keep_part])
    assert torch.equal(full[3], part[3]) and torch.equal(full[4], part[4])


# --------------------------------------------------------------------------- deferred shading (issue 12)


def test_deferred_shading_gradients_match_finite_differences() -> None:
    geo = GridGeometry((-1, -1, -1), (1, 1, 1), (6, 5, 7))
    g = torch.Generator().manual_seed(2)
    dens = (torch.randn(1, 1, 6, 5, 7, generator=g, dtype=torch.float64) * 2).requires_grad_()
    feat = torch.randn(1, 4, 6, 5, 7, generator=g, dtype=torch.float64).requires_grad_()
    mlp = seeded_mlp(MLPConfig(feature_channels=4, width=8, viewbase_pe=2), 0).double()
    o, d = _rays(5)
    bg = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)

    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return render_rays(a, b, mlp, geo, -1.0, o, d, bg, weight_threshold=0, shading="deferred").rgb

    assert torch.autograd.gradcheck(f, (dens, feat), eps=1e-6, atol=1e-5, fast_mode=True)
    # through the MLP weights too (the MLP is trained end to end with deferred shading)
    w = mlp.net[0].weight
    out = f(dens.detach(), feat.detach()).sum()
    (grad,) = torch.autograd.grad(out, w)
    base = w.detach().clone()
    for idx in [(0, 0), (5, 3)]:
        vals = []
        for sign in (1, -1):
            with torch.no_grad():
                w.copy_(base)
                w[idx] += sign * 1e-6
            vals.append(float(f(dens.detach(), feat.detach()).sum().detach()))
        assert (vals[0] - vals[1]) / 2e-6 == pytest.approx(float(grad[idx]), rel=1e-4, abs=1e-7)
    with torch.no_grad():
        w.copy_(base)


def test_deferred_shading_formula_and_work() -> None:
    """rgb = D + W·(2·MLP(F/W, PE(d)) − 1) + T·bg, one MLP call per ray that is not background (vs one per sample)."""
    geo = GridGeometry((-1, -1, -1), (1, 1, 1), (16, 16, 16))
    g = torch.Generator().manual_seed(3)
    idx = torch.stack(torch.meshgrid(*[torch.arange(16.0)] * 3, indexing="ij"), 0)
    r = ((idx - 7.5) ** 2).sum(0).sqrt()
    dens = (2.0 * (6 - r)).clamp(-10, 3)[None, None].double()  # a soft ball: several samples per ray
    feat = torch.randn(1, 4, 16, 16, 16, generator=g, dtype=torch.float64)
    mlp = seeded_mlp(MLPConfig(feature_channels=4, width=8, viewbase_pe=2), 0).double()
    o, d = _rays(64)
    bg = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    per = render_rays(dens, feat, mlp, geo, 0.0, o, d, bg)
    dfr = render_rays(dens, feat, mlp, geo, 0.0, o, d, bg, shading="deferred")
    miss = render_rays(dens, feat, mlp, geo, 0.0, torch.tensor([[5.0, 5.0, 5.0]], dtype=torch.float64),
                       torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), bg, weight_threshold=0, shading="deferred")
    assert torch.equal(miss.rgb, bg[None])
    assert torch.allclose(per.acc, dfr.acc)
    lit = int((per.acc > 1e-3).sum())
    assert dfr.shaded <= lit + 8 and per.shaded >= 5 * dfr.shaded, (per.shaded, dfr.shaded)
    # a constant feature field c: F/W = c and D = W·sigmoid(c[0:3]) on every ray, W = 1 - T
    c = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64)
    const = torch.zeros_like(feat) + c[None, :, None, None, None]
    out = render_rays(dens, const, mlp, geo, 0.0, o, d, bg, weight_threshold=0, shading="deferred")
    with torch.no_grad():
        view = mlp(c.expand(o.shape[0], 4), encode_directions(d, 2))
    w = out.acc[:, None]
    expected = w * torch.sigmoid(c[:3]) + w * (2 * view - 1) + (1 - w) * bg
    assert torch.allclose(out.rgb, expected, atol=1e-9)
    # a fresh MLP (last bias 0) adds only a small residual: the picture starts from the diffuse colour
    assert float((view - 0.5).abs().max()) < 0.25
    with pytest.raises(RerfUsageError, match="3 feature channels"):
        render_rays(dens, feat[:, :2], seeded_mlp(MLPConfig(feature_channels=2, width=8), 0).double(), geo, 0.0, o, d,
                    bg, shading="deferred")  # fmt: skip


def test_render_settings_record_the_shading_mode() -> None:
    s = RenderSettings((1.0, 1.0, 1.0), 0.5, "deferred")
    assert s.to_json()["shading"] == "deferred" and RenderSettings.from_json(s.to_json()) == s
    assert RenderSettings.from_json({"background": [1, 1, 1], "step_ratio": 0.5}).shading == "per_sample"
    with pytest.raises(RerfFormatError, match=r"render\.shading"):
        RenderSettings.from_json({"background": [1, 1, 1], "step_ratio": 0.5, "shading": "fancy"})
    with pytest.raises(RerfUsageError):
        RenderSettings((1.0, 1.0, 1.0), 0.5, "fancy")
    meta = SequenceMeta(num_frames=1, fps=30.0, grid_shape=(8, 8, 8), feature_channels=4, xyz_min=(-1, -1, -1),
                        xyz_max=(1, 1, 1), density_shift=0.0,
                        extra={"mlp": MLPConfig(4, 2, 8).to_json(), "render": s.to_json()})  # fmt: skip
    field = RadianceField.for_sequence(meta, seeded_mlp(MLPConfig(4, 2, 8), 0).to_arrays())
    assert field.settings.shading == "deferred"
