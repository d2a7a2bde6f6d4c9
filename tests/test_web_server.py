"""``rerf play``'s server and ``rerf export-web``: Range semantics, what may be served, the CLI (no browser)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rerf_codec.errors import RerfUsageError
from rerf_codec.web.export import export_site
from rerf_codec.web.server import PlayServer, SiteFiles, app_files, parse_range

ROOT = Path(__file__).resolve().parents[1]
STREAM = next(iter(sorted((ROOT / "bitstreams" / "conformance").glob("*/*.rerf"))))


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[PlayServer, bytes]]:
    stream = tmp_path / "clip.rerf"
    stream.write_bytes(STREAM.read_bytes())
    server = PlayServer(SiteFiles(stream, cameras=[{"name": "cam000"}]), "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield server, stream.read_bytes()
    server.shutdown()
    server.server_close()


def request(server: PlayServer, path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
    conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k.replace("_", "-"), v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_whole_file_and_head(served: tuple[PlayServer, bytes]) -> None:
    server, data = served
    status, h, body = request(server, "/stream.rerf")
    assert (status, body) == (200, data)
    assert h["accept-ranges"] == "bytes" and h["content-length"] == str(len(data)) and h["etag"].startswith('"')
    status, h2, body = request(server, "/stream.rerf", "HEAD")
    assert (status, body, h2["content-length"], h2["etag"]) == (200, b"", str(len(data)), h["etag"])
    status, h3, body = request(server, "/stream.rerf", "HEAD", Range="bytes=0-9")
    assert (status, body, h3["content-range"]) == (206, b"", f"bytes 0-9/{len(data)}")


@pytest.mark.parametrize(
    ("spec", "want"),
    [("bytes=0-15", (0, 16)), ("bytes=10-", (10, None)), ("bytes=-12", (-12, None)), ("bytes=5-5", (5, 6)),
     ("bytes=100-99999999", (100, None)), ("bytes = 3-7", (3, 8))],
)  # fmt: skip
def test_single_ranges(served: tuple[PlayServer, bytes], spec: str, want: tuple[int, int | None]) -> None:
    server, data = served
    status, h, body = request(server, "/stream.rerf", Range=spec)
    a, b = want
    expect = data[a:b] if b is not None else data[a:]
    start = a % len(data)
    assert status == 206 and body == expect
    assert h["content-range"] == f"bytes {start}-{start + len(expect) - 1}/{len(data)}"
    assert h["content-length"] == str(len(expect))


def test_unsatisfiable_and_ignored(served: tuple[PlayServer, bytes]) -> None:
    server, data = served
    n = len(data)
    for spec in (f"bytes={n}-", f"bytes={n + 5}-{n + 9}", "bytes=-0"):
        status, h, body = request(server, "/stream.rerf", Range=spec)
        assert (status, h["content-range"], body) == (416, f"bytes */{n}", b""), spec
    # Invalid syntax or another unit: ignored, the whole file (RFC 9110 §14.2).
    for spec in ("bytes=9-3", "items=0-5", "bytes=a-b", "bytes=,", "0-5"):
        status, h, body = request(server, "/stream.rerf", Range=spec)
        assert (status, body) == (200, data), spec
    # If-Range with a stale validator: the whole (changed) file.
    status, h, _ = request(server, "/stream.rerf")
    status, _, body = request(server, "/stream.rerf", Range="bytes=0-3", If_Range='"stale"')
    assert (status, body) == (200, data)
    status, _, body = request(server, "/stream.rerf", Range="bytes=0-3", If_Range=h["etag"])
    assert (status, body) == (206, data[:4])
    status, _, body = request(server, "/stream.rerf", If_None_Match=h["etag"])
    assert (status, body) == (304, b"")


def test_multiple_ranges_multipart(served: tuple[PlayServer, bytes]) -> None:
    server, data = served
    n = len(data)
    status, h, body = request(server, "/stream.rerf", Range="bytes=0-3, 20-29, -5")
    assert status == 206 and h["content-type"].startswith("multipart/byteranges; boundary=")
    assert int(h["content-length"]) == len(body)
    boundary = h["content-type"].split("boundary=")[1].encode()
    parts = body.split(b"--" + boundary)
    assert parts[-1] == b"--\r\n"
    got = []
    for part in parts[1:-1]:
        head, _, payload = part.partition(b"\r\n\r\n")
        rng = next(ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-range")).decode()
        a, b = rng.split(" ")[2].split("/")[0].split("-")
        payload = payload[:-2] if payload.endswith(b"\r\n") else payload
        assert payload == data[int(a) : int(b) + 1]
        got.append((int(a), int(b)))
    assert got == [(0, 3), (20, 29), (n - 5, n - 1)]
    # Overlapping and adjacent ranges are coalesced into one part (and then one plain 206).
    status, h, body = request(server, "/stream.rerf", Range="bytes=0-9,5-19,20-24")
    assert (status, h["content-range"], body) == (206, f"bytes 0-24/{n}", data[:25])
    assert parse_range("bytes=" + ",".join(f"{i}-{i}" for i in range(0, 200, 2)), n) is None  # too many: ignored


@pytest.mark.parametrize(
    "path",
    ["/../setup.cfg", "/render/../../server.py", "/%2e%2e/server.py", "/%2E%2E/%2e%2e/setup.cfg", "/server.py",
     "/__init__.py", "//etc/passwd", "/etc/passwd", "/" + str(ROOT / "setup.cfg"), "/render/", "/render",
     "/index.html/", "/.hidden", "/stream.rerf%00", "/x%ff", "\\..\\server.py", "/./index.html", "/%2f"],
)  # fmt: skip
def test_only_allowed_files(served: tuple[PlayServer, bytes], path: str) -> None:
    server, _ = served
    status, _, body = request(server, path)
    assert status == 404 and b"server" not in body.lower().replace(b"not found", b"")


def test_app_files_and_types(served: tuple[PlayServer, bytes]) -> None:
    server, _ = served
    status, h, body = request(server, "/")
    assert status == 200 and h["content-type"].startswith("text/html") and b"rerf player" in body
    status, h, body = request(server, "/app.js")
    assert status == 200 and h["content-type"].startswith("text/javascript")
    status, h, body = request(server, "/player.json")
    cfg = json.loads(body)
    assert status == 200 and cfg["src"] == "stream.rerf" and cfg["cameras"] == "cameras.json"
    status, h, body = request(server, "/cameras.json")
    assert json.loads(body) == {"cameras": [{"name": "cam000"}]}
    status, h, _ = request(server, "/stream.rerf", "POST")
    assert status == 405
    deadline = time.monotonic() + 5  # the handler records after the client has its answer
    while not any(r.status == 405 for r in server.records) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.status for r in server.take_records()][-1] == 405


def test_symlinks_are_never_served(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "sub").mkdir(parents=True)
    (app / "index.html").write_text("<title>x</title>")
    secret = tmp_path / "secret.js"
    secret.write_text("secret")
    os.symlink(secret, app / "leak.js")
    os.symlink(tmp_path, app / "sub" / "up")
    files = app_files(app)
    assert sorted(files) == ["/index.html"]
    stream = tmp_path / "clip.rerf"
    stream.write_bytes(STREAM.read_bytes())
    server = PlayServer(SiteFiles(stream, app_root=app), "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        assert request(server, "/leak.js")[0] == 404
        assert request(server, "/sub/up/secret.js")[0] == 404
        assert request(server, "/index.html")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_bad_stream_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.rerf"
    bad.write_bytes(b"nope")
    with pytest.raises(RerfUsageError, match=r"not a \.rerf"):
        SiteFiles(bad)
    with pytest.raises(RerfUsageError):
        SiteFiles(tmp_path)
    r = subprocess.run([sys.executable, "-c", "from cli.main import main; main()", "play", str(bad), "--no-open"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("rerf: error:")


def test_play_cli_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A job started in the background by a non-interactive shell (a CI runner's `... &`) inherits SIGINT
    # ignored, and Python then installs no Ctrl-C handler: give the server the terminal's default.
    proc = subprocess.Popen([sys.executable, "-c", "from cli.main import main; main()", "play", str(STREAM), "--no-open", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        lines = []
        while not lines or lines[-1] != "}\n":
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, proc.stderr.read()  # type: ignore[union-attr]
            lines.append(line)
        info = json.loads("".join(lines))
        assert info["host"] == "127.0.0.1" and info["loopback"] and info["url"] == f"http://127.0.0.1:{info['port']}/"
        conn = http.client.HTTPConnection("127.0.0.1", info["port"], timeout=5)
        conn.request("GET", "/stream.rerf", headers={"Range": "bytes=0-3"})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (206, b"RERF")
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()  # a server that ignored Ctrl-C must not outlive the test
            proc.communicate()
            raise
    assert proc.returncode == 0 and "Traceback" not in err


def test_export_web(tmp_path: Path) -> None:
    out = tmp_path / "site"
    rep = export_site(STREAM, out, cameras=[{"name": "a"}])
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"index.html", "app.js", "player.json", "cameras.json", rep.stream} <= files
    assert not any(f.endswith(".py") for f in files)
    assert (out / rep.stream).read_bytes() == STREAM.read_bytes()
    cfg = json.loads((out / "player.json").read_text())
    assert cfg["src"] == rep.stream and cfg["cameras"] == "cameras.json"
    with pytest.raises(RerfUsageError, match="exists"):
        export_site(STREAM, out)
    export_site(STREAM, out, force=True)  # replaces its own export
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(RerfUsageError, match="refusing"):
        export_site(STREAM, other, force=True)
    assert (other / "notes.txt").read_text() == "keep"
    # The page itself says it needs a server when opened from file:// (a classic script, modules do not run there).
    html = (out / "index.html").read_text()
    assert 'location.protocol === "file:"' in html and "needs a web server" in html
