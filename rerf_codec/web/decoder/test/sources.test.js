// HTTP source rules with a scripted fetch: retries on 5xx and timeouts, never on 4xx, 206 +
// Content-Range required, 200 means "Range ignored", abort stops at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpSource, RangeIgnored } from '../sources.js';
import { RerfAbortError, RerfSourceError } from '../errors.js';

const data = new Uint8Array(100).map((_, i) => i);

/** @param {Array<number | 'hang'>} script statuses to answer in turn */
function scripted(script) {
  /** @type {string[]} */
  const calls = [];
  /** @type {typeof fetch} */
  const f = async (_url, init) => {
    const range = /** @type {any} */ (init?.headers).Range;
    calls.push(range);
    const what = script.shift() ?? 206;
    if (what === 'hang') {
      return new Promise((_resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      });
    }
    const [, a, b] = /bytes=(\d+)-(\d+)/.exec(range) ?? [];
    if (what === 206) {
      const body = data.slice(Number(a), Number(b) + 1);
      return new Response(body, { status: 206, headers: { 'Content-Range': `bytes ${a}-${b}/${data.length}` } });
    }
    return new Response(what === 200 ? data : null, { status: what });
  };
  return { f, calls };
}

test('5xx and timeouts are retried, then the range arrives', async () => {
  const { f, calls } = scripted([503, 'hang', 206]);
  const src = new HttpSource('http://x/s.rerf', { fetch: f, timeoutMs: 50, backoffMs: 1 });
  const got = await src.readAt(10, 5);
  assert.deepEqual([...got], [10, 11, 12, 13, 14]);
  assert.equal(calls.length, 3);
});

test('4xx is never retried; retries are capped', async () => {
  const a = scripted([404]);
  await assert.rejects(new HttpSource('u', { fetch: a.f, backoffMs: 1 }).readAt(0, 4),
    (e) => e instanceof RerfSourceError && e.status === 404);
  assert.equal(a.calls.length, 1);
  const b = scripted([500, 500, 500, 500, 500, 500]);
  await assert.rejects(new HttpSource('u', { fetch: b.f, retries: 2, backoffMs: 1 }).readAt(0, 4), RerfSourceError);
  assert.equal(b.calls.length, 3);
});

test('200 to a Range request means the server ignores Range; abort stops', async () => {
  const a = scripted([200]);
  await assert.rejects(new HttpSource('u', { fetch: a.f }).readAt(0, 4), RangeIgnored);
  const b = scripted(['hang']);
  const ctl = new AbortController();
  const p = new HttpSource('u', { fetch: b.f, timeoutMs: 10000 }).readAt(0, 4, ctl.signal);
  ctl.abort();
  await assert.rejects(p, RerfAbortError);
});
