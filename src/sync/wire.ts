/**
 * Compact binary blocks carried inside sync messages. Each reader checks
 * bounds and throws MalformedMessageError rather than reading past the end.
 *
 * - node set: sorted node indices at one level, as uvarint deltas
 * - children block: per child, the low `width` bytes of its sum, big-endian
 * - reconcile block: per node (sorted), uvarint index delta, uvarint count,
 *   then `count` entry hashes of `width` bytes (the high bytes, or all 8)
 * - reconciled block: per node, uvarint count, 8-byte sum, uvarint number of
 *   unmatched positions, then those positions as uvarint deltas
 */
import { decode as varintDecode, encode as varintEncode, encodingLength } from 'uint8-varint'
import { MalformedMessageError } from '../errors.ts'
import { high32, low32 } from '../util/u64.ts'

/** Bytes of a truncated child sum on the wire. */
/** Bytes of a child sum on the wire: truncated while narrowing, all 8 when a parent must be expanded again at full width. */
export type SumWidth = 2 | 3 | 8
/** Bytes of an entry hash on the wire: truncated, or all 8 when settling a node again at full width. */
export type HashWidth = 2 | 3 | 8
/** An entry hash as compared: a number when truncated, the full bigint at width 8. */
export type ListedHash = number | bigint

class ByteWriter {
  private buf: Uint8Array
  private view: DataView
  length = 0
  constructor (size = 256) { this.buf = new Uint8Array(Math.max(16, size)); this.view = new DataView(this.buf.buffer) }
  private reserve (n: number): void {
    if (this.length + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n))
    next.set(this.buf.subarray(0, this.length))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  varint (value: number): void {
    const n = encodingLength(value)
    this.reserve(n)
    varintEncode(value, this.buf, this.length)
    this.length += n
  }

  uintBE (value: number, bytes: number): void {
    this.reserve(bytes)
    for (let i = bytes - 1; i >= 0; i--) { this.buf[this.length + i] = value & 0xff; value = Math.floor(value / 256) }
    this.length += bytes
  }

  u64 (value: bigint): void {
    this.reserve(8)
    this.view.setBigUint64(this.length, value)
    this.length += 8
  }

  /** An entry hash as sent at a width: uintBE(listedHash(entry, width), width), without the number in between. */
  entryHash (entry: bigint, width: HashWidth): void {
    if (width === 8) { this.u64(entry); return }
    this.reserve(width)
    const h = high32(entry)
    const at = this.length
    this.buf[at] = h >>> 24
    this.buf[at + 1] = (h >>> 16) & 0xff
    if (width === 3) this.buf[at + 2] = (h >>> 8) & 0xff
    this.length += width
  }

  bytes (): Uint8Array { return this.buf.slice(0, this.length) }
}

class ByteReader {
  offset = 0
  private readonly view: DataView
  constructor (private readonly buf: Uint8Array, private readonly what: string) { this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength) }
  get done (): boolean { return this.offset >= this.buf.length }
  private need (n: number): void { if (this.offset + n > this.buf.length) throw new MalformedMessageError(`${this.what}: truncated`) }

  varint (): number {
    this.need(1)
    let value: number
    let length: number
    // a varint past 2^53 decodes to an inexact number whose length cannot be computed back: bad input, not a crash
    try { value = varintDecode(this.buf, this.offset); length = encodingLength(value) } catch (err) { throw new MalformedMessageError(`${this.what}: bad varint`, { cause: err }) }
    if (!Number.isSafeInteger(value)) throw new MalformedMessageError(`${this.what}: varint out of range`)
    this.offset += length
    if (this.offset > this.buf.length) throw new MalformedMessageError(`${this.what}: truncated`)
    return value
  }

  uintBE (bytes: number): number {
    this.need(bytes)
    let v = 0
    for (let i = 0; i < bytes; i++) v = v * 256 + this.buf[this.offset + i]!
    this.offset += bytes
    return v
  }

  u64 (): bigint {
    this.need(8)
    const v = this.view.getBigUint64(this.offset)
    this.offset += 8
    return v
  }

  hash (width: HashWidth): ListedHash { return width === 8 ? this.u64() : this.uintBE(width) }

  end (): void { if (!this.done) throw new MalformedMessageError(`${this.what}: trailing bytes`) }
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

/** The truncated form of a node sum compared when expanding children. */
export function shortSum (sum: bigint, width: SumWidth): bigint { return width === 8 ? BigInt.asUintN(64, sum) : sum & ((1n << BigInt(8 * width)) - 1n) }

export function encodeChildSums (sums: readonly bigint[], width: SumWidth): Uint8Array {
  const w = new ByteWriter(sums.length * width)
  // a truncated sum is the low `width` (2 or 3) bytes, all within the low 32 bits
  for (const s of sums) { if (width === 8) w.u64(BigInt.asUintN(64, s)); else w.uintBE(low32(s) % 2 ** (8 * width), width) }
  return w.bytes()
}

export function decodeChildSums (bytes: Uint8Array, expected: number, width: SumWidth): bigint[] {
  if (bytes.length !== expected * width) throw new MalformedMessageError(`children block: ${bytes.length} bytes for ${expected} children of ${width} bytes`)
  const r = new ByteReader(bytes, 'children block')
  const out: bigint[] = []
  for (let i = 0; i < expected; i++) out.push(width === 8 ? r.u64() : BigInt(r.uintBE(width)))
  return out
}

/** An entry hash as sent at a width: its high bytes, or the whole hash at width 8. */
export function listedHash (entry: bigint, width: HashWidth): ListedHash {
  // the high 2 or 3 bytes lie within the high 32 bits: no bigint shift (which allocates) per entry
  return width === 8 ? entry : high32(entry) >>> (32 - 8 * width)
}

export interface ReconcileNode { index: number, hashes: ListedHash[] }

export function encodeReconcileBlock (nodes: ReadonlyArray<{ index: number, entries: readonly bigint[] }>, width: HashWidth): Uint8Array {
  const sorted = [...nodes].sort((a, b) => a.index - b.index)
  const w = new ByteWriter(sorted.reduce((n, x) => n + 4 + x.entries.length * width, 0))
  let prev = 0
  for (const node of sorted) {
    w.varint(node.index - prev); prev = node.index
    w.varint(node.entries.length)
    for (const e of node.entries) w.entryHash(e, width)
  }
  return w.bytes()
}

export function decodeReconcileBlock (bytes: Uint8Array, levelSize: number, width: HashWidth, maxHashes: number): ReconcileNode[] {
  const r = new ByteReader(bytes, 'reconcile block')
  const out: ReconcileNode[] = []
  let prev = 0
  let total = 0
  while (!r.done) {
    const delta = r.varint()
    if (out.length > 0 && delta === 0) throw new MalformedMessageError('reconcile block: node named twice')
    prev += delta
    if (prev >= levelSize) throw new MalformedMessageError(`reconcile block: node ${prev} is outside the level (size ${levelSize})`)
    const count = r.varint()
    total += count
    if (total > maxHashes) throw new MalformedMessageError(`reconcile block: more than ${maxHashes} hashes`)
    const hashes: ListedHash[] = []
    for (let i = 0; i < count; i++) hashes.push(r.hash(width))
    out.push({ index: prev, hashes })
  }
  return out
}

export interface ReconciledNode { count: number, sum: bigint, unmatched: number[] }

export function encodeReconciledBlock (nodes: readonly ReconciledNode[]): Uint8Array {
  const w = new ByteWriter(nodes.length * 16)
  for (const n of nodes) {
    w.varint(n.count)
    w.u64(n.sum)
    const positions = [...n.unmatched].sort((a, b) => a - b)
    w.varint(positions.length)
    let prev = 0
    for (const p of positions) { w.varint(p - prev); prev = p }
  }
  return w.bytes()
}

/** Decodes `sizes.length` nodes; node i's positions must lie below sizes[i] (the hashes the client sent for it). */
export function decodeReconciledBlock (bytes: Uint8Array, sizes: readonly number[]): ReconciledNode[] {
  const r = new ByteReader(bytes, 'reconciled block')
  const out: ReconciledNode[] = []
  for (const size of sizes) {
    const count = r.varint()
    const sum = r.u64()
    const n = r.varint()
    if (n > size) throw new MalformedMessageError(`reconciled block: ${n} unmatched positions for ${size} hashes`)
    const unmatched: number[] = []
    let prev = 0
    for (let i = 0; i < n; i++) {
      const delta = r.varint()
      if (i > 0 && delta === 0) throw new MalformedMessageError('reconciled block: position named twice')
      prev += delta
      if (prev >= size) throw new MalformedMessageError(`reconciled block: position ${prev} is outside ${size} hashes`)
      unmatched.push(prev)
    }
    out.push({ count, sum, unmatched })
  }
  r.end()
  return out
}
