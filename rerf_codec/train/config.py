"""Training settings: one frozen dataclass, recorded in ``train.json`` and the checkpoint.

Defaults are the values measured in BENCHMARKS.md ("Trainer"); every field that
changes the result is part of the checkpoint's identity, so ``--resume`` refuses to
continue a run with different settings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from rerf_codec.errors import RerfUsageError

MOTION_MODELS = ("block", "pooled")
"""``TrainConfig.motion_model``: what the motion step optimises."""

ADDED_SETTINGS = {"motion_model": "block"}
"""Settings added after checkpoints were first written, with the value that trains as the versions
before them did: left out of a checkpoint's identity at that value (``identity_json``), so a run
interrupted before an upgrade still resumes, while a run that uses the new setting cannot resume
an older checkpoint."""


@dataclass(frozen=True)
class TrainConfig:
    resolution: int = 128
    """Voxels along the box's longest axis (cubic voxels)."""
    feature_channels: int = 12
    """Channels of the feature grid (ReRF: 12)."""
    mlp_width: int = 128
    """Hidden width of the colour MLP (3 layers, as in ReRF)."""
    viewbase_pe: int = 4
    """View-direction encoding frequencies."""
    alpha_init: float = 1e-2
    """One-voxel alpha of a zero density; sets density_shift (DVGO)."""
    hull_alpha: float = 0.5
    """One-voxel alpha inside the visual hull at the start of keyframe training: an opaque hull
    is carved from the outside in, so each ray shades a few samples, not a fog of dozens."""
    iters_key: int = 600
    """Keyframe iterations."""
    iters_motion: int = 40
    """Motion-estimation iterations per residual frame."""
    iters_residual: int = 300
    """Most residual-grid iterations per residual frame: the fit usually stops earlier on a loss
    plateau (``residual_plateau``), and its step decays over this count. Was 100; 300 with L1 2.5e-4
    (BENCHMARKS, "Session 7") took horse-gallop from 0 to 31 of 47 frames within 1 dB of its
    keyframe and removed crane's one refresh, at 17-18 CPU-s per frame (median) instead of 12.5-13."""
    iters_refresh: int = 300
    """Iterations of a full-grid refresh of a residual frame whose silhouette drifted (0: never)."""
    refresh_factor: float = 1.25
    """A residual frame is refreshed when its silhouette error exceeds this many times the keyframe's."""
    refresh_db: float = 5.0
    """...or when its colour fit is this many dB worse than the sequence's first residual frame's (then
    it first gets the rescue step, see ``lr_rescue``). Was 3.0 (session 3, when every residual fitted
    its training rays per voxel). With the coarse-to-fine residual (``residual_coarse``) a fast frame
    fits its training rays ~2x worse than the slow frame 1 while generalising as well, so 3 dB ran
    the rescue on all of crane's fast stretch, where it over-fitted: crane from scratch with 5 dB,
    no rescue, every frame above the keyframe, median residual frame 22.1 CPU-s against 35.3 with 3
    dB, 97.5 % zeros against 96.9 (BENCHMARKS, "Session 8"); its worst fit is then 2.76x frame 1's
    (the test: 3.16x). Horse-gallop's and the demo's stay within 1.5x, so neither reached either."""
    refresh_gain_db: float = 1.0
    """A refresh is kept only when it repairs the drift (passes both tests) or fits the training
    rays at least this many dB better than the residual frame it replaces; otherwise the residual
    frame is stored. Why: a refreshed frame starts a GOF and costs a keyframe's bytes (demo: ~190 kB
    against ~50-80 kB); measured on the demo's fast stretch, 100 refresh iterations from a poor
    prediction gained 0.3 dB over the residual and still failed the colour test."""
    lr_rescue: float | None = None
    """Adam step of the second residual tried on a drifting frame before any refresh (same L1,
    ``iters_refresh`` iterations, on top of the first residual); None: the residual's own step
    (``lr_residual``), so the rescue is more iterations from a restarted schedule. Was 1.0 (session 3,
    when the first residual ran a fixed 100 iterations at L1 5e-4); with the session-7 residual
    defaults, crane trained from scratch at its residual step (0.3) has no refresh either, and its
    rescued frames (15-29) score 0.0-0.33 dB higher, in 18% less CPU (BENCHMARKS, "Session 7"); on
    the demo a 1.0 step over-fitted and pushed features to ±13."""
    batch_rays: int = 4096
    """Rays per keyframe iteration."""
    batch_rays_residual: int = 2048
    """Rays per motion / residual iteration (the warped frame is already close; halves the cost)."""
    lr_grid: float = 0.1
    """Adam learning rate of density and feature grids (DVGO)."""
    lr_mlp: float = 1e-3
    """Adam learning rate of the MLP (keyframe only; then frozen)."""
    lr_motion: float = 0.15
    """Adam learning rate of the block motion (voxels) at the finest level; a level with
    superblocks of k blocks uses k times this (coarse motion moves far, fine motion polishes)."""
    lr_residual: float = 0.3
    """Adam learning rate of the residual grids. Measured at 128³ from the keyframe (test PSNR after
    the residual): crane frame 4 34.08 dB at 0.02, 34.45 at 0.3; horse-gallop frame 1 (1.5 voxels of
    block motion) 28.68 / 31.14 / 32.83 / 32.87 dB at 0.02 / 0.1 / 0.3 / 1.0, with more exact zeros."""
    lr_decay: float = 0.1
    """Learning rates fall exponentially to this fraction at the last iteration."""
    growth: tuple[float, ...] = (0.15, 0.3)
    """Fractions of the keyframe iterations at which the grid grows (from 1/2 resolution)."""
    tv_density: float = 1e-5
    """Total-variation weight on density."""
    tv_features: float = 1e-6
    """Total-variation weight on features."""
    entropy: float = 1e-3
    """Weight of the binary entropy of each ray's opacity (pushes rays to empty or solid)."""
    distortion: float = 0.0
    """Weight of mip-NeRF 360's distortion loss in the keyframe (compact weights: sharp surfaces).
    Off by default: on crane (300 iterations) 1e-2 cut shaded samples by only 9% and cost 1 dB."""
    motion_silhouette: float = 0.0
    """Weight of the silhouette term (rendered opacity vs image alpha) in the motion loss. Off by
    default since the motion step keeps only levels that lower the colour error: it widened the
    basin for large motion before that check, but pulls surfaces towards the masks' soft edges at
    the colours' expense (crane frame 4 from the keyframe: 31.9 dB with 1.0, 34.1 dB with 0; demo
    frames 1-5: 27.00 dB mean with 1.0, 27.16 with 0)."""
    motion_search_range: float = 12.0
    """Start each residual frame's motion from the codec's grid-domain block search between the
    visual hulls of frames t-1 and t, within this many voxels (0: off; then the previous frame's
    motion is the start). Measured on the demo's fastest frame: 22.4 → 24.0 dB after motion."""
    tv_motion: float = 1e-3
    """Smoothness weight between neighbouring block motion vectors (the block model only)."""
    motion_model: str = "block"
    """What the motion step optimises (``residual.estimate_motion``). ``"block"``: the stored block
    vectors themselves, through the format's block warp. ``"pooled"`` (ReRF / DeVRF): a smooth field
    — one control vector per block centre, trilinear in between — then pooled to each block's
    occupied voxels. The pooled field follows a turn inside a block (the 15° test: every block
    within 0.5 voxel of its true mean motion, with 500 iterations), where the block model renders
    better after motion alone. Block stays the default, by measurement (BENCHMARKS, "Session 15";
    whole runs at 40 iterations): the demo and crane come out the same (+0.07 / +0.04 dB mean, crane
    +0.7 % bytes), horse-gallop worse (6 of 47 frames more than 1 dB below its keyframe against none,
    35.00 against 35.22 dB at +1.3 % bytes), and the pooled motion step costs ~20 % more CPU."""
    l1: float = 1.7e-4
    """L1 weight on the residual grids, per voxel value and divided by n² (n = voxels along the
    longest axis; ``residual.l1_per_voxel``), so one setting gives the same sparsity at any
    resolution, batch size and scene scale; an orthant-wise proximal rule keeps zeros exact.
    Was 5e-4 (tuned on crane's slow frames): fast non-rigid motion (horse-gallop) lost ~2 dB on
    every frame at that weight; then 2.5e-4 (session 7), 2.0e-4 (session 10). Whole runs at
    1.7e-4 (BENCHMARKS, "Session 11"): horse-gallop 47 of 47 frames within 1 dB of the keyframe
    (2.0e-4: 45; 2.5e-4: 43), crane every frame above the keyframe at 136.9 kB/frame and 35.09 dB
    (2.0e-4: 137.6 kB at 35.09), ≥ 95 % zeros on both. The floor is the resolution independence:
    the same scene at 24³ and 48³ gives 87.8 / 92.5 % zeros here, 88.1 / 92.6 at 1.8e-4, and
    below ~1.6e-4 the two drift more than 5 points apart (87.0 / 92.0 at 1.5e-4, 85.5 / 91.2 at
    1.2e-4): the normalisation by n² holds best where the L1 is strong."""
    shading: str = "deferred"
    """``"deferred"`` (a composited diffuse colour plus the MLP once per pixel on the composited
    features) or ``"per_sample"`` (ReRF/DVGO: the MLP on every shaded sample — for ReRF-faithful
    runs); see ``field.render``. Trained end to end and recorded in
    ``sequence.json["render"]["shading"]``. Default by measurement (BENCHMARKS, "Deferred shading",
    session 4, 1 thread): crane keyframe at 128³ 34.56 dB in 241 CPU-s against 34.17 dB in 389;
    demo keyframe 28.65 against 28.33 dB, and every residual frame of the demo higher."""
    view_residual: float = 0.1
    """Deferred shading only: weight of the squared view-dependent residual ``W·(2·MLP − 1)`` in
    every fit's loss, so the MLP's per-pixel term is used where it pays and the diffuse colour
    carries the rest. Without it the residual fits the training views through the composited
    features at the held-out views' expense (demo keyframe: 0 → 26.2 dB, 0.03 → 28.4, **0.1 →
    28.7**, 0.3 → 28.5, 1 → 28.4; per-sample shading 28.3)."""
    residual_plateau: float = 0.01
    """Stop a residual fit early when its (smoothed) colour loss fell by less than this fraction
    over the last 25 iterations (0: always run ``iters_residual``)."""
    residual_coarse: float = 0.5
    """Share of the residual iterations (at most: a loss plateau ends the stage) fitted first on a
    half-resolution lattice, coarse to fine as the keyframe grows (0: off; see ``fit_residual``).
    Measured (BENCHMARKS, "Session 8"), whole runs against 0: horse-gallop 42 of 47 frames within
    1 dB of the keyframe (was 31), stream 131.0 kB/frame at 35.02 dB (was 150.6 at 34.80); crane
    every frame above the keyframe (was 28 of 29 within 0.5 dB), 133.7 kB/frame at 35.05 dB (was
    147.5 at 34.69), at the same or a higher zero fraction. It costs CPU: more iterations run before
    the plateau stops (crane's median residual frame 22.1 CPU-s against 18.1, horse-gallop's 20.5
    against 17.5)."""
    seed: int = 0
    """Base seed; frame t uses seed + t, so any frame can be retrained alone."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "shading":
                from rerf_codec.field.render import SHADING_MODES  # torch: only when a config is built

                if v not in SHADING_MODES:
                    raise RerfUsageError(f"must be one of {', '.join(SHADING_MODES)}, got {v!r}", param="shading")
            elif f.name == "motion_model":
                if v not in MOTION_MODELS:
                    raise RerfUsageError(f"must be one of {', '.join(MOTION_MODELS)}, got {v!r}", param="motion_model")
            elif f.name == "growth":
                g = tuple(float(x) for x in v)
                if any(not 0 < x < 1 for x in g) or list(g) != sorted(g):
                    raise RerfUsageError(f"growth must be increasing fractions in (0, 1), got {v!r}")
                object.__setattr__(self, "growth", g)
            elif isinstance(f.default, int):
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise RerfUsageError(f"{f.name} must be a non-negative integer, got {v!r}")
            elif isinstance(f.default, float) or (f.default is None and v is not None):  # None: optional float
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise RerfUsageError(f"{f.name} must be a finite non-negative number, got {v!r}")
                object.__setattr__(self, f.name, float(v))
        if not 8 <= self.resolution <= 512:
            raise RerfUsageError(f"must be in 8..512, got {self.resolution}", param="resolution")
        if not 1 <= self.feature_channels <= 64:
            raise RerfUsageError(f"feature_channels must be in 1..64, got {self.feature_channels}")
        if self.shading == "deferred" and self.feature_channels < 3:
            raise RerfUsageError(f"deferred shading needs >= 3 feature channels (a diffuse colour), got {self.feature_channels}")
        if self.batch_rays < 1 or self.batch_rays_residual < 1 or self.mlp_width < 1:
            raise RerfUsageError("batch_rays and mlp_width must be positive")
        if self.residual_coarse >= 1:
            raise RerfUsageError(f"residual_coarse must be in [0, 1), got {self.residual_coarse}")
        if not 0 < self.alpha_init < 1 or not 0 < self.hull_alpha < 1 or not 0 < self.lr_decay <= 1:
            raise RerfUsageError("alpha_init must be in (0, 1) and lr_decay in (0, 1]")

    @property
    def rescue_lr(self) -> float:
        """The rescue's step: ``lr_rescue``, or the residual's own when that is None."""
        return self.lr_residual if self.lr_rescue is None else self.lr_rescue

    def decayed_lr(self, base: float, step: int, steps: int) -> float:
        """``base`` decayed exponentially to ``lr_decay × base`` over ``steps`` (every optimiser's schedule)."""
        return base * self.lr_decay ** (step / max(steps, 1))

    @property
    def density_shift(self) -> float:
        """``softplus(0 + shift)`` is the optical depth whose one-voxel alpha is ``alpha_init``."""
        return math.log(1 / (1 - self.alpha_init) - 1)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["growth"] = list(self.growth)
        return d

    def identity_json(self) -> dict[str, Any]:
        """``to_json`` without the ``ADDED_SETTINGS`` that hold their old behaviour: what a checkpoint's
        identity records (train.json and sequence.json record ``to_json``, every setting)."""
        return {k: v for k, v in self.to_json().items() if not (k in ADDED_SETTINGS and ADDED_SETTINGS[k] == v)}

    @staticmethod
    def from_json(d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(TrainConfig)}
        values = {k: v for k, v in d.items() if k in known}
        values.setdefault("residual_coarse", 0.0)  # recorded before it existed: no coarse stage then
        if "growth" in values:
            values["growth"] = tuple(values["growth"])
        return TrainConfig(**values)
