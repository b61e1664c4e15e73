/**
 * Rows from the network are written into the replica as they arrive, so each
 * must be exactly what this side's codec would have written for the same
 * values: a flat msgpack array of the schema's columns, every value of its
 * column's type, null only where the column allows it, in the canonical
 * encoding. A row that fails is never written: it would be a row no store
 * could read back, a value of the wrong type in a typed store, or a second
 * encoding of a value that digests differently on every other replica.
 */
import { InvalidSourceRowError, MalformedMessageError } from '../errors.ts'
import { isCanonicalDecimal } from '../digest/decimal.ts'
import { normalizeValue, packValues, type RowCodec, type Value, type ValueForm } from '../digest/row-codec.ts'
import { isCanonicalNumeric, readNumeric, scalarOffsets } from '../digest/row-scan.ts'
import type { ColumnType } from '../digest/schema.ts'
import { isCanonicalMicros, MAX_DATE_MS, withinDates } from '../digest/timestamp.ts'
import { latin1Of, sameBytes } from '../util/bytes.ts'
import { checkMsgpackShape } from './msgpack-shape.ts'

/**
 * Whether normalizeValue would give `v` itself back (Object.is) for a column
 * of this type, told without calling it: most values of a canonical row are
 * already normal, and normalizing each (a decimal through regular
 * expressions and string building) costs more than the check. False only
 * means "normalize it".
 */
export function alreadyNormal (type: ColumnType, v: Value, form: ValueForm = {}): boolean {
  switch (type) {
    case 'integer': return typeof v === 'number' && Number.isSafeInteger(v) && !Object.is(v, -0)
    case 'float': return typeof v === 'number' && !Object.is(v, -0)
    case 'timestamp': return form.precision === 'us' ? isCanonicalMicros(v) : typeof v === 'number' && Number.isInteger(v)
    case 'string': return typeof v === 'string'
    case 'boolean': return typeof v === 'boolean'
    case 'decimal': return typeof v === 'string' && isCanonicalDecimal(v, form.keepScale === true)
    case 'bytes': return v instanceof Uint8Array && v.constructor === Uint8Array
    case 'json': return false
  }
}

/**
 * A key a peer names (a replica asking about its suspects) must be exactly
 * what this codec writes for its values: it is read from the store by its
 * values, and a second encoding of the same values would be a second key.
 * Throws MalformedMessageError naming what is wrong.
 */
export function checkCanonicalKey (codec: RowCodec, key: Uint8Array): void {
  // most keys are told canonical from their bytes alone, without decoding and encoding them again
  if (plainlyCanonicalKey(codec, key)) return
  let again: Uint8Array
  try {
    checkMsgpackShape(key, 'key', { maxDepth: 1 })
    again = codec.encodeKey(codec.decodeKey(key))
  } catch (err) {
    throw new MalformedMessageError(`keys: a key that does not decode under the schema: ${(err as Error).message}`)
  }
  if (!sameBytes(again, key)) throw new MalformedMessageError('keys: a key that is not in the canonical encoding of its values')
}

/** Returns the row's values, or throws InvalidSourceRowError naming what is wrong. */
export function checkCanonicalRow (codec: RowCodec, row: Uint8Array): Value[] {
  let values: Value[]
  try {
    // a row is one flat array: nothing nested, so nothing for the decoder to recurse into
    checkMsgpackShape(row, 'row', { maxDepth: 1 })
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
    if (col.type === 'timestamp' && !withinDates(v, col.precision)) {
      throw new InvalidSourceRowError(`the source sent a row whose column "${col.name}" is not a timestamp within the range of dates`)
    }
    if (alreadyNormal(col.type, v, col)) { canonical[i] = v; continue }
    try {
      canonical[i] = normalizeValue(col.type, v, col.name, col)
    } catch (err) {
      throw new InvalidSourceRowError(`the source sent a row whose column "${col.name}" is not a ${col.type}: ${(err as Error).message}`)
    }
  }
  if (!sameBytes(packValues(canonical), row)) throw new InvalidSourceRowError('the source sent a row that is not in the canonical encoding of its values')
  return values
}

/**
 * Throws exactly when checkCanonicalRow throws, with its error; most rows
 * are told canonical from their bytes alone (plainlyCanonical) and are not
 * decoded, normalized and encoded again to compare. For rows whose values
 * the caller does not need.
 */
export function assertCanonicalRow (codec: RowCodec, row: Uint8Array): void {
  if (!plainlyCanonical(codec, row)) checkCanonicalRow(codec, row)
}

/**
 * Whether the string or binary starting at `at` has the shortest header for
 * its length (the only one the encoder writes); returns where its body
 * starts, or -1 for another header or anything else.
 */
function shortestBody (row: Uint8Array, at: number, binary: boolean): number {
  const b = row[at]!
  if (!binary && b >= 0xa0 && b <= 0xbf) return at + 1
  // a length in one, two or four bytes: each only for lengths the shorter ones cannot hold (bin 8 from 0, str 8 from 32)
  if (b === (binary ? 0xc4 : 0xd9)) return row[at + 1]! >= (binary ? 0 : 0x20) ? at + 2 : -1
  if (b === (binary ? 0xc5 : 0xda)) return ((row[at + 1]! << 8) | row[at + 2]!) >= 0x100 ? at + 3 : -1
  if (b === (binary ? 0xc6 : 0xdb)) return row[at + 1]! * 0x1000000 + ((row[at + 2]! << 16) | (row[at + 3]! << 8) | row[at + 4]!) >= 0x10000 ? at + 5 : -1
  return -1
}

function isAscii (row: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (row[i]! >= 0x80) return false
  return true
}

/** A value's column as plainlyCanonicalValues looks at it. */
interface ScalarSpec { type: ColumnType, nullable: boolean, micros: boolean, keepScale: boolean }

/** Per codec: its columns' specs, and its key columns' (never null), in the order the encodings hold them. */
const specsByCodec = new WeakMap<RowCodec, { row: ScalarSpec[], key: ScalarSpec[] }>()

function specsOf (codec: RowCodec): { row: ScalarSpec[], key: ScalarSpec[] } {
  let specs = specsByCodec.get(codec)
  if (specs === undefined) {
    const row = codec.columns.map((col, i) => ({ type: col.type, nullable: col.nullable ?? !codec.keyPositions.includes(i), micros: col.precision === 'us', keepScale: col.keepScale === true }))
    specs = { row, key: codec.keyPositions.map(p => ({ ...row[p]!, nullable: false })) }
    specsByCodec.set(codec, specs)
  }
  return specs
}

/**
 * True when the row is certainly what checkCanonicalRow accepts, read from
 * its bytes alone: a flat array of exactly the schema's columns, each value
 * in the one encoding the codec writes for it and already normal for its
 * type (integers and timestamps as the encoder writes them, safe and within
 * the range of dates; floats likewise, not -0 or NaN; booleans; ASCII
 * strings and canonical decimals behind the shortest header; binaries behind
 * the shortest header; nulls only where allowed). Every value so encoded
 * decodes to itself and encodes back to its bytes, so the full check would
 * pass. False means "not known this way" (JSON, non-ASCII text, anything
 * unusual): the full check decides and words the error.
 */
export function plainlyCanonical (codec: RowCodec, row: Uint8Array): boolean {
  return plainlyCanonicalValues(specsOf(codec).row, row)
}

/**
 * The same for a key: a flat array of exactly the key columns' values, none
 * null, each so encoded, is what encodeKey writes for the values it decodes
 * to (encodeKey normalizes each as a row's column is), so checkCanonicalKey
 * would pass.
 */
export function plainlyCanonicalKey (codec: RowCodec, key: Uint8Array): boolean {
  return plainlyCanonicalValues(specsOf(codec).key, key)
}

function plainlyCanonicalValues (specs: readonly ScalarSpec[], bytes: Uint8Array): boolean {
  const offsets = scalarOffsets(bytes, specs.length)
  if (offsets === undefined) return false
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i]!
    const at = offsets[i]!
    const end = offsets[i + 1]!
    if (bytes[at] === 0xc0) {
      if (!spec.nullable) return false
      continue
    }
    switch (spec.type) {
      case 'integer': {
        const v = readNumeric(bytes, at)
        const normal = typeof v === 'number' ? Number.isSafeInteger(v) && !Object.is(v, -0) : typeof v === 'bigint' && (v > Number.MAX_SAFE_INTEGER || v < Number.MIN_SAFE_INTEGER)
        if (!normal || !isCanonicalNumeric(bytes, at)) return false
        break
      }
      case 'timestamp': {
        const v = readNumeric(bytes, at)
        const normal = spec.micros ? isCanonicalMicros(v) : typeof v === 'number' && Number.isInteger(v) && Math.abs(v) <= MAX_DATE_MS
        if (!normal || !isCanonicalNumeric(bytes, at)) return false
        break
      }
      case 'float': {
        const v = readNumeric(bytes, at)
        if (typeof v !== 'number' || Object.is(v, -0) || !isCanonicalNumeric(bytes, at)) return false
        break
      }
      case 'boolean':
        if (bytes[at] !== 0xc2 && bytes[at] !== 0xc3) return false
        break
      case 'string':
      case 'decimal': {
        const body = shortestBody(bytes, at, false)
        if (body < 0 || !isAscii(bytes, body, end)) return false
        if (spec.type === 'decimal' && !isCanonicalDecimal(latin1Of(bytes.subarray(body, end)), spec.keepScale)) return false
        break
      }
      case 'bytes':
        if (shortestBody(bytes, at, true) < 0) return false
        break
      default:
        return false
    }
  }
  return true
}
