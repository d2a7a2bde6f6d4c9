#!/usr/bin/env node
// Node entry point of the JavaScript decoder, used by `rerf verify` and the tests.
//
//   node node-cli.js hash FILE...   one JSON line per file: {path, sha256, frames, seconds}
//                                   or {path, error: {type, message}}
//   node node-cli.js serve          JSON lines on stdin {id, data: base64 .rerf} -> one JSON line
//                                   per request on stdout {id, sha256, frames, deep} or {id, error}
//
// Files are decoded the way `rerf decode` does (streaming, §7.3), so both decoders check the
// same things. `error.type` is "format" for RerfFormatError and "internal" for anything else.

import fs from 'node:fs';
import readline from 'node:readline';
import { RerfFormatError } from './errors.js';
import { openStream } from './stream.js';

/** @param {unknown} e */
function errorOf(e) {
  const err = /** @type {Error} */ (e);
  return e instanceof RerfFormatError
    ? { type: 'format', message: err.message }
    : { type: 'internal', message: `${err && err.name}: ${err && err.message}`, stack: err && err.stack };
}

/** Decode all frames in streaming mode; `deep` tells whether a GOF payload was parsed. @param {Uint8Array} bytes */
async function hashBytes(bytes) {
  let deep = false;
  const t0 = performance.now();
  const s = await openStream(bytes, { mode: 'stream' });
  const r = await s.sha256({ onGof: () => { deep = true; } });
  return { sha256: r.sha256, frames: r.frames, seconds: (performance.now() - t0) / 1000, decodeSeconds: r.decodeSeconds, deep };
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'hash') {
  for (const path of args) {
    let out;
    try {
      const data = fs.readFileSync(path);
      out = { path, ...(await hashBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))) };
    } catch (e) {
      out = { path, error: errorOf(e) };
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  }
} else if (cmd === 'serve') {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const req = JSON.parse(line);
    let out;
    let deep = false;
    try {
      const buf = Buffer.from(req.data, 'base64');
      const s = await openStream(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), { mode: 'stream' });
      const r = await s.sha256({ onGof: () => { deep = true; } });
      out = { id: req.id, sha256: r.sha256, frames: r.frames, deep };
    } catch (e) {
      out = { id: req.id, error: errorOf(e), deep };
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  }
} else {
  process.stderr.write('usage: node node-cli.js hash FILE... | serve\n');
  process.exit(2);
}
