"""The compiled CPU renderer (rerf_codec/field/_march.c) renders what the torch renderer renders.

Each case renders the same rays through ``RadianceField`` twice, ``RERF_RENDERER=torch`` and
``RERF_RENDERER=native``, and asks for images within 1e-4, the same opacity, and the same
``samples`` / ``shaded`` counts, for both shading modes: random grids, a soft ball (occupied
window inside the grid), a slab, an empty grid, rays that miss the box, rays starting inside it,
axis-aligned rays, non-cubic grids, C = 3 and 12 feature channels, other step ratios, and a soft
trained-like ball whose per-sample shading overflows the first sample buffer. The switch itself
is checked too: ``RERF_RENDERER=torch`` and a missing library leave the kernel uncalled.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rerf_codec.datasets import Camera
from rerf_codec.errors import RerfUsageError
from rerf_codec.field import MLPConfig, RadianceField, RenderSettings, seeded_mlp
from rerf_codec.field import native_render as nr
from rerf_codec.grids import SequenceMeta

pytestmark = pytest.mark.skipif(not nr.available(), reason="the compiled renderer is not built (pip install -e .)")

BOX = ((-1.0, -0.8, -0.6), (1.0, 0.9, 0.7))


def _field(
    density: np.ndarray,
    features: np.ndarray,
    shading: str,
    *,
    shift: float = 0.0,
    step_ratio: float = 0.5,
    background: tuple[float, float, float] = (1.0, 0.5, 0.25),
) -> RadianceField:
    channels = features.shape[0]
    cfg = MLPConfig(feature_channels=channels, viewbase_pe=2, width=16)
    meta = SequenceMeta(num_frames=1, fps=30.0, grid_shape=density.shape, feature_channels=channels,
                        xyz_min=BOX[0], xyz_max=BOX[1], density_shift=shift,
                        extra={"mlp": cfg.to_json(),
                               "render": RenderSettings(background, step_ratio, shading).to_json()})  # fmt: skip
    return RadianceField.from_arrays(density, features, meta, seeded_mlp(cfg, 7).to_arrays())


def _rays(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays from outside at the box, from inside the box, past the box, and along the axes."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(BOX[0]), torch.tensor(BOX[1])
    o = torch.randn(n, 3, generator=g)
    o = o / o.norm(dim=-1, keepdim=True) * 3
    target = lo + (hi - lo) * torch.rand(n, 3, generator=g)
    d = target - o
    inside = n // 4  # starting inside the grid box, any direction
    o[:inside] = lo + (hi - lo) * torch.rand(inside, 3, generator=g)
    d[:inside] = torch.randn(inside, 3, generator=g)
    miss = n // 8  # aimed away from the box
    d[inside : inside + miss] = o[inside : inside + miss]
    axis = torch.arange(8) % 3  # along the axes (the slab test's |d| < 1e-9 branch), through the box
    o[-8:] = target[-8:]
    o[-8:, axis] = -3.0
    d[-8:] = 0.0
    d[-8:, axis] = 1.0
    d = d / d.norm(dim=-1, keepdim=True)
    return o.float(), d.float()


def _both(field: RadianceField, o: torch.Tensor, d: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> tuple:
    outs = []
    for path in ("torch", "native"):
        monkeypatch.setenv(nr.ENV, path)
        outs.append(field.render_rays(o, d, chunk=700))
    return tuple(outs)


def _agree(field: RadianceField, o: torch.Tensor, d: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> tuple:
    ref, nat = _both(field, o, d, monkeypatch)
    assert nat.rgb.shape == ref.rgb.shape and nat.acc.shape == ref.acc.shape
    err = float((nat.rgb - ref.rgb).abs().max())
    assert err <= 1e-4, err
    assert float((nat.acc - ref.acc).abs().max()) <= 1e-4
    assert (nat.samples, nat.shaded) == (ref.samples, ref.shaded)
    return ref, nat


def _ball(shape: tuple[int, int, int], radius: float, peak: float, edge: float) -> np.ndarray:
    """Density rising from ``edge`` at ``radius`` (in unit-box coordinates) to ``peak`` at the centre."""
    axes = [np.linspace(-1, 1, n) for n in shape]
    r = np.sqrt(sum(a**2 for a in np.meshgrid(*axes, indexing="ij")))
    return np.where(r < radius, edge + (peak - edge) * (1 - r / radius), -30.0).astype(np.float32)


@pytest.mark.parametrize("shading", ["per_sample", "deferred"])
@pytest.mark.parametrize(("shape", "channels"), [((20, 14, 9), 12), ((11, 17, 13), 3)])
def test_random_grids_agree(shading: str, shape: tuple[int, int, int], channels: int, monkeypatch) -> None:
    rng = np.random.default_rng(sum(shape) + channels)
    dens = (rng.standard_normal(shape) * 3).astype(np.float32)
    feats = rng.standard_normal((channels, *shape)).astype(np.float32)
    field = _field(dens, feats, shading, shift=-1.5)
    o, d = _rays(1500, 1)
    ref, _ = _agree(field, o, d, monkeypatch)
    assert ref.samples > 0 and ref.shaded > 0
    assert float(ref.acc.max()) > 0.5 and float(ref.acc.min()) == 0.0  # opaque rays and misses both there


@pytest.mark.parametrize("shading", ["per_sample", "deferred"])
def test_ball_with_an_occupied_window_agrees(shading: str, monkeypatch) -> None:
    shape = (24, 20, 16)
    dens = _ball(shape, 0.6, 8.0, -2.0)
    feats = np.random.default_rng(2).standard_normal((12, *shape)).astype(np.float32)
    field = _field(dens, feats, shading)
    assert field.window is not None and field.window != ((0, 0, 0), (23, 19, 15))  # the march skips a margin
    ref, _ = _agree(field, *_rays(1200, 2), monkeypatch)
    assert ref.samples > 0 and float(ref.acc.max()) > 0.99


@pytest.mark.parametrize("shading", ["per_sample", "deferred"])
def test_slab_agrees(shading: str, monkeypatch) -> None:
    shape = (16, 16, 16)
    dens = np.full(shape, -30.0, np.float32)
    dens[6:9] = 1.0  # a slab across x: the window spans y and z entirely
    feats = np.random.default_rng(3).standard_normal((4, *shape)).astype(np.float32)
    field = _field(dens, feats, shading, shift=0.5)
    assert field.window is not None and field.window[0][0] > 0
    ref, _ = _agree(field, *_rays(1000, 3), monkeypatch)
    assert ref.shaded > 0


@pytest.mark.parametrize("shading", ["per_sample", "deferred"])
def test_empty_grid_renders_the_background(shading: str, monkeypatch) -> None:
    shape = (10, 12, 8)
    field = _field(np.full(shape, -30.0, np.float32), np.ones((3, *shape), np.float32), shading)
    assert field.window is None
    o, d = _rays(300, 4)
    _, nat = _agree(field, o, d, monkeypatch)
    assert nat.samples == nat.shaded == 0
    assert torch.equal(nat.rgb, torch.tensor([[1.0, 0.5, 0.25]]).expand(300, 3))
    assert torch.equal(nat.acc, torch.zeros(300))


@pytest.mark.parametrize("step_ratio", [1.0, 0.3])
def test_other_step_ratios_agree(step_ratio: float, monkeypatch) -> None:
    shape = (12, 12, 12)
    rng = np.random.default_rng(5)
    dens = (rng.standard_normal(shape) * 2).astype(np.float32)
    feats = rng.standard_normal((6, *shape)).astype(np.float32)
    for shading in ("per_sample", "deferred"):
        _agree(_field(dens, feats, shading, step_ratio=step_ratio), *_rays(600, 5), monkeypatch)


def test_per_sample_buffers_regrow_for_a_soft_trained_like_field(monkeypatch) -> None:
    """Soft density (many samples per ray above the weight threshold) overflows the first buffers."""
    shape = (32, 28, 24)
    dens = _ball(shape, 0.9, -1.0, -5.5)  # optical depth ~0.01-0.2 per sample: fog, as early training leaves it
    feats = np.random.default_rng(6).standard_normal((12, *shape)).astype(np.float32)
    field = _field(dens, feats, "per_sample")
    o, d = _rays(800, 6)
    _, nat = _agree(field, o, d, monkeypatch)
    assert nat.shaded > nr.INITIAL_SAMPLES_PER_RAY * 700  # more than a 700-ray chunk's first capacity
    # the kernel directly: a one-sample buffer grows to the count the first call reported
    grids = field._native_grids()
    args = (0.5 * field.geometry.voxel_size, 0.0, 0.5, 1e-4)
    full = nr.march_per_sample(grids, o, d, *args)
    tiny = nr.march_per_sample(grids, o, d, *args, capacity=1)
    assert full[1].shape[0] == nat.shaded
    for a, b in zip(full[:4], tiny[:4], strict=True):
        assert torch.equal(a, b)
    assert full[4] == tiny[4] == nat.samples
    assert bool((full[1][1:] >= full[1][:-1]).all())  # sorted by ray, as the weighted sum expects


@pytest.mark.parametrize("shading", ["per_sample", "deferred"])
def test_samples_on_rounding_ties_agree(shading: str, monkeypatch) -> None:
    """Rays along x through a grid of 0.125 spacing at a step of one voxel: every sample sits on a
    half-voxel plane, where the nearest-voxel rounding ties (round half to even) and the compiled walk
    takes its scalar test; an occupancy that changes from voxel to voxel makes any other choice show."""
    shape = (17, 9, 9)
    rng = np.random.default_rng(11)
    dens = np.where(rng.random(shape) < 0.03, 12.0, -12.0).astype(np.float32)  # gaps after the dilation
    cfg = MLPConfig(feature_channels=3, viewbase_pe=2, width=16)
    meta = SequenceMeta(num_frames=1, fps=30.0, grid_shape=shape, feature_channels=3, xyz_min=(0.0, 0.0, 0.0),
                        xyz_max=(2.0, 1.0, 1.0), density_shift=0.0,
                        extra={"mlp": cfg.to_json(), "render": RenderSettings((1.0, 1.0, 1.0), 1.0, shading).to_json()})  # fmt: skip
    feats = rng.standard_normal((3, *shape)).astype(np.float32)
    field = RadianceField.from_arrays(dens, feats, meta, seeded_mlp(cfg, 7).to_arrays())
    assert field.geometry.spacing.tolist() == [0.125, 0.125, 0.125]
    yz = torch.cartesian_prod(torch.arange(1, 16) / 16, torch.arange(1, 16) / 16)  # on and between planes
    o = torch.cat([torch.full((yz.shape[0], 1), -1.0), yz], 1)
    d = torch.tensor([[1.0, 0.0, 0.0]]).expand_as(o).contiguous()
    ref, _ = _agree(field, o, d, monkeypatch)
    assert ref.samples > 1000 and ref.shaded > 0


@pytest.mark.parametrize("shading", ["per_sample", "deferred"])
def test_render_camera_agrees(shading: str, monkeypatch) -> None:
    shape = (20, 18, 14)
    dens = _ball(shape, 0.8, 6.0, -1.0)
    feats = np.random.default_rng(7).standard_normal((12, *shape)).astype(np.float32)
    field = _field(dens, feats, shading)
    cam = Camera.look_at("c", eye=(0.4, 2.2, 3.0), target=(0, 0, 0), up=(0, 1, 0), fov_x_deg=45, w=40, h=30,
                         split="test")  # fmt: skip
    imgs = []
    for path in ("torch", "native"):
        monkeypatch.setenv(nr.ENV, path)
        imgs.append(field.render_camera(cam, alpha=True))
    assert imgs[0].shape == imgs[1].shape == (30, 40, 4)
    assert float(np.abs(imgs[0] - imgs[1]).max()) <= 1e-4
    assert imgs[1][..., 3].max() > 0.99 and imgs[1][0, 0, 3] == 0.0


def _tripwire(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the kernel wrappers by recorders that fail the render if called."""
    calls: list[str] = []

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("kernel")
        raise AssertionError("the compiled renderer was called")

    monkeypatch.setattr(nr, "march_deferred", boom)
    monkeypatch.setattr(nr, "march_per_sample", boom)
    return calls


def _small_field(shading: str = "deferred") -> RadianceField:
    shape = (8, 8, 8)
    return _field(_ball(shape, 0.8, 5.0, 0.0), np.ones((3, *shape), np.float32), shading)


def test_deferred_kernel_on_several_threads_gives_the_same_bits() -> None:
    """The deferred kernel shares a chunk's rays over threads in blocks of 256: any count, more
    threads than blocks, a ragged last block and a single short block give the one-thread output."""
    shape = (24, 20, 16)
    field = _field(_ball(shape, 0.6, 8.0, -2.0), np.random.default_rng(9).standard_normal((12, *shape)).astype(np.float32),
                   "deferred")  # fmt: skip
    grids = field._native_grids()
    args = (0.5 * field.geometry.voxel_size, 0.0, 0.5, 1e-4)
    for n in (1000, 100):
        o, d = _rays(n, 12)
        ref = nr.march_deferred(grids, o, d, *args, threads=1)
        assert ref[4] > 0
        for threads in (2, 3, 8, 1000, 0):
            out = nr.march_deferred(grids, o, d, *args, threads=threads)
            assert all(torch.equal(a, b) for a, b in zip(out[:4], ref[:4], strict=True)) and out[4] == ref[4]


@pytest.mark.parametrize("channels", [1, 12])
def test_set_grids_never_keeps_the_callers_buffer(channels: int) -> None:
    """The decoder reuses its output buffers for the next frame: the field must hold a copy (with one
    channel a channel-last view of the buffer is contiguous already, so ``contiguous()`` would not copy)."""
    shape = (8, 9, 10)
    feats = np.random.default_rng(13).standard_normal((channels, *shape)).astype(np.float32)
    field = _field(np.zeros(shape, np.float32), feats, "per_sample")
    kept = field.features.clone()
    feats[...] = 7.0  # the decoder writing the next frame
    assert torch.equal(field.features, kept)
    assert torch.equal(field._native_grids().features, kept[0].permute(1, 2, 3, 0))


def test_native_is_the_default_and_torch_can_be_forced(monkeypatch) -> None:
    o, d = _rays(50, 8)
    monkeypatch.delenv(nr.ENV, raising=False)
    field = _small_field()
    assert field._native is not None  # set_grids prepared the kernel's layout
    calls = _tripwire(monkeypatch)
    with pytest.raises(AssertionError, match="compiled renderer was called"):
        field.render_rays(o, d)
    monkeypatch.setenv(nr.ENV, "torch")
    forced = _small_field()
    assert forced._native is None  # no channel-last copy for a renderer that will not use it
    out = forced.render_rays(o, d)
    assert calls == ["kernel"] and out.rgb.shape == (50, 3)
    monkeypatch.setenv(nr.ENV, "gpu")
    with pytest.raises(RerfUsageError, match="RERF_RENDERER must be 'torch' or 'native'"):
        forced.render_rays(o, d)


def test_without_the_library_the_torch_renderer_runs_after_one_notice(monkeypatch, capsys) -> None:
    monkeypatch.setattr(nr, "_lib", None)
    monkeypatch.setattr(nr, "_load_error", "the extension rerf_codec.field._march is not built")
    monkeypatch.setattr(nr, "_noticed", False)
    monkeypatch.delenv(nr.ENV, raising=False)
    calls = _tripwire(monkeypatch)
    assert not nr.available()
    field = _small_field("per_sample")
    o, d = _rays(40, 9)
    a = field.render_rays(o, d)
    b = field.render_rays(o, d)
    assert calls == [] and torch.equal(a.rgb, b.rgb) and a.samples > 0
    err = capsys.readouterr().err
    assert err.count("compiled renderer unavailable") == 1 and "using the torch renderer" in err
    monkeypatch.setenv(nr.ENV, "native")
    with pytest.raises(RerfUsageError, match="RERF_RENDERER=native: the compiled renderer is unavailable"):
        field.render_rays(o, d)


def test_native_render_bench_times_all_four_cases_in_one_process(tmp_path, capsys) -> None:
    """``python -m rerf_codec.bench.native_render_bench``: a real trained frame, both shadings × both renderers."""
    import json

    from rerf_codec.bench import native_render_bench
    from rerf_codec.datasets.demo_scene import render_demo_dataset
    from rerf_codec.train.config import TrainConfig
    from rerf_codec.train.driver import TrainRequest, train_sequence

    data, seq = tmp_path / "data", tmp_path / "seq"
    render_demo_dataset(data, frames=1, cameras=4, test_cameras=1, size=24)
    config = TrainConfig(resolution=16, iters_key=20, batch_rays=512, growth=(0.5,), mlp_width=16)
    train_sequence(TrainRequest(data, seq, frames=range(0, 1)), config)
    native_render_bench.main([f"{seq}:{data}:20", "--runs", "2", "--json"])
    row = json.loads(capsys.readouterr().out)["rows"][0]
    cases = row["cases"]
    assert set(cases) == {"per_sample/torch", "per_sample/native", "deferred/torch", "deferred/native"}
    assert row["pixels"] == 400 and all(len(c["runs_ms"]) == 2 for c in cases.values())
    for shading in ("per_sample", "deferred"):
        assert cases[f"{shading}/native"]["max_abs_diff_vs_torch"] <= 1e-4
        assert cases[f"{shading}/native"]["samples"] == cases[f"{shading}/torch"]["samples"] > 0
    assert cases["deferred/native"]["mlp_evaluations"] < cases["per_sample/native"]["mlp_evaluations"]
    ratio = cases["per_sample/torch"]["ms"] / cases["deferred/native"]["ms"]
    assert row["ratios"]["deferred_native_vs_per_sample_torch"] == pytest.approx(ratio)
    with pytest.raises(SystemExit, match="is not SEQUENCE:DATASET:SIZE"):
        native_render_bench.main([f"{seq}:{data}"])
    with pytest.raises(SystemExit, match=r"error: .*nowhere"):
        native_render_bench.main([f"{tmp_path / 'nowhere'}:{data}:20"])
