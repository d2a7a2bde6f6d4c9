// Byte sources: memory (ArrayBuffer), HTTP with Range requests, and progressive streams.
//
// A *seekable* source reads any byte range (`readAt`); a *sequential* reader hands out the
// bytes of a stream in order (`read(n)`). HTTP follows hls.js's loader rules: require 206
// with a matching Content-Range, time out every request, retry network errors, timeouts and
// 5xx a few times with capped backoff, never retry a 4xx, and stop at once on abort.

import { RerfAbortError, RerfSourceError } from './errors.js';

/**
 * @typedef {object} SeekableSource
 * @property {number} size total bytes
 * @property {(offset: number, length: number, signal?: AbortSignal) => Promise<Uint8Array>} readAt
 * @property {{requests: number, bytes: number, log: Array<[number, number]>}} stats bytes fetched
 */

/** A whole stream in memory. */
export class MemorySource {
  /** @param {ArrayBuffer | Uint8Array} data */
  constructor(data) {
    this.data = data instanceof Uint8Array ? data : new Uint8Array(data);
    this.size = this.data.length;
    /** @type {{requests: number, bytes: number, log: Array<[number, number]>}} */
    this.stats = { requests: 0, bytes: 0, log: [] };
  }

  /** @param {number} offset @param {number} length @returns {Promise<Uint8Array>} */
  async readAt(offset, length) {
    const end = Math.min(this.size, offset + length);
    return this.data.subarray(Math.min(offset, end), end);
  }

  /** A sequential reader over the same bytes. */
  reader() {
    return new SequentialReader((async function* gen(d) { yield d; })(this.data));
  }
}

/** Reads exact byte counts from an async iterable of chunks (a ReadableStream, a response body). */
export class SequentialReader {
  /** @param {AsyncIterator<Uint8Array> | AsyncIterable<Uint8Array>} chunks @param {() => void} [cancel] */
  constructor(chunks, cancel) {
    /** @type {AsyncIterator<Uint8Array>} */
    this.it = Symbol.asyncIterator in chunks
      ? /** @type {AsyncIterable<Uint8Array>} */ (chunks)[Symbol.asyncIterator]()
      : /** @type {AsyncIterator<Uint8Array>} */ (chunks);
    /** @type {Uint8Array[]} */
    this.pending = [];
    this.have = 0;
    this.done = false;
    this.position = 0;
    this.cancelFn = cancel;
  }

  /** Up to n bytes (fewer only at the end of the stream). @param {number} n @returns {Promise<Uint8Array>} */
  async read(n) {
    while (this.have < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else if (r.value.length) {
        this.pending.push(r.value instanceof Uint8Array ? r.value : new Uint8Array(r.value));
        this.have += r.value.length;
      }
    }
    const take = Math.min(n, this.have);
    let out;
    const first = this.pending[0];
    if (first && first.length >= take) {
      out = first.subarray(0, take);
      if (first.length === take) this.pending.shift();
      else this.pending[0] = first.subarray(take);
    } else {
      out = new Uint8Array(take);
      let o = 0;
      while (o < take) {
        const c = /** @type {Uint8Array} */ (this.pending[0]);
        const k = Math.min(c.length, take - o);
        out.set(c.subarray(0, k), o);
        o += k;
        if (k === c.length) this.pending.shift();
        else this.pending[0] = c.subarray(k);
      }
    }
    this.have -= take;
    this.position += take;
    return out;
  }

  cancel() {
    this.done = true;
    this.pending = [];
    if (this.cancelFn) this.cancelFn();
    else if (this.it.return) this.it.return(undefined).catch(() => {});
  }
}

/**
 * Chunks of a WHATWG ReadableStream as an async iterator (Node 20 streams are async-iterable
 * already; browsers' may not be).
 * @param {ReadableStream<Uint8Array>} stream
 * @returns {{chunks: AsyncIterator<Uint8Array>, cancel: () => void}}
 */
export function streamChunks(stream) {
  const reader = stream.getReader();
  return {
    chunks: {
      async next() {
        const r = await reader.read();
        return r.done ? { done: true, value: undefined } : { done: false, value: r.value };
      },
    },
    cancel: () => { reader.cancel().catch(() => {}); },
  };
}

/**
 * @typedef {object} HttpOptions
 * @property {number} [timeoutMs] per request (default 10000)
 * @property {number} [retries] extra attempts after a retryable failure (default 3)
 * @property {number} [backoffMs] first retry delay, doubled each time, capped at 8× (default 200)
 * @property {typeof fetch} [fetch] fetch implementation (default globalThis.fetch)
 */

/** @param {number} ms @param {AbortSignal | undefined} signal */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); reject(new RerfAbortError()); }, { once: true });
  });
}

/** Thrown internally when a server answers 200 to a Range request: the body is the whole file. */
export class RangeIgnored extends Error {
  /** @param {Response} response */
  constructor(response) {
    super('server ignores Range');
    this.response = response;
  }
}

/** A URL read with HTTP Range requests. */
export class HttpSource {
  /** @param {string} url @param {HttpOptions} [opts] */
  constructor(url, opts = {}) {
    this.url = url;
    this.timeoutMs = opts.timeoutMs ?? 10000;
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 200;
    this.fetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.size = -1;
    /** @type {{requests: number, bytes: number, log: Array<[number, number]>}} */
    this.stats = { requests: 0, bytes: 0, log: [] };
  }

  /**
   * One Range request with retries. `range` is the header value's range part.
   * @param {string} range e.g. "0-15" or "-12" @param {AbortSignal | undefined} signal
   * @returns {Promise<{bytes: Uint8Array, start: number, total: number}>}
   */
  async request(range, signal) {
    let attempt = 0;
    for (;;) {
      if (signal?.aborted) throw new RerfAbortError();
      const timeoutCtl = new AbortController();
      const timer = setTimeout(() => timeoutCtl.abort(), this.timeoutMs);
      const timeout = timeoutCtl.signal;
      const sig = signal ? AbortSignal.any([signal, timeout]) : timeout;
      try {
        this.stats.requests++;
        const res = await this.fetch(this.url, { headers: { Range: `bytes=${range}` }, signal: sig });
        if (res.status === 200) throw new RangeIgnored(res);
        if (res.status !== 206) {
          res.body?.cancel().catch(() => {});
          const retryable = res.status >= 500;
          throw new RerfSourceError(`${this.url}: HTTP ${res.status} for bytes ${range}`, { status: res.status, retryable });
        }
        const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get('Content-Range') ?? '');
        if (!cr) throw new RerfSourceError(`${this.url}: 206 without a valid Content-Range`);
        const start = Number(cr[1]);
        const end = Number(cr[2]);
        const total = Number(cr[3]);
        const bytes = new Uint8Array(await res.arrayBuffer());
        if (bytes.length !== end - start + 1) throw new RerfSourceError(`${this.url}: body length disagrees with Content-Range`, { retryable: true });
        this.stats.bytes += bytes.length;
        this.stats.log.push([start, end + 1]);
        return { bytes, start, total };
      } catch (e) {
        if (e instanceof RangeIgnored) throw e;
        if (signal?.aborted) throw new RerfAbortError();
        const err = e instanceof RerfSourceError ? e
          : new RerfSourceError(`${this.url}: ${timeout.aborted ? 'timed out' : /** @type {Error} */ (e).message}`, { retryable: true });
        if (!err.retryable || attempt >= this.retries) throw err;
        await sleep(Math.min(this.backoffMs * 2 ** attempt, this.backoffMs * 8), signal);
        attempt++;
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** @param {number} offset @param {number} length @param {AbortSignal} [signal] @returns {Promise<Uint8Array>} */
  async readAt(offset, length, signal) {
    if (length <= 0) return new Uint8Array(0);
    const { bytes, start } = await this.request(`${offset}-${offset + length - 1}`, signal);
    if (start !== offset) throw new RerfSourceError(`${this.url}: server answered a different range`);
    return bytes;
  }

  /** The last n bytes and the file size. @param {number} n @param {AbortSignal} [signal] */
  async readTail(n, signal) {
    const r = await this.request(`-${n}`, signal);
    this.size = r.total;
    return r;
  }
}
