import fc from 'fast-check'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { arrayLiteral, dollarQuoted, pgText } from '../../src/stores/pg-literals.ts'
import { createDatabase } from '../helpers/postgres.ts'

/** Strings that mean something to SQL, to dollar quoting or to array_in. */
const NASTY = ['', ' ', '  padded  ', 'NULL', 'null', '"', '""', '\\', '\\\\', '\\"', "'", "''", '{', '}', '{}', '{a,b}', ',', 'a,b', '(1,2)',
  '$', '$$', '$k$', '$k', 'k$', 'a$', '$k0$', '$k$$k0$$k1$', '$k0', '$$k$', 'tab\there', 'new\nline', 'cr\rlf', '\\N', 'é 東京 🚀', '\u200b', 'E\'x\'', '--', '/*', ';']

describe('PostgreSQL literals (real server)', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>
  let client: pg.Client
  beforeAll(async () => {
    db = await createDatabase()
    client = new pg.Client({ connectionString: db.url })
    await client.connect()
  })
  afterAll(async () => {
    await client.end()
    await db.drop()
  })

  /** The elements the server reads from the literal written into a statement (no parameters), in order. */
  async function readBack (items: Array<string | null>, type = 'text'): Promise<unknown[]> {
    const { rows } = await client.query<{ v: unknown }>(`SELECT v FROM unnest(${dollarQuoted(arrayLiteral(items))}::${type}[]) WITH ORDINALITY AS x(v, n) ORDER BY n`)
    return rows.map(r => r.v)
  }

  it('reads back every awkward string, NULL and the empty list as written', async () => {
    expect(await readBack([...NASTY, null])).toEqual([...NASTY, null])
    expect(await readBack([])).toEqual([])
    for (const s of NASTY) expect(await readBack([s]), JSON.stringify(s)).toEqual([s])
  })

  it('reads back any strings, also with standard_conforming_strings off', async () => {
    const text = fc.string({ unit: 'binary', maxLength: 30 }).filter(s => !s.includes('\u0000') && !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s))
    await fc.assert(fc.asyncProperty(fc.array(fc.oneof(text, fc.constantFrom(...NASTY)), { maxLength: 20 }), async items => {
      expect(await readBack(items)).toEqual(items)
    }), { numRuns: 200 })
    await client.query('SET standard_conforming_strings = off')
    try {
      expect(await readBack(NASTY)).toEqual(NASTY)
    } finally {
      await client.query('RESET standard_conforming_strings')
    }
  })

  it('writes each canonical value as the text its column type reads', async () => {
    const bytes = [new Uint8Array(), new Uint8Array([0, 0x5c, 0x22, 0xff]), new Uint8Array([0x24, 0x6b, 0x24])]
    const readBytes = await readBack(bytes.map(b => pgText(b, 'bytes')), 'bytea')
    expect(readBytes.map(b => Buffer.from(b as Buffer).toString('hex'))).toEqual(bytes.map(b => Buffer.from(b).toString('hex')))
    const times = [0, -1, Date.UTC(2026, 0, 1, 12, 30, 0, 123), Date.UTC(1000, 5, 1)]
    const { rows } = await client.query<{ ms: string }>(`SELECT (extract(epoch FROM v) * 1000)::bigint::text AS ms FROM unnest(${dollarQuoted(arrayLiteral(times.map(t => pgText(t, 'timestamp'))))}::timestamptz[]) AS x(v)`)
    expect(rows.map(r => Number(r.ms))).toEqual(times)
    expect(await readBack([9_007_199_254_740_993n, -(2n ** 63n), 0].map(v => pgText(v, 'integer')), 'bigint')).toEqual(['9007199254740993', '-9223372036854775808', '0'])
    expect(await readBack([0.1, 5e-324, -1.5e308, Infinity, Number.NaN].map(v => pgText(v, 'float')), 'float8')).toEqual([0.1, 5e-324, -1.5e308, Infinity, Number.NaN])
    expect(await readBack(['null', '"s"', '{"b":1,"a":[null]}'].map(v => pgText(v, 'json')), 'jsonb')).toEqual([null, 's', { a: [null], b: 1 }])
    expect(pgText(null, 'string')).toBeNull()
    expect(await readBack([true, false].map(v => pgText(v, 'boolean')), 'boolean')).toEqual([true, false])
  })

  it('picks a dollar-quote tag the text does not contain', () => {
    expect(dollarQuoted('{a}')).toBe('$k${a}$k$')
    expect(dollarQuoted('{$k}')).toBe('$k0${$k}$k0$')
    expect(dollarQuoted('{$k$k0}')).toBe('$k1${$k$k0}$k1$')
  })
})
