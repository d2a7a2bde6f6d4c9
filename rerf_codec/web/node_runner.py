"""Run the JavaScript decoder (``rerf_codec/web/decoder``) under Node.js.

The JS decoder is a second implementation of FORMAT.md; running it from Python is how
``rerf verify`` and the tests compare it with the reference decoder. Two ways in:
:func:`js_hash_files` decodes files in one short-lived Node process, and
:class:`NodeDecoder` keeps one Node process alive and decodes many in-memory streams
through it (the differential fuzz sends thousands), with a time bound per stream.
"""

from __future__ import annotations

import base64
import json
import os
import re
import selectors
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from rerf_codec.errors import RerfUsageError

DECODER_DIR = Path(__file__).with_name("decoder")
NODE_CLI = DECODER_DIR / "node-cli.js"
MIN_NODE_MAJOR = 20


def find_node() -> str | None:
    """Path of a Node.js >= 20 executable (``$RERF_NODE`` or ``node`` on PATH), or None."""
    node = os.environ.get("RERF_NODE") or shutil.which("node")
    if not node:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"v(\d+)\.", out.strip())
    if not m or int(m.group(1)) < MIN_NODE_MAJOR:
        return None
    return node


def require_node() -> str:
    """:func:`find_node` or a one-line usage error."""
    node = find_node()
    if node is None:
        raise RerfUsageError(
            f"the JavaScript decoder needs Node.js {MIN_NODE_MAJOR} or newer on PATH (or in $RERF_NODE); none found"
        )
    return node


def js_hash_files(paths: list[str], timeout: float | None = None) -> list[dict[str, Any]]:
    """Decode each file with the JS decoder (streaming, as ``rerf decode``); one dict per file:
    ``{path, sha256, frames, seconds, decodeSeconds}`` or ``{path, error: {type, message}}``."""
    node = require_node()
    proc = subprocess.run(
        [node, str(NODE_CLI), "hash", *[os.fspath(p) for p in paths]],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or len(lines) != len(paths):
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"node decoder exited with status {proc.returncode}: {tail[0]}")
    return lines


class NodeDecoder:
    """One long-running Node process that decodes in-memory streams on request.

    Use as a context manager. :meth:`decode` returns the JS decoder's answer, or raises
    ``TimeoutError`` (and restarts the process) when a stream takes longer than ``timeout``.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        self.node = require_node()
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._next_id = 0
        self._buf = b""
        self._deadline = 0.0

    def __enter__(self) -> NodeDecoder:
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [self.node, str(NODE_CLI), "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._buf = b""

    def close(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()
            if self._proc.stdin:
                self._proc.stdin.close()
            self._proc = None

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode a whole stream: ``{sha256, frames, deep}`` or ``{error: {type, message}, deep}``."""
        self.submit(data)
        return self.result()

    def submit(self, data: bytes) -> None:
        """Send a stream to decode; collect the answer with :meth:`result` (the caller may work
        meanwhile: Node decodes in its own process)."""
        if self._proc is None:
            self._start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._next_id += 1
        req = json.dumps({"id": self._next_id, "data": base64.b64encode(data).decode()}) + "\n"
        proc.stdin.write(req.encode())
        proc.stdin.flush()
        self._deadline = time.monotonic() + self.timeout

    def result(self) -> dict[str, Any]:
        """The answer to the last :meth:`submit`; TimeoutError when it took over ``timeout`` s."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = self._deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self._kill()
                    raise TimeoutError(f"JS decoder took longer than {self.timeout} s")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self._kill()
                    raise RuntimeError("JS decoder process exited")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        out: dict[str, Any] = json.loads(line)
        if out.get("id") != self._next_id:
            raise RuntimeError("JS decoder answered out of order")
        return out
