import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { RowCodec, type Row } from '../../src/digest/row-codec.ts'
import type { DatasetSchema } from '../../src/digest/schema.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { ORDERS_SCHEMA, orderRow, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, agentScope, startAgent, waitFor, withOrdersStore } from '../helpers/agents.ts'

const ROWS = 1000

/** Writes rows [0, count) into a LevelDB store under `schema`, each made by `row`, with `rewrite` ids changed. */
async function seed (path: string, schema: DatasetSchema, count: number, row: (id: number) => Row): Promise<void> {
  const codec = new RowCodec(schema)
  const store = new LevelStore({ path, codec })
  await store.open()
  try {
    await store.apply({ upserts: Array.from({ length: count }, (_, id) => codec.encodeRow(row(id))), deletes: [] })
  } finally { await store.close() }
}

describe('schema drift between a replica and its source of truth', () => {
  const scope = agentScope()

  async function start (region: string, schema: DatasetSchema, peers: Array<{ region: string, address: string }> = [], extra: Record<string, unknown> = {}): Promise<Agent> {
    const config = agentConfig(scope.dir, region, peers, ['sot'])
    Object.assign(config.datasets[0]!, { schema, ...extra })
    const agent = await startAgent(config)
    scope.agents.push(agent)
    return agent
  }

  it('compatible differences (a local nullable column, a widened type, a renamed column) are compared and repaired on the common columns', async () => {
    // the replica: items widened to float, customer renamed to client, a local-only nullable column
    const local: DatasetSchema = {
      ...ORDERS_SCHEMA,
      columns: [
        ...ORDERS_SCHEMA.columns.map(c => (c.name === 'items' ? { ...c, type: 'float' as const } : c.name === 'customer' ? { ...c, name: 'client' } : c)),
        { name: 'local_tag', type: 'string', nullable: true }
      ]
    }
    const localRow = (id: number, revision = 0): Row => {
      const { customer, ...rest } = orderRow(id, revision)
      return { ...rest, client: customer, local_tag: id % 2 === 0 ? `tag-${id}` : null }
    }
    await withOrdersStore(join(scope.dir, 'sot', 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    // drift: 20 rows changed on common columns, 5 missing, 3 extra
    await seed(join(scope.dir, 'b', 'orders'), local, ROWS + 3, id => (id < 20 ? localRow(id, 7) : localRow(id)))
    const localCodec = new RowCodec(local)
    const prep = new LevelStore({ path: join(scope.dir, 'b', 'orders'), codec: localCodec })
    await prep.open()
    await prep.apply({ upserts: [], deletes: [100, 101, 102, 103, 104].map(id => localCodec.encodeKey({ order_id: id })) })
    await prep.close()

    const sot = await start('sot', ORDERS_SCHEMA)
    const b = await start('b', local, [{ region: 'sot', address: sot.listenAddresses[0]! }], { renames: { client: 'customer' } })
    const replica = b.datasets.get('orders')!
    await waitFor('the replica to agree with the source on the common columns', () => replica.state === 'in-sync', 30_000, 50, () => ({ replica: replica.status(), breakers: b.breakers.notClosed() }))
    const status = replica.status() as { schema: { comparison: { columns: string[] } | null, quarantine: unknown } }
    expect(status.schema.comparison?.columns).toContain('customer')
    expect(status.schema.comparison?.columns).not.toContain('local_tag')
    expect(status.schema.quarantine).toBeNull()
    expect(replica.counters.rowsUpserted).toBe(25)
    expect(replica.counters.rowsDeleted).toBe(3)

    // rows now hold the source's values on the common columns and keep their local-only column
    const keys = [0, 1, 100, 500].map(id => localCodec.encodeKey({ order_id: id }))
    const [r0, r1, r100, r500] = (await replica.store.get(keys)).map(r => localCodec.decodeRow(r!))
    const want = (id: number): Row => { const { customer, ...rest } = orderRow(id); return { ...rest, client: customer } }
    for (const [row, id] of [[r0, 0], [r1, 1], [r100, 100], [r500, 500]] as const) {
      const w = want(id)
      for (const k of Object.keys(w)) expect(k === 'updated_at' ? (row![k] as Date).getTime() : row![k], `${id}.${k}`).toEqual(k === 'updated_at' ? w[k] : k === 'items' ? Number(w[k]) : w[k])
    }
    expect(r0!.local_tag).toBe('tag-0')
    expect(r1!.local_tag).toBeNull()
    expect(r100!.local_tag).toBeNull() // was missing here: nothing local to keep
    expect(r500!.local_tag).toBe('tag-500')
  }, 60_000)

  it('an incompatible schema quarantines the dataset: nothing applied, the status and audit say why; it lifts itself once the source agrees', async () => {
    const local: DatasetSchema = { ...ORDERS_SCHEMA, columns: ORDERS_SCHEMA.columns.map(c => (c.name === 'items' ? { ...c, type: 'string' as const } : c)) }
    await withOrdersStore(join(scope.dir, 'sot', 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    await seed(join(scope.dir, 'b', 'orders'), local, 900, id => ({ ...orderRow(id), items: String(orderRow(id).items) }))
    const sot = await start('sot', ORDERS_SCHEMA)
    const b = await start('b', local, [{ region: 'sot', address: sot.listenAddresses[0]! }])
    const replica = b.datasets.get('orders')!
    await waitFor('the quarantine', () => replica.state === 'quarantined', 30_000, 50, () => replica.status())
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(replica.state).toBe('quarantined')
    expect(replica.counters.fixes).toBe(0)
    expect(replica.index.tree.rowCount).toBe(900)
    const status = replica.status() as { schema: { quarantine: { reasons: string[] } | null }, lastError: string }
    expect(status.schema.quarantine!.reasons.join()).toMatch(/items/)
    expect(status.lastError).toMatch(/quarantined/)
    const audit = []
    for await (const e of b.audit.read()) audit.push(e)
    expect(audit.filter(e => e.kind === 'quarantine')).toHaveLength(1)
    expect(audit.filter(e => e.kind === 'intent')).toHaveLength(0)

    // the source migrates (same identity and address, a migrated copy of its table) to a schema the replica can be compared with
    const address = sot.listenAddresses[0]!
    await scope.agents.shift()!.stop()
    await seed(join(scope.dir, 'sot-migrated'), local, ROWS, id => ({ ...orderRow(id), items: String(orderRow(id).items) }))
    const config = agentConfig(scope.dir, 'sot', [], ['sot'], { listen: [address.replace(/\/p2p\/.*$/, '')] })
    Object.assign(config.datasets[0]!, { schema: local, store: { kind: 'level', path: join(scope.dir, 'sot-migrated') } })
    scope.agents.push(await startAgent(config))
    await waitFor('the quarantine to lift and the replica to converge', () => replica.state === 'in-sync', 30_000, 50, () => ({ replica: replica.status(), breakers: b.breakers.notClosed() }))
    expect(replica.counters.rowsUpserted).toBe(100)
    const after = []
    for await (const e of b.audit.read()) after.push(e)
    expect(after.filter(e => e.kind === 'quarantine-lifted')).toHaveLength(1)
  }, 60_000)
})
