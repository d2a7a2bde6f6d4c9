"""A tiny, soft, moving, view-dependent scene for the browser player's tests, and its streams.

Soft density (several samples share each ray's weight) and fast-varying features make
per-sample and deferred shading visibly different, and the ball moves a voxel per frame,
so a neighbouring frame or the other shading mode scores clearly lower than the right one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from player_fixtures import MLP, SHAPE

from rerf_codec.codec.encoder import EncoderConfig, encode_sequence
from rerf_codec.field import RenderSettings, seeded_mlp
from rerf_codec.grids import GridFrame, SequenceMeta
from rerf_codec.gridseq import SequenceWriter

CHANNELS = MLP.feature_channels
SHIFT = -4.6
BACKGROUND = (1.0, 1.0, 1.0)


def soft_frame(t: int, shape: tuple[int, int, int] = SHAPE) -> GridFrame:
    """A fuzzy ball moving along x with features that swirl through it."""
    idx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), 0)
    s = shape[0] / 24
    centre = np.array([9.5 * s + 1.0 * t, 12.0 * s, 11.5 * s])
    rel = (idx - centre[:, None, None, None]) / s
    r = np.sqrt((rel**2).sum(0))
    density = (1.3 * (7.0 - r)).clip(-10, 4).astype(np.float32)
    feats = np.stack([2.5 * np.sin(0.9 * rel[c % 3] + 0.6 * rel[(c + 1) % 3] + c) for c in range(CHANNELS)])
    return GridFrame(density=density, features=feats.astype(np.float32))


def decoder_arrays() -> dict[str, np.ndarray]:
    """A seeded MLP with its weights scaled up: strongly non-linear, so shading modes really differ."""
    arrays = seeded_mlp(MLP, 3).to_arrays()
    return {k: (v * 3.0 if k.endswith("weight") else v + 0.3).astype(np.float32) for k, v in arrays.items()}


def sequence_meta(frames: int, shading: str = "per_sample", shape: tuple[int, int, int] = SHAPE) -> SequenceMeta:
    render: dict[str, Any] = RenderSettings(BACKGROUND).to_json()
    if shading != "per_sample":
        render["shading"] = shading  # older sequences have no key: per-sample
    return SequenceMeta.from_json_dict(
        {
            "format": "rerf-grid-sequence", "version": 1, "num_frames": frames, "first_frame": 0, "fps": 10.0,
            "grid_shape": list(shape), "feature_channels": CHANNELS, "xyz_min": [-1, -1, -1], "xyz_max": [1, 1, 1],
            "density_shift": SHIFT, "motion_block": 8, "decoder": None, "mlp": MLP.to_json(), "render": render,
        },
        "<test>",
    )  # fmt: skip


def write_stream(root: Path, name: str, frames: int, gof: int, shading: str = "per_sample",
                 shape: tuple[int, int, int] = SHAPE, quality: int = 90) -> Path:  # fmt: skip
    """Encode ``frames`` frames of the soft scene into ``root/name.rerf`` (GOFs of ``gof`` frames)."""
    seq = root / f"{name}-seq"
    with SequenceWriter(seq, sequence_meta(frames, shading, shape), decoder=decoder_arrays()) as w:
        for t in range(frames):
            w.write_frame(t, soft_frame(t % 8, shape))
    out = root / f"{name}.rerf"
    encode_sequence(seq, out, EncoderConfig(gof=gof, quality=quality))
    return out
