/**
 * A replica's table changed under its running agent (ALTER TABLE), which
 * read the table's schema from the catalog at start. A column added does
 * not matter: the agent reads the columns it knows. A column it compares
 * dropped stops its reads: the status says which column and what to do,
 * nothing is written or lost meanwhile, and after a restart the agent
 * compares under the table's new schema.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers/agents.ts'
import { startPgPair, type PgPair } from '../helpers/pg-pair.ts'
import { sql } from '../helpers/postgres.ts'

const DDL = 'CREATE TABLE public.items (id integer PRIMARY KEY, name text NOT NULL, note text)'
const SEED = "INSERT INTO public.items SELECT i, 'item ' || i, 'n' FROM generate_series(1, 200) AS i"

describe('a replica table altered while its agent runs (PostgreSQL)', () => {
  let pair: PgPair
  const names = async (url: string): Promise<string[]> => (await sql(url, 'SELECT id || \' \' || name AS line FROM public.items ORDER BY id')).rows.map((r: { line: string }) => r.line)
  const applied = async (): Promise<number> => (await sql(pair.replicaDb.url, "SELECT count(*)::int AS n FROM converge.changes WHERE origin = 'converge'")).rows[0].n

  beforeAll(async () => {
    pair = await startPgPair({ dataset: 'items', table: 'public.items', prepare: async url => { await sql(url, DDL); await sql(url, SEED) } })
    await waitFor('the replica level at start', pair.level, 30_000)
  }, 120_000)
  afterAll(async () => { await pair?.stop() })

  it('goes on converging after a column is added to the replica\'s table', async () => {
    const replica = pair.replica.datasets.get('items')!
    await sql(pair.replicaDb.url, "ALTER TABLE public.items ADD COLUMN extra text DEFAULT 'x'")
    await sql(pair.replicaDb.url, "UPDATE public.items SET name = 'drifted' WHERE id <= 3")
    await waitFor('the drift repaired', async () => replica.counters.fixes === 1 && pair.level(), 20_000, 100, () => replica.status())
    expect(await names(pair.replicaDb.url)).toEqual(await names(pair.sotDb.url))
  })

  it('names the dropped column and says to restart, writes nothing meanwhile, and compares under the new schema once restarted', async () => {
    const replica = pair.replica.datasets.get('items')!
    const fixesBefore = await applied()
    await sql(pair.replicaDb.url, 'ALTER TABLE public.items DROP COLUMN note')
    await sql(pair.replicaDb.url, "UPDATE public.items SET name = 'drifted again' WHERE id <= 3")
    // the change feed cannot read the rows any more; a sync's reads cannot either
    await sql(pair.sotDb.url, "UPDATE public.items SET name = 'renamed' WHERE id = 50")
    await waitFor('the status to name the column', () => /column "note" does not exist.*restart the agent/.test(String(replica.status().lastError)), 20_000, 100, () => replica.status())
    expect(replica.status().state).not.toBe('in-sync')
    expect(await applied()).toBe(fixesBefore)
    expect((await names(pair.replicaDb.url)).slice(0, 3)).toEqual(['1 drifted again', '2 drifted again', '3 drifted again'])

    // restarted, the agent reads the table without `note`: a nullable column only the source has is compared on the common columns
    const restarted = (await pair.restartReplica()).datasets.get('items')!
    await waitFor('the replica level with the source on the common columns', async () => restarted.status().state === 'in-sync' &&
      JSON.stringify(await names(pair.replicaDb.url)) === JSON.stringify(await names(pair.sotDb.url)), 30_000, 100, () => restarted.status())
    expect(restarted.status().lastError).toBeNull()
    expect((await names(pair.replicaDb.url))[49]).toBe('50 renamed')
  }, 60_000)
})
