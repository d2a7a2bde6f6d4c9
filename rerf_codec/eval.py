"""``rerf eval``: the quality of a ``.rerf`` stream, rendered, against the capture it came from.

For every frame of the stream (decoded GOF by GOF, never the whole sequence in memory) and every
*test* camera of the dataset (the held-out views, never seen by the trainer), the stream's grids
are rendered through the shared ``field`` renderer and compared with the ground-truth image
(RGBA composited on the dataset's background, as the trainer sees it):

* ``psnr`` — ``10 log10(1 / MSE)`` over all pixels and RGB channels of one image, images in [0, 1]
  (:func:`rerf_codec.metrics.psnr`);
* ``ssim`` — Wang et al. 2004 with an 11-tap gaussian window, σ 1.5, K1 0.01, K2 0.03, on the
  valid region, averaged over RGB (:func:`rerf_codec.metrics.ssim`);
* LPIPS is **not** reported: the ``lpips`` package installs, but it builds its network from
  torchvision's ImageNet-pretrained AlexNet/VGG, whose weights are downloaded from the internet on
  first use, so it cannot run offline (the report says ``"lpips": "not available offline"``).

With a *reference* — the uncompressed grid sequence the stream was encoded from — each view is
also rendered from the reference grids, giving the reference's own PSNR/SSIM against ground truth
(the trainer's quality) and the PSNR of the stream's render against the reference's render (the
codec's own loss, independent of how well the trainer fitted the capture).

Means: per frame, the mean over the test cameras; overall, the mean over all (frame, camera)
images — the usual NeRF convention of averaging PSNR in dB per image. An identical pair of images
has infinite PSNR; it is reported as ``null`` in JSON and counted as 100 dB in means.

Frames are matched by number: every frame of the stream (or of ``frames``) must exist in the
dataset and in the reference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from rerf_codec.codec.decoder import Decoder
from rerf_codec.datasets import composite, open_dataset
from rerf_codec.errors import RerfUsageError
from rerf_codec.framerange import FrameRange, parse_frame_range
from rerf_codec.grids import GridFrame
from rerf_codec.gridseq import iter_full_frames, read_decoder, read_meta
from rerf_codec.metrics import psnr, ssim

__all__ = ["LPIPS_STATUS", "PSNR_CAP", "EvalReport", "evaluate"]

LPIPS_STATUS = "not available offline"
PSNR_CAP = 100.0
"""An infinite PSNR (identical images) counts as this many dB in means."""


def _capped(v: float) -> float:
    return min(v, PSNR_CAP)


def _finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


@dataclass
class EvalReport:
    """Per-image rows and means; ``to_json`` is what ``rerf eval --json`` prints."""

    stream: str
    dataset: str
    reference: str | None
    frames: range
    cameras: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What makes the figures doubtful (a dataset that does not look like the stream's); printed as notes."""
    seconds: float = 0.0
    decode_seconds: float = 0.0
    render_seconds: float = 0.0
    kept: dict[tuple[int, str], dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    """Images of the frames asked for with ``keep`` (gt, stream, reference), for contact sheets."""

    def _values(self, key: str, rows: list[dict[str, Any]] | None = None) -> list[float]:
        rows = self.rows if rows is None else rows
        return [_capped(r[key] if r[key] is not None else math.inf) for r in rows if key in r]

    def means(self, rows: list[dict[str, Any]] | None = None) -> dict[str, float | None]:
        keys = ["psnr", "ssim"] + (["reference_psnr", "reference_ssim", "psnr_vs_reference"] if self.reference else [])
        out = {k: _mean(self._values(k, rows)) for k in keys}
        if self.reference and out["psnr"] is not None and out["reference_psnr"] is not None:
            out["psnr_loss_from_coding"] = out["reference_psnr"] - out["psnr"]
        return out

    def per_frame(self) -> list[dict[str, Any]]:
        out = []
        for f in self.frames:
            rows = [r for r in self.rows if r["frame"] == f]
            out.append({"frame": f, **self.means(rows)})
        return out

    def to_json(self) -> dict[str, Any]:
        n = len(self.frames)
        return {
            "stream": self.stream,
            "dataset": self.dataset,
            "reference": self.reference,
            "frames": [self.frames.start, self.frames.stop],
            "num_frames": n,
            "cameras": self.cameras,
            "notes": self.notes,
            "lpips": LPIPS_STATUS,
            "mean": self.means(),
            "per_frame": self.per_frame(),
            "images": [{k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in r.items()} for r in self.rows],
            "seconds": self.seconds,
            "decode_ms_per_frame": 1e3 * self.decode_seconds / n if n else None,
            "render_ms_per_view": 1e3 * self.render_seconds / max(1, len(self.rows)),
        }


def evaluate(
    src: BinaryIO,
    data: str | Path,
    *,
    reference: str | Path | None = None,
    frames: FrameRange | range | str | None = None,
    device: str = "cpu",
    keep: set[int] | None = None,
    stream_name: str = "<stream>",
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> EvalReport:
    """Render the dataset's test cameras for every frame of ``src`` and measure (module docstring).

    ``keep``: frame numbers whose images (ground truth, stream, reference renders, uint8) are
    kept in ``report.kept`` (the demo's contact sheet). ``progress(done, total, frame_means)``.
    """
    from rerf_codec.field import RadianceField, resolve_device
    from rerf_codec.field.geometry import box_mismatch

    t_start = time.perf_counter()
    dev = resolve_device(device)
    ds = open_dataset(data)
    cams = list(ds.meta.test_cameras)
    if not cams:
        raise RerfUsageError(f"{data}: the dataset has no test cameras to evaluate on")
    wanted = parse_frame_range(frames)
    dec = Decoder(src)
    want = dec.resolve_range(wanted)
    have = ds.meta.frame_indices
    if want.start < have.start or want.stop > have.stop:
        raise RerfUsageError(
            f"{stream_name}: frames {want.start}:{want.stop} are not all in the dataset {data} "
            f"(frames {have.start}:{have.stop}); frames are matched by number"
        )
    meta = dec.sequence_meta(want)
    mismatch = box_mismatch(meta.xyz_min, meta.xyz_max, meta.grid_shape, ds.meta.xyz_min, ds.meta.xyz_max)
    tensors = dict(dec.header.tensors) if dec.header.tensors else None
    field_ = RadianceField.for_sequence(meta, tensors, dev)
    ref_iter: Iterator[tuple[int, GridFrame]] | None = None
    ref_field = None
    if reference is not None:
        ref_meta = read_meta(reference)
        r = ref_meta.frame_indices
        if want.start < r.start or want.stop > r.stop:
            raise RerfUsageError(
                f"{reference}: holds frames {r.start}:{r.stop}, the stream's {want.start}:{want.stop} "
                "are not all in it",
                param="reference",
            )
        if tuple(ref_meta.grid_shape) != tuple(meta.grid_shape) or ref_meta.feature_channels != meta.feature_channels:
            raise RerfUsageError(
                f"{reference}: grid {ref_meta.grid_shape} × {ref_meta.feature_channels} does not match "
                f"the stream's {meta.grid_shape} × {meta.feature_channels}",
                param="reference",
            )
        box = np.array([meta.xyz_min, meta.xyz_max], np.float64)
        ref_box = np.array([ref_meta.xyz_min, ref_meta.xyz_max], np.float64)
        if np.abs(ref_box - box).max() > 1e-5 * float((box[1] - box[0]).max()):
            raise RerfUsageError(
                f"{reference}: its grid spans {list(ref_meta.xyz_min)}–{list(ref_meta.xyz_max)}, the stream's "
                f"{list(meta.xyz_min)}–{list(meta.xyz_max)}: not the sequence the stream was encoded from",
                param="reference",
            )
        ref_field = RadianceField.for_sequence(ref_meta, read_decoder(reference, ref_meta), dev)
        ref_iter = iter_full_frames(reference, ref_meta, want)
    bg = ds.meta.background
    report = EvalReport(stream_name, str(data), None if reference is None else str(reference), want,
                        [c.name for c in cams], notes=[] if mismatch is None else [f"{mismatch} Measured anyway"])  # fmt: skip
    keep = keep or set()
    for k, sf in enumerate(dec.session(want, reuse_buffers=True)):  # frames valid until the next one
        idx, frame = sf.index, sf.frame
        assert frame is not None  # damage is not concealed here: it raises
        report.decode_seconds += sf.decode_seconds
        t0 = time.perf_counter()
        field_.set_grids(frame.density, frame.features)
        renders = [field_.render_camera(c) for c in cams]
        ref_renders = None
        if ref_iter is not None and ref_field is not None:
            ridx, rframe = next(ref_iter)
            if ridx != idx:
                raise RuntimeError(f"reference frame {ridx} where {idx} was expected")
            ref_field.set_grids(rframe.density, rframe.features)
            ref_renders = [ref_field.render_camera(c) for c in cams]
        report.render_seconds += time.perf_counter() - t0
        rows = []
        for j, cam in enumerate(cams):
            gt = composite(ds.load_image(idx, cam), bg)
            row: dict[str, Any] = {"frame": idx, "camera": cam.name,
                                   "psnr": psnr(renders[j], gt), "ssim": ssim(renders[j], gt)}  # fmt: skip
            if ref_renders is not None:
                row["reference_psnr"] = psnr(ref_renders[j], gt)
                row["reference_ssim"] = ssim(ref_renders[j], gt)
                row["psnr_vs_reference"] = psnr(renders[j], ref_renders[j])
            rows.append(row)
            if idx in keep:
                to8 = lambda a: (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)  # noqa: E731
                kept = {"gt": to8(gt), "stream": to8(renders[j])}
                if ref_renders is not None:
                    kept["reference"] = to8(ref_renders[j])
                report.kept[(idx, cam.name)] = kept
        report.rows.extend(rows)
        if progress is not None:
            progress(k + 1, len(want), {"frame": idx, **report.means(rows)})
    report.seconds = time.perf_counter() - t_start
    return report
