"""bitstreams/FORMAT.md agrees with the code: byte tables, ids, limits, the DCT, the coder, §10.

FORMAT.md marks its machine-checked parts with ``<!-- format-doc:NAME -->`` lines; each is
followed by a Markdown table or a fenced block. Changing a constant without the spec (or
the spec without the code) fails here, so the document cannot drift silently. Further
tests implement parts of the spec in plain Python integers exactly as written (the range
coder and model construction of §9.1 / Appendix A, the inverse DCT of §9.7, the inter mask,
motion section, motion compensation and reconstruction of §10) and compare them with the
reference codec.
"""

from __future__ import annotations

import bisect
import importlib
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from rerf_codec import bitstream
from rerf_codec.codec import coefficients, entropy, motion, occupancy, residual, transform
from rerf_codec.codec.encoder import EncoderConfig, sequence_header
from rerf_codec.errors import RerfFormatError
from rerf_codec.grids import GridFrame, SequenceMeta

FORMAT_MD = Path(__file__).resolve().parents[1] / "bitstreams" / "FORMAT.md"

STRUCTS = ["FILE_HEADER", "SEQ_CORE", "CHUNK_HEAD", "GOF_HEAD", "CHANNEL_PARAMS", "FRAME_HEAD", "INDEX_ENTRY", "FOOTER"]
TYPE_CODES = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i8": "b", "i32": "i", "f64": "d"}
ENUM_PREFIX = re.compile(
    r"^(CHUNK|FRAME|CODER|COEFF_MODE|TRANSFORM|SIDE_INFO|VERSION|BLOCK_MODE|GOF_REASON)_[A-Z0-9_]+$"
)


# --- parsing FORMAT.md --------------------------------------------------------------------


@pytest.fixture(scope="module")
def doc() -> list[str]:
    return FORMAT_MD.read_text(encoding="utf-8").splitlines()


def _after_marker(lines: list[str], name: str) -> int:
    marker = f"<!-- format-doc:{name} -->"
    hits = [i for i, line in enumerate(lines) if line.strip() == marker]
    assert len(hits) == 1, f"FORMAT.md must contain the marker {marker!r} exactly once"
    i = hits[0] + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip().replace("\\|", "|").strip("`") for p in parts]


def table(lines: list[str], name: str) -> list[dict[str, str]]:
    """Rows of the Markdown table after the marker, as dicts keyed by the header cells."""
    i = _after_marker(lines, name)
    rows = []
    while i < len(lines) and lines[i].lstrip().startswith("|"):
        rows.append(_cells(lines[i]))
        i += 1
    assert len(rows) >= 3, f"no table after format-doc:{name}"
    header, sep, *body = rows
    assert all(set(c) <= set("-: ") for c in sep), f"format-doc:{name}: second row is not a separator"
    for r in body:
        assert len(r) == len(header), f"format-doc:{name}: row {r} has {len(r)} cells, header {len(header)}"
    return [dict(zip(header, r, strict=True)) for r in body]


def fenced(lines: list[str], name: str) -> list[str]:
    """Lines of the fenced code block after the marker."""
    i = _after_marker(lines, name)
    assert lines[i].startswith("```"), f"format-doc:{name} must be followed by a fenced block"
    out = []
    i += 1
    while not lines[i].startswith("```"):
        out.append(lines[i])
        i += 1
    return out


def _expand(fmt: str) -> list[str]:
    """struct format -> one token per field ('3H' -> H H H, '2x' -> x x, '4s' stays)."""
    assert fmt[0] == "<", "every .rerf struct is little-endian"
    out: list[str] = []
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", fmt[1:]):
        n = int(count) if count else 1
        out.extend([f"{n}s"] if code == "s" else [code] * n)
    return out


# --- byte tables ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", STRUCTS)
def test_struct_tables_match_code(doc: list[str], name: str) -> None:
    st: struct.Struct = getattr(bitstream, name)
    rows = table(doc, f"struct {name}")
    tokens: list[str] = []
    offset = 0
    for r in rows:
        size = int(r["Size"])
        assert int(r["Offset"]) == offset, f"{name}.{r['Field']}: offset {r['Offset']}, expected {offset}"
        kind = r["Type"]
        if kind in TYPE_CODES:
            toks = [TYPE_CODES[kind]]
        elif m := re.fullmatch(r"bytes\[(\d+)\]", kind):
            toks = [f"{m.group(1)}s"]
        elif kind == "pad":
            toks = ["x"] * size
        else:
            raise AssertionError(f"{name}.{r['Field']}: unknown type {kind!r}")
        assert struct.calcsize("<" + "".join(toks)) == size, f"{name}.{r['Field']}: size {size} != type {kind}"
        tokens += toks
        offset += size
    assert offset == st.size, f"{name}: table covers {offset} bytes, struct has {st.size}"
    assert tokens == _expand(st.format), f"{name}: table {tokens} != code {st.format}"


def test_struct_sizes(doc: list[str]) -> None:
    sizes = {"FILE_HEADER": 16, "SEQ_CORE": 94, "CHUNK_HEAD": 8, "GOF_HEAD": 8, "CHANNEL_PARAMS": 12,
             "FRAME_HEAD": 4, "INDEX_ENTRY": 16, "FOOTER": 12}
    assert {n: getattr(bitstream, n).size for n in STRUCTS} == sizes
    text = "\n".join(doc)
    assert "(§4.1, 94 bytes)" in text and "16 bytes        (§3)" in text and "12 bytes        (§7)" in text


def test_magic_values(doc: list[str]) -> None:
    magic = {r["Field"]: r for r in table(doc, "struct FILE_HEADER")}["magic"]
    assert bitstream.MAGIC.decode() in magic["Constraint / meaning"]
    assert bitstream.MAGIC.hex(" ") in magic["Constraint / meaning"]
    footer = {r["Field"]: r for r in table(doc, "struct FOOTER")}["magic"]
    assert bitstream.FOOTER_MAGIC.decode() in footer["Constraint / meaning"]
    assert bitstream.FOOTER_MAGIC.hex(" ") in footer["Constraint / meaning"]


def test_frame_sections_in_order(doc: list[str]) -> None:
    rows = table(doc, "sections")
    assert [int(r["#"]) for r in rows] == list(range(len(rows)))
    assert tuple(r["Section"] for r in rows) == bitstream.SECTION_NAMES


# --- enumerations and limits ------------------------------------------------------------------


def test_enumerations_match_code(doc: list[str]) -> None:
    rows = table(doc, "enumerations")
    documented = {r["Code constant"]: int(r["Id"]) for r in rows}
    in_code = {
        k: v for k, v in vars(bitstream).items() if ENUM_PREFIX.match(k) and isinstance(v, int) and not isinstance(v, bool)
    }
    assert documented == in_code
    frame_names = {int(r["Id"]): r["Name"] for r in rows if r["Enumeration"] == "frame type"}
    assert frame_names == bitstream.FRAME_TYPE_NAMES
    for kind in {r["Enumeration"] for r in rows} - {"format version"}:  # major and minor are numbers, not ids
        ids = [int(r["Id"]) for r in rows if r["Enumeration"] == kind]
        assert len(ids) == len(set(ids)), f"duplicate id in {kind}"


def test_dtype_ids_match_code(doc: list[str]) -> None:
    rows = table(doc, "dtype-ids")
    assert {int(r["Id"]): r["NumPy dtype"] for r in rows} == bitstream.DTYPE_IDS
    for r in rows:
        assert np.dtype(r["NumPy dtype"]).name == ("bool" if r["Meaning"].startswith("bool") else r["Meaning"])


def test_limits_match_code(doc: list[str]) -> None:
    checked = 0
    for r in table(doc, "limits"):
        const = r["Code constant"]
        if not const:
            continue
        module_name, _, attr = const.rpartition(".")
        module = importlib.import_module(f"rerf_codec.{module_name}")
        assert getattr(module, attr) == int(r["Value"]), f"{const}: FORMAT.md says {r['Value']}"
        checked += 1
    assert checked >= 20


def test_band_sizes_match_code(doc: list[str]) -> None:
    sizes = [int(v) for v in " ".join(fenced(doc, "band-sizes")).split()]
    assert sizes == np.diff(coefficients.BAND_STARTS).tolist()
    assert len(sizes) == coefficients.N_BANDS and sum(sizes) == 512
    # BAND_ORDER as the text defines it: sorted by u+v+w, ties by flat index f = 64u + 8v + w.
    order = sorted(range(512), key=lambda f: (f // 64 + f // 8 % 8 + f % 8, f))
    assert order == coefficients.BAND_ORDER.tolist()


def test_band_context_follows_the_spec(doc: list[str]) -> None:
    """Coefficient mode 1's context formula, evaluated as written, against the code."""
    (line,) = [ln for ln in fenced(doc, "band-context") if ln.strip()]
    rhs = line.split("=", 1)[1].split("(0..3")[0]
    expr = rhs.replace("·", "*").replace("size_{β-1}", "size")
    for band in range(1, coefficients.N_BANDS):
        size = int(coefficients.BAND_STARTS[band] - coefficients.BAND_STARTS[band - 1])
        nz = np.arange(size + 1)
        want = [int(eval(expr, {}, {"n": int(n), "size": size})) for n in nz]
        assert coefficients.band_context(nz, band).tolist() == want
    assert coefficients.band_context(np.arange(3), 0).tolist() == [0, 0, 0]


# --- transform ---------------------------------------------------------------------------------


def _int_rows(lines: list[str]) -> list[list[int]]:
    return [[int(v) for v in line.split()] for line in lines if line.strip()]


def doc_shifts(doc: list[str]) -> tuple[int, int, int]:
    rows = table(doc, "idct-passes")
    assert [int(r["Pass"]) for r in rows] == [1, 2, 3]
    return tuple(int(r["Shift"]) for r in rows)  # type: ignore[return-value]


def test_integer_dct_table_matches_code(doc: list[str]) -> None:
    rows = _int_rows(fenced(doc, "int-dct"))
    assert np.array_equal(np.array(rows, dtype=np.float64), transform.INT_DCT)
    assert transform.INT_DCT.dtype == np.float64 and np.abs(transform.INT_DCT).max() == 8035
    # The text's definition: T = round(C8 * 2^B), B = TRANSFORM_BITS.
    b = transform.TRANSFORM_BITS
    c8 = [[(1 / 8) ** 0.5 if k == 0 else (2 / 8) ** 0.5 * np.cos(np.pi * (2 * n + 1) * k / 16) for n in range(8)]
          for k in range(8)]
    assert rows == [[round(v * 2**b) for v in row] for row in c8]
    text = "\n".join(doc)
    assert f"round(C8[k][n] · 2^{b})" in text and f"`B = {b}` matrix bits" in text
    assert f"B = {b}, G = {transform.GUARD_BITS}" in text


def test_idct_shifts_match_code(doc: list[str]) -> None:
    b, g = transform.TRANSFORM_BITS, transform.GUARD_BITS
    assert doc_shifts(doc) == (b - g, b, b + g) == (11, 14, 17)
    assert doc_shifts(doc) == transform._SHIFTS
    assert [r["Along"][0] for r in table(doc, "idct-passes")] == ["w", "v", "u"]


def spec_idct(y: np.ndarray, shifts: tuple[int, int, int]) -> np.ndarray:
    """§9.7 on ``(n, 8, 8, 8)`` int64 coefficients (all intermediates stay below 2^53)."""
    t = np.array(transform.INT_DCT, dtype=np.int64)

    def rs(z: np.ndarray, s: int) -> np.ndarray:
        return (z + (1 << (s - 1))) >> s

    r1 = rs(np.einsum("kz,nuvk->nuvz", t, y), shifts[0])
    r2 = rs(np.einsum("ky,nukz->nuyz", t, r1), shifts[1])
    r3 = rs(np.einsum("kx,nkyz->nxyz", t, r2), shifts[2])
    return np.clip(r3, -transform.MAX_SAMPLE, transform.MAX_SAMPLE)


def test_inverse_dct_follows_the_spec(doc: list[str], rng: np.random.Generator) -> None:
    """§9.7 in integers equals inverse_dct_exact, also at the coefficient bound 2^29."""
    bound = transform.MAX_COEFF
    assert bound == 2**29
    y = rng.integers(-bound, bound + 1, size=(3, 8, 8, 8))
    y[1] = rng.choice([-bound, bound], size=(8, 8, 8))
    y[2] = bound * np.sign(np.einsum("u,v,w->uvw", *[transform.INT_DCT[:, 3]] * 3)).astype(np.int64)  # worst case
    expected = spec_idct(y, doc_shifts(doc))
    assert np.array_equal(transform.inverse_dct_exact(y.astype(np.float64)), expected)
    # The exactness argument of §9.7: every pass sum stays below 2^53.
    t = np.abs(np.array(transform.INT_DCT, dtype=np.int64))
    assert 8 * bound * int(t.max()) < 2**45 and int(t.max()) < 2**13


# --- entropy coder (§9.1, Appendix A) ---------------------------------------------------------

M64 = (1 << 64) - 1


def spec_cdf(p: list[float]) -> list[int]:
    """§9.1: Categorical(perfect=False) quantisation, in binary64 exactly as written."""
    norm = 0.0
    for x in p:
        norm += x
    scale = float((1 << 24) - len(p)) / norm
    cdf, cum = [], 0.0
    for i, x in enumerate(p):
        cdf.append(int(cum * scale) + i)
        cum += x
    return [*cdf, 1 << 24]


def spec_count_cdf(counts: tuple[int, ...]) -> list[int]:
    total = sum(counts)
    return spec_cdf([c / total for c in counts])


class SpecDecoder:
    """§9.1 range decoder."""

    def __init__(self, words: list[int]) -> None:
        self.words, self.cursor = words, min(2, len(words))
        head = [*words[:2], 0, 0][:2]
        self.point = (head[0] << 32) | head[1] if words else 0
        self.lower, self.range = 0, M64

    def decode(self, cdf: list[int]) -> int:
        scale = self.range >> 24
        q = ((self.point - self.lower) & M64) // scale
        assert q < 1 << 24
        s = bisect.bisect_right(cdf, q, 0, len(cdf) - 1) - 1
        self.lower = (self.lower + scale * cdf[s]) & M64
        self.range = scale * (cdf[s + 1] - cdf[s])
        if self.range < 1 << 32:
            self.lower, self.range = (self.lower << 32) & M64, self.range << 32
            self.point = (self.point << 32) & M64
            if self.cursor < len(self.words):
                self.point |= self.words[self.cursor]
                self.cursor += 1
        return s


class SpecEncoder:
    """Appendix A range encoder."""

    def __init__(self) -> None:
        self.lower, self.range, self.out = 0, M64, []
        self.pending: tuple[int, int] | None = None  # (first word, count)

    def _flush(self, carry: bool) -> None:
        assert self.pending is not None
        first, count = self.pending
        self.out += [(first + 1) & 0xFFFFFFFF, *[0] * (count - 1)] if carry else [first, *[0xFFFFFFFF] * (count - 1)]
        self.pending = None

    def encode(self, s: int, cdf: list[int]) -> None:
        scale = self.range >> 24
        self.range = scale * (cdf[s + 1] - cdf[s])
        new_lower = (self.lower + scale * cdf[s]) & M64
        if self.pending and (new_lower + self.range) & M64 > new_lower:
            self._flush(new_lower < self.lower)
        self.lower = new_lower
        if self.range < 1 << 32:
            self.range <<= 32
            word, self.lower = self.lower >> 32, (self.lower << 32) & M64
            if self.pending:
                self.pending = (self.pending[0], self.pending[1] + 1)
            elif (self.lower + self.range) & M64 > self.lower:
                self.out.append(word)
            else:
                self.pending = (word, 1)

    def finish(self) -> list[int]:
        if self.range == M64:
            return list(self.out)
        point = (self.lower + (1 << 32) - 1) & M64
        if self.pending:
            self._flush(point < self.lower)
        self.out.append(point >> 32)
        if ((self.lower + self.range) & M64) >> 32 == point >> 32:
            self.out.append(0)
        return list(self.out)


def test_closed_form_models() -> None:
    assert spec_cdf([1 / 256] * 256) == [i << 16 for i in range(257)]
    for p1 in range(1, 256):
        expected = [0, (256 - p1) * ((1 << 24) - 2) // 256 + 1, 1 << 24]
        assert spec_cdf([(256 - p1) / 256, p1 / 256]) == expected


def test_spec_range_coder_matches_constriction(rng: np.random.Generator) -> None:
    """Words written by the codec's SymbolEncoder (constriction) == the spec's encoder; the
    spec's decoder recovers every symbol. Covers count tables (zero counts included), binary
    and uniform models, interleaved in one stream as the mask and coefficient sections are."""
    enc = entropy.SymbolEncoder()
    spec = SpecEncoder()
    runs: list[tuple[list[int], np.ndarray]] = []
    for i in range(40):
        kind = i % 4
        if kind == 0:
            p1 = int(rng.integers(1, 256))
            cdf = spec_cdf([(256 - p1) / 256, p1 / 256])
            syms = (rng.random(int(rng.integers(1, 200))) < p1 / 256).astype(np.int32)
            enc.encode_bits(syms, p1)
        elif kind == 1:
            cdf = [i << 16 for i in range(257)]
            syms = rng.integers(0, 256, int(rng.integers(1, 5))).astype(np.int32)
            enc.encode_uniform(syms, 256)
        else:
            lo = int(rng.integers(-entropy.MAX_CLASS, 0))
            hi = int(rng.integers(lo + 1, entropy.MAX_CLASS + 1))
            n = hi - lo + 1
            classes = (lo + np.minimum(rng.geometric(0.3, size=int(rng.integers(1, 400))) - 1, n - 1)).astype(np.int32)
            table = entropy.build_table(classes)
            if kind == 3 and table.hi > table.lo:  # a table with zero counts and huge ones, as side info may carry
                counts = list(table.counts)
                counts[0], counts[-1] = 0, 1 << 24
                table = entropy.Table(table.lo, table.hi, tuple(counts))
                classes = classes[classes != table.lo]
                if classes.size == 0:
                    continue
            if table.trivial:
                continue
            cdf = spec_count_cdf(table.counts)
            syms = classes - table.lo
            enc.encode(classes, table)
        for s in syms.tolist():
            spec.encode(s, cdf)
        runs.append((cdf, syms))
    assert len(runs) >= 20
    data = enc.finish()
    words = list(struct.unpack(f"<{len(data) // 4}I", data))
    assert words == spec.finish()
    dec = SpecDecoder(words)
    for cdf, syms in runs:
        assert [dec.decode(cdf) for _ in range(syms.size)] == syms.tolist()


def test_empty_and_short_sections() -> None:
    """No symbols -> no words; a section that runs out shifts in zeros (no error)."""
    assert entropy.SymbolEncoder().finish() == b""
    assert SpecEncoder().finish() == []
    dec = entropy.SymbolDecoder(b"")
    spec = SpecDecoder([])
    cdf = spec_cdf([0.5, 0.5])
    assert dec.decode_bits(5, 128).tolist() == [spec.decode(cdf) for _ in range(5)] == [0] * 5


# --- residual frames (§10) --------------------------------------------------------------------

BUCKET = [0, 1, 1, 2, 2, 3, 3]


def spec_neighbours(m: np.ndarray, b: tuple[int, int, int]) -> int:
    """Face neighbours of block ``b`` that are 1 in ``m`` (outside the grid: 0)."""
    count = 0
    for axis in range(3):
        for step in (-1, 1):
            q = list(b)
            q[axis] += step
            if 0 <= q[axis] < m.shape[axis]:
                count += int(m[tuple(q)])
    return count


def spec_inter_context(prev: np.ndarray, b: tuple[int, int, int]) -> int:
    """§10.2: ctx(b) = 4 · Mprev[b] + bucket(nb(b))."""
    return 4 * int(prev[b]) + BUCKET[spec_neighbours(prev, b)]


def raster(shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in idx) for idx in np.ndindex(*shape)]  # type: ignore[misc]


def test_inter_mask_example(doc: list[str]) -> None:
    rows = table(doc, "inter-mask-example")
    shape = (1 + max(int(r["x"]) for r in rows), 1 + max(int(r["y"]) for r in rows), len(rows[0]["Mprev"].split()))
    prev = np.zeros(shape, dtype=bool)
    nb = np.zeros(shape, dtype=np.int64)
    ctx = np.zeros(shape, dtype=np.int64)
    for r in rows:
        x, y = int(r["x"]), int(r["y"])
        prev[x, y] = [v == "1" for v in r["Mprev"].split()]
        nb[x, y] = [int(v) for v in r["nb"].split()]
        ctx[x, y] = [int(v) for v in r["ctx"].split()]
    assert len(rows) == shape[0] * shape[1]
    for b in raster(shape):
        assert spec_neighbours(prev, b) == nb[b], b
        assert spec_inter_context(prev, b) == ctx[b], b
    assert np.array_equal(occupancy._inter_contexts(prev), ctx.ravel())
    assert occupancy.N_CONTEXTS == 4 and int(ctx.max()) < 2 * occupancy.N_CONTEXTS


def spec_decode_inter_mask(prev: np.ndarray, words: list[int]) -> np.ndarray:
    """§10.2 with the §9.1 decoder."""
    dec = SpecDecoder(words)
    uniform = [i << 16 for i in range(257)]
    blocks = raster(prev.shape)
    ctx = {b: spec_inter_context(prev, b) for b in blocks}
    out = np.zeros(prev.shape, dtype=bool)
    for c in range(8):
        members = [b for b in blocks if ctx[b] == c]
        if not members:
            continue
        p = dec.decode(uniform)
        if p == 0:
            raise ValueError("p = 0")
        cdf = spec_cdf([(256 - p) / 256, p / 256])
        for b in members:
            out[b] = dec.decode(cdf) == 1
    return out


def _words(data: bytes) -> list[int]:
    assert len(data) % 4 == 0
    return list(struct.unpack(f"<{len(data) // 4}I", data))


def test_inter_mask_follows_the_spec(rng: np.random.Generator) -> None:
    for _ in range(12):
        shape = tuple(int(v) for v in rng.integers(1, 6, 3))
        prev = rng.random(shape) < rng.random()
        mask = np.where(rng.random(shape) < 0.8, prev, rng.random(shape) < 0.5)
        enc = entropy.SymbolEncoder()
        occupancy.encode_mask_inter(mask, prev, enc)
        data = enc.finish()
        assert np.array_equal(spec_decode_inter_mask(prev, _words(data)), mask)
        assert np.array_equal(occupancy.decode_mask_inter(prev, entropy.SymbolDecoder(data)), mask)
    # p = 0 is rejected (§10.2), unlike the intra octree where it is read as 1.
    spec = SpecEncoder()
    spec.encode(0, [i << 16 for i in range(257)])
    data = b"".join(struct.pack("<I", w) for w in spec.finish())
    with pytest.raises(RerfFormatError):
        occupancy.decode_mask_inter(np.zeros((2, 1, 1), dtype=bool), entropy.SymbolDecoder(data))
    with pytest.raises(ValueError):
        spec_decode_inter_mask(np.zeros((2, 1, 1), dtype=bool), _words(data))


def spec_tables(data: bytes, count: int) -> list[tuple[int, int, list[int] | None] | None]:
    """§9.4 tables: None = unused; (lo, hi, None) trivial; (lo, hi, cdf) a count table."""
    out: list[tuple[int, int, list[int] | None] | None] = []
    pos = 0
    for _ in range(count):
        lo, hi = struct.unpack_from("<bb", data, pos)
        pos += 2
        if (lo, hi) == (1, 0):
            out.append(None)
            continue
        assert -entropy.MAX_CLASS <= lo <= hi <= entropy.MAX_CLASS
        if lo == hi:
            out.append((lo, hi, None))
            continue
        counts = []
        for _ in range(hi - lo + 1):
            value, shift = 0, 0
            while True:
                byte = data[pos]
                pos += 1
                value |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            counts.append(value)
        out.append((lo, hi, spec_count_cdf(tuple(counts))))
    assert pos == len(data)
    return out


class SpecBits:
    """MSB-first bit reader of a mantissa field."""

    def __init__(self, data: bytes) -> None:
        self.bits = "".join(f"{b:08b}" for b in data)
        self.pos = 0

    def take(self, n: int) -> int:
        v = int(self.bits[self.pos : self.pos + n], 2) if n else 0
        self.pos += n
        return v


def spec_value(k: int, bits: SpecBits) -> int:
    """§9.6: class -> value."""
    if abs(k) < 16:
        return k
    v = (1 << (abs(k) - 12)) + bits.take(abs(k) - 12)
    return v if k > 0 else -v


def spec_superblock(b: tuple[int, int, int], block_shape: tuple[int, int, int]) -> int:
    sy, sz = -(-block_shape[1] // 2), -(-block_shape[2] // 2)
    return ((b[0] // 2) * sy + b[1] // 2) * sz + b[2] // 2


def spec_decode_motion(
    section: bytes, blocks: list[tuple[int, int, int]], block_shape: tuple[int, int, int], prev_coarse: list[list[int]]
) -> tuple[list[list[int]], list[list[int]]]:
    """§10.3 -> (block vectors, coarse field)."""
    (tables_size,) = struct.unpack_from("<H", section, 0)
    tables = spec_tables(section[2 : 2 + tables_size], 2)
    pos = 2 + tables_size
    (mant_size,) = struct.unpack_from("<I", section, pos)
    pos += 4
    mant = section[pos : pos + mant_size]
    assert len(mant) == mant_size
    dec = SpecDecoder(_words(section[pos + mant_size :]))
    sbs = [spec_superblock(b, block_shape) for b in blocks]
    used = sorted(set(sbs))

    def symbols(n: int, t: tuple[int, int, list[int] | None] | None) -> list[int]:
        if n == 0:
            return []
        assert t is not None, "symbols with an unused table"
        lo, _, cdf = t
        return [lo] * n if cdf is None else [lo + dec.decode(cdf) for _ in range(n)]

    classes = symbols(3 * len(used), tables[0]) + symbols(3 * len(blocks), tables[1])
    n_bits = sum(abs(k) - 12 for k in classes if abs(k) >= 16)
    assert len(mant) == (n_bits + 7) // 8
    bits = SpecBits(mant)
    values = [spec_value(k, bits) for k in classes]
    coarse = [list(v) for v in prev_coarse]
    for k, s in enumerate(used):
        coarse[s] = [prev_coarse[s][a] + values[3 * k + a] for a in range(3)]
    off = 3 * len(used)
    mv = [[coarse[s][a] + values[off + 3 * i + a] for a in range(3)] for i, s in enumerate(sbs)]
    assert all(abs(v) <= motion.MAX_MV for vec in mv + coarse for v in vec)
    return mv, coarse


def test_motion_section_follows_the_spec(rng: np.random.Generator) -> None:
    for trial in range(12):
        block_shape = tuple(int(v) for v in rng.integers(1, 7, 3))
        mask = rng.random(block_shape) < (0.0 if trial == 0 else 0.6)
        blocks = raster(block_shape)
        occupied = [b for b in blocks if mask[b]]
        n_sb = motion.superblock_count(block_shape)
        ix, iy, iz = (np.array([b[a] for b in occupied], dtype=np.int64) for a in range(3))
        sb = motion.superblock_index((ix, iy, iz), block_shape)
        assert sb.tolist() == [spec_superblock(b, block_shape) for b in occupied]
        assert n_sb == (-(-block_shape[0] // 2)) * (-(-block_shape[1] // 2)) * (-(-block_shape[2] // 2))
        scale = [2, 40, 3000, motion.MAX_MV][trial % 4]  # small diffs, direct classes, mantissas, the bound
        prev_coarse = rng.integers(-scale, scale + 1, (n_sb, 3)) // 2
        mv = rng.integers(-scale, scale + 1, (len(occupied), 3))
        if trial % 3 == 1:
            mv[:] = mv[:1] if len(occupied) else mv  # rigid motion: fine differences 0 (trivial table)
        section, coarse, _ = motion.encode_motion(mv, sb, n_sb, prev_coarse)
        spec_mv, spec_coarse = spec_decode_motion(section, occupied, block_shape, prev_coarse.tolist())
        assert spec_mv == mv.tolist() and spec_coarse == coarse.tolist()
        code_mv, code_coarse = motion.decode_motion(section, sb, n_sb, prev_coarse)
        assert code_mv.tolist() == spec_mv and code_coarse.tolist() == spec_coarse
        # Unused superblocks keep the previous coarse vector.
        for s in set(range(n_sb)) - set(sb.tolist()):
            assert spec_coarse[s] == prev_coarse[s].tolist()


def test_filter_taps_match_code(doc: list[str]) -> None:
    rows = _int_rows(fenced(doc, "filter-taps"))
    assert np.array_equal(np.array(rows, dtype=np.float64), motion.FILTER_TAPS)
    assert len(rows) == 1 << motion.MV_FRAC_BITS and all(len(r) == motion.N_TAPS for r in rows)
    assert all(sum(r) == 1 << motion.FILTER_BITS for r in rows)
    assert max(sum(abs(v) for v in r) for r in rows) == 84  # the exactness bound of §10.4
    assert (2**24 - 1) * 84**3 + 2**17 < 2**44
    text = "\n".join(doc)
    assert f"MV_FRAC_BITS = {motion.MV_FRAC_BITS}" in text
    assert f"MAX_MV = 2^{motion.MAX_MV.bit_length() - 1}" in text
    assert motion.MV_UNIT == 8 and motion.MAX_MV == 2**14


def test_mv_split_examples(doc: list[str]) -> None:
    rows = table(doc, "mv-split")
    for r in rows:
        m, i, f = int(r["mv"]), int(r["i"]), int(r["f"])
        assert (i, f) == (m // 8, m - 8 * (m // 8)) == (m >> motion.MV_FRAC_BITS, m & (motion.MV_UNIT - 1))
        assert [int(v) for v in r["samples at offsets (voxels)"].split()] == [i - 1, i, i + 1, i + 2]
    code = np.array([int(r["mv"]) for r in rows], dtype=np.int64)
    assert (code >> motion.MV_FRAC_BITS).tolist() == [int(r["i"]) for r in rows]
    assert (code & (motion.MV_UNIT - 1)).tolist() == [int(r["f"]) for r in rows]


def spec_predict(
    p: np.ndarray, grid: tuple[int, int, int], block: tuple[int, int, int], mv: tuple[int, int, int], taps: list[list[int]]
) -> list[list[list[int]]]:
    """§10.4 for one channel and one block, in Python integers: ``p`` holds lattice integers."""
    split = [(m >> 3, m & 7) for m in mv]

    def coords(axis: int, j: int) -> list[int]:
        return [min(max(8 * block[axis] + j + split[axis][0] + t - 1, 0), grid[axis] - 1) for t in range(4)]

    fx, fy, fz = (taps[s[1]] for s in split)
    out = [[[0] * 8 for _ in range(8)] for _ in range(8)]
    for x in range(8):
        cx = coords(0, x)
        for y in range(8):
            cy = coords(1, y)
            for z in range(8):
                cz = coords(2, z)
                acc = 0
                for a in range(4):
                    for b in range(4):
                        for d in range(4):
                            acc += fx[a] * fy[b] * fz[d] * int(p[cx[a], cy[b], cz[d]])
                assert abs(acc) < 2**44
                out[x][y][z] = (acc + (1 << 17)) >> 18
    return out


def _lattice_frame(
    rng: np.random.Generator, grid: tuple[int, int, int], channels: int, exps: list[int], extreme: bool
) -> tuple[np.ndarray, GridFrame]:
    """Random lattice integers ``(C, X, Y, Z)`` and the padded float32 frame that holds them (×2^-e),
    with garbage in the padding (§10.4: it is never read)."""
    lattice = rng.integers(-(2**24) + 1, 2**24, (channels, *grid))
    if extreme:  # alternating ±(2^24 - 1): the negative taps push the prediction past the clamp
        lattice = np.where(np.indices(grid).sum(axis=0) % 2 == 0, 2**24 - 1, -(2**24) + 1)[None].repeat(channels, 0)
    padded = tuple(8 * -(-s // 8) for s in grid)
    buf = np.full((channels, *padded), 1e30, dtype=np.float32)
    for c in range(channels):
        buf[c, : grid[0], : grid[1], : grid[2]] = lattice[c] * 2.0 ** -exps[c]
    assert np.array_equal(buf[:, : grid[0], : grid[1], : grid[2]].astype(np.float64) * (2.0 ** np.array(exps))[:, None, None, None], lattice)
    return lattice, GridFrame(np.ascontiguousarray(buf[0]), np.ascontiguousarray(buf[1:]))


def test_motion_compensation_follows_the_spec(doc: list[str], rng: np.random.Generator) -> None:
    """§10.4 in Python integers == motion_compensate: negative and fractional vectors, references
    outside the grid on every side, vectors at ±MAX_MV, partial edge blocks, extreme values."""
    taps = _int_rows(fenced(doc, "filter-taps"))
    grid = (11, 9, 6)  # partial blocks on every axis
    exps = [3, -2]
    vectors = [(0, 0, 0), (-12, 6, 1), (-1, -9, -17), (13, -3, 5), (-100, 90, -70),
               (motion.MAX_MV, -motion.MAX_MV, 3), (7, 15, -8), (-5, -21, 29)]
    for extreme in (False, True):
        lattice, prev = _lattice_frame(rng, grid, 2, exps, extreme)
        blocks = [(0, 0, 0), (1, 1, 0), (1, 0, 0), (0, 1, 0)] * 2
        ix, iy, iz = (np.array([b[a] for b in blocks]) for a in range(3))
        mv = np.array(vectors[: len(blocks)], dtype=np.int64)
        got = motion.motion_compensate(
            prev.density, prev.features, grid, 2.0 ** np.array(exps, dtype=np.float64), (ix, iy, iz), mv
        )
        for i, b in enumerate(blocks):
            for c in range(2):
                want = spec_predict(lattice[c], grid, b, tuple(vectors[i]), taps)
                assert got[c, i].tolist() == want, (extreme, b, vectors[i], c)
        if extreme:
            assert np.abs(got).max() > transform.MAX_SAMPLE  # the prediction itself is not clamped


def test_residual_reconstruction_follows_the_spec(doc: list[str], rng: np.random.Generator) -> None:
    """§10.5: clamp(prediction + §9.7 of the dequantised levels), fill elsewhere; all-zero blocks
    are the clamped prediction."""
    taps = _int_rows(fenced(doc, "filter-taps"))
    grid = (11, 9, 6)
    exps = [2, -1]
    meta = SequenceMeta.from_json_dict(
        {"format": "rerf-grid-sequence", "version": 1, "num_frames": 2, "first_frame": 0, "fps": 30.0,
         "grid_shape": list(grid), "feature_channels": 1, "xyz_min": [-1, -1, -1], "xyz_max": [1, 1, 1],
         "density_shift": 0.0, "motion_block": 8, "decoder": None},
        "<test>",
    )
    header = sequence_header(meta, EncoderConfig(), None)
    channels = (bitstream.ChannelParams(exps[0], -77, 1000), bitstream.ChannelParams(exps[1], 12345, 16))
    steps = [[max(1, (int(header.qmatrix[0 if c == 0 else 1][f]) * ch.qscale + 8) >> 4) for f in range(512)]
             for c, ch in enumerate(channels)]
    clamped = {"prediction": 0, "idct": 0}
    for extreme in (False, True):
        lattice, prev = _lattice_frame(rng, grid, 2, exps, extreme)
        mask = np.zeros((2, 2, 1), dtype=bool)
        mask[0, 0, 0] = mask[1, 0, 0] = mask[1, 1, 0] = True
        blocks = [b for b in raster(mask.shape) if mask[b]]
        mv = np.array([(-12, 6, 3), (5, -19, 0), (3, 3, 3)], dtype=np.int64)
        levels = np.zeros((2, 3, 512), dtype=np.int64)
        levels[0, 0, rng.integers(0, 512, 20)] = rng.integers(-50, 51, 20)
        levels[1, 2, :] = rng.integers(-(2**29) // 16, 2**29 // 16 + 1, 512)  # |Y| up to 2^29: the §9.7 clamp
        # (channel 0, block 1), (channel 0, block 2), (channel 1, blocks 0, 1): all zero -> prediction only.
        out = residual.reconstruct_residual(header, channels, mask, mv, levels.copy(), prev)
        for c in range(2):
            want = np.full(grid, channels[c].fill, dtype=np.int64)
            for i, b in enumerate(blocks):
                pred = np.array(spec_predict(lattice[c], grid, b, tuple(mv[i].tolist()), taps), dtype=np.int64)
                y = (levels[c, i] * np.array(steps[c])).reshape(1, 8, 8, 8)
                assert np.abs(y).max() <= transform.MAX_COEFF
                r = spec_idct(y, doc_shifts(doc))[0] if levels[c, i].any() else 0
                clamped["prediction"] += int(not levels[c, i].any() and np.abs(pred).max() > transform.MAX_SAMPLE)
                clamped["idct"] += int(np.abs(r).max() == transform.MAX_SAMPLE)
                v = np.clip(pred + r, -transform.MAX_SAMPLE, transform.MAX_SAMPLE)
                sl = tuple(slice(8 * b[a], min(8 * b[a] + 8, grid[a])) for a in range(3))
                want[sl] = v[: sl[0].stop - sl[0].start, : sl[1].stop - sl[1].start, : sl[2].stop - sl[2].start]
            got = out.density if c == 0 else out.features[0]
            assert got.dtype == np.float32 and got.shape == grid
            assert np.array_equal(got.astype(np.float64) * 2.0 ** exps[c], want), (extreme, c)
    assert clamped["prediction"] and clamped["idct"]  # both clamps were exercised
