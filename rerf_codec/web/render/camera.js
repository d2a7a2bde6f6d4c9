// Cameras for the player: an orbit camera (three.js OrbitControls conventions, no three.js)
// and the JSON cameras of transforms.json (fl_x, fl_y, cx, cy, w, h, transform_matrix c2w,
// NeRF/OpenGL axes: the camera looks down −z, +y up in the picture).

/** @typedef {import("./renderer.js").RenderCamera} RenderCamera */

/**
 * @typedef {object} JsonCamera a transforms.json camera entry
 * @property {number} fl_x
 * @property {number} fl_y
 * @property {number} cx
 * @property {number} cy
 * @property {number} w
 * @property {number} h
 * @property {number[][]} transform_matrix 4×4 c2w
 * @property {string} [name]
 */

/** @param {number[]} a @param {number[]} b */
const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
/** @param {number[]} a @param {number[]} b */
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
/** @param {number[]} a */
const norm = (a) => {
  const l = Math.hypot(a[0], a[1], a[2]) || 1;
  return [a[0] / l, a[1] / l, a[2] / l];
};

/**
 * Row-major 4×4 camera-to-world of a camera at ``eye`` looking at ``target`` with +y up.
 * @param {number[]} eye
 * @param {number[]} target
 */
export function lookAt(eye, target) {
  const back = norm(sub(eye, target)); // camera +z points away from the target
  let right = cross([0, 1, 0], back);
  if (Math.hypot(...right) < 1e-9) right = [1, 0, 0];
  right = norm(right);
  const up = cross(back, right);
  return [right[0], up[0], back[0], eye[0], right[1], up[1], back[1], eye[1], right[2], up[2], back[2], eye[2], 0, 0, 0, 1];
}

/**
 * A JSON camera as the renderer's camera (checks the fields a page could be fed).
 * @param {JsonCamera} c
 * @returns {RenderCamera}
 */
export function fromJson(c) {
  const m = c.transform_matrix;
  const ok = (/** @type {unknown} */ v) => typeof v === "number" && Number.isFinite(v);
  if (!Array.isArray(m) || m.length !== 4 || !m.every((r) => Array.isArray(r) && r.length === 4 && r.every(ok))) {
    throw new TypeError("camera.transform_matrix must be a 4×4 array of numbers");
  }
  for (const k of /** @type {const} */ (["fl_x", "fl_y", "cx", "cy", "w", "h"])) {
    if (!ok(c[k]) || (k !== "cx" && k !== "cy" && c[k] <= 0)) throw new TypeError(`camera.${k} must be a positive number`);
  }
  if (!Number.isInteger(c.w) || !Number.isInteger(c.h) || c.w > 8192 || c.h > 8192) {
    throw new TypeError("camera.w and camera.h must be integers up to 8192");
  }
  return { w: c.w, h: c.h, fx: c.fl_x, fy: c.fl_y, cx: c.cx, cy: c.cy, c2w: m.flat() };
}

/** The orbit camera: spherical coordinates about a target, as OrbitControls. */
export class OrbitCamera {
  /**
   * @param {[number, number, number]} xyzMin
   * @param {[number, number, number]} xyzMax
   */
  constructor(xyzMin, xyzMax) {
    this.box = { min: xyzMin, max: xyzMax };
    this.fovY = (40 * Math.PI) / 180;
    /** OrbitControls' dampingFactor: the share of a drag applied per 1/60 s (0: at once). */
    this.damping = 0.05;
    /** Motion still to apply (drags and pans: damped): azimuth, polar angle, target offset. */
    this.pending = { theta: 0, phi: 0, pan: [0, 0, 0] };
    /** @type {number[]} */
    this.target = [0, 0, 0];
    this.radius = 1;
    this.theta = 0;
    this.phi = 0;
    this.reset();
  }

  /** Back to the default view: the box centre from 15° above, the whole box in frame. */
  reset() {
    const { min, max } = this.box;
    this.target = [0, 1, 2].map((i) => (min[i] + max[i]) / 2);
    const diag = Math.hypot(max[0] - min[0], max[1] - min[1], max[2] - min[2]);
    this.radius = (diag / 2 / Math.tan(this.fovY / 2)) * 1.05;
    this.theta = 0; // azimuth about +y, 0 = on +z
    this.phi = (75 * Math.PI) / 180; // polar angle from +y
    this.stop();
  }

  /** Drop the motion still to apply (a reset, a fixed camera taking over). */
  stop() {
    this.pending = { theta: 0, phi: 0, pan: [0, 0, 0] };
  }

  /** Whether damped motion is still to apply. */
  get moving() {
    const p = this.pending;
    return Math.abs(p.theta) + Math.abs(p.phi) + Math.abs(p.pan[0]) + Math.abs(p.pan[1]) + Math.abs(p.pan[2]) > 0;
  }

  /**
   * A damped drag (controls): rotates by (dTheta, dPhi) over the next frames, as OrbitControls
   * with enableDamping. Without damping it is ``rotate``.
   * @param {number} dTheta @param {number} dPhi
   */
  rotateDamped(dTheta, dPhi) {
    if (!(this.damping > 0)) return this.rotate(dTheta, dPhi);
    this.pending.theta += dTheta;
    this.pending.phi += dPhi;
  }

  /** A damped pan (controls); arguments as ``pan``. @param {number} dx @param {number} dy @param {number} h */
  panDamped(dx, dy, h) {
    if (!(this.damping > 0)) return this.pan(dx, dy, h);
    const d = this.panOffset(dx, dy, h);
    for (let i = 0; i < 3; i++) this.pending.pan[i] += d[i];
  }

  /**
   * Apply the share of the pending motion due after ``dt`` seconds: 1 - (1 - damping)^(60·dt),
   * OrbitControls' per-frame factor made independent of the frame rate (a slow software GPU
   * glides as far as a 144 Hz screen). Returns whether the view changed.
   * @param {number} dt
   */
  update(dt) {
    if (!this.moving) return false;
    const p = this.pending;
    const k = 1 - Math.pow(1 - this.damping, 60 * Math.max(0, dt));
    const tiny = Math.abs(p.theta) + Math.abs(p.phi) < 1e-5 && Math.hypot(...p.pan) < 1e-6 * this.radius;
    const f = tiny ? 1 : k;
    this.rotate(p.theta * f, p.phi * f);
    for (let i = 0; i < 3; i++) this.target[i] += p.pan[i] * f;
    p.theta -= p.theta * f;
    p.phi -= p.phi * f;
    p.pan = p.pan.map((v) => v - v * f);
    if (tiny) this.stop();
    return true;
  }

  /** @returns {number[]} */
  eye() {
    const s = Math.sin(this.phi);
    return [
      this.target[0] + this.radius * s * Math.sin(this.theta),
      this.target[1] + this.radius * Math.cos(this.phi),
      this.target[2] + this.radius * s * Math.cos(this.theta),
    ];
  }

  /**
   * @param {number} w
   * @param {number} h
   * @returns {RenderCamera}
   */
  camera(w, h) {
    const f = h / 2 / Math.tan(this.fovY / 2);
    return { w, h, fx: f, fy: f, cx: w / 2, cy: h / 2, c2w: lookAt(this.eye(), this.target) };
  }

  /**
   * Take over a fixed camera's pose (so dragging continues from it).
   * @param {RenderCamera} cam
   */
  setFrom(cam) {
    const m = cam.c2w;
    const eye = [m[3], m[7], m[11]];
    const fwd = [-m[2], -m[6], -m[10]];
    const { min, max } = this.box;
    const centre = [0, 1, 2].map((i) => (min[i] + max[i]) / 2);
    const dist = Math.max(1e-6, (centre[0] - eye[0]) * fwd[0] + (centre[1] - eye[1]) * fwd[1] + (centre[2] - eye[2]) * fwd[2]);
    this.target = [eye[0] + fwd[0] * dist, eye[1] + fwd[1] * dist, eye[2] + fwd[2] * dist];
    this.radius = dist;
    const d = sub(eye, this.target);
    this.phi = Math.acos(Math.max(-1, Math.min(1, d[1] / dist)));
    this.theta = Math.atan2(d[0], d[2]);
    this.fovY = 2 * Math.atan(cam.h / 2 / cam.fy);
    this.stop();
  }

  /** @param {number} dTheta @param {number} dPhi */
  rotate(dTheta, dPhi) {
    this.theta -= dTheta;
    this.phi = Math.max(0.01, Math.min(Math.PI - 0.01, this.phi - dPhi));
  }

  /** @param {number} scale > 1 moves away */
  dolly(scale) {
    this.radius = Math.max(1e-3, Math.min(1e4, this.radius * scale));
  }

  /**
   * Move the target in the view plane by a pixel offset of a ``h``-pixel-high view.
   * @param {number} dx @param {number} dy @param {number} h
   */
  pan(dx, dy, h) {
    const d = this.panOffset(dx, dy, h);
    for (let i = 0; i < 3; i++) this.target[i] += d[i];
  }

  /** World offset of the target for a pan by a pixel offset. @param {number} dx @param {number} dy @param {number} h */
  panOffset(dx, dy, h) {
    const m = lookAt(this.eye(), this.target);
    const k = (2 * this.radius * Math.tan(this.fovY / 2)) / h;
    return [0, 1, 2].map((i) => (-dx * m[i * 4] + dy * m[i * 4 + 1]) * k);
  }

  /** Compact state for the URL hash: where the view comes to rest (pending motion included). */
  toState() {
    const p = this.pending;
    const phi = Math.max(0.01, Math.min(Math.PI - 0.01, this.phi - p.phi));
    const target = this.target.map((v, i) => v + p.pan[i]);
    return [...target, this.radius, this.theta - p.theta, phi, this.fovY].map((v) => +v.toFixed(5));
  }

  /** @param {number[]} s */
  fromState(s) {
    if (s.length !== 7 || !s.every(Number.isFinite)) return false;
    this.target = s.slice(0, 3);
    [this.radius, this.theta, this.phi, this.fovY] = s.slice(3);
    this.stop();
    return true;
  }
}

/**
 * Mouse, touch and key controls on ``el`` (OrbitControls: left drag orbits, right or
 * shift/ctrl/meta + left drag pans, wheel dollies; one finger orbits, two pinch + pan;
 * arrows pan, +/- dolly). Orbit and pan are damped (OrbitControls' enableDamping with
 * dampingFactor 0.05: the view glides to rest; the owner calls ``OrbitCamera.update`` per frame). ``onChange`` runs after every change; returns a dispose function.
 * @param {HTMLElement} el
 * @param {() => OrbitCamera} getOrbit
 * @param {() => void} onChange
 */
export function attachControls(el, getOrbit, onChange) {
  /** @type {Map<number, {x: number, y: number}>} */
  const pointers = new Map();
  let mode = "";
  let lastPinch = 0;
  const h = () => el.clientHeight || 1;
  /** @param {PointerEvent} e */
  const down = (e) => {
    el.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    mode = pointers.size >= 2 ? "pinch" : e.button === 2 || e.shiftKey || e.ctrlKey || e.metaKey ? "pan" : "rotate";
    if (mode === "pinch") lastPinch = spread();
    e.preventDefault();
  };
  const spread = () => {
    const p = [...pointers.values()];
    return p.length < 2 ? 0 : Math.hypot(p[0].x - p[1].x, p[0].y - p[1].y);
  };
  const mid = () => {
    const p = [...pointers.values()];
    return { x: (p[0].x + p[1].x) / 2, y: (p[0].y + p[1].y) / 2 };
  };
  /** @param {PointerEvent} e */
  const move = (e) => {
    const prev = pointers.get(e.pointerId);
    if (!prev) return;
    const orbit = getOrbit();
    if (mode === "pinch" && pointers.size >= 2) {
      const m0 = mid();
      pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      const s = spread();
      if (lastPinch > 0 && s > 0) orbit.dolly(lastPinch / s);
      lastPinch = s;
      const m1 = mid();
      orbit.panDamped(m1.x - m0.x, m1.y - m0.y, h());
    } else {
      const dx = e.clientX - prev.x, dy = e.clientY - prev.y;
      pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (mode === "pan") orbit.panDamped(dx, dy, h());
      else orbit.rotateDamped((2 * Math.PI * dx) / h(), (2 * Math.PI * dy) / h());
    }
    onChange();
  };
  /** @param {PointerEvent} e */
  const up = (e) => {
    pointers.delete(e.pointerId);
    mode = pointers.size === 1 ? "rotate" : "";
  };
  /** @param {WheelEvent} e */
  const wheel = (e) => {
    e.preventDefault();
    getOrbit().dolly(Math.pow(0.95, -Math.sign(e.deltaY)));
    onChange();
  };
  /** @param {KeyboardEvent} e */
  const key = (e) => {
    const o = getOrbit();
    const step = 20;
    const keys = /** @type {Record<string, () => void>} */ ({
      ArrowLeft: () => (e.shiftKey ? o.rotateDamped(-0.05, 0) : o.panDamped(step, 0, h())),
      ArrowRight: () => (e.shiftKey ? o.rotateDamped(0.05, 0) : o.panDamped(-step, 0, h())),
      ArrowUp: () => (e.shiftKey ? o.rotateDamped(0, -0.05) : o.panDamped(0, step, h())),
      ArrowDown: () => (e.shiftKey ? o.rotateDamped(0, 0.05) : o.panDamped(0, -step, h())),
      "+": () => o.dolly(0.9),
      "=": () => o.dolly(0.9),
      "-": () => o.dolly(1 / 0.9),
    });
    const f = keys[e.key];
    if (!f) return;
    e.preventDefault();
    f();
    onChange();
  };
  const menu = (/** @type {Event} */ e) => e.preventDefault();
  el.addEventListener("pointerdown", down);
  el.addEventListener("pointermove", move);
  el.addEventListener("pointerup", up);
  el.addEventListener("pointercancel", up);
  el.addEventListener("wheel", wheel, { passive: false });
  el.addEventListener("keydown", key);
  el.addEventListener("contextmenu", menu);
  return () => {
    el.removeEventListener("pointerdown", down);
    el.removeEventListener("pointermove", move);
    el.removeEventListener("pointerup", up);
    el.removeEventListener("pointercancel", up);
    el.removeEventListener("wheel", wheel);
    el.removeEventListener("keydown", key);
    el.removeEventListener("contextmenu", menu);
  };
}
