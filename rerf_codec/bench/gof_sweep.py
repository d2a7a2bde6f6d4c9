"""GOF-length sweep: why the default ``--gof`` is 20 (BENCHMARKS.md).

Encodes one grid sequence at several GOF lengths (same quality) and reports real file
bytes per frame and feature PSNR. Longer GOFs amortise the keyframe over more residual
frames but make seeking and damage isolation coarser (a GOF is the unit of both).

    python -m rerf_codec.bench.gof_sweep [--mesh crane.npz] [--resolution 96] [--frames 60] [--gofs 1,5,10,20,30,60]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

from rerf_codec.bench.dataset_bench import DEFAULT_MESH
from rerf_codec.bench.meshgrid import MeshGridSpec, load_mesh_sequence, meshgrid_frames, meshgrid_meta
from rerf_codec.bench.report import int_list, to_json
from rerf_codec.codec.decoder import decode_all
from rerf_codec.codec.encoder import DEFAULT_QUALITY, EncoderConfig, encode_frames
from rerf_codec.codec.occupancy import occupancy_mask
from rerf_codec.codec.transform import BLOCK
from rerf_codec.grids import GridFrame, SequenceMeta


def _feature_psnr(orig: GridFrame, dec: GridFrame, threshold: float) -> float:
    """Peak = feature range over the original's occupied-block voxels; MSE over them."""
    m = occupancy_mask(orig.density, threshold)
    vm = np.repeat(np.repeat(np.repeat(m, BLOCK, 0), BLOCK, 1), BLOCK, 2)
    vm = vm[: orig.density.shape[0], : orig.density.shape[1], : orig.density.shape[2]]
    fo, fd = orig.features[:, vm], dec.features[:, vm]
    return float(10 * np.log10((fo.max() - fo.min()) ** 2 / ((fo - fd) ** 2).mean()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", type=Path, default=DEFAULT_MESH)
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--gofs", type=int_list, default=[1, 5, 10, 20, 30, 60])
    ap.add_argument("--quality", type=int, default=DEFAULT_QUALITY)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if not a.mesh.is_file():
        print(f"gof_sweep: error: mesh {a.mesh} not found", file=sys.stderr)
        return 2
    gofs = a.gofs
    vertices, faces = load_mesh_sequence(a.mesh)
    spec = MeshGridSpec(resolution=a.resolution, frames=(0, a.frames))
    meta = SequenceMeta.from_json_dict(meshgrid_meta(vertices, spec), str(a.mesh))
    frames = [(i, GridFrame(d, f)) for i, (d, f, _m) in enumerate(meshgrid_frames(vertices, faces, spec))]
    rows = []
    for g in gofs:
        buf = io.BytesIO()
        t0 = time.perf_counter()
        rep = encode_frames(meta, frames, buf, EncoderConfig(quality=a.quality, gof=g))
        seconds = time.perf_counter() - t0
        buf.seek(0)
        decoded, sha = decode_all(buf)
        assert sha == rep.sha256
        threshold = float(rep.config["occupancy_threshold"])
        psnr = [_feature_psnr(f, d.frame, threshold) for (_, f), d in zip(frames, decoded, strict=True)]
        rows.append({
            "gof": g, "bytes_per_frame": rep.file_bytes / len(frames), "feature_psnr_mean": float(np.mean(psnr)),
            "feature_psnr_min": float(np.min(psnr)), "encode_fps": len(frames) / seconds,
        })
        if not a.json:
            r = rows[-1]
            print(f"gof {g:4d}: {r['bytes_per_frame']:10.0f} B/frame  feature PSNR {r['feature_psnr_mean']:.2f} dB "
                  f"(min {r['feature_psnr_min']:.2f})  encode {r['encode_fps']:.1f} frames/s", flush=True)
    if a.json:
        print(to_json({"grid_shape": list(meta.grid_shape), "frames": a.frames, "quality": a.quality, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
