// Decoded-grid SHA-256 (FORMAT.md §11): SHA-256 over each frame's density then features,
// raw little-endian float32. Node's crypto when available (fast, incremental); otherwise
// an incremental pure-JS SHA-256 (crypto.subtle has no incremental API, and a stream's
// frames do not fit in memory at once).

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

/** Incremental SHA-256 in plain JavaScript (browsers, workers). */
export class Sha256 {
  constructor() {
    this.h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
      0x5be0cd19]);
    this.buf = new Uint8Array(64);
    this.nbuf = 0;
    this.len = 0;
    this.w = new Uint32Array(64);
  }

  /** @param {Uint8Array} data @param {number} p */
  block(data, p) {
    const w = this.w;
    for (let i = 0; i < 16; i++) {
      w[i] = (data[p + 4 * i] << 24) | (data[p + 4 * i + 1] << 16) | (data[p + 4 * i + 2] << 8) | data[p + 4 * i + 3];
    }
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15];
      const b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    const h = this.h;
    let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (k + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }

  /** @param {Uint8Array} data */
  update(data) {
    let p = 0;
    this.len += data.length;
    if (this.nbuf) {
      const take = Math.min(64 - this.nbuf, data.length);
      this.buf.set(data.subarray(0, take), this.nbuf);
      this.nbuf += take;
      p = take;
      if (this.nbuf < 64) return this;
      this.block(this.buf, 0);
      this.nbuf = 0;
    }
    for (; p + 64 <= data.length; p += 64) this.block(data, p);
    this.buf.set(data.subarray(p), 0);
    this.nbuf = data.length - p;
    return this;
  }

  /** @returns {string} */
  hexdigest() {
    const bits = this.len * 8;
    const pad = new Uint8Array(((this.nbuf + 9 + 63) & ~63) - this.nbuf);
    pad[0] = 0x80;
    const dv = new DataView(pad.buffer);
    dv.setUint32(pad.length - 8, Math.floor(bits / 2 ** 32));
    dv.setUint32(pad.length - 4, bits >>> 0);
    this.update(pad);
    return Array.from(this.h, (x) => x.toString(16).padStart(8, '0')).join('');
  }
}

/** @typedef {{update(data: Uint8Array): unknown, hexdigest(): string}} Hasher */

/** @type {((data?: undefined) => Hasher) | null} */
let nodeFactory = null;
try {
  if (typeof process !== 'undefined' && process.versions && process.versions.node) {
    const { createHash } = await import('node:crypto');
    nodeFactory = () => {
      const h = createHash('sha256');
      return { update: (d) => h.update(d), hexdigest: () => h.digest('hex') };
    };
  }
} catch {
  nodeFactory = null;
}

/** A fresh SHA-256 (Node's crypto when running under Node). @returns {Hasher} */
export function createSha256() {
  return nodeFactory ? nodeFactory() : new Sha256();
}

/**
 * Feed one decoded frame into a hash (§11): density bytes, then feature bytes.
 * Float32Array bytes are little-endian on every platform this runs on (checked below).
 * @param {Hasher} h @param {{density: Float32Array, features: Float32Array}} frame
 */
export function updateFrameHash(h, frame) {
  h.update(new Uint8Array(frame.density.buffer, frame.density.byteOffset, frame.density.byteLength));
  h.update(new Uint8Array(frame.features.buffer, frame.features.byteOffset, frame.features.byteLength));
}

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('rerf decoder: big-endian platforms are not supported');
}
