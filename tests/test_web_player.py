"""The browser player end to end: a stream served by `rerf play`'s server, decoded by the JS decoder, rendered by WebGL2."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from player_fixtures import eval_cameras
from web_fixtures import BACKGROUND, write_stream

from rerf_codec.bitstream import StreamReader
from rerf_codec.codec.decoder import Decoder
from tests.browser import browser, foreground_psnr, new_page, png_rgb, serve
from tests.test_web_render import python_render

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
DECODER = Path(__file__).resolve().parents[1] / "rerf_codec" / "web" / "decoder" / "stream.js"
if not DECODER.exists():
    pytest.skip("the JS decoder (rerf_codec/web/decoder/, branch js-decoder) is not merged yet", allow_module_level=True)


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web")
    out = {
        "per_sample": write_stream(root, "ps", 8, 2),
        "deferred": write_stream(root, "df", 8, 2, shading="deferred"),
        "long": write_stream(root, "long", 40, 4, quality=60),
    }
    data = bytearray(out["long"].read_bytes())
    entries = StreamReader(io.BytesIO(bytes(data))).read_index()
    mid = entries[2].offset + 40  # inside GOF 2's payload: its CRC fails
    data[mid] ^= 0xFF
    bad = root / "damaged.rerf"
    bad.write_bytes(bytes(data))
    out["damaged"] = bad
    return out


@pytest.fixture(scope="module")
def browser_process() -> Any:
    with browser() as b:
        yield b


@pytest.fixture()
def chromium(browser_process: Any) -> Any:
    """The shared browser; every page a test opened is closed after it (their render loops stop)."""
    yield browser_process
    for ctx in browser_process.contexts:
        ctx.close()


SMALL_VIEW = eval_cameras(size=48)[1].to_json()


def open_player(b: Any, url: str) -> Any:
    """The page with a small fixed view: SwiftShader shades every pixel on the CPU, so tests keep canvases tiny."""
    page = new_page(b, url, 360, 300)
    page.wait_for_function("() => window.rerfPlayer && window.rerfPlayer.shownFrame >= 0", timeout=30000)
    page.evaluate("(c) => window.rerfPlayer.setView(c)", SMALL_VIEW)
    return page


def gof_spans(stream: Path) -> list[tuple[int, int, int, int]]:
    """(first_frame, num_frames, byte start, byte end) per GOF."""
    data = stream.read_bytes()
    e = StreamReader(io.BytesIO(data)).read_index()
    index_offset = int.from_bytes(data[-12:-4], "little")
    ends = [x.offset for x in e[1:]] + [index_offset]
    return [(x.first_frame, x.num_frames, x.offset, end) for x, end in zip(e, ends, strict=True)]


def gofs_read(records: list[Any], spans: list[tuple[int, int, int, int]]) -> set[int]:
    """Which GOF chunks the requests touched."""
    touched = set()
    for r in records:
        if r.path != "/stream.rerf":
            continue
        for a, b in r.ranges:
            for k, (_, _, s, e) in enumerate(spans):
                if a < e and b > s:
                    touched.add(k)
    return touched


def decoded(stream: Path, k: int) -> Any:
    with stream.open("rb") as f:
        dec = Decoder(f)
        fr = next(iter(dec.frames(range(k, k + 1))))
        return type("F", (), {"density": np.array(fr.frame.density), "features": np.array(fr.frame.features)})


@pytest.mark.parametrize("shading", ["per_sample", "deferred"])
def test_seek_and_set_view_match_python(chromium: Any, streams: dict[str, Path], shading: str) -> None:
    stream = streams[shading]
    cam = eval_cameras(size=64)[0]
    k = 5
    with serve(stream) as server:
        page = open_player(chromium, server.url)
        page.evaluate("async ([k, c]) => { const p = window.rerfPlayer; p.setView(c); await p.seek(k); await p.rendered(); }",
                      [k, cam.to_json()])  # fmt: skip
        # The presented picture, read back from the canvas (an element screenshot lands on
        # fractional CSS pixels when the stage centres it, so it can be resampled).
        shot = base64.b64decode(page.evaluate("document.getElementById('view').toDataURL('image/png')").split(",")[1])
        assert page.evaluate("window.rerfPlayer.currentFrame") == k
        assert page.evaluate("window.rerfPlayer.stats().shading") == shading
        # Double-buffered frame textures: frame k-1 uploaded into the back set is not drawn until swapped in.
        back = page.evaluate("""(k) => { const p = window.rerfPlayer, r = p.renderer, cam = p.currentCamera();
            const png = () => document.getElementById('view').toDataURL('image/png');
            r.upload(p.buffer.get(k).frame, k); r.render(cam); const before = png();
            r.swap(); r.render(cam); const after = png(); r.swap(); r.render(cam); return [before, after]; }""", k - 1)
        assert not page.errors, page.errors
    before, after = (base64.b64decode(b.split(",")[1]) for b in back)
    assert png_rgb(before).tobytes() == png_rgb(shot).tobytes()
    swapped = foreground_psnr(png_rgb(after), python_render(decoded(stream, k - 1), cam, shading), BACKGROUND)
    assert swapped >= 35, swapped
    img = png_rgb(shot)
    assert img.shape == (64, 64, 3)
    other = "deferred" if shading == "per_sample" else "per_sample"
    right = foreground_psnr(img, python_render(decoded(stream, k), cam, shading), BACKGROUND)
    neighbour = foreground_psnr(img, python_render(decoded(stream, k + 1), cam, shading), BACKGROUND)
    wrong_mode = foreground_psnr(img, python_render(decoded(stream, k), cam, other), BACKGROUND)
    print(json.dumps({"shading": shading, "psnr": right, "neighbour": neighbour, "other_mode": wrong_mode}))
    assert right >= 35, right
    assert neighbour < right - 6 and wrong_mode < right - 6, (right, neighbour, wrong_mode)


def test_paused_seek_fetches_only_the_target_gof(chromium: Any, streams: dict[str, Path]) -> None:
    stream = streams["long"]
    spans = gof_spans(stream)
    with serve(stream) as server:
        page = open_player(chromium, server.url)
        opened = server.take_records()
        assert gofs_read(opened, spans) == {0}
        target = 29
        page.evaluate("(k) => window.rerfPlayer.seek(k)", target)
        page.wait_for_timeout(300)  # nothing else may be fetched while paused
        recs = server.take_records()
        want = next(i for i, (f, n, _, _) in enumerate(spans) if f <= target < f + n)
        assert gofs_read(recs, spans) == {want}, [(r.path, r.ranges) for r in recs]
        assert all(r.status == 206 for r in recs if r.path == "/stream.rerf")
        # Decode-ahead resumes on play.
        page.evaluate("() => window.rerfPlayer.play()")
        page.wait_for_function("() => window.rerfPlayer.currentFrame >= 33", timeout=20000)
        page.evaluate("() => window.rerfPlayer.pause()")
        assert want + 1 in gofs_read(server.take_records(), spans)


def test_play_in_order_at_speed_and_pause_holds(chromium: Any, streams: dict[str, Path]) -> None:
    with serve(streams["long"]) as server:
        page = open_player(chromium, server.url)
        page.evaluate("""() => { const p = window.rerfPlayer; p.loop = false; window.seen = [];
            p.addEventListener('timeupdate', () => window.seen.push([p.currentFrame, performance.now()]));
            window.waits = 0; p.addEventListener('waiting', () => { window.waits += 1; });
            window.slowTicks = 0; let last = performance.now();
            const tick = (t) => { if (t - last > 250) window.slowTicks += 1; last = t; requestAnimationFrame(tick); };
            requestAnimationFrame(tick); }""")
        page.evaluate("async () => { await window.rerfPlayer.seek(4); }")
        page.evaluate("() => { window.rerfPlayer.speed = 2; window.t0 = performance.now(); window.rerfPlayer.play(); }")
        page.wait_for_function("() => window.rerfPlayer.currentFrame >= 30", timeout=30000)
        page.evaluate("() => window.rerfPlayer.pause()")
        seen = page.evaluate("window.seen")
        held = page.evaluate("window.rerfPlayer.currentFrame")
        page.wait_for_timeout(600)
        assert page.evaluate("window.rerfPlayer.currentFrame") == held and page.evaluate("window.rerfPlayer.paused")
        stats = page.evaluate("window.rerfPlayer.stats()")
        waits = page.evaluate("window.waits")
        slow_ticks = page.evaluate("window.slowTicks")
    frames = [f for f, _ in seen if f > 4]
    assert frames == sorted(frames) and len(set(frames)) == len(frames), frames
    # 10 fps × 2: about 20 frames/s of media time (waiting for the decoder only slows it down).
    waited = stats["framesDecoded"]
    span = (seen[-1][1] - seen[0][1]) / 1000
    rate = (frames[-1] - frames[0]) / max(span, 1e-3)
    print(json.dumps({"rate": rate, "frames": len(frames), "decoded": waited, "waits": waits, "stats": stats}))
    # Never faster than the set speed; exactly it unless the player had to wait for the decoder
    # (announced with 'waiting', like <video>) or the page itself ticked slower than 4 Hz (a loaded
    # CPU: the media clock advances at most 0.25 s per animation frame, as for a background tab).
    assert rate <= 24, rate
    assert waits > 0 or slow_ticks > 0 or rate >= 16, (rate, waits, slow_ticks)
    assert len(frames) >= 5  # time-based like <video>: a slow (software) GPU drops frames, never reorders
    # Double buffering: while playing, the next frame is uploaded ahead and shown by a texture swap.
    assert stats["framesPreUploaded"] > 0 or slow_ticks > 0, stats


def test_damaged_gof_banner_and_resume(chromium: Any, streams: dict[str, Path]) -> None:
    spans = gof_spans(streams["damaged"])
    with serve(streams["damaged"]) as server:
        page = open_player(chromium, server.url)
        page.evaluate("() => { const p = window.rerfPlayer; p.loop = false; p.speed = 4; p.play(); }")
        after = spans[3][0]
        page.wait_for_function(f"() => window.rerfPlayer.currentFrame >= {after + 1}", timeout=30000)
        banner = page.locator("#banner")
        assert banner.is_visible() and "damaged" in banner.inner_text() and f"frame {spans[3][0]}" in banner.inner_text()
        stats = page.evaluate("window.rerfPlayer.stats()")
        assert stats["damagedGofs"] == [2]
        # A paused seek into the damaged GOF lands on the next GOF's first frame.
        page.evaluate("() => window.rerfPlayer.pause()")
        page.evaluate(f"() => window.rerfPlayer.seek({spans[2][0] + 1})")
        page.wait_for_function(f"() => window.rerfPlayer.currentFrame === {spans[3][0]}", timeout=20000)


def test_many_gofs_seek_to_last_frame_reads_only_it(chromium: Any, tmp_path: Path) -> None:
    stream = write_stream(tmp_path, "many", 100, 1, shape=(16, 16, 16), quality=40)
    spans = gof_spans(stream)
    assert len(spans) == 100
    with serve(stream) as server:
        page = new_page(chromium, server.url + "#t=9.9", 360, 300)  # frame 99 at 10 fps, from the URL hash
        page.wait_for_function("() => window.rerfPlayer && window.rerfPlayer.currentFrame === 99 && "
                               "window.rerfPlayer.shownFrame === 99", timeout=30000)  # fmt: skip
        recs = server.take_records()
    touched = gofs_read(recs, spans)
    assert touched <= {0, 99} and 99 in touched, touched


STREAM_FETCHES = "performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/stream.rerf')).length"


def test_seek_aborts_the_decode_it_supersedes(chromium: Any, streams: dict[str, Path]) -> None:
    spans = gof_spans(streams["long"])
    with serve(streams["long"]) as server:
        page = open_player(chromium, server.url)
        res = page.evaluate("""async () => {
            const p = window.rerfPlayer; const first = p.seek(13); const second = p.seek(33);
            await second; await first; await new Promise((r) => setTimeout(r, 300));
            return { frame: p.currentFrame, shown: p.shownFrame, buffered: [...p.buffer.keys()] }; }""")
        assert not page.errors, page.errors
    g13 = next(range(f, f + n) for f, n, _, _ in spans if f <= 13 < f + n)
    assert res["frame"] == 33 and res["shown"] == 33
    assert 33 in res["buffered"] and not set(g13) & set(res["buffered"]), res["buffered"]


FALLBACKS = {
    "no-worker": "delete window.Worker;",
    # A worker whose script does not load (blocked, 404): the messages sent to it are replayed on the page.
    "worker-fails": "{ const W = window.Worker; window.Worker = class extends W {"
    " constructor(u, o) { super(new URL('/no-such-worker.js', location.href), o); } }; }",
}


def test_decodes_in_a_worker_else_inline(chromium: Any, streams: dict[str, Path]) -> None:
    """Decoding runs in a Web Worker; with no Worker, or one that fails to load, it runs on the
    page (the messages sent to the dead worker are replayed) and the same picture comes out."""
    cam = eval_cameras(size=48)[0].to_json()
    shots, modes = {}, {}
    with serve(streams["per_sample"]) as server:
        server.take_records()
        for how in ["worker", *FALLBACKS]:
            page = chromium.new_page(viewport={"width": 360, "height": 300}, device_scale_factor=1)
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            if how in FALLBACKS:
                page.add_init_script(FALLBACKS[how])
            page.goto(server.url)
            page.wait_for_function("() => window.rerfPlayer && window.rerfPlayer.shownFrame >= 0", timeout=30000)
            page.evaluate("async (c) => { const p = window.rerfPlayer; p.setView(c); await p.seek(5); await p.rendered(); }",
                          cam)  # fmt: skip
            shots[how] = page.evaluate("document.getElementById('view').toDataURL('image/png')")
            stats = page.evaluate("window.rerfPlayer.stats()")
            modes[how] = stats["decoder"]
            on_page = page.evaluate(STREAM_FETCHES)
            assert not errors, (how, errors)
            page.close()
            records = server.take_records()
            served = [r for r in records if r.path == "/stream.rerf"]
            if how == "worker":
                # Every Range request for the stream came from the worker (the page's own timeline has
                # none), and the worker's count (its Resource Timing) is what the server answered.
                assert on_page == 0 and stats["requests"] == len(served) >= 5, (on_page, stats["requests"], len(served))
                assert stats["bytesFetched"] == sum(r.bytes for r in served)
                assert stats["framesDecoded"] >= 2 and stats["decodeMs"] > 0 and stats["prepareMs"] > 0
            else:
                assert on_page == len(served) >= 5
            missing = [r.status for r in records if r.path == "/no-such-worker.js"]
            assert missing == ([404] if how == "worker-fails" else []), (how, missing)
    assert modes == {"worker": "worker", "no-worker": "inline", "worker-fails": "inline"}, modes
    ref = png_rgb(base64.b64decode(shots["worker"].split(",")[1]))
    for how in FALLBACKS:
        img = png_rgb(base64.b64decode(shots[how].split(",")[1]))
        assert np.abs(img - ref).max() <= 1 / 255, how
    assert np.abs(ref - 1.0).max() > 0.2  # the object is on the picture, not just the background


def test_orbit_drag_is_damped_and_comes_to_rest(chromium: Any, streams: dict[str, Path]) -> None:
    """OrbitControls with enableDamping (factor 0.05): a drag glides on after the pointer stops and
    ends exactly where an undamped drag would; the URL hash gets the resting view at once."""
    with serve(streams["per_sample"]) as server:
        page = new_page(chromium, server.url, 240, 240)  # the orbit view fills the stage: keep it small
        page.wait_for_function("() => window.rerfPlayer && window.rerfPlayer.shownFrame >= 0", timeout=30000)
        box = page.locator("#stage").bounding_box()
        theta0, h = page.evaluate("[window.rerfPlayer.orbit.theta, document.getElementById('stage').clientHeight]")
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 40, y, steps=4)
        page.mouse.up()
        right_after = page.evaluate("(() => { const o = window.rerfPlayer.orbit; return [o.theta, o.moving, o.toState()[4]]; })()")
        page.wait_for_function("() => !window.rerfPlayer.orbit.moving", timeout=20000)
        rest = page.evaluate("window.rerfPlayer.orbit.theta")
        rendered = page.evaluate("window.rerfPlayer.stats().framesRendered")
        assert not page.errors, page.errors
    want = theta0 - 2 * np.pi * 40 / h
    assert abs(rest - want) < 1e-9, (rest, want)
    assert right_after[1] and abs(right_after[0] - want) > 0.01 * abs(want - theta0), right_after
    assert abs(right_after[2] - want) < 1e-4
    assert rendered >= 3  # the glide was drawn, not only its end


def test_local_file_plays_from_memory_in_the_worker(chromium: Any, streams: dict[str, Path]) -> None:
    """A picked (or dropped) file goes to the worker as a Blob (cloned by reference, read there); seeking
    in it fetches nothing."""
    with serve(streams["per_sample"]) as server:
        page = open_player(chromium, server.url)
        server.take_records()
        page.set_input_files("#file", str(streams["long"]))
        page.wait_for_function("() => window.rerfPlayer.numFrames === 40 && window.rerfPlayer.shownFrame === 0", timeout=30000)
        page.evaluate("async () => { await window.rerfPlayer.seek(29); }")
        stats = page.evaluate("window.rerfPlayer.stats()")
        title = page.title()
        assert not page.errors, page.errors
        fetched = [r.path for r in server.take_records() if r.path == "/stream.rerf"]
    assert stats["decoder"] == "worker" and stats["frame"] == 29 and stats["framesDecoded"] >= 2
    assert fetched == [] and stats["requests"] == 0
    assert "long.rerf" in title
