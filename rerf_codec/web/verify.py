"""Cross-decoder verification: the Python reference decoder against the JavaScript one.

Both decode each stream front to back (streaming mode, what ``rerf decode`` does) and give
the decoded-grid SHA-256 of FORMAT.md §11. Agreement means the same hash, or both rejecting
the stream as malformed. Library side of ``rerf verify``.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from rerf_codec.codec.decoder import DecodedFrame, Decoder
from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.grids import update_frame_hash
from rerf_codec.web.node_runner import js_hash_files, require_node

DECODERS: dict[str, tuple[str, ...]] = {"python": ("python",), "js": ("js",), "both": ("python", "js")}


def python_hash_file(path: str) -> dict[str, Any]:
    """Decode ``path`` with the reference decoder: ``{sha256, frames, decode_seconds}`` or ``{error}``."""
    sha = hashlib.sha256()
    frames = 0
    decode = 0.0
    try:
        with open(path, "rb") as f:
            t = time.perf_counter()
            for item in Decoder(f).frames(reuse_buffers=True):
                decode += time.perf_counter() - t
                assert isinstance(item, DecodedFrame)
                update_frame_hash(sha, item.frame)
                frames += 1
                t = time.perf_counter()
    except RerfFormatError as exc:
        return {"error": {"type": "format", "message": str(exc)}}
    return {"sha256": sha.hexdigest(), "frames": frames, "decode_seconds": decode}


def _result(raw: dict[str, Any]) -> dict[str, Any]:
    if "error" in raw:
        return {"error": {"type": raw["error"]["type"], "message": raw["error"]["message"]}}
    seconds = float(raw.get("decode_seconds", raw.get("decodeSeconds", 0.0)))
    return {
        "sha256": raw["sha256"], "frames": int(raw["frames"]), "decode_seconds": seconds,
        "frames_per_s": raw["frames"] / seconds if seconds > 0 else float("inf"),
    }


def verify_streams(paths: list[str], decoders: tuple[str, ...]) -> dict[str, Any]:
    """Decode every stream with ``decoders``; returns the report of ``rerf verify``.

    ``exit_code``: 0 all agree (and decode), 1 a disagreement, 2 a stream every decoder
    rejects. Raises RerfUsageError for a missing file or a missing Node.js.
    """
    for p in paths:
        if not os.path.isfile(p):
            raise RerfUsageError(f"no such stream: {p}")
    if "js" in decoders:
        require_node()
    py = [python_hash_file(p) for p in paths] if "python" in decoders else None
    js = js_hash_files(paths) if "js" in decoders else None
    streams = []
    worst = 0
    for i, p in enumerate(paths):
        res: dict[str, dict[str, Any]] = {}
        if py is not None:
            res["python"] = _result(py[i])
        if js is not None:
            res["js"] = _result(js[i])
        hashes = {r.get("sha256") for r in res.values()}
        kinds = {r["error"]["type"] if "error" in r else "ok" for r in res.values()}
        if any(r.get("error", {}).get("type") == "internal" for r in res.values()):
            verdict, code = "DISAGREE (a decoder failed internally)", 1
        elif kinds == {"ok"} and len(hashes) == 1:
            verdict, code = ("agree" if len(res) > 1 else "decoded"), 0
        elif kinds == {"format"}:
            verdict, code = ("both reject the stream" if len(res) > 1 else "invalid stream"), 2
        else:
            verdict, code = "DISAGREE", 1
        worst = 1 if 1 in (worst, code) else max(worst, code)
        streams.append({"path": p, "decoders": res, "agree": code != 1, "verdict": verdict})
    verdict = {0: "all agree" if len(decoders) > 1 else "all decoded", 1: "DISAGREEMENT", 2: "invalid stream(s)"}[worst]
    return {"decoders": list(decoders), "streams": streams, "verdict": verdict, "exit_code": worst}
