"""``rerf play``'s HTTP server: the player app and one stream, with HTTP Range, nothing else.

Why our own server: CPython's ``http.server`` ignores ``Range`` (python/cpython#86809) and
serves whole directories; the player seeks by fetching GOF byte ranges, and a local
server must never expose more than the files it was asked to serve.

What it serves is a fixed table built once at start-up (``SiteFiles``): the app files
under ``rerf_codec/web`` (regular files with a web extension, no symlinks, no dot
files), the stream at ``/stream.rerf``, ``/player.json`` (where the page finds its
stream and cameras) and, with a dataset, ``/cameras.json``. A request path is looked up
in that table verbatim after one percent-decoding; anything else (``..``, ``%2e%2e``,
absolute or doubled slashes, backslashes, a directory) is a 404. So traversal is
impossible by construction rather than by sanitising.

Range semantics (RFC 9110 §14): ``bytes=`` with one or more of ``a-b``, ``a-`` and
``-n``; a single satisfiable range → 206 with ``Content-Range``; several → 206
``multipart/byteranges`` (overlapping or adjacent ranges are coalesced first, as the
RFC allows); none satisfiable → 416 with ``Content-Range: bytes */size``; a
syntactically invalid header is ignored (200, the whole file), as is a ``Range``
whose ``If-Range`` does not match the ETag. Strong ETags from size + mtime + inode;
``If-None-Match`` → 304. ``HEAD`` answers the same headers without a body.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from rerf_codec.errors import RerfUsageError

WEB_ROOT = Path(__file__).resolve().parent
STREAM_URL = "/stream.rerf"
CONFIG_URL = "/player.json"
CAMERAS_URL = "/cameras.json"
MAX_RANGES = 32  # more ranges than this in one request → the whole file (a cheap defence against range abuse)
_CHUNK = 1 << 16

# Extensions of app files shipped to the browser, with explicit types (the platform's
# mimetypes table may map .js to text/plain, which browsers refuse for modules).
WEB_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".rerf": "application/octet-stream",
}
_NO_SERVE_DIRS = {"__pycache__", "node_modules", "tests", "test"}


@dataclass(frozen=True)
class Resource:
    """One servable URL: a file on disk or bytes held in memory."""

    content_type: str
    path: Path | None = None
    data: bytes | None = None
    cache: str = "no-cache"  # revalidate with the ETag: cheap, and edits to the app are seen at once


def app_files(root: Path = WEB_ROOT) -> dict[str, Path]:
    """URL → file for the app: regular files with a web extension below ``root``.

    Symlinks (to files or directories) are skipped, never followed, so nothing outside
    ``root`` can become servable; so are dot files, Python files and caches.
    """
    out: dict[str, Path] = {}
    root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and d not in _NO_SERVE_DIRS and not os.path.islink(os.path.join(dirpath, d))
        )  # fmt: skip
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith(".") or p.suffix.lower() not in WEB_TYPES or p.suffix == ".rerf":
                continue
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):  # symlinks, fifos, devices
                continue
            out["/" + p.relative_to(root).as_posix()] = p
    return out


def check_stream(path: str | Path) -> Path:
    """A readable regular ``.rerf`` file (magic checked), or a one-line usage error."""
    from rerf_codec.bitstream import accept

    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise RerfUsageError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise RerfUsageError(f"{path}: not a regular file (the player needs a seekable .rerf file)")
    try:
        with p.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise RerfUsageError(f"{path}: {exc.strerror or exc}") from None
    if not accept(head):
        raise RerfUsageError(f"{path}: not a .rerf stream (bad magic)")
    return p


def dataset_cameras(data: str | Path) -> list[dict[str, Any]]:
    """The camera entries of a dataset's ``transforms.json`` (the player's camera presets)."""
    from rerf_codec.datasets.format import TRANSFORMS_JSON, read_meta

    p = Path(data)
    meta = read_meta(p / TRANSFORMS_JSON if p.is_dir() else p)
    return [c.to_json() for c in meta.cameras]


def player_config(stream_url: str, title: str, cameras_url: str | None) -> dict[str, Any]:
    """``player.json``: what the page opens when no ``?src=`` is given."""
    return {"format": "rerf-player-config", "version": 1, "src": stream_url, "title": title, "cameras": cameras_url}


class SiteFiles:
    """The complete table of what a server may answer: URL path → ``Resource``."""

    def __init__(
        self,
        stream: str | Path,
        *,
        cameras: list[dict[str, Any]] | None = None,
        app_root: Path = WEB_ROOT,
        title: str | None = None,
    ) -> None:
        self.stream = check_stream(stream)
        table: dict[str, Resource] = {}
        for url, p in app_files(app_root).items():
            table[url] = Resource(WEB_TYPES[p.suffix.lower()], path=p)
        if "/index.html" not in table:
            raise RerfUsageError(f"{app_root}: the player app is missing (no index.html)")
        table["/"] = table["/index.html"]
        table[STREAM_URL] = Resource(WEB_TYPES[".rerf"], path=self.stream, cache="no-cache")
        cams_url = None
        if cameras is not None:
            cams_url = CAMERAS_URL.lstrip("/")
            table[CAMERAS_URL] = Resource(WEB_TYPES[".json"], data=json.dumps({"cameras": cameras}).encode())
        # Relative URLs: the same config works behind a reverse proxy under a sub-path.
        config = player_config(STREAM_URL.lstrip("/"), title or self.stream.name, cams_url)
        table[CONFIG_URL] = Resource(WEB_TYPES[".json"], data=json.dumps(config, indent=2).encode())
        self.table = table

    def lookup(self, raw_path: str) -> Resource | None:
        """The resource for a request target, or ``None`` (→ 404). No normalisation: exact match only."""
        path = urlsplit(raw_path).path
        if not path.startswith("/") or "\\" in path or "\x00" in path:
            return None
        decoded = unquote(path, errors="strict") if "%" in path else path
        # A decoded path that differs in any segment rule from a table key simply misses;
        # still, refuse dot segments outright so a future table change cannot open a hole.
        if any(seg in (".", "..") for seg in decoded.split("/")) or "//" in decoded:
            return None
        return self.table.get(decoded)


# --------------------------------------------------------------------------- Range parsing

_RANGE_RE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str, size: int) -> list[tuple[int, int]] | str | None:
    """Byte ranges of a ``Range`` header as half-open ``(start, stop)``, coalesced and sorted.

    Returns ``None`` when the header must be ignored (not ``bytes=``, bad syntax, too many
    ranges) and ``"unsatisfiable"`` when it is valid but no range overlaps the file.
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    specs = 0
    for part in parts:
        if not part.strip():
            continue
        specs += 1
        m = _RANGE_RE.match(part)
        if not m or (not m.group(1) and not m.group(2)):
            return None
        a, b = m.group(1), m.group(2)
        if a:
            start = int(a)
            if b:
                last = int(b)
                if last < start:
                    return None  # RFC 9110: an invalid range-spec makes the whole header invalid
                stop = min(last + 1, size)
            else:
                stop = size
            if start >= size:
                continue  # unsatisfiable on its own; others may still be
        else:
            n = int(b)
            if n == 0:
                continue
            start, stop = max(0, size - n), size
        ranges.append((start, stop))
    if not ranges:
        return "unsatisfiable" if specs else None
    ranges.sort()
    merged = [ranges[0]]
    for s, e in ranges[1:]:
        ps, pe = merged[-1]
        if s <= pe:
            merged[-1] = (ps, max(pe, e))
        else:
            merged.append((s, e))
    return merged


# --------------------------------------------------------------------------- the server


@dataclass
class RequestRecord:
    """One answered request, for tests and ``--verbose`` (bytes are body bytes sent)."""

    method: str
    path: str
    range: str | None
    status: int
    bytes: int
    ranges: list[tuple[int, int]] = field(default_factory=list)


class PlayServer(ThreadingHTTPServer):
    """Threaded HTTP server over a ``SiteFiles`` table; records every request it answers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, site: SiteFiles, host: str = "127.0.0.1", port: int = 0, *, log: Any = None) -> None:
        self.site = site
        self.records: list[RequestRecord] = []
        self._records_lock = threading.Lock()
        self._log = log  # a text stream for one line per request, or None
        import socket

        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), RangeRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        if shown in ("0.0.0.0", "[::]"):
            shown = "127.0.0.1"
        return f"http://{shown}:{port}/"

    def record(self, rec: RequestRecord) -> None:
        with self._records_lock:
            self.records.append(rec)
        if self._log is not None:
            rng = f" range={rec.range}" if rec.range else ""
            print(f"{rec.method} {rec.path} {rec.status} {rec.bytes}B{rng}", file=self._log, flush=True)

    def take_records(self) -> list[RequestRecord]:
        """The records so far, clearing the list (tests look at one action's requests)."""
        with self._records_lock:
            out, self.records = self.records, []
        return out


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"'


def _etag_matches(header: str, etag: str, *, weak: bool) -> bool:
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if weak and tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


class RangeRequestHandler(BaseHTTPRequestHandler):
    """GET/HEAD over the server's table; every other method is 405."""

    server: PlayServer
    server_version = "rerf-play"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the server's own records replace BaseHTTPRequestHandler's stderr log

    def _not_allowed(self) -> None:
        self._send_simple(HTTPStatus.METHOD_NOT_ALLOWED, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # -- helpers

    def _send_simple(self, status: HTTPStatus, extra: dict[str, str] | None = None, head: bool = False) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head and self.command != "HEAD":
            self.wfile.write(body)
        self.server.record(RequestRecord(self.command, self.path, self.headers.get("Range"), status.value,
                                         0 if head or self.command == "HEAD" else len(body)))  # fmt: skip

    def _serve(self, head: bool) -> None:
        try:
            res = self.server.site.lookup(self.path)
        except UnicodeDecodeError:
            res = None
        if res is None:
            self._send_simple(HTTPStatus.NOT_FOUND, head=head)
            return
        f: BinaryIO | None = None
        try:
            if res.path is not None:
                f = res.path.open("rb")
                st = os.fstat(f.fileno())
                size, etag, mtime = st.st_size, _etag(st), st.st_mtime
            else:
                assert res.data is not None
                size, mtime = len(res.data), time.time()
                etag = '"m' + hashlib.sha256(res.data).hexdigest()[:20] + '"'
        except OSError:
            self._send_simple(HTTPStatus.NOT_FOUND, head=head)
            return
        try:
            self._answer(res, f, size, etag, mtime, head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the player aborted a fetch (a seek): normal
        finally:
            if f is not None:
                f.close()

    def _answer(self, res: Resource, f: BinaryIO | None, size: int, etag: str, mtime: float, head: bool) -> None:
        common = {
            "ETag": etag,
            "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "Cache-Control": res.cache,
            "X-Content-Type-Options": "nosniff",
        }
        inm = self.headers.get("If-None-Match")
        if inm is not None and _etag_matches(inm, etag, weak=True):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            for k, v in common.items():
                self.send_header(k, v)
            self.end_headers()
            self.server.record(RequestRecord(self.command, self.path, None, 304, 0))
            return
        range_header = self.headers.get("Range")
        ranges: list[tuple[int, int]] | str | None = None
        if range_header is not None:
            if_range = self.headers.get("If-Range")
            # If-Range with a date or a stale tag: the representation changed, send it whole.
            if if_range is None or _etag_matches(if_range, etag, weak=False):
                ranges = parse_range(range_header, size)
        if ranges == "unsatisfiable":
            body = b""
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            for k, v in common.items():
                self.send_header(k, v)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.server.record(RequestRecord(self.command, self.path, range_header, 416, len(body)))
            return
        assert ranges is None or isinstance(ranges, list)
        if ranges is None:
            self.send_response(HTTPStatus.OK)
            for k, v in common.items():
                self.send_header(k, v)
            self.send_header("Content-Type", res.content_type)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = 0 if head else self._copy(res, f, [(0, size)])
            self.server.record(RequestRecord(self.command, self.path, range_header, 200, sent, [(0, size)]))
            return
        if len(ranges) == 1:
            (start, stop) = ranges[0]
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            for k, v in common.items():
                self.send_header(k, v)
            self.send_header("Content-Type", res.content_type)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
            self.send_header("Content-Length", str(stop - start))
            self.end_headers()
            sent = 0 if head else self._copy(res, f, ranges)
            self.server.record(RequestRecord(self.command, self.path, range_header, 206, sent, ranges))
            return
        boundary = "rerf" + secrets.token_hex(12)
        parts = [
            (f"--{boundary}\r\nContent-Type: {res.content_type}\r\nContent-Range: bytes {s}-{e - 1}/{size}\r\n\r\n"
             ).encode("ascii")
            for s, e in ranges
        ]  # fmt: skip
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        length = sum(len(p) for p in parts) + sum(e - s for s, e in ranges) + 2 * (len(ranges) - 1) + len(tail)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        for k, v in common.items():
            self.send_header(k, v)
        self.send_header("Content-Type", f"multipart/byteranges; boundary={boundary}")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        sent = 0
        if not head:
            for i, (part, rng) in enumerate(zip(parts, ranges, strict=True)):
                if i:
                    self.wfile.write(b"\r\n")
                self.wfile.write(part)
                sent += self._copy(res, f, [rng])
            self.wfile.write(tail)
        self.server.record(RequestRecord(self.command, self.path, range_header, 206, sent, ranges))

    def _copy(self, res: Resource, f: BinaryIO | None, ranges: Iterable[tuple[int, int]]) -> int:
        sent = 0
        for start, stop in ranges:
            if res.data is not None:
                self.wfile.write(res.data[start:stop])
                sent += stop - start
                continue
            assert f is not None
            f.seek(start)
            left = stop - start
            while left > 0:
                buf = f.read(min(_CHUNK, left))
                if not buf:
                    return sent  # the file shrank under us: the client sees a short body
                self.wfile.write(buf)
                sent += len(buf)
                left -= len(buf)
        return sent


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

