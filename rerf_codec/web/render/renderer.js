// WebGL2 ray marcher for one rerf frame: the maths of rerf_codec/field/render.py on the GPU.
//
// Per pixel: the ray of a pinhole camera (pixel centres, NeRF/OpenGL axes), clipped to the
// grid box; samples at t_near + (k + ½)·step, step = step_ratio · voxel_size; a sample counts
// only when its nearest voxel is in the free-space cache (occupancy texture); whole empty
// 8³ blocks are jumped over without leaving the sample lattice; density and features come
// from a brick atlas (RGBA16F, hardware trilinear inside 9³ bricks) through an indirection
// texture; alpha = 1 − exp(−softplus(d + shift)·step_ratio); colour by the stream's MLP
// (weights in an RGBA32F texture read with texelFetch) either per sample (ReRF/DVGO) or once
// per pixel on the composited features, added to a composited diffuse colour (deferred);
// rgb = Σ w·c + T·background. The march
// stops once transmittance drops below T_STOP (the rest can change a pixel by < T_STOP).

import { BLOCK, BRICK, WEIGHT_THRESHOLD, atlasWidth } from "./bricks.js";

/** Transmittance below which the march stops (error bound per channel). */
export const T_STOP = 1e-3;

/**
 * @typedef {object} StreamInfo
 * @property {[number, number, number]} shape
 * @property {number} channels
 * @property {[number, number, number]} xyzMin
 * @property {[number, number, number]} xyzMax
 * @property {number} densityShift
 * @property {{background: number[], stepRatio: number, shading: "per_sample" | "deferred"}} render
 * @property {{viewbasePe: number, width: number, depth: number, layers: {weight: Float32Array, bias: Float32Array, out: number, in: number}[]}} mlp
 */

/**
 * @typedef {object} RenderCamera
 * @property {number} w
 * @property {number} h
 * @property {number} fx
 * @property {number} fy
 * @property {number} cx
 * @property {number} cy
 * @property {ArrayLike<number>} c2w 4×4 camera-to-world, row-major (NeRF/OpenGL: camera looks down −z, y up)
 */

/** Thrown when the browser has no WebGL2 (the page shows a banner). */
export class RenderUnsupportedError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "RenderUnsupportedError";
  }
}

/**
 * Build ``StreamInfo.mlp`` from the stream's named tensors (``mlp.net.{2i}.weight/bias``).
 * @param {{viewbase_pe: number, width: number, depth: number, feature_channels: number}} config
 * @param {Record<string, {data: Float32Array, shape: number[]}>} tensors
 */
export function mlpFromTensors(config, tensors) {
  const layers = [];
  for (let i = 0; i < config.depth; i++) {
    const w = tensors[`mlp.net.${2 * i}.weight`];
    const b = tensors[`mlp.net.${2 * i}.bias`];
    if (!w || !b) throw new Error(`stream has no MLP layer ${i} (mlp.net.${2 * i}.weight/bias)`);
    layers.push({ weight: w.data, bias: b.data, out: w.shape[0], in: w.shape[1] });
  }
  return { viewbasePe: config.viewbase_pe, width: config.width, depth: config.depth, layers };
}

const VERTEX = `#version 300 es
void main() {
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;

/**
 * The fragment shader for one stream's shape (constants pasted as integers; weights stay in textures).
 * @param {StreamInfo} s
 * @param {{deferred: boolean, count: boolean}} mode
 */
function fragmentSource(s, mode) {
  const C = s.channels;
  const NT = Math.ceil((C + 1) / 4);
  const PE = s.mlp.viewbasePe;
  const inDim = C + 3 + 6 * PE;
  const in4 = Math.ceil(inDim / 4);
  const layers = s.mlp.layers;
  const maxOut4 = Math.max(1, ...layers.map((l) => Math.ceil(l.out / 4)));
  // MLP: layer l reads rows [row0, row0 + out) of uMLP; texel j holds inputs 4j..4j+3; column BIAS the bias.
  let row = 0;
  let mlp = "";
  let src = "a";
  layers.forEach((l, i) => {
    const last = i === layers.length - 1;
    const inN4 = Math.ceil(l.in / 4);
    const dst = last ? "o" : i % 2 === 0 ? "h" : "g";
    mlp += `  for (int k = 0; k < ${maxOut4}; k++) ${dst}[k] = vec4(0.0);\n`;
    mlp += `  for (int n = 0; n < ${l.out}; n++) {\n`;
    mlp += `    float s = texelFetch(uMLP, ivec2(BIAS, ${row} + n), 0).r;\n`;
    mlp += `    for (int j = 0; j < ${inN4}; j++) s += dot(texelFetch(uMLP, ivec2(j, ${row} + n), 0), ${src}[j]);\n`;
    mlp += last ? `    ${dst}[n >> 2][n & 3] = s;\n  }\n` : `    ${dst}[n >> 2][n & 3] = max(s, 0.0);\n  }\n`;
    row += l.out;
    src = dst;
  });
  let fill = "";
  for (let c = 0; c < C; c++) fill += `  a[${c >> 2}][${c & 3}] = t[${(c + 1) >> 2}][${(c + 1) & 3}];\n`;
  return `#version 300 es
precision highp float;
precision highp int;
precision highp sampler3D;
precision highp usampler3D;
precision highp sampler2D;
#define NT ${NT}
#define IN4 ${in4}
#define OUT4 ${maxOut4}
#define BIAS ${Math.max(...layers.map((l) => Math.ceil(l.in / 4)))}
#define DEFERRED ${mode.deferred ? 1 : 0}
#define COUNT ${mode.count ? 1 : 0}
uniform sampler3D uAtlas[NT];
uniform usampler3D uOcc;
uniform usampler3D uBlockOcc;
uniform usampler3D uBrickOf;
uniform sampler2D uMLP;
uniform vec3 uLo;
uniform vec3 uSpacing;
uniform ivec3 uShape;
uniform ivec3 uBlocks;
uniform int uAtlasA;
uniform vec3 uAtlasSize;
uniform float uStep;
uniform float uStepRatio;
uniform float uShift;
uniform vec3 uBg;
uniform mat3 uRot;
uniform vec3 uOrigin;
uniform vec4 uIntr;
uniform float uHeight;
out vec4 outColor;

float softplus(float x) { return x > 20.0 ? x : log(1.0 + exp(x)); }

vec3 mlp(vec4 a[IN4]) {
  vec4 h[OUT4];
  vec4 g[OUT4];
  vec4 o[OUT4];
${mlp}  vec3 r = vec3(${src}[0].x, ${src}[0].y, ${src}[0].z);
  return 1.0 / (1.0 + exp(-r));
}

// The MLP input: features 0..C-1 then the view encoding (constant per ray, in uDirEnc).
void fillInput(inout vec4 a[IN4], vec4 t[NT]) {
${fill}}

void main() {
  // Pixel centre (u, v) in image coordinates, v down: the Python renderer's Camera.rays().
  float u = gl_FragCoord.x;
  float v = uHeight - gl_FragCoord.y;
  vec3 d = uRot * vec3((u - uIntr.z) / uIntr.x, -(v - uIntr.w) / uIntr.y, -1.0);
  d = normalize(d);
  vec3 o = uOrigin;
  vec3 hi = uLo + uSpacing * vec3(uShape - 1);
  vec3 safe = mix(d, vec3(1e-9), lessThan(abs(d), vec3(1e-9)));
  vec3 t0 = (uLo - o) / safe;
  vec3 t1 = (hi - o) / safe;
  vec3 tmin = min(t0, t1), tmax = max(t0, t1);
  float tNear = max(max(max(tmin.x, tmin.y), tmin.z), 0.0);
  float tFar = min(min(tmax.x, tmax.y), tmax.z);
  int n = tFar > tNear ? int(ceil((tFar - tNear) / uStep)) : 0;

  // Per-ray view encoding [d, sin(2^k d), cos(2^k d)] lives in the input vector's tail.
  vec4 a[IN4];
  for (int j = 0; j < IN4; j++) a[j] = vec4(0.0);
  ${encodeDirectionsGlsl(C, PE)}
  float T = 1.0;
  vec3 rgb = vec3(0.0);
  vec4 facc[NT];
  for (int j = 0; j < NT; j++) facc[j] = vec4(0.0);
  float wsum = 0.0;
  float marched = 0.0, kept = 0.0, shaded = 0.0, fetches = 0.0;
  vec3 io = (o - uLo) / uSpacing;
  vec3 idir = d / uSpacing;
  vec3 shapeMax = vec3(uShape - 1);
  int k = 0;
  while (k < n) {
    float t = tNear + (float(k) + 0.5) * uStep;
    vec3 p = o + d * t;
    vec3 idx = (p - uLo) / uSpacing;
    ivec3 vox = clamp(ivec3(roundEven(idx)), ivec3(0), uShape - 1);
    marched += 1.0;
    fetches += 1.0;
    if (texelFetch(uOcc, vox.zyx, 0).r == 0u) {
      ivec3 ob = vox / ${BLOCK};
      fetches += 1.0;
      if (texelFetch(uBlockOcc, ob.zyx, 0).r == 0u) {
        // Every sample whose nearest voxel lies in this empty block is dropped: jump past it.
        vec3 lo = vec3(ob * ${BLOCK}) - 0.5, up = lo + ${BLOCK}.0;
        vec3 bound = mix(lo, up, greaterThan(idir, vec3(0.0)));
        vec3 te = mix((bound - io) / idir, vec3(1e30), lessThan(abs(idir), vec3(1e-12)));
        float tExit = min(min(te.x, te.y), te.z);
        k = max(k + 1, int(floor((tExit - tNear) / uStep - 0.5)));
      } else {
        k++;
      }
      continue;
    }
    k++;
    vec3 ic = clamp(idx, vec3(0.0), shapeMax);
    ivec3 b = min(ivec3(floor(ic)) / ${BLOCK}, uBlocks - 1);
    uint id = texelFetch(uBrickOf, b.zyx, 0).r;
    fetches += 1.0;
    if (id == 0u) continue;
    int bi = int(id) - 1;
    vec3 org = vec3(float(bi % uAtlasA), float((bi / uAtlasA) % uAtlasA), float(bi / (uAtlasA * uAtlasA))) * ${BRICK}.0;
    vec3 tc = (org + (ic - vec3(b * ${BLOCK})) + 0.5) / uAtlasSize;
    vec4 tex[NT];
    tex[0] = texture(uAtlas[0], tc);
    fetches += 1.0;
    kept += 1.0;
    float tau = softplus(tex[0].x + uShift) * uStepRatio;
    float alpha = 1.0 - exp(-tau);
    float w = T * alpha;
    T *= exp(-tau);
    if (w > ${WEIGHT_THRESHOLD.toExponential()}) {
${Array.from({ length: NT - 1 }, (_, j) => `      tex[${j + 1}] = texture(uAtlas[${j + 1}], tc);\n`).join("")}      fetches += ${NT - 1}.0;
#if DEFERRED
      for (int j = 0; j < NT; j++) facc[j] += w * tex[j];
      wsum += w;
      rgb += w / (1.0 + exp(-tex[0].yzw));  // diffuse: feature channels 0..2 (texel 0 is density, f0, f1, f2)
#else
      fillInput(a, tex);
      rgb += w * mlp(a);
      shaded += 1.0;
#endif
    }
    if (T < ${T_STOP.toExponential()}) break;
  }
#if DEFERRED
  // Deferred shading (field/render.py): D = Σ w·sigmoid(f[0:3]), F = Σ w·f and W = Σ w over the
  // shaded samples; rgb = D + W·(2·MLP(F / W, PE(d)) − 1) + T·bg, the MLP only when W > threshold.
  if (wsum > ${WEIGHT_THRESHOLD.toExponential()}) {
    for (int j = 0; j < NT; j++) facc[j] /= wsum;
    fillInput(a, facc);
    rgb += wsum * (2.0 * mlp(a) - 1.0);
    shaded += 1.0;
  }
#endif
  rgb += T * uBg;
#if COUNT
  outColor = vec4(marched, kept, shaded, fetches + shaded * float(${mlpFetches(layers)}));
#else
  outColor = vec4(clamp(rgb, 0.0, 1.0), 1.0);
#endif
}`;
}

/**
 * GLSL that writes the view-direction encoding into the input vector ``a`` (after C features).
 * @param {number} C
 * @param {number} PE
 */
function encodeDirectionsGlsl(C, PE) {
  let s = "";
  const put = (/** @type {number} */ i, /** @type {string} */ expr) => {
    s += `a[${i >> 2}][${i & 3}] = ${expr};\n  `;
  };
  for (let i = 0; i < 3; i++) put(C + i, `d[${i}]`);
  // torch: x = (dirs[..., None] * 2^k).flatten(-2) → component-major; then sin(x), cos(x).
  for (let i = 0; i < 3; i++) {
    for (let k = 0; k < PE; k++) {
      put(C + 3 + i * PE + k, `sin(d[${i}] * ${(2 ** k).toFixed(1)})`);
      put(C + 3 + 3 * PE + i * PE + k, `cos(d[${i}] * ${(2 ** k).toFixed(1)})`);
    }
  }
  return s;
}

/**
 * Texel fetches of one MLP evaluation.
 * @param {{in: number, out: number}[]} layers
 */
function mlpFetches(layers) {
  return layers.reduce((n, l) => n + l.out * (Math.ceil(l.in / 4) + 1), 0);
}

/**
 * @typedef {object} FrameSlot one set of frame textures
 * @property {Record<string, WebGLTexture>} tex occ, blockOcc, brickOf, atlas0..
 * @property {number} atlasA bricks per atlas row
 * @property {number} atlasDepth allocated atlas depth (texels)
 * @property {number[]} atlasSize
 * @property {number} numBricks
 * @property {number} bytes GPU bytes of this slot
 * @property {number | null} key the frame it holds
 * @property {boolean} ready holds a frame
 */

export class Renderer {
  /**
   * @param {HTMLCanvasElement | OffscreenCanvas} canvas
   */
  constructor(canvas) {
    this.canvas = canvas;
    const gl = /** @type {WebGL2RenderingContext | null} */ (
      canvas.getContext("webgl2", { alpha: false, antialias: false, depth: false, preserveDrawingBuffer: true })
    );
    if (!gl) throw new RenderUnsupportedError("this browser has no WebGL2, which the rerf player needs");
    this.gl = gl;
    this.floatTargets = !!gl.getExtension("EXT_color_buffer_float");
    this.timer = gl.getExtension("EXT_disjoint_timer_query_webgl2");
    /** @type {StreamInfo | null} */
    this.stream = null;
    /** @type {Record<string, WebGLProgram>} */
    this.programs = {};
    /** @type {Record<string, WebGLTexture>} textures shared by both frame slots (the MLP) */
    this.tex = {};
    /** @type {FrameSlot[]} two sets of frame textures: one drawn from, one uploaded into */
    this.slots = [];
    this.front = 0;
    this.gpuBytes = { grids: 0, mlp: 0 };
    this.hasFrame = false;
    this.vao = gl.createVertexArray();
  }

  /**
   * Compile for a stream and upload its MLP.
   * @param {StreamInfo} stream
   */
  setStream(stream) {
    const gl = this.gl;
    this.dispose(false);
    this.stream = stream;
    const deferred = stream.render.shading === "deferred";
    if (deferred && stream.channels < 3) {
      throw new Error(`deferred shading needs >= 3 feature channels (a diffuse colour), the stream has ${stream.channels}`);
    }
    this.programs.color = this.compile(fragmentSource(stream, { deferred, count: false }));
    if (this.floatTargets) this.programs.count = this.compile(fragmentSource(stream, { deferred, count: true }));
    // MLP weights: one row per output neuron, inputs packed by 4, the bias in column BIAS.
    const layers = stream.mlp.layers;
    const cols = Math.max(...layers.map((l) => Math.ceil(l.in / 4))) + 1;
    const rows = layers.reduce((n, l) => n + l.out, 0);
    const data = new Float32Array(cols * rows * 4);
    let r0 = 0;
    for (const l of layers) {
      for (let o = 0; o < l.out; o++) {
        const base = (r0 + o) * cols * 4;
        for (let i = 0; i < l.in; i++) data[base + i] = l.weight[o * l.in + i];
        data[base + (cols - 1) * 4] = l.bias[o];
      }
      r0 += l.out;
    }
    this.tex.mlp = this.texture2D(gl.RGBA32F, cols, rows, gl.RGBA, gl.FLOAT, data);
    this.gpuBytes.mlp = data.byteLength;
    const [X, Y, Z] = stream.shape;
    const B = [X, Y, Z].map((v) => Math.ceil(v / BLOCK));
    this.blocks = B;
    this.slots = [0, 1].map(() => ({
      tex: {
        occ: this.texture3D(gl.R8UI, Z, Y, X, gl.NEAREST),
        blockOcc: this.texture3D(gl.R8UI, B[2], B[1], B[0], gl.NEAREST),
        brickOf: this.texture3D(gl.R16UI, B[2], B[1], B[0], gl.NEAREST),
      },
      atlasA: atlasWidth(B[0] * B[1] * B[2]), atlasDepth: 0, atlasSize: [1, 1, 1], numBricks: 0, bytes: 0,
      key: null, ready: false,
    }));
    this.front = 0;
    this.gpuBytes.grids = 0;
    this.hasFrame = false;
  }

  /**
   * Upload one prepared frame (see bricks.js prepareFrame) and show it: into the textures not
   * being drawn from, then swapped in (double buffering: an upload never waits for a draw still
   * reading the textures it would overwrite).
   * @param {import("./bricks.js").PreparedFrame} f
   * @param {number | null} [key] what the frame is (the player's frame number)
   */
  setFrame(f, key = null) {
    this.upload(f, key);
    this.swap();
  }

  /**
   * Upload a frame into the back textures without showing it (the player does this for the next
   * frame while the current one is on screen; ``swap`` then shows it at no cost).
   * @param {import("./bricks.js").PreparedFrame} f
   * @param {number | null} [key]
   */
  upload(f, key = null) {
    const gl = this.gl;
    const s = /** @type {StreamInfo} */ (this.stream);
    const [X, Y, Z] = s.shape;
    const B = /** @type {number[]} */ (this.blocks);
    const slot = this.slots[1 - this.front];
    const t = slot.tex;
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    gl.bindTexture(gl.TEXTURE_3D, t.occ);
    gl.texSubImage3D(gl.TEXTURE_3D, 0, 0, 0, 0, Z, Y, X, gl.RED_INTEGER, gl.UNSIGNED_BYTE, f.occupancy);
    gl.bindTexture(gl.TEXTURE_3D, t.blockOcc);
    gl.texSubImage3D(gl.TEXTURE_3D, 0, 0, 0, 0, B[2], B[1], B[0], gl.RED_INTEGER, gl.UNSIGNED_BYTE, f.blockOccupied);
    gl.bindTexture(gl.TEXTURE_3D, t.brickOf);
    gl.texSubImage3D(gl.TEXTURE_3D, 0, 0, 0, 0, B[2], B[1], B[0], gl.RED_INTEGER, gl.UNSIGNED_SHORT, f.brickOf);
    const { width: W, height: H, depth: D } = f.atlas;
    if (D > slot.atlasDepth || f.atlas.bricksPerRow !== slot.atlasA) {
      // Grow the atlas (immutable storage: a new texture), with headroom for the next frames.
      const slabs = Math.min(Math.ceil((D / BRICK) * 1.25), Math.floor(256 / BRICK) || 1);
      const depth = Math.max(D, slabs * BRICK);
      for (let j = 0; j < f.brickData.length; j++) {
        if (t[`atlas${j}`]) gl.deleteTexture(t[`atlas${j}`]);
        t[`atlas${j}`] = this.texture3D(gl.RGBA16F, W, H, depth, gl.LINEAR);
      }
      slot.atlasDepth = depth;
      slot.atlasA = f.atlas.bricksPerRow;
    }
    for (let j = 0; j < f.brickData.length; j++) {
      gl.bindTexture(gl.TEXTURE_3D, t[`atlas${j}`]);
      gl.texSubImage3D(gl.TEXTURE_3D, 0, 0, 0, 0, W, H, D, gl.RGBA, gl.HALF_FLOAT, f.brickData[j]);
    }
    slot.atlasSize = [W, H, slot.atlasDepth];
    slot.bytes = X * Y * Z + 3 * B[0] * B[1] * B[2] + W * H * slot.atlasDepth * 8 * f.brickData.length;
    slot.numBricks = f.numBricks;
    slot.key = key;
    slot.ready = true;
    this.gpuBytes.grids = this.slots[0].bytes + this.slots[1].bytes;
  }

  /** Show the frame last uploaded (the back textures become the ones drawn from). */
  swap() {
    this.front = 1 - this.front;
    this.hasFrame = this.slots[this.front].ready;
    this.numBricks = this.slots[this.front].numBricks;
  }

  /** What the back textures hold (``upload``'s key), or null. */
  backKey() {
    const b = this.slots[1 - this.front];
    return b && b.ready ? b.key : null;
  }

  /**
   * Draw one picture; the canvas takes the camera's size.
   * @param {RenderCamera} cam
   * @param {{count?: boolean}} [opts]
   * @returns {{marched: number, kept: number, shaded: number, fetches: number} | null} counted work with opts.count
   */
  render(cam, opts = {}) {
    const gl = this.gl;
    const s = /** @type {StreamInfo} */ (this.stream);
    if (this.canvas.width !== cam.w || this.canvas.height !== cam.h) {
      this.canvas.width = cam.w;
      this.canvas.height = cam.h;
    }
    const count = !!opts.count;
    if (count && !this.programs.count) return null;
    const prog = count ? this.programs.count : this.programs.color;
    /** @type {WebGLFramebuffer | null} */
    let fbo = null;
    /** @type {WebGLTexture | null} */
    let target = null;
    if (count) {
      target = this.texture2D(gl.RGBA32F, cam.w, cam.h, gl.RGBA, gl.FLOAT, null);
      fbo = gl.createFramebuffer();
      gl.bindFramebuffer(gl.FRAMEBUFFER, fbo);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, target, 0);
    }
    gl.viewport(0, 0, cam.w, cam.h);
    if (!this.hasFrame) {
      const bg = s.render.background;
      gl.clearColor(bg[0], bg[1], bg[2], 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      return null;
    }
    gl.useProgram(prog);
    const loc = (/** @type {string} */ n) => gl.getUniformLocation(prog, n);
    const NT = Math.ceil((s.channels + 1) / 4);
    const slot = this.slots[this.front];
    const ft = slot.tex;
    for (let j = 0; j < NT; j++) {
      gl.activeTexture(gl.TEXTURE0 + j);
      gl.bindTexture(gl.TEXTURE_3D, ft[`atlas${j}`]);
      gl.uniform1i(loc(`uAtlas[${j}]`), j);
    }
    const bind = (/** @type {string} */ name, /** @type {WebGLTexture} */ t, /** @type {number} */ unit, /** @type {number} */ kind) => {
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(kind, t);
      gl.uniform1i(loc(name), unit);
    };
    bind("uOcc", ft.occ, NT, gl.TEXTURE_3D);
    bind("uBlockOcc", ft.blockOcc, NT + 1, gl.TEXTURE_3D);
    bind("uBrickOf", ft.brickOf, NT + 2, gl.TEXTURE_3D);
    bind("uMLP", this.tex.mlp, NT + 3, gl.TEXTURE_2D);
    const [X, Y, Z] = s.shape;
    const spacing = [0, 1, 2].map((i) => (s.xyzMax[i] - s.xyzMin[i]) / (s.shape[i] - 1));
    const voxel = Math.cbrt(spacing[0] * spacing[1] * spacing[2]);
    gl.uniform3fv(loc("uLo"), s.xyzMin);
    gl.uniform3fv(loc("uSpacing"), spacing);
    gl.uniform3i(loc("uShape"), X, Y, Z);
    const B = /** @type {number[]} */ (this.blocks);
    gl.uniform3i(loc("uBlocks"), B[0], B[1], B[2]);
    gl.uniform1i(loc("uAtlasA"), slot.atlasA);
    gl.uniform3fv(loc("uAtlasSize"), slot.atlasSize);
    gl.uniform1f(loc("uStep"), s.render.stepRatio * voxel);
    gl.uniform1f(loc("uStepRatio"), s.render.stepRatio);
    gl.uniform1f(loc("uShift"), s.densityShift);
    gl.uniform3fv(loc("uBg"), s.render.background);
    const m = cam.c2w;
    // mat3 uniforms are column-major: columns are c2w's first three columns.
    gl.uniformMatrix3fv(loc("uRot"), false, [m[0], m[4], m[8], m[1], m[5], m[9], m[2], m[6], m[10]]);
    gl.uniform3f(loc("uOrigin"), m[3], m[7], m[11]);
    gl.uniform4f(loc("uIntr"), cam.fx, cam.fy, cam.cx, cam.cy);
    gl.uniform1f(loc("uHeight"), cam.h);
    gl.bindVertexArray(this.vao);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    if (!count) return null;
    const px = new Float32Array(cam.w * cam.h * 4);
    gl.readPixels(0, 0, cam.w, cam.h, gl.RGBA, gl.FLOAT, px);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.deleteFramebuffer(fbo);
    gl.deleteTexture(target);
    const sum = [0, 0, 0, 0];
    for (let i = 0; i < px.length; i += 4) for (let c = 0; c < 4; c++) sum[c] += px[i + c];
    return { marched: sum[0], kept: sum[1], shaded: sum[2], fetches: sum[3] };
  }

  /** Wait until the GPU has finished (for timing). */
  finish() {
    const px = new Uint8Array(4);
    this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, px);
  }

  /** GPU memory held, bytes (textures this renderer allocated; both frame slots). */
  gpuMemory() {
    return this.gpuBytes.grids + this.gpuBytes.mlp;
  }

  /**
   * @param {string} fragment
   * @returns {WebGLProgram}
   */
  compile(fragment) {
    const gl = this.gl;
    const prog = /** @type {WebGLProgram} */ (gl.createProgram());
    for (const [type, src] of /** @type {[number, string][]} */ ([[gl.VERTEX_SHADER, VERTEX], [gl.FRAGMENT_SHADER, fragment]])) {
      const sh = /** @type {WebGLShader} */ (gl.createShader(type));
      gl.shaderSource(sh, src);
      gl.compileShader(sh);
      if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) {
        throw new Error(`shader compile error: ${gl.getShaderInfoLog(sh)}`);
      }
      gl.attachShader(prog, sh);
    }
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(`shader link error: ${gl.getProgramInfoLog(prog)}`);
    return prog;
  }

  /**
   * @param {number} internal
   * @param {number} w
   * @param {number} h
   * @param {number} d
   * @param {number} filter
   */
  texture3D(internal, w, h, d, filter) {
    const gl = this.gl;
    const t = /** @type {WebGLTexture} */ (gl.createTexture());
    gl.bindTexture(gl.TEXTURE_3D, t);
    gl.texStorage3D(gl.TEXTURE_3D, 1, internal, w, h, d);
    gl.texParameteri(gl.TEXTURE_3D, gl.TEXTURE_MIN_FILTER, filter);
    gl.texParameteri(gl.TEXTURE_3D, gl.TEXTURE_MAG_FILTER, filter);
    for (const p of [gl.TEXTURE_WRAP_S, gl.TEXTURE_WRAP_T, gl.TEXTURE_WRAP_R]) gl.texParameteri(gl.TEXTURE_3D, p, gl.CLAMP_TO_EDGE);
    return t;
  }

  /**
   * @param {number} internal
   * @param {number} w
   * @param {number} h
   * @param {number} format
   * @param {number} type
   * @param {ArrayBufferView | null} data
   */
  texture2D(internal, w, h, format, type, data) {
    const gl = this.gl;
    const t = /** @type {WebGLTexture} */ (gl.createTexture());
    gl.bindTexture(gl.TEXTURE_2D, t);
    gl.texStorage2D(gl.TEXTURE_2D, 1, internal, w, h);
    if (data) gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, w, h, format, type, data);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    return t;
  }

  /** Free every GPU resource (``all``: also the programs' context objects). */
  dispose(all = true) {
    const gl = this.gl;
    for (const t of Object.values(this.tex)) gl.deleteTexture(t);
    for (const slot of this.slots) for (const t of Object.values(slot.tex)) gl.deleteTexture(t);
    for (const p of Object.values(this.programs)) gl.deleteProgram(p);
    this.tex = {};
    this.slots = [];
    this.programs = {};
    this.gpuBytes = { grids: 0, mlp: 0 };
    this.hasFrame = false;
    if (all) gl.deleteVertexArray(this.vao);
  }
}
