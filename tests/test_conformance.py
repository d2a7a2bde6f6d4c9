"""Conformance vectors (STYLE.md lesson 6): every stored stream decodes to its stored SHA-256, forever.

``bitstreams/conformance/<case>/`` is written once by ``bitstreams/make_conformance.py`` with
``RERF_GENERATE_EXPECTED=1``; a missing file fails here with the command that writes it, and
nothing is ever regenerated silently. Besides decoding, the stored inputs are re-encoded with the
stored config and must give the stored bytes (encoder determinism; when the encoder changes on
purpose, add a new case rather than rewriting a released one).
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from rerf_codec.bitstream import GOF_REASON_MAX_LENGTH, GOF_REASON_UNKNOWN, StreamReader
from rerf_codec.codec.decoder import Decoder, decode_all
from rerf_codec.grids import frames_sha256

_SCRIPT = Path(__file__).resolve().parents[1] / "bitstreams" / "make_conformance.py"
_spec = importlib.util.spec_from_file_location("make_conformance", _SCRIPT)
assert _spec is not None and _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mc  # dataclasses look their module up while the script runs
_spec.loader.exec_module(mc)

MAX_STREAM_BYTES = 100_000
MAX_TOTAL_BYTES = 400_000


def _case_names() -> list[str]:
    stored = {p.name for p in mc.ROOT.iterdir() if p.is_dir()} if mc.ROOT.is_dir() else set()
    return sorted(set(mc.CASES) | stored)


CASE_NAMES = _case_names()


@pytest.fixture(params=CASE_NAMES)
def case_dir(request) -> Path:
    name = request.param
    missing = mc.missing_files(name)
    if missing and name in mc.CASES and os.environ.get(mc.GENERATE_ENV) == "1":
        mc.write_case(name)  # writes only missing or incomplete cases
        missing = mc.missing_files(name)
    if missing:
        pytest.fail(
            f"conformance case {name!r} is missing {', '.join(missing)} in {mc.case_dir(name)}; "
            f"write it once with: {mc.REGENERATE_HINT}"
        )
    return mc.case_dir(name)


def test_decodes_to_the_stored_sha256(case_dir):
    expected = (case_dir / "decoded.sha256").read_text().strip()
    assert len(expected) == 64 and int(expected, 16) >= 0
    with open(case_dir / "stream.rerf", "rb") as f:
        frames, sha = decode_all(f)
    assert sha == expected, f"{case_dir.name}: decoded grids changed — a released stream must decode forever"
    assert frames_sha256(d.frame for d in frames) == expected
    config = json.loads((case_dir / "config.json").read_text())
    seq = config["sequence"]
    first = seq.get("first_frame", 0)
    assert [d.index for d in frames] == list(range(first, first + seq["num_frames"]))
    for d in frames:
        assert d.frame.density.shape == tuple(seq["grid_shape"])
        assert d.frame.features.shape == (seq["feature_channels"], *seq["grid_shape"])


def test_decodes_from_a_non_seekable_stream_and_mid_sequence(case_dir):
    data = (case_dir / "stream.rerf").read_bytes()
    full, sha = decode_all(io.BytesIO(data))

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self._b = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buf) -> int:
            chunk = self._b.read(min(len(buf), 4096))
            buf[: len(chunk)] = chunk
            return len(chunk)

    assert decode_all(Pipe())[1] == sha
    if len(full) > 1:
        part, _ = decode_all(io.BytesIO(data), range(full[1].index, full[-1].index + 1))
        assert frames_sha256(p.frame for p in part) == frames_sha256(d.frame for d in full[1:])


def test_reencoding_the_inputs_is_deterministic_and_closed_loop(case_dir):
    """The stored stream is the contract for decoders (decode test above). The encoder may
    improve over time, so re-encoding is checked for determinism and for its closed loop,
    not for byte equality with the stored stream."""
    case = mc.load_case(case_dir)
    data, report = mc.encode_case(case)
    again, report2 = mc.encode_case(case)
    assert data == again and report.sha256 == report2.sha256, f"{case_dir.name}: the encoder is not deterministic"
    _, sha = decode_all(io.BytesIO(data))
    assert sha == report.sha256, f"{case_dir.name}: encoder reconstruction != decoder output"


def test_header_carries_config_and_tensors(case_dir):
    case = mc.load_case(case_dir)
    with open(case_dir / "stream.rerf", "rb") as f:
        dec = Decoder(f)
        header = dec.header
        meta = dec.sequence_meta()
    assert header.num_frames == case.meta.num_frames and header.first_frame == case.meta.first_frame
    assert header.grid_shape == tuple(case.meta.grid_shape)
    assert header.gof_size == case.encoder.gof
    assert meta.grid_shape == case.meta.grid_shape
    recorded = header.meta["encoder"]
    for key, value in json.loads((case_dir / "config.json").read_text())["encoder"].items():
        if not (key == "occupancy_threshold" and value is None):
            assert recorded[key] == value, key
    assert sorted(header.tensors) == sorted(case.tensors)
    for name, arr in case.tensors.items():
        got = header.tensors[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape
        assert np.array_equal(got, arr)
    with open(case_dir / "stream.rerf", "rb") as f:
        gofs = list(StreamReader(f).iter_gofs())
    assert all(g.num_frames <= case.encoder.gof for g in gofs)
    for g, after in itertools.pairwise(gofs):  # a GOF ended early says why (format 1.2)
        if after.frames[0].gof_reason in (GOF_REASON_UNKNOWN, GOF_REASON_MAX_LENGTH):
            assert g.num_frames == case.encoder.gof


def test_vector_sizes():
    total = 0
    for name in CASE_NAMES:
        d = mc.case_dir(name)
        if not d.is_dir():
            continue
        stream = d / "stream.rerf"
        if stream.is_file():
            assert stream.stat().st_size <= MAX_STREAM_BYTES, name
        total += sum(p.stat().st_size for p in d.iterdir() if p.is_file())
    assert total <= MAX_TOTAL_BYTES


def test_generator_refuses_to_write_without_the_flag(monkeypatch, tmp_path):
    monkeypatch.delenv(mc.GENERATE_ENV, raising=False)
    with pytest.raises(RuntimeError, match=mc.GENERATE_ENV):
        mc.write_case(next(iter(mc.CASES)), tmp_path)
    assert mc.main(["--root", str(tmp_path)]) == 1  # reports what is missing, writes nothing
    assert not any(tmp_path.iterdir())
