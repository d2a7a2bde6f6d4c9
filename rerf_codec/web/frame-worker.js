// Worker entry of the player's decoder: `new Worker(new URL('./frame-worker.js', import.meta.url),
// {type: 'module'})`. The protocol is in frame-protocol.js (the decoder's, frames as bricks).

import { createFrameHandler } from "./frame-protocol.js";

/** @type {any} */
const scope = globalThis;
const handle = createFrameHandler((msg, transfer = []) => scope.postMessage(msg, transfer));
scope.onmessage = (/** @type {MessageEvent} */ e) => handle(e.data);
scope.postMessage({ event: "ready", id: 0 }); // the module loaded: the page stops keeping messages to replay inline
