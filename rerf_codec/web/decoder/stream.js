// The decoder API: openStream(source) -> RerfStream (header, frames, GOF index) over any
// of the three sources. Reading modes follow FORMAT.md §7.3:
//
// * seeking (ArrayBuffer, HTTP with Range): footer + index first, then the header, then
//   each GOF chunk on demand through the index;
// * streaming (ReadableStream, HTTP without Range, or `mode: 'stream'`): header, then GOF
//   chunk after GOF chunk until the index chunk, which is checked against the chunks read,
//   then the footer — exactly what the Python decoder does on a whole-stream decode.

import { RerfAbortError, RerfFormatError } from './errors.js';
import {
  CHUNK_GOF, CHUNK_HEAD_SIZE, CHUNK_INDEX, CHUNK_OVERHEAD, FILE_HEADER_SIZE, FOOTER_SIZE, GOF_REASON_NAMES, crc32,
  gofReasonPrefix, parseChunkHead, parseFileHeader, parseFooter, parseGofPayload, parseIndex, parseSequenceHeader,
  peekGofHead, peekGofReason,
} from './format.js';
import { decodeGof } from './gof.js';
import { HttpSource, MemorySource, RangeIgnored, SequentialReader, streamChunks } from './sources.js';
import { createSha256, updateFrameHash } from './sha256.js';

/** @typedef {import('./format.js').SequenceHeader} SequenceHeader */
/** @typedef {import('./format.js').IndexEntry} IndexEntry */
/** @typedef {import('./format.js').GofChunk} GofChunk */
/** @typedef {import('./gof.js').DecodedFrame} DecodedFrame */
/** @typedef {import('./gof.js').FrameAllocator} FrameAllocator */
/** @typedef {import('./sources.js').SeekableSource} SeekableSource */

/**
 * @typedef {object} OpenOptions
 * @property {'auto' | 'stream'} [mode] 'stream' reads a seekable source front to back (default 'auto')
 * @property {AbortSignal} [signal] aborts opening
 * @property {import('./sources.js').HttpOptions} [http] timeouts and retries for URLs
 */

/**
 * @typedef {object} FramesOptions
 * @property {number} [start] first frame number (default: the stream's first)
 * @property {number} [end] one past the last frame number (default: the stream's end)
 * @property {AbortSignal} [signal] stops decoding (throws RerfAbortError), e.g. on seek
 * @property {FrameAllocator} [alloc] output arrays per frame (default fresh arrays)
 * @property {(p: {gof: IndexEntry, bytes: number}) => void} [onGof] called when a GOF chunk has been read
 */

/** @param {AbortSignal | undefined} s */
function checkAbort(s) {
  if (s?.aborted) throw new RerfAbortError();
}

/**
 * Read header bytes through `get(offset, n)` (exact or short at the end) and parse them.
 * @param {(offset: number, n: number) => Promise<Uint8Array>} get
 * @returns {Promise<SequenceHeader>}
 */
async function readHeader(get) {
  const head = await get(0, FILE_HEADER_SIZE);
  const fh = parseFileHeader(head);
  const body = await get(FILE_HEADER_SIZE, fh.header_size);
  if (body.length < fh.header_size) {
    throw new RerfFormatError(`truncated stream: expected ${fh.header_size} bytes of sequence header, got ${body.length}`);
  }
  return parseSequenceHeader(fh, body);
}

/**
 * Record on an index entry why its GOF starts (frame header byte 2 of its keyframe, §6.3).
 * @param {IndexEntry} entry @param {number} id
 */
function noteReason(entry, id) {
  entry.start_reason_id = id;
  entry.start_reason = GOF_REASON_NAMES[id];
}

/** An open .rerf stream. Create it with {@link openStream}. */
export class RerfStream {
  /**
   * @param {SequenceHeader} header
   * @param {{seekable: SeekableSource | null, reader: SequentialReader | null, index: IndexEntry[] | null, indexOffset: number}} io
   */
  constructor(header, io) {
    /** The sequence header (FORMAT.md §4 field names). */
    this.header = header;
    /** Number of frames in the stream. */
    this.numFrames = header.num_frames;
    /** Number of the first frame. */
    this.firstFrame = header.first_frame;
    /** GOF index (offset, first_frame, num_frames, start_reason, start_reason_id), or null while
     * streaming without one. The start reason is filled in as each GOF chunk is read (or by
     * {@link RerfStream.readStartReasons}). */
    this.gofs = io.index;
    /** Whether GOFs can be fetched in any order (false: progressive reading only). */
    this.seekable = io.seekable !== null;
    this._source = io.seekable;
    this._reader = io.reader;
    this._indexOffset = io.indexOffset;
    this._consumed = false;
    /** Bytes read from the source so far (header and index included). */
    this.bytesRead = io.seekable ? io.seekable.stats.bytes : (io.reader?.position ?? 0);
  }

  /** Source statistics (HTTP: requests made and byte ranges fetched). */
  get stats() {
    return this._source ? this._source.stats : { requests: 0, bytes: this._reader?.position ?? 0, log: [] };
  }

  /**
   * The frame range [start, end) clipped and checked against the stream.
   * @param {FramesOptions} o @returns {[number, number]}
   */
  _range(o) {
    const first = this.firstFrame;
    const stop = first + this.numFrames;
    const start = o.start ?? first;
    const end = o.end ?? stop;
    if (!(start >= first && end <= stop && start < end)) {
      throw new RangeError(`frame range ${start}:${end} is not inside the stream's frames ${first}:${stop}`);
    }
    return [start, end];
  }

  /**
   * Read and verify the GOF chunk an index entry points to (§7.1, seeking).
   * @param {IndexEntry} entry @param {AbortSignal} [signal] @returns {Promise<GofChunk>}
   */
  async readGof(entry, signal) {
    const src = /** @type {SeekableSource} */ (this._source);
    const index = /** @type {IndexEntry[]} */ (this.gofs);
    const k = index.indexOf(entry);
    const guess = (k + 1 < index.length ? index[k + 1].offset : this._indexOffset) - entry.offset;
    let bytes = await src.readAt(entry.offset, guess, signal);
    const head = parseChunkHead(bytes.subarray(0, CHUNK_HEAD_SIZE), entry.offset);
    const want = head.payload_size + CHUNK_OVERHEAD;
    if (bytes.length !== want) {
      if (entry.offset + want > src.size) throw new RerfFormatError(`truncated stream: GOF chunk at byte ${entry.offset}`);
      bytes = await src.readAt(entry.offset, want, signal);
    }
    if (head.chunk_type !== CHUNK_GOF) throw new RerfFormatError(`index points at byte ${entry.offset}, which is not a GOF chunk`);
    const payload = bytes.subarray(CHUNK_HEAD_SIZE, CHUNK_HEAD_SIZE + head.payload_size);
    const crc = new DataView(bytes.buffer, bytes.byteOffset + want - 4, 4).getUint32(0, true);
    if (crc32(payload) !== crc) throw new RerfFormatError(`CRC32 mismatch in chunk at byte ${entry.offset}`);
    const gof = parseGofPayload(payload, this.header);
    if (gof.first_frame !== entry.first_frame || gof.num_frames !== entry.num_frames) {
      throw new RerfFormatError(`GOF at byte ${entry.offset} disagrees with the index`);
    }
    noteReason(entry, gof.frames[0].gof_reason);
    return gof;
  }

  /**
   * Fill in `start_reason` of every index entry not read yet, from the first bytes of its GOF
   * chunk (one small read each; not CRC-checked — decoding the GOF checks it and sets it again).
   * Entries whose bytes do not look like a GOF keyframe header stay null. A progressive stream
   * has no index to fill before it is read: its entries get their reasons as GOFs arrive.
   * @param {AbortSignal} [signal] @returns {Promise<IndexEntry[] | null>} the index
   */
  async readStartReasons(signal) {
    const src = this._source;
    if (!src || !this.gofs) return this.gofs;
    const n = CHUNK_HEAD_SIZE + gofReasonPrefix(this.header);
    for (const e of this.gofs) {
      if (e.start_reason_id !== null) continue;
      checkAbort(signal);
      const bytes = await src.readAt(e.offset, n, signal);
      if (bytes.length < n) continue;
      if (bytes[0] !== CHUNK_GOF) continue;
      const payload = bytes.subarray(CHUNK_HEAD_SIZE);
      const claim = peekGofHead(payload);
      if (!claim || claim.first_frame !== e.first_frame) continue;
      const id = peekGofReason(payload, this.header);
      if (id !== null && e.start_reason_id === null) noteReason(e, id);
    }
    return this.gofs;
  }

  /**
   * GOF chunks in order from a sequential reader, with the streaming checks of §7.3; the
   * index and footer are checked when reached.
   * @param {AbortSignal} [signal]
   * @returns {AsyncGenerator<{gof: GofChunk, entry: IndexEntry}>}
   */
  async *_streamGofs(signal) {
    const rd = /** @type {SequentialReader} */ (this._reader);
    if (this._consumed) throw new Error('a progressive stream can be read once; open it again');
    this._consumed = true;
    const h = this.header;
    const end = h.first_frame + h.num_frames;
    let expect = h.first_frame;
    /** @type {IndexEntry[]} */
    const seen = [];
    /** @param {number} n @param {string} what */
    const exact = async (n, what) => {
      const b = await rd.read(n);
      if (b.length < n) throw new RerfFormatError(`truncated stream: expected ${n} bytes of ${what}, got ${b.length}`);
      return b;
    };
    for (;;) {
      checkAbort(signal);
      const offset = rd.position;
      const head = parseChunkHead(await exact(CHUNK_HEAD_SIZE, 'chunk header'), offset);
      const payload = await exact(head.payload_size, 'chunk payload');
      const crcBytes = await exact(4, 'chunk CRC32');
      const crcOk = crc32(payload) === new DataView(crcBytes.buffer, crcBytes.byteOffset, 4).getUint32(0, true);
      if (head.chunk_type === CHUNK_INDEX) {
        if (!crcOk) throw new RerfFormatError(`index chunk: CRC32 mismatch in chunk at byte ${offset}`);
        const entries = parseIndex(payload, h, offset);
        for (const s of seen) {
          if (!entries.some((e) => e.offset === s.offset && e.first_frame === s.first_frame && e.num_frames === s.num_frames)) {
            throw new RerfFormatError('index chunk: entries disagree with the GOF chunks read');
          }
        }
        if (expect !== end) throw new RerfFormatError(`stream ends at frame ${expect}, header promised ${end}`);
        const footer = parseFooter(await exact(FOOTER_SIZE, 'footer'));
        if (!footer.magic_ok || footer.index_offset !== offset) throw new RerfFormatError('footer: bad magic or index offset');
        for (const e of entries) {
          const s = seen.find((x) => x.offset === e.offset);
          if (s && s.start_reason_id !== null) noteReason(e, s.start_reason_id);
        }
        this.gofs = entries;
        return;
      }
      if (!crcOk) throw new RerfFormatError(`CRC32 mismatch in chunk at byte ${offset}`);
      const gof = parseGofPayload(payload, h);
      if (gof.first_frame !== expect) {
        throw new RerfFormatError(`GOF chunk at byte ${offset} starts at frame ${gof.first_frame}, expected ${expect}`);
      }
      expect = gof.first_frame + gof.num_frames;
      /** @type {IndexEntry} */
      const entry = { offset, first_frame: gof.first_frame, num_frames: gof.num_frames, start_reason: null, start_reason_id: null };
      noteReason(entry, gof.frames[0].gof_reason);
      seen.push(entry);
      yield { gof, entry };
    }
  }

  /**
   * Decode frames [start, end) in order, GOF by GOF. Seekable sources fetch only the GOFs
   * holding the range; progressive ones read from the start (GOFs before the range are
   * parsed, not decoded). A range that runs to the end of a progressive stream also checks
   * the index and the footer.
   * @param {FramesOptions} [o] @returns {AsyncGenerator<DecodedFrame>}
   */
  async *frames(o = {}) {
    const [start, end] = this._range(o);
    const signal = o.signal;
    const scratch = {};
    if (this._source && this.gofs) {
      for (const entry of this.gofs) {
        if (entry.first_frame + entry.num_frames <= start) continue;
        if (entry.first_frame >= end) break;
        checkAbort(signal);
        const gof = await this.readGof(entry, signal);
        o.onGof?.({ gof: entry, bytes: this._source.stats.bytes });
        for (const f of decodeGof(gof, this.header, { alloc: o.alloc, scratch })) {
          if (f.index >= end) break;
          if (f.index >= start) {
            checkAbort(signal);
            yield f;
          }
        }
      }
      return;
    }
    const stop = this.firstFrame + this.numFrames;
    for await (const { gof, entry } of this._streamGofs(signal)) {
      o.onGof?.({ gof: entry, bytes: this._reader?.position ?? 0 });
      if (entry.first_frame + entry.num_frames <= start) continue;
      for (const f of decodeGof(gof, this.header, { alloc: o.alloc, scratch })) {
        if (f.index >= end) break;
        if (f.index >= start) {
          checkAbort(signal);
          yield f;
        }
      }
      if (entry.first_frame + entry.num_frames >= end && end < stop) {
        this._reader?.cancel();
        return;
      }
    }
  }

  /**
   * Decoded-grid SHA-256 (FORMAT.md §11) of frames [start, end), with timing.
   * @param {FramesOptions} [o] @returns {Promise<{sha256: string, frames: number, decodeSeconds: number}>}
   */
  async sha256(o = {}) {
    const h = createSha256();
    let n = 0;
    let decode = 0;
    let t = performance.now();
    for await (const f of this.frames(o)) {
      decode += performance.now() - t;
      updateFrameHash(h, f);
      n++;
      t = performance.now();
    }
    return { sha256: h.hexdigest(), frames: n, decodeSeconds: decode / 1000 };
  }

  /** Stop reading (cancels a progressive source). */
  close() {
    this._reader?.cancel();
  }
}

/**
 * Open a .rerf stream.
 *
 * @param {ArrayBuffer | Uint8Array | string | URL | ReadableStream<Uint8Array> | SeekableSource} source
 *   the bytes, a URL (read with HTTP Range requests), a ReadableStream (read progressively)
 *   or any object with `size`, `readAt(offset, length)` and `stats`
 * @param {OpenOptions} [opts]
 * @returns {Promise<RerfStream>}
 */
export async function openStream(source, opts = {}) {
  const mode = opts.mode ?? 'auto';
  if (typeof source === 'string' || source instanceof URL) {
    const http = new HttpSource(String(source), opts.http);
    try {
      return await openSeekable(http, opts.signal);
    } catch (e) {
      if (!(e instanceof RangeIgnored)) throw e;
      // The server ignores Range: its 200 body is the whole file, read GOF by GOF.
      const body = e.response.body;
      if (!body) throw new RerfFormatError('empty response body');
      const { chunks, cancel } = streamChunks(body);
      return openSequential(new SequentialReader(chunks, cancel));
    }
  }
  if (typeof ReadableStream !== 'undefined' && source instanceof ReadableStream) {
    const { chunks, cancel } = streamChunks(source);
    return openSequential(new SequentialReader(chunks, cancel));
  }
  /** @type {SeekableSource} */
  const seekable = source instanceof ArrayBuffer || source instanceof Uint8Array ? new MemorySource(source)
    : /** @type {SeekableSource} */ (source);
  if (mode === 'stream') {
    if (!(seekable instanceof MemorySource)) throw new TypeError("mode 'stream' needs bytes or a ReadableStream");
    return openSequential(seekable.reader());
  }
  return openSeekable(seekable, opts.signal);
}

/** @param {SequentialReader} rd */
async function openSequential(rd) {
  const header = await readHeader(async (_off, n) => rd.read(n));
  return new RerfStream(header, { seekable: null, reader: rd, index: null, indexOffset: -1 });
}

/**
 * Seeking open (§7.3): footer, index chunk, then the header.
 * @param {SeekableSource | HttpSource} src @param {AbortSignal} [signal]
 */
async function openSeekable(src, signal) {
  let footerBytes;
  if (src instanceof HttpSource) footerBytes = (await src.readTail(FOOTER_SIZE, signal)).bytes;
  else footerBytes = src.size >= FOOTER_SIZE ? await src.readAt(src.size - FOOTER_SIZE, FOOTER_SIZE, signal) : new Uint8Array(0);
  const size = src.size;
  if (footerBytes.length < FOOTER_SIZE) throw new RerfFormatError('truncated stream: no room for the footer');
  const footer = parseFooter(footerBytes);
  if (!footer.magic_ok || !(FILE_HEADER_SIZE <= footer.index_offset && footer.index_offset < size - FOOTER_SIZE)) {
    throw new RerfFormatError('footer: bad magic or index offset (truncated or corrupt stream)');
  }
  const chunk = await src.readAt(footer.index_offset, size - FOOTER_SIZE - footer.index_offset, signal);
  const header = await readHeader((off, n) => src.readAt(off, n, signal));
  if (size < header.header_size + FOOTER_SIZE || footer.index_offset < header.header_size) {
    throw new RerfFormatError('footer: bad magic or index offset (truncated or corrupt stream)');
  }
  const head = parseChunkHead(chunk.subarray(0, CHUNK_HEAD_SIZE), footer.index_offset);
  if (head.chunk_type !== CHUNK_INDEX) throw new RerfFormatError('index chunk: not an index chunk');
  if (head.payload_size + CHUNK_OVERHEAD !== chunk.length) throw new RerfFormatError('footer: trailing bytes after the index chunk');
  const payload = chunk.subarray(CHUNK_HEAD_SIZE, CHUNK_HEAD_SIZE + head.payload_size);
  const crc = new DataView(chunk.buffer, chunk.byteOffset + chunk.length - 4, 4).getUint32(0, true);
  if (crc32(payload) !== crc) throw new RerfFormatError(`index chunk: CRC32 mismatch in chunk at byte ${footer.index_offset}`);
  const index = parseIndex(payload, header, footer.index_offset);
  return new RerfStream(header, { seekable: src, reader: null, index, indexOffset: footer.index_offset });
}
