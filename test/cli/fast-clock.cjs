// Preloaded (`node --require`) into a CLI process by test/cli/cli.test.ts to run its idle-timeout
// clock fast: Date.now() moves 1000 times as fast, and setInterval() (the idle wheel's 250 ms tick)
// fires 250 times as often, so the 300 s default idle timeout would pass in about a second of
// real time. setTimeout() (--wait, handshake and close timeouts) is left alone.
'use strict';
const realNow = Date.now;
const start = realNow();
Date.now = () => start + (realNow() - start) * 1000;
const realSetInterval = globalThis.setInterval;
globalThis.setInterval = (fn, ms, ...args) => realSetInterval(fn, Math.max(1, Math.floor((ms ?? 0) / 250)), ...args);
