/**
 * Rows from the network are written into the replica as they arrive, so each
 * must be exactly what this side's codec would have written for the same
 * values: a flat msgpack array of the schema's columns, every value of its
 * column's type, null only where the column allows it, in the canonical
 * encoding. A row that fails is never written: it would be a row no store
 * could read back, a value of the wrong type in a typed store, or a second
 * encoding of a value that digests differently on every other replica.
 */
import { InvalidSourceRowError } from '../errors.ts'
import { normalizeValue, packValues, type RowCodec, type Value } from '../digest/row-codec.ts'
import type { ColumnType } from '../digest/schema.ts'
import { checkMsgpackShape } from './msgpack-shape.ts'

/** ECMAScript dates span ±8.64e15 ms around 1970. */
const MAX_DATE_MS = 8.64e15

/** Exactly the strings canonicalDecimal gives back unchanged: no sign but a minus on a non-zero value, no leading or trailing zeros, no bare point. */
const CANONICAL_DECIMAL = /^(?:-?[1-9]\d*(?:\.\d*[1-9])?|0(?:\.\d*[1-9])?|-0\.\d*[1-9])$/

/**
 * Whether normalizeValue would give `v` itself back (Object.is) for a column
 * of this type, told without calling it: most values of a canonical row are
 * already normal, and normalizing each (a decimal through regular
 * expressions and string building) costs more than the check. False only
 * means "normalize it".
 */
export function alreadyNormal (type: ColumnType, v: Value): boolean {
  switch (type) {
    case 'integer': return typeof v === 'number' && Number.isSafeInteger(v) && !Object.is(v, -0)
    case 'float': return typeof v === 'number' && !Object.is(v, -0)
    case 'timestamp': return typeof v === 'number' && Number.isInteger(v)
    case 'string': return typeof v === 'string'
    case 'boolean': return typeof v === 'boolean'
    case 'decimal': return typeof v === 'string' && CANONICAL_DECIMAL.test(v)
    case 'bytes': return v instanceof Uint8Array && v.constructor === Uint8Array
    case 'json': return false
  }
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
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
    if (col.type === 'timestamp' && !(typeof v === 'number' && Math.abs(v) <= MAX_DATE_MS)) throw new InvalidSourceRowError(`the source sent a row whose column "${col.name}" is not a timestamp within the range of dates`)
    if (alreadyNormal(col.type, v)) { canonical[i] = v; continue }
    try {
      canonical[i] = normalizeValue(col.type, v, col.name)
    } catch (err) {
      throw new InvalidSourceRowError(`the source sent a row whose column "${col.name}" is not a ${col.type}: ${(err as Error).message}`)
    }
  }
  if (!sameBytes(packValues(canonical), row)) throw new InvalidSourceRowError('the source sent a row that is not in the canonical encoding of its values')
  return values
}
