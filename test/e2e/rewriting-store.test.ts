/**
 * A replica whose own trigger changes every row written to it (here: sets
 * updated_at to now()). A fix cannot make such rows equal to the source's:
 * the agent must say so and keep its index true to the store, not report
 * the replica level; and it must not write the same rows again and again.
 * Once the trigger is gone, the next change at the source converges them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers/agents.ts'
import { startPgPair, type PgPair } from '../helpers/pg-pair.ts'
import { sql } from '../helpers/postgres.ts'

const DDL = 'CREATE TABLE public.items (id integer PRIMARY KEY, name text NOT NULL, updated_at timestamptz(3) NOT NULL)'
const SEED = "INSERT INTO public.items SELECT i, 'item ' || i, timestamptz '2026-01-01 00:00:00+00' FROM generate_series(1, 200) AS i"
const TOUCH = `CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
  CREATE TRIGGER touch BEFORE INSERT OR UPDATE ON public.items FOR EACH ROW EXECUTE FUNCTION touch()`

describe('a replica whose store rewrites the rows a fix writes (PostgreSQL trigger)', () => {
  let pair: PgPair
  const rows = async (url: string): Promise<string[]> =>
    (await sql(url, "SET TIME ZONE 'UTC'; SELECT id || ' ' || name || ' ' || updated_at::text AS line FROM public.items ORDER BY id") as unknown as Array<{ rows: Array<{ line: string }> }>)[1]!.rows.map(r => r.line)

  beforeAll(async () => {
    pair = await startPgPair({
      dataset: 'items',
      table: 'public.items',
      prepare: async (url, role) => {
        await sql(url, DDL)
        await sql(url, SEED)
        if (role === 'replica') await sql(url, TOUCH)
      }
    })
    await waitFor('the replica level at start', pair.level, 30_000)
  }, 120_000)

  afterAll(async () => { await pair?.stop() })

  it('writes the rows once, says they stay apart and why, and keeps its index true to the store', async () => {
    const replica = pair.replica.datasets.get('items')!
    await sql(pair.sotDb.url, "UPDATE public.items SET name = 'renamed' WHERE id <= 5")
    await waitFor('the replica to hold the rows its store rewrote', () => replica.status().state === 'held', 30_000, 50, () => replica.status())
    const status = replica.status() as { policy: { rewrittenKeys: number, lastDecision: { reasons: string[] } } }
    expect(status.policy.rewrittenKeys).toBe(5)
    expect(status.policy.lastDecision.reasons.join(' ')).toMatch(/5 rows not written again: this store changed them as they were written/)
    // not level: the index holds the store's rows, and the store holds the trigger's times
    expect(pair.level()).toBe(false)
    const [sot, mine] = [await rows(pair.sotDb.url), await rows(pair.replicaDb.url)]
    expect(mine.slice(0, 5).map(l => l.split(' ').slice(0, 2).join(' '))).toEqual(sot.slice(0, 5).map(l => l.split(' ').slice(0, 2).join(' ')))
    expect(mine.slice(0, 5)).not.toEqual(sot.slice(0, 5))
    expect(mine.slice(5)).toEqual(sot.slice(5))
    // and it does not write them again: one fix, still, a while later
    await new Promise(resolve => setTimeout(resolve, 2500))
    expect(replica.counters.fixes).toBe(1)
    expect((await sql(pair.replicaDb.url, "SELECT count(DISTINCT xid)::int AS n FROM converge.changes WHERE origin = 'converge'")).rows[0].n).toBe(1)
  })

  it('remembers those rows across a restart: the restarted agent does not write them again', async () => {
    const before = await rows(pair.replicaDb.url)
    const replica = (await pair.restartReplica()).datasets.get('items')!
    await waitFor('a sync of the restarted replica', () => replica.counters.syncs > 0 && replica.status().state === 'held', 30_000, 50, () => replica.status())
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect((replica.status() as { policy: { rewrittenKeys: number } }).policy.rewrittenKeys).toBe(5)
    expect(replica.counters.fixes).toBe(0)
    // no second write: the trigger would have set new times
    expect(await rows(pair.replicaDb.url)).toEqual(before)
    expect((await sql(pair.replicaDb.url, "SELECT count(DISTINCT xid)::int AS n FROM converge.changes WHERE origin = 'converge'")).rows[0].n).toBe(1)
  })

  it('converges once the trigger is gone and the source changes the rows again', async () => {
    await sql(pair.replicaDb.url, 'DROP TRIGGER touch ON public.items')
    await sql(pair.sotDb.url, "UPDATE public.items SET name = 'renamed again' WHERE id <= 5")
    await waitFor('level', pair.level, 30_000)
    expect(await rows(pair.replicaDb.url)).toEqual(await rows(pair.sotDb.url))
    expect(pair.replica.datasets.get('items')!.status().state).toBe('in-sync')
    // rewritten as the source has them now: nothing is remembered as rewritten any more
    expect((pair.replica.datasets.get('items')!.status() as { policy: { rewrittenKeys: number } }).policy.rewrittenKeys).toBe(0)
  })
})
