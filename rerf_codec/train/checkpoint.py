"""The trainer's checkpoint: everything needed to continue a run after the last finished frame.

Lives in a hidden sibling of the output (``.SEQ.train-checkpoint``) so an interrupted
run never leaves a half-written grid sequence where the user asked for one. Layout::

    state.json        settings, dataset identity, geometry, frames done, per-frame log
    decoder.npz       the frozen MLP (after the keyframe)
    frames/NNNNNN.npz each finished frame, exactly as it will be written to SEQ
    last.npz          full grids + motion of the last finished frame (the next frame's reference)

Each frame's files are written first and ``state.json`` last, each by write-to-temp +
rename, so the state file is the commit point: a crash at any moment loses at most
the frame in progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rerf_codec.errors import RerfUsageError
from rerf_codec.grids import GridFrame, TrainerFrame
from rerf_codec.jsonfile import loads_strict, read_bounded

STATE_VERSION = 1


def checkpoint_dir(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.train-checkpoint"


def dataset_fingerprint(transforms_json: Path) -> str:
    """SHA-256 of the dataset's transforms.json: resuming against another dataset is refused."""
    return hashlib.sha256(transforms_json.read_bytes()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass
class Checkpoint:
    root: Path
    state: dict[str, Any]

    @staticmethod
    def create(root: Path, identity: dict[str, Any]) -> Checkpoint:
        if root.exists():
            shutil.rmtree(root)
        (root / "frames").mkdir(parents=True)
        ckpt = Checkpoint(root, {"version": STATE_VERSION, "identity": identity, "done": [], "log": []})
        ckpt._write_state()
        return ckpt

    @staticmethod
    def open(root: Path, identity: dict[str, Any]) -> Checkpoint:
        path = root / "state.json"
        state = loads_strict(read_bounded(path, 64 * 2**20, ""), str(path))
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise RerfUsageError(f"{path}: not a checkpoint this version of rerf can resume")
        if state.get("identity") != identity:
            old = state.get("identity", {})
            diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            raise RerfUsageError(
                f"the checkpoint at {root} was made with different settings ({', '.join(diff)}); "
                "rerun with the same arguments",
                param="resume",
                hint=("force", "to start over"),
            )
        return Checkpoint(root, state)

    def _write_state(self) -> None:
        _atomic_write(self.root / "state.json", (json.dumps(self.state, indent=1, allow_nan=False) + "\n").encode())

    @property
    def done(self) -> list[int]:
        return list(self.state["done"])

    def save_decoder(self, arrays: dict[str, np.ndarray]) -> None:
        _save_npz(self.root / "decoder.npz", arrays)

    def load_decoder(self) -> dict[str, np.ndarray]:
        return _load_npz(self.root / "decoder.npz")

    def frame_path(self, index: int) -> Path:
        return self.root / "frames" / f"{index:06d}.npz"

    def commit_frame(self, index: int, frame: GridFrame | TrainerFrame, full: GridFrame, motion: np.ndarray,
                     record: dict[str, Any]) -> None:  # fmt: skip
        """Store a finished frame; ``state.json`` is rewritten last (the commit point)."""
        if isinstance(frame, GridFrame):
            arrays = {"density": frame.density, "features": frame.features}
        else:
            arrays = {"motion": frame.motion, "residual_density": frame.residual_density,
                      "residual_features": frame.residual_features}  # fmt: skip
        _save_npz(self.frame_path(index), arrays)
        _save_npz(self.root / "last.npz", {"density": full.density, "features": full.features, "motion": motion})
        self.state["done"].append(index)
        self.state["log"].append(record)
        self._write_state()

    def load_frame(self, index: int) -> GridFrame | TrainerFrame:
        a = _load_npz(self.frame_path(index))
        if "density" in a:
            return GridFrame(density=a["density"], features=a["features"])
        return TrainerFrame(motion=a["motion"], residual_density=a["residual_density"],
                            residual_features=a["residual_features"])  # fmt: skip

    def load_last(self) -> tuple[GridFrame, np.ndarray]:
        a = _load_npz(self.root / "last.npz")
        return GridFrame(density=a["density"], features=a["features"]), a["motion"]

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.root)
