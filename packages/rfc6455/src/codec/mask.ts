/**
 * Masking (RFC 6455 §5.3): payload[i] ^= key[i % 4]. Done a 32-bit word at a time over the
 * aligned middle of the buffers, with the key rotated to the alignment; bytes at the edges one at
 * a time. No allocation per call.
 */
import { randomFillSync } from 'node:crypto';

const scratch = new Uint8Array(4);
const scratchWord = new Uint32Array(scratch.buffer);

/** Below this many bytes the byte loop is as fast as setting up word views. */
const WORD_THRESHOLD = 32;

/**
 * Writes `src ^ mask` into `dst` starting at `dstOffset`. `maskOffset` is how many payload bytes
 * came before `src` (for masking a payload in pieces). `src` and `dst` may be the same memory
 * (unmasking in place) but must not overlap otherwise. `src` is never modified unless it is `dst`.
 */
export function mask(
  src: Uint8Array,
  key: Uint8Array,
  dst: Uint8Array,
  dstOffset = 0,
  maskOffset = 0,
): void {
  const length = src.length;
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
    const s32 = new Uint32Array(src.buffer, srcAddr + lead, words);
    const d32 = s32.buffer === dst.buffer && srcAddr === dstAddr ? s32 : new Uint32Array(dst.buffer, dstAddr + lead, words);
    for (let w = 0; w < words; w++) d32[w] = s32[w]! ^ word;
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
