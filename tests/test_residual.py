"""Residual (P) frames end to end: closed loop without drift, seeking, damage, trainer input, GOFs.

Error bound of a residual frame (one occupied block, one channel, lattice units). The
encoder codes ``x - p`` (``x`` the edge-padded input block, ``p`` the motion-compensated
prediction from the *decoded* previous frame) with the intra machinery, and the decoder
adds the decoded residual back to the same ``p``. So the reconstruction error is the
quantisation error of the residual alone, and the intra derivation (tests/test_roundtrip.py)
applies with ``x - p`` in place of ``x``:

    ||x - x̂||₂ <= Q + κ (||x - p||₂ + Q) + 1 × sqrt(512),   Q = ||max(1 - r, z) · step||₂

where ``r`` is ``EncoderConfig.deadzone_residual`` (DC and AC alike) and ``z`` the
``residual_zero_threshold`` (a coefficient below ``z`` steps is dropped whole: error < z · step).
``p`` is recomputed here from the stream (mask, motion) with the decoder's own functions, so
the bound is tight per block and per frame: no term grows with the frame's position in the GOF.
"""

from __future__ import annotations

import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import encode_to_bytes, make_meta

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `cli` is a top-level package next to rerf_codec
    sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

from cli.main import cli  # noqa: E402
from rerf_codec.bitstream import FRAME_INTRA, FRAME_RESIDUAL, FRAME_TYPE_NAMES, GofChunk, StreamReader  # noqa: E402
from rerf_codec.codec import transform  # noqa: E402
from rerf_codec.codec.decoder import DamagedFrames, DecodedFrame, Decoder, decode_all, decode_gof  # noqa: E402
from rerf_codec.codec.encoder import EncoderConfig, encode_sequence  # noqa: E402
from rerf_codec.codec.intra import block_coords, channel_scales, parse_intra, reconstruct_intra  # noqa: E402
from rerf_codec.codec.motion import MAX_MV, MV_UNIT, motion_compensate  # noqa: E402
from rerf_codec.codec.quant import qstep_table  # noqa: E402
from rerf_codec.codec.residual import GofState, initial_state, parse_residual, reconstruct_residual  # noqa: E402
from rerf_codec.errors import RerfFormatError  # noqa: E402
from rerf_codec.grids import GridFrame, TrainerFrame, frames_sha256  # noqa: E402
from rerf_codec.gridseq import iter_full_frames, read_frame, read_meta, write_sequence  # noqa: E402
from rerf_codec.synthetic import SyntheticSpec, synthetic_frames  # noqa: E402
from rerf_codec.trainer_form import warp_previous  # noqa: E402

BLOCK = 8
ROUND_SLACK = 1.0  # lattice units per voxel for the inverse transform's rounding shifts
_D = transform.INT_DCT / 2.0**transform.TRANSFORM_BITS - transform.dct_matrix()
KAPPA = (1.0 + float(np.linalg.norm(_D, 2))) ** 3 - 1.0


# --------------------------------------------------------------------------- helpers


def synthetic(spec: SyntheticSpec) -> tuple[list[GridFrame], list[np.ndarray]]:
    frames, motion = [], []
    for d, f, m in synthetic_frames(spec):
        frames.append(GridFrame(d, f))
        motion.append(m)
    return frames, motion


@dataclass
class Replayed:
    """One frame re-decoded step by step with the decoder's own functions."""

    index: int
    frame_type: int
    gof: GofChunk
    mask: np.ndarray
    mv: np.ndarray | None  # (N, 3) eighth-voxel motion of the occupied blocks (residual frames)
    prev: GridFrame | None  # decoded reference (residual frames)
    frame: GridFrame


def replay_stream(data: bytes) -> tuple[object, list[Replayed]]:
    """Parse and reconstruct every frame, keeping what the bound checks need."""
    reader = StreamReader(io.BytesIO(data))
    header = reader.header
    out: list[Replayed] = []
    for gof in reader.iter_gofs():
        assert isinstance(gof, GofChunk)
        state: GofState | None = None
        for i, rec in enumerate(gof.frames):
            if rec.frame_type == FRAME_INTRA:
                mask, levels, tables = parse_intra(rec, header)
                frame = reconstruct_intra(header, gof.channels, mask, levels)
                state = initial_state(header, frame, mask, tables)
                out.append(Replayed(gof.first_frame + i, FRAME_INTRA, gof, mask, None, None, frame))
            else:
                assert rec.frame_type == FRAME_RESIDUAL and state is not None
                prev = state.prev
                sym = parse_residual(rec, header, state)
                mask, mv = sym.mask, sym.mv
                frame = reconstruct_residual(header, gof.channels, mask, mv, sym.levels, prev, modes=sym.modes)
                state = sym.next_state(frame, state)
                out.append(Replayed(gof.first_frame + i, FRAME_RESIDUAL, gof, mask, mv, prev, frame))
    return header, out


def _blocks(arr: np.ndarray) -> np.ndarray:
    """(X, Y, Z) multiple of 8 -> (bx*by*bz, 512), raster block order."""
    x, y, z = arr.shape
    v = arr.reshape(x // BLOCK, BLOCK, y // BLOCK, BLOCK, z // BLOCK, BLOCK).transpose(0, 2, 4, 1, 3, 5)
    return v.reshape(-1, BLOCK**3)


def _pad(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(0, -(-n // BLOCK) * BLOCK - n) for n in shape]


def frame_errors(header, rep: Replayed, orig: GridFrame, config: EncoderConfig) -> np.ndarray:
    """Check one frame against the quantiser bound; return its per-channel RMS error in steps.

    Asserts: mask = input occupancy, unoccupied voxels = fill, occupied blocks within the
    bound of the module docstring (intra frames: the intra dead zones; residual frames:
    the residual dead zone and zero threshold, with the true ``||x - p||``).
    """
    shape = header.grid_shape
    pad = _pad(shape)
    valid = _blocks(np.pad(np.ones(shape, dtype=bool), pad))
    dens_pad = np.pad(orig.density.astype(np.float64), pad, constant_values=-np.inf)
    occupied = _blocks(dens_pad).max(axis=1) > header.occupancy_threshold
    assert np.array_equal(rep.mask.ravel(), occupied), f"frame {rep.index}: mask differs from the input's occupancy"
    channels = rep.gof.channels
    steps = qstep_table(header.qmatrix, np.array([ch.qscale for ch in channels]))
    scales = channel_scales(channels)
    if rep.frame_type == FRAME_INTRA:
        per_coeff = np.full(BLOCK**3, 1.0 - config.deadzone_ac)
        per_coeff[0] = 1.0 - config.deadzone_dc
        pred = None
    else:
        per_coeff = np.full(BLOCK**3, max(1.0 - config.deadzone_residual, config.residual_zero_threshold))
        blocks = block_coords(rep.mask)
        pred = motion_compensate(rep.prev.density, rep.prev.features, shape, scales, blocks, rep.mv)
        pred = pred.reshape(pred.shape[0], pred.shape[1], -1)
    rms = np.zeros(len(channels))
    for c, ch in enumerate(channels):
        o = (orig.density if c == 0 else orig.features[c - 1]).astype(np.float64) * scales[c]
        d = (rep.frame.density if c == 0 else rep.frame.features[c - 1]).astype(np.float64) * scales[c]
        assert (d == np.round(d)).all() and np.abs(d).max() <= transform.MAX_SAMPLE
        db = _blocks(np.pad(d, pad))
        fill_ok = np.where(valid, db == float(ch.fill), True)[~occupied]
        assert fill_ok.all(), f"frame {rep.index} channel {c}: unoccupied voxel is not the fill value"
        if not occupied.any():
            continue
        x = _blocks(np.pad(o, pad, mode="edge"))[occupied]  # what the encoder gathers
        if pred is not None:
            x = x - pred[c]
        q = float(np.linalg.norm(per_coeff * steps[c]))
        diff = np.where(valid, db - _blocks(np.pad(o, pad)), 0.0)[occupied]
        err = np.sqrt((diff**2).sum(axis=1))
        bound = q + KAPPA * (np.linalg.norm(x, axis=1) + q) + ROUND_SLACK * math.sqrt(BLOCK**3)
        worst = int(np.argmax(err - bound))
        assert (err <= bound).all(), (
            f"frame {rep.index} ({FRAME_TYPE_NAMES[rep.frame_type]}) channel {c}: block error "
            f"{err[worst]:.1f} > bound {bound[worst]:.1f} (Q={q:.1f}) lattice units"
        )
        rms[c] = math.sqrt(float((diff**2).sum()) / float(valid[occupied].sum())) / float(steps[c, 0])
    return rms


def frame_shas(decoded) -> list[str]:
    return [frames_sha256([d.frame]) for d in decoded]


class Pipe(io.RawIOBase):
    """A non-seekable input with short reads, like a pipe."""

    def __init__(self, payload: bytes) -> None:
        self._b = io.BytesIO(payload)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buf) -> int:
        chunk = self._b.read(min(len(buf), 1000))
        buf[: len(chunk)] = chunk
        return len(chunk)


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# --------------------------------------------------------------------------- 1. no drift

DRIFT_SPEC = SyntheticSpec(shape=(32, 32, 32), feature_channels=3, num_frames=60, occupancy=0.3, motion=1.0, seed=0)


@pytest.fixture(scope="module")
def drift_frames() -> list[GridFrame]:
    return synthetic(DRIFT_SPEC)[0]


@pytest.mark.parametrize(
    "config",
    [
        EncoderConfig(gof=20),
        EncoderConfig(gof=20, quality=50, deadzone_residual=0.5, residual_zero_threshold=1.2),
    ],
    ids=["default", "q50-zero-threshold"],
)
def test_no_drift_over_long_gofs(drift_frames, config):
    """60 moving frames in GOFs of 20: every frame of every GOF is within the quantiser bound,
    the error does not grow along a GOF, and encoder and decoder reconstructions are identical."""
    data, report = encode_to_bytes(drift_frames, config)
    _, sha = decode_all(io.BytesIO(data))
    assert sha == report.sha256, "closed loop broken: encoder reconstruction != decoder output"
    header, replayed = replay_stream(data)
    assert frames_sha256(r.frame for r in replayed) == sha
    assert [r.index for r in replayed] == list(range(60))
    types = [r.frame_type for r in replayed]
    assert types == [FRAME_INTRA if t % 20 == 0 else FRAME_RESIDUAL for t in range(60)]
    assert sum(1 for r in replayed if r.mv is not None and np.any(r.mv)) >= 50, "motion search found no motion"
    rms = np.array([frame_errors(header, r, drift_frames[r.index], config) for r in replayed])  # (60, C) in steps
    assert np.all(np.isfinite(rms))
    for g in range(3):
        per_frame = rms[20 * g : 20 * (g + 1)].max(axis=1)
        assert per_frame[-5:].max() <= 1.5 * per_frame[:5].max(), (g, per_frame.round(3).tolist())
        # the residual frames are not worse than the GOF's keyframe by more than the dead-zone difference
        assert per_frame[1:].max() <= 2.0 * per_frame[0] + 0.05, (g, per_frame.round(3).tolist())


# --------------------------------------------------------------------------- 4. frame ranges


@pytest.fixture(scope="module")
def gof5_stream():
    spec = SyntheticSpec(shape=(24, 20, 17), feature_channels=3, num_frames=12, occupancy=0.3, motion=1.0, seed=5)
    frames = synthetic(spec)[0]
    data, report = encode_to_bytes(frames, EncoderConfig(gof=5), first_frame=3)
    decoded, sha = decode_all(io.BytesIO(data))
    assert sha == report.sha256
    assert [d.frame_type for d in decoded] == ["intra", *["residual"] * 4] * 2 + ["intra", "residual"]
    return data, decoded


@pytest.mark.parametrize("seekable", [True, False], ids=["file", "pipe"])
@pytest.mark.parametrize("want", [(5, 12), (9, 11), (10, 15), (11, 12), (4, 5), (8, 15), (14, 15)])
def test_range_starting_mid_gof_equals_full_decode(gof5_stream, seekable, want):
    """Frames 3..14 in GOFs 3-7 | 8-12 | 13-14; ranges start at residual frames of every GOF."""
    data, decoded = gof5_stream
    rng = range(*want)
    src = io.BytesIO(data) if seekable else Pipe(data)
    part, _ = decode_all(src, rng)
    assert [p.index for p in part] == list(rng)
    full = {d.index: d for d in decoded}
    assert [p.frame_type for p in part] == [full[i].frame_type for i in rng]
    assert frame_shas(part) == frame_shas([full[i] for i in rng])


def test_range_with_reused_buffers(gof5_stream):
    data, decoded = gof5_stream
    got = []
    for item in Decoder(io.BytesIO(data)).frames(range(10, 15), reuse_buffers=True):
        assert isinstance(item, DecodedFrame)
        got.append(frames_sha256([item.frame]))  # hash now: the arrays are reused
    assert got == frame_shas(decoded[7:12])


# --------------------------------------------------------------------------- 5. damaged chunk


@pytest.fixture(scope="module")
def damaged_stream(tmp_path_factory):
    """12 frames in 3 GOFs of 4; one byte flipped in the middle of the 2nd GOF chunk."""
    spec = SyntheticSpec(shape=(24, 24, 24), feature_channels=3, num_frames=12, occupancy=0.3, motion=1.0, seed=7)
    frames = synthetic(spec)[0]
    data, report = encode_to_bytes(frames, EncoderConfig(gof=4))
    clean, sha = decode_all(io.BytesIO(data))
    assert sha == report.sha256
    entries = StreamReader(io.BytesIO(data)).read_index()
    assert [(e.first_frame, e.num_frames) for e in entries] == [(0, 4), (4, 4), (8, 4)]
    bad = bytearray(data)
    pos = (entries[1].offset + entries[2].offset) // 2
    bad[pos] ^= 0x5A
    d = tmp_path_factory.mktemp("damaged")
    (d / "bad.rerf").write_bytes(bytes(bad))
    return bytes(bad), clean, entries, d


@pytest.mark.parametrize("seekable", [True, False], ids=["file", "pipe"])
def test_skip_damaged_library(damaged_stream, seekable):
    bad, clean, entries, _ = damaged_stream
    src = io.BytesIO(bad) if seekable else Pipe(bad)
    items = list(Decoder(src).frames(skip_damaged=True))
    damaged = [i for i in items if isinstance(i, DamagedFrames)]
    assert len(damaged) == 1
    assert damaged[0].frames == range(4, 8)
    assert damaged[0].offset == entries[1].offset
    assert "CRC32" in damaged[0].reason
    good = [i for i in items if isinstance(i, DecodedFrame)]
    assert [g.index for g in good] == [0, 1, 2, 3, 8, 9, 10, 11]
    assert frame_shas(good) == frame_shas(clean[:4] + clean[8:])
    with pytest.raises(RerfFormatError, match="CRC32"):
        decode_all(io.BytesIO(bad))


def test_skip_damaged_range_after_damage(damaged_stream):
    """A range after the damaged GOF seeks past it and reports nothing."""
    bad, clean, _, _ = damaged_stream
    items = list(Decoder(io.BytesIO(bad)).frames(range(9, 12), skip_damaged=True))
    assert all(isinstance(i, DecodedFrame) for i in items)
    assert frame_shas(items) == frame_shas(clean[9:12])


def test_cli_decode_skip_damaged(damaged_stream):
    _, clean, entries, d = damaged_stream
    out = d / "out_skip"
    res = run_cli("decode", d / "bad.rerf", "-o", out, "--skip-damaged", "--json")
    assert res.exit_code == 0, res.stderr
    assert "Traceback" not in res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1, res.stderr
    assert "4:8" in warnings[0] and "damaged" in warnings[0] and "CRC32" in warnings[0], warnings[0]
    doc = json.loads(res.stdout)
    assert doc["damaged_frames"] == [4, 5, 6, 7]
    assert doc["damaged"][0]["frames"] == [4, 8] and doc["damaged"][0]["offset"] == entries[1].offset
    meta = read_meta(out)
    assert meta.extra.get("damaged_frames") == [4, 5, 6, 7]
    written = [read_frame(out, i, meta) for i in range(12)]
    assert all(isinstance(f, GridFrame) for f in written)
    shas = [frames_sha256([f]) for f in written]
    clean_shas = frame_shas(clean)
    assert shas[:4] == clean_shas[:4] and shas[8:] == clean_shas[8:]
    assert shas[4:8] == [clean_shas[3]] * 4  # concealed by freezing on the last good frame


def test_cli_decode_damaged_fails_cleanly(damaged_stream):
    _, _, _, d = damaged_stream
    work = d / "strict"
    work.mkdir()
    out = work / "out"
    res = run_cli("decode", d / "bad.rerf", "-o", out)
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("rerf: error: ") and "CRC32" in lines[0], lines[0]
    assert not out.exists()
    assert list(work.iterdir()) == [], "temporary output left behind"


# --------------------------------------------------------------------------- 6. trainer form


@pytest.fixture(scope="module")
def trainer_dirs(tmp_path_factory):
    """The same sequence as a trainer-form directory (true block motion + residuals) and full frames."""
    spec = SyntheticSpec(shape=(24, 24, 24), feature_channels=3, num_frames=6, occupancy=0.3, motion=1.2, seed=11)
    frames, motion = synthetic(spec)
    meta = make_meta(spec.shape, spec.feature_channels, spec.num_frames)
    d = tmp_path_factory.mktemp("trainer")
    items: list[tuple[int, GridFrame | TrainerFrame]] = [(0, frames[0])]
    resolved = frames[0]
    for t in range(1, spec.num_frames):
        warped = warp_previous(resolved, motion[t])
        rd = frames[t].density - warped.density
        rf = frames[t].features - warped.features
        items.append((t, TrainerFrame(motion[t], rd, rf)))
        resolved = GridFrame(warped.density + rd, warped.features + rf)
    write_sequence(d / "trainer", meta, items)
    full = list(iter_full_frames(d / "trainer"))
    write_sequence(d / "full", meta, full)
    assert isinstance(read_frame(d / "trainer", 3, meta), TrainerFrame)
    assert isinstance(read_frame(d / "full", 3, meta), GridFrame)
    return d, motion


@pytest.mark.parametrize("motion_mode", ["search", "trainer"])
@pytest.mark.parametrize("form", ["trainer", "full"])
def test_encode_trainer_and_full_forms(trainer_dirs, form, motion_mode):
    d, true_motion = trainer_dirs
    out = d / f"{form}-{motion_mode}.rerf"
    # "trainer" motion is checked vector by vector below: every block inter (no skip/intra modes)
    config = EncoderConfig(gof=6, motion=motion_mode, block_modes=motion_mode != "trainer")
    report = encode_sequence(d / form, out, config, force=True)
    data = out.read_bytes()
    _, sha = decode_all(io.BytesIO(data))
    assert sha == report.sha256
    _, replayed = replay_stream(data)
    assert frames_sha256(r.frame for r in replayed) == sha
    if form == "trainer" and motion_mode == "trainer":
        # the trainer's motion is used as is, quantised to eighths of a voxel
        for r in replayed[1:]:
            ix, iy, iz = block_coords(r.mask)
            want = np.clip(np.round(true_motion[r.index][:, ix, iy, iz].T.astype(np.float64) * MV_UNIT), -MAX_MV, MAX_MV)
            assert np.array_equal(r.mv, want.astype(np.int64)), r.index
    # `rerf decode` writes full frames whatever the input form was
    dec_dir = d / f"dec-{form}-{motion_mode}"
    res = run_cli("decode", out, "-o", dec_dir, "--force")
    assert res.exit_code == 0, res.stderr
    meta = read_meta(dec_dir)
    back = [read_frame(dec_dir, i, meta) for i in meta.frame_indices]
    assert all(isinstance(f, GridFrame) for f in back)
    assert frames_sha256(back) == sha


def test_trainer_form_is_only_a_storage_form(trainer_dirs):
    """Without trainer motion in play the two forms encode to the same bits; motion="trainer"
    on full frames falls back to the search."""
    d, _ = trainer_dirs
    enc = {}
    for form, mode in [("trainer", "zero"), ("full", "zero"), ("full", "search"), ("full", "trainer")]:
        out = d / f"same-{form}-{mode}.rerf"
        encode_sequence(d / form, out, EncoderConfig(gof=3, motion=mode), force=True)
        enc[form, mode] = out.read_bytes()
    assert enc["trainer", "zero"] == enc["full", "zero"]
    # the header records the motion mode; the GOF chunks must agree byte for byte
    assert _gof_chunks(enc["full", "search"]) == _gof_chunks(enc["full", "trainer"])


def _gof_chunks(data: bytes) -> list[bytes]:
    return [data[g.offset : g.offset + g.size] for g in StreamReader(io.BytesIO(data)).iter_gofs()]


# --------------------------------------------------------------------------- 7. GOF structure


@pytest.fixture(scope="module")
def ten_frames() -> list[GridFrame]:
    spec = SyntheticSpec(shape=(16, 24, 20), feature_channels=2, num_frames=10, occupancy=0.3, motion=1.0, seed=13)
    return synthetic(spec)[0]


@pytest.mark.parametrize("gof", [1, 3, 4, 10, 20])
def test_gof_structure_and_independent_decoding(ten_frames, gof):
    data, report = encode_to_bytes(ten_frames, EncoderConfig(gof=gof))
    decoded, sha = decode_all(io.BytesIO(data))
    assert sha == report.sha256
    reader = StreamReader(io.BytesIO(data))
    entries = reader.read_index()
    t = len(ten_frames)
    assert len(entries) == math.ceil(t / gof)
    assert [e.first_frame for e in entries] == list(range(0, t, gof))
    assert [e.num_frames for e in entries] == [min(gof, t - s) for s in range(0, t, gof)]
    full = frame_shas(decoded)
    # every GOF alone, in reverse order (nothing carried over from a previous GOF)
    for e in reversed(entries):
        chunk = reader.read_gof_at(e)
        assert chunk.frames[0].frame_type == FRAME_INTRA
        assert all(r.frame_type == FRAME_RESIDUAL for r in chunk.frames[1:])
        alone = list(decode_gof(chunk, reader.header))
        assert [a.index for a in alone] == list(range(e.first_frame, e.first_frame + e.num_frames))
        assert frame_shas(alone) == full[e.first_frame : e.first_frame + e.num_frames]


def _with_huge_frame(frames: list[GridFrame], k: int) -> list[GridFrame]:
    out = list(frames)
    out[k] = GridFrame(frames[k].density, frames[k].features * np.float32(40.0))
    return out


@pytest.mark.parametrize("target_kbpf", [None, 3.0], ids=["fixed-quality", "rate-control"])
def test_lattice_overflow_starts_a_new_gof(ten_frames, target_kbpf):
    """Frame 3 is 40× larger than the GOF's keyframe: the GOF ends early, frame 3 starts a
    new one (with its own lattice) and the frames after it stay in that GOF."""
    frames = _with_huge_frame(ten_frames[:6], 3)
    config = EncoderConfig(gof=6, target_kbpf=target_kbpf)
    data, report = encode_to_bytes(frames, config)
    decoded, sha = decode_all(io.BytesIO(data))
    assert sha == report.sha256
    gofs = list(StreamReader(io.BytesIO(data)).iter_gofs())
    assert [(g.first_frame, g.num_frames) for g in gofs] == [(0, 3), (3, 3)]
    assert [d.frame_type for d in decoded] == ["intra", "residual", "residual", "intra", "residual", "residual"]
    assert gofs[1].channels[1].exponent < gofs[0].channels[1].exponent
    if target_kbpf is None:
        header, replayed = replay_stream(data)
        for r in replayed:
            frame_errors(header, r, frames[r.index], config)
    big = frames[3].features
    occ = frames[3].density > StreamReader(io.BytesIO(data)).header.occupancy_threshold  # voxels in occupied blocks
    assert occ.any()
    # quantisation error only (a few steps of range/40), nothing like the clamp (which would lose ~15/16 of the peak)
    assert np.abs(decoded[3].frame.features - big)[:, occ].max() <= 0.15 * np.abs(big).max()
