"""The compiled CPU inference renderer (``_march.c``): marching, free-space skip, trilinear
lookups and compositing per ray in C; the colour MLP stays in torch.

Why: on CPU the torch renderer's time goes into building ragged per-sample tensors
(``march_rays``' repeat_interleave, advanced indexing, ``grid_sample``, cumulative sums), not
into the MLP, so deferred shading — whose point is to run the MLP once per ray — saved little.
The C kernel marches one ray at a time without materialising samples, stops looking up density
once a ray is opaque, and hands back only what the MLP needs: per-ray composited W, D, F, T
(deferred) or the shaded samples' ray, weight and features (per sample).

Why C through ctypes (as ``rerf_codec/codec/native.py``): no dependency and no JIT warm-up,
built by the package's own install (``setup.py``), and ctypes releases the GIL. The torch
``render_rays`` stays the reference and the trainer's renderer (it needs autograd); this path
agrees with it to float32 rounding (tests/test_native_render.py). It is used by
``RadianceField`` on CPU when the library is built; ``RERF_RENDERER=torch`` forces the torch
path, ``RERF_RENDERER=native`` insists on this one.

The same library holds the trainer's kernels (``native_train.py``), used under the same switch.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch

from rerf_codec.errors import RerfUsageError
from rerf_codec.field.geometry import GridGeometry

ENV = "RERF_RENDERER"
"""``torch`` forces the torch renderer; ``native`` requires the compiled one; unset: compiled if built."""

INITIAL_SAMPLES_PER_RAY = 8
"""First guess of shaded samples per ray for the per-sample buffers; a chunk needing more is re-run."""

_lib: ctypes.CDLL | None = None
_load_error: str | None = None
_noticed = False

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_I32 = ctypes.c_int32
_F = ctypes.c_float
_COMMON = [_P, _P, _I64, _P, _P, _P, _I64, _I64, _I64, _I64, _P, _I32, _F, _F, _F, _F]


def library() -> ctypes.CDLL | None:
    """The compiled library (None when it is not built); ``native_train`` calls its training kernels."""
    return _load()


def _load() -> ctypes.CDLL | None:
    global _lib, _load_error
    if _lib is not None or _load_error is not None:
        return _lib
    try:
        spec = importlib.util.find_spec("rerf_codec.field._march")
        if spec is None or not spec.origin:
            raise ImportError("the extension rerf_codec.field._march is not built")
        lib = ctypes.CDLL(spec.origin)
        lib.rerf_march_deferred.restype = _I64
        lib.rerf_march_deferred.argtypes = [*_COMMON, _P, _P, _P, _P, _I64]
        lib.rerf_march_per_sample.restype = _I64
        lib.rerf_march_per_sample.argtypes = [*_COMMON, _P, _I64, _P, _P, _P, _P, _P]
        lib.rerf_march_samples.restype = _I64
        lib.rerf_march_samples.argtypes = [_P, _P, _I64, _P, _I64, _I64, _I64, _P, _I32, _F, _I64, _P, _P]
        lib.rerf_sparse_gather.restype = _I64
        lib.rerf_sparse_gather.argtypes = [_P, _I64, _P, _I64, _I64, _I64, _P, _I64, _I64, _P, _I64, _P, _P, _P]
        lib.rerf_sparse_values.restype = _I64
        lib.rerf_sparse_values.argtypes = [_P, _P, _I64, _P, _I64, _I64, _P, _I64, _P]
        lib.rerf_sparse_scatter.restype = None
        lib.rerf_sparse_scatter.argtypes = [_P, _I64, _P, _P, _I64, _I64, _P]
        lib.rerf_block_warp.restype = _I64
        lib.rerf_block_warp.argtypes = [_P, _I64, _I64, _I64, _I64, _P, _I64, _I64, _I64, _P, _I64, _P]
        lib.rerf_block_warp_backward.restype = None
        lib.rerf_block_warp_backward.argtypes = [_P, _I64, _I64, _I64, _I64, _P, _I64, _I64, _I64, _P, _I64, _P, _P]
        lib.rerf_prox_adam_step.restype = None
        lib.rerf_prox_adam_step.argtypes = [_P, _P, _P, _P, _I64, ctypes.c_double, ctypes.c_double, ctypes.c_double,
                                            ctypes.c_double, ctypes.c_double, _I64]  # fmt: skip
        lib.rerf_tv_sums.restype = None
        lib.rerf_tv_sums.argtypes = [_P, _I64, _I64, _I64, _I64, _P]
        lib.rerf_tv_grad.restype = None
        lib.rerf_tv_grad.argtypes = [_P, _I64, _I64, _I64, _I64, _F, _F, _F, _P]
        _lib = lib
    except (ImportError, OSError, AttributeError) as exc:
        _load_error = str(exc)
    return _lib


def available() -> bool:
    """Whether the compiled renderer is built and loads."""
    return _load() is not None


def enabled() -> bool:
    """Whether ``RadianceField`` renders on CPU with the compiled renderer now (``RERF_RENDERER``)."""
    global _noticed
    choice = os.environ.get(ENV, "").strip().lower()
    if choice not in ("", "torch", "native"):
        raise RerfUsageError(f"{ENV} must be 'torch' or 'native', got {choice!r}")
    if choice == "torch":
        return False
    if available():
        return True
    if choice == "native":
        raise RerfUsageError(f"{ENV}=native: the compiled renderer is unavailable ({_load_error})")
    if not _noticed:
        _noticed = True
        print(f"rerf: note: compiled renderer unavailable ({_load_error}); using the torch renderer", file=sys.stderr)
    return False


@dataclass(frozen=True)
class NativeGrids:
    """One frame's grids laid out for the kernel (built once per frame by ``RadianceField.set_grids``).

    Features are channel-last so a voxel's C channels are one contiguous read per trilinear
    corner; ``box`` holds the float32 constants render.py computes from the geometry: grid box
    min, max, voxel spacing, and the occupied window's box (march_rays' one-voxel margin).
    """

    density: torch.Tensor  # (X, Y, Z) float32
    features: torch.Tensor  # (X, Y, Z, C) float32
    occupancy: torch.Tensor  # (X, Y, Z) uint8
    box: np.ndarray  # (15,) float32
    has_window: bool

    @property
    def channels(self) -> int:
        return int(self.features.shape[-1])


def prepare(
    density: torch.Tensor,
    features: torch.Tensor,
    occupancy: torch.Tensor,
    geometry: GridGeometry,
    window: tuple[tuple[int, int, int], tuple[int, int, int]] | None,
) -> NativeGrids:
    """Kernel layout of ``density`` (…, X, Y, Z), ``features`` (1, C, X, Y, Z), ``occupancy`` (X, Y, Z) bool."""
    shape = geometry.shape
    dens = density.detach().reshape(shape).to("cpu", torch.float32).contiguous()
    feats = features.detach().reshape(-1, *shape).to("cpu", torch.float32).permute(1, 2, 3, 0).contiguous()
    occ = occupancy.detach().reshape(shape).to("cpu", torch.uint8).contiguous()
    return NativeGrids(dens, feats, occ, kernel_box(geometry, window), window is not None)


def kernel_box(geometry: GridGeometry, window: tuple[tuple[int, int, int], tuple[int, int, int]] | None) -> np.ndarray:
    """The kernels' float32 box constants: grid box min, max, voxel spacing, and the occupied window's
    box as ``march_rays`` computes it (zeros when there is no window)."""
    win_lo, win_hi = (np.zeros(3), np.zeros(3)) if window is None else geometry.window_box(window)
    return np.concatenate([geometry.xyz_min, geometry.xyz_max, geometry.spacing, win_lo, win_hi]).astype(np.float32)


def _common(
    grids: NativeGrids, origins: torch.Tensor, dirs: torch.Tensor, step: float, shift: float, depth_per_step: float,
    weight_threshold: float,
) -> list[object]:  # fmt: skip
    nx, ny, nz = grids.density.shape
    return [
        origins.data_ptr(), dirs.data_ptr(), origins.shape[0], grids.density.data_ptr(), grids.features.data_ptr(),
        grids.occupancy.data_ptr(), nx, ny, nz, grids.channels, grids.box.ctypes.data, int(grids.has_window),
        step, shift, depth_per_step, weight_threshold,
    ]  # fmt: skip


def _kernel_inputs(origins: torch.Tensor, dirs: torch.Tensor) -> tuple[ctypes.CDLL, torch.Tensor, torch.Tensor]:
    """The loaded library and the rays as the kernels take them (contiguous float32 on the CPU)."""
    lib = _load()
    assert lib is not None
    if origins.dtype != torch.float32 or dirs.dtype != torch.float32 or origins.device.type != "cpu":
        raise RerfUsageError("the compiled renderer takes float32 CPU rays")
    return lib, origins.contiguous(), dirs.contiguous()


def _checked(count: int, grids: NativeGrids) -> int:
    if count < 0:
        raise RerfUsageError(f"compiled renderer: unsupported grid {tuple(grids.features.shape)}")
    return int(count)


def march_deferred(
    grids: NativeGrids,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    step: float,
    shift: float,
    depth_per_step: float,
    weight_threshold: float,
    threads: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Per ray (R, 3 float32 rays): ``W`` (R,), ``D`` (R, 3), ``F`` (R, C), ``T_final`` (R,), and the
    number of samples that passed the occupancy test (render.py's deferred sums, before the MLP).

    The rays are shared over ``threads`` threads (default: torch's thread count, so the setting that
    runs the MLP runs the march too); each ray is marched alone, so the result is the same bits for
    any count.
    """
    lib, origins, dirs = _kernel_inputs(origins, dirs)
    r = origins.shape[0]
    w = torch.empty(r, dtype=torch.float32)
    d = torch.empty(r, 3, dtype=torch.float32)
    f = torch.empty(r, grids.channels, dtype=torch.float32)
    t = torch.empty(r, dtype=torch.float32)
    samples = lib.rerf_march_deferred(
        *_common(grids, origins, dirs, step, shift, depth_per_step, weight_threshold),
        w.data_ptr(), d.data_ptr(), f.data_ptr(), t.data_ptr(), torch.get_num_threads() if threads is None else threads,
    )  # fmt: skip
    return w, d, f, t, _checked(samples, grids)


def march_per_sample(
    grids: NativeGrids,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    step: float,
    shift: float,
    depth_per_step: float,
    weight_threshold: float,
    capacity: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Per ray ``T_final`` (R,); the shaded samples' ray index (K,) int64, weight (K,) and features
    (K, C), sorted by ray then distance; and the samples that passed the occupancy test.

    The buffers start with room for ``capacity`` samples (default ``INITIAL_SAMPLES_PER_RAY`` per
    ray). The kernel marches the rays whose samples fit and says how many that was; the buffers then
    double and it resumes at the first ray that did not fit. Why not march the chunk again into
    buffers of the size it reported (as before): a soft field overflowed the first buffers of most
    chunks near the object, and marching them twice was 6 % of a crane render.
    """
    lib, origins, dirs = _kernel_inputs(origins, dirs)
    r = origins.shape[0]
    c = grids.channels
    cap = max(1, INITIAL_SAMPLES_PER_RAY * r if capacity is None else int(capacity))
    t = torch.empty(r, dtype=torch.float32)
    ray = torch.empty(cap, dtype=torch.int64)
    w = torch.empty(cap, dtype=torch.float32)
    f = torch.empty(cap, c, dtype=torch.float32)
    counts = np.zeros(2, dtype=np.int64)  # occupied samples, rays marched (one call)
    args = _common(grids, origins, dirs, step, shift, depth_per_step, weight_threshold)
    start = written = samples = 0
    while True:
        args[0], args[1], args[2] = origins[start:].data_ptr(), dirs[start:].data_ptr(), r - start
        k = _checked(lib.rerf_march_per_sample(
            *args, t[start:].data_ptr(), cap - written, ray[written:].data_ptr(), w[written:].data_ptr(),
            f[written:].data_ptr(), counts.ctypes.data, counts.ctypes.data + 8,
        ), grids)  # fmt: skip
        ray[written : written + k] += start
        written, samples, start = written + k, samples + int(counts[0]), start + int(counts[1])
        if start >= r:
            return t, ray[:written], w[:written], f[:written], samples
        cap *= 2
        ray = torch.cat([ray[:written], torch.empty(cap - written, dtype=torch.int64)])
        w = torch.cat([w[:written], torch.empty(cap - written, dtype=torch.float32)])
        f = torch.cat([f[:written], torch.empty(cap - written, c, dtype=torch.float32)])
