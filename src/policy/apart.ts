/**
 * Turns the caller's difference into checked rows the rules can work on:
 * sorted by key (so every later step sees one order whatever order the
 * difference was found in), each side decoded once, its key checked, its
 * digest and event time taken.
 */
import type { RowCodec, Value } from '../digest/row-codec.ts'
import { hexOf } from '../util/bytes.ts'
import { objectArray } from '../util/object-array.ts'
import { PolicyInputError } from './errors.ts'
import { compareBytes } from './restore.ts'
import type { DriftRow } from './types.ts'

/** One key on which the two sides really differ. */
export interface ApartRow {
  key: Uint8Array
  keyHex: string
  sot: Uint8Array | undefined
  local: Uint8Array | undefined
  /** Row digests; undefined for an absent side. */
  sotDigest: bigint | undefined
  localDigest: bigint | undefined
  /** Event times in UTC ms; undefined when the schema has no event-time column, the side is absent or its value is null. */
  sotTime: number | undefined
  localTime: number | undefined
}

/**
 * Checked, sorted rows. A row whose two sides have the same digest is left
 * out: they differ only in ignored columns, or the replica caught up between
 * narrowing and this call; either way nothing is apart.
 */
export function apartRows (codec: RowCodec, rows: readonly DriftRow[]): ApartRow[] {
  // (general arrays from the start, here and in sortedByKey: see objectArray)
  const out = objectArray<ApartRow>()
  let previous: Uint8Array | undefined
  for (const row of sortedByKey(rows)) {
    const keyHex = hexOf(row.key)
    if (previous !== undefined && compareBytes(previous, row.key) === 0) throw new PolicyInputError(`key ${keyHex} is in the difference twice`)
    previous = row.key
    if (row.sot === undefined && row.local === undefined) throw new PolicyInputError(`key ${keyHex}: neither a SoT row nor a local row`)
    const sot = row.sot === undefined ? undefined : side(codec, row.key, keyHex, row.sot, 'SoT')
    const local = row.local === undefined ? undefined : side(codec, row.key, keyHex, row.local, 'local', sot)
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

/** Bytes of a key compared as one number before any byte by byte: 6 fit a double exactly. */
const KEY_PREFIX_BYTES = 6

/** A key's first KEY_PREFIX_BYTES bytes as a number, zeros past its end: keys in this order are in compareBytes order, ties aside. */
function keyPrefix (key: Uint8Array): number {
  let v = 0
  for (let i = 0; i < KEY_PREFIX_BYTES; i++) v = v * 256 + (i < key.length ? key[i]! : 0)
  return v
}

/** The rows sorted by key (compareBytes order); most keys differ within their prefix, so most comparisons are of two numbers. */
function sortedByKey (rows: readonly DriftRow[]): DriftRow[] {
  const keyed = objectArray<{ row: DriftRow, prefix: number }>()
  for (const row of rows) keyed.push({ row, prefix: keyPrefix(row.key) })
  keyed.sort((a, b) => (a.prefix - b.prefix) || compareBytes(a.row.key, b.row.key))
  const sorted = objectArray<DriftRow>()
  for (const k of keyed) sorted.push(k.row)
  return sorted
}

interface Side { digest: bigint, time: number | undefined, values: Value[] }

/**
 * One side of a row, checked: it decodes, it is filed under its key, its
 * event time is a time. `checked` is the other side when it passed already:
 * key values identical to its encode to the same key, so they are not
 * encoded again.
 */
function side (codec: RowCodec, key: Uint8Array, keyHex: string, bytes: Uint8Array, which: string, checked?: Side): Side {
  let values: Value[]
  let digest: bigint
  try {
    // only the key and the event time are looked at (both checked as a whole decode would)
    values = codec.decodeKeyAndTime(bytes)
    digest = codec.rowDigest(bytes)
  } catch (err) {
    throw new PolicyInputError(`key ${keyHex}: the ${which} row does not decode under the dataset schema: ${(err as Error).message}`, { cause: err })
  }
  // a row filed under another key would make the fix write or delete the wrong row; the key is encoded to compare
  // only where that is not known otherwise (key values identical to the other side's, or found in the row's encoding)
  const known = (checked !== undefined && codec.keyPositions.every(p => Object.is(values[p], checked.values[p]))) || codec.isFiledUnder(bytes, key)
  if (!known && compareBytes(codec.keyOfValues(values), key) !== 0) throw new PolicyInputError(`key ${keyHex}: the ${which} row has another key`)
  return { digest, time: eventTimeOf(codec, values, keyHex, which), values }
}

/**
 * The event time of a row in UTC ms, or undefined when it has none (null
 * counts as the oldest). Timestamps are canonical UTC ms numbers, or
 * microseconds for a column of `precision: us` (given here as ms with a
 * fraction, which keeps their order); an integer column beyond 2^53 decodes
 * as a bigint and is compared at double precision.
 */
function eventTimeOf (codec: RowCodec, values: readonly Value[], keyHex: string, which: string): number | undefined {
  const position = codec.eventTimePosition
  if (position === undefined) return undefined
  const v = values[position]
  if (v === null || v === undefined) return undefined
  if (typeof v === 'bigint' || (typeof v === 'number' && !Number.isNaN(v))) return codec.eventTime(values)
  const column = codec.columns[position]?.name ?? String(position)
  throw new PolicyInputError(`key ${keyHex}: the ${which} row's event time (column "${column}") is ${typeof v === 'number' ? 'NaN' : `a ${v instanceof Uint8Array ? 'bytes' : typeof v} value`}, not a time`)
}
