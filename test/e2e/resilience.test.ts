import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { orderRow, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, agentScope, allRows, startAgent, waitFor, withOrdersStore } from '../helpers/agents.ts'

const ROWS = 4000

describe('repairs that yield to the replica', () => {
  const scope = agentScope()

  it('a rows-per-second budget cuts a large repair into fixes of at most one second of writes, and an exchange takes a bounded number of rows', async () => {
    for (const region of ['sot', 'b']) await withOrdersStore(join(scope.dir, region, 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    const sot = await startAgent(agentConfig(scope.dir, 'sot', [], ['sot']))
    scope.agents.push(sot)
    const b = await startAgent(agentConfig(scope.dir, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot'], {
      sync: { minIntervalMs: 50, timeoutMs: 60_000, maxRowsPerSecond: 400, maxRowsPerExchange: 700 }
    }))
    scope.agents.push(b)
    const replica = b.datasets.get('orders')!
    await waitFor('in sync', () => replica.state === 'in-sync', 20_000)
    await replica.store.apply({ upserts: Array.from({ length: 1500 }, (_, i) => codec.encodeRow(orderRow(i * 2, 3))), deletes: [], origin: 'test' })
    await waitFor('the repair', async () => replica.state === 'in-sync' && replica.counters.rowsUpserted === 1500, 30_000)
    const sizes: number[] = []
    for await (const e of b.audit.read()) if (e.kind === 'intent') sizes.push(e.upserts!.length + e.deletes!.length)
    expect(sizes.reduce((a, n) => a + n, 0)).toBe(1500)
    expect(Math.max(...sizes)).toBeLessThanOrEqual(400)
    expect(sizes.length).toBeGreaterThanOrEqual(4)
    // 1,500 rows at most ~700 per exchange: at least three syncs found drift
    expect(replica.counters.syncs).toBeGreaterThanOrEqual(3)
    expect(JSON.stringify([...(await allRows(replica.store))].sort())).toBe(JSON.stringify([...(await allRows(sot.datasets.get('orders')!.store))].sort()))
  }, 60_000)
})
