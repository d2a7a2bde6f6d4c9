"""A tiny renderable grid sequence, its .rerf stream, and a dataset rendered from it (player/eval tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rerf_codec.codec.encoder import EncoderConfig, encode_sequence
from rerf_codec.datasets import Camera, DatasetMeta, DatasetWriter
from rerf_codec.field import MLPConfig, RadianceField, RenderSettings, seeded_mlp
from rerf_codec.grids import GridFrame, SequenceMeta
from rerf_codec.gridseq import SequenceWriter

SHAPE = (24, 24, 24)
CHANNELS = 4
FRAMES = 6
GOF = 2  # three GOFs: a middle one to damage
SHIFT = -4.6
MLP = MLPConfig(feature_channels=CHANNELS, viewbase_pe=2, width=16, depth=3)
BACKGROUND = (1.0, 1.0, 1.0)


def blob_frame(t: int) -> GridFrame:
    """A soft ball moving along x; smooth features tied to the ball (so colours move with it)."""
    idx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in SHAPE], indexing="ij"), 0)
    centre = np.array([9.5 + 1.0 * t, 12.0, 11.5])
    rel = idx - centre[:, None, None, None]
    r = np.sqrt((rel**2).sum(0))
    density = (4.0 * (7.5 - r)).clip(-10, 14).astype(np.float32)
    feats = np.stack([2.0 * np.sin(0.5 * rel[c % 3] + c) for c in range(CHANNELS)]).astype(np.float32)
    return GridFrame(density=density, features=feats)


def sequence_meta() -> SequenceMeta:
    return SequenceMeta.from_json_dict(
        {
            "format": "rerf-grid-sequence", "version": 1, "num_frames": FRAMES, "first_frame": 0, "fps": 10.0,
            "grid_shape": list(SHAPE), "feature_channels": CHANNELS, "xyz_min": [-1, -1, -1], "xyz_max": [1, 1, 1],
            "density_shift": SHIFT, "motion_block": 8, "decoder": None,
            "mlp": MLP.to_json(), "render": RenderSettings(BACKGROUND).to_json(),
        },
        "<test>",
    )  # fmt: skip


def decoder_arrays() -> dict[str, np.ndarray]:
    return seeded_mlp(MLP, 3).to_arrays()


def write_sequence(path: Path) -> None:
    with SequenceWriter(path, sequence_meta(), decoder=decoder_arrays()) as w:
        for t in range(FRAMES):
            w.write_frame(t, blob_frame(t))


def eval_cameras(size: int = 24) -> list[Camera]:
    out = []
    for i, a in enumerate((0.3, 2.4)):
        eye = (3.2 * np.sin(a), 0.9, 3.2 * np.cos(a))
        out.append(Camera.look_at(f"cam{i:03d}", eye, (0, 0, 0), (0, 1, 0), 45, size, size, split="test"))
    out.append(Camera.look_at("cam002", (0, 1.5, 3.0), (0, 0, 0), (0, 1, 0), 45, size, size, split="train"))
    return out


def write_dataset(path: Path, seq: Path) -> None:
    """Ground truth = renders of the uncompressed sequence (alpha 1), so the reference is exact."""
    from rerf_codec.gridseq import iter_full_frames, read_decoder, read_meta

    cams = eval_cameras()
    meta = DatasetMeta(FRAMES, 0, 10.0, (-1, -1, -1), (1, 1, 1), "RGBA", BACKGROUND, tuple(cams))
    smeta = read_meta(seq)
    field = RadianceField.for_sequence(smeta, read_decoder(seq, smeta))
    with DatasetWriter(path, meta) as w:
        for t, fr in iter_full_frames(seq, smeta):
            field.set_grids(fr.density, fr.features)
            for c in cams:
                rgb = field.render_camera(c)
                rgba = np.concatenate([rgb, np.ones((*rgb.shape[:2], 1), np.float32)], -1)
                w.write_image(t, c, rgba)


def build(root: Path) -> dict[str, Path]:
    seq, rerf, data = root / "seq", root / "clip.rerf", root / "data"
    write_sequence(seq)
    encode_sequence(seq, rerf, EncoderConfig(gof=GOF, quality=20))  # visibly lossy
    write_dataset(data, seq)
    return {"seq": seq, "rerf": rerf, "data": data, "root": root}
