"""bitstreams/FORMAT.md agrees with the code: byte tables, ids, limits, the DCT table, the coder.

FORMAT.md marks its machine-checked parts with ``<!-- format-doc:NAME -->`` lines; each is
followed by a Markdown table or a fenced block. Changing a constant without the spec (or
the spec without the code) fails here, so the document cannot drift silently. The last
tests run the range coder and model construction exactly as §9.1 / Appendix A describe
them and compare with constriction, the backend the reference codec uses.
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
from rerf_codec.codec import coefficients, entropy, transform

FORMAT_MD = Path(__file__).resolve().parents[1] / "bitstreams" / "FORMAT.md"

STRUCTS = ["FILE_HEADER", "SEQ_CORE", "CHUNK_HEAD", "GOF_HEAD", "CHANNEL_PARAMS", "FRAME_HEAD", "INDEX_ENTRY", "FOOTER"]
TYPE_CODES = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i8": "b", "i32": "i", "f64": "d"}
ENUM_PREFIX = re.compile(r"^(CHUNK|FRAME|CODER|TRANSFORM|SIDE_INFO|VERSION)_[A-Z0-9_]+$")


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
    for kind in {r["Enumeration"] for r in rows}:
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


# --- transform ---------------------------------------------------------------------------------


def test_integer_dct_table_matches_code(doc: list[str]) -> None:
    rows = [[int(v) for v in line.split()] for line in fenced(doc, "int-dct") if line.strip()]
    assert np.array_equal(np.array(rows, dtype=np.float64), transform.INT_DCT)
    assert transform.INT_DCT.dtype == np.float64 and np.abs(transform.INT_DCT).max() == 2009


def test_inverse_dct_follows_the_spec(rng: np.random.Generator) -> None:
    """§9.7 in plain Python integers equals inverse_dct_exact (also at the coefficient bound)."""
    t = np.array(transform.INT_DCT, dtype=np.int64)

    def rs(z: np.ndarray, s: int) -> np.ndarray:
        return (z + (1 << (s - 1))) >> s

    y = rng.integers(-(2**30), 2**30 + 1, size=(2, 8, 8, 8))
    y[1] = rng.choice([-(2**30), 2**30], size=(8, 8, 8))
    r1 = rs(np.einsum("kz,nuvk->nuvz", t, y), 9)
    r2 = rs(np.einsum("ky,nukz->nuyz", t, r1), 12)
    r3 = rs(np.einsum("kx,nkyz->nxyz", t, r2), 15)
    expected = np.clip(r3, -transform.MAX_SAMPLE, transform.MAX_SAMPLE)
    assert np.array_equal(transform.inverse_dct_exact(y.astype(np.float64)), expected)


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
