/**
 * The implementations that faster ones replaced, kept as they were so that
 * property tests can hold the new ones to exactly the old answers: the same
 * values, the same rows, the same errors with the same messages.
 */
import { MalformedMessageError, MessageTooDeepError, InvalidSourceRowError } from '../../src/errors.ts'
import { u64Hex } from '../../src/digest/hash.ts'
import { normalizeValue, packValues, type RowCodec, type Value } from '../../src/digest/row-codec.ts'
import { PolicyInputError } from '../../src/policy/errors.ts'
import type { ApartRow } from '../../src/policy/apart.ts'
import type { DriftRow } from '../../src/policy/types.ts'
import type { IndexEntry } from '../../src/sync/replica-view.ts'
import type { HashWidth, ListedHash } from '../../src/sync/wire.ts'

const compareBytes = (a: Uint8Array, b: Uint8Array): number => Buffer.compare(a, b)
const hexOf = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')

interface MsgpackShapeLimits {
  /** Containers nested in containers; the top-level value is at depth 1 when it is a container. */
  maxDepth: number
  /** Longest map key, in bytes. */
  maxKeyBytes?: number
}

const DEFAULT_MAX_KEY_BYTES = 256

/**
 * Throws MalformedMessageError or MessageTooDeepError (naming `what`) unless
 * `bytes` hold exactly one plain msgpack value within the limits.
 */
export function oldCheckMsgpackShape (bytes: Uint8Array, what: string, limits: MsgpackShapeLimits): void {
  const maxKey = limits.maxKeyBytes ?? DEFAULT_MAX_KEY_BYTES
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const end = bytes.length
  let pos = 0
  // per open container: items still to read in it (a map counts keys and values), and whether it is a map
  const left: number[] = []
  const isMap: boolean[] = []

  const fail = (message: string): never => { throw new MalformedMessageError(`${what}: not valid msgpack (${message})`) }
  const need = (n: number): void => { if (end - pos < n) fail(`truncated at byte ${pos}`) }
  const u8 = (): number => { need(1); return bytes[pos++]! }
  const u16 = (): number => { need(2); const v = view.getUint16(pos); pos += 2; return v }
  const u32 = (): number => { need(4); const v = view.getUint32(pos); pos += 4; return v }
  const skip = (n: number): void => { need(n); pos += n }
  const open = (items: number, map: boolean): void => {
    // each item takes at least one byte: a count the remaining bytes cannot hold is a lie
    if (items > end - pos) fail(`a ${map ? 'map' : 'array'} at byte ${pos} declares ${map ? items / 2 : items} entries but only ${end - pos} bytes follow`)
    if (left.length + 1 > limits.maxDepth) throw new MessageTooDeepError(what, limits.maxDepth)
    if (items > 0) { left.push(items); isMap.push(map) }
  }

  let first = true
  for (;;) {
    while (left.length > 0 && left[left.length - 1] === 0) { left.pop(); isMap.pop() }
    if (!first && left.length === 0) break
    first = false
    let asKey = false
    if (left.length > 0) {
      const top = left.length - 1
      // a map holds an even count of items, keys first: an even count left means a key comes next
      asKey = isMap[top]! && left[top]! % 2 === 0
      left[top]!--
    }
    const start = pos
    const b = u8()
    if (asKey) {
      let n: number
      if (b >= 0xa0 && b <= 0xbf) n = b & 0x1f
      else if (b === 0xd9) n = u8()
      else if (b === 0xda) n = u16()
      else return fail(`map key at byte ${start} is not a string`)
      if (n > maxKey) fail(`map key at byte ${start} is longer than ${maxKey} bytes`)
      skip(n)
    } else if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) {
      // fixint, nil, false, true
    } else if (b >= 0x80 && b <= 0x8f) open(2 * (b & 0x0f), true)
    else if (b >= 0x90 && b <= 0x9f) open(b & 0x0f, false)
    else if (b >= 0xa0 && b <= 0xbf) skip(b & 0x1f)
    else {
      switch (b) {
        case 0xc4: case 0xd9: skip(u8()); break
        case 0xc5: case 0xda: skip(u16()); break
        case 0xc6: case 0xdb: { const n = u32(); if (n > end - pos) fail(`a ${b === 0xc6 ? 'binary' : 'string'} at byte ${start} declares ${n} bytes but only ${end - pos} follow`); skip(n); break }
        case 0xca: skip(4); break
        case 0xcb: skip(8); break
        case 0xcc: case 0xd0: skip(1); break
        case 0xcd: case 0xd1: skip(2); break
        case 0xce: case 0xd2: skip(4); break
        case 0xcf: case 0xd3: skip(8); break
        case 0xdc: open(u16(), false); break
        case 0xdd: open(u32(), false); break
        case 0xde: open(2 * u16(), true); break
        case 0xdf: open(2 * u32(), true); break
        case 0xc1: fail(`byte ${start} is 0xc1, which msgpack never uses`); break
        default: fail(`extension type 0x${b.toString(16)} at byte ${start} is not accepted`)
      }
    }
  }
  if (pos !== end) fail(`${end - pos} bytes follow the message`)
}

/** ECMAScript dates span ±8.64e15 ms around 1970. */
const MAX_DATE_MS = 8.64e15

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** checkCanonicalKey as it was before keys were told canonical from their bytes: decode, encode again, compare. */
export function oldCheckCanonicalKey (codec: RowCodec, key: Uint8Array): void {
  let again: Uint8Array
  try {
    oldCheckMsgpackShape(key, 'key', { maxDepth: 1 })
    again = codec.encodeKey(codec.decodeKey(key))
  } catch (err) {
    throw new MalformedMessageError(`keys: a key that does not decode under the schema: ${(err as Error).message}`)
  }
  if (Buffer.compare(again, key) !== 0) throw new MalformedMessageError('keys: a key that is not in the canonical encoding of its values')
}

/** Returns the row's values, or throws InvalidSourceRowError naming what is wrong. */
export function oldCheckCanonicalRow (codec: RowCodec, row: Uint8Array): Value[] {
  let values: Value[]
  try {
    // a row is one flat array: nothing nested, so nothing for the decoder to recurse into
    oldCheckMsgpackShape(row, 'row', { maxDepth: 1 })
    values = codec.decodeValues(row)
  } catch (err) {
    throw new InvalidSourceRowError(`the source sent a row that does not decode: ${(err as Error).message}`)
  }
  const canonical = new Array<Value>(values.length)
  for (let i = 0; i < values.length; i++) {
    const col = codec.columns[i]!
    const v = values[i]
    if (v === null || v === undefined) {
      const nullable = col.nullable ?? !codec.keyPositions.includes(i)
      if (!nullable) throw new InvalidSourceRowError(`the source sent a row with a null in column "${col.name}", which is not nullable`)
      canonical[i] = null
      continue
    }
    // a finite millisecond count beyond the range of dates encodes, but no store could hold it as a timestamp
    // (microseconds: a number or a bigint within the range of dates times 1000)
    const inRange = col.precision === 'us'
      ? (typeof v === 'number' && Math.abs(v) <= MAX_DATE_MS * 1000) || (typeof v === 'bigint' && v <= BigInt(MAX_DATE_MS) * 1000n && v >= -BigInt(MAX_DATE_MS) * 1000n)
      : typeof v === 'number' && Math.abs(v) <= MAX_DATE_MS
    if (col.type === 'timestamp' && !inRange) throw new InvalidSourceRowError(`the source sent a row whose column "${col.name}" is not a timestamp within the range of dates`)
    try {
      canonical[i] = normalizeValue(col.type, v, col.name, col)
    } catch (err) {
      throw new InvalidSourceRowError(`the source sent a row whose column "${col.name}" is not a ${col.type}: ${(err as Error).message}`)
    }
  }
  if (!sameBytes(packValues(canonical), row)) throw new InvalidSourceRowError('the source sent a row that is not in the canonical encoding of its values')
  return values
}

/** An ApartRow as it was: digests in hex. */
type OldApartRow = Omit<ApartRow, 'sotDigest' | 'localDigest'> & { sotDigest: string | undefined, localDigest: string | undefined }

export function oldApartRows (codec: RowCodec, rows: readonly DriftRow[]): OldApartRow[] {
  const sorted = [...rows].sort((a, b) => compareBytes(a.key, b.key))
  const out: OldApartRow[] = []
  let previous: Uint8Array | undefined
  for (const row of sorted) {
    const keyHex = hexOf(row.key)
    if (previous !== undefined && compareBytes(previous, row.key) === 0) throw new PolicyInputError(`key ${keyHex} is in the difference twice`)
    previous = row.key
    if (row.sot === undefined && row.local === undefined) throw new PolicyInputError(`key ${keyHex}: neither a SoT row nor a local row`)
    const sot = row.sot === undefined ? undefined : side(codec, row.key, keyHex, row.sot, 'SoT')
    const local = row.local === undefined ? undefined : side(codec, row.key, keyHex, row.local, 'local')
    if (sot !== undefined && local !== undefined && sot.digest === local.digest) continue
    out.push({
      key: row.key,
      keyHex,
      sot: row.sot,
      local: row.local,
      sotDigest: sot?.digest,
      localDigest: local?.digest,
      sotTime: sot?.time,
      localTime: local?.time
    })
  }
  return out
}

function side (codec: RowCodec, key: Uint8Array, keyHex: string, bytes: Uint8Array, which: string): { digest: string, time: number | undefined } {
  let values: Value[]
  let digest: bigint
  try {
    values = codec.decodeValues(bytes)
    digest = codec.rowDigest(bytes)
  } catch (err) {
    throw new PolicyInputError(`key ${keyHex}: the ${which} row does not decode under the dataset schema: ${(err as Error).message}`, { cause: err })
  }
  // a row filed under another key would make the fix write or delete the wrong row
  if (compareBytes(codec.keyOfValues(values), key) !== 0) throw new PolicyInputError(`key ${keyHex}: the ${which} row has another key`)
  return { digest: u64Hex(digest), time: eventTimeOf(codec, values, keyHex, which) }
}

/**
 * The event time of a row, or undefined when it has none (null counts as the
 * oldest). Timestamps are canonical UTC ms numbers; an integer column beyond
 * 2^53 decodes as a bigint and is compared at double precision.
 */
function eventTimeOf (codec: RowCodec, values: readonly Value[], keyHex: string, which: string): number | undefined {
  const position = codec.eventTimePosition
  if (position === undefined) return undefined
  const v = values[position]
  if (v === null || v === undefined) return undefined
  if (typeof v === 'bigint') return Number(v)
  if (typeof v === 'number' && !Number.isNaN(v)) return v
  const column = codec.columns[position]?.name ?? String(position)
  throw new PolicyInputError(`key ${keyHex}: the ${which} row's event time (column "${column}") is ${typeof v === 'number' ? 'NaN' : `a ${v instanceof Uint8Array ? 'bytes' : typeof v} value`}, not a time`)
}

export function oldListedHash (entry: bigint, width: HashWidth): ListedHash {
  return width === 8 ? entry : Number(entry >> BigInt(64 - 8 * width))
}

/** The responder's matching of a node's entries against the client's hashes, as it was inline. */
export function oldMatch (hashes: readonly ListedHash[], entries: readonly IndexEntry[], width: HashWidth): { toSend: IndexEntry[], unmatched: number[] } {
  const positions = new Map<ListedHash, number[]>()
  hashes.forEach((h, p) => { const at = positions.get(h); if (at === undefined) positions.set(h, [p]); else at.push(p) })
  const toSend: IndexEntry[] = []
  for (const e of entries) {
    const at = positions.get(oldListedHash(e.entry, width))
    if (at !== undefined && at.length > 0) at.pop(); else toSend.push(e)
  }
  const unmatched: number[] = []
  for (const at of positions.values()) unmatched.push(...at)
  return { toSend, unmatched: unmatched.sort((a, b) => a - b) }
}

function beBytes (value: number, width: number): number[] {
  const out: number[] = []
  for (let i = width - 1; i >= 0; i--) { out[i] = value & 0xff; value = Math.floor(value / 256) }
  return out
}

function u64Bytes (value: bigint): number[] {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, value))
  return [...b]
}

function varint (value: number): number[] {
  const out: number[] = []
  while (value >= 0x80) { out.push((value % 0x80) | 0x80); value = Math.floor(value / 0x80) }
  out.push(value)
  return out
}

/** The reconcile block as it was written: truncated hashes through Number(entry >> shift). */
export function oldEncodeReconcileBlock (nodes: ReadonlyArray<{ index: number, entries: readonly bigint[] }>, width: HashWidth): Uint8Array {
  const out: number[] = []
  let prev = 0
  for (const node of [...nodes].sort((a, b) => a.index - b.index)) {
    out.push(...varint(node.index - prev)); prev = node.index
    out.push(...varint(node.entries.length))
    for (const e of node.entries) out.push(...(width === 8 ? u64Bytes(e) : beBytes(oldListedHash(e, width) as number, width)))
  }
  return Uint8Array.from(out)
}

/** The children block as it was written: each sum masked with bigints. */
export function oldEncodeChildSums (sums: readonly bigint[], width: 2 | 3 | 8): Uint8Array {
  const out: number[] = []
  for (const s of sums) out.push(...(width === 8 ? u64Bytes(s) : beBytes(Number(s & ((1n << BigInt(8 * width)) - 1n)), width)))
  return Uint8Array.from(out)
}
