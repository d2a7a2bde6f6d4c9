"""The player: stream-decode a ``.rerf`` GOF by GOF and render every frame along a camera path.

Data flow per frame: the streaming :class:`~rerf_codec.codec.decoder.Decoder` yields the frame's
grids (frames come out as soon as their GOF chunk is read; a file or a pipe), the shared
:class:`~rerf_codec.field.RadianceField` (built once per stream from the MLP and render settings
the stream carries) takes the grids and renders the camera the path assigns to that frame, and a
sink writes the picture. Only the current GOF's coded data, at most two dense frames and one
picture are alive at a time, whatever the length of the sequence (GIF output is the exception: its
writer keeps the encoded frames until the end).

Camera paths (:func:`camera_path`):

* ``orbit`` — a ring around the centre of the sequence's grid box at 20° elevation, one full
  revolution over the rendered frames (frame ``k`` of ``n`` at azimuth ``360·k/n``), world ``+y``
  up, 40° horizontal field of view, at the smallest distance that keeps the whole box in frame
  from every point of the path (5 % margin);
* ``spiral`` — the same ring with the elevation oscillating ``20° ± 25°`` twice per revolution;
* ``dataset:DATA`` — a camera of the dataset DATA, the same one for every frame (its first test
  camera unless ``camera_name`` names another), so the video is what that capture camera would
  have seen; ``size`` rescales its intrinsics.

Damaged streams: without ``skip_damaged`` the first damage raises ``RerfFormatError``. With it a
damaged GOF is reported once (:class:`DamagedReport`) and each of its frames is *concealed*: the
last good frame's grids (or, before any, an empty scene: the background) are rendered from the
camera the path assigns to the lost frame — the scene freezes, the camera keeps moving — and
playback resumes at the next GOF's keyframe.

Timing: ``decode`` is the time spent waiting for the decoder (reading + decoding the frame),
``render`` the time spent in the renderer for it, output encoding is reported separately; the
*real-time factor* is ``(frames / stream fps) / (decode + render seconds)``: above 1 the player
keeps up with the stream's frame rate.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from rerf_codec.atomic import AtomicDirectory, check_output, sibling_path
from rerf_codec.codec.decoder import DamagedReport, Decoder, DecodeSession
from rerf_codec.datasets import open_dataset
from rerf_codec.errors import RerfUsageError
from rerf_codec.field.camera import Camera, orbit_cameras, read_camera_file
from rerf_codec.framerange import FrameRange, parse_frame_range

__all__ = [
    "DEFAULT_SIZE",
    "PATH_KINDS",
    "PlayReport",
    "RenderedFrame",
    "camera_path",
    "output_kind",
    "play",
    "render_stream",
]

DEFAULT_SIZE = (256, 256)
PATH_KINDS = ("orbit", "spiral", "dataset:DATA")
MAX_SIDE = 8192

CameraFor = Callable[[int, int], Camera]
"""``camera_for(k, n)``: the camera of the ``k``-th rendered frame out of ``n``."""


# --------------------------------------------------------------------------- camera paths


@dataclass(frozen=True)
class CameraPath:
    """A parsed ``--camera`` choice; ``cameras(n)`` gives the cameras of ``n`` rendered frames."""

    kind: str  # orbit | spiral | dataset | file
    size: tuple[int, int]
    xyz_min: tuple[float, ...]
    xyz_max: tuple[float, ...]
    camera: Camera | None = None  # a fixed camera: the dataset's or a camera file's (already resized)
    dataset: str | None = None  # where it came from: DATA, or the camera file
    dataset_box: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # DATA's bounding box (dataset kind)

    def cameras(self, n: int) -> list[Camera]:
        if self.camera is not None:
            return [self.camera] * n
        return orbit_cameras(self.xyz_min, self.xyz_max, n, self.size, spiral=self.kind == "spiral")

    def describe(self) -> str:
        if self.kind == "file":
            return f"camera file {self.dataset}"
        if self.camera is not None:
            return f"dataset camera {self.camera.name} of {self.dataset}"
        return self.kind

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "size": list(self.size)}
        if self.kind == "file":
            d.update(file=self.dataset)
        elif self.camera is not None:
            d.update(dataset=self.dataset, camera_name=self.camera.name)
        return d


def _check_size(size: tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if len(size) != 2 or not all(isinstance(v, int) and 1 <= v <= MAX_SIDE for v in size):
        raise RerfUsageError(f"W H: two integers in 1..{MAX_SIDE}, got {size!r}", param="size")
    return int(size[0]), int(size[1])


def camera_path(
    spec: str,
    xyz_min: tuple[float, ...],
    xyz_max: tuple[float, ...],
    size: tuple[int, int] | None = None,
    camera_name: str | None = None,
) -> CameraPath:
    """Parse ``orbit``, ``spiral`` or ``dataset:DATA`` (see the module docstring)."""
    size = _check_size(size)
    if spec in ("orbit", "spiral"):
        if camera_name is not None:
            raise RerfUsageError("only applies to a dataset:DATA camera", param="camera_name")
        return CameraPath(spec, size or DEFAULT_SIZE, tuple(xyz_min), tuple(xyz_max))
    if spec.startswith("dataset:") and len(spec) > len("dataset:"):
        data = spec[len("dataset:") :]
        meta = open_dataset(data, check_images=False).meta
        if camera_name is None:
            if not meta.test_cameras:
                raise RerfUsageError(f"{data}: the dataset has no test camera; name one with camera_name")
            cam = meta.test_cameras[0]
        else:
            try:
                cam = meta.camera(camera_name)
            except RerfUsageError:
                raise RerfUsageError(f"{data}: no camera named {camera_name!r}") from None
        cam = cam.resized(size)
        return CameraPath("dataset", (cam.w, cam.h), tuple(xyz_min), tuple(xyz_max), cam, data,
                          (tuple(meta.xyz_min), tuple(meta.xyz_max)))  # fmt: skip
    if spec.endswith(".json"):
        if camera_name is not None:
            raise RerfUsageError("only applies to a dataset:DATA camera", param="camera_name")
        cam = read_camera_file(spec).resized(size)
        return CameraPath("file", (cam.w, cam.h), tuple(xyz_min), tuple(xyz_max), cam, spec)
    raise RerfUsageError(f"{spec!r}: expected orbit, spiral, dataset:DATA or a camera file FILE.json", param="camera")


# --------------------------------------------------------------------------- the player loop


@dataclass
class RenderedFrame:
    """One picture of the path: uint8 (h, w, 3), with what it cost."""

    index: int
    image: np.ndarray
    camera: Camera
    decode_seconds: float
    render_seconds: float
    concealed: bool = False


@dataclass
class PlayReport:
    """What ``play`` did; ``to_json`` is what ``rerf render --json`` prints."""

    output: str
    format: str
    frames: range
    path: dict[str, Any]
    stream_fps: float
    device: str
    decode_seconds: float = 0.0
    render_seconds: float = 0.0
    write_seconds: float = 0.0
    seconds: float = 0.0
    per_frame: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[DamagedReport] = field(default_factory=list)
    concealed_frames: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What makes the pictures doubtful (a dataset camera from another scene); printed as notes."""

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def _per(self, s: float) -> float:
        return 1e3 * s / self.num_frames if self.num_frames else 0.0

    @property
    def frames_per_second(self) -> float | None:
        t = self.decode_seconds + self.render_seconds
        return self.num_frames / t if t > 0 else None

    @property
    def realtime_factor(self) -> float | None:
        t = self.decode_seconds + self.render_seconds
        return (self.num_frames / self.stream_fps) / t if t > 0 and self.stream_fps > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "format": self.format,
            "frames": [self.frames.start, self.frames.stop],
            "num_frames": self.num_frames,
            "camera": self.path,
            "device": self.device,
            "stream_fps": self.stream_fps,
            "decode_ms_per_frame": self._per(self.decode_seconds),
            "render_ms_per_frame": self._per(self.render_seconds),
            "write_ms_per_frame": self._per(self.write_seconds),
            "frames_per_second": self.frames_per_second,
            "realtime_factor": self.realtime_factor,
            "seconds": self.seconds,
            "damaged": [d.to_json() for d in self.damaged],
            "concealed_frames": list(self.concealed_frames),
            "notes": list(self.notes),
            "per_frame": self.per_frame,
        }


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_stream(
    decoder: Decoder,
    want: range,
    cameras: list[Camera],
    *,
    device: str = "cpu",
    skip_damaged: bool = False,
    damaged: list[DamagedReport] | None = None,
) -> Iterator[RenderedFrame]:
    """Decode ``want`` frames of ``decoder``'s stream and render frame ``want[k]`` from ``cameras[k]``.

    Frames are yielded in order, one picture each, concealed ones included (see the module
    docstring); damaged stretches are appended to ``damaged`` as they are met.
    """
    from rerf_codec.field import RadianceField, resolve_device

    if len(cameras) != len(want):
        raise RerfUsageError(f"{len(cameras)} cameras for {len(want)} frames")
    dev = resolve_device(device)
    meta = decoder.sequence_meta(want)
    tensors = dict(decoder.header.tensors) if decoder.header.tensors else None
    field_ = RadianceField.for_sequence(meta, tensors, dev)
    background = np.asarray(field_.settings.background, np.float32)
    have_grids = False
    report = damaged if damaged is not None else []
    # set_grids copies the frame, so the decoder may reuse its buffers.
    session = DecodeSession(decoder, want, skip_damaged=skip_damaged, reuse_buffers=True, damaged=report)
    for sf in session:
        cam = cameras[sf.index - want.start]
        t1 = time.perf_counter()
        if not sf.concealed:
            assert sf.frame is not None
            field_.set_grids(sf.frame.density, sf.frame.features)
            have_grids = True
        # concealed before any frame decoded: the empty scene
        rgb = field_.render_camera(cam) if have_grids else np.broadcast_to(background, (cam.h, cam.w, 3))
        yield RenderedFrame(sf.index, _to_uint8(rgb), cam, sf.decode_seconds, time.perf_counter() - t1,
                            concealed=sf.concealed)  # fmt: skip


# --------------------------------------------------------------------------- outputs


def output_kind(path: str | Path) -> str:
    """``mp4``, ``gif`` or ``png`` (a directory of PNGs: any path without a suffix)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".mp4", ".gif"):
        return suffix[1:]
    if suffix == "" or str(path).endswith(os.sep):
        return "png"
    raise RerfUsageError(f"{path}: output must end in .mp4 or .gif, or be a directory name (PNG frames)")


class PngDirectory(AtomicDirectory):
    """``frame_NNNNNN.png`` per frame (original frame numbers) + ``render.json``, atomically."""

    MARKER = "render.json"
    KIND = "rendered PNG directory"

    def write(self, index: int, image: np.ndarray) -> None:
        import imageio.v3 as iio

        self._check_open()
        iio.imwrite(self._tmp / f"frame_{index:06d}.png", image, extension=".png")

    def finish(self, info: dict[str, Any]) -> None:
        (self._tmp / self.MARKER).write_text(json.dumps(info, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        self.commit()


class _VideoFile:
    """An mp4 (ffmpeg, H.264) or GIF written to a hidden sibling and renamed into place at the end."""

    def __init__(self, path: Path, kind: str, fps: float, size: tuple[int, int], force: bool) -> None:
        import imageio.v2 as iio2

        self.path = check_output(path, force)
        self.tmp = sibling_path(self.path, "tmp").with_suffix(f".{kind}")
        w, h = size
        if kind == "mp4":
            if w % 2 or h % 2:
                raise RerfUsageError(f"mp4 (H.264, yuv420p) needs an even width and height, got {w}×{h}; choose an even size")
            self.writer = iio2.get_writer(
                self.tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
                macro_block_size=1, pixelformat="yuv420p", ffmpeg_log_level="error",
            )  # fmt: skip
        else:
            self.writer = iio2.get_writer(self.tmp, format="GIF", mode="I", duration=1000.0 / fps, loop=0)

    def write(self, index: int, image: np.ndarray) -> None:
        self.writer.append_data(image)

    def finish(self, info: dict[str, Any]) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def _open_sink(path: Path, kind: str, fps: float, size: tuple[int, int], force: bool) -> Any:
    if kind == "png":
        return PngDirectory(path, force=force)
    return _VideoFile(path, kind, fps, size, force)


def precheck_output(output: str | Path, force: bool) -> str:
    """Fail on a bad output before any input is read (stdin cannot be read twice)."""
    kind = output_kind(output)
    p = Path(output)
    if kind == "png":
        if p.name in ("", ".", ".."):
            raise RerfUsageError(f"{output}: not a usable output directory name")
        if (p.exists() or p.is_symlink()) and not force:
            raise RerfUsageError(f"{p} exists", hint=("force", "to overwrite"))
        if not p.parent.is_dir():
            raise RerfUsageError(f"output folder {p.parent} does not exist")
    else:
        check_output(p, force)
    return kind


def play(
    src: BinaryIO,
    output: str | Path,
    *,
    camera: str = "orbit",
    camera_name: str | None = None,
    size: tuple[int, int] | None = None,
    frames: FrameRange | range | str | None = None,
    fps: float | None = None,
    device: str = "cpu",
    skip_damaged: bool = False,
    force: bool = False,
    progress: Callable[[RenderedFrame, int, int], None] | None = None,
) -> PlayReport:
    """Render ``src`` (a ``.rerf`` stream) along a camera path into ``output`` (mp4, gif or PNG dir).

    ``frames``: a :class:`FrameRange`, range or ``A:B`` text (the stream's own numbers); from a
    seekable input the decoder starts at the GOF holding the first one (through the index).
    ``fps``: the video's frame rate (default: the stream's). The output appears only when every
    frame was written; an existing one is replaced only with ``force``.
    """
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= 1000):
        raise RerfUsageError(f"must be a number in (0, 1000], got {fps!r}", param="fps")
    kind = precheck_output(output, force)
    wanted = parse_frame_range(frames)  # syntax errors before any input is read
    t_start = time.perf_counter()
    dec = Decoder(src)
    h = dec.header
    want = dec.resolve_range(wanted)
    path = camera_path(camera, h.xyz_min, h.xyz_max, size, camera_name)
    cameras = path.cameras(len(want))
    video_fps = float(fps if fps is not None else h.fps)
    report = PlayReport(str(output), kind, want, path.to_json(), float(h.fps), device)
    if path.dataset_box is not None:  # a capture camera of the stream's own scene?
        from rerf_codec.field.geometry import box_mismatch

        mismatch = box_mismatch(h.xyz_min, h.xyz_max, h.grid_shape, *path.dataset_box)
        if mismatch is not None:
            report.notes.append(f"{mismatch} Rendered anyway")
    sink = _open_sink(Path(output), kind, video_fps, path.size, force)
    try:
        for k, fr in enumerate(render_stream(dec, want, cameras, device=device, skip_damaged=skip_damaged,
                                             damaged=report.damaged)):  # fmt: skip
            t0 = time.perf_counter()
            sink.write(fr.index, fr.image)
            t_write = time.perf_counter() - t0
            report.decode_seconds += fr.decode_seconds
            report.render_seconds += fr.render_seconds
            report.write_seconds += t_write
            if fr.concealed:
                report.concealed_frames.append(fr.index)
            report.per_frame.append({
                "index": fr.index, "decode_ms": 1e3 * fr.decode_seconds, "render_ms": 1e3 * fr.render_seconds,
                "write_ms": 1e3 * t_write, "concealed": fr.concealed,
            })  # fmt: skip
            if progress is not None:
                progress(fr, k + 1, len(want))
        report.seconds = time.perf_counter() - t_start
        sink.finish({k: v for k, v in report.to_json().items() if k != "per_frame"} | {"per_frame": report.per_frame})
    except BaseException:
        sink.abort()
        raise
    return report
