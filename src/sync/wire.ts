/**
 * Compact binary blocks carried inside sync messages. Each reader checks
 * bounds and throws MalformedMessageError rather than reading past the end.
 *
 * - node set: sorted node indices at one level, as uvarint deltas
 * - children block: per child, the low CHILD_SUM_BYTES of its sum, big-endian
 * - positions: indices into a list the other side sent, as sorted uvarint deltas
 * - entry hashes: the high ENTRY_HASH_BYTES of each entry hash, big-endian, concatenated
 */
import { decode as varintDecode, encode as varintEncode, encodingLength } from 'uint8-varint'
import { CHILD_SUM_BYTES, ENTRY_HASH_BYTES } from '../constants.ts'
import { MalformedMessageError } from '../errors.ts'

class ByteWriter {
  private buf: Uint8Array
  length = 0
  constructor (size = 256) { this.buf = new Uint8Array(size) }
  private reserve (n: number): void {
    if (this.length + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n))
    next.set(this.buf.subarray(0, this.length))
    this.buf = next
  }

  varint (value: number): void {
    this.reserve(encodingLength(value))
    varintEncode(value, this.buf, this.length)
    this.length += encodingLength(value)
  }

  uintBE (value: number, bytes: number): void {
    this.reserve(bytes)
    for (let i = bytes - 1; i >= 0; i--) { this.buf[this.length + i] = value & 0xff; value = Math.floor(value / 256) }
    this.length += bytes
  }

  bytes (): Uint8Array { return this.buf.slice(0, this.length) }
}

class ByteReader {
  offset = 0
  constructor (private readonly buf: Uint8Array, private readonly what: string) {}
  get done (): boolean { return this.offset >= this.buf.length }
  varint (): number {
    if (this.done) throw new MalformedMessageError(`${this.what}: truncated`)
    let value: number
    try { value = varintDecode(this.buf, this.offset) } catch (err) { throw new MalformedMessageError(`${this.what}: bad varint`, { cause: err }) }
    this.offset += encodingLength(value)
    if (this.offset > this.buf.length) throw new MalformedMessageError(`${this.what}: truncated`)
    return value
  }

  uintBE (bytes: number): number {
    if (this.offset + bytes > this.buf.length) throw new MalformedMessageError(`${this.what}: truncated`)
    let v = 0
    for (let i = 0; i < bytes; i++) v = v * 256 + this.buf[this.offset + i]!
    this.offset += bytes
    return v
  }
}

/** Encodes a set of node indices (any order, duplicates removed) as sorted uvarint deltas. */
export function encodeNodeSet (indices: Iterable<number>): Uint8Array {
  const sorted = [...new Set(indices)].sort((a, b) => a - b)
  const w = new ByteWriter(sorted.length + 8)
  let prev = 0
  for (const i of sorted) { w.varint(i - prev); prev = i }
  return w.bytes()
}

/** Decodes a node set; every index must be below `levelSize`, and there may be at most `max` of them. */
export function decodeNodeSet (bytes: Uint8Array, levelSize: number, max: number): number[] {
  const r = new ByteReader(bytes, 'node set')
  const out: number[] = []
  let prev = 0
  while (!r.done) {
    const delta = r.varint()
    if (out.length > 0 && delta === 0) throw new MalformedMessageError('node set: duplicate node')
    prev += delta
    if (prev >= levelSize) throw new MalformedMessageError(`node set: node ${prev} is outside the level (size ${levelSize})`)
    out.push(prev)
    if (out.length > max) throw new MalformedMessageError(`node set: more than ${max} nodes`)
  }
  return out
}

const SUM_MASK = (1n << BigInt(8 * CHILD_SUM_BYTES)) - 1n

/** The truncated form of a node sum compared when expanding children. */
export function shortSum (sum: bigint): number { return Number(sum & SUM_MASK) }

/** Children blocks carry sums only: counts cost bytes on every level and the client decides from its own. */
export function encodeChildSums (sums: Iterable<bigint>): Uint8Array {
  const w = new ByteWriter(64)
  for (const s of sums) w.uintBE(shortSum(s), CHILD_SUM_BYTES)
  return w.bytes()
}

export function decodeChildSums (bytes: Uint8Array, expected: number): number[] {
  if (bytes.length !== expected * CHILD_SUM_BYTES) throw new MalformedMessageError(`children block: ${bytes.length} bytes for ${expected} children`)
  const r = new ByteReader(bytes, 'children block')
  const out: number[] = []
  for (let i = 0; i < expected; i++) out.push(r.uintBE(CHILD_SUM_BYTES))
  return out
}

/** Positions (indices into a list the client sent) as sorted uvarint deltas. */
export function encodePositions (positions: Iterable<number>): Uint8Array { return encodeNodeSet(positions) }
export function decodePositions (bytes: Uint8Array, size: number): number[] { return decodeNodeSet(bytes, size, size) }

/** The truncated form of an entry hash sent in node listings. */
export function shortEntry (entry: bigint): number { return Number(entry >> BigInt(64 - 8 * ENTRY_HASH_BYTES)) }

/** An entry hash as compared in a listing: truncated, or the full 64 bits when `wide`. */
export type ListedHash = number | bigint

export function encodeEntryHashes (entries: readonly bigint[], wide: boolean): Uint8Array {
  if (wide) {
    const out = new Uint8Array(entries.length * 8)
    const view = new DataView(out.buffer)
    entries.forEach((e, i) => view.setBigUint64(i * 8, e))
    return out
  }
  const w = new ByteWriter(entries.length * ENTRY_HASH_BYTES)
  for (const e of entries) w.uintBE(shortEntry(e), ENTRY_HASH_BYTES)
  return w.bytes()
}

export function decodeEntryHashes (bytes: Uint8Array, wide: boolean): ListedHash[] {
  const width = wide ? 8 : ENTRY_HASH_BYTES
  if (bytes.length % width !== 0) throw new MalformedMessageError(`entry hashes: ${bytes.length} bytes is not a multiple of ${width}`)
  const out: ListedHash[] = []
  if (wide) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    for (let i = 0; i < bytes.length; i += 8) out.push(view.getBigUint64(i))
    return out
  }
  const r = new ByteReader(bytes, 'entry hashes')
  while (!r.done) out.push(r.uintBE(ENTRY_HASH_BYTES))
  return out
}
