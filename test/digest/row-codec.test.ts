import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { xxh64 } from '../../src/digest/hash.ts'
import { RowCodec, type Row } from '../../src/digest/row-codec.ts'
import { schemaFingerprint, type DatasetSchema } from '../../src/digest/schema.ts'
import { RowEncodingError } from '../../src/errors.ts'
import { ordersCodec } from '../helpers/datasets.ts'

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

/** Every column type, a composite key and one ignored column. */
const schema: DatasetSchema = {
  version: 3,
  columns: [
    { name: 'region', type: 'string' },
    { name: 'id', type: 'integer' },
    { name: 'price', type: 'float' },
    { name: 'total', type: 'decimal' },
    { name: 'label', type: 'string' },
    { name: 'active', type: 'boolean' },
    { name: 'at', type: 'timestamp' },
    { name: 'attrs', type: 'json' },
    { name: 'blob', type: 'bytes' },
    { name: 'synced_at', type: 'timestamp' }
  ],
  primaryKey: ['region', 'id'],
  ignoreColumns: ['synced_at'],
  eventTimeColumn: 'at'
}
const codec = new RowCodec(schema)

const AT_MS = 1_700_000_000_123
const AT_ISO = '2023-11-14T22:13:20.123Z'

function base (over: Row = {}): Row {
  return {
    region: 'eu',
    id: 42,
    price: 1.25,
    total: '12.5',
    label: 'widget',
    active: true,
    at: new Date(AT_MS),
    attrs: { a: 1, b: { c: [1, 2], d: null } },
    blob: new Uint8Array([1, 2, 3]),
    synced_at: null,
    ...over
  }
}

/** The encoding of base() with one column given as each of `variants`. */
function encodingsOf (column: string, variants: unknown[]): string[] {
  return variants.map(v => hex(codec.encodeRow(base({ [column]: v }))))
}

/** Runs `fn` and returns the RowEncodingError it throws (fails the test otherwise). */
function encodingError (fn: () => unknown): RowEncodingError {
  try { fn() } catch (err) {
    expect(err).toBeInstanceOf(RowEncodingError)
    return err as RowEncodingError
  }
  throw new Error('expected a RowEncodingError, nothing was thrown')
}

describe('row codec: canonical encoding', () => {
  it('encodes integers the same as number, bigint or numeric string', () => {
    const small = encodingsOf('id', [42, 42n, '42', ' 42 ', '+42', '0042'])
    expect(new Set(small).size).toBe(1)
    expect(small[0]).not.toBe(hex(codec.encodeRow(base({ id: 43 }))))
    const negative = encodingsOf('id', [-7, -7n, '-7'])
    expect(new Set(negative).size).toBe(1)
    const zero = encodingsOf('id', [0, -0, 0n, '0', '-0'])
    expect(new Set(zero).size).toBe(1)
    // beyond the safe-integer range, bigint and string agree
    const huge = encodingsOf('id', [2n ** 63n, '9223372036854775808'])
    expect(new Set(huge).size).toBe(1)
    const min = encodingsOf('id', [-(2n ** 63n), '-9223372036854775808'])
    expect(new Set(min).size).toBe(1)
    expect(huge[0]).not.toBe(min[0])
  })

  it('encodes timestamps the same as Date, ISO string, ms number or bigint', () => {
    const variants = encodingsOf('at', [new Date(AT_MS), AT_ISO, '2023-11-15T00:13:20.123+02:00', AT_MS, BigInt(AT_MS), AT_MS + 0.9])
    expect(new Set(variants).size).toBe(1)
    expect(variants[0]).not.toBe(hex(codec.encodeRow(base({ at: AT_MS + 1 }))))
    expect(codec.normalize(base({ at: AT_ISO }))[6]).toBe(AT_MS)
  })

  it('encodes decimals as one canonical string whatever the zeros and sign', () => {
    const twelveFive = encodingsOf('total', ['12.5', '12.50', '0012.5000', '+12.5', 12.5, ' 12.5 '])
    expect(new Set(twelveFive).size).toBe(1)
    const half = encodingsOf('total', ['.5', '0.5', '0.50', '+00.500', 0.5])
    expect(new Set(half).size).toBe(1)
    const zero = encodingsOf('total', ['0', '-0', '-0.000', '000', '0.', 0, 0n, -0])
    expect(new Set(zero).size).toBe(1)
    const integral = encodingsOf('total', ['125', '125.000', 125n, 125, '0125'])
    expect(new Set(integral).size).toBe(1)
    const negative = encodingsOf('total', ['-3.10', '-03.1', -3.1])
    expect(new Set(negative).size).toBe(1)
    expect(new Set([twelveFive[0], half[0], zero[0], integral[0], negative[0], ...encodingsOf('total', ['12.05', '1.25'])]).size).toBe(7)
    expect(codec.normalize(base({ total: '-0012.3400' }))[3]).toBe('-12.34')
  })

  it('encodes JSON with sorted keys whatever the key order or text form', () => {
    const variants = encodingsOf('attrs', [
      { a: 1, b: { c: [1, 2], d: null } },
      { b: { d: null, c: [1, 2] }, a: 1 },
      '{"b":{"d":null,"c":[1,2]},"a":1}',
      ' { "a" : 1 , "b" : { "c" : [ 1, 2 ], "d": null } } '
    ])
    expect(new Set(variants).size).toBe(1)
    // array order is data, not presentation
    expect(variants[0]).not.toBe(hex(codec.encodeRow(base({ attrs: { a: 1, b: { c: [2, 1], d: null } } }))))
    expect(codec.normalize(base({ attrs: { z: { y: 1, x: 2 }, a: [] } }))[7]).toBe('{"a":[],"z":{"x":2,"y":1}}')
  })

  it('encodes Buffer and Uint8Array bytes the same', () => {
    const pooled = Buffer.from([9, 1, 2, 3, 9]).subarray(1, 4) // a view into a larger (pooled) buffer
    expect(pooled.byteOffset).toBeGreaterThan(0)
    const variants = encodingsOf('blob', [new Uint8Array([1, 2, 3]), Buffer.from([1, 2, 3]), pooled, new Uint8Array([0, 1, 2, 3]).subarray(1)])
    expect(new Set(variants).size).toBe(1)
    expect(variants[0]).not.toBe(hex(codec.encodeRow(base({ blob: new Uint8Array([1, 2, 4]) }))))
  })

  it('encodes -0 and 0 floats the same, and numeric forms of a float alike', () => {
    const zero = encodingsOf('price', [0, -0, '0', '-0', 0n])
    expect(new Set(zero).size).toBe(1)
    const onePointTwoFive = encodingsOf('price', [1.25, '1.25', ' 1.25'])
    expect(new Set(onePointTwoFive).size).toBe(1)
    expect(zero[0]).not.toBe(onePointTwoFive[0])
    expect(Object.is(codec.normalize(base({ price: -0 }))[2], 0)).toBe(true)
  })

  it('encodes booleans the same from true/1/"t"/"true" and false/0/"f"/"false"', () => {
    const yes = encodingsOf('active', [true, 1, 't', 'true'])
    const no = encodingsOf('active', [false, 0, 'f', 'false'])
    expect(new Set(yes).size).toBe(1)
    expect(new Set(no).size).toBe(1)
    expect(yes[0]).not.toBe(no[0])
  })

  it('treats null and undefined alike for nullable columns', () => {
    expect(hex(codec.encodeRow(base({ label: null, attrs: undefined })))).toBe(hex(codec.encodeRow(base({ label: undefined, attrs: null }))))
    const { label: _label, attrs: _attrs, ...without } = base()
    expect(hex(codec.encodeRow(without))).toBe(hex(codec.encodeRow(base({ label: null, attrs: null }))))
  })

  it('takes column order from the schema, not from the row object', () => {
    const row = base()
    const reversed: Row = {}
    for (const name of Object.keys(row).reverse()) reversed[name] = row[name]
    expect(Object.keys(reversed)[0]).toBe('synced_at')
    expect(hex(codec.encodeRow(reversed))).toBe(hex(codec.encodeRow(row)))
    const values = codec.decodeValues(codec.encodeRow(reversed))
    expect(values[0]).toBe('eu')
    expect(values[1]).toBe(42)
    expect(values[4]).toBe('widget')
    // the same object under a schema with another column order encodes differently
    const swapped = new RowCodec({ ...schema, columns: [schema.columns[1]!, schema.columns[0]!, ...schema.columns.slice(2)] })
    expect(hex(swapped.encodeRow(row))).not.toBe(hex(codec.encodeRow(row)))
    expect(swapped.decodeValues(swapped.encodeRow(row)).slice(0, 2)).toEqual([42, 'eu'])
  })

  it('ignores extra properties that are not schema columns', () => {
    expect(hex(codec.encodeRow({ ...base(), extra: 'x', other: 1 }))).toBe(hex(codec.encodeRow(base())))
  })

  it('leaves ignored columns out of the row digest but keeps them in the encoded row', () => {
    const a = codec.encodeRow(base({ synced_at: null }))
    const b = codec.encodeRow(base({ synced_at: new Date(5) }))
    const c = codec.encodeRow(base({ synced_at: new Date(6) }))
    expect(hex(a)).not.toBe(hex(b))
    expect(hex(b)).not.toBe(hex(c))
    expect(codec.rowDigest(a)).toBe(codec.rowDigest(b))
    expect(codec.rowDigest(b)).toBe(codec.rowDigest(c))
    expect(codec.decodeRow(b).synced_at).toEqual(new Date(5))
    // a digested column does change the digest
    expect(codec.rowDigest(codec.encodeRow(base({ label: 'other' })))).not.toBe(codec.rowDigest(a))
    // without ignored columns the digest is the hash of the encoded row itself
    const order = ordersCodec.encodeRow({ id: 1, customer: 'c', amount: 2.5, status: 'open', updated_at: new Date(0) })
    expect(ordersCodec.rowDigest(order)).toBe(xxh64(order))
    expect(codec.rowDigest(a)).not.toBe(xxh64(a))
  })

  it('hashes keys from the key columns only', () => {
    const row = base()
    const key = codec.encodeKey(row)
    expect(hex(codec.keyOfEncodedRow(codec.encodeRow(row)))).toBe(hex(key))
    expect(hex(codec.encodeKey({ id: '42', region: 'eu' }))).toBe(hex(key))
    const kh = codec.keyHash(key)
    const others = [base({ price: 99, label: 'x', active: false, attrs: [1], blob: new Uint8Array(0), at: 0, total: '1', synced_at: 7 }), { region: 'eu', id: 42n }]
    for (const other of others) {
      expect(codec.keyHash(codec.encodeKey(other))).toBe(kh)
      expect(codec.keyHash(codec.keyOfEncodedRow(codec.encodeRow({ ...base(), ...other })))).toBe(kh)
    }
    expect(codec.keyHash(codec.encodeKey(base({ id: 43 })))).not.toBe(kh)
    expect(codec.keyHash(codec.encodeKey(base({ region: 'us' })))).not.toBe(kh)
    expect(codec.decodeKey(key)).toEqual({ region: 'eu', id: 42 })
  })

  it('throws RowEncodingError naming the column for a value of the wrong type', () => {
    const cases: Array<[string, unknown]> = [
      ['id', 'forty-two'],
      ['id', 1.5],
      ['id', true],
      ['id', 2n ** 64n],
      ['id', -(2n ** 63n) - 1n],
      ['price', 'cheap'],
      ['price', {}],
      ['total', '1.2.3'],
      ['total', '1e5'],
      ['total', '.'],
      ['total', Number.POSITIVE_INFINITY],
      ['total', true],
      ['label', 5],
      ['active', 'yes'],
      ['active', 2],
      ['at', 'not a date'],
      ['at', new Date(Number.NaN)],
      ['at', true],
      ['blob', 'AQID'],
      ['blob', [1, 2, 3]]
    ]
    for (const [column, value] of cases) {
      const err = encodingError(() => codec.encodeRow(base({ [column]: value })))
      expect(err.code, `${column} = ${String(value)}`).toBe('CONVERGE_ROW_ENCODING')
      expect(err.message).toContain(`"${column}"`)
    }
    // a key column of the wrong type fails encodeKey the same way
    const keyErr = encodingError(() => codec.encodeKey({ region: 'eu', id: 'x' }))
    expect(keyErr.code).toBe('CONVERGE_ROW_ENCODING')
    expect(keyErr.message).toContain('"id"')
  })

  it('throws when a key column is missing', () => {
    const { id: _id, ...noId } = base()
    const err = encodingError(() => codec.encodeRow(noId))
    expect(err.code).toBe('CONVERGE_ROW_ENCODING')
    expect(err.message).toContain('"id"')
    expect(encodingError(() => codec.encodeRow(base({ region: null }))).message).toContain('"region"')
    expect(encodingError(() => codec.encodeKey({ region: 'eu' })).message).toContain('"id"')
    expect(encodingError(() => codec.encodeKey({ id: 1, region: undefined })).message).toContain('"region"')
    // a non-key column declared not nullable is enforced too
    const strict = new RowCodec({ ...schema, columns: schema.columns.map(c => c.name === 'label' ? { ...c, nullable: false } : c) })
    expect(encodingError(() => strict.encodeRow(base({ label: null }))).message).toContain('"label"')
    expect(() => strict.encodeRow(base())).not.toThrow()
  })

  it('rejects schemas it cannot encode', () => {
    expect(encodingError(() => new RowCodec({ ...schema, primaryKey: [] })).code).toBe('CONVERGE_ROW_ENCODING')
    expect(encodingError(() => new RowCodec({ ...schema, primaryKey: ['nope'] })).message).toContain('"nope"')
    expect(encodingError(() => new RowCodec({ ...schema, ignoreColumns: ['id'] })).message).toContain('"id"')
  })

  it('decodes rows back to canonical values that encode to the same bytes', () => {
    const bytes = codec.encodeRow(base({ id: '42', total: '012.50', at: AT_ISO, attrs: { b: 2, a: 1 }, blob: Buffer.from([7, 8]), synced_at: 99 }))
    const row = codec.decodeRow(bytes)
    expect(row.region).toBe('eu')
    expect(row.id).toBe(42)
    expect(row.price).toBe(1.25)
    expect(row.total).toBe('12.5')
    expect(row.label).toBe('widget')
    expect(row.active).toBe(true)
    expect(row.at).toEqual(new Date(AT_MS))
    expect(row.attrs).toBe('{"a":1,"b":2}')
    expect([...(row.blob as Uint8Array)]).toEqual([7, 8])
    expect(row.synced_at).toEqual(new Date(99))
    expect(Object.keys(row)).toEqual(schema.columns.map(c => c.name))
    expect(hex(codec.encodeRow(row))).toBe(hex(bytes))
    const withNulls = codec.encodeRow({ region: 'x', id: 1 })
    expect(codec.decodeRow(withNulls)).toEqual({ region: 'x', id: 1, price: null, total: null, label: null, active: null, at: null, attrs: null, blob: null, synced_at: null })
    expect(hex(codec.encodeRow(codec.decodeRow(withNulls)))).toBe(hex(withNulls))
    expect(codec.eventTime(codec.decodeValues(bytes))).toBe(AT_MS)
  })

  it('rejects encoded rows whose length does not match the schema', () => {
    const short = ordersCodec.encodeRow({ id: 1, customer: 'c', amount: 1, status: 's', updated_at: 0 })
    expect(encodingError(() => codec.decodeRow(short)).code).toBe('CONVERGE_ROW_ENCODING')
  })

  it('changes the schema fingerprint with the digest shape, not with the version', () => {
    const fp = schemaFingerprint(schema)
    expect(codec.fingerprint).toBe(fp)
    expect(fp).toMatch(/^[0-9a-f]{16}$/)
    expect(schemaFingerprint({ ...schema, version: 4 })).toBe(fp)
    expect(schemaFingerprint({ ...schema, version: 4, ignoreColumns: [...schema.ignoreColumns].reverse() })).toBe(fp)
    const retyped = { ...schema, columns: schema.columns.map(c => c.name === 'price' ? { ...c, type: 'decimal' as const } : c) }
    expect(schemaFingerprint(retyped)).not.toBe(fp)
    expect(schemaFingerprint({ ...retyped, version: schema.version })).not.toBe(fp)
    const renamed = { ...schema, columns: schema.columns.map(c => c.name === 'label' ? { ...c, name: 'title' } : c) }
    expect(schemaFingerprint(renamed)).not.toBe(fp)
    expect(schemaFingerprint({ ...schema, primaryKey: ['id', 'region'] })).not.toBe(fp)
    expect(schemaFingerprint({ ...schema, ignoreColumns: [] })).not.toBe(fp)
    expect(schemaFingerprint({ ...schema, columns: [...schema.columns].reverse() })).not.toBe(fp)
  })
})

// ---- properties -------------------------------------------------------------

const U64_MAX = 2n ** 64n - 1n
const I64_MIN = -(2n ** 63n)

const integerArb = fc.oneof(
  fc.integer(),
  fc.maxSafeInteger(),
  fc.bigInt({ min: I64_MIN, max: U64_MAX }),
  fc.bigInt({ min: I64_MIN, max: U64_MAX }).map(String)
)
const decimalArb = fc.oneof(
  fc.tuple(fc.constantFrom('', '+', '-'), fc.stringMatching(/^\d{1,12}$/), fc.option(fc.stringMatching(/^\d{0,8}$/), { nil: undefined }))
    .map(([sign, int, frac]) => frac === undefined ? `${sign}${int}` : `${sign}${int}.${frac}`),
  fc.bigInt(),
  fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e15, max: 1e15 })
)
const dateArb = fc.date({ noInvalidDate: true })
const timestampArb = fc.oneof(dateArb, dateArb.map(d => d.toISOString()), dateArb.map(d => d.getTime()))
const bytesArb = fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 40 }).map(b => Buffer.from(b)))
const nullable = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.option(arb, { nil: null, freq: 5 })

const rowArb: fc.Arbitrary<Row> = fc.record({
  region: fc.string({ unit: 'binary', maxLength: 12 }),
  id: integerArb,
  price: nullable(fc.oneof(fc.double(), fc.double().map(String), fc.integer())),
  total: nullable(decimalArb),
  label: nullable(fc.string({ unit: 'grapheme', maxLength: 30 })),
  active: nullable(fc.oneof(fc.boolean(), fc.constantFrom(0, 1, 't', 'f', 'true', 'false'))),
  at: nullable(timestampArb),
  attrs: nullable(fc.oneof(fc.jsonValue({ maxDepth: 3 }).filter(v => v !== null && typeof v !== 'string'), fc.json({ maxDepth: 3 }))),
  blob: nullable(bytesArb),
  synced_at: nullable(timestampArb)
})

/** One logical row and two different driver representations of it. */
const twoFormsArb = fc.record({
  id: fc.bigInt({ min: I64_MIN, max: U64_MAX }),
  at: fc.integer({ min: -8_640_000_000_000_000, max: 8_640_000_000_000_000 }),
  total: fc.tuple(fc.boolean(), fc.stringMatching(/^[1-9]\d{0,9}$|^0$/), fc.stringMatching(/^(\d{0,5}[1-9])?$/)),
  attrs: fc.dictionary(fc.string({ maxLength: 6 }).filter(k => k !== '__proto__'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 }),
  blob: fc.uint8Array({ maxLength: 20 }),
  price: fc.double({ noNaN: true }),
  pad: fc.tuple(fc.nat(3), fc.nat(3)),
  pick: fc.array(fc.nat(9), { minLength: 6, maxLength: 6 })
})

function shuffled (value: unknown, seed: number): unknown {
  if (Array.isArray(value)) return value.map(v => shuffled(v, seed))
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value)
    const order = seed % 2 === 0 ? entries.reverse() : entries
    // fromEntries, not assignment: a "__proto__" key must stay an own key
    return Object.fromEntries(order.map(([k, v]) => [k, shuffled(v, seed)]))
  }
  return value
}

describe('row codec: properties', () => {
  it('encodeRow(decodeRow(encodeRow(r))) equals encodeRow(r) for random rows', () => {
    fc.assert(fc.property(rowArb, row => {
      const bytes = codec.encodeRow(row)
      const again = codec.encodeRow(codec.decodeRow(bytes))
      expect(hex(again)).toBe(hex(bytes))
      expect(codec.rowDigest(again)).toBe(codec.rowDigest(bytes))
      expect(hex(codec.keyOfEncodedRow(bytes))).toBe(hex(codec.encodeKey(row)))
    }), { numRuns: 500 })
  })

  it('gives the same bytes for two driver representations of one logical row', () => {
    fc.assert(fc.property(twoFormsArb, ({ id, at, total, attrs, blob, price, pad, pick }) => {
      const [neg, int, frac] = total
      const zeros = (n: number): string => '0'.repeat(n)
      const isZero = int === '0' && frac === ''
      const totalA = `${neg && !isZero ? '-' : ''}${int}${frac === '' ? '' : `.${frac}`}`
      const totalB = `${neg ? '-' : '+'}${zeros(pad[0])}${int}.${frac}${zeros(pad[1])}`
      const idForms: unknown[] = [id, id.toString(), ...(id >= BigInt(Number.MIN_SAFE_INTEGER) && id <= BigInt(Number.MAX_SAFE_INTEGER) ? [Number(id)] : [])]
      const atForms: unknown[] = [at, new Date(at), new Date(at).toISOString(), BigInt(at)]
      const bytesForms: unknown[] = [blob, Buffer.from(blob)]
      const priceForms: unknown[] = [price, String(price), price === 0 ? -0 : price]
      const a: Row = { region: 'r', id: idForms[0], price: priceForms[0], total: totalA, at: atForms[0], attrs, blob: bytesForms[0] }
      const b: Row = {
        blob: bytesForms[pick[0]! % bytesForms.length],
        attrs: pick[1]! % 2 === 0 ? shuffled(attrs, pick[2]!) : JSON.stringify(shuffled(attrs, pick[2]!)),
        at: atForms[pick[3]! % atForms.length],
        total: totalB,
        price: priceForms[pick[4]! % priceForms.length],
        id: idForms[pick[5]! % idForms.length],
        region: 'r'
      }
      expect(hex(codec.encodeRow(b))).toBe(hex(codec.encodeRow(a)))
    }), { numRuns: 500 })
  })
})

describe('row codec: regressions', () => {
  // regression (src/digest/row-codec.ts, normalizeValue case 'json')
  it('throws RowEncodingError naming the column for a json string that does not parse', () => {
    const err = encodingError(() => codec.encodeRow(base({ attrs: '{not json' })))
    expect(err.code).toBe('CONVERGE_ROW_ENCODING')
    expect(err.message).toContain('"attrs"')
  })

  // regression (src/digest/row-codec.ts, normalizeInteger)
  it('encodes an unsafe-range integer the same as number, bigint and string', () => {
    const asNumber = hex(codec.encodeRow(base({ id: 2 ** 60 })))
    expect(asNumber).toBe(hex(codec.encodeRow(base({ id: 2n ** 60n }))))
    expect(asNumber).toBe(hex(codec.encodeRow(base({ id: '1152921504606846976' }))))
  })

  // regression (same place)
  it('rejects an integer number that does not fit 64 bits, like its bigint form', () => {
    expect(encodingError(() => codec.encodeRow(base({ id: 10n ** 30n }))).message).toContain('"id"')
    expect(encodingError(() => codec.encodeRow(base({ id: 1e30 }))).message).toContain('"id"')
  })

  // regression (src/digest/row-codec.ts, sortKeys)
  it('keeps a "__proto__" key in a json value', () => {
    const withKey = hex(codec.encodeRow(base({ attrs: '{"__proto__":{"x":1}}' })))
    expect(withKey).not.toBe(hex(codec.encodeRow(base({ attrs: '{}' }))))
    expect(codec.normalize(base({ attrs: '{"__proto__":{"x":1}}' }))[7]).toBe('{"__proto__":{"x":1}}')
  })

  // regression (src/digest/row-codec.ts, sortKeys)
  it('keeps Date values inside a json object', () => {
    const a = codec.normalize(base({ attrs: { at: new Date(0) } }))[7]
    const b = codec.normalize(base({ attrs: { at: new Date(86_400_000) } }))[7]
    expect(a).toBe(JSON.stringify({ at: new Date(0) }))
    expect(a).not.toBe(b)
  })

  it('reads a timestamp string without a zone as UTC, whatever the host zone', () => {
    const zoneless = codec.normalize(base({ at: '2024-03-01 12:30:00' }))
    const utc = codec.normalize(base({ at: '2024-03-01T12:30:00Z' }))
    expect(zoneless).toEqual(utc)
  })
})
