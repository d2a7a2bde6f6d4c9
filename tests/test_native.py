"""The compiled decode path gives the numpy reference path's bits, everywhere.

* every conformance vector decodes to its stored hash on both paths;
* encoding (whose closed loop reconstructs with the enabled path) writes the same bytes and
  the same reconstruction hash on both paths, for intra-only, residual and block-mode streams;
* a fuzz corpus of damaged streams (bit flips and byte changes inside GOF payloads, CRCs
  fixed so the payload parser sees them) gives the same outcome on both: the same frames, or a
  RerfFormatError with the same message;
* the model tables follow FORMAT.md §9.1 and the C range decoder returns constriction's
  symbols;
* without the library the numpy path runs, after one notice line; ``RERF_DECODER=numpy``
  forces it, ``RERF_DECODER=native`` insists on the compiled one.
"""

from __future__ import annotations

import importlib.util
import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import encode_to_bytes

from rerf_codec import bitstream as bs
from rerf_codec.codec import native
from rerf_codec.codec.decoder import decode_all
from rerf_codec.codec.encoder import EncoderConfig
from rerf_codec.codec.entropy import SymbolDecoder, SymbolEncoder, Table
from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.grids import GridFrame
from rerf_codec.synthetic import SyntheticSpec, synthetic_frames

pytestmark = pytest.mark.skipif(not native.available(), reason="the compiled decoder is not built (pip install -e .)")

_ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_conformance", _ROOT / "bitstreams" / "make_conformance.py")
assert _spec is not None and _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, mc)
_spec.loader.exec_module(mc)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_format_doc as spec  # noqa: E402


def on_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setenv(native.ENV, path)


def both(monkeypatch: pytest.MonkeyPatch, fn):  # type: ignore[no-untyped-def]
    """``fn()`` on the numpy path and on the compiled path."""
    out = []
    for path in ("numpy", "native"):
        on_path(monkeypatch, path)
        assert native.enabled() == (path == "native")
        out.append(fn())
    return out


def outcome(data: bytes) -> str:
    try:
        return decode_all(io.BytesIO(data))[1]
    except RerfFormatError as exc:
        return f"error: {exc}"


@pytest.mark.parametrize("case", sorted(p.name for p in mc.ROOT.iterdir() if p.is_dir()))
def test_conformance_vectors_on_both_paths(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    d = mc.ROOT / case
    data = (d / "stream.rerf").read_bytes()
    expected = (d / "decoded.sha256").read_text().strip()
    assert both(monkeypatch, lambda: decode_all(io.BytesIO(data))[1]) == [expected, expected]


def _synthetic(n: int, seed: int) -> list[GridFrame]:
    spec_ = SyntheticSpec(shape=(40, 32, 24), feature_channels=5, num_frames=n, seed=seed, occupancy=0.3)
    return [GridFrame(d, f) for d, f, _ in synthetic_frames(spec_)]


@pytest.mark.parametrize(
    "config",
    [
        EncoderConfig(gof=1),
        EncoderConfig(gof=4, block_modes=False, coeff_mode=0),
        EncoderConfig(gof=4),
        EncoderConfig(gof=4, quality=95, motion="zero"),
    ],
    ids=["intra", "residual-bands", "block-modes", "q95-zero-motion"],
)
def test_encoding_is_the_same_on_both_paths(monkeypatch: pytest.MonkeyPatch, config: EncoderConfig) -> None:
    frames = _synthetic(4, seed=3)
    (a, ra), (b, rb) = both(monkeypatch, lambda: encode_to_bytes(frames, config))
    assert a == b and ra.sha256 == rb.sha256
    assert both(monkeypatch, lambda: outcome(a)) == [ra.sha256, ra.sha256]


def test_block_mode_scene_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    d, f = mc.mode_scene(frames=4)
    frames = [GridFrame(d[t], f[t]) for t in range(4)]
    (a, ra), (b, rb) = both(monkeypatch, lambda: encode_to_bytes(frames, EncoderConfig(gof=4)))
    assert a == b and ra.sha256 == rb.sha256


def _gof_chunks(data: bytes) -> list[tuple[int, int]]:
    """(payload offset, payload size) of every GOF chunk."""
    reader = bs.StreamReader(io.BytesIO(data))
    out = []
    for g in reader.iter_gofs():
        assert isinstance(g, bs.GofChunk)
        out.append((g.offset + bs.CHUNK_HEAD.size, g.size - bs.CHUNK_HEAD.size - 4))
    return out


def _fix_crc(data: bytearray, start: int, size: int) -> None:
    struct.pack_into("<I", data, start + size, zlib.crc32(bytes(data[start : start + size])))


def test_fuzz_corpus_gives_the_same_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = [encode_to_bytes(_synthetic(3, seed=5), EncoderConfig(gof=3))[0]]
    d, f = mc.mode_scene(frames=3)
    corpus.append(encode_to_bytes([GridFrame(d[t], f[t]) for t in range(3)], EncoderConfig(gof=3, coeff_mode=0))[0])
    rng = np.random.default_rng(7)
    errors = same = 0
    for base in corpus:
        chunks = _gof_chunks(base)
        for _ in range(60):
            data = bytearray(base)
            start, size = chunks[int(rng.integers(len(chunks)))]
            for _ in range(int(rng.integers(1, 4))):
                i = start + int(rng.integers(bs.GOF_HEAD.size, size))
                if rng.random() < 0.5:
                    data[i] ^= 1 << int(rng.integers(8))
                else:
                    data[i] = int(rng.integers(256))
            _fix_crc(data, start, size)
            a, b = both(monkeypatch, lambda data=bytes(data): outcome(data))
            assert a == b
            errors += a.startswith("error")
            same += not a.startswith("error")
    assert errors > 20 and same > 0  # the corpus exercises both outcomes


def test_model_tables_follow_the_spec() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 86))
        counts = tuple(int(c) for c in rng.integers(0, 1 << int(rng.integers(1, 25)), n))
        if not sum(counts):
            continue
        assert native.count_cdf(counts).tolist() == spec.spec_count_cdf(counts)
    for p1 in range(1, 256):
        assert native.binary_cdf(p1).tolist() == spec.spec_cdf([(256 - p1) / 256, p1 / 256])
    assert native.uniform_cdf(256).tolist() == [i << 16 for i in range(257)]


def test_range_decoder_matches_constriction(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    for _ in range(30):
        tables = []
        enc = SymbolEncoder()
        symbols = []
        for _ in range(int(rng.integers(1, 6))):
            lo = int(rng.integers(-42, 0))
            hi = int(rng.integers(lo + 1, 43))
            counts = tuple(int(c) for c in rng.integers(1, 5000, hi - lo + 1))
            t = Table(lo, hi, counts)
            s = rng.integers(lo, hi + 1, int(rng.integers(0, 400))).astype(np.int32)
            enc.encode(s, t)
            tables.append(t)
            symbols.append(s)
        data = enc.finish()

        def run(data: bytes = data, tables: list[Table] = tables, symbols: list[np.ndarray] = symbols) -> list[list[int]]:
            dec = SymbolDecoder(data)
            return [dec.decode(s.size, t).tolist() for s, t in zip(symbols, tables, strict=True)]

        a, b = both(monkeypatch, run)
        assert a == b == [s.tolist() for s in symbols]
    # the invalid-data check of §9.1 step 3
    on_path(monkeypatch, "native")
    with pytest.raises(RerfFormatError, match="range decoder"):
        SymbolDecoder(b"\xff\xff\xff\xff" * 2).decode(1, Table(0, 1, (1, 0)))


def test_numpy_path_without_the_library(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(native.ENV, raising=False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_load_error", "not built (test)")
    monkeypatch.setattr(native, "_noticed", False)
    assert native.enabled() is False and native.enabled() is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "numpy path" in err and "not built (test)" in err
    data = (mc.ROOT / "block_modes" / "stream.rerf").read_bytes()
    assert decode_all(io.BytesIO(data))[1] == (mc.ROOT / "block_modes" / "decoded.sha256").read_text().strip()
    monkeypatch.setenv(native.ENV, "native")
    with pytest.raises(RerfUsageError, match="compiled decoder is unavailable"):
        native.enabled()
