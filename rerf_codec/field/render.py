"""Volume rendering of a density grid + feature grid + colour MLP (DVGO conventions).

One code path for the trainer (with gradients), the player and the benches, so a
grid is always judged by the renderer that will show it (DESIGN.md decision 6):

* samples every ``step_ratio`` voxels along each ray inside the grid box;
* skips samples whose nearest voxel is empty in an occupancy grid (the free-space
  cache), so empty space costs only an index lookup;
* ``alpha = 1 - exp(-softplus(density + shift) * step_ratio)`` — density is an optical
  depth per voxel length, DVGO's ``interval = stepsize * voxel_size_ratio``;
* transmittance by a per-ray exclusive cumulative sum of optical depth on the ragged
  sample list (float64, so a batch's running sum never loses the small terms);
* colour only for samples whose weight exceeds ``weight_threshold`` (DVGO's
  ``fast_color_thres``): the MLP is the expensive part, most samples hardly count;
* ``rgb = Σ w·c + T_final·background``.

Two shading modes (``RenderSettings.shading``, recorded in ``sequence.json["render"]``):

``"per_sample"`` (ReRF / DVGO): every sample i with weight ``w_i > weight_threshold``
gets its own colour ``c_i = MLP(f_i, PE(d))`` and ``rgb = Σ_i w_i c_i + T·bg``.

``"deferred"`` (SNeRG-style deferred shading, Hedman et al. 2021): feature channels 0..2
are a diffuse colour (through a sigmoid per sample, composited like per-sample colour);
the features are composited along the ray and the MLP runs **once per ray** to add a
view-dependent residual::

    S      = { i : w_i > weight_threshold }            (the same samples per_sample shades)
    W      = Σ_{i∈S} w_i
    D      = Σ_{i∈S} w_i · sigmoid(f_i[0:3])           (composited diffuse colour)
    F      = Σ_{i∈S} w_i · f_i                         (composited features, C ≥ 3 channels)
    T      = exp(-Σ_i τ_i)                             (all samples, as in per_sample)
    rgb    = D + W · (2·MLP(F / W, PE(d)) − 1) + T · bg   if W > weight_threshold (W > 0 when it is 0)
    rgb    = D + T · bg                                    otherwise (the MLP is not run)

with the same ``τ_i``, ``w_i = exp(-Σ_{j<i} τ_j)·(1 - exp(-τ_i))``, sample positions,
trilinear lookups and view encoding ``PE(d) = [d, sin(2^k d), cos(2^k d)]`` (k < viewbase_pe,
``d`` the unit ray direction) as per-sample shading, and ``MLP`` the same network (its
output already through the sigmoid, so the residual lies in (−W, W); a freshly initialised
MLP adds ≈ 0). Why the diffuse term: compositing colour is linear, compositing features
is not — an MLP on the weighted mean feature alone (this mode before session 4) lost
3.4 dB to per-sample shading on the demo keyframe; diffuse + residual, with the trainer's
penalty on the residual (``TrainConfig.view_residual``), beats per-sample shading by 0.4–0.6 dB
on the demo and crane keyframes (BENCHMARKS, "Deferred shading, session 4"). Why deferred at all: the MLP is what costs in a renderer (a 64–128-wide
3-layer MLP per shaded sample, ~35–50 samples per foreground ray on soft trained density);
deferred shading replaces it by one sigmoid and one weighted sum per sample and one MLP per
ray. It is the formula the WebGL2 player evaluates in its fragment shader.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.field import native_render, native_train
from rerf_codec.field.camera import Camera
from rerf_codec.field.geometry import GridGeometry, ray_aabb, ray_box
from rerf_codec.field.mlp import ColorMLP, MLPConfig, encode_directions
from rerf_codec.field.sparse_grid import SparseGrid
from rerf_codec.grids import SequenceMeta

STEP_RATIO = 0.5  # samples per voxel length: 2 (DVGO's stepsize)
ALPHA_THRESHOLD = 1e-4  # a voxel whose one-step alpha is below this is free space (DVGO mask_cache_thres)
WEIGHT_THRESHOLD = 1e-4  # samples lighter than this get no colour (DVGO fast_color_thres)
RAY_CHUNK = 8192
# The compiled deferred path keeps 4 + C floats per ray, no sample list, so it marches this many
# times more rays per call: fewer kernel calls and MLP batches (crane 256²: about 1 ms of 50).
DEFERRED_CHUNK_SCALE = 8
SHADING_MODES = ("per_sample", "deferred")


@dataclass
class RenderOutput:
    """Per-ray results of ``render_rays``."""

    rgb: torch.Tensor  # (R, 3)
    acc: torch.Tensor  # (R,) accumulated opacity 1 - T_final
    samples: int  # samples that passed the occupancy test (cost indicator)
    shaded: int  # MLP evaluations: shaded samples (per_sample) or shaded rays (deferred)
    distortion: torch.Tensor | None = None  # mean mip-NeRF 360 distortion loss, when asked for
    view_residual: torch.Tensor | None = None  # deferred: mean over rays of |W·(2·MLP − 1)|² (RGB summed)


def _exclusive_cumsum(x: torch.Tensor, ray_id: torch.Tensor, first: torch.Tensor, rays: int) -> torch.Tensor:
    """Per-ray exclusive running sum of ``x`` over samples sorted by ray (float64, differentiable)."""
    x64 = x.double()
    excl = torch.cumsum(x64, 0) - x64
    offset = torch.zeros(rays, dtype=torch.float64, device=x.device).index_copy(0, ray_id[first], excl[first])
    return excl - offset[ray_id]


def march_rays(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    geometry: GridGeometry,
    step: float,
    window: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples every ``step`` (world units) at interval midpoints inside the grid box.

    Returns ``(ray_id, t, points, t_near, t_far)``; samples are sorted by ray, then by
    distance (the compositing relies on it). ``window`` (lowest, highest voxel index per axis)
    leaves out samples whose nearest voxel lies outside that box — on the same lattice
    ``t_near + (k + ½)·step`` of the whole grid box, so the samples kept are exactly those a
    full march would keep there (the occupancy test drops the rest anyway; this skips them
    before they cost anything). ``t_near``/``t_far`` are always the grid box's.
    """
    t_near, t_far = ray_box(origins, dirs, geometry)
    n = torch.ceil((t_far - t_near) / step).clamp_min(0).long()
    k0 = torch.zeros_like(n)
    if window is not None:
        lo, hi = geometry.window_box(window)
        w_near, w_far = ray_aabb(origins, dirs, tuple(lo), tuple(hi))
        k0 = torch.floor((w_near - t_near) / step - 0.5).clamp(min=0).long()
        k1 = torch.ceil((w_far - t_near) / step - 0.5).long() + 1
        k0 = torch.minimum(k0, n)
        n = (torch.minimum(k1, n) - k0).clamp_min(0)
    ray_id = torch.repeat_interleave(torch.arange(origins.shape[0], device=origins.device), n)
    k = torch.arange(ray_id.shape[0], device=origins.device) - (torch.cumsum(n, 0) - n)[ray_id] + k0[ray_id]
    t = t_near[ray_id] + (k.to(origins.dtype) + 0.5) * step
    return ray_id, t, origins[ray_id] + dirs[ray_id] * t[:, None], t_near, t_far


def occupied_window(occupancy: torch.Tensor) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """The smallest voxel box holding every set voxel of ``occupancy`` (None when none is set)."""
    lo, hi = [], []
    xy = occupancy.any(dim=2)  # two passes over the grid instead of three
    for profile in (xy.any(dim=1), xy.any(dim=0), occupancy.any(dim=1).any(dim=0)):
        idx = profile.nonzero()[:, 0]
        if idx.numel() == 0:
            return None
        lo.append(int(idx[0]))
        hi.append(int(idx[-1]))
    return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])


def occupied(occupancy: torch.Tensor, geometry: GridGeometry, points: torch.Tensor) -> torch.Tensor:
    """Bool per point: is its nearest voxel set in ``occupancy`` (X, Y, Z)?"""
    idx = geometry.to_index(points).round().long()
    _, ny, nz = geometry.shape
    for axis in range(3):
        idx[:, axis].clamp_(0, geometry.shape[axis] - 1)
    flat = (idx[:, 0] * ny + idx[:, 1]) * nz + idx[:, 2]  # one gather instead of three-index advanced indexing
    return occupancy.reshape(-1)[flat]


def sample_grid(grid: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """Trilinear lookup of a (1, C, X, Y, Z) grid at unit coordinates (K, 3) → (K, C)."""
    k = unit.shape[0]
    out = F.grid_sample(grid, unit.view(1, 1, 1, k, 3), mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(grid.shape[1], k).t()


def lookup(grid: torch.Tensor | SparseGrid, geometry: GridGeometry, points: torch.Tensor) -> torch.Tensor:
    """Trilinear values (K, C) of a dense (1, C, X, Y, Z) grid or a ``SparseGrid`` at world ``points`` (K, 3)."""
    if isinstance(grid, SparseGrid):
        return grid.sample(geometry.to_index(points))
    return sample_grid(grid, geometry.to_unit(points))


def grid_channels(grid: torch.Tensor | SparseGrid) -> int:
    return grid.channels if isinstance(grid, SparseGrid) else int(grid.shape[1])


def occupancy_from_density(
    density: torch.Tensor, density_shift: float, step_ratio: float = STEP_RATIO, threshold: float = ALPHA_THRESHOLD
) -> torch.Tensor:
    """Free-space cache: voxels whose one-step alpha exceeds ``threshold``, dilated by one voxel.

    The dilation matters: a sample's trilinear lookup reaches the 8 voxels around it, so
    a sample whose *nearest* voxel is empty can still see density from a neighbour.
    """
    d = density.detach().reshape(1, 1, *density.shape[-3:])
    alpha = 1 - torch.exp(-F.softplus(d + density_shift) * step_ratio)
    return dilate_by_one((alpha > threshold)[0, 0])


def dilate_by_one(occ: torch.Tensor) -> torch.Tensor:
    """Every voxel of ``occ`` (X, Y, Z) bool within one voxel (the 3×3×3 box) of a set one.

    The same set as ``max_pool3d(kernel_size=3, stride=1, padding=1)`` on 0/1 (what this was), as
    three one-axis ORs with the neighbours: crane 128³, 17 ms → 0.3 ms on one CPU thread, paid per
    frame by the player and on every occupancy refresh of a keyframe fit.
    """
    for axis in range(3):
        n = occ.shape[axis]
        out = occ.clone()
        out.narrow(axis, 1, n - 1).logical_or_(occ.narrow(axis, 0, n - 1))
        out.narrow(axis, 0, n - 1).logical_or_(occ.narrow(axis, 1, n - 1))
        occ = out
    return occ


def check_deferred_channels(channels: int) -> None:
    if channels < 3:
        raise RerfUsageError(f"deferred shading needs >= 3 feature channels (a diffuse colour), got {channels}")


def shade_per_sample(
    mlp: ColorMLP, feats: torch.Tensor, weights: torch.Tensor, ray_id: torch.Tensor, dirs: torch.Tensor
) -> torch.Tensor:
    """Per-sample shading's ``Σ wᵢ·MLP(fᵢ, PE(d))`` per ray (R, 3) from the shaded samples (K, ...) of rays ``dirs`` (R, 3)."""
    colour = mlp(feats, encode_directions(dirs, mlp.config.viewbase_pe)[ray_id])
    return torch.zeros(dirs.shape[0], 3, dtype=dirs.dtype, device=dirs.device).index_add(0, ray_id, weights[:, None] * colour)


def shade_deferred(
    mlp: ColorMLP, w_ray: torch.Tensor, diffuse: torch.Tensor, f_ray: torch.Tensor, dirs: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deferred shading's ``D + W·(2·MLP(F/W, PE(d)) − 1)`` per ray from the composited W, D, F; also the
    residual term of the rays that have one (W > threshold). Both renderers finish with it."""
    lit = (w_ray.detach() > max(threshold, 0.0)).nonzero()[:, 0]  # W = 0: nothing to shade (and F/W undefined)
    # the MLP sees the weighted *mean* feature (measured: 0.4 dB better than the raw sum on the demo keyframe)
    view = mlp(f_ray[lit] / w_ray[lit, None], encode_directions(dirs[lit], mlp.config.viewbase_pe))
    residual = w_ray[lit, None] * (2 * view - 1)
    return diffuse.index_add(0, lit, residual), residual


def render_rays(
    density: torch.Tensor | SparseGrid,
    features: torch.Tensor | SparseGrid,
    mlp: ColorMLP,
    geometry: GridGeometry,
    density_shift: float,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor,
    *,
    occupancy: torch.Tensor | None = None,
    step_ratio: float = STEP_RATIO,
    weight_threshold: float = WEIGHT_THRESHOLD,
    density_unit: float | None = None,
    distortion: bool = False,
    shading: str = "per_sample",
    occupancy_window: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
) -> RenderOutput:
    """Render rays (R, 3) through grids ``density`` (1,1,X,Y,Z) and ``features`` (1,C,X,Y,Z).

    Differentiable in the grids and the MLP. Either grid may be a ``SparseGrid`` (the residual and
    motion fits: only the voxels the samples can reach; then ``occupancy`` must be the one its
    layout was built for). On CPU the sample list comes from the compiled marcher when it is
    built (``native_train.march_samples``: the same samples) unless ``distortion`` needs distances. ``occupancy`` (X, Y, Z) bool, if given,
    drops samples whose nearest voxel is free (and the march skips those outside its
    ``occupied_window``, passed as ``occupancy_window`` by a caller that has it); ``None`` keeps every sample (gradient
    checks, the first keyframe iterations). ``density_unit`` is the world length over
    which density is an optical depth (default: this grid's voxel size); a coarse grid
    during progressive growth passes the final grid's, so density keeps its meaning.
    ``distortion`` also returns mip-NeRF 360's distortion loss (Barron et al. 2022), in
    each ray's normalised in-box distance: it pulls a ray's weight into one compact
    interval, i.e. sharp surfaces instead of fog (fewer samples to shade, fewer blocks to code).
    """
    dev, dt = origins.device, origins.dtype
    r = origins.shape[0]
    step = step_ratio * geometry.voxel_size
    window = None
    if occupancy is not None:  # a caller that renders one occupancy many times passes its window
        window = occupancy_window if occupancy_window is not None else occupied_window(occupancy)
    keep = None
    if occupancy is not None and not distortion and native_train.usable(origins, dirs):
        ray_id, pts = native_train.march_samples(origins, dirs, occupancy, geometry, window, step)
    else:
        ray_id, t, pts, t_near, t_far = march_rays(origins, dirs, geometry, step, window)
        if occupancy is not None and pts.shape[0]:
            keep = occupied(occupancy, geometry, pts)
            ray_id, pts = ray_id[keep], pts[keep]

    depth_per_step = step_ratio if density_unit is None else step / density_unit
    tau = F.softplus(lookup(density, geometry, pts)[:, 0] + density_shift) * depth_per_step
    # Each ray's running sum restarts at its first sample (samples are sorted by ray).
    first = torch.ones_like(ray_id, dtype=torch.bool)
    first[1:] = ray_id[1:] != ray_id[:-1]
    trans = torch.exp(-_exclusive_cumsum(tau, ray_id, first, r)).to(dt)
    weights = trans * (1 - torch.exp(-tau))
    total = torch.zeros(r, dtype=torch.float64, device=dev).index_add(0, ray_id, tau.double())
    t_final = torch.exp(-total).to(dt)
    dist = None
    if distortion:
        span = (t_far - t_near).clamp_min(step)[ray_id]
        s_mid = t if keep is None else t[keep]
        s_mid = (s_mid - t_near[ray_id]) / span
        w_before = _exclusive_cumsum(weights, ray_id, first, r)
        ws_before = _exclusive_cumsum(weights * s_mid, ray_id, first, r)
        inter = 2 * weights.double() * (s_mid.double() * w_before - ws_before)
        intra = weights.double() ** 2 * (step / span).double() / 3
        dist = ((inter + intra).sum() / max(r, 1)).to(dt)

    view_residual = None
    shade = weights.detach() > weight_threshold if weight_threshold > 0 else torch.ones_like(weights, dtype=torch.bool)
    sid = ray_id[shade]
    feats = lookup(features, geometry, pts[shade])
    if shading == "per_sample":
        rgb = shade_per_sample(mlp, feats, weights[shade], sid, dirs)
        shaded = int(sid.shape[0])
    elif shading == "deferred":
        check_deferred_channels(grid_channels(features))
        w_s = weights[shade]
        w_ray = torch.zeros(r, dtype=dt, device=dev).index_add(0, sid, w_s)
        f_ray = torch.zeros(r, feats.shape[1], dtype=dt, device=dev).index_add(0, sid, w_s[:, None] * feats)
        diffuse = torch.zeros(r, 3, dtype=dt, device=dev).index_add(0, sid, w_s[:, None] * torch.sigmoid(feats[:, :3]))
        rgb, residual = shade_deferred(mlp, w_ray, diffuse, f_ray, dirs, weight_threshold)
        view_residual = (residual**2).sum() / max(r, 1)
        shaded = int(residual.shape[0])
    else:
        raise RerfUsageError(f"must be one of {', '.join(SHADING_MODES)}, got {shading!r}", param="shading")
    rgb = rgb + t_final[:, None] * background.to(dt)
    return RenderOutput(rgb=rgb, acc=1 - t_final, samples=int(ray_id.shape[0]), shaded=shaded, distortion=dist,
                        view_residual=view_residual)  # fmt: skip


def resolve_device(device: str) -> torch.device:
    """``cpu`` or ``cuda[:N]``; a one-line usage error when CUDA is asked for but absent."""
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise RerfUsageError(f"must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}", param="device")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RerfUsageError(f"{device}: CUDA is not available on this machine (torch {torch.__version__})", param="device")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise RerfUsageError(f"{device}: {exc}", param="device") from None


@dataclass(frozen=True)
class RenderSettings:
    """The render parameters a sequence carries in ``sequence.json["render"]``."""

    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    step_ratio: float = STEP_RATIO
    shading: str = "per_sample"
    """``"per_sample"`` (ReRF) or ``"deferred"`` (see the module docstring); absent in older
    sequences, which were all trained per sample."""

    def __post_init__(self) -> None:
        if self.shading not in SHADING_MODES:
            raise RerfUsageError(f"shading must be one of {', '.join(SHADING_MODES)}, got {self.shading!r}")

    def to_json(self) -> dict[str, Any]:
        return {"background": list(self.background), "step_ratio": self.step_ratio, "shading": self.shading}

    @staticmethod
    def from_json(d: Any, source: str = "sequence.json") -> RenderSettings:
        if d is None:
            return RenderSettings()
        try:
            bg = tuple(float(v) for v in d["background"])
            step = float(d["step_ratio"])
        except (TypeError, KeyError, ValueError):
            raise RerfFormatError(f"{source}: field 'render' must hold 'background' [3 floats] and 'step_ratio'") from None
        if len(bg) != 3 or not all(0 <= v <= 1 for v in bg) or not 0.05 <= step <= 4:
            raise RerfFormatError(f"{source}: field 'render' has out-of-range values {d!r}")
        shading = d.get("shading", "per_sample")
        if shading not in SHADING_MODES:
            raise RerfFormatError(f"{source}: field 'render.shading' must be one of {list(SHADING_MODES)}, got {shading!r}")
        return RenderSettings(bg, step, shading)  # type: ignore[arg-type]


class RadianceField:
    """One frame's grids + the sequence's MLP, ready to render on one device (no gradients).

    The player keeps one instance per stream and swaps grids frame by frame with
    ``set_grids``, so the MLP is built once.
    """

    def __init__(
        self,
        mlp: ColorMLP,
        geometry: GridGeometry,
        density_shift: float,
        settings: RenderSettings,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.mlp = mlp.to(self.device).eval()
        for p in self.mlp.parameters():
            p.requires_grad_(False)
        self.geometry = geometry
        self.density_shift = float(density_shift)
        self.settings = settings
        self.background = torch.tensor(settings.background, dtype=torch.float32, device=self.device)
        self.density: torch.Tensor | None = None
        self.features: torch.Tensor | None = None
        self.occupancy: torch.Tensor | None = None
        self.window: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None
        self._native: native_render.NativeGrids | None = None

    @staticmethod
    def for_sequence(meta: SequenceMeta, decoder: dict[str, np.ndarray] | None, device: str | torch.device = "cpu") -> RadianceField:
        """Build from a ``SequenceMeta`` (its ``mlp``/``render`` extras) and the decoder arrays."""
        if decoder is None:
            raise RerfUsageError("the sequence has no decoder (MLP weights); it holds grids only and cannot be rendered")
        if "mlp" not in meta.extra:
            raise RerfFormatError("sequence metadata has decoder arrays but no 'mlp' config")
        config = MLPConfig.from_json(meta.extra["mlp"])
        if config.feature_channels != meta.feature_channels:
            raise RerfFormatError(
                f"MLP expects {config.feature_channels} feature channels, the grids have {meta.feature_channels}"
            )
        mlp = ColorMLP.from_arrays(config, decoder)
        geometry = GridGeometry(meta.xyz_min, meta.xyz_max, meta.grid_shape)
        settings = RenderSettings.from_json(meta.extra.get("render"))
        return RadianceField(mlp, geometry, meta.density_shift, settings, device)

    @staticmethod
    def from_arrays(
        density: np.ndarray,
        features: np.ndarray,
        meta: SequenceMeta,
        decoder: dict[str, np.ndarray] | None,
        device: str | torch.device = "cpu",
    ) -> RadianceField:
        field = RadianceField.for_sequence(meta, decoder, device)
        field.set_grids(density, features)
        return field

    def set_grids(self, density: np.ndarray | torch.Tensor, features: np.ndarray | torch.Tensor) -> None:
        """Load one frame's grids (copied to the device) and rebuild its free-space cache."""
        # Copied: the decoder hands out read-only buffers that it reuses for the next frame.
        d = torch.tensor(density, dtype=torch.float32) if isinstance(density, np.ndarray) else density
        native = self._use_native()
        if isinstance(features, np.ndarray) and features.dtype == np.float32 and features.ndim == 4 and native:
            # copied once, straight into the compiled renderer's channel-last layout; the (C, X, Y, Z)
            # tensor the torch path reads is a view of it (two copies were ~5 ms of a crane frame)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a read-only buffer: read here, never written
                f = torch.from_numpy(features).permute(1, 2, 3, 0).clone(memory_format=torch.contiguous_format)
                f = f.permute(3, 0, 1, 2)  # (clone, not contiguous(): with C = 1 the view is contiguous already)
        else:
            f = torch.tensor(features, dtype=torch.float32) if isinstance(features, np.ndarray) else features
        if tuple(d.shape) != self.geometry.shape or tuple(f.shape[1:]) != self.geometry.shape:
            raise RerfUsageError(f"grids {tuple(d.shape)}/{tuple(f.shape)} do not match {self.geometry.shape}")
        self.density = d.to(self.device, torch.float32).reshape(1, 1, *d.shape)
        self.features = f.to(self.device, torch.float32).unsqueeze(0)
        self.occupancy = occupancy_from_density(self.density, self.density_shift, self.settings.step_ratio)
        self.window = occupied_window(self.occupancy)
        self._native = None
        if native:  # the kernel's channel-last layout, once per frame
            self._native_grids()

    def _use_native(self) -> bool:
        """The compiled renderer on CPU (float32 grids), unless ``RERF_RENDERER=torch``."""
        return self.device.type == "cpu" and native_render.enabled()

    def _native_grids(self) -> native_render.NativeGrids:
        if self._native is None:
            assert self.density is not None and self.features is not None and self.occupancy is not None
            grids = (self.density, self.features, self.occupancy)
            self._native = native_render.prepare(*grids, self.geometry, self.window)
        return self._native

    @torch.no_grad()
    def render_rays(self, origins: torch.Tensor, dirs: torch.Tensor, chunk: int = RAY_CHUNK) -> RenderOutput:
        if self.density is None or self.features is None:
            raise RerfUsageError("RadianceField: set_grids() before rendering")
        if self._use_native() and origins.dtype == torch.float32 and dirs.dtype == torch.float32:
            return self._render_native(origins.cpu(), dirs.cpu(), chunk)
        rgbs, accs, samples, shaded = [], [], 0, 0
        for i in range(0, origins.shape[0], chunk):
            out = render_rays(
                self.density, self.features, self.mlp, self.geometry, self.density_shift,
                origins[i : i + chunk].to(self.device), dirs[i : i + chunk].to(self.device), self.background,
                occupancy=self.occupancy, occupancy_window=self.window, step_ratio=self.settings.step_ratio,
                shading=self.settings.shading,
            )  # fmt: skip
            rgbs.append(out.rgb)
            accs.append(out.acc)
            samples += out.samples
            shaded += out.shaded
        return RenderOutput(torch.cat(rgbs), torch.cat(accs), samples, shaded)

    def _render_native(self, origins: torch.Tensor, dirs: torch.Tensor, chunk: int) -> RenderOutput:
        """``render_rays`` with the compiled marcher (native_render.py); the MLP and the final
        sums are the torch renderer's own, on the kernel's per-ray (deferred) or per-sample output."""
        grids = self._native_grids()
        s = self.settings
        shading = s.shading
        if shading == "deferred":
            check_deferred_channels(grids.channels)
        args = (s.step_ratio * self.geometry.voxel_size, self.density_shift, s.step_ratio, WEIGHT_THRESHOLD)
        rgbs, accs, samples, shaded = [], [], 0, 0
        rays = chunk * DEFERRED_CHUNK_SCALE if shading == "deferred" else chunk
        for i in range(0, origins.shape[0], rays):
            o, d = origins[i : i + rays], dirs[i : i + rays]
            if shading == "deferred":
                w, diffuse, f, t_final, n = native_render.march_deferred(grids, o, d, *args)
                rgb, residual = shade_deferred(self.mlp, w, diffuse, f, d, WEIGHT_THRESHOLD)
                shaded += int(residual.shape[0])
            else:
                t_final, sid, w, f, n = native_render.march_per_sample(grids, o, d, *args)
                rgb = shade_per_sample(self.mlp, f, w, sid, d)
                shaded += int(sid.shape[0])
            rgbs.append(rgb + t_final[:, None] * self.background)
            accs.append(1 - t_final)
            samples += n
        if not rgbs:
            return RenderOutput(torch.zeros(0, 3), torch.zeros(0), 0, 0)
        return RenderOutput(torch.cat(rgbs), torch.cat(accs), samples, shaded)

    def render_camera(self, camera: Camera, chunk: int = RAY_CHUNK, *, alpha: bool = False) -> np.ndarray:
        """One camera's image, float32 (h, w, 3) in [0, 1]; (h, w, 4) with the opacity when ``alpha``."""
        origins, dirs = camera.rays()
        out = self.render_rays(torch.from_numpy(origins.reshape(-1, 3)), torch.from_numpy(dirs.reshape(-1, 3)), chunk)
        rgb = out.rgb.clamp(0, 1)
        if alpha:
            rgb = torch.cat([rgb, out.acc.clamp(0, 1)[:, None]], 1)
        return rgb.cpu().numpy().reshape(camera.h, camera.w, rgb.shape[1])
