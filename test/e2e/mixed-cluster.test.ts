import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import type { ReplicaStore } from '../../src/stores/replica-store.ts'
import { SqliteStore } from '../../src/stores/sqlite-store.ts'
import { injectDrift, ORDERS_SCHEMA, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, allRows, startAgent, tempDir, waitFor } from '../helpers/agents.ts'
import { createDatabase, ORDERS_DDL, sql } from '../helpers/postgres.ts'

const ROWS = 20_000

type StoreConfig = ConfigInput['datasets'][number]['store']

/** SoT in PostgreSQL; replicas in a second PostgreSQL database, a SQLite file and a LevelDB store. */
describe('a mixed cluster: PostgreSQL source, PostgreSQL, SQLite and LevelDB replicas', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let sotDb: Awaited<ReturnType<typeof createDatabase>>
  let replicaDb: Awaited<ReturnType<typeof createDatabase>>
  const agents: Agent[] = []
  const stores: Record<string, StoreConfig> = {}

  async function withStore<T> (config: StoreConfig, fn: (store: ReplicaStore) => Promise<T>): Promise<T> {
    const store: ReplicaStore = config.kind === 'postgres'
      ? new PgStore({ connectionString: config.connectionString, table: config.table, codec })
      : config.kind === 'sqlite'
        ? new SqliteStore({ path: config.path, table: config.table, codec, createTable: true })
        : new LevelStore({ path: config.path, codec })
    await store.open()
    try { return await fn(store) } finally { await store.close() }
  }

  beforeAll(async () => {
    dir = await tempDir()
    sotDb = await createDatabase()
    replicaDb = await createDatabase()
    await sql(sotDb.url, ORDERS_DDL)
    // a column of whole milliseconds, as the other regions declare it: the catalog reads it as such (precision ms)
    await sql(replicaDb.url, ORDERS_DDL.replace('updated_at timestamptz', 'updated_at timestamptz(3)'))
    stores.sot = { kind: 'postgres', connectionString: sotDb.url, table: 'public.orders' }
    stores.pg = { kind: 'postgres', connectionString: replicaDb.url, table: 'orders' }
    stores.lite = { kind: 'sqlite', path: join(dir.path, 'lite.db'), table: 'orders', createTable: true }
    stores.level = { kind: 'level', path: join(dir.path, 'level') }
    let seed = 10
    for (const [region, config] of Object.entries(stores)) {
      await withStore(config, async store => {
        await seedOrders(store, 0, ROWS, 5000)
        if (region !== 'sot') await injectDrift(store, ROWS, { rows: 200, seed: seed++ })
      })
    }
    const config = (region: string, peers: Array<{ region: string, address: string }>): ConfigInput => {
      const base = agentConfig(dir.path, region, peers, ['sot'])
      // the PostgreSQL replica reads its schema from its table's catalog
      const schema = region === 'pg' ? { fromCatalog: true as const, eventTimeColumn: 'updated_at' } : ORDERS_SCHEMA
      return { ...base, datasets: [{ name: 'orders', schema, store: stores[region]!, sourceOfTruth: ['sot'] }] }
    }
    const sot = await startAgent(config('sot', []))
    agents.push(sot)
    const peers = [{ region: 'sot', address: sot.listenAddresses[0]! }]
    for (const region of ['pg', 'lite', 'level']) agents.push(await startAgent(config(region, peers)))
  }, 120_000)

  afterAll(async () => {
    for (const a of agents.reverse()) await a.stop()
    await sotDb?.drop()
    await replicaDb?.drop()
    await dir?.remove()
  })

  const root = (a: Agent) => a.datasets.get('orders')!.index.tree.root
  const converged = (): boolean => agents.slice(1).every(a => root(a).count === root(agents[0]!).count && root(a).sum === root(agents[0]!).sum)

  it('converges every replica to row-for-row equality with the source', async () => {
    await waitFor('all replicas to match the SoT', converged, 90_000)
    const want = await allRows(agents[0]!.datasets.get('orders')!.store)
    for (const replica of agents.slice(1)) {
      const got = await allRows(replica.datasets.get('orders')!.store)
      expect(got.size).toBe(want.size)
      expect(got).toEqual(want)
      const c = replica.datasets.get('orders')!.counters
      expect(c.changed + c.missing + c.extra).toBe(200)
    }
  })

  it('keeps the pages of an index with pages of its own in the agent\'s pool, and none for a store that lists rows itself', async () => {
    await waitFor('convergence', converged, 90_000)
    const [, pg, lite, level] = agents
    // 20,000 rows: every page fits the default budget (64 MiB)
    for (const a of [pg!, lite!]) {
      expect(a.pagePool.size).toBeGreaterThan(0)
      expect(a.pagePool.bytes).toBeLessThanOrEqual(a.pagePool.maxBytes)
      // the repair's changes found their pages in memory (the index put them there as it was built)
      expect(a.pagePool.hits).toBeGreaterThan(0)
    }
    expect(level!.pagePool.size).toBe(0)
  })

  it('repairs a write made behind the agent\'s back in the PostgreSQL replica, found by change capture', async () => {
    await waitFor('convergence', converged, 90_000)
    const pg = agents[1]!.datasets.get('orders')!
    const before = { changed: pg.counters.changed, fixes: pg.counters.fixes }
    await sql(replicaDb.url, "UPDATE orders SET status = 'tampered' WHERE order_id BETWEEN 100 AND 109")
    // seen and repaired by the agent's own count (asked by key, ten rows can be found and fixed between two polls of the roots)
    await waitFor('the tampering to be found and fixed', () => pg.counters.changed >= before.changed + 10 && pg.counters.fixes > before.fixes, 30_000)
    await waitFor('the replica to be repaired', converged, 30_000)
    const { rows } = await sql(replicaDb.url, "SELECT count(*)::int AS n FROM orders WHERE status = 'tampered'")
    expect(rows[0].n).toBe(0)
    expect(pg.counters.changed - before.changed).toBe(10)
  })

  it('does not treat its own repair writes as new drift', async () => {
    await waitFor('convergence', converged, 90_000)
    const pg = agents[1]!.datasets.get('orders')!
    const before = { syncs: pg.counters.syncs, fixes: pg.counters.fixes }
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect({ syncs: pg.counters.syncs, fixes: pg.counters.fixes }).toEqual(before)
    expect(pg.state).toBe('in-sync')
  })

  it('finds writes that bypassed change capture with the deep pass, then repairs them', async () => {
    await waitFor('convergence', converged, 90_000)
    const rowsBefore = (await sql(replicaDb.url, 'SELECT count(*)::int AS n FROM orders')).rows[0].n as number
    // a bulk load with the capture triggers off: the change feed never hears of it
    await sql(replicaDb.url, 'ALTER TABLE orders DISABLE TRIGGER converge_capture_insert, DISABLE TRIGGER converge_capture_update, DISABLE TRIGGER converge_capture_delete')
    await sql(replicaDb.url, "UPDATE orders SET note = 'bulk load' WHERE order_id BETWEEN 300 AND 324")
    await sql(replicaDb.url, 'DELETE FROM orders WHERE order_id BETWEEN 400 AND 404')
    await sql(replicaDb.url, 'ALTER TABLE orders ENABLE TRIGGER converge_capture_insert, ENABLE TRIGGER converge_capture_update, ENABLE TRIGGER converge_capture_delete')
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(converged()).toBe(true) // the index cannot know yet
    const pg = agents[1]!.datasets.get('orders')!
    const report = await pg.validateNow()
    expect(report.corrected).toBe(30)
    // the rows as the pass read them: the 5 deleted are gone (the repair it calls for may have put them back since)
    expect(report.rows).toBe(rowsBefore - 5)
    await waitFor('the bypassed writes to be repaired', converged, 30_000)
    expect((await sql(replicaDb.url, "SELECT count(*)::int AS n FROM orders WHERE note = 'bulk load'")).rows[0].n).toBe(0)
    expect((await sql(replicaDb.url, 'SELECT count(*)::int AS n FROM orders WHERE order_id BETWEEN 400 AND 404')).rows[0].n).toBe(5)
    expect(await allRows(pg.store)).toEqual(await allRows(agents[0]!.datasets.get('orders')!.store))
    // a second pass finds the index exact
    expect((await pg.validateNow()).corrected).toBe(0)
  })
})
