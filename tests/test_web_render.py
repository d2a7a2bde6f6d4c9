"""The WebGL2 renderer against the Python renderer, grids injected (no decoder involved)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from player_fixtures import MLP, eval_cameras
from web_fixtures import BACKGROUND, SHIFT, decoder_arrays, sequence_meta
from web_fixtures import soft_frame as blob_frame

from rerf_codec.field import RadianceField
from tests.browser import browser, foreground_psnr, new_page, png_rgb, serve

ROOT = Path(__file__).resolve().parents[1]
STREAM = next(iter(sorted((ROOT / "bitstreams" / "conformance").glob("*/*.rerf"))))

INJECT = """async ([info, frame, cams]) => {
  const { Renderer } = await import('./render/renderer.js');
  const { prepareFrame } = await import('./render/bricks.js');
  const f32 = (b64) => new Float32Array(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer);
  info.mlp.layers = info.mlp.layers.map((l) => ({ ...l, weight: f32(l.weight), bias: f32(l.bias) }));
  const canvas = document.createElement('canvas');
  canvas.style.cssText = 'position:fixed;left:0;top:0;z-index:99';
  canvas.id = 'test-canvas';
  document.body.appendChild(canvas);
  const r = new Renderer(canvas);
  r.setStream(info);
  const prep = prepareFrame(f32(frame.density), f32(frame.features), {
    shape: info.shape, channels: info.channels, densityShift: info.densityShift, stepRatio: info.render.stepRatio });
  r.setFrame(prep);
  const out = [];
  for (const cam of cams) {
    r.render(cam);
    out.push(canvas.toDataURL('image/png'));
  }
  return { images: out, work: r.render(cams[0], { count: true }), bricks: prep.numBricks };
}"""


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode()


def stream_info(shading: str = "per_sample") -> dict[str, Any]:
    arrays = decoder_arrays()
    layers = []
    for i in range(MLP.depth):
        w, b = arrays[f"mlp.net.{2 * i}.weight"], arrays[f"mlp.net.{2 * i}.bias"]
        layers.append({"weight": _b64(w), "bias": _b64(b), "out": w.shape[0], "in": w.shape[1]})
    meta = sequence_meta(1)
    return {
        "shape": list(meta.grid_shape), "channels": meta.feature_channels, "xyzMin": list(meta.xyz_min),
        "xyzMax": list(meta.xyz_max), "densityShift": SHIFT,
        "render": {"background": list(BACKGROUND), "stepRatio": 0.5, "shading": shading},
        "mlp": {"viewbasePe": MLP.viewbase_pe, "width": MLP.width, "depth": MLP.depth, "layers": layers},
    }  # fmt: skip


def js_camera(cam: Any) -> dict[str, Any]:
    return {"w": cam.w, "h": cam.h, "fx": cam.fl_x, "fy": cam.fl_y, "cx": cam.cx, "cy": cam.cy,
            "c2w": [float(v) for v in np.asarray(cam.c2w).reshape(-1)]}  # fmt: skip


def python_render(frame: Any, cam: Any, shading: str) -> np.ndarray:
    """The Python renderer's picture (``render.shading`` as the stream would say)."""
    field = RadianceField.for_sequence(sequence_meta(1, shading), decoder_arrays())
    field.set_grids(frame.density, frame.features)
    return field.render_camera(cam).astype(np.float64)


@pytest.mark.parametrize("shading", ["per_sample", "deferred"])
def test_webgl_matches_python_renderer(shading: str) -> None:
    cams = eval_cameras(size=40)[:2]
    fr = blob_frame(2)
    refs = [python_render(fr, c, shading) for c in cams]
    neighbour = python_render(blob_frame(3), cams[0], shading)
    other_mode = python_render(fr, cams[0], "deferred" if shading == "per_sample" else "per_sample")
    frame = {"density": _b64(fr.density), "features": _b64(fr.features)}
    with browser() as b, serve(STREAM) as server:
        page = new_page(b, server.url + "index.html")
        out = page.evaluate(INJECT, [stream_info(shading), frame, [js_camera(c) for c in cams]])
        assert not [e for e in page.errors if "player.json" not in e and "stream" not in e], page.errors
    imgs = [png_rgb(base64.b64decode(u.split(",", 1)[1])) for u in out["images"]]
    scores = [foreground_psnr(i, r, BACKGROUND) for i, r in zip(imgs, refs, strict=True)]
    wrong_frame = foreground_psnr(imgs[0], neighbour, BACKGROUND)
    wrong_mode = foreground_psnr(imgs[0], other_mode, BACKGROUND)
    print(json.dumps({"shading": shading, "psnr": scores, "neighbour": wrong_frame, "other_mode": wrong_mode,
                      "work": out["work"], "bricks": out["bricks"]}))  # fmt: skip
    assert min(scores) >= 35, scores
    assert wrong_frame < min(scores) - 6 and wrong_mode < min(scores) - 6, (wrong_frame, wrong_mode, scores)
    w = out["work"]
    assert w["marched"] >= w["kept"] >= w["shaded"] > 0


def test_bricks_are_half_floats_rounded_to_nearest_even() -> None:
    """The worker converts brick texels to float16 itself (RGBA16F atlases): numpy's float16 cast
    (round to nearest, ties to even; subnormals, overflow to inf, NaN) is the oracle."""
    import subprocess

    from rerf_codec.web.node_runner import find_node

    node = find_node()
    if node is None:
        pytest.skip("Node.js 20+ not found on PATH (.ci/run installs it)")
    rng = np.random.default_rng(7)
    v = (rng.standard_normal(20000) * np.exp2(rng.uniform(-28, 18, 20000))).astype(np.float32)
    halves = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)
    ties = (halves[:-1] + (halves[1:] - halves[:-1]) / 2).astype(np.float32)  # exact midpoints
    edge = np.array([0.0, -0.0, 65504, 65519.996, 65520, 1e9, -1e9, 2**-24, 2**-25, 3 * 2**-26, np.inf, np.nan], np.float32)
    v = np.concatenate([v, ties[::97], -ties[::89], edge])
    bricks = ROOT / "rerf_codec" / "web" / "render" / "bricks.js"
    script = (f"import {{ toHalf }} from {json.dumps(bricks.as_uri())};"
              "const v = new Float32Array(Buffer.from(process.argv[1], 'base64').buffer.slice(0));"
              "process.stdout.write(Buffer.from(Uint16Array.from(v, toHalf).buffer).toString('base64'));")  # fmt: skip
    out = subprocess.run([node, "--input-type=module", "-e", script, base64.b64encode(v.tobytes()).decode()],
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    got = np.frombuffer(base64.b64decode(out), np.uint16)
    with np.errstate(over="ignore"):
        want = v.astype(np.float16).view(np.uint16)
    nan = np.isnan(v)
    assert np.array_equal(got[~nan], want[~nan]), v[~nan][got[~nan] != want[~nan]][:5]
    assert np.isnan(got[nan].view(np.float16)).all()
