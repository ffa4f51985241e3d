/**
 * Masking (RFC 6455 §5.3): payload[i] ^= key[i % 4]. Done a 32-bit word at a time over the
 * aligned middle of the buffers, with the key rotated to the alignment; bytes at the edges one at
 * a time. No allocation per call.
 */
import { randomFillSync } from 'node:crypto';

const scratch = new Uint8Array(4);
const scratchWord = new Int32Array(scratch.buffer);

/** Below this many bytes the byte loop is as fast as setting up word views. */
const WORD_THRESHOLD = 128;

/**
 * From this many bytes on (the measured crossover), masking goes through a 16-byte-wide
 * WebAssembly SIMD loop when the runtime has it: 2-4x the word loop from 1 KiB up (bench/README.md). The
 * WebAssembly module is a few dozen bytes written below, compiled on first use, with no native
 * code and nothing to install; `RFC6455_NO_WASM=1` turns it off (the pure JavaScript path is then
 * used throughout and gives the same bytes).
 */
const SIMD_THRESHOLD = 512;
/** Bytes processed per pass through the WebAssembly memory's block (see the layout below). */
const SIMD_BLOCK = 65536;
/**
 * The WebAssembly memory, 3 pages of 64 KiB: [0, 64 KiB) the block that other buffers are copied
 * through; [64, 128 KiB) slack for the last iteration's run past a block; [128, 192 KiB) the read
 * buffer direct reads share (see {@link sharedReadBuffer}), whose masked payloads are unmasked
 * where they lie (whole 64-byte groups only: nothing runs past them), so that they are copied
 * once (out) instead of twice (in and out).
 */
const READ_AT = 2 * 65536;
const READ_SIZE = 65536;

/*
 * The module, in the WebAssembly binary format: memory "m" (3 pages) and x(at, end, word), which
 * XORs the 32-bit little-endian `word`, splatted across 128 bits, into m[at, end), four 16-byte
 * vectors per iteration (the last iteration runs on up to the next multiple of 64 past `at`: the
 * callers pass ranges of whole 64-byte groups, or ranges followed by slack). Four per iteration
 * rather than one: 1.16 µs per 64 KiB block instead of 1.53 (57 against 43 GB/s); eight gained
 * nothing more. Copying a buffer through this memory costs more than the XOR itself.
 */
/** m[at + offset] = m[at + offset] ^ k (v128 load, xor, store; the offset in the memory arguments). */
const xorAt = (offset: number): number[] => [0x20, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, offset, 0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, offset];
const SIMD_BODY = [
  0x01, 0x01, 0x7b, // locals: v128 k (local 3; the parameters are at, end, word)
  0x20, 0x02, 0xfd, 0x11, 0x21, 0x03, // k = i32x4.splat(word)
  0x02, 0x40, 0x03, 0x40, // block, loop
  0x20, 0x00, 0x20, 0x01, 0x4f, 0x0d, 0x01, // if (at >= end) break
  ...xorAt(0), ...xorAt(16), ...xorAt(32), ...xorAt(48), // 64 bytes per iteration
  0x20, 0x00, 0x41, 0xc0, 0x00, 0x6a, 0x21, 0x00, // at += 64
  0x0c, 0x00, 0x0b, 0x0b, 0x0b, // continue; end loop, block, function
];
const SIMD_MODULE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, // type: (i32, i32, i32) -> ()
  0x03, 0x02, 0x01, 0x00, // function 0 has type 0
  0x05, 0x03, 0x01, 0x00, 0x03, // memory: min 3 pages (never grown: views of it stay valid)
  0x07, 0x09, 0x02, 0x01, 0x6d, 0x02, 0x00, 0x01, 0x78, 0x00, 0x00, // export "m" memory 0, "x" function 0
  0x0a, SIMD_BODY.length + 2, 0x01, SIMD_BODY.length, ...SIMD_BODY,
]);

interface Simd {
  memory: Uint8Array;
  /** memory[0, SIMD_BLOCK), kept to avoid a view per full block. */
  block: Uint8Array;
  /** The memory's ArrayBuffer: a source on it lies in the read buffer. */
  buffer: ArrayBuffer;
  /** memory[READ_AT, READ_AT + READ_SIZE) as a Buffer, once handed out. */
  readBuffer: Buffer | undefined;
  xor: (at: number, end: number, word: number) => void;
}
/** undefined: not tried yet; null: unavailable or turned off. */
let simd: Simd | null | undefined;

/** The little of the WebAssembly JS API used here (the project's TypeScript libs do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: { m: { buffer: ArrayBuffer }; x: (at: number, end: number, word: number) => void } };
}

function loadSimd(): Simd | null {
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (process.env.RFC6455_NO_WASM === '1' || wasm === undefined) return null;
  try {
    if (!wasm.validate(SIMD_MODULE)) return null;
    const { exports } = new wasm.Instance(new wasm.Module(SIMD_MODULE));
    const buffer = exports.m.buffer;
    const memory = new Uint8Array(buffer);
    return { memory, block: memory.subarray(0, SIMD_BLOCK), buffer, readBuffer: undefined, xor: exports.x };
  } catch {
    return null;
  }
}

/**
 * Chooses the masking engine: 'simd' (WebAssembly, when available) or 'js'. For tests and the
 * codec benchmark; returns the engine now in use. @internal
 */
export function setMaskEngine(engine: 'simd' | 'js'): 'simd' | 'js' {
  simd = engine === 'js' ? null : loadSimd();
  return simd ? 'simd' : 'js';
}

/**
 * The 64 KiB read buffer that direct reads share between connections: a region of the
 * WebAssembly memory when the SIMD engine is in use (payloads read into it are unmasked in place
 * there, then copied out once), else a plain buffer. Always the same buffer for a given engine.
 * @internal
 */
export function sharedReadBuffer(): Buffer {
  if (simd === undefined) simd = loadSimd();
  if (simd === null) return (plainReadBuffer ??= Buffer.allocUnsafe(READ_SIZE));
  return (simd.readBuffer ??= Buffer.from(simd.buffer, READ_AT, READ_SIZE));
}
let plainReadBuffer: Buffer | undefined;

function maskSimd(engine: Simd, src: Uint8Array, key: Uint8Array, dst: Uint8Array, dstOffset: number, maskOffset: number): void {
  // The key rotated to the payload offset, as a little-endian word: byte j of every 4 gets key[(maskOffset + j) & 3].
  const word =
    key[maskOffset & 3]! | (key[(maskOffset + 1) & 3]! << 8) | (key[(maskOffset + 2) & 3]! << 16) | (key[(maskOffset + 3) & 3]! << 24);
  const length = src.length;
  if (src.buffer === engine.buffer) {
    // In the read buffer: XOR whole 64-byte groups where the bytes lie (nothing past them: the
    // bytes after belong to the next frame), the rest in JavaScript, then one copy out.
    const at = src.byteOffset;
    const groups = length & ~63;
    engine.xor(at, at + groups, word);
    const memory = engine.memory;
    for (let i = at + groups, j = groups; j < length; i++, j++) memory[i] = memory[i]! ^ key[(maskOffset + j) & 3]!;
    if (dst !== src) dst.set(src, dstOffset);
    return;
  }
  const memory = engine.memory;
  // Blocks are multiples of 16 bytes, so the rotation is the same for every block.
  for (let at = 0; at < length; at += SIMD_BLOCK) {
    const n = Math.min(SIMD_BLOCK, length - at);
    memory.set(at === 0 && n === length ? src : src.subarray(at, at + n), 0);
    engine.xor(0, n, word);
    dst.set(n === SIMD_BLOCK ? engine.block : memory.subarray(0, n), dstOffset + at);
  }
}

/**
 * Writes `src ^ mask` into `dst` starting at `dstOffset`. `maskOffset` is how many payload bytes
 * came before `src` (for masking a payload in pieces). `src` and `dst` may be the same memory
 * (unmasking in place) but must not overlap otherwise. `src` is never modified unless it is `dst`,
 * or lies in the shared read buffer (see {@link sharedReadBuffer}): bytes there are unmasked where
 * they lie before they are copied to `dst`.
 */
export function mask(
  src: Uint8Array,
  key: Uint8Array,
  dst: Uint8Array,
  dstOffset = 0,
  maskOffset = 0,
): void {
  const length = src.length;
  if (length >= SIMD_THRESHOLD) {
    if (simd === undefined) simd = loadSimd();
    if (simd !== null) {
      maskSimd(simd, src, key, dst, dstOffset, maskOffset);
      return;
    }
  }
  const k0 = key[0]!;
  const k1 = key[1]!;
  const k2 = key[2]!;
  const k3 = key[3]!;
  let i = 0;
  const srcAddr = src.byteOffset;
  const dstAddr = dst.byteOffset + dstOffset;
  if (length >= WORD_THRESHOLD && (srcAddr & 3) === (dstAddr & 3)) {
    const lead = (4 - (srcAddr & 3)) & 3;
    for (; i < lead; i++) dst[dstOffset + i] = src[i]! ^ key[(maskOffset + i) & 3]!;
    const rot = (maskOffset + lead) & 3;
    scratch[0] = key[rot]!;
    scratch[1] = key[(rot + 1) & 3]!;
    scratch[2] = key[(rot + 2) & 3]!;
    scratch[3] = key[(rot + 3) & 3]!;
    const word = scratchWord[0]!;
    const words = (length - lead) >>> 2;
    const s32 = new Int32Array(src.buffer, srcAddr + lead, words);
    const d32 = s32.buffer === dst.buffer && srcAddr === dstAddr ? s32 : new Int32Array(dst.buffer, dstAddr + lead, words);
    // Eight words per iteration: twice the speed of the plain loop in V8 (measured).
    const end8 = words & ~7;
    let w = 0;
    for (; w < end8; w += 8) {
      d32[w] = s32[w]! ^ word;
      d32[w + 1] = s32[w + 1]! ^ word;
      d32[w + 2] = s32[w + 2]! ^ word;
      d32[w + 3] = s32[w + 3]! ^ word;
      d32[w + 4] = s32[w + 4]! ^ word;
      d32[w + 5] = s32[w + 5]! ^ word;
      d32[w + 6] = s32[w + 6]! ^ word;
      d32[w + 7] = s32[w + 7]! ^ word;
    }
    for (; w < words; w++) d32[w] = s32[w]! ^ word;
    i = lead + words * 4;
  } else if (maskOffset === 0) {
    // Unaligned or short: four bytes per iteration with the key in registers.
    const end4 = length & ~3;
    for (; i < end4; i += 4) {
      dst[dstOffset + i] = src[i]! ^ k0;
      dst[dstOffset + i + 1] = src[i + 1]! ^ k1;
      dst[dstOffset + i + 2] = src[i + 2]! ^ k2;
      dst[dstOffset + i + 3] = src[i + 3]! ^ k3;
    }
  }
  for (; i < length; i++) dst[dstOffset + i] = src[i]! ^ key[(maskOffset + i) & 3]!;
}

/**
 * Writes 4 fresh random bytes (a masking key, see {@link randomMaskKey}) into `target` at
 * `offset`, without creating a view. @internal
 */
export function writeRandomMaskKey(target: Uint8Array, offset: number): void {
  if (poolOffset + 4 > POOL_SIZE) {
    pool ??= Buffer.allocUnsafe(POOL_SIZE);
    randomFillSync(pool);
    poolOffset = 0;
  }
  const p = pool!;
  target[offset] = p[poolOffset]!;
  target[offset + 1] = p[poolOffset + 1]!;
  target[offset + 2] = p[poolOffset + 2]!;
  target[offset + 3] = p[poolOffset + 3]!;
  poolOffset += 4;
}

/** Unmasks `buf` in place. Only for buffers the library owns (socket chunks, its own copies). */
export function unmaskInPlace(buf: Uint8Array, key: Uint8Array, maskOffset = 0): void {
  mask(buf, key, buf, 0, maskOffset);
}

const POOL_SIZE = 8192;
let pool: Buffer | undefined;
let poolOffset = POOL_SIZE;

/**
 * Returns 4 fresh cryptographically random bytes for a masking key (RFC 6455 §5.3 requires keys
 * unpredictable to the application). Taken from a pool refilled by `randomFillSync`, so one
 * system call serves 2048 frames. The view is valid until the next call 2048 calls later.
 */
export function randomMaskKey(): Buffer {
  if (poolOffset + 4 > POOL_SIZE) {
    pool ??= Buffer.allocUnsafe(POOL_SIZE);
    randomFillSync(pool);
    poolOffset = 0;
  }
  const key = pool!.subarray(poolOffset, poolOffset + 4);
  poolOffset += 4;
  return key;
}
