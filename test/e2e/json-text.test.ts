/**
 * Two PostgreSQL regions whose schemas come from their catalogs, with a
 * `json` column (PostgreSQL keeps its text as written) and a `jsonb` one
 * (PostgreSQL normalizes it): a replica row whose json holds the same data
 * in another key order or spacing is drift, and every fix writes the
 * source's json text as it is, also where the row differed in another
 * column; jsonb is compared by its data.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers/agents.ts'
import { startPgPair, type PgPair } from '../helpers/pg-pair.ts'
import { sql } from '../helpers/postgres.ts'

const DDL = 'CREATE TABLE public.docs (id integer PRIMARY KEY, doc json NOT NULL, meta jsonb NOT NULL, label text NOT NULL)'
/** 1,000 rows whose json is written with unsorted keys and spacing of its own: {"z": 1,  "a": [ … ]} */
const SEED = `INSERT INTO public.docs
  SELECT i, ('{"z": ' || i || ',  "a": [' || (i % 7) || ', 1.50], "m": {"y": true, "b": null}}')::json,
         ('{"k": ' || i || ', "b": "x"}')::jsonb, 'doc ' || i
    FROM generate_series(1, 1000) AS i`

describe('json kept as text between PostgreSQL regions', () => {
  let pair: PgPair
  /** Every row as PostgreSQL prints it: json as its text, jsonb as normalized. */
  const table = async (url: string): Promise<string[]> =>
    (await sql(url, "SELECT id || ' ' || doc::text || ' ' || meta::text || ' ' || label AS line FROM public.docs ORDER BY id")).rows.map((r: { line: string }) => r.line)
  const docOf = async (url: string, id: number): Promise<string> => (await sql(url, `SELECT doc::text AS d FROM public.docs WHERE id = ${id}`)).rows[0].d

  beforeAll(async () => {
    pair = await startPgPair({
      dataset: 'docs',
      table: 'public.docs',
      prepare: async (url, role) => {
        await sql(url, DDL)
        await sql(url, SEED)
        if (role === 'replica') {
          // the same data in another key order and spacing (100 rows), as a write path that re-serialized it would leave it
          await sql(url, 'UPDATE public.docs SET doc = (doc::jsonb)::json WHERE id <= 100')
          // another column of 50 rows: their fix must carry the source's json text too
          await sql(url, "UPDATE public.docs SET label = 'stale' WHERE id > 900 AND id % 2 = 0")
          // jsonb written in another key order is the same jsonb: no drift
          await sql(url, 'UPDATE public.docs SET meta = \'{"b": "x", "k": 0}\'::jsonb || jsonb_build_object(\'k\', id) WHERE id BETWEEN 200 AND 300')
        }
      }
    })
  }, 120_000)

  afterAll(async () => { await pair?.stop() })

  it('reads the text-keeping column from the catalog: json, not jsonb', () => {
    const columns = pair.sot.datasets.get('docs')!.codec.columns
    expect(columns.filter(c => c.keepText === true).map(c => c.name)).toEqual(['doc'])
  })

  it('finds drift in the json text alone and repairs every row to the source\'s text', async () => {
    // the same data, written otherwise
    expect(await docOf(pair.replicaDb.url, 5)).toBe('{"a": [5, 1.50], "m": {"b": null, "y": true}, "z": 5}')
    await waitFor('the replica to match the source', pair.level, 60_000)
    expect(await table(pair.replicaDb.url)).toEqual(await table(pair.sotDb.url))
    expect(await docOf(pair.replicaDb.url, 5)).toBe('{"z": 5,  "a": [5, 1.50], "m": {"y": true, "b": null}}')
    expect(await docOf(pair.replicaDb.url, 902)).toBe('{"z": 902,  "a": [6, 1.50], "m": {"y": true, "b": null}}')
    // 100 rows changed in their json text, 50 more in their label; none for jsonb's key order
    expect(pair.replica.datasets.get('docs')!.counters.changed).toBe(150)
  })
})

describe('json at the source, jsonb at the replica', () => {
  let pair: PgPair
  const docs = async (url: string): Promise<string[]> =>
    (await sql(url, "SELECT id || ' ' || doc::jsonb::text AS line FROM public.docs ORDER BY id")).rows.map((r: { line: string }) => r.line)

  beforeAll(async () => {
    pair = await startPgPair({
      dataset: 'docs',
      table: 'public.docs',
      prepare: async (url, role) => {
        await sql(url, `CREATE TABLE public.docs (id integer PRIMARY KEY, doc ${role === 'sot' ? 'json' : 'jsonb'} NOT NULL)`)
        await sql(url, `INSERT INTO public.docs SELECT i, ('{"z": ' || i || ', "a": [' || (i % 7) || ']}')::${role === 'sot' ? 'json' : 'jsonb'} FROM generate_series(1, 500) AS i`)
        // drift in the data of 40 rows; jsonb cannot hold the source's key order, so that is no drift
        if (role === 'replica') await sql(url, 'UPDATE public.docs SET doc = jsonb_set(doc, \'{z}\', \'0\') WHERE id % 25 = 0 OR id <= 20')
      }
    })
  }, 120_000)

  afterAll(async () => { await pair?.stop() })

  it('compares the two by their data and repairs the data', async () => {
    await waitFor('the replica to match the source', async () => JSON.stringify(await docs(pair.replicaDb.url)) === JSON.stringify(await docs(pair.sotDb.url)), 60_000, 200)
    const replica = pair.replica.datasets.get('docs')!
    // not quarantined: the comparison schema is the replica's own (the doc's data), into which the source projects its json
    const { schema } = replica.status() as { schema: { fingerprint: string, comparison: unknown, quarantine: unknown } }
    expect(schema.quarantine).toBeNull()
    expect(schema.comparison).toBeNull()
    expect(pair.sot.datasets.get('docs')!.codec.fingerprint).not.toBe(schema.fingerprint)
    expect(replica.counters.changed).toBe(40)
  })
})
