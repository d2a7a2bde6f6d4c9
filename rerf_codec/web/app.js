// The page: wires the DOM (controls, HUD, banners, URL hash, drag and drop) to a Player and
// exposes it as window.rerfPlayer. Where the stream comes from: ?src=URL, else player.json's
// "src" (written by `rerf play` / `rerf export-web`), or a dropped / picked local file.

import { Player } from "./player.js";
import { attachControls } from "./render/camera.js";
import { RenderUnsupportedError } from "./render/renderer.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const canvas = /** @type {HTMLCanvasElement} */ ($("view"));
const banner = $("banner");
const hud = $("hud");
const seekInput = /** @type {HTMLInputElement} */ ($("seek-input"));
const preset = /** @type {HTMLSelectElement} */ ($("preset"));

/** @param {string} msg @param {"info" | "error"} [kind] */
function showBanner(msg, kind = "info") {
  banner.hidden = false;
  banner.className = kind;
  banner.textContent = msg;
}

/** @param {number} s */
const fmt = (s) => `${Math.floor(s / 60)}:${(s % 60).toFixed(2).padStart(5, "0")}`;

/** @type {Player} */
let player;
try {
  // ?worker=0 decodes on the page (the fallback when no module worker can be created).
  const worker = new URLSearchParams(location.search).get("worker") !== "0";
  player = new Player(canvas, { banner: showBanner, worker });
} catch (e) {
  if (e instanceof RenderUnsupportedError) {
    showBanner(`${e.message}. Try a current Chrome, Firefox, Edge or Safari, with hardware acceleration on.`, "error");
  } else {
    showBanner(`cannot start the player: ${/** @type {Error} */ (e).message}`, "error");
  }
  throw e;
}
// @ts-ignore: the embedding/test API
window.rerfPlayer = player;

/** @type {any[]} */
let cameras = [];

function fitCanvas() {
  if (player.fixedCamera) return;
  const stage = $("stage");
  player.setSize(stage.clientWidth, stage.clientHeight);
}
new ResizeObserver(fitCanvas).observe($("stage"));

attachControls($("stage"), () => {
  player.releaseView();
  player.autoRotate = false;
  return /** @type {import("./render/camera.js").OrbitCamera} */ (player.orbit);
}, () => {
  player.viewChanged();
  preset.value = "";
  fitCanvas();
  scheduleHash();
});

// ------------------------------------------------------------------ controls

const playBtn = $("play");
const enable = () => {
  for (const id of ["play", "step-back", "step-fwd", "seek-input"]) /** @type {HTMLButtonElement} */ ($(id)).disabled = false;
  seekInput.min = String(player.firstFrame);
  seekInput.max = String(player.firstFrame + player.numFrames - 1);
};
const togglePlay = () => (player.paused ? player.play() : player.pause());
playBtn.onclick = togglePlay;
$("step-back").onclick = () => {
  player.pause();
  player.seek(player.currentFrame - 1);
};
$("step-fwd").onclick = () => {
  player.pause();
  player.seek(player.currentFrame + 1);
};
seekInput.oninput = () => player.seek(Number(seekInput.value)).catch(() => {});
/** @type {HTMLSelectElement} */ ($("speed")).onchange = (e) => {
  player.speed = Number(/** @type {HTMLSelectElement} */ (e.target).value);
};
const loopBox = /** @type {HTMLInputElement} */ ($("loop"));
player.loop = loopBox.checked;
loopBox.onchange = () => (player.loop = loopBox.checked);
$("reset").onclick = () => {
  player.releaseView();
  player.orbit?.reset();
  player.autoRotate = false;
  player.viewChanged();
  fitCanvas();
  scheduleHash();
};
$("hud-toggle").onclick = () => {
  hud.hidden = !hud.hidden;
  player.hudSync = !hud.hidden; // time the GPU only while someone looks at the figures
};
$("fullscreen").onclick = () => (document.fullscreenElement ? document.exitFullscreen() : $("app").requestFullscreen());
preset.onchange = () => {
  const v = preset.value;
  if (v === "orbit") {
    player.releaseView();
    player.orbit?.reset();
    player.autoRotate = true;
    player.viewChanged();
  } else if (v.startsWith("cam:")) {
    player.setView(cameras[Number(v.slice(4))]);
  }
  fitCanvas();
};
document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
  const keys = /** @type {Record<string, () => void>} */ ({
    " ": togglePlay, k: togglePlay, ",": () => $("step-back").click(), ".": () => $("step-fwd").click(),
    f: () => $("fullscreen").click(), r: () => $("reset").click(), h: () => $("hud-toggle").click(),
    l: () => { loopBox.checked = !loopBox.checked; player.loop = loopBox.checked; },
  });
  const f = keys[e.key];
  if (f) {
    e.preventDefault();
    f();
  }
});

// ------------------------------------------------------------------ status: seek bar, time, HUD

function refresh() {
  playBtn.textContent = player.paused ? "▶" : "❚❚";
  if (player.stream) {
    if (document.activeElement !== seekInput) seekInput.value = String(player.currentFrame);
    $("time").textContent = `${fmt(player.currentTime)} / ${fmt(player.duration)}`;
    const bar = $("seek-buffered");
    const n = player.numFrames;
    bar.replaceChildren(...player.bufferedFrames().map(([a, b]) => {
      const s = document.createElement("span");
      s.style.left = `${(100 * (a - player.firstFrame)) / n}%`;
      s.style.width = `${(100 * (b - a)) / n}%`;
      return s;
    }));
  }
  if (!hud.hidden) {
    const s = player.stats();
    hud.textContent = [
      `frame ${s.frame} / ${player.numFrames}  ${s.state}  ${s.shading}`,
      `fps ${s.fps}  render ${s.renderMs.toFixed(1)} ms  decode ${s.decodeMs.toFixed(1)} ms  prepare ${s.prepareMs.toFixed(1)} ms (${s.decoder})`,
      `${s.kBPerFrame.toFixed(1)} kB/frame  buffered ${s.bufferedSeconds.toFixed(2)} s  (${(s.bufferBytes / 2 ** 20).toFixed(1)} MiB)`,
      `GPU ${(s.gpuBytes / 2 ** 20).toFixed(1)} MiB  fetched ${(s.bytesFetched / 1e3).toFixed(0)} kB in ${s.requests} requests`,
    ].join("\n");
  }
}
for (const ev of ["timeupdate", "seeked", "play", "pause", "progress", "waiting", "ended"]) player.addEventListener(ev, refresh);
setInterval(refresh, 500);

// ------------------------------------------------------------------ URL hash: #t=SECONDS&view=...

let hashTimer = 0;
function scheduleHash() {
  clearTimeout(hashTimer);
  hashTimer = window.setTimeout(() => {
    const p = new URLSearchParams();
    p.set("t", player.currentTime.toFixed(3));
    if (player.orbit && !player.fixedCamera) p.set("view", player.orbit.toState().join(","));
    if (preset.value.startsWith("cam:")) p.set("cam", preset.value.slice(4));
    history.replaceState(null, "", `#${p}`);
  }, 300);
}
for (const ev of ["pause", "seeked"]) player.addEventListener(ev, scheduleHash);

function applyHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const view = p.get("view");
  if (view && player.orbit) {
    if (player.orbit.fromState(view.split(",").map(Number))) player.viewChanged();
  }
  const cam = p.get("cam");
  if (cam && cameras[Number(cam)]) {
    preset.value = `cam:${cam}`;
    player.setView(cameras[Number(cam)]);
  }
  const t = Number(p.get("t"));
  return Number.isFinite(t) && t > 0 ? player.firstFrame + Math.floor(t * player.fps + 1e-6) : undefined;
}

// ------------------------------------------------------------------ opening

/** @param {string | ArrayBuffer | Blob} src @param {string} title */
async function openSource(src, title) {
  banner.hidden = true;
  document.title = `${title} — rerf player`;
  await player.open(src);
  enable();
  const start = applyHash();
  if (start !== undefined) await player.seek(start);
  fitCanvas();
  refresh();
}

async function main() {
  if (location.protocol === "file:") return; // index.html's classic script explained it
  const params = new URLSearchParams(location.search);
  let src = params.get("src");
  let title = src || "";
  try {
    const r = await fetch("player.json", { cache: "no-cache" });
    if (r.ok) {
      const cfg = await r.json();
      if (!src && cfg.src) {
        src = new URL(cfg.src, location.href).href;
        title = cfg.title || cfg.src;
      }
      if (cfg.cameras) {
        const c = await fetch(new URL(cfg.cameras, location.href));
        if (c.ok) cameras = (await c.json()).cameras || [];
      }
    }
  } catch {
    // no player.json: a bare app, wait for ?src= or a file
  }
  preset.append(new Option("orbit (turntable)", "orbit"));
  cameras.forEach((c, i) => preset.append(new Option(`camera ${c.name ?? i}`, `cam:${i}`)));
  if (!src) {
    showBanner("Open a .rerf file (button or drag and drop), or add ?src=URL to the address.");
    return;
  }
  await openSource(src, title);
}

// Drag and drop / file picker: play a local file from memory.
const stage = $("stage");
stage.addEventListener("dragover", (e) => {
  e.preventDefault();
  $("drop").hidden = false;
});
stage.addEventListener("dragleave", () => ($("drop").hidden = true));
stage.addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").hidden = true;
  const f = e.dataTransfer?.files[0];
  if (f) openSource(f, f.name).catch(() => {});
});
/** @type {HTMLInputElement} */ ($("file")).onchange = (e) => {
  const f = /** @type {HTMLInputElement} */ (e.target).files?.[0];
  if (f) openSource(f, f.name).catch(() => {});
};

main().catch((e) => showBanner(`cannot open the stream: ${e.message}`, "error"));
