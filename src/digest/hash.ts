/**
 * xxh64 over bytes, from xxhash-wasm. The WASM module is instantiated once per
 * process (top-level await), so every caller shares it synchronously.
 */
import xxhash from 'xxhash-wasm'

const hasher = await xxhash()

/** xxh64 of `bytes` with seed 0, as an unsigned 64-bit bigint. */
export function xxh64 (bytes: Uint8Array): bigint {
  return hasher.h64Raw(bytes)
}

const pair = new Uint8Array(16)
const pairView = new DataView(pair.buffer)

/**
 * The hash a row contributes to its tree nodes: xxh64(keyHash ‖ rowDigest),
 * both big-endian. Hashing the pair (rather than adding the digest alone)
 * makes a row moved between keys change the sum.
 */
export function entryHash (keyHash: bigint, rowDigest: bigint): bigint {
  pairView.setBigUint64(0, keyHash)
  pairView.setBigUint64(8, rowDigest)
  return hasher.h64Raw(pair)
}

export function u64ToBytes (value: bigint): Uint8Array {
  // allocUnsafe takes small buffers from a shared pool: far cheaper than a new ArrayBuffer per value
  const out = Buffer.allocUnsafe(8)
  out.writeBigUInt64BE(value, 0)
  return out
}

const u64Scratch = new Uint8Array(8)
const u64ScratchView = new DataView(u64Scratch.buffer)

/** The big-endian unsigned 64-bit value at `offset`; through a shared scratch buffer, a third of the cost of a DataView per call. */
export function bytesToU64 (bytes: Uint8Array, offset = 0): bigint {
  if (offset < 0 || offset + 8 > bytes.length) throw new RangeError(`offset ${offset} is out of bounds`)
  for (let i = 0; i < 8; i++) u64Scratch[i] = bytes[offset + i]!
  return u64ScratchView.getBigUint64(0)
}

export function u64Hex (value: bigint): string {
  return value.toString(16).padStart(16, '0')
}
