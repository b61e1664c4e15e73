/**
 * Encoded rows of every kind a check on rows must answer for: canonical rows
 * of a schema, arrays of values of the wrong types or in other encodings of
 * the right ones (small integers as bigint or float, -0, NaN, decimals with
 * zeros to spare, timestamps out of range, non-canonical JSON, Buffers), and
 * any of those with a byte changed, cut short or followed by more.
 */
import fc from 'fast-check'
import { Packr } from 'msgpackr'
import { RowCodec, type Row } from '../../src/digest/row-codec.ts'
import type { ColumnSpec, DatasetSchema } from '../../src/digest/schema.ts'

/** Every column type; `key` is [region, id], `at` the event time, `note` nullable. */
export const allTypesSchema: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'region', type: 'string' },
    { name: 'id', type: 'integer' },
    { name: 'price', type: 'float' },
    { name: 'total', type: 'decimal' },
    { name: 'active', type: 'boolean' },
    { name: 'at', type: 'timestamp' },
    { name: 'attrs', type: 'json' },
    { name: 'blob', type: 'bytes' },
    { name: 'note', type: 'string', nullable: true }
  ],
  primaryKey: ['region', 'id'],
  ignoreColumns: [],
  eventTimeColumn: 'at'
}
export const allTypesCodec = new RowCodec(allTypesSchema)

/** One integer key and a timestamp: the shape of most tables, which the fast paths read without decoding. */
export const intKeySchema: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'name', type: 'string' },
    { name: 'amount', type: 'decimal' },
    { name: 'at', type: 'timestamp' },
    { name: 'note', type: 'string', nullable: true }
  ],
  primaryKey: ['id'],
  ignoreColumns: [],
  eventTimeColumn: 'at'
}
export const intKeyCodec = new RowCodec(intKeySchema)

/** More than 15 columns: the row is an array 16, not a fixarray. */
export const wideSchema: DatasetSchema = {
  version: 1,
  columns: Array.from({ length: 17 }, (_, i) => ({ name: `c${i}`, type: i % 3 === 0 ? 'integer' as const : 'string' as const, nullable: i > 1 })),
  primaryKey: ['c0', 'c1'],
  ignoreColumns: [],
  eventTimeColumn: 'c3'
}
export const wideCodec = new RowCodec(wideSchema)

/** Microsecond timestamps (`precision: us`), one of them in the key: numbers within 2^53, bigints beyond. */
export const microsSchema: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'at', type: 'timestamp', precision: 'us' },
    { name: 'id', type: 'integer' },
    { name: 'seen', type: 'timestamp', precision: 'us', nullable: true },
    { name: 'label', type: 'string' }
  ],
  primaryKey: ['at', 'id'],
  ignoreColumns: [],
  eventTimeColumn: 'seen'
}
export const microsCodec = new RowCodec(microsSchema)

/** Encodes any values as they are (the codec's own options: no records, bigints as 64-bit integers). */
const rawPackr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'bigint', mapsAsObjects: true })
export const packRaw = (values: unknown): Uint8Array => rawPackr.pack(values)

const decimalText = fc.oneof(
  fc.stringMatching(/^[+-]?\d{0,4}(\.\d{0,4})?$/),
  fc.constantFrom('0', '-0', '0.0', '-0.5', '00.10', '1.', '.5', ' 1', '+1', '1e3', 'abc', '-', '', '10', '-10.01')
)
const integerValue = fc.oneof(fc.integer(), fc.integer({ min: -200, max: 200 }), fc.maxSafeInteger(), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }))
const timeValue = fc.oneof(fc.integer({ min: -8.64e15, max: 8.64e15 }), fc.double(), fc.constantFrom(8.64e15 + 1, -0, 1.5, Number.NaN))
const MAX_DATE_US = 8_640_000_000_000_000_000n
/** Microseconds: canonical numbers and bigints, a safe value as a bigint, beyond the range of dates, and the millisecond forms. */
const microsValue = fc.oneof(timeValue, fc.maxSafeInteger(), fc.bigInt({ min: -MAX_DATE_US - 5n, max: MAX_DATE_US + 5n }),
  fc.constantFrom(2n ** 53n - 1n, 2n ** 53n, -(2n ** 53n), 5n, MAX_DATE_US, MAX_DATE_US + 1n))

/** A plausible value for a column of each type, often already canonical, sometimes not. */
function valueFor (column: ColumnSpec): fc.Arbitrary<unknown> {
  if (column.precision === 'us') return microsValue
  switch (column.type) {
    case 'integer': return integerValue
    case 'float': return fc.oneof(fc.double(), fc.integer(), fc.constant(-0))
    case 'decimal': return decimalText
    case 'string': return fc.string({ maxLength: 40 })
    case 'boolean': return fc.oneof(fc.boolean(), fc.constantFrom(0, 1, 't'))
    case 'timestamp': return timeValue
    case 'json': return fc.oneof(fc.json(), fc.constantFrom('{"b":1,"a":2}', '{"a":2,"b":1}', '[1, 2]', 'nope'))
    case 'bytes': return fc.oneof(fc.uint8Array({ maxLength: 12 }), fc.uint8Array({ maxLength: 12 }).map(b => Buffer.from(b)))
    default: return fc.anything()
  }
}

/** A row object for the schema whose values normalize (so encodeRow gives a canonical row). */
function canonicalRow (codec: RowCodec): fc.Arbitrary<Uint8Array> {
  const fields: Record<string, fc.Arbitrary<unknown>> = {}
  for (const c of codec.columns) {
    const base: fc.Arbitrary<unknown> = c.type === 'integer' ? fc.oneof(fc.integer(), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }))
      : c.type === 'float' ? fc.double({ noNaN: true })
        : c.type === 'decimal' ? fc.oneof(fc.integer().map(String), fc.integer().map(n => String(n / 100)))
          : c.type === 'boolean' ? fc.boolean()
            : c.type === 'timestamp' && c.precision === 'us' ? fc.oneof(fc.maxSafeInteger(), fc.bigInt({ min: -MAX_DATE_US, max: MAX_DATE_US }))
              : c.type === 'timestamp' ? fc.integer({ min: -8.64e15, max: 8.64e15 })
              : c.type === 'json' ? fc.json()
                : c.type === 'bytes' ? fc.uint8Array({ maxLength: 12 })
                  : fc.string({ maxLength: 40 })
    const keyOrRequired = codec.keyPositions.includes(codec.columns.indexOf(c)) || c.nullable === false
    fields[c.name] = keyOrRequired ? base : fc.option(base, { nil: null })
  }
  return fc.record(fields).map(r => codec.encodeRow(r as Row))
}

/** The row's values, each as given or swapped for a plausible other value of its type (or of no type). */
function otherEncoding (codec: RowCodec): fc.Arbitrary<Uint8Array> {
  return fc.tuple(...codec.columns.map(c => fc.oneof({ weight: 4, arbitrary: valueFor(c) }, { weight: 1, arbitrary: fc.constant(null) }), { weight: 1, arbitrary: fc.anything() }))
    .chain(values => fc.constantFrom(values, values.slice(1), [...values, 1]))
    .map(values => packRaw(values))
}

/** Bytes changed: one byte set to another value, cut short, or more appended. */
function mutated (bytes: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(bytes, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'cut', 'append')).map(([b, at, v, how]) => {
    if (b.length === 0) return b
    const i = at % b.length
    if (how === 'cut') return b.slice(0, i)
    if (how === 'append') return Uint8Array.from([...b, v])
    const out = Uint8Array.from(b)
    out[i] = v
    return out
  })
}

/** Encoded rows for a codec's schema, of every kind above. */
export function rowBytes (codec: RowCodec): fc.Arbitrary<Uint8Array> {
  const canonical = canonicalRow(codec)
  const other = otherEncoding(codec)
  return fc.oneof(canonical, other, mutated(canonical), mutated(other), fc.uint8Array({ maxLength: 64 }))
}

/** Canonical rows only. */
export const canonicalRowBytes = canonicalRow

/** Encoded keys for a codec's schema: canonical ones, other encodings of key values (or other arity), any of those changed, and noise. */
export function keyBytes (codec: RowCodec): fc.Arbitrary<Uint8Array> {
  const canonical = canonicalRow(codec).map(row => codec.keyOfEncodedRow(row))
  const keyColumns = codec.keyPositions.map(p => codec.columns[p]!)
  const other = fc.tuple(...keyColumns.map(c => fc.oneof({ weight: 4, arbitrary: valueFor(c) }, { weight: 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.anything() })))
    .chain(values => fc.constantFrom(values, values.slice(1), [...values, 1]))
    .map(values => packRaw(values))
  return fc.oneof(canonical, other, mutated(canonical), mutated(other), fc.uint8Array({ maxLength: 24 }))
}
