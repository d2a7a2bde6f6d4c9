"""Generate the write-once conformance vectors under ``bitstreams/conformance/<case>/``.

Each case directory holds:

* ``input.npz``: ``density`` float32 ``(T, X, Y, Z)``, ``features`` float32 ``(T, C, X, Y, Z)`` and
  one ``tensor.<name>`` array per decoder tensor of the stream header;
* ``config.json``: ``{"case", "description", "sequence": <sequence.json>, "encoder": <every
  EncoderConfig field>, "tensors": [names]}`` — every setting that changes the bits, explicitly,
  so a later change of the encoder defaults leaves the case valid;
* ``stream.rerf``: the encoded stream;
* ``decoded.sha256``: SHA-256 (hex, one line) of the decoded grids (``grids.update_frame_hash``
  over the frames in order), checked to equal the encoder's reconstruction when written.

Vectors are written only with ``RERF_GENERATE_EXPECTED=1`` and only for cases whose
directory is missing or incomplete; a released vector must decode forever (STYLE.md
lesson 6), so replacing one needs ``--overwrite CASE`` on top of the flag::

    RERF_GENERATE_EXPECTED=1 .venv/bin/python bitstreams/make_conformance.py
    RERF_GENERATE_EXPECTED=1 .venv/bin/python bitstreams/make_conformance.py --overwrite intra_smooth_odd

``tests/test_conformance.py`` decodes every case and re-encodes its inputs (byte equality).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rerf_codec.codec.decoder import decode_all
from rerf_codec.codec.encoder import EncoderConfig, EncodeReport, encode_frames
from rerf_codec.grids import GridFrame, SequenceMeta

ROOT = Path(__file__).resolve().parent / "conformance"
FILES = ("input.npz", "config.json", "stream.rerf", "decoded.sha256")
GENERATE_ENV = "RERF_GENERATE_EXPECTED"
REGENERATE_HINT = f"{GENERATE_ENV}=1 .venv/bin/python bitstreams/make_conformance.py"


@dataclass
class Case:
    """Everything needed to encode one vector."""

    description: str
    sequence: dict
    density: np.ndarray  # (T, X, Y, Z) float32
    features: np.ndarray  # (T, C, X, Y, Z) float32
    encoder: EncoderConfig
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def meta(self) -> SequenceMeta:
        return SequenceMeta.from_json_dict(self.sequence, "config.json:sequence")

    def __post_init__(self) -> None:
        # 12 significant bits: the float32 inputs then compress well in input.npz
        self.density = _coarse(self.density)
        self.features = _coarse(self.features)

    def frames(self) -> list[tuple[int, GridFrame]]:
        first = self.meta.first_frame
        return [
            (first + t, GridFrame(density=self.density[t].copy(), features=self.features[t].copy()))
            for t in range(self.density.shape[0])
        ]


# --------------------------------------------------------------------------- case builders


def _coarse(a: np.ndarray, bits: int = 12) -> np.ndarray:
    """float32 copy of ``a`` rounded to ``bits`` significant bits (exact, scale-free)."""
    m, e = np.frexp(np.asarray(a, dtype=np.float64))
    return np.ldexp(np.round(m * 2.0**bits) / 2.0**bits, e).astype(np.float32)


def _sequence(shape: tuple[int, int, int], channels: int, frames: int, first_frame: int = 0, **extra) -> dict:
    return {
        "format": "rerf-grid-sequence",
        "version": 1,
        "num_frames": frames,
        "first_frame": first_frame,
        "fps": 30.0,
        "grid_shape": list(shape),
        "feature_channels": channels,
        "xyz_min": [-1.0, -1.0, -1.0],
        "xyz_max": [1.0, 1.0, 1.0],
        "density_shift": -13.8155,
        "motion_block": 8,
        "decoder": None,
        **extra,
    }


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.meshgrid(*(np.linspace(0.0, 1.0, n) for n in shape), indexing="ij")


def _smooth_frames(shape, channels, frames, seed, noise=0.02):
    """Partially occupied smooth density (a moving ball) and smooth features with a little noise."""
    rng = np.random.default_rng(seed)
    x, y, z = _grid(shape)
    dens, feats = [], []
    for t in range(frames):
        r2 = (x - 0.4 - 0.05 * t) ** 2 + (y - 0.5) ** 2 + (z - 0.5) ** 2
        d = 14.0 * np.exp(-r2 / 0.08) - 2.0 + rng.normal(0.0, 0.3, shape)
        f = np.stack(
            [np.sin((1 + c % 5) * x + 0.4 * c + 0.2 * t) * np.cos((2 + c % 3) * y) + 0.3 * z for c in range(channels)]
        )
        f += rng.normal(0.0, noise, f.shape)
        dens.append(d)
        feats.append(f)
    return np.asarray(dens, np.float32), np.asarray(feats, np.float32)


def _intra_smooth_odd() -> Case:
    shape, c, t = (13, 9, 7), 3, 3
    d, f = _smooth_frames(shape, c, t, seed=1)
    return Case(
        "odd shape 13x9x7, 3 feature channels, 3 intra frames (GOF of 1), quality 75, partial occupancy",
        _sequence(shape, c, t), d, f, EncoderConfig(quality=75, gof=1),
    )


def _empty_and_full() -> Case:
    shape, c, t = (12, 8, 9), 2, 4
    rng = np.random.default_rng(2)
    x, y, z = _grid(shape)
    full = 9.0 + 3.0 * np.sin(4 * x) * np.cos(3 * z) + rng.normal(0, 0.2, shape)  # every block occupied
    empty = rng.uniform(-25.0, 3.0, shape)  # every voxel below the threshold (~4.6)
    half = np.where(x < 0.5, 8.0 + rng.normal(0, 0.5, shape), -15.0)
    dens = np.stack([full, empty, empty - 1.0, half]).astype(np.float32)
    feats = np.stack(
        [np.stack([np.cos(3 * x + k + c_) * y + 0.1 * rng.normal(size=shape) for c_ in range(c)]) for k in range(t)]
    ).astype(np.float32)
    feats[1:3] -= 2.0  # negative fill values in the empty frames
    return Case(
        "frames: all blocks occupied, empty (a residual frame), empty (keyframe of the second GOF), half "
        "occupied (residual); GOFs of 2",
        _sequence(shape, c, t), dens, feats, EncoderConfig(quality=60, gof=2),
    )


def _intra_32ch_q100() -> Case:
    shape, c, t = (10, 8, 4), 32, 2
    d, f = _smooth_frames(shape, c, t, seed=3, noise=0.002)
    d = np.maximum(d, 5.0)  # all occupied
    return Case(
        "32 feature channels at quality 100, 10x8x4 (cropped blocks), 2 intra frames (GOF of 1)",
        _sequence(shape, c, t), d, f, EncoderConfig(quality=100, gof=1),
    )


def _intra_decoder_tensors() -> Case:
    shape, c, t = (9, 9, 9), 4, 2
    d, f = _smooth_frames(shape, c, t, seed=4)
    tensors = {
        "w0": (np.arange(39 * 16, dtype=np.float32).reshape(39, 16) / 64.0 - 3.0),
        "b0": np.linspace(-1, 1, 16).astype(np.float16),
        "w1": np.arange(16 * 3, dtype=np.float64).reshape(16, 3) * 1e-3,
        "layers": np.array([39, 16, 3], dtype=np.int32),
        "flags": np.array([True, False, True]),
        "scale": np.array(2.5, dtype=np.float32),
    }
    return Case(
        "decoder MLP tensors of several dtypes (float32/16/64, int32, bool, a 0-d array) in the header; GOF of 1",
        _sequence(shape, c, t, decoder="decoder.npz"), d, f, EncoderConfig(quality=50, gof=1), tensors,
    )


def _extremes() -> Case:
    shape, c, t = (12, 8, 5), 3, 3
    rng = np.random.default_rng(5)
    x, y, z = _grid(shape)
    dens, feats = [], []
    for k in range(t):
        occ = (x + 0.1 * k) < 0.6
        dens.append(np.where(occ, 3.0 + rng.uniform(0, 2, shape), -40.0 + rng.normal(0, 1, shape)))
        feats.append(
            np.stack(
                [
                    np.where(occ, 1e6 * np.sin(5 * y + k) + 1e5 * rng.normal(size=shape), -7e5),
                    np.where(occ, 1e-6 * (z + x * k) + 1e-8 * rng.normal(size=shape), -3e-6),
                    np.where(occ, rng.normal(0, 1, shape), -1.0),
                ]
            )
        )
    return Case(
        "values of 1e6 and 1e-6, negative fills, frames numbered from 5, custom threshold 2.0, "
        "plain-rounding dead zone, separate density quality; GOFs of 2 (keyframe + residual)",
        _sequence(shape, c, t, first_frame=5),
        np.asarray(dens, np.float32),
        np.asarray(feats, np.float32),
        EncoderConfig(quality=60, density_quality=90, gof=2, deadzone_ac=0.5, deadzone_dc=0.5, occupancy_threshold=2.0),
    )


def _residual_motion() -> Case:
    shape, c, t = (20, 16, 8), 2, 4
    x, y, z = (a * (n - 1) for a, n in zip(_grid(shape), shape, strict=True))  # voxel units
    dens, feats = [], []
    for k in range(t):
        cx, cy, cz = 7.0 + 1.5 * k, 8.5 - 0.75 * k, 4.0  # moves 1.5 / -0.75 voxels per frame
        r2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        dens.append(16.0 * np.exp(-r2 / 18.0) - 3.0)
        u, v, w = x - cx, y - cy, z - cz  # texture attached to the object
        feats.append(np.stack([np.sin(0.7 * u + ch) * np.cos(0.5 * v - ch) + 0.1 * w for ch in range(c)]))
    return Case(
        "a textured ball moving by (1.5, -0.75, 0) voxels per frame: 4 frames, one GOF (keyframe + 3 residual "
        "frames with motion vectors), quality 75",
        _sequence(shape, c, t), np.asarray(dens, np.float32), np.asarray(feats, np.float32),
        EncoderConfig(quality=75, gof=4),
    )


def _context_mode() -> Case:
    shape, c, t = (20, 16, 12), 2, 5
    x, y, z = (a * (n - 1) for a, n in zip(_grid(shape), shape, strict=True))  # voxel units
    dens, feats = [], []
    for k in range(t):
        cx, cy, cz = 8.0 + 1.25 * k, 8.0, 6.5 - 0.5 * k
        r2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        dens.append(18.0 * np.exp(-r2 / 24.0) - 3.0)
        u, v, w = x - cx, y - cy, z - cz
        feats.append(np.stack([np.sin(0.9 * u + ch) * np.cos(0.6 * v - ch) + 0.2 * np.sin(1.7 * w) for ch in range(c)]))
    return Case(
        "coefficient mode 1 (format 1.1): context tables and table repeats; a textured ball moving by "
        "(1.25, 0, -0.5) voxels per frame, 5 frames in one GOF, quality 80, RDOQ",
        _sequence(shape, c, t), np.asarray(dens, np.float32), np.asarray(feats, np.float32),
        EncoderConfig(quality=80, gof=5, coeff_mode=1, rdoq_lambda=0.1, rdoq_lambda_residual=0.1),
    )


def mode_scene(shape=(32, 16, 16), channels=2, frames=3, phase=0.0):
    """A scene whose residual frames use every block mode: a static textured slab (skip), a
    moving textured ball (inter) and one block column re-textured with fresh noise every frame
    (intra). ``phase`` shifts every pattern (an unrelated-looking scene for cut tests).
    Mostly empty or smooth, so the stored inputs stay small."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    dens, feats = [], []
    for t in range(frames):
        d = np.full(shape, -20.0)
        f = np.zeros((channels, *shape))
        slab = (x < 8) & (y < 8)
        d[slab] = 5.0
        pattern = np.sin(0.5 * x + 0.3 * y + 0.2 * z + phase)
        f[:, slab] = (pattern[None] * (1 + np.arange(channels))[:, None, None, None])[:, slab]
        cx, cy, cz = shape[0] - 10 + 1.5 * t, shape[1] / 2, shape[2] / 2
        ball = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < 25
        d[ball] = 8.0
        for c in range(channels):
            f[c][ball] = (np.sin(0.7 * (x - cx) + c + phase) * np.cos(0.5 * (y - cy)))[ball]
        fresh = (x >= 8) & (x < 16) & (y >= 8) & (z < 8)
        d[fresh] = 6.0
        f[:, fresh] = np.random.default_rng(100 + t + int(phase * 10)).normal(0, 1.0, (channels, *shape))[:, fresh]
        dens.append(d)
        feats.append(f)
    return np.asarray(dens, np.float32), np.asarray(feats, np.float32)


def _block_modes() -> Case:
    d, f = mode_scene()
    return Case(
        "format 1.2 block modes, coefficient mode 1: a static slab (skip blocks), a moving ball (inter) and a "
        "block re-textured every frame (intra blocks); 32x16x16, 3 frames in one GOF",
        _sequence(d.shape[1:], f.shape[1], d.shape[0]), d, f, EncoderConfig(quality=60, gof=3, coeff_mode=1),
    )


def _block_modes_bands() -> Case:
    d, f = mode_scene(frames=2, phase=0.5)
    return Case(
        "format 1.2 block modes with coefficient mode 0 (two table sets of 46 tables): skip, inter and intra "
        "blocks; 32x16x16, a keyframe and a residual frame",
        _sequence(d.shape[1:], f.shape[1], d.shape[0]), d, f, EncoderConfig(quality=60, gof=3, coeff_mode=0),
    )


def _gof_reasons() -> Case:
    shape, c = (32, 16, 8), 1
    d1, f1 = mode_scene(shape, c, 5)
    d2, f2 = mode_scene(shape, c, 2, phase=2.0)
    d2 = d2[:, ::-1, ::-1].copy()  # unrelated content from frame 5 on: a cut
    f2 = 3.0 * f2[:, :, ::-1, ::-1]
    return Case(
        "format 1.2 GOF reasons: GOFs start at frame 0 (first), 3 (maximum length 3), 4 (listed in keyframes) "
        "and 5 (a cut: unrelated content, cheaper as a keyframe); 7 frames",
        _sequence(shape, c, 7, keyframes=[4]),
        np.concatenate([d1, d2]), np.concatenate([f1, f2]), EncoderConfig(quality=50, gof=3),
    )


CASES: dict[str, Callable[[], Case]] = {
    "intra_smooth_odd": _intra_smooth_odd,
    "empty_and_full": _empty_and_full,
    "intra_32ch_q100": _intra_32ch_q100,
    "intra_decoder_tensors": _intra_decoder_tensors,
    "extremes_first_frame5": _extremes,
    "residual_motion": _residual_motion,
    "context_mode": _context_mode,
    "block_modes": _block_modes,
    "block_modes_bands": _block_modes_bands,
    "gof_reasons": _gof_reasons,
}


# --------------------------------------------------------------------------- files


def case_dir(name: str, root: Path = ROOT) -> Path:
    return root / name


def missing_files(name: str, root: Path = ROOT) -> list[str]:
    d = case_dir(name, root)
    return [f for f in FILES if not (d / f).is_file()]


def save_inputs(case: Case, d: Path, name: str) -> None:
    arrays = {"density": case.density, "features": case.features}
    arrays.update({f"tensor.{k}": v for k, v in case.tensors.items()})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    (d / "input.npz").write_bytes(buf.getvalue())
    config = {
        "case": name,
        "description": case.description,
        "sequence": case.sequence,
        "encoder": dataclasses.asdict(case.encoder),
        "tensors": sorted(case.tensors),
    }
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_case(d: Path) -> Case:
    """Rebuild a case from its stored ``input.npz`` and ``config.json`` (not from the builders)."""
    config = json.loads((d / "config.json").read_text())
    with np.load(d / "input.npz", allow_pickle=False) as npz:
        density = npz["density"]
        features = npz["features"]
        tensors = {k: npz[f"tensor.{k}"] for k in config["tensors"]}
    return Case(config["description"], config["sequence"], density, features, EncoderConfig(**config["encoder"]), tensors)


def encode_case(case: Case) -> tuple[bytes, EncodeReport]:
    buf = io.BytesIO()
    report = encode_frames(case.meta, case.frames(), buf, case.encoder, tensors=case.tensors or None)
    return buf.getvalue(), report


def write_case(name: str, root: Path = ROOT, *, overwrite: bool = False) -> bool:
    """Write case ``name`` if it is missing or incomplete (or ``overwrite``); returns whether it wrote."""
    if os.environ.get(GENERATE_ENV) != "1":
        raise RuntimeError(f"refusing to write conformance vectors without {GENERATE_ENV}=1")
    if not overwrite and not missing_files(name, root):
        return False
    case = CASES[name]()
    data, report = encode_case(case)
    _, sha = decode_all(io.BytesIO(data))
    if sha != report.sha256:
        raise RuntimeError(f"{name}: closed loop broken (encoder {report.sha256}, decoder {sha})")
    d = case_dir(name, root)
    d.mkdir(parents=True, exist_ok=True)
    save_inputs(case, d, name)
    # the stored inputs must reproduce the stream exactly (npz round trip is lossless)
    again, _ = encode_case(load_case(d))
    if again != data:
        raise RuntimeError(f"{name}: re-encoding the stored inputs gives different bytes")
    (d / "stream.rerf").write_bytes(data)
    (d / "decoded.sha256").write_text(sha + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overwrite", nargs="*", default=[], metavar="CASE", help="replace these existing cases")
    parser.add_argument("--root", type=Path, default=ROOT, help="output folder (default: bitstreams/conformance)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.overwrite) - set(CASES))
    if unknown:
        parser.error(f"unknown cases: {', '.join(unknown)}")
    if os.environ.get(GENERATE_ENV) != "1":
        todo = [n for n in CASES if missing_files(n, args.root)]
        print(f"not writing anything without {GENERATE_ENV}=1; missing or incomplete: {todo or 'none'}")
        return 1 if todo else 0
    failed = []
    for name in CASES:
        try:
            wrote = write_case(name, args.root, overwrite=name in args.overwrite)
        except Exception as exc:  # report every case, then fail
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            failed.append(name)
            continue
        d = case_dir(name, args.root)
        sizes = ", ".join(f"{f} {(d / f).stat().st_size}" for f in FILES)
        print(f"{name}: {'written' if wrote else 'kept'} ({sizes} bytes)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
