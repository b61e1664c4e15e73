import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import type { PartitionStatus } from '../../src/agent/partition-board.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { startAgent, tempDir, waitFor } from '../helpers/agents.ts'
import { createDatabase, sql } from '../helpers/postgres.ts'

const DAYS = ['2026-11-01', '2026-11-02', '2026-11-03', '2026-11-04', '2026-11-05', '2026-11-06']
const [CHANGED, DELETED, BROKEN, HOT, LOST, CALM] = DAYS as [string, string, string, string, string, string]
const ROWS_PER_DAY = 500

/**
 * A partitioned dataset between real agents: a PostgreSQL source of truth
 * and a replica whose table is partitioned by day in PostgreSQL itself. One
 * replica partition refuses writes (an archived partition behind a trigger),
 * one partition is written to all the time on the source; the others must
 * converge all the same, and the broken one once it is writable again.
 */
describe('partitions are reconciled independently', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let sotDb: Awaited<ReturnType<typeof createDatabase>>
  let replicaDb: Awaited<ReturnType<typeof createDatabase>>
  const agents: Agent[] = []
  let writing = true
  let hotWriter: Promise<void> | undefined

  const dayRows = async (url: string, day: string): Promise<string[]> =>
    (await sql(url, 'SELECT id, payload FROM events WHERE day = $1 ORDER BY id', [day])).rows.map(r => `${r.id as string}:${r.payload as string}`)
  const sameDay = async (day: string): Promise<boolean> => (await dayRows(sotDb.url, day)).join() === (await dayRows(replicaDb.url, day)).join()

  beforeAll(async () => {
    dir = await tempDir()
    sotDb = await createDatabase()
    replicaDb = await createDatabase()
    await sql(sotDb.url, 'CREATE TABLE events (day date NOT NULL, id integer NOT NULL, payload text NOT NULL, PRIMARY KEY (day, id))')
    await sql(replicaDb.url, 'CREATE TABLE events (day date NOT NULL, id integer NOT NULL, payload text NOT NULL, PRIMARY KEY (day, id)) PARTITION BY RANGE (day)')
    for (const day of DAYS) {
      await sql(replicaDb.url, `CREATE TABLE "events_${day}" PARTITION OF events FOR VALUES FROM ('${day}') TO ('${day}'::date + 1)`)
    }
    const seed = `INSERT INTO events SELECT d::date, i, 'v0-' || i FROM unnest($1::text[]) d, generate_series(1, ${ROWS_PER_DAY}) i`
    await sql(sotDb.url, seed, [DAYS])
    await sql(replicaDb.url, seed, [DAYS])
    // drift, written before the agents start
    await sql(replicaDb.url, "UPDATE events SET payload = 'stale' WHERE day = $1 AND id % 25 = 0", [CHANGED])
    await sql(replicaDb.url, 'DELETE FROM events WHERE day = $1 AND id % 50 = 0', [DELETED])
    await sql(replicaDb.url, "UPDATE events SET payload = 'stale' WHERE day = $1 AND id <= 5", [BROKEN])
    await sql(replicaDb.url, 'DELETE FROM events WHERE day = $1', [LOST])
    // the archived partition refuses every write
    await sql(replicaDb.url, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'partition % is archived', TG_TABLE_NAME; END $$;
      CREATE TRIGGER archived BEFORE INSERT OR UPDATE OR DELETE ON "events_${BROKEN}" FOR EACH ROW EXECUTE FUNCTION refuse()`)

    const dataset = (url: string): ConfigInput['datasets'][number] => ({
      name: 'events', schema: { fromCatalog: true, partitionColumn: 'day' }, store: { kind: 'postgres', connectionString: url, table: 'public.events' }, sourceOfTruth: ['sot']
    })
    const base = { cluster: 'parts', listen: ['/ip4/127.0.0.1/tcp/0'], gossip: { intervalMs: 300 }, sync: { minIntervalMs: 50, timeoutMs: 60_000 } }
    const sot = await startAgent({ ...base, region: 'sot', dataDir: `${dir.path}/sot`, datasets: [dataset(sotDb.url)] })
    agents.push(sot)
    // the source's hot partition changes all the time
    hotWriter = (async () => {
      for (let n = 1; writing; n++) {
        await sql(sotDb.url, "UPDATE events SET payload = 'hot-' || $2::int WHERE day = $1 AND id = 1 + $2::int % $3::int", [HOT, n, ROWS_PER_DAY])
        await new Promise(resolve => setTimeout(resolve, 10))
      }
    })()
    agents.push(await startAgent({ ...base, region: 'replica', dataDir: `${dir.path}/replica`, peers: [{ region: 'sot', address: sot.listenAddresses[0]! }], datasets: [dataset(replicaDb.url)] }))
  }, 60_000)

  afterAll(async () => {
    writing = false
    await hotWriter
    for (const a of agents) await a.stop()
    await sotDb?.drop()
    await replicaDb?.drop()
    await dir?.remove()
  })

  it('the healthy partitions converge while one is broken and another is hot; the broken one is reported and backs off', async () => {
    const replica = agents[1]!.datasets.get('events')!
    await waitFor('the healthy partitions to converge', async () => (await sameDay(CHANGED)) && (await sameDay(DELETED)) && (await sameDay(LOST)), 30_000)
    expect(await sameDay(CALM)).toBe(true)
    expect(await sameDay(BROKEN)).toBe(false)
    expect(writing).toBe(true)

    await waitFor('the broken partition to fail twice', () => replica.partitions.status().some(p => p.failures >= 2), 30_000)
    const status = replica.status() as { partitions: PartitionStatus[], lastError: string | null, state: string }
    const broken = status.partitions.find(p => p.state === 'error')!
    expect(broken.value).toBe(`${BROKEN}T00:00:00.000Z`)
    expect(broken.lastError).toMatch(/archived/)
    expect(broken.retryAt).toBeGreaterThan(Date.now() - 1000)
    expect(status.partitions.filter(p => p.state === 'error')).toHaveLength(1)
    expect(status.lastError).toMatch(/1 partition failing/)

    // only the broken and the hot partition are still apart; a hot one is settled once its writes pause (see the next test)
    const apart = replica.partitions.status().map(p => p.value)
    for (const value of apart) expect([`${BROKEN}T00:00:00.000Z`, `${HOT}T00:00:00.000Z`, null]).toContain(value)

    // fixes carry their partition in the audit
    const partitions = new Set<string>()
    for await (const e of agents[1]!.audit.read()) if (e.kind === 'commit' && e.partition !== undefined) partitions.add(e.partition)
    expect(partitions).toContain(`${CHANGED}T00:00:00.000Z`)
    expect(partitions).toContain(`${LOST}T00:00:00.000Z`)
    expect(partitions).not.toContain(`${BROKEN}T00:00:00.000Z`)
  }, 90_000)

  it('the broken partition converges once it is writable again, and the hot one once its writes stop', async () => {
    await sql(replicaDb.url, `DROP TRIGGER archived ON "events_${BROKEN}"`)
    writing = false
    await hotWriter
    const replica = agents[1]!.datasets.get('events')!
    await waitFor('every partition to agree', async () => {
      for (const day of DAYS) if (!(await sameDay(day))) return false
      return true
    }, 60_000)
    await waitFor('the replica to say it is in sync', () => replica.state === 'in-sync' && replica.partitions.status().length === 0, 30_000)
    expect(replica.lastError).toBeUndefined()
  }, 90_000)
})
