"""Looking at a dataset without a viewer: a contact sheet and a summary.

Backs ``rerf dataset preview DATA -o sheet.png`` and ``rerf dataset info DATA [--json]``.
Why a contact sheet (cameras × frames): most capture/import bugs -- a camera with a
flipped pose file, a mask video out of sync, a missing background composite -- are
obvious at a glance on a grid and invisible in a summary. Only the images shown are
decoded (``cameras × frames`` of them), so previewing a huge capture stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from rerf_codec.atomic import atomic_file
from rerf_codec.datasets.format import FORMAT_NAME, FORMAT_VERSION, Dataset
from rerf_codec.errors import RerfUsageError

__all__ = ["contact_sheet", "dataset_info", "format_info", "write_contact_sheet"]

SEPARATOR = 2  # pixels between tiles
SEPARATOR_RGB = (48, 48, 48)  # also the letterbox fill: distinct from black and white backgrounds
MAX_SHEET_TILES = 64  # per axis; a sheet is for eyes, and each tile costs a full image decode


def _evenly(n_total: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``0..n_total-1``, first and last included, no duplicates."""
    k = min(k, n_total)
    if k == 1:
        return [0]
    return sorted({round(i * (n_total - 1) / (k - 1)) for i in range(k)})


def _resize(img: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Resize ``(h, w, c)`` to ``(th, tw, c)``: box filter when shrinking an axis, nearest when growing it."""
    out = img.astype(np.float32, copy=False)
    for axis, (n, m) in enumerate(((img.shape[0], th), (img.shape[1], tw))):
        if m == n:
            continue
        if m < n:  # box: every output cell averages its [start, end) run of input cells (all non-empty)
            edges = np.floor(np.arange(m + 1) * (n / m)).astype(np.int64)
            sums = np.add.reduceat(out, edges[:-1], axis=axis)
            counts = np.diff(edges).astype(np.float32)
            shape = [1, 1, 1]
            shape[axis] = m
            out = sums / counts.reshape(shape)
        else:  # nearest: output cell centre mapped back into the input
            idx = np.minimum(((np.arange(m) + 0.5) * (n / m)).astype(np.int64), n - 1)
            out = np.take(out, idx, axis=axis)
    return out


def contact_sheet(ds: Dataset, *, cameras: int = 6, frames: int = 6, size: int = 128) -> np.ndarray:
    """A uint8 RGB ``(H, W, 3)`` grid: rows are cameras, columns frames (both chosen evenly).

    Each image is composited on the dataset background (RGBA) and resized so its longer
    side is ``size`` pixels, centred in a tile shaped like the first shown camera;
    tiles are separated by thin dark lines. No labels: row ``i`` is the ``i``-th of the
    evenly chosen cameras, in ``transforms.json`` order.
    """
    for name, v in (("cameras", cameras), ("frames", frames)):
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SHEET_TILES:
            raise RerfUsageError(f"contact sheet: {name} must be an integer in 1..{MAX_SHEET_TILES}, got {v!r}")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 2048:
        raise RerfUsageError(f"contact sheet: size must be an integer in 8..2048, got {size!r}")
    meta = ds.meta
    cams = [meta.cameras[i] for i in _evenly(len(meta.cameras), cameras)]
    frame_list = [meta.frame_indices[i] for i in _evenly(meta.num_frames, frames)]
    c0 = cams[0]
    scale0 = size / max(c0.w, c0.h)
    tile_h, tile_w = max(1, round(c0.h * scale0)), max(1, round(c0.w * scale0))
    rows, cols = len(cams), len(frame_list)
    sheet = np.empty(
        (rows * tile_h + (rows + 1) * SEPARATOR, cols * tile_w + (cols + 1) * SEPARATOR, 3), dtype=np.uint8
    )
    sheet[...] = SEPARATOR_RGB
    bg = np.asarray(meta.background, dtype=np.float32)
    for r, cam in enumerate(cams):
        scale = min(tile_w / cam.w, tile_h / cam.h)
        th, tw = max(1, min(tile_h, round(cam.h * scale))), max(1, min(tile_w, round(cam.w * scale)))
        y0 = SEPARATOR + r * (tile_h + SEPARATOR) + (tile_h - th) // 2
        for c, frame in enumerate(frame_list):
            rgba = ds.load_image(frame, cam)
            rgb = rgba[..., :3] * rgba[..., 3:] + bg * (1.0 - rgba[..., 3:])
            tile = _resize(rgb, th, tw)
            x0 = SEPARATOR + c * (tile_w + SEPARATOR) + (tile_w - tw) // 2
            sheet[y0 : y0 + th, x0 : x0 + tw] = np.clip(np.rint(tile * 255), 0, 255).astype(np.uint8)
    return sheet


def write_contact_sheet(
    ds: Dataset, out: str | Path, *, force: bool = False, cameras: int = 6, frames: int = 6, size: int = 128
) -> np.ndarray:
    """Render ``contact_sheet`` and write it as a PNG atomically (existing ``out`` needs ``force``)."""
    sheet = contact_sheet(ds, cameras=cameras, frames=frames, size=size)
    data = iio.imwrite("<bytes>", sheet, extension=".png")
    with atomic_file(out, force=force) as fh:
        fh.write(data)
    return sheet


def dataset_info(ds: Dataset) -> dict[str, Any]:
    """A JSON-ready summary (``rerf dataset info --json``); no image is decoded."""
    m = ds.meta
    sizes: dict[tuple[int, int], int] = {}
    for c in m.cameras:
        sizes[(c.w, c.h)] = sizes.get((c.w, c.h), 0) + 1
    return {
        "path": str(ds.root),
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "frames": m.num_frames,
        "first_frame": m.first_frame,
        "fps": m.fps,
        "duration_s": m.num_frames / m.fps,
        "cameras": {
            "total": len(m.cameras),
            "train": len(m.train_cameras),
            "test": len(m.test_cameras),
            "test_names": [c.name for c in m.test_cameras],
        },
        "resolutions": [{"w": w, "h": h, "cameras": n} for (w, h), n in sorted(sizes.items(), key=lambda kv: -kv[1])],
        "images": m.num_frames * len(m.cameras),
        "bbox": {"xyz_min": list(m.xyz_min), "xyz_max": list(m.xyz_max)},
        "image_mode": m.image_mode,
        "background": list(m.background),
        "bytes_on_disk": ds.image_bytes(),
        "source": m.source,
    }


def format_info(info: dict[str, Any]) -> str:
    """Human-readable rendering of ``dataset_info`` (the non-``--json`` output)."""
    cams = info["cameras"]
    res = ", ".join(f"{r['w']}×{r['h']} ({r['cameras']})" for r in info["resolutions"])
    lo, hi = info["bbox"]["xyz_min"], info["bbox"]["xyz_max"]
    tests = ", ".join(cams["test_names"][:8]) + (" ..." if len(cams["test_names"]) > 8 else "")
    lines = [
        f"dataset      {info['path']}",
        f"frames       {info['frames']} (first {info['first_frame']}) at {info['fps']:g} fps = {info['duration_s']:.2f} s",
        f"cameras      {cams['total']} ({cams['train']} train, {cams['test']} test: {tests})",
        f"resolution   {res}",
        f"images       {info['images']} {info['image_mode']} PNG, {info['bytes_on_disk'] / 1e6:.1f} MB on disk",
        "background   " + ", ".join(f"{v:g}" for v in info["background"]),
        "bbox         [" + ", ".join(f"{v:g}" for v in lo) + "] .. [" + ", ".join(f"{v:g}" for v in hi) + "]",
    ]
    if info["source"]:
        src = info["source"]
        kind = src.get("type") or src.get("kind") or src.get("importer")
        lines.append(f"source       {kind if kind else ', '.join(sorted(src)[:6])}")
    return "\n".join(lines)
