import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { orderRow, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import { freePort } from '../../cluster/free-port.ts'
import { agentConfig, allRows, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

const ROWS = 1000

/**
 * sourceOfTruth is an ordered list: the first region reachable serves. With
 * `a` down, the replica repairs from `b`; with `a` back, from `a` again.
 */
describe('source of truth failover', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const agents = new Map<string, Agent>()
  beforeEach(async () => { dir = await tempDir() })
  afterEach(async () => {
    for (const a of agents.values()) await a.stop()
    agents.clear()
    await dir.remove()
  })

  it('fails over to the next source when the first is unreachable, and back when it returns', async () => {
    for (const region of ['a', 'b', 'r']) await withOrdersStore(join(dir.path, region, 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    const order = ['a', 'b']
    const [aPort, bPort] = [await freePort(), await freePort()]
    const aAddress = `/ip4/127.0.0.1/tcp/${aPort}`
    const bAddress = `/ip4/127.0.0.1/tcp/${bPort}`
    const aConfig = agentConfig(dir.path, 'a', [{ region: 'b', address: bAddress }], order, { listen: [aAddress] })
    const a = await startAgent(aConfig)
    agents.set('a', a)
    const b = await startAgent(agentConfig(dir.path, 'b', [{ region: 'a', address: aAddress }], order, { listen: [bAddress] }))
    agents.set('b', b)
    const r = await startAgent(agentConfig(dir.path, 'r', [{ region: 'a', address: aAddress }, { region: 'b', address: bAddress }], order))
    agents.set('r', r)
    const replica = r.datasets.get('orders')!
    const source = (): unknown => (replica.status() as { sourceOfTruth: string | null }).sourceOfTruth
    const drift = async (ids: number[], revision: number): Promise<void> => {
      await replica.store.apply({ upserts: ids.map(id => codec.encodeRow(orderRow(id, revision))), deletes: [], origin: 'test' })
    }
    const commitsFrom = async (region: string): Promise<number> => {
      let n = 0
      for await (const e of r.audit.read()) if (e.kind === 'commit' && e.sourceRegion === region) n++
      return n
    }
    const sameAs = async (agent: Agent): Promise<boolean> => JSON.stringify([...(await allRows(agent.datasets.get('orders')!.store))].sort()) === JSON.stringify([...(await allRows(replica.store))].sort())

    await waitFor('a to serve', () => source() === 'a' && replica.state === 'in-sync', 20_000)
    await drift([1, 2, 3], 5)
    await waitFor('a repair from a', async () => (await commitsFrom('a')) === 1 && replica.state === 'in-sync', 20_000)

    // a goes away: after its summaries go stale, b serves
    await a.stop()
    agents.delete('a')
    await waitFor('b to serve', () => source() === 'b', 20_000)
    await drift([10, 11], 6)
    await waitFor('a repair from b', async () => (await commitsFrom('b')) === 1 && await sameAs(b), 20_000)

    // a comes back at the same address with the same identity: it serves again
    const back = await startAgent(aConfig)
    agents.set('a', back)
    await waitFor('a to serve again', () => source() === 'a', 20_000)
    await drift([20], 7)
    await waitFor('a repair from a again', async () => (await commitsFrom('a')) === 2 && await sameAs(back), 20_000)
    expect(await commitsFrom('b')).toBe(1)
  }, 90_000)
})
