/**
 * A look into an encoded row without decoding all of it, for the few
 * columns a caller needs (the key, the event time) when the rest would only
 * be thrown away: decoding a row builds every value, strings included, and
 * costs several times a walk over its bytes.
 *
 * Both functions answer only where the answer is certain to be what the
 * full decoder (row-codec.ts, msgpackr with int64AsType 'bigint') would give;
 * anything else (containers, extension types, the unused byte 0xc1, a value
 * they do not read) is left to it, by returning undefined or UNREAD.
 */
import type { Value } from './row-codec.ts'

/** What readNumeric returns for a value it does not read (a string, a binary): decode the row whole. */
export const UNREAD: unique symbol = Symbol('unread')

const scratch = new Uint8Array(8)
const scratchView = new DataView(scratch.buffer)
/** scalarOffsets's answer, reused: a typed array per row costs more than the walk. */
let offsets = new Int32Array(64)

/**
 * Where each of the `count` values of a flat msgpack array starts (and, at
 * [count], where the last ends), or undefined unless the bytes are exactly
 * such an array of plain scalars: nil, booleans, integers, floats, strings
 * and binaries, each whole, nothing after the last. Such bytes always decode
 * (msgpackr reads every one of those forms without error) to an array of
 * `count` values. The array returned is overwritten by the next call.
 */
export function scalarOffsets (bytes: Uint8Array, count: number): Int32Array | undefined {
  const end = bytes.length
  let p = 0
  if (count <= 15) {
    if (bytes[p++] !== (0x90 | count)) return undefined
  } else {
    // array 16: a longer row
    if (end < 3 || bytes[0] !== 0xdc || ((bytes[1]! << 8) | bytes[2]!) !== count) return undefined
    p = 3
  }
  if (offsets.length < count + 1) offsets = new Int32Array(2 * (count + 1))
  for (let i = 0; i < count; i++) {
    if (p >= end) return undefined
    offsets[i] = p
    const b = bytes[p++]!
    let skip: number
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) skip = 0
    else if (b >= 0xa0 && b <= 0xbf) skip = b & 0x1f
    else {
      switch (b) {
        case 0xcc: case 0xd0: skip = 1; break
        case 0xcd: case 0xd1: skip = 2; break
        case 0xce: case 0xd2: case 0xca: skip = 4; break
        case 0xcf: case 0xd3: case 0xcb: skip = 8; break
        case 0xc4: case 0xd9: if (p >= end) return undefined; skip = 1 + bytes[p]!; break
        case 0xc5: case 0xda: if (p + 2 > end) return undefined; skip = 2 + ((bytes[p]! << 8) | bytes[p + 1]!); break
        case 0xc6: case 0xdb: if (p + 4 > end) return undefined; skip = 4 + bytes[p]! * 0x1000000 + ((bytes[p + 1]! << 16) | (bytes[p + 2]! << 8) | bytes[p + 3]!); break
        default: return undefined
      }
    }
    if (skip > end - p) return undefined
    p += skip
  }
  offsets[count] = p
  return p === end ? offsets : undefined
}

/**
 * The value starting at `at` when it is nil, a boolean or a number, as the
 * full decoder gives it (64-bit integers as bigint); UNREAD for anything
 * else. `at` must be an offset scalarOffsets gave for these bytes.
 */
export function readNumeric (bytes: Uint8Array, at: number): Value | typeof UNREAD {
  const b = bytes[at]!
  if (b <= 0x7f) return b
  if (b >= 0xe0) return b - 0x100
  switch (b) {
    case 0xc0: return null
    case 0xc2: return false
    case 0xc3: return true
    case 0xcc: return bytes[at + 1]!
    case 0xcd: return (bytes[at + 1]! << 8) | bytes[at + 2]!
    case 0xd0: return (bytes[at + 1]! << 24) >> 24
    case 0xd1: return (((bytes[at + 1]! << 8) | bytes[at + 2]!) << 16) >> 16
  }
  if (b === 0xca || b === 0xce || b === 0xd2) {
    for (let i = 0; i < 4; i++) scratch[i] = bytes[at + 1 + i]!
    return b === 0xca ? scratchView.getFloat32(0) : b === 0xce ? scratchView.getUint32(0) : scratchView.getInt32(0)
  }
  if (b === 0xcb || b === 0xcf || b === 0xd3) {
    for (let i = 0; i < 8; i++) scratch[i] = bytes[at + 1 + i]!
    return b === 0xcb ? scratchView.getFloat64(0) : b === 0xcf ? scratchView.getBigUint64(0) : scratchView.getBigInt64(0)
  }
  return UNREAD
}

const TWO_63 = 2n ** 63n

/**
 * Whether the nil, boolean or number starting at `at` is encoded exactly as
 * the codec's encoder (msgpackr, no records, no float32) encodes the value
 * it decodes to: integers within 32 bits in their shortest form, other
 * numbers as float64, bigints as int64 where they fit and uint64 only above.
 * False for anything else, NaN included (its payload bits may vary): false
 * only means "not known to be", and callers then encode the value to see.
 * Tested against the encoder for every header.
 */
export function isCanonicalNumeric (bytes: Uint8Array, at: number): boolean {
  const b = bytes[at]!
  // one form each: fixints, nil, false, true
  if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) return true
  const v = readNumeric(bytes, at)
  if (typeof v === 'bigint') return b === 0xd3 || v >= TWO_63
  if (typeof v !== 'number') return false
  switch (b) {
    // unsigned forms: only where the value needs them
    case 0xcc: return v >= 0x80
    case 0xcd: return v >= 0x100
    case 0xce: return v >= 0x10000
    // signed forms: negative values below the shorter forms' range
    case 0xd0: return v < -0x20
    case 0xd1: return v < -0x80
    case 0xd2: return v < -0x8000
    // float64: a number that is no 32-bit integer (-0 counts as one: it is written as 0)
    case 0xcb: return !Number.isNaN(v) && v >>> 0 !== v && v >> 0 !== v
    default: return false
  }
}
