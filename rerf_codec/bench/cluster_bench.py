"""Scale-out benchmark (BENCHMARKS.md, "Scale-out on Ray"): serial vs 2 Ray workers.

    python -m rerf_codec.bench.cluster_bench --json-out bench-out/cluster.json [--skip-train]

* **encode**: a synthetic sequence, the default serial run (``encode_sequence``, default
  segmentation) against the same segmentation as the parallel run, serial, and 2 Ray workers
  (a local instance started once; its start-up is measured apart); bytes of each, median of
  ``--runs``; parallel output checked byte-identical to the serial one of the same segmentation.
* **overhead**: Ray start-up + shutdown, and per task: ``--tasks`` no-op tasks through
  ``Cluster.map_unordered`` (the same backpressure loop the encoder and trainer use).
* **train**: the demo scene, the default serial trainer (one torch thread, ``TrainRequest.threads``) against
  ``--gof`` serial (1 thread per GOF) and ``--gof`` on 2 workers (1 thread each); one run each
  (training is seeded: same work every run); frame A's phase timed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rerf_codec import cluster
from rerf_codec.codec.encoder import EncoderConfig, encode_sequence
from rerf_codec.synthetic import SyntheticSpec, write_synthetic_sequence


def _noop(x: int) -> int:
    return x


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def bench_encode(work: Path, args: argparse.Namespace, c: cluster.Cluster) -> dict[str, Any]:
    spec = SyntheticSpec(shape=(args.size,) * 3, num_frames=args.frames, seed=0)
    seq = work / "seq"
    write_synthetic_sequence(seq, spec)
    default = EncoderConfig()
    seg = EncoderConfig(segment_frames=args.segment_frames)
    runs: dict[str, list[float]] = {"serial_default": [], "serial_same_segments": [], "ray_2_workers": []}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    sizes: dict[str, int] = {}
    segments: list[dict[str, Any]] = []
    for i in range(args.runs):
        for name in runs:
            out = work / f"{name}.rerf"
            cfg = default if name == "serial_default" else seg
            runner = cluster.segment_runner(c) if name == "ray_2_workers" else None
            t0, c0 = time.perf_counter(), time.process_time()
            rep = encode_sequence(seq, out, cfg, force=True, runner=runner, workers=2 if runner else 1)
            runs[name].append(time.perf_counter() - t0)
            # CPU seconds: this process, plus the workers' own for the Ray run
            cpu[name].append(time.process_time() - c0 + (sum(s["cpu_seconds"] for s in rep.segments) if runner else 0))
            sizes[name] = out.stat().st_size
            if runner:
                segments = rep.segments
        assert (work / "ray_2_workers.rerf").read_bytes() == (work / "serial_same_segments.rerf").read_bytes()
        print(f"encode run {i}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()), flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    per_worker: dict[str, float] = {}
    for sgm in segments:
        per_worker[sgm["worker"]] = per_worker.get(sgm["worker"], 0.0) + sgm["cpu_seconds"]
    seg_bytes = {}
    for k in (args.segment_frames, 2 * args.segment_frames, args.frames):
        out = work / f"seg{k}.rerf"
        encode_sequence(seq, out, EncoderConfig(segment_frames=k), force=True)
        seg_bytes[k] = out.stat().st_size
    return {
        "spec": {"shape": list(spec.shape), "frames": spec.num_frames, "channels": 1 + spec.feature_channels},
        "segment_frames": args.segment_frames,
        "runs_s": runs,
        "median_s": med,
        "cpu_runs_s": cpu,
        "median_cpu_s": med_cpu,
        "driver_cpu_s_last_parallel_run": cpu["ray_2_workers"][-1] - sum(s["cpu_seconds"] for s in segments),
        "worker_cpu_s_last_parallel_run": per_worker,
        "bytes": sizes,
        "bytes_by_segment_frames": seg_bytes,
        "speedup_vs_default_serial": med["serial_default"] / med["ray_2_workers"],
        "speedup_vs_same_segments": med["serial_same_segments"] / med["ray_2_workers"],
        "serial_frames_per_s": args.frames / med["serial_default"],
        "segments_last_parallel_run": segments,
        "byte_identical": True,
    }


def bench_overhead(c: cluster.Cluster, tasks: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = list(c.map_unordered(_noop, range(tasks), describe=lambda i: f"noop {i}"))
    dt = time.perf_counter() - t0
    assert sorted(out) == list(range(tasks))
    return {"tasks": tasks, "seconds": dt, "ms_per_task": 1000 * dt / tasks}


def bench_train(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from rerf_codec.datasets.demo_scene import render_demo_dataset
    from rerf_codec.train.config import TrainConfig
    from rerf_codec.train.driver import TrainRequest, train_sequence
    from rerf_codec.train.gofs import train_sequence_gofs

    data = work / "demo"
    render_demo_dataset(data, frames=args.train_frames, cameras=8, test_cameras=1, size=48)
    config = TrainConfig(resolution=args.train_resolution, iters_key=args.iters_key, iters_motion=20,
                         iters_residual=40, iters_refresh=args.iters_refresh, batch_rays=1024,
                         batch_rays_residual=512)  # fmt: skip
    out: dict[str, Any] = {"frames": args.train_frames, "gof": args.gof, "config": config.to_json(),
                           "torch_default_threads": torch.get_num_threads()}  # fmt: skip
    def frame_cpu(seq: Path) -> float:
        return sum(json.loads(line)["cpu_seconds"] for line in (seq / "train_log.jsonl").read_text().splitlines())

    t0, c0 = time.perf_counter(), time.process_time()
    s = train_sequence(TrainRequest(data, work / "t_serial", force=True), config)
    out["serial_default_s"] = time.perf_counter() - t0
    out["serial_default_cpu_s"] = time.process_time() - c0
    out["serial_default_keyframe_s"] = s["keyframe_seconds"]
    print(f"train serial default {out['serial_default_s']:.1f} s", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    s = train_sequence_gofs(TrainRequest(data, work / "t_gofs", force=True), config, args.gof)
    out["serial_gofs_s"] = time.perf_counter() - t0
    out["serial_gofs_cpu_s"] = time.process_time() - c0
    out["serial_gofs_frame_cpu_s"] = frame_cpu(work / "t_gofs")
    out["serial_default_frame_cpu_s"] = frame_cpu(work / "t_serial")
    out["serial_gofs_keyframe_s"] = s["keyframe_seconds"]
    print(f"train serial --gof {out['serial_gofs_s']:.1f} s", flush=True)
    t0 = time.perf_counter()
    with cluster.connect(2) as c:
        s = train_sequence_gofs(TrainRequest(data, work / "t_ray", force=True), config, args.gof,
                                runner=cluster.task_runner(c), workers=2)  # fmt: skip
        out["ray_2_workers_s"] = time.perf_counter() - t0
    out["ray_frame_cpu_s"] = frame_cpu(work / "t_ray")
    out["ray_start_included"] = True
    out["ray_keyframe_s"] = s["keyframe_seconds"]
    out["ray_gofs"] = s["gofs"]
    print(f"train ray 2 workers {out['ray_2_workers_s']:.1f} s", flush=True)
    # CPU-time view (the shared machine's load distorts wall clock): frame A, then the GOFs'
    # CPU seconds list-scheduled on 2 workers, against the serial chain's CPU seconds.
    log = [json.loads(line) for line in (work / "t_ray" / "train_log.jsonl").read_text().splitlines()]
    gof_cpu = [sum(r["cpu_seconds"] for r in log[1:] if g["frames"][0] <= r["frame"] < g["frames"][1])
               for g in s["gofs"]]  # fmt: skip
    lanes = [0.0, 0.0]
    for cost in gof_cpu:
        lanes[lanes.index(min(lanes))] += cost
    out["gof_cpu_s"] = gof_cpu
    out["first_frame_cpu_s"] = log[0]["cpu_seconds"]
    out["cpu_critical_path_2_workers_s"] = log[0]["cpu_seconds"] + max(lanes)
    out["cpu_speedup_vs_serial_gofs"] = out["serial_gofs_frame_cpu_s"] / out["cpu_critical_path_2_workers_s"]
    out["psnr_serial_default"] = [json.loads(x)["test_psnr"] for x in (work / "t_serial" / "train_log.jsonl").read_text().splitlines()]
    out["psnr_gofs"] = [r["test_psnr"] for r in log]
    out["speedup_vs_default_serial"] = out["serial_default_s"] / out["ray_2_workers_s"]
    out["speedup_vs_serial_gofs"] = out["serial_gofs_s"] / out["ray_2_workers_s"]
    gof_phase_serial = out["serial_gofs_s"] - out["serial_gofs_keyframe_s"]
    gof_phase_ray = out["ray_2_workers_s"] - out["ray_keyframe_s"]
    out["gof_phase_speedup"] = gof_phase_serial / gof_phase_ray
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--segment-frames", type=int, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-encode", action="store_true")
    p.add_argument("--train-frames", type=int, default=9)
    p.add_argument("--gof", type=int, default=3)
    p.add_argument("--train-resolution", type=int, default=32)
    p.add_argument("--iters-key", type=int, default=200)
    p.add_argument("--iters-refresh", type=int, default=100, help="also a GOF keyframe's iterations")
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args(argv)
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version(), "torch": torch.__version__},
                              "load_start": _load()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        with cluster.connect(2) as c:
            report["ray_start_s"] = time.perf_counter() - t0
            report["overhead"] = bench_overhead(c, args.tasks)
            print(f"ray start {report['ray_start_s']:.1f} s, {report['overhead']['ms_per_task']:.2f} ms/task", flush=True)
            if not args.skip_encode:
                report["encode"] = bench_encode(work, args, c)
            t1 = time.perf_counter()
        report["ray_shutdown_s"] = time.perf_counter() - t1
        if not args.skip_train:
            report["train"] = bench_train(work, args)
    report["load_end"] = _load()
    text = json.dumps(report, indent=2)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
