/**
 * Two PostgreSQL regions whose schemas come from their catalogs (timestamptz
 * holds microseconds): a replica row that differs from the source only below
 * the millisecond is drift, and the fix writes the source's microseconds
 * back exactly, keys of timestamptz included.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers/agents.ts'
import { startPgPair, type PgPair } from '../helpers/pg-pair.ts'
import { sql } from '../helpers/postgres.ts'

const DDL = 'CREATE TABLE public.readings (taken timestamptz NOT NULL, sensor integer NOT NULL, value numeric(10,1) NOT NULL, seen_at timestamptz NOT NULL, PRIMARY KEY (taken, sensor))'
/** 2,000 readings whose times all have microseconds. */
const SEED = `INSERT INTO public.readings
  SELECT timestamptz '2026-11-26 00:00:00+00' + i * interval '1.000123 second', i % 7, i * 0.5, timestamptz '2026-11-26 00:00:00.000001+00' + i * interval '3 microseconds'
    FROM generate_series(1, 2000) AS i`

describe('microsecond timestamps between PostgreSQL regions', () => {
  let pair: PgPair

  /** Every row as PostgreSQL prints it in UTC: the microseconds as the server holds them. */
  const table = async (url: string): Promise<string[]> => {
    const results = await sql(url, "SET TIME ZONE 'UTC'; SELECT taken::text || ' ' || sensor || ' ' || value || ' ' || seen_at::text AS line FROM public.readings ORDER BY taken, sensor")
    return (Array.isArray(results) ? results[1]! : results).rows.map((r: { line: string }) => r.line)
  }

  beforeAll(async () => {
    pair = await startPgPair({
      dataset: 'readings',
      table: 'public.readings',
      prepare: async (url, role) => {
        await sql(url, DDL)
        await sql(url, SEED)
        if (role === 'sot') return
        // drift below the millisecond only: a value a microsecond off, a key a microsecond off (a missing row and an extra one)
        await sql(url, "UPDATE public.readings SET seen_at = seen_at + interval '1 microsecond' WHERE sensor = 3 AND value < 300")
        await sql(url, "UPDATE public.readings SET taken = taken + interval '1 microsecond' WHERE value = 100")
      }
    })
  }, 120_000)

  afterAll(async () => { await pair?.stop() })

  it('finds drift below the millisecond and repairs it to the microsecond', async () => {
    await waitFor('the replica to match the source', pair.level, 60_000)
    expect(await table(pair.replicaDb.url)).toEqual(await table(pair.sotDb.url))
    const c = pair.replica.datasets.get('readings')!.counters
    // 86 readings of sensor 3 below value 300 changed; one reading moved a microsecond: one missing, one extra
    expect({ changed: c.changed, missing: c.missing, extra: c.extra }).toEqual({ changed: 86, missing: 1, extra: 1 })
  })
})
