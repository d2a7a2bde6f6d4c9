"""Camera rigs for rendered datasets: rings of cameras around a bounding box, and the box itself.

``ring_cameras`` places the training cameras on a few horizontal rings (one per elevation)
around the centre of the box, every camera looking at the centre, world ``+y`` up (crane and
horse-gallop are y-up). Rings are staggered in azimuth so that, seen from above, the union of
all training cameras is evenly spread. The held-out test cameras sit at *other* viewpoints:
elevations half-way between the training rings and azimuths half-way between training
azimuths, so test PSNR measures novel-view synthesis, not memorisation of a training view.

Camera names are ``cam000 .. camNNN`` and the train/test pattern over those indices is
``format.split_cameras`` (test cameras spread evenly through the numbering, as importers do);
training poses fill the train indices and test poses the test indices, each in azimuth order.

One distance is used for every camera: the smallest one at which every corner of the box
projects inside every view with a 5 % margin on each side, so the whole (moving) subject
is always in frame and the rig is a true sphere (the same near/far for every camera).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from rerf_codec.datasets.format import split_cameras
from rerf_codec.errors import RerfUsageError
from rerf_codec.field.camera import UP, Camera, direction, fit_distance

__all__ = ["BBOX_MARGIN", "bbox_of", "ring_cameras"]

BBOX_MARGIN = 0.03  # bbox_of pads each side by this fraction of the largest extent


def bbox_of(vertices: np.ndarray, frames: Sequence[int] | range | slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box ``(xyz_min, xyz_max)`` (float64) of ``vertices[frames]`` padded by ``BBOX_MARGIN``.

    ``vertices`` is ``(T, V, 3)``; ``frames`` selects frames (indices, a range or a slice;
    ``None``: all). The padding (3 % of the largest extent on every side, at least 1e-3 of it
    on a flat axis) keeps surfaces off the box faces, where grids interpolate badly.
    """
    v = np.asarray(vertices)
    if v.ndim != 3 or v.shape[2] != 3 or v.shape[0] == 0 or v.shape[1] == 0:
        raise RerfUsageError(f"bbox_of: vertices must have shape (T, V, 3) with T, V >= 1, got {v.shape}")
    sel = v if frames is None else v[frames if isinstance(frames, slice) else np.asarray(list(frames), dtype=np.int64)]
    if sel.size == 0:
        raise RerfUsageError("bbox_of: no frames selected")
    lo = sel.min(axis=(0, 1)).astype(np.float64)
    hi = sel.max(axis=(0, 1)).astype(np.float64)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise RerfUsageError("bbox_of: vertices are not finite")
    ext = float(np.max(hi - lo))
    if ext <= 0:
        ext = max(1.0, float(np.max(np.abs(lo))))  # a single point: a box of its own scale
    pad = BBOX_MARGIN * ext
    # A flat axis (a plane) still gets a box of positive thickness.
    pad_axis = np.maximum(pad, 0.5e-3 * ext - (hi - lo) / 2)
    return lo - pad_axis, hi + pad_axis


def ring_cameras(
    xyz_min: Sequence[float],
    xyz_max: Sequence[float],
    n_train: int,
    n_test: int,
    size: int,
    *,
    fov_x_deg: float = 40.0,
    elevations: Sequence[float] = (-10.0, 15.0, 40.0),
) -> list[Camera]:
    """``n_train + n_test`` square ``size``×``size`` cameras around the box, all looking at its centre.

    Training cameras: split as evenly as possible over the rings at ``elevations`` (degrees,
    positive above the centre), equally spaced in azimuth on each ring, ring ``r`` rotated by
    ``r/R`` of its spacing. Test cameras: elevations at the mid-points between consecutive
    rings (cycled; the single ring's elevation if there is one), azimuths ``(j + ½)·360/n_test``
    plus half the training azimuth step. Deterministic: the same arguments give the same rig.
    """
    lo = np.asarray(xyz_min, dtype=np.float64)
    hi = np.asarray(xyz_max, dtype=np.float64)
    if lo.shape != (3,) or hi.shape != (3,) or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise RerfUsageError("ring_cameras: xyz_min and xyz_max must be 3 finite numbers each")
    if not np.all(lo < hi):
        raise RerfUsageError(f"ring_cameras: xyz_min must be < xyz_max on every axis, got {lo} and {hi}")
    for name, n, least in (("n_train", n_train, 1), ("n_test", n_test, 1), ("size", size, 1)):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < least:
            raise RerfUsageError(f"ring_cameras: {name} must be an integer >= {least}, got {n!r}")
    if n_train + n_test > 1000:
        raise RerfUsageError(f"ring_cameras: at most 1000 cameras (names cam000..cam999), got {n_train + n_test}")
    if not 0 < float(fov_x_deg) < 170:
        raise RerfUsageError(f"ring_cameras: fov_x_deg must be in (0, 170), got {fov_x_deg}")
    elevs = [float(e) for e in elevations]
    if not elevs or any(not -85 <= e <= 85 for e in elevs):
        raise RerfUsageError(f"ring_cameras: elevations must be 1+ angles in [-85, 85] degrees, got {elevations}")

    center = (lo + hi) / 2

    # Training poses: ring r gets counts[r] cameras.
    n_rings = len(elevs)
    counts = [n_train // n_rings + (1 if r < n_train % n_rings else 0) for r in range(n_rings)]
    train: list[tuple[float, float]] = []  # (azimuth, elevation)
    for r, (e, c) in enumerate(zip(elevs, counts, strict=True)):
        for j in range(c):
            train.append(((360.0 * (j + r / n_rings) / c) % 360.0, e))
    # Test poses: between the rings and between the training azimuths.
    test_elevs = [(a + b) / 2 for a, b in itertools.pairwise(elevs)] if n_rings >= 2 else elevs
    half_step = 180.0 / n_train
    test = [(((j + 0.5) * 360.0 / n_test + half_step) % 360.0, test_elevs[j % len(test_elevs)]) for j in range(n_test)]
    train.sort()
    test.sort()

    dist = fit_distance(lo, hi, [direction(e, a) for a, e in train + test], float(fov_x_deg))  # square images

    splits = split_cameras(n_train + n_test, n_test)
    it_train, it_test = iter(train), iter(test)
    cams = []
    for i, split in enumerate(splits):
        a, e = next(it_test) if split == "test" else next(it_train)
        eye = center + dist * direction(e, a)
        cams.append(Camera.look_at(f"cam{i:03d}", eye, center, UP, fov_x_deg, size, size, split=split))
    return cams
