// Worker entry of the decoder: `new Worker(new URL('./worker.js', import.meta.url), {type: 'module'})`
// in a browser, `new Worker(url, ...)` from node:worker_threads in Node. The protocol is in
// worker-protocol.js.

import { createWorkerHandler } from './worker-protocol.js';

/** @type {any} */
const scope = globalThis;
if (typeof scope.WorkerGlobalScope !== 'undefined' && scope instanceof scope.WorkerGlobalScope) {
  const handle = createWorkerHandler((msg, transfer = []) => scope.postMessage(msg, transfer));
  scope.onmessage = (/** @type {MessageEvent} */ e) => handle(e.data);
} else {
  const { parentPort } = await import('node:worker_threads');
  if (!parentPort) throw new Error('worker.js must run in a worker');
  const port = parentPort;
  const handle = createWorkerHandler((msg, transfer = []) => port.postMessage(msg, transfer));
  port.on('message', handle);
}
