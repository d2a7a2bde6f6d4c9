"""Shared helpers for the codec tests: hand-built sequence metadata and in-memory encoding."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp (see rerf_codec/__init__.py)

import io
from collections.abc import Sequence

import numpy as np
import pytest

from rerf_codec.codec.encoder import EncoderConfig, EncodeReport, encode_frames
from rerf_codec.grids import GridFrame, SequenceMeta

DENSITY_SHIFT = -13.8155


def make_meta(shape: Sequence[int], channels: int, num_frames: int, first_frame: int = 0) -> SequenceMeta:
    """A minimal valid sequence.json for ``num_frames`` frames of ``shape`` × ``channels``."""
    return SequenceMeta.from_json_dict(
        {
            "format": "rerf-grid-sequence",
            "version": 1,
            "num_frames": num_frames,
            "first_frame": first_frame,
            "fps": 30.0,
            "grid_shape": [int(s) for s in shape],
            "feature_channels": channels,
            "xyz_min": [-1, -1, -1],
            "xyz_max": [1, 1, 1],
            "density_shift": DENSITY_SHIFT,
            "motion_block": 8,
            "decoder": None,
        },
        "<test>",
    )


def encode_to_bytes(
    frames: Sequence[GridFrame],
    config: EncoderConfig,
    *,
    first_frame: int = 0,
    tensors: dict[str, np.ndarray] | None = None,
) -> tuple[bytes, EncodeReport]:
    """Encode ``frames`` (numbered from ``first_frame``) into memory; returns (stream, report)."""
    f0 = frames[0]
    meta = make_meta(f0.density.shape, f0.features.shape[0], len(frames), first_frame)
    buf = io.BytesIO()
    report = encode_frames(meta, list(enumerate(frames, start=first_frame)), buf, config, tensors=tensors)
    return buf.getvalue(), report


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator (used by test_format_doc.py)."""
    return np.random.default_rng(20240607)


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance per test module (Ray's testing advice: ray.init(num_cpus=2), shared, shut down)."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing is sent anywhere from a test
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _system_config={"worker_niceness": 0})  # workers at our priority, as rerf starts them
    yield
    ray.shutdown()
