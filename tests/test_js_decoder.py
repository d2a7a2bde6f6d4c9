"""The JavaScript decoder (rerf_codec/web/decoder) against the Python reference decoder.

* ``node --test``: every conformance vector decodes to its recorded SHA-256 under Node;
* ``rerf verify --decoder both`` agrees on the vectors and on streams encoded here (intra,
  residual in both coefficient modes, odd shapes, 32 channels, MLP tensors);
* differential fuzz: mutated streams (CRCs recomputed) give the same SHA-256 or a format
  error in both decoders, never another exception or a hang, and reach deep into frames;
* format 1.2 (when this tree's Python writes it): streams with inter/skip/intra blocks in both
  coefficient modes and GOFs started for every reason (first, max-length, cost, listed,
  lattice) decode to the same SHA-256 in both decoders, the JS stream reports each GOF's start
  reason as Python reads it, and the fuzz mutates block-mode streams too (modes section included);
* HTTP Range: decoding frames k..k+1 from a local server fetches only the footer, index,
  header and the GOF(s) holding them; a server without Range support still works.

Needs Node.js 20+ (``.ci/run`` installs it); without it these tests skip, except under CI
(``CI`` or ``RERF_REQUIRE_NODE`` set), where a missing Node is a failure.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import encode_to_bytes, make_meta

from rerf_codec import bitstream as bs
from rerf_codec.bitstream import CHANNEL_PARAMS, CHUNK_HEAD, FILE_HEADER, GOF_HEAD, StreamReader
from rerf_codec.codec.decoder import Decoder, decode_all
from rerf_codec.codec.encoder import EncoderConfig, encode_frames
from rerf_codec.errors import RerfFormatError
from rerf_codec.grids import GridFrame, update_frame_hash
from rerf_codec.web.node_runner import DECODER_DIR, NodeDecoder, find_node
from rerf_codec.web.verify import verify_streams

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "bitstreams" / "conformance"
NODE = find_node()
FORMAT_12 = hasattr(bs, "FRAME_FLAG_BLOCK_MODES")
"""This tree's Python reads and writes format 1.2 (block modes, GOF start reasons)."""
FIXED_GOFS: dict[str, bool] = {"gof_fixed": True} if FORMAT_12 else {}
"""Encoder option for GOFs of exactly ``gof`` frames (from 1.2 on ``gof`` is a maximum)."""

if NODE is None:
    if os.environ.get("CI") or os.environ.get("RERF_REQUIRE_NODE"):
        raise RuntimeError("Node.js 20+ is required for the JS decoder tests (CI)")
    pytestmark = pytest.mark.skip(reason="Node.js 20+ not found on PATH (.ci/run installs it)")


# --------------------------------------------------------------------------- streams


def _ball(shape: tuple[int, int, int], channels: int, frames: int, seed: int, step: float = 1.25) -> list[GridFrame]:
    """A textured ball moving by ``step`` voxels per frame along x (fractional motion)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    out = []
    for t in range(frames):
        cx, cy, cz = shape[0] * 0.4 + step * t, shape[1] * 0.5 - 0.5 * t, shape[2] * 0.5
        r2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        d = 14.0 * np.exp(-r2 / (0.06 * shape[0] ** 2)) - 3.0 + rng.normal(0, 0.2, shape)
        f = np.stack([np.sin(0.6 * (x - cx) + c) * np.cos(0.4 * (y - cy) - c) + 0.05 * z for c in range(channels)])
        f += rng.normal(0, 0.02, f.shape)
        out.append(GridFrame(d.astype(np.float32), f.astype(np.float32)))
    return out


def _mode_scene(
    shape: tuple[int, int, int], channels: int, frames: int, seed: int, phase: float = 0.0, speed: float = 1.5
) -> list[GridFrame]:
    """Content for every block mode of format 1.2: a still textured slab (skip), a moving ball
    (inter) and one block of fresh noise every frame (intra)."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    out = []
    for t in range(frames):
        d = np.full(shape, -20.0)
        f = np.zeros((channels, *shape))
        slab = (x < 8) & (y < 8)
        d[slab] = 5.0
        pattern = np.sin(0.5 * x + 0.3 * y + 0.2 * z + phase)
        f[:, slab] = (pattern[None] * (1 + np.arange(channels))[:, None, None, None])[:, slab]
        cx, cy, cz = shape[0] - 10 + speed * t, shape[1] / 2 - 0.375 * t, shape[2] / 2
        ball = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < 25
        d[ball] = 8.0
        for c in range(channels):
            f[c][ball] = (np.sin(0.7 * (x - cx) + c + phase) * np.cos(0.5 * (y - cy)))[ball]
        fresh = (x >= 8) & (x < 16) & (y >= 8) & (z < 8)
        d[fresh] = 6.0
        f[:, fresh] = np.random.default_rng(seed * 100 + t).normal(0, 1.0, (channels, *shape))[:, fresh]
        out.append(GridFrame(d.astype(np.float32), f.astype(np.float32)))
    return out


def _flipped(frames: list[GridFrame]) -> list[GridFrame]:
    """Unrelated-looking content (a cut): mirrored, louder features."""
    return [
        GridFrame(np.ascontiguousarray(g.density[::-1, ::-1]), np.ascontiguousarray(3.0 * g.features[:, ::-1, ::-1]))
        for g in frames
    ]


def _encode_12(
    frames: list[GridFrame], config: EncoderConfig, keyframes: tuple[int, ...] = (), first_frame: int = 0
) -> tuple[bytes, object]:
    meta = make_meta(frames[0].density.shape, frames[0].features.shape[0], len(frames), first_frame)
    if keyframes:
        meta = dataclasses.replace(meta, keyframes=keyframes)  # type: ignore[call-arg]
    buf = io.BytesIO()
    report = encode_frames(meta, list(enumerate(frames, start=first_frame)), buf, config)
    return buf.getvalue(), report


def _streams_12(small: bool = False) -> dict[str, tuple[bytes, object]]:
    """Format 1.2 streams: block modes in both coefficient modes, odd shapes, and GOFs started
    for every reason. ``small``: fuzz-sized ones (a few ms per decode)."""
    grow = _mode_scene((20, 12, 9), 2, 4, 3)
    grow = [GridFrame(f.density * (1 + 3 * t), f.features * 4.0**t) for t, f in enumerate(grow)]
    if small:
        specs = {
            "f12_modes1": (_mode_scene((20, 12, 9), 2, 3, 21), EncoderConfig(gof=3, gof_fixed=True, quality=70), ()),
            "f12_modes0": (_mode_scene((20, 12, 9), 2, 3, 22, 0.5), EncoderConfig(gof=3, gof_fixed=True, coeff_mode=0), ()),
            "f12_reasons": (_mode_scene((20, 12, 9), 1, 6, 23), EncoderConfig(gof=3, gof_fixed=True, quality=50), (4,)),
        }
    else:
        cut = _mode_scene((24, 16, 16), 3, 3, 4) + _flipped(_mode_scene((24, 16, 16), 3, 3, 5, 1.0))
        specs = {
            "f12_modes_ctx": (_mode_scene((32, 16, 16), 2, 4, 0), EncoderConfig(gof=4), ()),
            "f12_modes_bands": (_mode_scene((32, 16, 16), 2, 4, 1, 0.5), EncoderConfig(gof=4, coeff_mode=0, quality=70), ()),
            "f12_modes_odd": (_mode_scene((29, 19, 13), 5, 5, 2, 0.3, -1.25), EncoderConfig(gof=5, quality=80), ()),
            "f12_cut": (cut, EncoderConfig(gof=20, coeff_mode=0), ()),
            "f12_max_listed": (_mode_scene((20, 12, 9), 1, 7, 1), EncoderConfig(gof=3, gof_fixed=True, quality=50), (4,)),
            "f12_lattice": (grow, EncoderConfig(gof=8, gof_fixed=True, quality=50), ()),
            "f12_no_modes": (_mode_scene((32, 16, 16), 2, 3, 6), EncoderConfig(gof=3, block_modes=False), ()),  # type: ignore[call-arg]
        }
    return {name: _encode_12(frames, cfg, keys) for name, (frames, cfg, keys) in specs.items()}


def _encoded_streams() -> dict[str, bytes]:
    tensors = {
        "l0.weight": np.random.default_rng(3).normal(size=(8, 13)).astype(np.float32),
        "l0.bias": np.arange(8, dtype=np.float16),
        "steps": np.array([1, 2, 3], dtype=np.int64),
    }
    specs = {
        "intra_odd": (_ball((21, 13, 10), 3, 3, 1), EncoderConfig(quality=80, gof=1), None),
        "residual_mode1": (_ball((24, 16, 12), 4, 5, 2), EncoderConfig(quality=75, gof=5), None),
        "residual_mode0": (_ball((17, 16, 9), 2, 4, 4, step=-0.625), EncoderConfig(quality=70, gof=2, coeff_mode=0), None),
        "ch32": (_ball((9, 10, 11), 32, 2, 5), EncoderConfig(quality=90, gof=2), None),
        "tensors": (_ball((16, 8, 8), 2, 2, 6), EncoderConfig(quality=60, gof=2), tensors),
    }
    return {name: encode_to_bytes(frames, cfg, tensors=t)[0] for name, (frames, cfg, t) in specs.items()}


@pytest.fixture(scope="module")
def streams_12() -> dict[str, tuple[bytes, object]]:
    """Format 1.2 streams with their encode reports (empty when this tree has no 1.2)."""
    return _streams_12() if FORMAT_12 else {}


@pytest.fixture(scope="module")
def streams(streams_12: dict[str, tuple[bytes, object]]) -> dict[str, bytes]:
    return {**_encoded_streams(), **{name: data for name, (data, _) in streams_12.items()}}


def test_this_tree_writes_format_12_when_its_vectors_are_here() -> None:
    """The 1.2 checks below run whenever this tree has format 1.2: its vectors imply its encoder."""
    if (CONFORMANCE / "block_modes").is_dir() or "version 1.2" in (ROOT / "bitstreams" / "FORMAT.md").read_text()[:200]:
        assert FORMAT_12, "format 1.2 vectors/spec but no block modes in rerf_codec.bitstream"
    else:
        pytest.skip("format 1.2 (block modes) is not in this tree yet")


# --------------------------------------------------------------------------- node --test and verify


def test_node_test_conformance_vectors() -> None:
    """``node --test`` over the JS test suite: every vector, every reading mode."""
    proc = subprocess.run(
        [NODE or "node", "--test", str(DECODER_DIR / "test")], capture_output=True, text=True, timeout=120,
        env={**os.environ, "RERF_CONFORMANCE": str(CONFORMANCE)},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = int(re.search(r"^# pass (\d+)", proc.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert passed >= 3 * len(list(CONFORMANCE.iterdir()))


def test_verify_both_agrees_on_vectors_and_encoded_streams(streams: dict[str, bytes], tmp_path: Path) -> None:
    paths = sorted(str(p) for p in CONFORMANCE.glob("*/stream.rerf"))
    for name, data in streams.items():
        (tmp_path / f"{name}.rerf").write_bytes(data)
        paths.append(str(tmp_path / f"{name}.rerf"))
    report = verify_streams(paths, ("python", "js"))
    bad = [s for s in report["streams"] if s["verdict"] != "agree"]
    assert not bad, json.dumps(bad, indent=1)[:3000]
    assert report["exit_code"] == 0
    for s in report["streams"]:
        if s["path"].startswith(str(CONFORMANCE)):
            want = (Path(s["path"]).parent / "decoded.sha256").read_text().strip()
            assert s["decoders"]["js"]["sha256"] == want
    # residual frames and both coefficient modes were really exercised
    types = {t for data in streams.values() for t in _frame_types(data)}
    assert types == {1, 2}


def test_verify_cli_exit_codes(streams: dict[str, bytes], tmp_path: Path) -> None:
    good = tmp_path / "good.rerf"
    good.write_bytes(streams["residual_mode1"])
    bad = tmp_path / "bad.rerf"
    bad.write_bytes(streams["residual_mode1"][:-20])
    cmd = [sys.executable, "-c", "from cli.main import main; main()", "verify"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([*cmd, "--json", str(good)], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["streams"][0]["agree"] and set(doc["streams"][0]["decoders"]) == {"python", "js"}
    assert doc["streams"][0]["decoders"]["js"]["frames_per_s"] > 0
    rejected = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, env=env, timeout=120)
    assert rejected.returncode == 2 and "both reject" in rejected.stdout
    no_node = subprocess.run([*cmd, str(good)], capture_output=True, text=True, timeout=120,
                             env={**env, "RERF_NODE": str(tmp_path / "no-node")})
    assert no_node.returncode == 2
    assert no_node.stderr.count("\n") == 1 and no_node.stderr.startswith("rerf: error:") and "Node.js" in no_node.stderr


_REASONS_SCRIPT = """
import fs from 'node:fs';
import {{ openStream }} from {module};
const bytes = new Uint8Array(fs.readFileSync({path}));
const s = await openStream(bytes);
const reasons = (g) => g.map((e) => [e.first_frame, e.start_reason, e.start_reason_id]);
const before = reasons(await s.readStartReasons());
const t = await openStream(bytes, {{ mode: 'stream' }});
const {{ sha256 }} = await t.sha256();
console.log(JSON.stringify({{ before, after: reasons(t.gofs), sha256 }}));
"""


def test_format_12_block_modes_and_gof_reasons(streams_12: dict[str, tuple[bytes, object]], tmp_path: Path) -> None:
    """1.2 streams use every block mode and every GOF reason; the JS decoder hashes them as the
    encoder did and reports each GOF's start reason (name, id) as Python reads it, both up
    front (readStartReasons) and after a streaming decode."""
    if not FORMAT_12:
        pytest.skip("format 1.2 (block modes) is not in this tree yet")
    modes: dict[str, int] = {}
    reasons: set[str] = set()
    for name, (data, report) in streams_12.items():
        for fr in report.frames:  # type: ignore[attr-defined]
            for k, v in (fr.block_modes or {}).items():
                modes[k] = modes.get(k, 0) + v
        gofs = list(StreamReader(io.BytesIO(data)).iter_gofs())
        want = [[g.first_frame, bs.GOF_REASON_NAMES[g.frames[0].gof_reason], g.frames[0].gof_reason] for g in gofs]  # type: ignore[union-attr]
        reasons.update(r for _, r, _ in want)
        flagged = [bool(fr.flags & bs.FRAME_FLAG_BLOCK_MODES) for g in gofs for fr in g.frames]  # type: ignore[union-attr]
        assert any(flagged) == (name != "f12_no_modes"), name
        path = tmp_path / f"{name}.rerf"
        path.write_bytes(data)
        script = _REASONS_SCRIPT.format(module=json.dumps((DECODER_DIR / "stream.js").as_uri()), path=json.dumps(str(path)))
        proc = subprocess.run([NODE or "node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["before"] == out["after"] == want, name
        assert out["sha256"] == report.sha256, name  # type: ignore[attr-defined]
    assert all(modes.get(k, 0) > 0 for k in ("inter", "skip", "intra")), modes
    assert reasons >= {"first", "max-length", "cost", "listed", "lattice"}, reasons


def _frame_types(data: bytes) -> list[int]:
    reader = StreamReader(io.BytesIO(data))
    return [fr.frame_type for gof in reader.iter_gofs() for fr in gof.frames]  # type: ignore[union-attr]


# --------------------------------------------------------------------------- differential fuzz


def _chunks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, payload_size) of every chunk, in order."""
    (_, _, _, _, size, _) = FILE_HEADER.unpack_from(data)
    pos = FILE_HEADER.size + size
    out = []
    while pos + CHUNK_HEAD.size <= len(data) - 12:
        ctype, _, _, psize = CHUNK_HEAD.unpack_from(data, pos)
        out.append((pos, ctype, psize))
        pos += CHUNK_HEAD.size + psize + 4
    return out


def _sections(payload: bytes, n_channels: int) -> list[tuple[int, int]]:
    """(start, length) in the GOF payload of every frame section (the section bytes, no prefix)."""
    _, n, _, _ = GOF_HEAD.unpack_from(payload)
    pos = GOF_HEAD.size + CHANNEL_PARAMS.size * n_channels
    out = []
    for _ in range(n):
        flags = payload[pos + 1]
        pos += 4
        for _ in range(6 if flags & 1 else 5):  # format 1.2: a modes section with the block_modes flag
            (ln,) = struct.unpack_from("<I", payload, pos)
            out.append((pos + 4, ln))
            pos += 4 + ln
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random mutation, with the covering CRC recomputed so the decoders go past it."""
    buf = bytearray(data)
    (_, _, _, _, hsize, _) = FILE_HEADER.unpack_from(buf)
    n_channels = struct.unpack_from("<H", buf, FILE_HEADER.size + 22)[0] + 1
    chunks = _chunks(data)
    gofs = [c for c in chunks if c[1] == 1]
    r = rng.random()
    if r < 0.06:  # sequence header fields (CRC recomputed)
        pos = FILE_HEADER.size + int(rng.integers(0, min(hsize, 100)))
        buf[pos] ^= 1 << int(rng.integers(0, 8))
        struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[FILE_HEADER.size : FILE_HEADER.size + hsize])))
        return bytes(buf)
    if r < 0.09:  # truncation or a damaged index / footer
        cut = int(rng.integers(1, 40))
        return bytes(buf[:-cut])
    off, _, psize = gofs[int(rng.integers(0, len(gofs)))]
    start = off + CHUNK_HEAD.size
    payload = buf[start : start + psize]
    secs = [s for s in _sections(bytes(payload), n_channels) if s[1] > 0]
    kind = rng.random()
    if kind < 0.08 or not secs:  # GOF header, channel parameters or framing
        pos = int(rng.integers(0, min(psize, GOF_HEAD.size + CHANNEL_PARAMS.size * n_channels + 8)))
        payload[pos] ^= 1 << int(rng.integers(0, 8))
    else:
        s0, ln = secs[int(rng.integers(0, len(secs)))]
        op = rng.random()
        if op < 0.6:  # flip 1..3 bits inside one section
            for _ in range(int(rng.integers(1, 4))):
                p = s0 + int(rng.integers(0, ln))
                payload[p] ^= 1 << int(rng.integers(0, 8))
        elif op < 0.85:  # overwrite a byte
            payload[s0 + int(rng.integers(0, ln))] = int(rng.integers(0, 256))
        else:  # zero a run of bytes
            p = s0 + int(rng.integers(0, ln))
            k = int(rng.integers(1, 9))
            payload[p : min(s0 + ln, p + k)] = bytes(min(s0 + ln, p + k) - p)
    buf[start : start + psize] = payload
    struct.pack_into("<I", buf, start + psize, zlib.crc32(bytes(payload)))
    return bytes(buf)


def _python_outcome(data: bytes) -> tuple[str, float]:
    t = time.perf_counter()
    try:
        _, sha = decode_all(io.BytesIO(data))
        out = sha
    except RerfFormatError:
        out = "format-error"
    return out, time.perf_counter() - t


FUZZ_CASES = int(os.environ.get("RERF_FUZZ_CASES", "2000"))


def test_differential_fuzz(streams: dict[str, bytes]) -> None:
    """Mutated streams: both decoders give the same SHA-256 or both reject, nothing else."""
    small = {  # small streams keep a case at a few ms in each decoder
        "res1": (_ball((12, 10, 9), 3, 3, 11), EncoderConfig(quality=85, gof=3)),
        "res0": (_ball((10, 9, 8), 2, 3, 12, step=-0.625), EncoderConfig(quality=75, gof=3, coeff_mode=0)),
        "intra": (_ball((9, 7, 11), 3, 2, 13), EncoderConfig(quality=90, gof=1)),
    }
    bases = [encode_to_bytes(frames, cfg)[0] for frames, cfg in small.values()]
    bases.append(streams["tensors"])
    if FORMAT_12:  # block-mode streams (modes section, two level sets) and GOF reasons
        bases += [data for data, _ in _streams_12(small=True).values()]
    rng = np.random.default_rng(int(os.environ.get("RERF_FUZZ_SEED", "20250601")))
    counts = {"same_hash": 0, "both_reject": 0, "deep": 0}
    failures: list[str] = []
    slowest = 0.0
    with NodeDecoder(timeout=20.0) as js:
        for i in range(FUZZ_CASES):
            data = _mutate(bases[i % len(bases)], rng)
            t = time.perf_counter()
            js.submit(data)  # Node decodes while Python does
            try:
                py, seconds = _python_outcome(data)
            except Exception as exc:
                js.result()
                failures.append(f"case {i}: python raised {type(exc).__name__}: {exc}")
                continue
            got = js.result()
            slowest = max(slowest, seconds, time.perf_counter() - t)
            if "error" in got:
                if got["error"]["type"] != "format":
                    failures.append(f"case {i}: js internal error {got['error']['message']}")
                    continue
                outcome = "format-error"
            else:
                outcome = got["sha256"]
            if outcome != py:
                failures.append(f"case {i}: python {py[:16]} js {outcome[:16]} ({got.get('error', {}).get('message')})")
                continue
            counts["same_hash" if py != "format-error" else "both_reject"] += 1
            counts["deep"] += bool(got.get("deep"))
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"
    assert counts["deep"] >= 0.5 * FUZZ_CASES, counts
    assert counts["same_hash"] >= 0.1 * FUZZ_CASES, counts
    assert slowest < 10.0


# --------------------------------------------------------------------------- HTTP Range


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, data: bytes, ranges: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.data = data
        self.ranges = ranges
        self.log: list[tuple[int, int] | None] = []  # served (start, stop) ranges; None = whole file


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        data = self.server.data
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if not self.server.ranges or not m or (not m.group(1) and not m.group(2)):
            self.server.log.append(None)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if m.group(1):
            start = int(m.group(1))
            stop = min(len(data), int(m.group(2)) + 1) if m.group(2) else len(data)
        else:
            start, stop = max(0, len(data) - int(m.group(2))), len(data)
        if start >= stop:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
        self.server.log.append((start, stop))
        self.send_response(206)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        self.send_header("Content-Length", str(stop - start))
        self.end_headers()
        self.wfile.write(data[start:stop])


@pytest.fixture
def serve() -> Iterator:
    servers: list[_Server] = []

    def start(data: bytes, ranges: bool = True) -> tuple[str, _Server]:
        srv = _Server(data, ranges)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/clip.rerf", srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


_RANGE_SCRIPT = """
import {{ openStream }} from {module};
const s = await openStream({url});
const {{ createSha256, updateFrameHash }} = await import({sha});
const h = createSha256();
const got = [];
for await (const f of s.frames({{ start: {start}, end: {end} }})) {{ updateFrameHash(h, f); got.push(f.index); }}
console.log(JSON.stringify({{ frames: got, sha256: h.hexdigest(), seekable: s.seekable, stats: s.stats }}));
"""


def _run_js_range(url: str, start: int, end: int) -> dict:
    script = _RANGE_SCRIPT.format(
        module=json.dumps((DECODER_DIR / "stream.js").as_uri()), sha=json.dumps((DECODER_DIR / "sha256.js").as_uri()),
        url=json.dumps(url), start=start, end=end,
    )
    proc = subprocess.run([NODE or "node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _python_range_sha(data: bytes, start: int, end: int) -> str:
    import hashlib

    h = hashlib.sha256()
    for item in Decoder(io.BytesIO(data)).frames(range(start, end)):
        update_frame_hash(h, item.frame)  # type: ignore[union-attr]
    return h.hexdigest()


def test_range_fetches_only_what_the_frames_need(streams: dict[str, bytes], serve) -> None:
    data = encode_to_bytes(_ball((16, 16, 8), 2, 9, 7), EncoderConfig(quality=70, gof=3, **FIXED_GOFS))[0]
    reader = StreamReader(io.BytesIO(data))
    index = reader.read_index()
    assert len(index) == 3
    k = 4  # frames 4..5: both in the second GOF
    url, srv = serve(data)
    out = _run_js_range(url, k, k + 2)
    assert out["frames"] == [k, k + 1] and out["seekable"]
    assert out["sha256"] == _python_range_sha(data, k, k + 2)
    (index_offset,) = struct.unpack_from("<Q", data, len(data) - 12)
    gof_end = [e.offset for e in index[1:]] + [index_offset]
    allowed = [(0, reader.header_size), (index_offset, len(data)), (index[1].offset, gof_end[1])]
    assert None not in srv.log
    for a, b in srv.log:
        assert any(lo <= a and b <= hi for lo, hi in allowed), (a, b, allowed)
    fetched = sum(b - a for a, b in srv.log)  # type: ignore[misc]
    assert fetched == sum(hi - lo for lo, hi in allowed), (srv.log, allowed)
    # frames straddling two GOFs fetch exactly those two
    srv.log.clear()
    out = _run_js_range(url, 2, 4)
    assert out["sha256"] == _python_range_sha(data, 2, 4)
    gofs_fetched = {i for i, e in enumerate(index) for a, b in srv.log if a == e.offset}  # type: ignore[misc]
    assert gofs_fetched == {0, 1}


def test_range_ignored_falls_back_to_the_whole_body(serve) -> None:
    data = encode_to_bytes(_ball((16, 16, 8), 2, 6, 8), EncoderConfig(quality=70, gof=2, **FIXED_GOFS))[0]
    url, srv = serve(data, ranges=False)
    out = _run_js_range(url, 2, 5)
    assert out["frames"] == [2, 3, 4] and not out["seekable"]
    assert out["sha256"] == _python_range_sha(data, 2, 5)
    assert srv.log == [None]  # one request, read progressively
