"""Keyframe fitting: density grid + feature grid + the global colour MLP (DVGO's fine stage).

* Progressive growth: start at half resolution (an eighth of the voxels) and grow by
  trilinear upsampling at ``config.growth``; coarse grids fit the low frequencies
  fast and keep early gradients from carving noise.
* Free-space skipping from the first iteration: the visual hull (``data.visual_hull``)
  is the initial occupancy; it is intersected with the density's own free-space cache
  as training proceeds, and density outside it sits at ``density_floor`` (invisible
  and flat, so empty blocks code to nothing).
* Regularisers: total variation on density and features (smooth grids are also the
  cheap ones to code) and the binary entropy of each ray's opacity (DVGO's
  ``weight_entropy_last``), which removes semi-transparent haze.
* Learning rates decay exponentially to ``lr_decay`` of their start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rerf_codec.field import (
    STEP_RATIO,
    ColorMLP,
    GridGeometry,
    MLPConfig,
    RenderOutput,
    native_train,
    occupancy_from_density,
    render_rays,
    seeded_mlp,
)
from rerf_codec.train.config import TrainConfig
from rerf_codec.train.data import FrameRays, rays_meeting

Progress = Callable[[int, int, dict[str, float]], None]


def density_floor(density_shift: float) -> float:
    """Raw density whose one-voxel optical depth is 1e-6: invisible, well below the codec's threshold."""
    return math.log(math.expm1(1e-6)) - density_shift


def total_variation(grid: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbours along the three axes of a (1, C, X, Y, Z) grid.

    On CPU with the compiled kernels, through :class:`_CompiledTV`: the same gradient bit for bit,
    without the formula's full-size intermediates."""
    if native_train.tv_applies(grid):
        out: torch.Tensor = _CompiledTV.apply(grid)
        return out
    return _tv_formula(grid)


def _tv_formula(grid: torch.Tensor) -> torch.Tensor:
    return (
        (grid[:, :, 1:] - grid[:, :, :-1]).pow(2).mean()
        + (grid[:, :, :, 1:] - grid[:, :, :, :-1]).pow(2).mean()
        + (grid[:, :, :, :, 1:] - grid[:, :, :, :, :-1]).pow(2).mean()
    )


def _pair_counts(grid: torch.Tensor) -> tuple[int, int, int]:
    _, c, x, y, z = grid.shape
    return c * (x - 1) * y * z, c * x * (y - 1) * z, c * x * y * (z - 1)


class _CompiledTV(torch.autograd.Function):
    """``_tv_formula`` with the compiled kernels (``rerf_tv_sums`` / ``rerf_tv_grad``). Why: autograd
    kept the three difference tensors for the backward and built six full-size gradient pieces —
    0.75 kB per voxel of 12 channels, 1.6 of the 2.7 GB a 128³ keyframe peaked at, and 270 ms of each
    full-resolution iteration. The gradient is the same bits as autograd's (the same products, added in
    the order its engine adds them; tested), so training is unchanged; the loss value is summed in
    binary64 instead of torch's float32 reduction (it reaches nothing but the backward)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, grid: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(grid)
        sums = native_train.tv_sums(grid)
        return torch.tensor(sum(s / n for s, n in zip(sums, _pair_counts(grid), strict=True)), dtype=torch.float32)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (grid,) = ctx.saved_tensors  # type: ignore[attr-defined]
        # each mean's incoming gradient over its count, as torch's mean backward divides it (float32)
        scales = tuple(float(grad_out / n) for n in _pair_counts(grid))
        return native_train.tv_grad(grid, scales)  # type: ignore[arg-type]


def opacity_entropy(acc: torch.Tensor) -> torch.Tensor:
    a = acc.clamp(1e-6, 1 - 1e-6)
    return -(a * torch.log(a) + (1 - a) * torch.log(1 - a)).mean()


@dataclass
class KeyframeResult:
    density: np.ndarray  # (X, Y, Z) float32
    features: np.ndarray  # (C, X, Y, Z) float32
    mlp: ColorMLP
    iterations: int
    seconds: float
    final_loss: float


def _stage_shapes(final: tuple[int, int, int], stages: int) -> list[tuple[int, int, int]]:
    """From half resolution up to ``final`` in ``stages`` geometric steps."""
    out = []
    for s in range(stages):
        f = 0.5 ** ((stages - 1 - s) / max(stages - 1, 1)) if stages > 1 else 1.0
        out.append(tuple(max(2, round((n - 1) * f) + 1) for n in final))
    out[-1] = final
    return out


def view_residual_penalty(out: RenderOutput, config: TrainConfig) -> torch.Tensor | float:
    """``config.view_residual`` × deferred shading's mean squared view residual; 0 otherwise.

    Every fit adds it to its loss (keyframe, residual, refresh), see ``TrainConfig.view_residual``.
    """
    if out.view_residual is None or not config.view_residual:
        return 0.0
    return config.view_residual * out.view_residual


def _resample(grid: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    return F.interpolate(grid, size=shape, mode="trilinear", align_corners=True)


def _diffuse_start(rays: FrameRays) -> torch.Tensor:
    """Deferred shading's diffuse channels start at the logit of the mean foreground colour.

    Why: a voxel no training view constrains keeps its start colour; at 0 that is grey
    (sigmoid(0)), while per-sample shading's MLP maps an untrained feature to a learned mean
    colour. Measured on the 6-camera test scene: held-out 16.8 dB from grey, per-sample 21.0.
    """
    dev = rays.rgb.device
    fg = rays.alpha > 0.5 if rays.alpha is not None else torch.ones(rays.rgb.shape[0], dtype=torch.bool, device=dev)
    mean = rays.rgb[fg].mean(0) if bool(fg.any()) else torch.full((3,), 0.5, device=dev)
    mean = mean.clamp(0.02, 0.98)
    return torch.log(mean / (1 - mean)).to(rays.rgb.dtype)


def train_keyframe(
    rays: FrameRays,
    hull: np.ndarray,
    geometry: GridGeometry,
    background: torch.Tensor,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    progress: Progress | None = None,
) -> KeyframeResult:
    """Fit frame 0 from its training rays; ``hull`` (X, Y, Z) bool is the initial occupancy."""
    start = time.perf_counter()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    shift = config.density_shift
    floor = density_floor(shift)
    mlp = seeded_mlp(MLPConfig(config.feature_channels, config.viewbase_pe, config.mlp_width, 3), seed).to(device)
    shapes = _stage_shapes(geometry.shape, len(config.growth) + 1)
    bounds = [0, *[round(g * config.iters_key) for g in config.growth], config.iters_key]

    hull_t = torch.from_numpy(hull).to(device)
    hull_f = hull_t.float()[None, None]
    n_rays = rays.origins.shape[0]
    useful = rays_meeting(hull_t, geometry, rays).nonzero()[:, 0]
    if useful.numel() == 0:
        useful = torch.arange(n_rays, device=device)

    density = features = None
    loss_value = float("nan")
    it = 0
    for stage, shape in enumerate(shapes):
        geo = geometry.resized(shape)
        stage_hull = _resample(hull_f, shape)[0, 0] > 0
        if density is None:
            inside = math.log(math.expm1(-math.log(1 - config.hull_alpha))) - shift
            density = torch.where(stage_hull, inside, floor)[None, None].to(device)
            features = torch.zeros(1, config.feature_channels, *shape, device=device)
            if config.shading == "deferred":
                features[0, :3] = _diffuse_start(rays)[:, None, None, None]
        else:
            density = _resample(density.detach(), shape)
            features = _resample(features.detach(), shape)
        density = density.clone().requires_grad_(True)
        features = features.clone().requires_grad_(True)
        params = [
            {"params": [density], "lr": config.lr_grid},
            {"params": [features], "lr": config.lr_grid},
            {"params": mlp.parameters(), "lr": config.lr_mlp},
        ]
        opt = torch.optim.Adam(params, betas=(0.9, 0.99), eps=1e-15)
        base_lrs = [g["lr"] for g in opt.param_groups]
        occupancy = stage_hull
        for _ in range(bounds[stage], bounds[stage + 1]):
            for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = config.decayed_lr(lr, it, config.iters_key)
            pick = useful[torch.randint(useful.numel(), (config.batch_rays,), generator=gen).to(device)]
            out = render_rays(
                density, features, mlp, geo, shift, rays.origins[pick], rays.dirs[pick], background,
                occupancy=occupancy, density_unit=geometry.voxel_size, distortion=config.distortion > 0,
                shading=config.shading,
            )  # fmt: skip
            mse = F.mse_loss(out.rgb, rays.rgb[pick])
            loss = mse + config.entropy * opacity_entropy(out.acc)
            if out.distortion is not None:
                loss = loss + config.distortion * out.distortion
            loss = loss + view_residual_penalty(out, config)
            if config.tv_density:
                loss = loss + config.tv_density * total_variation(density)
            if config.tv_features:
                loss = loss + config.tv_features * total_variation(features)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                density.clamp_(min=floor)
            it += 1
            loss_value = float(mse.detach())
            if it % 100 == 0 or it == config.iters_key:
                with torch.no_grad():
                    ratio = geo.voxel_size / geometry.voxel_size
                    occupancy = stage_hull & occupancy_from_density(density, shift, STEP_RATIO * ratio)
                if progress is not None:
                    stats = {"mse": loss_value, "psnr": -10 * math.log10(max(loss_value, 1e-10))}
                    progress(it, config.iters_key, {**stats, "samples": out.samples, "shaded": out.shaded})
    assert density is not None and features is not None
    with torch.no_grad():
        # Outside the hull nothing was ever seen: make it exactly the floor (flat, free to code).
        d = torch.where(hull_t, density[0, 0], torch.full_like(density[0, 0], floor))
    for p in mlp.parameters():
        p.requires_grad_(False)
    return KeyframeResult(
        density=d.cpu().numpy().astype(np.float32),
        features=features.detach()[0].cpu().numpy().astype(np.float32),
        mlp=mlp.eval(),
        iterations=it,
        seconds=time.perf_counter() - start,
        final_loss=loss_value,
    )
