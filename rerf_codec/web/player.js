// The player: a <video>-like state machine over a .rerf stream, a frame buffer, and the renderer.
// Decoding (and brick preparation) runs in a Web Worker (frame-source.js; on the page when no
// worker can be created); the page only uploads and renders.
//
// States (hls.js style): "idle" → "loading" → "paused" | "playing" | "waiting" | "ended",
// "error" on a fatal error. Seeking is orthogonal (a pending target frame). The buffer holds
// prepared frames (bricks ready for upload) keyed by frame number; a decode job fills it GOF
// by GOF: while paused only the GOF holding a seek target is fetched (a Range request for
// that chunk alone), while playing GOFs ahead of the play head up to ``aheadSeconds`` or the
// memory budget; frames behind the play head are evicted first when over budget. A GOF that
// fails its CRC or does not parse is marked damaged: a banner says so and playback resumes
// at the next GOF.

import { FrameSource } from "./frame-source.js";
import { OrbitCamera, fromJson } from "./render/camera.js";
import { Renderer, mlpFromTensors } from "./render/renderer.js";

/** @typedef {import("./render/renderer.js").RenderCamera} RenderCamera */
/** @typedef {import("./render/renderer.js").StreamInfo} StreamInfo */
/** @typedef {import("./render/bricks.js").PreparedFrame} PreparedFrame */

/**
 * @typedef {object} PlayerOptions
 * @property {number} [memoryBudget] bytes of prepared frames to hold (default 512 MiB)
 * @property {number} [aheadSeconds] decode ahead this far while playing (default 2 s)
 * @property {(msg: string, kind: "info" | "error") => void} [banner] shows a message to the user
 * @property {boolean} [worker] decode in a Web Worker (default true; false: on the page)
 */

/** Buffered frame ranges in seconds, as HTMLMediaElement.buffered. */
class Ranges {
  /** @param {[number, number][]} r */
  constructor(r) {
    this.ranges = r;
  }
  get length() {
    return this.ranges.length;
  }
  /** @param {number} i */
  start(i) {
    return this.ranges[i][0];
  }
  /** @param {number} i */
  end(i) {
    return this.ranges[i][1];
  }
}

export class Player extends EventTarget {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {PlayerOptions} [opts]
   */
  constructor(canvas, opts = {}) {
    super();
    this.canvas = canvas;
    this.opts = { memoryBudget: 512 * 2 ** 20, aheadSeconds: 2, ...opts };
    this.state = "idle";
    this.renderer = new Renderer(canvas); // throws RenderUnsupportedError without WebGL2
    /** The decoder: a worker (or inline) speaking frame-protocol.js. */
    this.source = new FrameSource({ worker: this.opts.worker });
    /** @type {{header: any, numFrames: number, firstFrame: number, gofs: {offset: number, first_frame: number, num_frames: number}[]} | null} */
    this.stream = null;
    /** @type {Map<number, {frame: PreparedFrame, bytes: number}>} */
    this.buffer = new Map();
    this.bufferBytes = 0;
    /** @type {Set<number>} GOF indices found damaged */
    this.damaged = new Set();
    this.frame = 0; // frame number on screen (or about to be)
    this.shownFrame = -1; // frame number uploaded to the GPU
    this.mediaTime = 0; // seconds since the first frame
    this.speed = 1;
    this.loop = false;
    /** @type {number | null} */
    this.seekTarget = null;
    /** @type {{resolve: () => void, reject: (e: Error) => void}[]} */
    this.seekWaiters = [];
    /** @type {(() => void)[]} */
    this.renderWaiters = [];
    /** @type {RenderCamera | null} */
    this.fixedCamera = null;
    this.orbit = /** @type {OrbitCamera | null} */ (null);
    this.autoRotate = false;
    this.viewDirty = true;
    this.size = { w: canvas.width, h: canvas.height };
    /** @type {{gof: number, id: number} | null} the decode request in flight (one at a time) */
    this.job = null;
    this.counters = {
      decodeMs: 0, decoded: 0, prepareMs: 0, uploadMs: 0, renderMs: 0, rendered: 0, gofBytes: 0, gofFrames: 0, preUploaded: 0,
    };
    /** @type {number[]} */
    this.presentTimes = [];
    this.lastTick = 0;
    this.destroyed = false;
    /** Wait for the GPU after each picture (true while the HUD shows timings). */
    this.hudSync = false;
    this.raf = requestAnimationFrame((t) => this.tick(t));
  }

  // ------------------------------------------------------------------ opening

  /**
   * Open a stream (URL, ArrayBuffer or Blob/File) and show its first frame (or ``startFrame``).
   * @param {string | ArrayBuffer | Blob} source
   * @param {{startFrame?: number}} [o]
   */
  async open(source, o = {}) {
    this.reset();
    this.state = "loading";
    try {
      // The worker resolves URLs against its own script: hand it an absolute one.
      const src = typeof source === "string" ? new URL(source, location.href).href : source;
      const opened = await this.source.open(src);
      if (!opened.gofs) throw new Error("the stream has no index (a seekable .rerf is needed)");
      this.stream = { header: opened.header, numFrames: opened.numFrames, firstFrame: opened.firstFrame, gofs: opened.gofs };
      const h = opened.header;
      const seq = (h.meta && h.meta.sequence) || {};
      if (!seq.mlp) throw new Error("the stream carries no colour MLP (grids only): nothing to render");
      /** @type {Record<string, {data: Float32Array, shape: number[]}>} */
      const tensors = {};
      for (const t of h.tensors) {
        if (t.dtype !== "<f4") throw new Error(`tensor ${t.name} has dtype ${t.dtype}, expected <f4`);
        tensors[t.name] = { data: new Float32Array(t.data.slice().buffer), shape: t.shape };
      }
      const render = seq.render || {};
      /** @type {StreamInfo} */
      this.info = {
        shape: h.grid_shape, channels: h.feature_channels, xyzMin: h.xyz_min, xyzMax: h.xyz_max,
        densityShift: h.density_shift,
        render: {
          background: render.background || [1, 1, 1], stepRatio: render.step_ratio || 0.5,
          shading: render.shading === "deferred" ? "deferred" : "per_sample",
        },
        mlp: mlpFromTensors(seq.mlp, tensors),
      };
      this.renderer.setStream(this.info);
      this.orbit = new OrbitCamera(h.xyz_min, h.xyz_max);
      this.fps = h.fps > 0 ? h.fps : 30;
      this.state = "paused";
      this.dispatch("loadedmetadata");
      await this.seek(o.startFrame ?? h.first_frame);
      this.dispatch("loadeddata");
    } catch (e) {
      this.fail(/** @type {Error} */ (e));
      throw e;
    }
  }

  /** Forget the current stream (buffers, jobs, GPU frame). */
  reset() {
    this.abortJob();
    if (this.stream) this.source.reset();
    this.stream = null;
    this.buffer.clear();
    this.bufferBytes = 0;
    this.damaged.clear();
    this.shownFrame = -1;
    this.seekTarget = null;
    for (const w of this.seekWaiters.splice(0)) w.reject(new Error("stream closed"));
  }

  // ------------------------------------------------------------------ <video>-like API

  get paused() {
    return this.state !== "playing" && this.state !== "waiting";
  }
  get numFrames() {
    return this.stream ? this.stream.numFrames : 0;
  }
  get firstFrame() {
    return this.stream ? this.stream.firstFrame : 0;
  }
  get currentFrame() {
    return this.frame;
  }
  get duration() {
    return this.stream ? this.numFrames / this.fps : NaN;
  }
  get currentTime() {
    return this.stream ? (this.frame - this.firstFrame) / this.fps : 0;
  }
  set currentTime(t) {
    this.seek(this.firstFrame + Math.floor(t * this.fps + 1e-6)).catch(() => {});
  }

  /** Buffered ranges in seconds (decoded and prepared frames). */
  get buffered() {
    return new Ranges(this.bufferedFrames().map(([a, b]) => [(a - this.firstFrame) / this.fps, (b - this.firstFrame) / this.fps]));
  }

  /** Buffered frame ranges [start, end) in frame numbers. */
  bufferedFrames() {
    const keys = [...this.buffer.keys()].sort((a, b) => a - b);
    /** @type {[number, number][]} */
    const out = [];
    for (const k of keys) {
      if (out.length && out[out.length - 1][1] === k) out[out.length - 1][1] = k + 1;
      else out.push([k, k + 1]);
    }
    return out;
  }

  async play() {
    if (!this.stream) throw new Error("no stream open");
    if (this.state === "ended" || this.frame >= this.firstFrame + this.numFrames - 1) {
      if (this.frame >= this.firstFrame + this.numFrames - 1) await this.seek(this.firstFrame);
    }
    this.mediaTime = this.currentTime;
    this.state = "playing";
    this.dispatch("play");
    this.schedule();
  }

  pause() {
    if (!this.stream) return;
    if (!this.paused) {
      this.state = "paused";
      this.dispatch("pause");
    }
    // Decode-ahead stops; a job for a GOF nobody waits for is aborted.
    if (this.seekTarget === null) this.abortJob();
  }

  /**
   * Go to a frame; resolves once it is on screen.
   * @param {number} frame frame number (the stream's numbering)
   * @returns {Promise<void>}
   */
  seek(frame) {
    if (!this.stream) return Promise.reject(new Error("no stream open"));
    const f = Math.max(this.firstFrame, Math.min(this.firstFrame + this.numFrames - 1, Math.floor(frame)));
    this.seekTarget = f;
    this.frame = f;
    this.mediaTime = (f - this.firstFrame) / this.fps;
    if (this.state === "ended") this.state = "paused";
    this.dispatch("seeking");
    const p = new Promise((resolve, reject) => this.seekWaiters.push({ resolve: () => resolve(undefined), reject }));
    // A job decoding a GOF that does not hold the target is aborted (hls.js onMediaSeeking).
    const g = this.gofOf(f);
    if (this.job && this.job.gof !== g && !this.buffer.has(f)) this.abortJob();
    this.schedule();
    return /** @type {Promise<void>} */ (p);
  }

  /**
   * Show the scene through a transforms.json camera (the canvas takes its w×h).
   * @param {import("./render/camera.js").JsonCamera} camera
   */
  setView(camera) {
    const cam = fromJson(camera);
    this.fixedCamera = cam;
    this.autoRotate = false;
    this.size = { w: cam.w, h: cam.h };
    this.viewDirty = true;
  }

  /** Back to the orbit camera (from where the fixed camera was, if any). */
  releaseView() {
    if (this.fixedCamera && this.orbit) this.orbit.setFrom(this.fixedCamera);
    this.fixedCamera = null;
    this.viewDirty = true;
  }

  /**
   * Size of the picture when the orbit camera is used.
   * @param {number} w @param {number} h
   */
  setSize(w, h) {
    w = Math.max(1, Math.round(w));
    h = Math.max(1, Math.round(h));
    if (this.fixedCamera || (w === this.size.w && h === this.size.h)) return;
    this.size = { w, h };
    this.viewDirty = true;
  }

  /** Mark the orbit camera changed (controls call this). */
  viewChanged() {
    this.releaseView();
    this.dispatch("viewchange");
  }

  /** A promise for the next presented picture. */
  rendered() {
    this.viewDirty = true;
    return new Promise((resolve) => this.renderWaiters.push(() => resolve(undefined)));
  }

  /** Figures for the HUD and tests. */
  stats() {
    const c = this.counters;
    const now = performance.now();
    const recent = this.presentTimes.filter((t) => now - t < 1000);
    let ahead = 0;
    for (let f = this.frame; this.buffer.has(f); f++) ahead++;
    return {
      state: this.state,
      frame: this.frame,
      fps: recent.length,
      decodeMs: c.decoded ? c.decodeMs / c.decoded : 0,
      prepareMs: c.decoded ? c.prepareMs / c.decoded : 0,
      uploadMs: c.rendered ? c.uploadMs / Math.max(1, c.decoded) : 0,
      renderMs: c.rendered ? c.renderMs / c.rendered : 0,
      framesDecoded: c.decoded,
      framesRendered: c.rendered,
      framesPreUploaded: c.preUploaded,
      kBPerFrame: c.gofFrames ? c.gofBytes / c.gofFrames / 1000 : 0,
      bufferedSeconds: ahead / (this.fps || 1),
      bufferBytes: this.bufferBytes,
      gpuBytes: this.renderer.gpuMemory(),
      bytesFetched: this.source.net.bytes,
      requests: this.source.net.requests,
      decoder: this.source.mode,
      damagedGofs: [...this.damaged].sort((a, b) => a - b),
      shading: this.info?.render.shading,
    };
  }

  /** Count the GPU work of the current picture (samples, MLP evaluations, texture fetches). */
  countWork() {
    return this.renderer.render(this.currentCamera(), { count: true });
  }

  destroy() {
    this.destroyed = true;
    cancelAnimationFrame(this.raf);
    this.reset();
    this.source.terminate();
    this.renderer.dispose();
    this.state = "idle";
  }

  // ------------------------------------------------------------------ internals

  /** @param {string} type @param {any} [detail] */
  dispatch(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {Error} e */
  fail(e) {
    this.state = "error";
    this.opts.banner?.(e.message, "error");
    this.dispatch("error", { type: e.name, details: e.message, fatal: true });
    for (const w of this.seekWaiters.splice(0)) w.reject(e);
  }

  /** @param {number} frame */
  gofOf(frame) {
    const gofs = /** @type {NonNullable<Player["stream"]>} */ (this.stream).gofs;
    let lo = 0, hi = gofs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (gofs[mid].first_frame <= frame) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Start the next decode job if one is needed (at most one runs). */
  schedule() {
    if (!this.stream || this.job || this.destroyed) return;
    const gofs = this.stream.gofs;
    /** @type {number | null} */
    let want = null;
    if (this.seekTarget !== null && !this.buffer.has(this.seekTarget)) {
      want = this.gofOf(this.seekTarget);
      if (this.damaged.has(want)) {
        this.skipDamaged(want);
        return;
      }
    } else if (!this.paused) {
      const end = this.firstFrame + this.numFrames;
      const horizon = Math.min(end, this.frame + Math.ceil(this.opts.aheadSeconds * this.fps) + 1);
      for (let f = this.frame; f < horizon; f++) {
        if (this.buffer.has(f)) continue;
        const g = this.gofOf(f);
        if (this.damaged.has(g)) {
          f = gofs[g].first_frame + gofs[g].num_frames - 1;
          continue;
        }
        if (this.bufferBytes > this.opts.memoryBudget && f > this.frame) break;
        want = g;
        break;
      }
      if (want === null && this.loop && horizon >= end) {
        const g0 = this.gofOf(this.firstFrame);
        if (!this.buffer.has(this.firstFrame) && !this.damaged.has(g0) && this.bufferBytes < this.opts.memoryBudget) want = g0;
      }
    }
    if (want === null) return;
    this.decodeGof(want);
  }

  /** Stop the decode request in flight (a seek moved on, or pause). */
  abortJob() {
    if (!this.job) return;
    this.source.abort(this.job.id);
    this.job = null;
  }

  /** Decode GOF ``g`` (from its keyframe) in the worker; its frames land in the buffer. @param {number} g */
  async decodeGof(g) {
    const entry = /** @type {NonNullable<Player["stream"]>} */ (this.stream).gofs[g];
    let lastBytes = this.source.net.bytes;
    const req = this.source.decode(entry.first_frame, entry.first_frame + entry.num_frames, {
      onFrame: (m) => {
        this.counters.decodeMs += m.decodeMs;
        this.counters.prepareMs += m.prepareMs;
        this.counters.decoded++;
        this.counters.gofFrames++;
        this.store(m.index, m.frame);
      },
      onProgress: (p) => {
        this.counters.gofBytes += Math.max(0, p.bytes - lastBytes);
        lastBytes = p.bytes;
      },
    });
    const job = { gof: g, id: req.id };
    this.job = job;
    try {
      await req.done; // aborted requests resolve too
    } catch (e) {
      const err = /** @type {Error} */ (e);
      if (this.job !== job && this.job !== null) return; // superseded
      if (err.name === "RerfFormatError") {
        this.damaged.add(g);
        const end = entry.first_frame + entry.num_frames;
        const next = end < this.firstFrame + this.numFrames ? `; playback resumes at frame ${end}` : "";
        this.opts.banner?.(`GOF ${g} (frames ${entry.first_frame}–${end - 1}) is damaged: ${err.message}${next}`, "error");
        this.dispatch("error", { type: "RerfFormatError", details: err.message, fatal: false, gof: g });
        if (this.seekTarget !== null && this.gofOf(this.seekTarget) === g) this.skipDamaged(g);
      } else {
        if (this.job === job) this.job = null;
        this.fail(err);
        return;
      }
    }
    if (this.job === job) this.job = null;
    this.schedule();
  }

  /** A seek into a damaged GOF lands on the next good GOF's first frame. @param {number} g */
  skipDamaged(g) {
    const gofs = /** @type {NonNullable<Player["stream"]>} */ (this.stream).gofs;
    let k = g;
    while (k < gofs.length && this.damaged.has(k)) k++;
    if (k >= gofs.length) {
      this.seekTarget = null;
      for (const w of this.seekWaiters.splice(0)) w.reject(new Error("no playable frame after the damaged GOF"));
      return;
    }
    this.seekTarget = gofs[k].first_frame;
    this.frame = this.seekTarget;
    this.mediaTime = (this.frame - this.firstFrame) / this.fps;
    this.schedule();
  }

  /** @param {number} index @param {PreparedFrame} frame */
  store(index, frame) {
    if (this.buffer.has(index)) return;
    const bytes = frame.occupancy.byteLength + frame.brickData.reduce((s, a) => s + a.byteLength, 0) + frame.brickOf.byteLength;
    this.buffer.set(index, { frame, bytes });
    this.bufferBytes += bytes;
    this.evict();
    this.dispatch("progress");
  }

  /** Drop frames behind the play head, then far ahead, until inside the memory budget. */
  evict() {
    if (this.bufferBytes <= this.opts.memoryBudget) return;
    const keys = [...this.buffer.keys()].sort((a, b) => a - b);
    const keep = new Set([this.frame, this.seekTarget]);
    const behind = keys.filter((k) => k < this.frame);
    const ahead = keys.filter((k) => k > this.frame).reverse();
    for (const k of [...behind, ...ahead]) {
      if (this.bufferBytes <= this.opts.memoryBudget) break;
      if (keep.has(k)) continue;
      this.bufferBytes -= /** @type {{bytes: number}} */ (this.buffer.get(k)).bytes;
      this.buffer.delete(k);
    }
  }

  /** The camera of the next picture. @returns {RenderCamera} */
  currentCamera() {
    if (this.fixedCamera) return this.fixedCamera;
    return /** @type {OrbitCamera} */ (this.orbit).camera(this.size.w, this.size.h);
  }

  /** @param {number} now */
  tick(now) {
    if (this.destroyed) return;
    this.raf = requestAnimationFrame((t) => this.tick(t));
    const dt = this.lastTick ? Math.min(0.25, (now - this.lastTick) / 1000) : 0;
    this.lastTick = now;
    if (!this.stream || !this.info) return;
    const last = this.firstFrame + this.numFrames - 1;
    if (this.state === "playing" || this.state === "waiting") {
      if (this.seekTarget === null) {
        let next = this.firstFrame + Math.floor((this.mediaTime + dt * this.speed) * this.fps + 1e-6);
        // Damaged GOFs are skipped: time jumps to the next good GOF.
        while (next <= last && this.damaged.has(this.gofOf(next))) {
          const e = this.stream.gofs[this.gofOf(next)];
          next = e.first_frame + e.num_frames;
        }
        if (next > last) {
          if (this.loop) {
            this.mediaTime = 0;
            next = this.firstFrame;
          } else {
            next = last;
            if (this.buffer.has(last) && this.shownFrame === last) {
              this.state = "ended";
              this.dispatch("ended");
            }
          }
        }
        if (this.buffer.has(next)) {
          if (this.state === "waiting") this.state = "playing";
          if (next !== this.frame) {
            this.frame = next;
            this.dispatch("timeupdate");
          }
          if (this.state === "playing") this.mediaTime = Math.max(this.mediaTime + dt * this.speed, (next - this.firstFrame) / this.fps);
          if (next === this.firstFrame && this.loop) this.mediaTime = 0;
        } else if (this.state === "playing") {
          this.state = "waiting";
          this.frame = next;
          this.dispatch("waiting");
        }
      }
      this.evictBehind();
      this.schedule();
    }
    if (this.autoRotate && !this.fixedCamera && this.orbit) {
      this.orbit.rotate(-0.4 * dt, 0);
      this.viewDirty = true;
    }
    // Damped orbit/pan glide on (render/camera.js): the view changes until it comes to rest.
    if (!this.fixedCamera && this.orbit?.update(dt)) this.viewDirty = true;
    const want = this.seekTarget ?? this.frame;
    const entry = this.buffer.get(want);
    let changed = false;
    if (entry && want !== this.shownFrame) {
      const t0 = performance.now();
      if (this.renderer.backKey() === want) {
        this.renderer.swap(); // uploaded ahead (preUpload): nothing to copy now
        this.counters.preUploaded++;
      } else {
        this.renderer.setFrame(entry.frame, want);
      }
      this.counters.uploadMs += performance.now() - t0;
      this.shownFrame = want;
      changed = true;
    }
    this.preUpload();
    if (!changed && !this.viewDirty) return;
    if (this.shownFrame < 0) return;
    const t0 = performance.now();
    this.renderer.render(this.currentCamera());
    if (this.hudSync) this.renderer.finish();
    this.counters.renderMs += performance.now() - t0;
    this.counters.rendered++;
    this.presentTimes.push(now);
    if (this.presentTimes.length > 240) this.presentTimes.splice(0, 120);
    this.viewDirty = false;
    if (this.seekTarget !== null && this.shownFrame === this.seekTarget) {
      this.seekTarget = null;
      this.frame = this.shownFrame;
      this.dispatch("seeked");
      this.dispatch("timeupdate");
      for (const w of this.seekWaiters.splice(0)) w.resolve();
      this.schedule();
    }
    for (const w of this.renderWaiters.splice(0)) w();
  }

  /** While playing, upload the next frame into the renderer's back textures: showing it is then a swap. */
  preUpload() {
    if (this.paused || this.seekTarget !== null || this.shownFrame < 0) return;
    let next = this.shownFrame + 1;
    if (next >= this.firstFrame + this.numFrames) {
      if (!this.loop) return;
      next = this.firstFrame;
    }
    const e = this.buffer.get(next);
    if (!e || this.renderer.backKey() === next) return;
    const t0 = performance.now();
    this.renderer.upload(e.frame, next);
    this.counters.uploadMs += performance.now() - t0;
  }

  /** While playing, frames behind the play head are not needed (unless looping will reach them soon). */
  evictBehind() {
    if (this.bufferBytes <= this.opts.memoryBudget * 0.75) return;
    for (const k of [...this.buffer.keys()]) {
      if (k < this.frame) {
        this.bufferBytes -= /** @type {{bytes: number}} */ (this.buffer.get(k)).bytes;
        this.buffer.delete(k);
      }
    }
  }
}
