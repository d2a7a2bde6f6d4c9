// The .rerf container (FORMAT.md §2–§8): file header, sequence header, chunks, GOF payload,
// index and footer. Parsing only, mirroring rerf_codec/bitstream.py field by field with
// FORMAT.md's names; every field is checked as it is read, before anything is allocated
// from it. Knows nothing about entropy coding or reconstruction.

import { RerfFormatError } from './errors.js';
import { zstdDecompress } from './zstd.js';

// §8 Enumerations (never renumbered).
export const VERSION_MAJOR = 1;
export const VERSION_MINOR = 2;
export const CHUNK_GOF = 1;
export const CHUNK_INDEX = 2;
export const FRAME_INTRA = 1;
export const FRAME_RESIDUAL = 2;
/** @type {Record<number, string>} */
export const FRAME_TYPE_NAMES = { [FRAME_INTRA]: 'intra', [FRAME_RESIDUAL]: 'residual' };
/** Frame header flags bit 0 (1.2): a residual frame with a `modes` section (§10.6). */
export const FRAME_FLAG_BLOCK_MODES = 1;
const FRAME_FLAGS_KNOWN = FRAME_FLAG_BLOCK_MODES;
export const BLOCK_MODE_INTER = 0;
export const BLOCK_MODE_SKIP = 1;
export const BLOCK_MODE_INTRA = 2;
/** @type {Record<number, string>} */
export const BLOCK_MODE_NAMES = { [BLOCK_MODE_INTER]: 'inter', [BLOCK_MODE_SKIP]: 'skip', [BLOCK_MODE_INTRA]: 'intra' };
/** Why a GOF starts (1.2, frame header byte 2 of a GOF's first record; 0: not recorded, as 1.0/1.1 writers). */
export const GOF_REASON_UNKNOWN = 0;
export const GOF_REASON_FIRST = 1;
export const GOF_REASON_MAX_LENGTH = 2;
export const GOF_REASON_COST = 3;
export const GOF_REASON_LISTED = 4;
export const GOF_REASON_LATTICE = 5;
export const GOF_REASON_SEGMENT = 6;
/** @type {Record<number, string>} */
export const GOF_REASON_NAMES = {
  [GOF_REASON_UNKNOWN]: 'unknown', [GOF_REASON_FIRST]: 'first', [GOF_REASON_MAX_LENGTH]: 'max-length',
  [GOF_REASON_COST]: 'cost', [GOF_REASON_LISTED]: 'listed', [GOF_REASON_LATTICE]: 'lattice',
  [GOF_REASON_SEGMENT]: 'segment',
};
export const CODER_RANGE = 1;
export const TRANSFORM_DCT8_INT = 1;
export const COEFF_MODE_BANDS = 0;
export const COEFF_MODE_CONTEXT = 1;
export const SIDE_INFO_RAW = 0;
export const SIDE_INFO_ZSTD = 1;
/** dtype id -> [NumPy dtype string, item size] (§8 "Tensor dtype ids"). */
/** @type {Record<number, [string, number]>} */
export const DTYPE_IDS = {
  1: ['<f4', 4], 2: ['<f2', 2], 3: ['<f8', 8], 4: ['<i4', 4], 5: ['<i8', 8], 6: ['|u1', 1], 7: ['|i1', 1],
  8: ['<i2', 2], 9: ['<u2', 2], 10: ['<u4', 4], 11: ['|b1', 1],
};

// §12 Limits.
export const MAX_GRID_DIM = 2048;
export const MAX_VOXELS = 2 ** 31;
export const MAX_CHANNELS = 256;
export const MAX_FRAME_BYTES = 2 ** 31;
export const MAX_FRAMES = 1000000;
export const MAX_HEADER_SIZE = 256 * 2 ** 20;
export const MAX_JSON_SIZE = 16 * 2 ** 20;
export const MAX_TENSOR_BYTES = 256 * 2 ** 20;
export const MAX_CHUNK_SIZE = 2 ** 31;
export const MAX_GOF_FRAMES = 4096;
export const MAX_SIDE_INFO = 64 * 2 ** 20;

export const FILE_HEADER_SIZE = 16;
export const SEQ_CORE_SIZE = 94;
export const CHUNK_HEAD_SIZE = 8;
export const CHUNK_OVERHEAD = 12; // head + CRC: the smallest chunk
export const FOOTER_SIZE = 12;
export const INDEX_ENTRY_SIZE = 16;
/** Sections of a frame record in order; `modes` only with the block_modes flag (§6.3). */
export const SECTION_NAMES = /** @type {const} */ (['mask', 'motion', 'side_info', 'coeff_words', 'mantissa', 'modes']);
/** Byte offset of `gof_reason` inside a frame header. */
export const FRAME_HEAD_REASON = 2;

// --- helpers ------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Int32Array(256 * 8);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, zlib's) of `data`, slicing-by-8. @param {Uint8Array} data @returns {number} */
export function crc32(data) {
  const t = CRC_TABLE;
  let c = -1;
  let i = 0;
  const n = data.length;
  const n8 = n - (n & 7);
  for (; i < n8; i += 8) {
    const a = (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)) ^ c;
    c = t[1792 + (a & 0xff)] ^ t[1536 + ((a >>> 8) & 0xff)] ^ t[1280 + ((a >>> 16) & 0xff)] ^ t[1024 + (a >>> 24)]
      ^ t[768 + data[i + 4]] ^ t[512 + data[i + 5]] ^ t[256 + data[i + 6]] ^ t[data[i + 7]];
  }
  for (; i < n; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** Bounds-checked little-endian reader; errors name the structure being read (bitstream._Buf). */
export class ByteReader {
  /** @param {Uint8Array} data @param {string} what */
  constructor(data, what) {
    this.data = data;
    this.dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.pos = 0;
    this.what = what;
  }

  /** @param {number} n @param {string} field */
  need(n, field) {
    if (n < 0 || this.pos + n > this.data.length) {
      throw new RerfFormatError(`${this.what}: truncated while reading ${field}`);
    }
  }

  /** @param {number} n @param {string} field @returns {Uint8Array} */
  take(n, field) {
    this.need(n, field);
    const out = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** @param {string} field */
  u8(field) { this.need(1, field); return this.dv.getUint8(this.pos++); }
  /** @param {string} field */
  i8(field) { this.need(1, field); return this.dv.getInt8(this.pos++); }
  /** @param {string} field */
  u16(field) { this.need(2, field); const v = this.dv.getUint16(this.pos, true); this.pos += 2; return v; }
  /** @param {string} field */
  u32(field) { this.need(4, field); const v = this.dv.getUint32(this.pos, true); this.pos += 4; return v; }
  /** @param {string} field */
  i32(field) { this.need(4, field); const v = this.dv.getInt32(this.pos, true); this.pos += 4; return v; }
  /** u64 as a Number (exact below 2^53; larger values only need to compare as "too large"). @param {string} field */
  u64(field) {
    this.need(8, field);
    const v = this.dv.getUint32(this.pos, true) + this.dv.getUint32(this.pos + 4, true) * 2 ** 32;
    this.pos += 8;
    return v;
  }
  /** @param {string} field */
  f64(field) { this.need(8, field); const v = this.dv.getFloat64(this.pos, true); this.pos += 8; return v; }

  done() {
    if (this.pos !== this.data.length) {
      throw new RerfFormatError(`${this.what}: ${this.data.length - this.pos} unexpected trailing bytes`);
    }
  }
}

// --- §3 file header and §4 sequence header -------------------------------------------------

/**
 * @typedef {object} Tensor
 * @property {string} dtype NumPy dtype string (§8), e.g. "<f4"
 * @property {number[]} shape
 * @property {Uint8Array} data raw little-endian bytes, C order
 */

/**
 * Everything a decoder needs before the first GOF (FORMAT.md §4; bitstream.SequenceHeader).
 * @typedef {object} SequenceHeader
 * @property {number} version_major
 * @property {number} version_minor
 * @property {number} flags
 * @property {number} num_frames
 * @property {number} first_frame
 * @property {number} fps
 * @property {[number, number, number]} grid_shape (X, Y, Z)
 * @property {number} feature_channels C
 * @property {[number, number, number]} xyz_min
 * @property {[number, number, number]} xyz_max
 * @property {number} density_shift
 * @property {number} motion_block
 * @property {number} coder_id
 * @property {number} transform_id
 * @property {number} coeff_mode
 * @property {number} occupancy_threshold
 * @property {number} gof_size
 * @property {Uint16Array} qmatrix 2×512, group-major
 * @property {Record<string, any>} meta
 * @property {Map<string, Tensor>} tensors
 * @property {number} num_channels 1 + C
 * @property {number} header_size bytes of file header + sequence header (where the first chunk starts)
 */

/**
 * The 16-byte file header (§3). Returns the sequence-header size and CRC.
 * @param {Uint8Array} head at least the first 4 bytes of the stream
 * @returns {{version_major: number, version_minor: number, flags: number, header_size: number, header_crc32: number}}
 */
export function parseFileHeader(head) {
  if (head.length < 4 || head[0] !== 0x52 || head[1] !== 0x45 || head[2] !== 0x52 || head[3] !== 0x46) {
    throw new RerfFormatError('not a .rerf stream (bad magic)');
  }
  if (head.length < FILE_HEADER_SIZE) throw new RerfFormatError('truncated stream: file header incomplete');
  const r = new ByteReader(head.subarray(0, FILE_HEADER_SIZE), 'file header');
  r.take(4, 'magic');
  const major = r.u8('version_major');
  const minor = r.u8('version_minor');
  const flags = r.u16('flags');
  const size = r.u32('header_size');
  const crc = r.u32('header_crc32');
  if (major !== VERSION_MAJOR) {
    throw new RerfFormatError(`unsupported .rerf version ${major}.${minor} (this decoder reads ${VERSION_MAJOR}.x)`);
  }
  if (flags & ~1) throw new RerfFormatError(`file header: unknown flags 0x${flags.toString(16).padStart(4, '0')}`);
  if (size > MAX_HEADER_SIZE) {
    throw new RerfFormatError(`file header: header_size ${size} exceeds the limit ${MAX_HEADER_SIZE}`);
  }
  return { version_major: major, version_minor: minor, flags, header_size: size, header_crc32: crc };
}

/**
 * Parse and check the sequence header body (§4) given the parsed file header.
 * @param {ReturnType<typeof parseFileHeader>} fh
 * @param {Uint8Array} body exactly header_size bytes
 * @returns {SequenceHeader}
 */
export function parseSequenceHeader(fh, body) {
  if (crc32(body) !== fh.header_crc32) throw new RerfFormatError('sequence header: CRC32 mismatch (corrupt header)');
  const b = new ByteReader(body, 'sequence header');
  b.need(SEQ_CORE_SIZE, 'core fields');
  const num_frames = b.u32('num_frames');
  const first_frame = b.u32('first_frame');
  const fps = b.f64('fps');
  const gx = b.u16('grid_x');
  const gy = b.u16('grid_y');
  const gz = b.u16('grid_z');
  const C = b.u16('feature_channels');
  const xyz_min = /** @type {[number, number, number]} */ ([b.f64('x'), b.f64('y'), b.f64('z')]);
  const xyz_max = /** @type {[number, number, number]} */ ([b.f64('x'), b.f64('y'), b.f64('z')]);
  const density_shift = b.f64('density_shift');
  const motion_block = b.u8('motion_block');
  const coder_id = b.u8('coder_id');
  const transform_id = b.u8('transform_id');
  const coeff_mode = b.u8('coeff_mode');
  const occupancy_threshold = b.f64('occupancy_threshold');
  const gof_size = b.u16('gof_size');
  const H = 'sequence header';
  if (!(num_frames >= 1 && num_frames <= MAX_FRAMES)) {
    throw new RerfFormatError(`${H}: num_frames ${num_frames} outside 1..${MAX_FRAMES}`);
  }
  if (first_frame > MAX_FRAMES) throw new RerfFormatError(`${H}: first_frame ${first_frame} exceeds ${MAX_FRAMES}`);
  if (!(Number.isFinite(fps) && fps > 0)) throw new RerfFormatError(`${H}: fps ${fps} is not a positive number`);
  const voxels = gx * gy * gz;
  if (Math.min(gx, gy, gz) < 1 || Math.max(gx, gy, gz) > MAX_GRID_DIM || voxels > MAX_VOXELS) {
    throw new RerfFormatError(`${H}: grid_shape (${gx}, ${gy}, ${gz}) outside the limits (1..${MAX_GRID_DIM} per axis)`);
  }
  if (!(C >= 1 && C <= MAX_CHANNELS)) throw new RerfFormatError(`${H}: feature_channels ${C} outside 1..${MAX_CHANNELS}`);
  if (voxels * (1 + C) * 4 > MAX_FRAME_BYTES) {
    throw new RerfFormatError(`${H}: a ${gx}x${gy}x${gz}x${1 + C} frame exceeds the 2 GiB decode limit`);
  }
  if (![...xyz_min, ...xyz_max].every(Number.isFinite)) throw new RerfFormatError(`${H}: xyz_min/xyz_max is not finite`);
  if (!Number.isFinite(density_shift) || !Number.isFinite(occupancy_threshold)) {
    throw new RerfFormatError(`${H}: density_shift/occupancy_threshold is not finite`);
  }
  if (motion_block !== 8) throw new RerfFormatError(`${H}: motion_block ${motion_block} unsupported (must be 8)`);
  if (coder_id !== CODER_RANGE) throw new RerfFormatError(`${H}: unknown coder id ${coder_id}`);
  if (transform_id !== TRANSFORM_DCT8_INT) throw new RerfFormatError(`${H}: unknown transform id ${transform_id}`);
  if (fh.version_minor === 0 && coeff_mode !== COEFF_MODE_BANDS) {
    throw new RerfFormatError(`${H}: reserved byte is not zero (a 1.0 stream has no coefficient mode)`);
  }
  if (coeff_mode !== COEFF_MODE_BANDS && coeff_mode !== COEFF_MODE_CONTEXT) {
    throw new RerfFormatError(`${H}: unknown coefficient coding mode ${coeff_mode}`);
  }
  if (!(gof_size >= 1 && gof_size <= MAX_GOF_FRAMES)) {
    throw new RerfFormatError(`${H}: gof_size ${gof_size} outside 1..${MAX_GOF_FRAMES}`);
  }
  const qraw = b.take(2048, 'qmatrix');
  const qmatrix = new Uint16Array(1024);
  const qdv = new DataView(qraw.buffer, qraw.byteOffset, qraw.byteLength);
  for (let i = 0; i < 1024; i++) {
    qmatrix[i] = qdv.getUint16(2 * i, true);
    if (qmatrix[i] === 0) throw new RerfFormatError(`${H}: qmatrix has a zero entry`);
  }
  const metaRaw = zstdDecompress(b.take(b.u32('meta_size'), 'meta'), MAX_JSON_SIZE, `${H} meta`);
  const meta = parseMeta(metaRaw);
  const tensors = parseTensors(zstdDecompress(b.take(b.u32('tensors_size'), 'tensors'), MAX_TENSOR_BYTES,
    `${H} tensors`));
  b.done();
  if (Boolean(fh.flags & 1) !== tensors.size > 0) {
    throw new RerfFormatError('file header: has-decoder flag disagrees with the tensor table');
  }
  return {
    version_major: fh.version_major, version_minor: fh.version_minor, flags: fh.flags,
    num_frames, first_frame, fps, grid_shape: [gx, gy, gz], feature_channels: C, xyz_min, xyz_max, density_shift,
    motion_block, coder_id, transform_id, coeff_mode, occupancy_threshold, gof_size, qmatrix, meta, tensors,
    num_channels: 1 + C, header_size: FILE_HEADER_SIZE + body.length,
  };
}

/** @param {Uint8Array} raw @returns {Record<string, any>} */
function parseMeta(raw) {
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
  } catch {
    throw new RerfFormatError('sequence header: meta is not valid JSON');
  }
  let meta;
  try {
    meta = JSON.parse(text);
  } catch {
    throw new RerfFormatError('sequence header: meta is not valid JSON');
  }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) {
    throw new RerfFormatError('sequence header: meta is not a JSON object');
  }
  for (const key of ['sequence', 'encoder']) {
    if (key in meta && (meta[key] === null || typeof meta[key] !== 'object' || Array.isArray(meta[key]))) {
      throw new RerfFormatError(`sequence header: meta field '${key}' is not a JSON object`);
    }
  }
  return meta;
}

/** Tensor table (§4.4). @param {Uint8Array} data @returns {Map<string, Tensor>} */
function parseTensors(data) {
  const b = new ByteReader(data, 'tensor table');
  const count = b.u32('count');
  if (count > 4096) throw new RerfFormatError(`tensor table: ${count} tensors exceeds the limit 4096`);
  /** @type {Map<string, Tensor>} */
  const out = new Map();
  const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  for (let i = 0; i < count; i++) {
    const nlen = b.u16(`tensor ${i} name length`);
    let name;
    try {
      name = utf8.decode(b.take(nlen, `tensor ${i} name`));
    } catch (e) {
      if (e instanceof RerfFormatError) throw e;
      throw new RerfFormatError(`tensor table: tensor ${i} name is not UTF-8`);
    }
    const dtypeId = b.u8(`tensor ${name} dtype`);
    const ndim = b.u8(`tensor ${name} dtype`);
    const dt = DTYPE_IDS[dtypeId];
    if (!dt) throw new RerfFormatError(`tensor table: tensor '${name}' has unknown dtype id ${dtypeId}`);
    if (ndim > 8) throw new RerfFormatError(`tensor table: tensor '${name}' has ${ndim} dimensions (max 8)`);
    b.need(4 * ndim, `tensor ${name} shape`);
    const shape = [];
    let nbytes = dt[1];
    for (let k = 0; k < ndim; k++) {
      const s = b.u32('shape');
      shape.push(s);
      nbytes *= s;
    }
    if (nbytes > MAX_TENSOR_BYTES) throw new RerfFormatError(`tensor table: tensor '${name}' is too large`);
    const bytes = b.take(nbytes, `tensor ${name} data`);
    if (out.has(name)) throw new RerfFormatError(`tensor table: duplicate tensor '${name}'`);
    out.set(name, { dtype: dt[0], shape, data: bytes });
  }
  b.done();
  return out;
}

// --- §5 chunks, §6 GOF payload --------------------------------------------------------------

/**
 * @param {Uint8Array} head 8 bytes @param {number} offset file offset (for messages)
 * @returns {{chunk_type: number, payload_size: number}}
 */
export function parseChunkHead(head, offset) {
  if (head.length < CHUNK_HEAD_SIZE) throw new RerfFormatError('truncated stream: expected 8 bytes of chunk header');
  const dv = new DataView(head.buffer, head.byteOffset, CHUNK_HEAD_SIZE);
  const type = dv.getUint8(0);
  const r0 = dv.getUint8(1);
  const r1 = dv.getUint16(2, true);
  const size = dv.getUint32(4, true);
  if ((type !== CHUNK_GOF && type !== CHUNK_INDEX) || r0 || r1) {
    throw new RerfFormatError(`chunk at byte ${offset}: unknown chunk type ${type} (corrupt stream)`);
  }
  if (size > MAX_CHUNK_SIZE) throw new RerfFormatError(`chunk at byte ${offset}: size ${size} exceeds the limit`);
  return { chunk_type: type, payload_size: size };
}

/**
 * @typedef {object} ChannelParams
 * @property {number} exponent e_c
 * @property {number} fill
 * @property {number} qscale
 */

/**
 * One coded frame: its header fields and sections (views into the payload; `modes` is empty
 * unless `flags` has FRAME_FLAG_BLOCK_MODES).
 * @typedef {object} FrameRecord
 * @property {number} frame_type
 * @property {number} flags frame flags (§6.3; 1.2: bit 0 block_modes)
 * @property {number} gof_reason why the GOF starts here (record 0 only; 0 = not recorded)
 * @property {Uint8Array} mask
 * @property {Uint8Array} motion
 * @property {Uint8Array} side_info
 * @property {Uint8Array} coeff_words
 * @property {Uint8Array} mantissa
 * @property {Uint8Array} modes block modes section (§10.6)
 */

/**
 * @typedef {object} GofChunk
 * @property {number} first_frame
 * @property {number} num_frames
 * @property {number} quality_density
 * @property {number} quality_features
 * @property {ChannelParams[]} channels
 * @property {FrameRecord[]} frames
 */

/**
 * Parse a GOF payload (§6), checking every field against the sequence header.
 * @param {Uint8Array} payload @param {SequenceHeader} header @returns {GofChunk}
 */
export function parseGofPayload(payload, header) {
  const b = new ByteReader(payload, 'GOF chunk');
  b.need(8, 'GOF header');
  const first = b.u32('first_frame');
  const n = b.u16('num_frames');
  const qd = b.u8('quality_density');
  const qf = b.u8('quality_features');
  const last = header.first_frame + header.num_frames;
  if (!(n >= 1 && n <= MAX_GOF_FRAMES)) throw new RerfFormatError(`GOF chunk: num_frames ${n} outside 1..${MAX_GOF_FRAMES}`);
  if (first < header.first_frame || first + n > last) {
    throw new RerfFormatError(`GOF chunk: frames ${first}..${first + n - 1} outside the sequence`);
  }
  if (!(qd >= 1 && qd <= 100 && qf >= 1 && qf <= 100)) {
    throw new RerfFormatError(`GOF chunk at frame ${first}: quality ${qd}/${qf} outside 1..100`);
  }
  /** @type {ChannelParams[]} */
  const channels = [];
  for (let c = 0; c < header.num_channels; c++) {
    b.need(12, `channel ${c} parameters`);
    const exponent = b.i8('exponent');
    const pad = b.take(3, 'pad');
    if (pad[0] || pad[1] || pad[2]) {
      throw new RerfFormatError(`GOF chunk at frame ${first}: channel ${c} padding bytes are not zero`);
    }
    const fill = b.i32('fill');
    const qscale = b.u32('qscale');
    if (exponent < -64 || exponent > 64) {
      throw new RerfFormatError(`GOF chunk at frame ${first}: channel ${c} exponent ${exponent} outside -64..64`);
    }
    if (Math.abs(fill) >= 2 ** 24) throw new RerfFormatError(`GOF chunk at frame ${first}: channel ${c} fill ${fill} out of range`);
    if (qscale < 1) throw new RerfFormatError(`GOF chunk at frame ${first}: channel ${c} qscale is zero`);
    channels.push({ exponent, fill, qscale });
  }
  /** @type {FrameRecord[]} */
  const frames = [];
  for (let i = 0; i < n; i++) {
    const idx = first + i;
    b.need(4, `frame ${idx} header`);
    const type = b.u8('frame_type');
    const flags = b.u8('flags');
    const reason = b.u8('gof_reason');
    const reserved = b.u8('reserved');
    if (!(type in FRAME_TYPE_NAMES)) throw new RerfFormatError(`frame ${idx}: unknown frame type ${type}`);
    if (i === 0 && type !== FRAME_INTRA) throw new RerfFormatError(`frame ${first}: a GOF must start with an intra frame`);
    if (reserved || flags & ~FRAME_FLAGS_KNOWN) throw new RerfFormatError(`frame ${idx}: reserved header bits set`);
    if (flags & FRAME_FLAG_BLOCK_MODES && type !== FRAME_RESIDUAL) {
      throw new RerfFormatError(`frame ${idx}: the block_modes flag is set on a frame that is not residual`);
    }
    if (!(reason in GOF_REASON_NAMES) || (reason && i)) throw new RerfFormatError(`frame ${idx}: invalid GOF reason ${reason}`);
    const count = flags & FRAME_FLAG_BLOCK_MODES ? SECTION_NAMES.length : SECTION_NAMES.length - 1;
    /** @type {Uint8Array[]} */
    const s = [];
    for (let k = 0; k < count; k++) {
      const name = SECTION_NAMES[k];
      s.push(b.take(b.u32(`frame ${idx} ${name} size`), `frame ${idx} ${name}`));
    }
    frames.push({
      frame_type: type, flags, gof_reason: reason, mask: s[0], motion: s[1], side_info: s[2], coeff_words: s[3],
      mantissa: s[4], modes: s[5] ?? new Uint8Array(0),
    });
  }
  b.done();
  return { first_frame: first, num_frames: n, quality_density: qd, quality_features: qf, channels, frames };
}

/**
 * The GOF reason of a GOF payload's first frame record, read from the payload's first bytes
 * only (no CRC, no other check: for display before the GOF is read), or null when those bytes
 * do not look like a GOF's keyframe header.
 * @param {Uint8Array} head the payload's first `gofReasonPrefix(header)` bytes or more @param {SequenceHeader} header
 * @returns {number | null}
 */
export function peekGofReason(head, header) {
  const at = 8 + 12 * header.num_channels;
  if (head.length < at + 4 || head[at] !== FRAME_INTRA) return null;
  const reason = head[at + FRAME_HEAD_REASON];
  return reason in GOF_REASON_NAMES ? reason : null;
}

/** Bytes of a GOF payload that hold its first frame header. @param {SequenceHeader} header */
export function gofReasonPrefix(header) {
  return 8 + 12 * header.num_channels + 4;
}

/** First frame and frame count a GOF payload claims, without checking the rest (for seeking). */
/** @param {Uint8Array} payload */
export function peekGofHead(payload) {
  if (payload.length < 8) return null;
  const dv = new DataView(payload.buffer, payload.byteOffset, 8);
  return { first_frame: dv.getUint32(0, true), num_frames: dv.getUint16(4, true) };
}

/** Side-info section (§6.4) -> table bytes. @param {Uint8Array} section @returns {Uint8Array} */
export function decodeSideInfo(section) {
  if (section.length === 0) throw new RerfFormatError('frame record: empty side info section');
  const mode = section[0];
  if (mode === SIDE_INFO_RAW) return section.subarray(1);
  if (mode === SIDE_INFO_ZSTD) return zstdDecompress(section.subarray(1), MAX_SIDE_INFO, 'side info');
  throw new RerfFormatError(`frame record: unknown side info mode ${mode}`);
}

// --- §7 index and footer ----------------------------------------------------------------

/**
 * @typedef {object} IndexEntry
 * @property {number} offset file offset of the GOF chunk
 * @property {number} first_frame
 * @property {number} num_frames
 * @property {string | null} start_reason why the GOF starts (GOF_REASON_NAMES: 'first', 'max-length', 'cost',
 *   'listed', 'lattice', 'segment'; 'unknown' in 1.0/1.1 streams); null until the GOF chunk has been read
 * @property {number | null} start_reason_id the GOF reason id (§8), null until known
 */

/**
 * Parse and check the index payload (§7.1): entries tile the frames and point, in order,
 * between the sequence header and the index chunk itself.
 * @param {Uint8Array} payload @param {SequenceHeader} header @param {number} indexOffset
 * @returns {IndexEntry[]}
 */
export function parseIndex(payload, header, indexOffset) {
  const b = new ByteReader(payload, 'index chunk');
  const n = b.u32('num_gofs');
  if (n > header.num_frames) throw new RerfFormatError(`index chunk: ${n} GOFs for ${header.num_frames} frames`);
  /** @type {IndexEntry[]} */
  const entries = [];
  for (let i = 0; i < n; i++) {
    b.need(INDEX_ENTRY_SIZE, `index entry ${i}`);
    const offset = b.u64('offset');
    const first_frame = b.u32('first_frame');
    const num_frames = b.u16('num_frames');
    b.take(2, 'pad');
    entries.push({ offset, first_frame, num_frames, start_reason: null, start_reason_id: null });
  }
  b.done();
  let expect = header.first_frame;
  let next = header.header_size;
  for (const e of entries) {
    if (e.first_frame !== expect || e.num_frames < 1) {
      throw new RerfFormatError('index chunk: GOF entries do not tile the sequence');
    }
    if (!(next <= e.offset && e.offset <= indexOffset - CHUNK_OVERHEAD)) {
      throw new RerfFormatError(`index chunk: GOF offset ${e.offset} is out of order or outside the file`);
    }
    expect += e.num_frames;
    next = e.offset + CHUNK_OVERHEAD;
  }
  if (expect !== header.first_frame + header.num_frames) {
    throw new RerfFormatError('index chunk: GOF entries do not cover the sequence');
  }
  return entries;
}

/** @param {Uint8Array} footer 12 bytes @returns {{index_offset: number, magic_ok: boolean}} */
export function parseFooter(footer) {
  const dv = new DataView(footer.buffer, footer.byteOffset, FOOTER_SIZE);
  const index_offset = dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
  const magic_ok = footer[8] === 0x52 && footer[9] === 0x49 && footer[10] === 0x44 && footer[11] === 0x58;
  return { index_offset, magic_ok };
}
