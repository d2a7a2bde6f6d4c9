"""Cross-machine exactness of the decoder (DESIGN.md decision 1).

One stream is decoded in fresh interpreters under different BLAS kernels
(``OPENBLAS_CORETYPE``), BLAS thread counts and numpy SIMD dispatch levels; every
decode must give the same SHA-256 as the in-process decode and as the encoder's
reconstruction. The integer inverse DCT is also checked against a pure-Python
integer reference, including the extreme coefficient magnitude 2**29, and its
matrix is pinned to a hard-coded table.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import encode_to_bytes

from rerf_codec.codec import transform
from rerf_codec.codec.decoder import decode_all
from rerf_codec.codec.encoder import EncoderConfig
from rerf_codec.grids import GridFrame

# round(C * 2**14), C the orthonormal 8-point DCT-II (rows: frequency k, columns: sample n).
PINNED_INT_DCT = [
    [5793, 5793, 5793, 5793, 5793, 5793, 5793, 5793],
    [8035, 6811, 4551, 1598, -1598, -4551, -6811, -8035],
    [7568, 3135, -3135, -7568, -7568, -3135, 3135, 7568],
    [6811, -1598, -8035, -4551, 4551, 8035, 1598, -6811],
    [5793, -5793, -5793, 5793, 5793, -5793, -5793, 5793],
    [4551, -8035, 1598, 6811, -6811, -1598, 8035, -4551],
    [3135, -7568, 7568, -3135, -3135, 7568, -7568, 3135],
    [1598, -4551, 6811, -8035, 8035, -6811, 4551, -1598],
]

# --------------------------------------------------------------------------- the integer inverse


def test_integer_dct_matrix_is_pinned():
    assert transform.TRANSFORM_BITS == 14 and transform.GUARD_BITS == 3 and transform.BLOCK == 8
    assert transform.INT_DCT.dtype == np.float64
    assert np.array_equal(transform.INT_DCT, np.array(PINNED_INT_DCT, dtype=np.float64))
    # and the pinned table really is round(C * 2**12) (so FORMAT.md and the code agree)
    assert np.array_equal(np.round(transform.dct_matrix() * 16384.0), np.array(PINNED_INT_DCT, dtype=np.float64))


def _reference_inverse(block: list, clip: int | None) -> list:
    """Pure-Python integer inverse of one 8³ block ``block[u][v][w]`` (python ints, floor shifts).

    Pass 1 along w (shift B - G = 11), pass 2 along v (shift B = 14), pass 3 along u
    (shift B + G = 17); each shift is ``floor((z + 2**(s-1)) / 2**s)``.
    """
    t = PINNED_INT_DCT
    r = range(8)

    def shift(z: int, s: int) -> int:
        return (z + (1 << (s - 1))) >> s  # >> on python ints is floor division by 2**s

    a = [[[shift(sum(t[w][z] * block[u][v][w] for w in r), 11) for z in r] for v in r] for u in r]
    b = [[[shift(sum(t[v][y] * a[u][v][z] for v in r), 14) for z in r] for y in r] for u in r]
    c = [[[shift(sum(t[u][x] * b[u][y][z] for u in r), 17) for z in r] for y in r] for x in r]
    if clip is not None:
        c = [[[min(clip, max(-clip, v)) for v in row] for row in plane] for plane in c]
    return c


def _extreme_blocks(rng: np.random.Generator) -> np.ndarray:
    """Integer coefficient blocks (int64) up to the format's limit |Y| <= 2**29."""
    m = transform.MAX_COEFF
    assert m == 2**29
    sign = np.sign(np.array(PINNED_INT_DCT))  # sign[k, n]
    blocks = [
        np.full((8, 8, 8), m),  # DC and every AC at the limit
        np.full((8, 8, 8), -m),
        rng.choice([-m, m], size=(8, 8, 8)),
        rng.integers(-m, m, size=(8, 8, 8), endpoint=True),
        rng.integers(-(2**12), 2**12, size=(8, 8, 8), endpoint=True),  # small: no clipping, rounding visible
        rng.integers(-3, 3, size=(8, 8, 8), endpoint=True),
        np.eye(8, dtype=np.int64)[:, :, None] * rng.integers(-(2**20), 2**20, size=(8, 8, 8)),
    ]
    # maximal partial sums: coefficient signs follow the basis signs of one output voxel
    for x0, y0, z0 in [(0, 0, 0), (7, 3, 1), (2, 6, 7)]:
        blocks.append(m * sign[:, x0, None, None] * sign[None, :, y0, None] * sign[None, None, :, z0])
    return np.stack(blocks).astype(np.int64)


@pytest.mark.parametrize("clipped", [True, False], ids=["as_is", "unclipped"])
def test_inverse_dct_exact_matches_integer_reference(clipped, monkeypatch):
    """Bit-exact against python ints; unclipped, the large intermediate sums (up to ~2**51) are visible."""
    rng = np.random.default_rng(7)
    blocks = _extreme_blocks(rng)
    clip = transform.MAX_SAMPLE
    if not clipped:
        clip = None
        monkeypatch.setattr(transform, "MAX_SAMPLE", 2**62)
    got = transform.inverse_dct_exact(blocks.astype(np.float64))
    assert got.shape == blocks.shape and got.dtype == np.float64
    for i, blk in enumerate(blocks):
        ref = np.array(_reference_inverse(blk.tolist(), clip), dtype=object)
        assert all(float(v) == v for v in ref.ravel()), "reference value not exact in float64"
        assert (got[i] == ref.astype(np.float64)).all(), f"block {i} differs from the integer reference"
    # integer dtype in, same result
    assert np.array_equal(transform.inverse_dct_exact(blocks), got)


def test_inverse_dct_exact_random_small_blocks_match_reference():
    rng = np.random.default_rng(11)
    blocks = rng.laplace(0.0, 300.0, size=(12, 8, 8, 8)).round().astype(np.int64)
    got = transform.inverse_dct_exact(blocks)
    for i, blk in enumerate(blocks):
        ref = np.array(_reference_inverse(blk.tolist(), transform.MAX_SAMPLE), dtype=np.float64)
        assert np.array_equal(got[i], ref)


# --------------------------------------------------------------------------- decoding in other processes

_CHILD = textwrap.dedent(
    """
    import ctypes, hashlib, json, os, sys
    import numpy as np
    from rerf_codec.codec import transform
    from rerf_codec.codec.decoder import decode_all

    def openblas_info():
        libs = []
        try:
            with open("/proc/self/maps") as fh:
                for line in fh:
                    path = line.split()[-1]
                    if "openblas" in os.path.basename(path).lower() and "numpy" in path and path not in libs:
                        libs.append(path)
        except OSError:
            pass
        for path in libs:
            lib = ctypes.CDLL(path)
            for suffix in ("64_", "", "_64"):
                for prefix in ("scipy_openblas", "openblas"):
                    core = getattr(lib, prefix + "_get_corename" + suffix, None)
                    threads = getattr(lib, prefix + "_get_num_threads" + suffix, None)
                    if core is not None and threads is not None:
                        core.restype = ctypes.c_char_p
                        return core().decode(), int(threads())
        return None, None

    with open(sys.argv[1], "rb") as f:
        frames, sha = decode_all(f)
    blocks = np.load(sys.argv[2])
    transform.MAX_SAMPLE = 2**62
    inv = transform.inverse_dct_exact(blocks)
    core, threads = openblas_info()
    print(json.dumps({
        "sha": sha,
        "frames": len(frames),
        "inverse_sha": hashlib.sha256(inv.astype("<f8").tobytes()).hexdigest(),
        "torch": "torch" in sys.modules,
        "core": core,
        "threads": threads,
    }))
    """
)

_SCRUB = ("OPENBLAS_", "GOTOBLAS_", "OMP_", "MKL_", "NPY_", "BLIS_", "VECLIB_")


def _cpu() -> tuple[dict, list]:
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # pragma: no cover - other numpy layouts
        return {}, []
    return dict(__cpu_features__), list(__cpu_dispatch__)


def _environments() -> dict[str, dict[str, str]]:
    features, dispatch = _cpu()
    envs = {
        "default": {},
        "threads1": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        "threads2": {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"},
        "mkl_vars": {"MKL_NUM_THREADS": "1", "MKL_CBWR": "COMPATIBLE", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
        # the codec's own thread pool (codec/threads.py): 1 thread vs more threads than cores
        "rerf_threads1": {"RERF_THREADS": "1"},
        "rerf_threads7": {"RERF_THREADS": "7", "OPENBLAS_NUM_THREADS": "3"},
    }
    if dispatch:  # every runtime-dispatched SIMD level off: numpy's baseline loops only
        envs["numpy_baseline_simd"] = {"NPY_DISABLE_CPU_FEATURES": " ".join(dispatch)}
    if platform.machine().lower() in ("x86_64", "amd64"):  # OpenBLAS x86 kernel names; only ones this CPU runs
        if features.get("AVX512_SKX"):
            envs["skylakex_t1"] = {"OPENBLAS_CORETYPE": "SkylakeX", "OPENBLAS_NUM_THREADS": "1"}
        if features.get("AVX2") and features.get("FMA3"):
            envs["haswell"] = {"OPENBLAS_CORETYPE": "Haswell"}
        if features.get("AVX"):
            envs["sandybridge_t2"] = {"OPENBLAS_CORETYPE": "SandyBridge", "OPENBLAS_NUM_THREADS": "2"}
        envs["nehalem_t1"] = {"OPENBLAS_CORETYPE": "Nehalem", "OPENBLAS_NUM_THREADS": "1"}
        envs["prescott"] = {"OPENBLAS_CORETYPE": "Prescott"}
    return envs


ENVIRONMENTS = _environments()


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """A stream big enough that the inverse DCT's GEMMs go through the BLAS kernels."""
    rng = np.random.default_rng(3)
    shape = (40, 33, 24)
    x, y, z = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    frames = []
    for t in range(3):
        density = (12.0 * np.sin(4 * x + t) * np.cos(3 * y) + rng.normal(0, 1, shape)).astype(np.float32)
        features = np.stack([np.sin((c + 1) * z + x * t) + rng.normal(0, 0.05, shape) for c in range(12)])
        frames.append(GridFrame(density, features.astype(np.float32)))
    data, report = encode_to_bytes(frames, EncoderConfig(quality=90, gof=2))
    path = tmp_path_factory.mktemp("exact") / "stream.rerf"
    path.write_bytes(data)
    blocks_path = path.with_name("blocks.npy")
    np.save(blocks_path, _extreme_blocks(np.random.default_rng(5)).astype(np.float64))
    _, sha = decode_all(io.BytesIO(data))
    monkey = transform.MAX_SAMPLE
    try:
        transform.MAX_SAMPLE = 2**62
        inv = transform.inverse_dct_exact(np.load(blocks_path))
    finally:
        transform.MAX_SAMPLE = monkey
    return {
        "path": path,
        "blocks": blocks_path,
        "encoder_sha": report.sha256,
        "sha": sha,
        "inverse_sha": hashlib.sha256(inv.astype("<f8").tobytes()).hexdigest(),
    }


@pytest.fixture(scope="module")
def child_results(stream):
    """Run every environment's decode in its own interpreter (two at a time)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    procs = {}
    results = {}
    names = list(ENVIRONMENTS)
    for i, name in enumerate(names):
        env = {**base, "OPENBLAS_VERBOSE": "2", **ENVIRONMENTS[name]}
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(stream["path"]), str(stream["blocks"])],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        if i % 2 == 1 or i == len(names) - 1:
            for n, p in list(procs.items()):
                out, err = p.communicate(timeout=120)
                assert p.returncode == 0, f"{n}: decode failed:\n{err}"
                results[n] = json.loads(out.strip().splitlines()[-1])
                results[n]["verbose_cores"] = re.findall(r"Core: (\w+)", err)
            procs.clear()
    return results


def test_closed_loop_in_process(stream):
    assert stream["sha"] == stream["encoder_sha"]


@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_decode_sha_is_the_same_everywhere(name, stream, child_results):
    res = child_results[name]
    assert res["frames"] == 3
    assert res["sha"] == stream["sha"] == stream["encoder_sha"], f"{name}: decoded grids differ"
    assert res["inverse_sha"] == stream["inverse_sha"], f"{name}: inverse DCT of extreme blocks differs"
    assert res["torch"] is False


def test_openblas_settings_took_effect(child_results):
    """The environments really changed the kernel and the thread count (where OpenBLAS can tell)."""
    cores = {name: r["core"] for name, r in child_results.items()}
    if cores["default"] is None or "nehalem_t1" not in cores:
        pytest.skip("numpy is not linked against a queryable x86 OpenBLAS")
    assert len(set(cores.values())) >= 3, cores
    verbose = {name: tuple(r["verbose_cores"]) for name, r in child_results.items()}
    assert len(set(verbose.values())) >= 3, verbose  # what OpenBLAS says it chose at start-up
    assert cores["nehalem_t1"].lower() == "nehalem"
    if "haswell" in cores:
        assert cores["haswell"].lower() == "haswell"
    assert child_results["threads1"]["threads"] == 1
    assert child_results["nehalem_t1"]["threads"] == 1


def test_decode_never_imports_torch(stream):
    code = (
        "import sys\n"
        "from rerf_codec.codec.decoder import decode_all\n"
        f"frames, sha = decode_all(open({str(stream['path'])!r}, 'rb'))\n"
        "import rerf_codec.bitstream, rerf_codec.grids\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
        "print(sha)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == stream["sha"]
