/**
 * Two PostgreSQL regions whose schemas come from their catalogs, with an
 * unconstrained `numeric` (each value keeps its own scale): a replica row
 * that differs from the source only in scale (10.5 where the source holds
 * 10.50) is drift, and every fix writes the source's digits as they are,
 * trailing zeros included, also where the row differed in another column.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { agentConfig, startAgent, tempDir, waitFor } from '../helpers/agents.ts'
import { createDatabase, sql } from '../helpers/postgres.ts'

const DDL = 'CREATE TABLE public.prices (sku integer PRIMARY KEY, price numeric NOT NULL, fixed numeric(8,2) NOT NULL, label text NOT NULL)'
/** 1,000 prices whose scales differ from row to row: 10.50, 3.000, 7, 0.10 … */
const SEED = `INSERT INTO public.prices
  SELECT i, CASE i % 4 WHEN 0 THEN (i || '.50')::numeric WHEN 1 THEN (i || '.000')::numeric WHEN 2 THEN i::numeric ELSE ('0.' || i || '0')::numeric END,
         i * 1.5, 'sku ' || i
    FROM generate_series(1, 1000) AS i`

describe('decimals that keep their scale between PostgreSQL regions', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let sotDb: Awaited<ReturnType<typeof createDatabase>>
  let replicaDb: Awaited<ReturnType<typeof createDatabase>>
  const agents: Agent[] = []
  /** Three rows' prices, as each side held them before the agents started. */
  let before: { sot: string[], replica: string[] }
  const prices = async (url: string): Promise<string[]> => (await sql(url, 'SELECT price::text AS p FROM public.prices WHERE sku IN (4, 5, 904) ORDER BY sku')).rows.map((r: { p: string }) => r.p)

  /** Every row as PostgreSQL prints it: each numeric with its own scale. */
  const table = async (url: string): Promise<string[]> =>
    (await sql(url, "SELECT sku || ' ' || price::text || ' ' || fixed::text || ' ' || label AS line FROM public.prices ORDER BY sku")).rows.map((r: { line: string }) => r.line)

  beforeAll(async () => {
    dir = await tempDir()
    sotDb = await createDatabase()
    replicaDb = await createDatabase()
    for (const db of [sotDb, replicaDb]) {
      await sql(db.url, DDL)
      await sql(db.url, SEED)
    }
    // drift in scale only (10.50 → 10.5, 9.000 → 9.0), and in another column of rows whose price has trailing zeros
    await sql(replicaDb.url, 'UPDATE public.prices SET price = trim_scale(price) WHERE sku % 4 = 0 AND sku <= 200')
    await sql(replicaDb.url, 'UPDATE public.prices SET price = round(price, 1) WHERE sku % 4 = 1 AND sku <= 200')
    await sql(replicaDb.url, "UPDATE public.prices SET label = 'stale' WHERE sku > 900 AND sku % 4 IN (0, 1)")
    before = { sot: await prices(sotDb.url), replica: await prices(replicaDb.url) }
    const config = (region: string, url: string, peers: Array<{ region: string, address: string }>): ConfigInput => ({
      ...agentConfig(dir.path, region, peers, ['sot']),
      datasets: [{ name: 'prices', schema: { fromCatalog: true }, store: { kind: 'postgres', connectionString: url, table: 'public.prices' }, sourceOfTruth: ['sot'] }]
    })
    const sot = await startAgent(config('sot', sotDb.url, []))
    agents.push(sot)
    agents.push(await startAgent(config('replica', replicaDb.url, [{ region: 'sot', address: sot.listenAddresses[0]! }])))
  }, 120_000)

  afterAll(async () => {
    for (const a of agents.reverse()) await a.stop()
    await sotDb?.drop()
    await replicaDb?.drop()
    await dir?.remove()
  })

  it('reads the scale-keeping column from the catalog: the unconstrained numeric, not numeric(8,2) nor the key', () => {
    const columns = agents[0]!.datasets.get('prices')!.codec.columns
    expect(columns.filter(c => c.keepScale === true).map(c => c.name)).toEqual(['price'])
  })

  it('finds drift in scale alone and repairs every row to the source digits, trailing zeros included', async () => {
    // the same values, written otherwise
    expect(before).toEqual({ sot: ['4.50', '5.000', '904.50'], replica: ['4.5', '5.0', '904.50'] })
    const replica = agents[1]!.datasets.get('prices')!
    const root = (a: Agent) => a.datasets.get('prices')!.index.tree.root
    await waitFor('the replica to match the source', () => root(agents[1]!).sum === root(agents[0]!).sum && root(agents[1]!).count === root(agents[0]!).count, 60_000)
    expect(await table(replicaDb.url)).toEqual(await table(sotDb.url))
    expect(await prices(replicaDb.url)).toEqual(['4.50', '5.000', '904.50'])
    // 100 rows changed in scale (50 of x.50, 50 of x.000), 50 more in their label
    expect(replica.counters.changed).toBe(150)
  })
})
