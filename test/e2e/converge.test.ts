import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { injectDrift, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, allRows, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

const ROWS = 100_000
const DRIFT = ROWS / 100

describe('three agents over libp2p on loopback, LevelDB stores', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const agents: Agent[] = []
  const injected: Record<string, { updated: number, inserted: number, deleted: number }> = {}

  beforeAll(async () => {
    dir = await tempDir()
    for (const region of ['sot', 'b', 'c']) {
      await withOrdersStore(`${dir.path}/${region}/orders`, async store => {
        await seedOrders(store, 0, ROWS)
        if (region !== 'sot') injected[region] = await injectDrift(store, ROWS, { rows: DRIFT, seed: region === 'b' ? 1 : 2 })
      })
    }
    const sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot']))
    agents.push(sot)
    const peers = [{ region: 'sot', address: sot.listenAddresses[0]! }]
    agents.push(await startAgent(agentConfig(dir.path, 'b', peers, ['sot'])))
    agents.push(await startAgent(agentConfig(dir.path, 'c', peers, ['sot'])))
  }, 120_000)

  afterAll(async () => {
    for (const a of agents.reverse()) await a.stop()
    await dir.remove()
  })

  it('converges two drifted replicas to row-for-row equality with the source of truth', async () => {
    const [sot, b, c] = agents as [Agent, Agent, Agent]
    const root = (a: Agent) => a.datasets.get('orders')!.index.tree.root
    await waitFor('replicas to match the SoT root', () => [b, c].every(a => root(a).count === root(sot).count && root(a).sum === root(sot).sum), 90_000)

    const want = await allRows(sot.datasets.get('orders')!.store)
    expect(want.size).toBe(ROWS)
    for (const replica of [b, c]) {
      const got = await allRows(replica.datasets.get('orders')!.store)
      expect(got.size).toBe(want.size)
      let differing = 0
      for (const [k, v] of want) if (got.get(k) !== v) differing++
      expect(differing).toBe(0)
      const counters = replica.datasets.get('orders')!.counters
      const drift = injected[replica.region]!
      // what was found is exactly what was injected
      expect({ changed: counters.changed, missing: counters.missing, extra: counters.extra })
        .toEqual({ changed: drift.updated, missing: drift.deleted, extra: drift.inserted })
      expect(counters.fixes).toBeGreaterThan(0)
    }
  })

  it('records each fix in the audit log with intent, commit and a merged vector clock', async () => {
    const b = agents[1]!
    const entries = []
    for await (const e of b.audit.read()) entries.push(e)
    expect(entries.map(e => e.kind)).toContain('intent')
    const commits = entries.filter(e => e.kind === 'commit')
    expect(commits.length).toBeGreaterThan(0)
    const intent = entries.find(e => e.kind === 'intent')!
    expect(intent.clock.b).toBeGreaterThan(0)
    expect(intent.sourceRegion).toBe('sot')
    const rows = entries.filter(e => e.kind === 'intent').reduce((n, e) => n + (e.upserts?.length ?? 0) + (e.deletes?.length ?? 0), 0)
    expect(rows).toBe(DRIFT)
    expect(commits.every(c => c.before !== undefined)).toBe(true)
    expect(await b.audit.verify()).toBe(entries.length)
  })

  it('finds nothing to fix on a second pass', async () => {
    for (const replica of agents.slice(1)) {
      const report = await replica.datasets.get('orders')!.reconcileNow()
      expect({ missing: report.missing, changed: report.changed, extra: report.extra, fixes: report.fixes }).toEqual({ missing: 0, changed: 0, extra: 0, fixes: 0 })
      expect(report.roundTrips).toBe(1)
    }
  })
})
