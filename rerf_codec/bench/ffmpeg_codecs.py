"""The 2D video codecs of the video baselines, run as the ``ffmpeg`` bundled with imageio-ffmpeg.

Why a subprocess and raw elementary streams: the baselines must be what a user would get from
the stock encoders (libx265, libsvtav1, libvvenc, libx264) with their own rate control, and the
bytes counted must be the codec's alone, so each setting writes a real raw bitstream file
(Annex-B ``.hevc`` / ``.h264`` / ``.266``, or IVF for AV1: 32 bytes + 12 per frame of
container) and decodes it back with ffmpeg's decoders. Frames travel over pipes as
``rawvideo``, one picture at a time.

Pixel formats (what each encoder accepts in this ffmpeg; ``ffmpeg -h encoder=NAME``):

==========  ===========  =====  =========================================================
codec       pix_fmt      bits   data
==========  ===========  =====  =========================================================
x265        gray12le     12     the atlas is the luma plane (monochrome 4:0:0)
svt-av1     yuv420p10le  10     atlas in luma; both chroma planes a constant 512 (the
                                encoder takes no 4:0:0 and no 4:4:4, so the data never
                                goes through subsampled chroma; the constant planes cost
                                a few bytes per frame, counted)
vvenc       yuv420p10le  10     as svt-av1 (libvvenc takes only yuv420p10le)
x264        gray         8      luma only, High profile (4:0:0 is allowed in High) — the floor
==========  ===========  =====  =========================================================

GOP: an intra (IDR / key) frame every ``gop`` frames, closed GOPs, scene-cut detection off,
so random access is at the same frames as rerf's GOF. Each codec's sweep ("settings") runs
from its finest setting (lossless where the encoder has a lossless mode: x265
``lossless=1``, SVT-AV1 ``lossless=1``, x264 ``-qp 0``, which x264 codes in High 4:4:4
Predictive profile; vvenc has none, QP 0 is its finest) to coarse CRF/QP values.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from rerf_codec.errors import RerfError

__all__ = [
    "LOSSLESS",
    "VIDEO_CODECS",
    "VideoCodec",
    "available_encoders",
    "decode_video",
    "encode_video",
    "ffmpeg_exe",
    "missing_encoder",
    "packet_sizes",
]

LOSSLESS = "lossless"
"""The sweep token for a codec's lossless mode."""


@dataclass(frozen=True)
class VideoCodec:
    """One encoder as the baselines run it (see the module docstring for the choices)."""

    name: str
    """Baseline prefix, e.g. ``x265``."""
    encoder: str
    """ffmpeg encoder name."""
    pix_fmt: str
    bit_depth: int
    muxer: str
    """ffmpeg muxer of the raw elementary stream."""
    extension: str
    rate_control: str
    """``crf`` or ``qp``: what the integer settings of the sweep mean."""
    default_sweep: tuple[str, ...]
    """Finest first; ``lossless`` or integers as text."""
    preset: str
    description: str

    @property
    def chroma_planes(self) -> bool:
        return self.pix_fmt.startswith("yuv420p")

    @property
    def max_code(self) -> int:
        return (1 << self.bit_depth) - 1

    def frame_bytes(self, width: int, height: int) -> int:
        """Bytes of one rawvideo picture in this pixel format."""
        sample = 1 if self.bit_depth == 8 else 2
        luma = width * height
        return sample * (luma + (2 * (width // 2) * (height // 2) if self.chroma_planes else 0))

    def check_setting(self, setting: str) -> None:
        if setting == LOSSLESS:
            if self.name == "vvenc":
                raise RerfError("vvenc has no lossless mode (its finest setting is QP 0)")
            return
        try:
            v = int(setting)
        except ValueError:
            raise RerfError(f"{self.name}: setting {setting!r} is neither an integer nor 'lossless'") from None
        lo, hi = (0, 51) if self.name in ("x265", "x264") else (0, 63)
        if not lo <= v <= hi:
            raise RerfError(f"{self.name}: {self.rate_control.upper()} must be in {lo}..{hi}, got {v}")

    def encoder_args(self, setting: str, gop: int) -> list[str]:
        """ffmpeg output options for one setting (after ``-c:v``)."""
        self.check_setting(setting)
        g = str(gop)
        if self.name == "x265":
            params = [f"keyint={g}", f"min-keyint={g}", "scenecut=0", "open-gop=0", "log-level=error"]
            rate = ["-crf", setting]
            if setting == LOSSLESS:
                params.insert(0, "lossless=1")
                rate = []
            return ["-preset", self.preset, *rate, "-x265-params", ":".join(params)]
        if self.name == "svt-av1":
            params = ["scd=0", "irefresh-type=2"]  # no scene-change keyframes, closed GOP (key frames)
            rate = ["-crf", setting]
            if setting == LOSSLESS:
                params.append("lossless=1")
                rate = []
            return ["-preset", self.preset, *rate, "-g", g, "-svtav1-params", ":".join(params)]
        if self.name == "vvenc":
            # qpa off: perceptual QP adaptation targets the human eye, not MSE on feature data
            return ["-preset", self.preset, "-qp", setting, "-qpa", "0",
                    "-vvenc-params", f"IntraPeriod={g}:DecodingRefreshType=idr"]
        if self.name == "x264":
            gop_args = ["-g", g, "-keyint_min", g, "-sc_threshold", "0", "-flags", "+cgop"]
            if setting == LOSSLESS:
                return ["-preset", self.preset, "-qp", "0", *gop_args]
            return ["-preset", self.preset, "-profile:v", "high", "-crf", setting, *gop_args]
        raise AssertionError(self.name)


VIDEO_CODECS: dict[str, VideoCodec] = {
    c.name: c
    for c in (
        VideoCodec("x265", "libx265", "gray12le", 12, "hevc", "hevc", "crf",
                   (LOSSLESS, "0", "8", "16", "24", "32"), "medium",
                   "HEVC (libx265, preset medium), 12-bit monochrome; CRF sweep (TeTriRF's choice of codec and depth)"),
        VideoCodec("svt-av1", "libsvtav1", "yuv420p10le", 10, "ivf", "ivf", "crf",
                   (LOSSLESS, "1", "12", "24", "36", "48"), "8",
                   "AV1 (SVT-AV1, preset 8), 10-bit, data in luma, chroma constant; CRF sweep"),
        VideoCodec("vvenc", "libvvenc", "yuv420p10le", 10, "vvc", "266", "qp",
                   ("0", "8", "16", "24", "32", "40"), "faster",
                   "VVC (vvenc, preset faster, QPA off), 10-bit, data in luma, chroma constant; QP sweep"),
        VideoCodec("x264", "libx264", "gray", 8, "h264", "h264", "crf",
                   (LOSSLESS, "6", "12", "18", "24", "30"), "medium",
                   "H.264 (libx264, preset medium, High profile), 8-bit monochrome; CRF sweep — the floor"),
    )
}


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg (``RERF_FFMPEG`` overrides it, for tests and other builds)."""
    env = os.environ.get("RERF_FFMPEG")
    if env:
        return env
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


@functools.lru_cache(maxsize=8)
def _encoders_of(exe: str) -> frozenset[str]:
    try:
        out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RerfError(f"cannot run ffmpeg ({exe}): {exc}") from None
    names = set()
    started = False
    for line in out.decode("utf-8", "replace").splitlines():
        if line.strip().startswith("------"):
            started = True
            continue
        parts = line.split()
        if started and len(parts) >= 2 and parts[0].startswith("V"):
            names.add(parts[1])
    return frozenset(names)


def available_encoders(exe: str | None = None) -> frozenset[str]:
    """Video encoders of ``exe`` (default: the bundled ffmpeg), from ``ffmpeg -encoders``."""
    return _encoders_of(exe or ffmpeg_exe())


def missing_encoder(codec: VideoCodec, exe: str | None = None) -> str | None:
    """None if ``exe`` can run ``codec``, else the one-line reason."""
    try:
        exe = exe or ffmpeg_exe()
        have = available_encoders(exe)
    except (RerfError, ImportError, RuntimeError) as exc:
        return f"no usable ffmpeg: {exc}"
    if codec.encoder not in have:
        return f"the bundled ffmpeg ({exe}) has no encoder {codec.encoder}"
    return None


def _to_raw(codec: VideoCodec, picture: np.ndarray) -> bytes:
    """One atlas (H, W) of codes → one rawvideo picture (chroma planes constant mid-grey)."""
    dt = np.uint8 if codec.bit_depth == 8 else np.dtype("<u2")
    luma = np.ascontiguousarray(picture, dtype=dt)
    if not codec.chroma_planes:
        return luma.tobytes()
    h, w = picture.shape
    chroma = np.full((h // 2, w // 2), 1 << (codec.bit_depth - 1), dtype=dt).tobytes()
    return luma.tobytes() + chroma + chroma


def _run_checked(cmd: list[str], what: str, feed: Iterable[bytes] | None = None,
                 reader: tuple[int, list[bytes]] | None = None) -> None:
    """Run ffmpeg; stdin from ``feed``, stdout collected in chunks of ``reader[0]`` bytes."""
    with tempfile.TemporaryFile() as err, subprocess.Popen(
        cmd, stdin=subprocess.PIPE if feed is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE if reader is not None else subprocess.DEVNULL, stderr=err,
    ) as proc:
        try:
            if feed is not None:
                assert proc.stdin is not None
                try:
                    for chunk in feed:
                        proc.stdin.write(chunk)
                    proc.stdin.close()
                except BrokenPipeError:  # ffmpeg stopped reading: its exit status and message say why
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.close()
            if reader is not None:
                assert proc.stdout is not None
                size, sink = reader
                while True:
                    chunk = proc.stdout.read(size)
                    if not chunk:
                        break
                    sink.append(chunk)
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if rc != 0:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            raise RerfError(f"ffmpeg {what} failed (exit {rc}): {' / '.join(tail) or 'no message'}")


def encode_video(codec: VideoCodec, pictures: Iterable[np.ndarray], width: int, height: int, setting: str,
                 gop: int, path: str, fps: float = 30.0, exe: str | None = None) -> float:
    """Encode the atlases (each (height, width) of integer codes) to ``path``; returns wall seconds."""
    cmd = [exe or ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", codec.pix_fmt, "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
           "-an", "-c:v", codec.encoder, *codec.encoder_args(setting, gop), "-threads", "2",
           "-f", codec.muxer, path]
    t0 = time.perf_counter()
    _run_checked(cmd, f"encode ({codec.encoder})", feed=(_to_raw(codec, p) for p in pictures))
    return time.perf_counter() - t0


def decode_video(codec: VideoCodec, path: str, width: int, height: int, frames: int,
                 exe: str | None = None) -> Iterator[np.ndarray]:
    """Decode ``path`` to its ``frames`` luma pictures (height, width) of uint16 codes.

    The whole stream is decoded by one ffmpeg run before the first picture is yielded
    (the caller times the iteration).
    """
    size = codec.frame_bytes(width, height)
    chunks: list[bytes] = []
    cmd = [exe or ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "2",
           "-f", codec.muxer, "-i", path, "-f", "rawvideo", "-pix_fmt", codec.pix_fmt, "-"]
    _run_checked(cmd, f"decode ({codec.muxer})", reader=(size * max(1, min(frames, 8)), chunks))
    data = b"".join(chunks)
    if len(data) != size * frames:
        raise RerfError(f"ffmpeg decoded {len(data) / size:g} pictures from {path}, expected {frames}")
    dt = np.uint8 if codec.bit_depth == 8 else np.dtype("<u2")
    for i in range(frames):
        luma = np.frombuffer(data, dtype=dt, count=width * height, offset=i * size)
        yield luma.reshape(height, width).astype(np.uint16)


def packet_sizes(codec: VideoCodec, path: str, exe: str | None = None) -> list[tuple[bool, int]]:
    """(is key frame, bytes) of every packet of the stream, in decode order (``-f framecrc``)."""
    cmd = [exe or ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", codec.muxer, "-i", path,
           "-c", "copy", "-f", "framecrc", "-"]
    chunks: list[bytes] = []
    _run_checked(cmd, "packet listing", reader=(1 << 16, chunks))
    out = []
    for line in b"".join(chunks).decode("ascii", "replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        flags = [int(p[2:], 16) for p in parts[6:] if p.startswith("F=")]
        out.append((bool(flags[0] & 1) if flags else True, int(parts[4])))  # no F= field: key (flags 1)
    return out
