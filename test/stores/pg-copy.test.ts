import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RowCodec } from '../../src/digest/row-codec.ts'
import type { DatasetSchema } from '../../src/digest/schema.ts'
import { CopyFormatError, CopyRows, decodeFields, fieldDecoder } from '../../src/stores/pg-copy.ts'
import { canonicalLineEncoder } from '../../src/stores/pg-copy-canonical.ts'
import fc from 'fast-check'
import { PgStore, typeParsers } from '../../src/stores/pg-store.ts'
import { createDatabase, sql } from '../helpers/postgres.ts'

const hex = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString('hex'))
const identity = (text: string): unknown => text
type Field = Parameters<typeof fieldDecoder>
const text: Field = [25, identity, identity]

/** Feeds COPY lines to a CopyRows as the protocol would, and returns its rows. */
async function decodeLines (lines: string[], fields: Field[]): Promise<unknown[][]> {
  const decoders = fields.map(f => fieldDecoder(...f))
  const copy = new CopyRows({ text: '', decode: line => decodeFields(line, decoders), batchSize: 100 })
  for (const line of lines) copy.handleCopyData({ chunk: Buffer.from(line, 'utf8') })
  copy.handleCommandComplete({ text: `COPY ${lines.length}` })
  copy.handleReadyForQuery()
  const out: unknown[][] = []
  for (let batch = await copy.next(); batch !== undefined; batch = await copy.next()) out.push(...batch)
  return out
}

describe('COPY text lines', () => {
  it('splits on tabs, reads \\N as NULL and undoes every escape', async () => {
    const rows = await decodeLines([
      'a\\tb\\nc\\rd\\\\e\\bf\\fg\\vh\t\\N\n',
      '\\\\N\t\n',
      '\\101\\x42\\x4\\7z\\q\t東京 🚀\n'
    ], [text, text])
    expect(rows).toEqual([
      ['a\tb\nc\rd\\e\bf\fg\vh', null],
      ['\\N', ''],
      ['AB\x04\x07zq', '東京 🚀']
    ])
  })

  it('reads int2 and int4 from their digits as parseInt would, and hands anything else to the parser', async () => {
    const parseInt10 = (t: string): number => parseInt(t, 10)
    const rows = await decodeLines(['0\t-2147483648\t2147483647\t-0\t12\n'], Array.from({ length: 5 }, (_, i): Field => [i === 4 ? 700 : 23, parseInt10, identity]))
    expect(rows).toEqual([[0, -2147483648, 2147483647, -0, 12]])
    expect(Object.is(rows[0]![3], -0)).toBe(true)
  })

  it('refuses a line with another number of fields, and a row count the server does not confirm', async () => {
    await expect(decodeLines(['a\tb\tc\n'], [text, text])).rejects.toBeInstanceOf(CopyFormatError)
    await expect(decodeLines(['a\n'], [text, text])).rejects.toBeInstanceOf(CopyFormatError)
    const copy = new CopyRows({ text: '', decode: line => decodeFields(line, [fieldDecoder(...text)]), batchSize: 10 })
    copy.handleCopyData({ chunk: Buffer.from('a\n') })
    copy.handleCommandComplete({ text: 'COPY 2' })
    copy.handleReadyForQuery()
    await expect(copy.next()).rejects.toMatchObject({ code: 'CONVERGE_STORE_COPY_FORMAT' })
  })
})

/** A value as PostgreSQL's COPY text writes it. */
const copyText = (v: number | string | null): string => v === null ? '\\N' : typeof v === 'number' ? String(v) : v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r')

describe('COPY lines straight to canonical rows', () => {
  const lineSchema: DatasetSchema = {
    version: 1,
    columns: [{ name: 'id', type: 'integer' }, { name: 'big', type: 'integer' }, { name: 'name', type: 'string', nullable: true }, { name: 'code', type: 'string' }],
    primaryKey: ['code', 'id'],
    ignoreColumns: []
  }
  const codec = new RowCodec(lineSchema)
  const direct = canonicalLineEncoder({ codec, nullable: [false, true, true, false], oids: [23, 20, 25, 1043], readAsText: [false, false, true, true] })!

  it('gives the bytes RowCodec gives, or leaves the line to the general way', () => {
    const text = fc.string({ maxLength: 40 })
    const row = fc.record({
      id: fc.integer(),
      big: fc.oneof(fc.maxSafeInteger(), fc.integer(), fc.constant(null)),
      name: fc.oneof(text, fc.constant(null)),
      code: text
    })
    let taken = 0
    fc.assert(fc.property(row, r => {
      const line = Buffer.from([r.id, r.big, r.name, r.code].map(copyText).join('\t') + '\n', 'utf8')
      const got = direct(line)
      const plain = (s: string | null): boolean => s === null || /^[\x00-\x7f]*$/.test(s) && !/[\\\t\n\r]/.test(s)
      if (got === undefined) {
        // only what the general way must read: an escape, a byte over 0x7f, an int8 past 15 digits, NULL where a column may not be null
        expect(!plain(r.name) || !plain(r.code) || (r.big !== null && String(Math.abs(r.big)).length > 15)).toBe(true)
        return
      }
      taken++
      expect(Buffer.from(got.row).toString('hex')).toBe(Buffer.from(codec.encodeRow(r)).toString('hex'))
      expect(Buffer.from(got.key).toString('hex')).toBe(Buffer.from(codec.encodeKey(r)).toString('hex'))
    }), { numRuns: 1000 })
    expect(taken).toBeGreaterThan(100)
  })

  it('leaves malformed lines and NULL in a column that may not be null to the general way', () => {
    for (const line of ['1\t2\tx\n', '1\t2\tx\ty\tz\n', '1\t2\tx\ty', '\\N\t2\tx\ty\n', '1\t2\tx\t\\N\n', '1x\t2\tx\ty\n', '-\t2\tx\ty\n', '\t2\tx\ty\n']) {
      expect(direct(Buffer.from(line)), JSON.stringify(line)).toBeUndefined()
    }
    expect(hex(direct(Buffer.from('-0\t\\N\t\\N\tk\n'))?.row)).toBe(hex(codec.encodeRow({ id: 0, big: null, name: null, code: 'k' })))
  })

  it('takes no part when a column is of another type', () => {
    expect(canonicalLineEncoder({ codec, nullable: [false, true, true, false], oids: [23, 1700, 25, 1043], readAsText: [false, false, true, true] })).toBeUndefined()
    expect(canonicalLineEncoder({ codec, nullable: [false, true, true, false], oids: [23, 20, 3802, 1043], readAsText: [false, false, false, true] })).toBeUndefined()
  })
})

describe('COPY json text straight to canonical rows', () => {
  // id int4; doc json
  const schemaOf = (keepText: boolean): DatasetSchema => ({
    version: 1, columns: [{ name: 'id', type: 'integer' }, { name: 'doc', type: 'json', nullable: true, ...(keepText ? { keepText } : {}) }], primaryKey: ['id'], ignoreColumns: []
  })
  const oids = [23, 114]
  const parsers = oids.map(oid => typeParsers.getTypeParser(oid, 'text'))
  const textParser = typeParsers.getTypeParser(25, 'text')
  const encoderFor = (codec: RowCodec): ReturnType<typeof canonicalLineEncoder> => canonicalLineEncoder({ codec, nullable: [false, true], oids, readAsText: parsers.map(p => p === textParser) })
  const fields = oids.map((oid, i) => fieldDecoder(oid, parsers[i]!, textParser))

  it('reads a json column that keeps its text directly, the same bytes as the general way; one that sorts its keys only the general way', () => {
    const kept = new RowCodec(schemaOf(true))
    const direct = encoderFor(kept)!
    expect(direct).toBeDefined()
    expect(encoderFor(new RowCodec(schemaOf(false)))).toBeUndefined()
    const general = (line: Buffer): Uint8Array => {
      const values = decodeFields(line, fields)
      return kept.encodeRow({ id: values[0], doc: values[1] })
    }
    const taken: string[] = []
    for (const doc of ['{"b": 1, "a": [2, 1.50]}', '[]', '"text"', '  {"z":null}  ', '\\N', '{"q": "say \\\\"hi\\\\""}', '{"city": "東京"}']) {
      const line = Buffer.from(`7\t${doc}\n`, 'utf8')
      const got = direct(line)
      if (got === undefined) continue
      taken.push(doc)
      expect(hex(got.row), doc).toBe(hex(general(line)))
      expect(kept.decodeValues(got.row)[1]).toBe(doc === '\\N' ? null : doc)
    }
    // escaped (a backslash in the JSON) or not ASCII: the general way reads those
    expect(taken).toEqual(['{"b": 1, "a": [2, 1.50]}', '[]', '"text"', '  {"z":null}  ', '\\N'])
  })
})

describe('COPY numeric and timestamp text straight to canonical rows', () => {
  // id int4; price numeric; at timestamptz; local timestamp; day date
  const timeSchema: DatasetSchema = {
    version: 1,
    columns: [{ name: 'id', type: 'integer' }, { name: 'price', type: 'decimal', nullable: true }, { name: 'at', type: 'timestamp', nullable: true },
      { name: 'local', type: 'timestamp', nullable: true }, { name: 'day', type: 'timestamp', nullable: true }],
    primaryKey: ['id'],
    ignoreColumns: []
  }
  const timeCodec = new RowCodec(timeSchema)
  const oids = [23, 1700, 1184, 1114, 1082]
  const parsers = oids.map(oid => typeParsers.getTypeParser(oid, 'text'))
  const textParser = typeParsers.getTypeParser(25, 'text')
  const timeDirect = canonicalLineEncoder({ codec: timeCodec, nullable: [false, true, true, true, true], oids, readAsText: parsers.map(p => p === textParser) })!
  /** The general way: the store's parsers through pg-copy's decoders, then RowCodec (what PgStore does when the direct way declines). */
  const fields = oids.map((oid, i) => fieldDecoder(oid, parsers[i]!, textParser))
  const general = (line: Buffer): Uint8Array | Error => {
    try {
      const values = decodeFields(line, fields)
      return timeCodec.encodeRow(Object.fromEntries(timeSchema.columns.map((c, i) => [c.name, values[i]])))
    } catch (err) {
      return err as Error
    }
  }

  const two = (n: number): string => String(n).padStart(2, '0')
  const daysIn = (year: number, month: number): number => new Date(Date.UTC(2000 + (year % 400), month, 0)).getUTCDate()
  /** numeric's output and a few shapes it never prints (leading zeros, a plus, exponents, NaN, Infinity). */
  const numericText = fc.oneof(
    { weight: 8, arbitrary: fc.tuple(fc.boolean(), fc.oneof(fc.constant('0'), fc.bigInt({ min: 1n, max: 10n ** 30n }).map(String)), fc.option(fc.stringMatching(/^[0-9]{1,20}$/), { nil: undefined }))
      .map(([minus, int, fraction]) => `${minus ? '-' : ''}${int}${fraction === undefined ? '' : `.${fraction}`}`) },
    { weight: 1, arbitrary: fc.constantFrom('NaN', 'Infinity', '-Infinity', '007', '-00.5', '+1', '1e5', '.5', '1.', '-', '') }
  )
  /** A date of any year PostgreSQL prints (BC included) as YYYY-MM-DD, with its year, month and day. */
  const dateParts = fc.tuple(fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 1000, max: 9999 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 999 }) }), fc.integer({ min: 1, max: 12 }), fc.boolean(), fc.nat()).map(([year, month, bc, d]) => {
    const day = 1 + (d % daysIn(year, month))
    return `${String(year).padStart(4, '0')}-${two(month)}-${two(day)}${bc && year % 5 === 0 ? ' BC' : ''}`
  })
  const clock = fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 59 }), fc.option(fc.stringMatching(/^[0-9]{1,6}$/), { nil: undefined }))
    .map(([h, m, s, f]) => `${two(h)}:${two(m)}:${two(s)}${f === undefined ? '' : `.${f}`}`)
  const zone = fc.constantFrom('+00', '-05', '+02', '+05:30', '-03:30', '+05:45', '+00:19:32', '-00:25:21', '+14', '-12')
  /** Inserts the clock (and zone) before a BC suffix, as PostgreSQL prints them. */
  const stamp = (date: string, rest: string): string => date.endsWith(' BC') ? `${date.slice(0, -3)} ${rest} BC` : `${date} ${rest}`
  const timestamptzText = fc.oneof({ weight: 12, arbitrary: fc.tuple(dateParts, clock, zone).map(([d, c, z]) => stamp(d, `${c}${z}`)) }, { weight: 1, arbitrary: fc.constantFrom('infinity', '-infinity') })
  const timestampText = fc.oneof({ weight: 12, arbitrary: fc.tuple(dateParts, clock).map(([d, c]) => stamp(d, c)) }, { weight: 1, arbitrary: fc.constantFrom('infinity', '-infinity') })
  const dateText = fc.oneof({ weight: 12, arbitrary: dateParts }, { weight: 1, arbitrary: fc.constantFrom('infinity', '-infinity') })
  const nullable = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.option(a, { nil: null, freq: 8 })

  it('gives the bytes the general way gives, or leaves the line to it (which then reads it or refuses it)', () => {
    let taken = 0
    let refused = 0
    fc.assert(fc.property(fc.integer(), nullable(numericText), nullable(timestamptzText), nullable(timestampText), nullable(dateText), (id, price, at, local, day) => {
      const line = Buffer.from([id, price, at, local, day].map(copyText).join('\t') + '\n', 'utf8')
      const want = general(line)
      const got = timeDirect(line)
      if (want instanceof Error) refused++
      if (got === undefined) return
      taken++
      expect(want, `the direct way read ${JSON.stringify(line.toString())}, which the general way refuses`).not.toBeInstanceOf(Error)
      expect(hex(got.row), JSON.stringify(line.toString())).toBe(hex(want as Uint8Array))
      expect(hex(got.key)).toBe(hex(timeCodec.encodeKey({ id })))
    }), { numRuns: 3000 })
    expect(taken).toBeGreaterThan(1000)
    expect(refused).toBeGreaterThan(50)
  })

  it('keeps numeric\'s fraction zeros for a column of keepScale, as the general way does, and drops them otherwise', () => {
    const scaleSchema: DatasetSchema = { ...timeSchema, columns: timeSchema.columns.map(c => c.name === 'price' ? { ...c, keepScale: true } : c) }
    const scaleCodec = new RowCodec(scaleSchema)
    const scaleDirect = canonicalLineEncoder({ codec: scaleCodec, nullable: [false, true, true, true, true], oids, readAsText: parsers.map(p => p === textParser) })!
    const line = (price: string): Buffer => Buffer.from(`1\t${price}\t\\N\t\\N\t\\N\n`, 'utf8')
    const priceOf = (codec: RowCodec, row: Uint8Array | undefined): unknown => row === undefined ? undefined : codec.decodeValues(row)[1]
    for (const [text, kept, dropped] of [['10.50', '10.50', '10.5'], ['5.000', '5.000', '5'], ['0.00', '0.00', '0'], ['-0.10', '-0.10', '-0.1'], ['7', '7', '7'], ['-12.0', '-12.0', '-12']] as const) {
      expect(priceOf(scaleCodec, scaleDirect(line(text))?.row), `${text} with keepScale`).toBe(kept)
      expect(priceOf(timeCodec, timeDirect(line(text))?.row), `${text} without`).toBe(dropped)
    }
    fc.assert(fc.property(nullable(numericText), price => {
      const l = Buffer.from([1, price, null, null, null].map(copyText).join('\t') + '\n', 'utf8')
      const got = scaleDirect(l)
      if (got === undefined) return
      const values = decodeFields(l, fields)
      const want = scaleCodec.encodeRow(Object.fromEntries(scaleSchema.columns.map((c, i) => [c.name, values[i]])))
      expect(hex(got.row), JSON.stringify(l.toString())).toBe(hex(want))
    }), { numRuns: 2000 })
  })

  it('reads the edges exactly: fractions before 1970, cut fraction digits, zone offsets with seconds, zeros', () => {
    const line = (price: string, at: string, local: string, day: string): Buffer => Buffer.from(`1\t${price}\t${at}\t${local}\t${day}\n`)
    const cases = [
      line('-0.000', '1969-12-31 23:59:59.999999+00', '1969-12-31 23:59:59.9999', '1000-01-01'),
      line('0.000100', '1969-12-31 23:59:59.0005-01', '1970-01-01 00:00:00.0009', '9999-12-31'),
      line('-12.50', '1900-01-01 00:19:31.291+00:19:32', '2026-03-01 12:30:00.291', '1582-10-15'),
      line('100', '9999-12-31 23:59:59.999999-12', '1000-01-01 00:00:00', '1970-01-01'),
      line('123456789012345678901234567890.123456789000', '2026-03-01 12:30:00.123456+02', '1999-12-31 23:59:59.999', '2000-02-29')
    ]
    for (const c of cases) {
      const got = timeDirect(c)
      expect(got, c.toString()).toBeDefined()
      expect(hex(got!.row), c.toString()).toBe(hex(general(c) as Uint8Array))
    }
    expect(timeCodec.decodeValues(timeDirect(cases[0]!)!.row)).toEqual([1, '0', -1, -1, Date.UTC(1000, 0, 1)])
    for (const odd of [line('NaN', '\\N', '\\N', '\\N'), line('1', '0999-01-01 00:00:00+00', '\\N', '\\N'), line('1', '\\N', '\\N', '2026-01-01 BC'), line('1', '2026-01-01 00:00:00.1234567+00', '\\N', '\\N'), line('1', '2026-01-01T00:00:00+00', '\\N', '\\N')]) {
      expect(timeDirect(odd), odd.toString()).toBeUndefined()
    }
  })
})

/** Every column type converge reads from PostgreSQL, and a text column per awkward kind of string. */
const schema: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'small', type: 'integer', nullable: true },
    { name: 'big', type: 'integer', nullable: true },
    { name: 'price', type: 'decimal', nullable: true },
    { name: 'ratio', type: 'float', nullable: true },
    { name: 'single', type: 'float', nullable: true },
    { name: 'flag', type: 'boolean', nullable: true },
    { name: 'at_utc', type: 'timestamp', nullable: true },
    { name: 'at_local', type: 'timestamp', nullable: true },
    { name: 'day', type: 'timestamp', nullable: true },
    { name: 'doc', type: 'json', nullable: true },
    { name: 'docb', type: 'json', nullable: true },
    { name: 'blob', type: 'bytes', nullable: true },
    { name: 'label', type: 'string', nullable: true },
    { name: 'padded', type: 'string', nullable: true },
    { name: 'short', type: 'string', nullable: true },
    { name: 'uid', type: 'string', nullable: true }
  ],
  primaryKey: ['id'],
  ignoreColumns: []
}

/**
 * The reference: a table's rows as a plain query returns them (pg's protocol rows, the store's type parsers),
 * through RowCodec, in the order of `keys` (undefined where absent). scan and get both read through COPY.
 */
async function queryPath (url: string, table: string, codec: RowCodec, keys: Uint8Array[]): Promise<Array<string | undefined>> {
  const client = new pg.Client({ connectionString: url, types: typeParsers })
  await client.connect()
  try {
    const { rows } = await client.query<unknown[]>({ text: `SELECT ${codec.columns.map(c => `"${c.name}"`).join(', ')} FROM ${table}`, rowMode: 'array' })
    const byKey = new Map(rows.map(values => {
      const row = Object.fromEntries(codec.columns.map((c, i) => [c.name, values[i]]))
      return [hex(codec.encodeKey(row)), hex(codec.encodeRow(row))]
    }))
    return keys.map(k => byKey.get(hex(k)!))
  } finally {
    await client.end()
  }
}

const AWKWARD = ['', ' ', '\t', '\n', '\r\n', '\\', '\\N', 'N', '\\\\t', 'a\tb\\c\nd', '\x01\x02\x7f', '\b\f\v', 'naïve 東京 🚀', 'ends with \\', "quote ' \" done"]

describe('PgStore scan through COPY (real server)', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>
  beforeAll(async () => {
    db = await createDatabase()
    await sql(db.url, `CREATE TABLE t (id int PRIMARY KEY, small smallint, big bigint, price numeric, ratio double precision, single real, flag boolean,
      at_utc timestamptz, at_local timestamp, day date, doc json, docb jsonb, blob bytea, label text, padded character(12), short varchar(8), uid uuid)`)
    const client = new pg.Client({ connectionString: db.url })
    await client.connect()
    try {
      for (let i = 0; i < AWKWARD.length; i++) {
        const s = AWKWARD[i]!
        await client.query('INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)', [
          i + 1, i % 2 === 0 ? -32768 : 32767, i % 2 === 0 ? '-9223372036854775808' : '9007199254740993',
          ['0', '-0.000100', '123456789012345678901234567890.123456789', '42'][i % 4], [0.1, -0, 1e-300, 'Infinity', 'NaN', -1.5e308][i % 6],
          [0.1, 3.4e38, -1e-38][i % 3], i % 2 === 0, '2026-03-01 12:30:00.123456+02', '1999-12-31 23:59:59.999', '0044-03-15',
          JSON.stringify({ s, n: [1, 2.5, null] }), JSON.stringify({ z: s, a: { b: true } }), Buffer.from(s + '\x00\xff', 'latin1'),
          s, s.replace(/[\r\n\t]/g, '').slice(0, 12), s.slice(0, 8), '6f1c2d4e-0a1b-4c3d-9e8f-7a6b5c4d3e2f'])
      }
      await client.query('INSERT INTO t (id) VALUES (1000)')
    } finally {
      await client.end()
    }
  })
  afterAll(async () => { await db.drop() })

  it('scan and get give the same canonical rows as the query path for every type and awkward string', async () => {
    const codec = new RowCodec(schema)
    const store = new PgStore({ connectionString: db.url, table: 'public.t', codec })
    await store.open()
    try {
      const scanned: Array<{ key: Uint8Array, row: Uint8Array }> = []
      for await (const batch of store.scan({ batchSize: 4 })) scanned.push(...batch)
      expect(scanned).toHaveLength(AWKWARD.length + 1)
      const keys = scanned.map(r => r.key)
      const reference = await queryPath(db.url, 'public.t', codec, keys)
      expect(scanned.map(r => hex(r.row))).toEqual(reference)
      expect((await store.get(keys)).map(hex)).toEqual(reference)
    } finally {
      await store.close()
    }
  })

  it('reads timestamps the same as the query path, and as written, in any session time zone', async () => {
    await sql(db.url, 'CREATE TABLE times (id int PRIMARY KEY, at timestamptz, local timestamp, day date, price numeric(20,6))')
    const written: Array<[string, number | null]> = [
      ['2026-03-01 10:30:00.123456+00', Date.UTC(2026, 2, 1, 10, 30, 0, 123)],
      ['1969-12-31 23:59:59.9996+00', -1],
      ['1800-06-01 12:00:00.5+00', Date.UTC(1800, 5, 1, 12, 0, 0, 500)],
      ['2026-03-29 01:30:00+00', Date.UTC(2026, 2, 29, 1, 30)],
      ['2026-10-25 00:59:59.999999+00', Date.UTC(2026, 9, 25, 0, 59, 59, 999)],
      ['0500-01-01 00:00:00+00', null] // a year the direct way leaves to the general way (a BC timestamp it cannot read at all)
    ]
    const client = new pg.Client({ connectionString: db.url })
    await client.connect()
    try {
      for (const [i, [at]] of written.entries()) {
        await client.query("INSERT INTO times VALUES ($1, $2::timestamptz, ($2::timestamptz AT TIME ZONE 'UTC'), ($2::timestamptz AT TIME ZONE 'UTC')::date, $3)", [i, at, `${i}.${'0'.repeat(i)}5`])
      }
    } finally {
      await client.end()
    }
    const timesSchema: DatasetSchema = {
      version: 1,
      columns: [{ name: 'id', type: 'integer' }, { name: 'at', type: 'timestamp' }, { name: 'local', type: 'timestamp' }, { name: 'day', type: 'timestamp' }, { name: 'price', type: 'decimal' }],
      primaryKey: ['id'],
      ignoreColumns: []
    }
    const codec = new RowCodec(timesSchema)
    for (const zone of ['UTC', 'Asia/Kathmandu', 'America/St_Johns', 'Europe/Amsterdam', 'Pacific/Kiritimati']) {
      await sql(db.url, `ALTER DATABASE ${db.name} SET TimeZone = '${zone}'`)
      const store = new PgStore({ connectionString: db.url, table: 'public.times', codec })
      await store.open()
      try {
        const scanned: Array<{ key: Uint8Array, row: Uint8Array }> = []
        for await (const batch of store.scan()) scanned.push(...batch)
        const keys = scanned.map(r => r.key)
        const reference = await queryPath(db.url, 'public.times', codec, keys)
        expect(scanned.map(r => hex(r.row)), zone).toEqual(reference)
        expect((await store.get(keys)).map(hex), zone).toEqual(reference)
        for (const { row } of scanned) {
          const [id, at] = codec.decodeValues(row) as [number, number]
          if (written[id]![1] !== null) expect(at, `${zone}: ${written[id]![0]}`).toBe(written[id]![1])
        }
      } finally {
        await store.close()
      }
    }
  })

  it('scan and get give the same canonical rows as the query path on a table whose lines go straight to canonical bytes', async () => {
    await sql(db.url, 'CREATE TABLE plain (id int PRIMARY KEY, small smallint, big bigint NOT NULL, label text, padded character(10), short varchar(12), uid uuid)')
    const client = new pg.Client({ connectionString: db.url })
    await client.connect()
    try {
      const bigs = ['0', '-1', '4294967296', '-2147483649', '999999999999999', '-999999999999999', '9007199254740993', '-9223372036854775808']
      for (let i = 0; i < 300; i++) {
        const s = i % 7 === 0 ? AWKWARD[i % AWKWARD.length]! : `plain ${i} ${'x'.repeat(i % 40)}`
        await client.query('INSERT INTO plain VALUES ($1, $2, $3, $4, $5, $6, $7)', [
          i % 2 === 0 ? i * 7919 : -i * 104729, i % 5 === 0 ? null : (i * 331) % 65536 - 32768, bigs[i % bigs.length], i % 11 === 0 ? null : s,
          s.replace(/[\r\n\t]/g, '').slice(0, 10), s.slice(0, 12), i % 3 === 0 ? null : '6f1c2d4e-0a1b-4c3d-9e8f-7a6b5c4d3e2f'])
      }
    } finally {
      await client.end()
    }
    const plainSchema: DatasetSchema = {
      version: 1,
      columns: [{ name: 'id', type: 'integer' }, { name: 'small', type: 'integer' }, { name: 'big', type: 'integer' }, { name: 'label', type: 'string' },
        { name: 'padded', type: 'string' }, { name: 'short', type: 'string' }, { name: 'uid', type: 'string' }],
      primaryKey: ['id'],
      ignoreColumns: []
    }
    const store = new PgStore({ connectionString: db.url, table: 'public.plain', codec: new RowCodec(plainSchema) })
    await store.open()
    try {
      const scanned: Array<{ key: Uint8Array, row: Uint8Array }> = []
      for await (const batch of store.scan({ batchSize: 64 })) scanned.push(...batch)
      expect(scanned).toHaveLength(300)
      const keys = scanned.map(r => r.key)
      const reference = await queryPath(db.url, 'public.plain', new RowCodec(plainSchema), keys)
      expect(scanned.map(r => hex(r.row))).toEqual(reference)
      expect((await store.get(keys)).map(hex)).toEqual(reference)
    } finally {
      await store.close()
    }
  })

  it('a scan left early drops its connection and the next scan reads everything', async () => {
    const store = new PgStore({ connectionString: db.url, table: 'public.t', codec: new RowCodec(schema) })
    await store.open()
    try {
      for await (const batch of store.scan({ batchSize: 2 })) { void batch; break }
      let rows = 0
      for await (const batch of store.scan({ batchSize: 2 })) rows += batch.length
      expect(rows).toBe(AWKWARD.length + 1)
      // nothing was left open behind the early exit
      const { rows: open } = await sql(db.url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'")
      expect(open[0].n).toBe(0)
    } finally {
      await store.close()
    }
  })
})
