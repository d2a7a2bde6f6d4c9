"""Residual frames (t ≥ 1): ReRF's motion grid, then a sparse residual grid.

**Motion — direct optimisation of the block motion grid.** ReRF optimises a dense
deformation field and mean-pools it over 8³ cubes. We optimise the (3, X/8, Y/8, Z/8)
block motion itself, photometrically, through a differentiable version of the very
warp the format defines (``trainer_form.warp_previous``: each voxel samples frame t-1
trilinearly at ``p + motion[block(p)]``, clamped at the edges). Why: the pooled dense
field is not what gets stored — pooling averages vectors of voxels that were each
fitted alone, and the stored motion is then judged only after the fact — while the
direct form minimises the rendering error of exactly the motion that is written, with
512× fewer unknowns (it also converges in ~100 iterations instead of a dense field's
thousands). Motion starts from the previous frame's (motion is temporally coherent),
and a smoothness term between neighbouring blocks keeps blocks that no camera
constrains from drifting.

**Motion — the pooled model** (``config.motion_model == "pooled"``, ReRF / DeVRF). The same
schedule fits a smooth field — one control vector per block centre (per superblock centre on the
coarse levels), trilinear in between (``warp_smooth``) — and each block then stores the field's
mean over the voxels its warp leaves occupied (``pool_motion``). A turn is a linear field, which
the smooth field represents and block vectors cannot; so its pooled vectors are the blocks' true
mean motion (the 15° test), while the block model's render better after motion alone. Not the
default, by measurement (BENCHMARKS, "Session 15"): the same frames on the demo and crane, worse on
horse-gallop, more CPU.

**Residual — proximal L1.** The warped grid (computed with the format's own numpy
``warp_previous``, so the trainer's frame t is bit-for-bit what a reader reconstructs)
and the MLP stay fixed; only the residual grids are optimised, with the photometric
loss plus ``l1 · Σ|r|``. After every Adam step any residual voxel that crossed zero is
set to exactly zero (truncated gradient, Langford et al. 2009); voxels that no sample
reaches never move from zero. Most of the residual is therefore exactly zero, which is
what makes residual frames cheap to code. The residual is fitted coarse to fine, as the
keyframe grows its grid: first on a half-resolution lattice, then per voxel
(``config.residual_coarse``; see ``fit_residual`` for why).

Both fits render through ``SparseGrid``s (field/sparse_grid.py): only the voxels their
samples can read, so an iteration costs what its rays touch, not the whole 128³ grid.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rerf_codec.field import GridGeometry, native_train, occupancy_from_density
from rerf_codec.field.render import occupied_window
from rerf_codec.field.sparse_grid import SparseGrid, SparseLayout
from rerf_codec.grids import GridFrame, TrainerFrame
from rerf_codec.train.config import TrainConfig
from rerf_codec.train.context import FieldContext
from rerf_codec.train.data import FrameRays, rays_meeting
from rerf_codec.train.keyframe import Progress, view_residual_penalty
from rerf_codec.train.proximal import ProximalAdam
from rerf_codec.trainer_form import warp_previous

BLOCK = 8


def _voxel_coords(shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # (X, Y, Z, 3)


def warp_torch(grid: torch.Tensor, motion: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Differentiable (in ``motion``) ``warp_previous`` of a (1, C, X, Y, Z) grid at voxel ``coords`` (..., 3).

    Each voxel samples ``grid`` trilinearly at ``p + motion[:, p // 8]``, clamped to the
    grid (``padding_mode="border"`` clamps the coordinate, as the format does); returns
    (C, ...) — pass every voxel's coordinates for the whole warped grid, or a subset. On CPU
    in float32 through the compiled kernel (``native_train.block_warp``) when it is built.
    """
    if native_train.usable(grid, motion, coords) and not grid.requires_grad:
        flat = coords.reshape(-1, 3)
        out = _BlockWarp.apply(grid[0], motion, flat)  # (K, C)
        return out.t().reshape(grid.shape[1], *coords.shape[:-1])
    m = motion.reshape(3, -1)[:, _block_index(coords, motion.shape[1:]).reshape(-1)].t().reshape(*coords.shape)
    return _sample(grid, coords + m)


def _block_index(coords: torch.Tensor, blocks: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Row-major index of the 8³ block holding each voxel of ``coords`` (..., 3) in a (bx, by, bz) grid of blocks."""
    block = torch.div(coords, BLOCK, rounding_mode="floor").long()
    return (block[..., 0] * blocks[1] + block[..., 1]) * blocks[2] + block[..., 2]


def _sample(grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(C, ...): ``grid`` (1, C, X, Y, Z) sampled trilinearly at voxel positions ``points`` (..., 3), clamped to
    the grid as the format's warp clamps (``grid_sample``'s border padding, corners aligned)."""
    size = torch.tensor([max(n - 1, 1) for n in grid.shape[-3:]], dtype=points.dtype, device=points.device)
    unit = (points / size * 2 - 1).flip(-1).reshape(1, 1, 1, -1, 3)
    out = F.grid_sample(grid, unit, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(grid.shape[1], *points.shape[:-1])


class _BlockWarp(torch.autograd.Function):
    """``warp_torch`` in C: values (K, C) forward, the block motion's gradient backward."""

    @staticmethod
    def forward(ctx: Any, grid: torch.Tensor, motion: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grid, motion.detach(), coords)
        return native_train.block_warp(grid, motion.detach(), coords)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        grid, motion, coords = ctx.saved_tensors
        return None, native_train.block_warp_backward(grid, motion, coords, grad), None


def motion_smoothness(motion: torch.Tensor) -> torch.Tensor:
    return sum(((motion.narrow(a, 1, motion.shape[a] - 1) - motion.narrow(a, 0, motion.shape[a] - 1)) ** 2).sum()
               for a in (1, 2, 3))  # fmt: skip


def smooth_displacement(control: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The pooled model's field at voxels ``coords`` (K, 3): (K, 3) displacements, trilinear between
    ``control`` (3, bx, by, bz), one vector at each block's centre (voxel 8·b + 3.5), held constant
    past the outermost centres. Linear in ``control``, so a turn (a linear field) is represented
    exactly, which block vectors cannot do inside a block."""
    return _sample(control[None], (coords - (BLOCK - 1) / 2) / BLOCK).reshape(3, -1).t()


def warp_smooth(grid: torch.Tensor, control: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``warp_torch`` for the pooled model: each voxel samples ``grid`` at ``p + smooth_displacement(p)``
    (clamped to the grid, as the format's warp); returns (C, ...)."""
    flat = coords.reshape(-1, 3)
    return _sample(grid, flat + smooth_displacement(control, flat)).reshape(grid.shape[1], *coords.shape[:-1])


def pool_motion(control: torch.Tensor, density: torch.Tensor, density_shift: float) -> torch.Tensor:
    """Block motion (3, bx, by, bz) from the pooled model's field: per 8³ block, the mean displacement
    over the voxels that the field's warp of frame t-1 (``density`` (1, 1, X, Y, Z)) leaves occupied —
    the surface the cameras saw move — or over the whole block where it leaves none (ReRF's pooling)."""
    shape = tuple(int(n) for n in density.shape[-3:])
    coords = _voxel_coords(shape, density.device).reshape(-1, 3)
    disp = smooth_displacement(control, coords)  # (N, 3)
    warped = _sample(density, coords + disp).reshape(1, 1, *shape)  # warp_smooth, the field computed once
    occ = occupancy_from_density(warped, density_shift).reshape(-1).to(disp.dtype)
    nb = control.shape[1:]
    flat = _block_index(coords, nb)
    n_blocks = int(nb[0] * nb[1] * nb[2])
    occ_sum = torch.zeros(n_blocks, 3, dtype=disp.dtype, device=disp.device).index_add_(0, flat, disp * occ[:, None])
    occ_count = torch.zeros(n_blocks, dtype=disp.dtype, device=disp.device).index_add_(0, flat, occ)
    all_sum = torch.zeros(n_blocks, 3, dtype=disp.dtype, device=disp.device).index_add_(0, flat, disp)
    all_count = torch.bincount(flat, minlength=n_blocks).to(disp.dtype)
    pooled = torch.where(occ_count[:, None] > 0, occ_sum / occ_count.clamp(min=1)[:, None], all_sum / all_count[:, None])
    return pooled.t().reshape(3, *nb).contiguous()


@dataclass
class ResidualResult:
    frame: TrainerFrame | GridFrame  # a GridFrame when the frame was refreshed
    full: GridFrame  # warp_previous(prev, motion) + residual, exactly as a reader computes it
    motion_seconds: float
    residual_seconds: float
    zero_fraction: float
    final_loss: float
    motion: np.ndarray
    refreshed: bool
    silhouette_error: float
    fit_mse: float  # training colour MSE of the frame as stored (fit_errors)


def _blur(grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (1, C, X, Y, Z) grid (edge-replicated), sigma in voxels.

    Each axis is a weighted sum of shifted views of the edge-padded grid: on CPU ``conv3d`` with a
    1-D kernel took its slow generic path (crane 128³, σ 3, 13 channels: 680 ms against 210)."""
    if sigma <= 0:
        return grid
    r = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-r, r + 1, dtype=grid.dtype, device=grid.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).tolist()
    # One channel at a time into the result: the same operations per value, but the padded copies and
    # partial sums are one channel's, not thirteen (they were the motion step's peak memory, 260 bytes
    # per voxel: 1.8 GB at 192³).
    result = torch.empty_like(grid)
    for c in range(grid.shape[1]):
        out = grid[:, c : c + 1]
        for axis in (2, 3, 4):
            n = out.shape[axis]
            padded = out.index_select(axis, torch.arange(-r, n + r, device=grid.device).clamp(0, n - 1))
            acc = padded.narrow(axis, 0, n) * k[0]
            for j in range(1, 2 * r + 1):
                acc.add_(padded.narrow(axis, j, n), alpha=k[j])
            del padded
            out = acc
        result[:, c : c + 1] = out
    return result


def _expand(coarse: torch.Tensor, factor: int, blocks: tuple[int, ...]) -> torch.Tensor:
    """Superblock motion (3, ⌈bx/f⌉, ...) → block motion (3, bx, by, bz), each block its superblock's vector."""
    m = coarse
    for axis in (1, 2, 3):
        m = m.repeat_interleave(factor, dim=axis)
    return m[:, : blocks[0], : blocks[1], : blocks[2]]


def _expand_smooth(coarse: torch.Tensor, factor: int, blocks: tuple[int, ...]) -> torch.Tensor:
    """The pooled model's superblock control vectors → one per block: trilinear between the superblocks'
    centres (block ``f·s + (f − 1)/2``), constant past the outermost. Why not ``_expand``: copied per
    superblock, a coarse level's field is a staircase and cannot hold a turn; interpolated, it is
    linear wherever the fine field is, so a coarse level (few unknowns, the blurred basin) can already
    fit a turn and the fine level refines it (the 15° turn, seed 0: 9 of 12 blocks within 0.5 voxel
    after 150 iterations against 5 with copies; every block for seeds 0–3 after 300, where copies
    needed 500; BENCHMARKS, "Session 16")."""
    centres = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=coarse.dtype, device=coarse.device) for n in blocks],
                                         indexing="ij"), -1)  # fmt: skip
    return _sample(coarse[None], (centres - (factor - 1) / 2) / factor)


COARSE_AFTER_START = 0.5
"""The motion step's coarse levels run after a start (the hull search's or the previous frame's motion)
only if the start leaves at least this share of zero motion's probe colour error: a motion that has
changed (crane frame 16, the fast stretch's onset: 0.56, where the 2³ level was kept and skipping it
made the rest of the stream 5 % larger). Below it no coarse level was kept on any frame of whole
crane and horse-gallop runs (their frames come out bit for bit as before), and skipping them takes
~2 of horse-gallop's 16 CPU-s a frame (BENCHMARKS, "Session 16")."""


MOTION_LEVELS = ((4, 3.0, 0.25), (2, 1.5, 0.25), (1, 0.0, 0.5))
"""Coarse-to-fine schedule of the motion step: (blocks per superblock edge, blur sigma in voxels,
share of ``iters_motion``). Measured on the demo scene (5–7 voxels/frame, 28°/frame turns):
fine blocks straight on the sharp grid found a fifth of the motion."""


def estimate_motion(
    prev: GridFrame,
    init: np.ndarray,
    rays: FrameRays,
    hull: torch.Tensor,
    field: FieldContext,
    config: TrainConfig,
    gen: torch.Generator,
    progress: Progress | None = None,
) -> np.ndarray:
    """Block motion (3, bx, by, bz) float32 that best explains frame t's images from frame t-1.

    Coarse to fine (``MOTION_LEVELS``): first one vector per 4³ blocks on a blurred copy of
    frame t-1 (blurring widens the basin of the photometric loss from a texture period to the
    blur radius, so motion of several voxels is found; few unknowns, so they are well
    constrained), then per 2³ blocks, then per block on the sharp grid, each level starting
    from the previous one. The loss is the colour error plus the silhouette error
    (rendered opacity vs the images' alpha: independent of texture, wide basin) plus a
    smoothness term. The start is the better (on a fixed probe of rays) of zero motion and
    ``init`` (the previous frame's motion, or the hull search's), and a level's result is kept
    only when it lowers the probe's colour error below the best so far — so the motion step
    never returns a motion that explains the images worse than standing still. After a start that
    is already close (``COARSE_AFTER_START``) only the last level runs.

    ``config.motion_model == "pooled"``: the levels fit ``warp_smooth``'s control vectors instead
    (no smoothness term), and the result is ``pool_motion`` of them, kept only if through the block
    warp it beats the start on the probe.
    """
    dev = rays.origins.device
    pd = torch.from_numpy(prev.density)[None, None].to(dev)
    pf = torch.from_numpy(prev.features)[None].to(dev)
    both = torch.cat([pd, pf], 1)
    # Only voxels rays can reach are warped: frame t's hull and the space frame t-1 occupies.
    # The rest stays empty, as no sample sees it.
    geometry = field.geometry
    occupancy = hull | occupancy_from_density(pd, field.density_shift)
    active = occupancy.reshape(-1).nonzero()[:, 0]
    coords = _voxel_coords(geometry.shape, dev).reshape(-1, 3)[active]
    # The fitted frame as the samples see it: warped values on the active voxels, the empty
    # value (frame t-1's floor density, zero features) on the ring around them.
    layout = SparseLayout.build(geometry.shape, active, occupancy)
    occupied_box = occupied_window(occupancy)
    ring_d = torch.full((layout.ring.numel(), 1), float(prev.density.min()), device=dev)
    ring_f = torch.zeros(layout.ring.numel(), pf.shape[1], device=dev)
    useful = rays_meeting(occupancy, geometry, rays).nonzero()[:, 0]
    blocks = tuple(int(n) for n in init.shape[1:])
    n_total = config.iters_motion

    pooled_model = config.motion_model == "pooled"
    warp = warp_smooth if pooled_model else warp_torch
    expand = _expand_smooth if pooled_model else _expand

    def loss_of(grid: torch.Tensor, motion: torch.Tensor, pick: torch.Tensor,
                warp: Callable[..., torch.Tensor] = warp) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        vals = warp(grid, motion, coords).t()
        d, f = SparseGrid(layout, vals[:, :1], ring_d), SparseGrid(layout, vals[:, 1:], ring_f)
        out = field.render(d, f, rays.origins[pick], rays.dirs[pick], occupancy, occupied_box)
        mse = F.mse_loss(out.rgb, rays.rgb[pick])
        loss = mse
        if rays.alpha is not None and config.motion_silhouette > 0:
            loss = loss + config.motion_silhouette * F.mse_loss(out.acc, rays.alpha[pick])
        return loss, mse

    start = torch.from_numpy(np.array(init, np.float32)).to(dev)
    if n_total == 0:
        return start.cpu().numpy()
    probe = useful[torch.linspace(0, useful.numel() - 1, min(8192, useful.numel()), device=dev).long()]

    def probe_loss(motion: torch.Tensor, warp: Callable[..., torch.Tensor] = warp) -> float:
        with torch.no_grad():
            return float(loss_of(both, motion, probe, warp)[1])  # colour only: the silhouette term is a guide

    zero_loss = probe_loss(torch.zeros_like(start))
    best_loss = zero_loss
    if start.abs().max() > 0:
        start_loss = probe_loss(start)
        if zero_loss < start_loss:
            start = torch.zeros_like(start)
        best_loss = min(zero_loss, start_loss)
    current = start
    done = 0
    # A start that leaves less than COARSE_AFTER_START of standing still's probe error is close to the
    # motion, and the coarse levels (which begin from its superblock means) are skipped; the generator
    # still draws their ray batches, so the frame comes out bit for bit as when they ran and were not kept.
    skip_coarse = bool(start.abs().max() > 0) and best_loss < COARSE_AFTER_START * zero_loss
    for level, (factor, sigma, share) in enumerate(MOTION_LEVELS):
        n_iters = max(1, round(share * n_total)) if level < len(MOTION_LEVELS) - 1 else n_total - done
        if n_iters <= 0:
            continue
        if skip_coarse and factor > 1:
            for _ in range(n_iters):
                torch.randint(useful.numel(), (config.batch_rays_residual,), generator=gen)
            done += n_iters
            continue
        grid = _blur(both, sigma)
        if factor > 1:
            nb = [-(-b // factor) for b in blocks]
            # the superblock's start: mean of its blocks' vectors
            coarse = F.adaptive_avg_pool3d(F.pad(current[None], [0, nb[2] * factor - blocks[2], 0, nb[1] * factor - blocks[1],
                                                                   0, nb[0] * factor - blocks[0]], mode="replicate"),
                                           nb)[0]  # fmt: skip
            param = coarse.clone().requires_grad_(True)
        else:
            param = current.clone().requires_grad_(True)
        lr0 = config.lr_motion * factor

        def per_block(p: torch.Tensor, factor: int = factor) -> torch.Tensor:
            return expand(p, factor, blocks) if factor > 1 else p

        opt = torch.optim.Adam([param], lr=lr0, betas=(0.9, 0.99))
        for i in range(n_iters):
            opt.param_groups[0]["lr"] = config.decayed_lr(lr0, i, n_iters)
            motion = per_block(param)
            pick = useful[torch.randint(useful.numel(), (config.batch_rays_residual,), generator=gen).to(dev)]
            loss, mse = loss_of(grid, motion, pick)
            if not pooled_model:  # the pooled model's field is smooth by construction
                loss = loss + config.tv_motion * motion_smoothness(param) / param[0].numel()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if progress is not None and done % 20 == 0:
                progress(done, n_total, {"stage": 0.0, "mse": float(mse.detach())})
        with torch.no_grad():
            moved = per_block(param).detach().clone()
        # Keep a level only if it explains the images' colours better (on the fixed probe, sharp
        # grid) than where it started. The silhouette term widens the basin for large motion, but on
        # a slow scene it pulls surfaces towards the masks' soft edges at the colours' expense, and
        # Adam takes lr-sized steps even on gradient noise (crane frame 1: 0.44 voxels of motion where
        # there is ~0.03; colour MSE 0.00079 against 0.00019 unmoved; 29.9 dB test against 33.8).
        moved_loss = probe_loss(moved)
        if moved_loss < best_loss:
            current, best_loss = moved, moved_loss
    if pooled_model and not torch.equal(current, start):
        # What is stored is the pooled block motion, applied by the block warp: kept only if that
        # explains the colours better than the start did.
        pooled = pool_motion(current, pd, field.density_shift)
        current = pooled if probe_loss(pooled, warp_torch) < probe_loss(start, warp_torch) else start
    return current.cpu().numpy().astype(np.float32)


COARSE_L1_FACTOR = 2.0
"""The L1 weight of the half-resolution stage, per lattice value, in units of the fine one. A lattice
value spreads over ~8 voxels (2³), so 8 would charge it as its voxels; 2 lets the coarse stage
move more, and the fine stage's own L1 then prunes what is not needed (horse-gallop frames 1-3:
34.93 / 34.88 / 34.94 dB with 2, 34.76 / 34.68 / 34.83 with 8, 96 % zeros either way)."""


def _coarse_lattice(shape: tuple[int, int, int], active: torch.Tensor, scale: float) -> tuple[SparseLayout, torch.Tensor]:
    """A lattice ``scale`` times as fine as ``shape`` over the active voxels: its sparse layout (a row per
    lattice point an active voxel's trilinear lookup reads) and the active voxels' positions in it (K, 3)."""
    x, y, z = (max(2, round((n - 1) * scale) + 1) for n in shape)
    coarse = (x, y, z)
    pos = torch.stack(torch.unravel_index(active, shape), 1).double()
    index = pos * torch.tensor([(m - 1) / (n - 1) for m, n in zip(coarse, shape, strict=True)], dtype=torch.float64,
                               device=active.device)  # fmt: skip
    lo = index.floor().long()
    lo = torch.minimum(lo, torch.tensor([m - 2 for m in coarse], device=active.device))
    touched = torch.zeros(coarse, dtype=torch.bool, device=active.device)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                touched[lo[:, 0] + dx, lo[:, 1] + dy, lo[:, 2] + dz] = True
    layout = SparseLayout.build(coarse, touched.reshape(-1).nonzero()[:, 0], touched)
    return layout, index.float()


def l1_per_voxel(l1: float, geometry: GridGeometry) -> float:
    """The L1 weight per residual voxel value for the setting ``l1``: ``l1 / n²``, n = voxels along the longest axis.

    Why ``n²``: the photometric loss is a mean over rays, and the share of a frame's rays
    that cross one voxel is its projected area over the scene's, ~``1/n²``; so is the
    colour loss's gradient on that voxel. Dividing the L1 weight by the same factor keeps
    the balance between fitting and sparsity — hence the zero fraction — the same at 24³
    and 128³, for any batch size (a mean over rays does not grow with the batch) and any
    scene scale (only voxel counts enter).
    """
    n = max(geometry.shape) - 1
    return l1 / (n * n)


def fit_residual(
    warped: GridFrame,
    rays: FrameRays,
    hull: torch.Tensor,
    field: FieldContext,
    config: TrainConfig,
    gen: torch.Generator,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Sparse residual grids (density, features) on top of the fixed ``warped`` frame.

    Only voxels that rays can reach (the hull of frame t and the warped frame's
    occupied space) are parameters: every other voxel would get a zero gradient
    anyway, so this changes no result and saves most of the optimiser's work.

    Coarse to fine, as the keyframe grows its grid: the first ``config.residual_coarse`` of
    the iterations (at most) fit the residual on a half-resolution lattice, interpolated
    to the voxels; the fine residual starts from that. Why: fitted at full resolution from
    the start, the residual fits the training views with detail the held-out views do not
    confirm — on horse-gallop frame 1 even an unconstrained full-grid re-fit from the
    warped frame (no L1, the keyframe's step, rays and iterations) scored 34.6 dB, as the
    sparse residual did, while the frame fitted from scratch with the same frozen MLP
    scored 35.5 dB with its grid grown from half resolution and 30.5 dB without
    (BENCHMARKS, "Session 8").

    Sparsity is exact, by an orthant-wise proximal rule around Adam (OWL-QN's idea): the
    L1 weight ``l1_per_voxel`` enters as ``λ·sign(r)``; a voxel at zero moves only when its
    colour gradient exceeds ``λ`` (the subgradient optimality condition), and a voxel that
    crosses zero stops exactly there with its Adam momentum cleared (otherwise momentum
    carries it straight back out). Each stage stops early on a loss plateau
    (``config.residual_plateau``).
    """
    dev = rays.origins.device
    wd = torch.from_numpy(warped.density).to(dev)
    wf = torch.from_numpy(warped.features).to(dev)
    c = wf.shape[0]
    geometry, density_shift = field.geometry, field.density_shift
    occupancy = hull | occupancy_from_density(wd, density_shift)
    active = occupancy.reshape(-1).nonzero()[:, 0]
    flat_d, flat_f = wd.reshape(-1), wf.reshape(c, -1)
    warped_d, warped_f = flat_d[active][:, None], flat_f[:, active].t().contiguous()
    rd = torch.zeros(active.numel(), 1, device=dev, requires_grad=True)
    rf = torch.zeros(active.numel(), c, device=dev, requires_grad=True)
    lam = l1_per_voxel(config.l1, geometry)

    def reach(occupancy: torch.Tensor) -> tuple[SparseLayout, torch.Tensor, torch.Tensor]:
        """The table layout for ``occupancy`` and its frozen ring rows (the warped frame's values)."""
        layout = SparseLayout.build(geometry.shape, active, occupancy)
        return layout, flat_d[layout.ring][:, None], flat_f[:, layout.ring].t().contiguous()

    layout, ring_d, ring_f = reach(occupancy)
    occupied_box = occupied_window(occupancy)
    useful = rays_meeting(occupancy, geometry, rays).nonzero()[:, 0]
    n_iters = config.iters_residual
    mse_value = float("nan")

    def run(first: int, last: int, values: Callable[[], tuple[torch.Tensor, torch.Tensor]], opt: ProximalAdam) -> int:
        """Iterations ``first..last-1`` of the fit (one step schedule over all stages); returns where it stopped."""
        nonlocal layout, ring_d, ring_f, occupancy, occupied_box, mse_value
        ema = None
        history: list[float] = []
        for i in range(first, last):
            pick = useful[torch.randint(useful.numel(), (config.batch_rays_residual,), generator=gen).to(dev)]
            vd, vf = values()
            d, f = SparseGrid(layout, warped_d + vd, ring_d), SparseGrid(layout, warped_f + vf, ring_f)
            out = field.render(d, f, rays.origins[pick], rays.dirs[pick], occupancy, occupied_box)
            mse = F.mse_loss(out.rgb, rays.rgb[pick])
            loss = mse + view_residual_penalty(out, config)
            opt.zero_grad()
            loss.backward()
            opt.step(config.decayed_lr(config.lr_residual, i, n_iters))
            mse_value = float(mse.detach())
            ema = mse_value if ema is None else 0.9 * ema + 0.1 * mse_value
            history.append(ema)
            if (i + 1) % 50 == 0:
                with torch.no_grad():
                    density = torch.index_add(flat_d, 0, active, values()[0][:, 0]).view_as(wd)
                    occupancy = hull | occupancy_from_density(density, density_shift)
                    layout, ring_d, ring_f = reach(occupancy)
                    occupied_box = occupied_window(occupancy)
                if progress is not None:
                    progress(i + 1, n_iters, {"stage": 1.0, "mse": mse_value})
            window = 25
            plateau = config.residual_plateau > 0 and len(history) >= 2 * window and len(history) % 5 == 0
            if plateau and history[-1] > (1 - config.residual_plateau) * history[-1 - window]:
                return i + 1  # less than residual_plateau gained over the last `window` iterations
        return last

    done = 0
    n_coarse = round(config.residual_coarse * n_iters)
    if n_coarse > 0:
        clayout, cindex = _coarse_lattice(geometry.shape, active, 0.5)
        ctable = torch.zeros(clayout.trainable.numel(), 1 + c, device=dev, requires_grad=True)
        cring = torch.zeros(clayout.ring.numel(), 1 + c, device=dev)

        cgrid = SparseGrid(clayout, ctable, cring)  # the optimiser updates ctable in place
        plan = cgrid.planned(cindex)  # the same points every iteration

        def coarse() -> tuple[torch.Tensor, torch.Tensor]:
            v = cgrid.sample_planned(plan)
            return v[:, :1], v[:, 1:]

        copt = ProximalAdam([ctable], config.lr_residual, (0.9, 0.99), 1e-15, lam * COARSE_L1_FACTOR)
        done = run(0, n_coarse, coarse, copt)
        with torch.no_grad():
            vd, vf = coarse()
            rd.copy_(vd)
            rf.copy_(vf)
    run(done, n_iters, lambda: (rd, rf), ProximalAdam([rd, rf], config.lr_residual, (0.9, 0.99), 1e-15, lam))
    with torch.no_grad():
        res_d = torch.zeros_like(flat_d).index_copy_(0, active, rd[:, 0]).view_as(wd)
        res_f = torch.zeros_like(flat_f).index_copy_(1, active, rf.t()).view_as(wf)
    return res_d.cpu().numpy(), res_f.cpu().numpy(), mse_value


@torch.no_grad()
def fit_errors(frame: GridFrame, rays: FrameRays, field: FieldContext, count: int = 16384) -> tuple[float, float]:
    """(colour MSE, mean |rendered opacity − image alpha|) over a fixed, evenly spaced subset of training rays.

    The refresh tests' yardsticks. The silhouette is compared with the keyframe's: it
    cannot be over-fitted and is exactly what breaks when block motion cannot follow the
    scene (large motion, merging or splitting parts). The colour error is compared with
    the first residual frame's, not the keyframe's: the keyframe fits its training views
    far better than it generalises (crane: ~50 dB on training rays, 34 dB on held-out
    cameras), which 140 iterations of a residual frame never match, however good.
    """
    dev = rays.origins.device
    d = torch.from_numpy(frame.density)[None, None].to(dev)
    f = torch.from_numpy(frame.features)[None].to(dev)
    occ = occupancy_from_density(d, field.density_shift)
    idx = torch.linspace(0, rays.origins.shape[0] - 1, min(count, rays.origins.shape[0]), device=dev).long()
    out = field.render(d, f, rays.origins[idx], rays.dirs[idx], occ)
    mse = float(F.mse_loss(out.rgb, rays.rgb[idx]))
    silhouette = 0.0 if rays.alpha is None else float((out.acc - rays.alpha[idx]).abs().mean())
    return mse, silhouette


def train_residual_frame(
    prev: GridFrame,
    prev_motion: np.ndarray,
    rays: FrameRays,
    hull: np.ndarray,
    field: FieldContext,
    config: TrainConfig,
    seed: int,
    progress: Progress | None = None,
    reference_silhouette: float | None = None,
    reference_fit: float | None = None,
    prev_hull: np.ndarray | None = None,
) -> ResidualResult:
    """Motion, then residual, for one frame; returns the trainer-form frame and its reconstruction.

    With ``reference_silhouette`` (the keyframe's, from ``fit_errors``): when the frame's
    silhouette error exceeds ``config.refresh_factor`` times that (plus a 0.2 % floor) —
    motion too large or too complex for 8³ block
    translation, new surfaces, topology changes — the frame is *refreshed*: its whole grid
    is optimised (no L1, the keyframe's learning rate; the MLP stays frozen) starting from
    the prediction, and it is stored as a full frame. Drift stops there instead of
    compounding over the rest of the sequence. ``reference_fit`` (the colour MSE from ``fit_errors`` of
    the sequence's first residual frame) catches slow drift: a
    frame whose colour fit is more than ``config.refresh_db`` worse is refreshed too.

    The refresh is the last resort, in three steps: a drifting frame first gets a second
    residual on top of the first (``config.iters_refresh`` iterations at ``config.rescue_lr``) and
    stays a residual frame if that passes both tests; only then is the whole grid re-fitted, and
    the refresh is *kept* only when it passes both tests or fits the training rays
    ``config.refresh_gain_db`` better than the best residual —
    a refreshed frame starts a GOF and costs a keyframe's bytes, so one that repairs nothing
    is not worth storing.

    With ``prev_hull`` (frame t-1's visual hull) and ``config.motion_search_range`` > 0, the
    motion starts from ``hull_motion_search`` (seeded with ``prev_motion``) instead of
    ``prev_motion`` alone.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    hull_t = torch.from_numpy(hull).to(rays.origins.device)
    t0 = time.perf_counter()
    init = prev_motion
    if prev_hull is not None and config.motion_search_range > 0:
        init = hull_motion_search(prev_hull, hull, [prev_motion], search_range=config.motion_search_range)
    motion = estimate_motion(prev, init, rays, hull_t, field, config, gen, progress)
    t1 = time.perf_counter()
    warped = warp_previous(prev, motion, BLOCK)
    r_d, r_f, mse = fit_residual(warped, rays, hull_t, field, config, gen, progress)
    r_d = np.ascontiguousarray(r_d, np.float32)
    r_f = np.ascontiguousarray(r_f, np.float32)
    full = GridFrame(density=warped.density + r_d, features=warped.features + r_f)
    zeros = int(np.count_nonzero(r_d == 0)) + int(np.count_nonzero(r_f == 0))
    stored: GridFrame | TrainerFrame = TrainerFrame(motion=motion, residual_density=r_d, residual_features=r_f)
    refreshed = False
    fit, silhouette = fit_errors(full, rays, field)

    def drifting(fit: float, silhouette: float) -> bool:
        out = reference_silhouette is not None and silhouette > config.refresh_factor * reference_silhouette + 0.002
        return out or (reference_fit is not None and fit > reference_fit * 10 ** (config.refresh_db / 10))

    drifted = drifting(fit, silhouette)
    if drifted and config.iters_refresh > 0:
        # Last resort comes last: first a second residual (the refresh's iteration count, a restarted
        # schedule) on top of this one. It stays a residual frame if that is enough.
        strong = replace(config, lr_residual=config.rescue_lr, iters_residual=config.iters_refresh)
        s_d, s_f, s_mse = fit_residual(full, rays, hull_t, field, strong, gen, progress)
        cand = GridFrame(density=full.density + s_d, features=full.features + s_f)
        c_fit, c_sil = fit_errors(cand, rays, field)
        still_drifting = drifting(c_fit, c_sil)
        if not still_drifting or c_fit < fit:  # keep the better residual (for the refresh's comparison too)
            r_d, r_f = np.ascontiguousarray(r_d + s_d, np.float32), np.ascontiguousarray(r_f + s_f, np.float32)
            full = GridFrame(density=warped.density + r_d, features=warped.features + r_f)
            zeros = int(np.count_nonzero(r_d == 0)) + int(np.count_nonzero(r_f == 0))
            stored = TrainerFrame(motion=motion, residual_density=r_d, residual_features=r_f)
            fit, silhouette, mse, drifted = c_fit, c_sil, s_mse, still_drifting
    if drifted and config.iters_refresh > 0:
        fresh = replace(config, l1=0.0, lr_residual=config.lr_grid, iters_residual=config.iters_refresh)
        f_d, f_f, f_mse = fit_residual(full, rays, hull_t, field, fresh, gen, progress)
        cand = GridFrame(density=full.density + f_d, features=full.features + f_f)
        c_fit, c_sil = fit_errors(cand, rays, field)
        # A refresh costs a keyframe's bytes: keep it only when it repairs the drift or clearly beats the residual.
        if not drifting(c_fit, c_sil) or c_fit * 10 ** (config.refresh_gain_db / 10) <= fit:
            full, mse, fit, silhouette = cand, f_mse, c_fit, c_sil
            stored, refreshed, zeros = full, True, 0
    t2 = time.perf_counter()
    return ResidualResult(
        frame=stored,
        full=full,
        motion_seconds=t1 - t0,
        residual_seconds=t2 - t1,
        zero_fraction=zeros / (r_d.size + r_f.size),
        final_loss=mse if math.isfinite(mse) else float("nan"),
        motion=motion,
        refreshed=refreshed,
        silhouette_error=silhouette,
        fit_mse=fit,
    )


def hull_motion_search(hull_prev: np.ndarray, hull_cur: np.ndarray, candidates: list[np.ndarray],
                       sigma: float = 1.5, search_range: float = 12.0, coarse_step: int = 2) -> np.ndarray:  # fmt: skip
    """Block motion (3, bx, by, bz) from the codec's grid-domain block search between two visual hulls.

    A quick coarse "fit" of each frame: its visual hull (what the cameras' silhouettes
    allow), blurred by ``sigma`` voxels so the search error falls smoothly with distance.
    Both frames' hulls are built the same way, so their biases (concavities filled in) move
    with the object. The codec's search (``codec.motion_search``: candidates, Lucas–Kanade,
    neighbour propagation) is seeded with ``candidates`` (block motion in voxels, e.g. the
    previous frame's) plus a brute-force lattice of integer vectors every ``coarse_step``
    voxels within ``search_range`` (its Lucas–Kanade steps alone reach only ~4.5 voxels).
    """
    from rerf_codec.codec.motion import MV_UNIT
    from rerf_codec.codec.motion_search import SearchConfig, search_motion

    prev_t = _blur(torch.from_numpy(hull_prev.astype(np.float32))[None, None], sigma)[0, 0].numpy()
    cur_t = _blur(torch.from_numpy(hull_cur.astype(np.float32))[None, None], sigma)[0, 0].numpy()
    shape = cur_t.shape
    nb = [-(-n // BLOCK) for n in shape]
    padded = np.zeros([n * BLOCK for n in nb], np.float32)
    padded[: shape[0], : shape[1], : shape[2]] = cur_t
    blocks5 = padded.reshape(nb[0], BLOCK, nb[1], BLOCK, nb[2], BLOCK).transpose(0, 2, 4, 1, 3, 5).reshape(-1, BLOCK**3)
    bx, by, bz = np.meshgrid(*[np.arange(n) for n in nb], indexing="ij")
    rows = np.flatnonzero(blocks5.max(1) > 0.05)  # blocks the current hull reaches
    out = np.zeros((3, *nb), np.float32)
    if rows.size == 0:
        return out
    blocks = (bx.ravel()[rows], by.ravel()[rows], bz.ravel()[rows])
    cur = blocks5[rows][None].astype(np.float64)
    r = np.arange(-int(search_range), int(search_range) + 1, coarse_step)
    lattice = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3) * MV_UNIT
    cands = [np.round(c.reshape(3, -1).T[rows] * MV_UNIT).astype(np.int64) for c in candidates]
    cfg = SearchConfig(search_range=search_range, early_exit=0.0)
    mv = search_motion(cur, [np.ascontiguousarray(prev_t, np.float64)], shape, blocks, np.ones(1), cands, cfg, np.ones(1),
                       shared=lattice.astype(np.int64))  # fmt: skip
    flat = out.reshape(3, -1)
    flat[:, rows] = (mv / MV_UNIT).T
    return out
