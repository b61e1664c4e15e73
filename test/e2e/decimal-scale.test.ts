/**
 * Two PostgreSQL regions whose schemas come from their catalogs, with an
 * unconstrained `numeric` (each value keeps its own scale): a replica row
 * that differs from the source only in scale (10.5 where the source holds
 * 10.50) is drift, and every fix writes the source's digits as they are,
 * trailing zeros included, also where the row differed in another column.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers/agents.ts'
import { startPgPair, type PgPair } from '../helpers/pg-pair.ts'
import { sql } from '../helpers/postgres.ts'

const DDL = 'CREATE TABLE public.prices (sku integer PRIMARY KEY, price numeric NOT NULL, fixed numeric(8,2) NOT NULL, label text NOT NULL)'
/** 1,000 prices whose scales differ from row to row: 10.50, 3.000, 7, 0.10 … */
const SEED = `INSERT INTO public.prices
  SELECT i, CASE i % 4 WHEN 0 THEN (i || '.50')::numeric WHEN 1 THEN (i || '.000')::numeric WHEN 2 THEN i::numeric ELSE ('0.' || i || '0')::numeric END,
         i * 1.5, 'sku ' || i
    FROM generate_series(1, 1000) AS i`

describe('decimals that keep their scale between PostgreSQL regions', () => {
  let pair: PgPair
  /** Three rows' prices, as each side held them before the agents started. */
  const before: Record<string, string[]> = {}
  const prices = async (url: string): Promise<string[]> => (await sql(url, 'SELECT price::text AS p FROM public.prices WHERE sku IN (4, 5, 904) ORDER BY sku')).rows.map((r: { p: string }) => r.p)
  /** Every row as PostgreSQL prints it: each numeric with its own scale. */
  const table = async (url: string): Promise<string[]> =>
    (await sql(url, "SELECT sku || ' ' || price::text || ' ' || fixed::text || ' ' || label AS line FROM public.prices ORDER BY sku")).rows.map((r: { line: string }) => r.line)

  beforeAll(async () => {
    pair = await startPgPair({
      dataset: 'prices',
      table: 'public.prices',
      prepare: async (url, role) => {
        await sql(url, DDL)
        await sql(url, SEED)
        if (role === 'replica') {
          // drift in scale only (10.50 → 10.5, 9.000 → 9.0), and in another column of rows whose price has trailing zeros
          await sql(url, 'UPDATE public.prices SET price = trim_scale(price) WHERE sku % 4 = 0 AND sku <= 200')
          await sql(url, 'UPDATE public.prices SET price = round(price, 1) WHERE sku % 4 = 1 AND sku <= 200')
          await sql(url, "UPDATE public.prices SET label = 'stale' WHERE sku > 900 AND sku % 4 IN (0, 1)")
        }
        before[role] = await prices(url)
      }
    })
  }, 120_000)

  afterAll(async () => { await pair?.stop() })

  it('reads the scale-keeping column from the catalog: the unconstrained numeric, not numeric(8,2) nor the key', () => {
    const columns = pair.sot.datasets.get('prices')!.codec.columns
    expect(columns.filter(c => c.keepScale === true).map(c => c.name)).toEqual(['price'])
  })

  it('finds drift in scale alone and repairs every row to the source digits, trailing zeros included', async () => {
    // the same values, written otherwise
    expect(before).toEqual({ sot: ['4.50', '5.000', '904.50'], replica: ['4.5', '5.0', '904.50'] })
    await waitFor('the replica to match the source', pair.level, 60_000)
    expect(await table(pair.replicaDb.url)).toEqual(await table(pair.sotDb.url))
    expect(await prices(pair.replicaDb.url)).toEqual(['4.50', '5.000', '904.50'])
    // 100 rows changed in scale (50 of x.50, 50 of x.000), 50 more in their label
    expect(pair.replica.datasets.get('prices')!.counters.changed).toBe(150)
  })
})
