/**
 * Sync by key end to end: real agents over libp2p on loopback with LevelDB
 * stores. Drift written into a replica's store while its agent runs is noted
 * as suspect and repaired by asking the source about those keys, with no
 * narrowing; drift that was there before the agent started is not suspect,
 * so the by-key pass does not find the whole difference, decides nothing,
 * and the narrowing that follows in the same sync finds all of it.
 */
import { createServer } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { Agent } from '../../src/agent/agent.ts'
import { parseConfig } from '../../src/config/load.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { peerIdOf, loadOrCreatePeerKey } from '../../src/net/peer-key.ts'
import { createLogger } from '../../src/observability/logger.ts'
import { orderRow, ordersCodec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, agentScope, allRows, waitFor, withOrdersStore } from '../helpers/agents.ts'

const ROWS = 10_000

type LogLine = Record<string, unknown> & { msg: string }

/** An agent whose log lines are kept (parsed) for the test to read. */
async function startLogged (config: ConfigInput, scope: { agents: Agent[] }): Promise<{ agent: Agent, lines: LogLine[] }> {
  const lines: LogLine[] = []
  const sink = new Writable({
    write (chunk, _encoding, done) {
      for (const text of String(chunk).split('\n')) if (text.trim() !== '') lines.push(JSON.parse(text) as LogLine)
      done()
    }
  })
  const agent = new Agent({ config: parseConfig(config), logger: createLogger({ level: 'info', region: config.region, destination: sink }) })
  scope.agents.push(agent)
  await agent.start()
  return { agent, lines }
}

/** A drift of a replica's rows: ids changed, ids deleted, ids inserted (rows the source lacks). */
interface Drift { changed: number[], deleted: number[], inserted: number[] }
const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i)
const writeOf = (d: Drift): { upserts: Uint8Array[], deletes: Uint8Array[], origin: string } => ({
  upserts: [...d.changed.map(id => ordersCodec.encodeRow(orderRow(id, 1))), ...d.inserted.map(id => ordersCodec.encodeRow(orderRow(id)))],
  deletes: d.deleted.map(id => ordersCodec.encodeKey({ order_id: id })),
  origin: 'drift'
})
const size = (d: Drift): number => d.changed.length + d.deleted.length + d.inserted.length
/** What the replica finds of a drift: changed rows, rows it lacks (deleted here), rows the source lacks (inserted here). */
const found = (d: Drift): { changed: number, missing: number, extra: number } => ({ changed: d.changed.length, missing: d.deleted.length, extra: d.inserted.length })

const root = (a: Agent): { count: number, sum: bigint } => a.datasets.get('orders')!.index.tree.root
const level = (a: Agent, b: Agent): boolean => root(a).count === root(b).count && root(a).sum === root(b).sum

/** The exchanges a sync logged ('sync found drift' / 'sync found no drift' / an answer by key that was not the whole difference), by correlation id. */
function exchanges (lines: readonly LogLine[]): Map<string, LogLine[]> {
  const out = new Map<string, LogLine[]>()
  for (const l of lines) {
    if (l.msg !== 'sync found drift' && l.msg !== 'sync found no drift' && l.msg !== 'asked by key: not the whole difference, narrowing') continue
    const cid = String(l.cid)
    out.set(cid, [...(out.get(cid) ?? []), l])
  }
  return out
}

async function expectSameRows (replica: Agent, sot: Agent): Promise<void> {
  const want = await allRows(sot.datasets.get('orders')!.store)
  const got = await allRows(replica.datasets.get('orders')!.store)
  expect(got.size).toBe(want.size)
  let differing = 0
  for (const [k, v] of want) if (got.get(k) !== v) differing++
  expect(differing).toBe(0)
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })
}

describe('sync by key, two agents over libp2p on loopback, LevelDB stores', () => {
  const scope = agentScope()

  it('repairs drift written into a replica\'s store after the agents are up by asking the source about those keys alone', async () => {
    for (const region of ['sot', 'b']) await withOrdersStore(join(scope.dir, region, 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    const { agent: sot } = await startLogged(agentConfig(scope.dir, 'sot', [], ['sot']), scope)
    const { agent: b, lines } = await startLogged(agentConfig(scope.dir, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot']), scope)
    const replica = b.datasets.get('orders')!
    // the first sync (nothing to find) is over and the replica rests level
    await waitFor('b to sync once and rest level', () => replica.counters.syncs >= 1 && replica.state === 'in-sync' && level(b, sot))
    expect(replica.index.suspects.size).toBe(0)
    const before = { ...replica.counters }

    const drift: Drift = { changed: range(10, 50), deleted: range(100, 30), inserted: range(ROWS + 1, 20) }
    await replica.store.apply(writeOf(drift))
    await waitFor('b to be level with the SoT again', () => !level(b, sot) ? false : replica.state === 'in-sync' && replica.counters.fixes > before.fixes)
    await expectSameRows(b, sot)

    // one exchange asked by key about exactly the drifted keys and found all of it, and its sync narrowed no further
    const byKey = lines.filter(l => l.byKey !== undefined)
    expect(byKey).toHaveLength(1)
    expect(byKey[0]).toMatchObject({ msg: 'sync found drift', byKey: size(drift), ...found(drift), unresolved: 0, roundTrips: 1 })
    expect(exchanges(lines).get(String(byKey[0]!.cid))).toHaveLength(1)
    expect({ changed: replica.counters.changed - before.changed, missing: replica.counters.missing - before.missing, extra: replica.counters.extra - before.extra }).toEqual(found(drift))
    expect(replica.counters.rowsUpserted - before.rowsUpserted).toBe(drift.changed.length + drift.deleted.length)
    expect(replica.counters.rowsDeleted - before.rowsDeleted).toBe(drift.inserted.length)
    // answered, then overwritten by the fix: nothing is suspect any more
    expect(replica.index.suspects.size).toBe(0)
    // and a sync now finds nothing, without asking by key
    const report = await replica.reconcileNow()
    expect({ missing: report.missing, changed: report.changed, extra: report.extra, fixes: report.fixes, roundTrips: report.roundTrips }).toEqual({ missing: 0, changed: 0, extra: 0, fixes: 0, roundTrips: 1 })
    expect(lines.filter(l => l.byKey !== undefined)).toHaveLength(1)
  })

  it('converges row for row when drift from before the agent started (not suspect) meets later drift on other keys: the by-key pass, then narrowing', async () => {
    for (const region of ['sot', 'b']) await withOrdersStore(join(scope.dir, region, 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    // drift written while b's agent is down: its index is built from the store as it is, and notes none of it
    const early: Drift = { changed: range(1000, 40), deleted: range(2000, 20), inserted: range(ROWS + 100, 20) }
    await withOrdersStore(join(scope.dir, 'b', 'orders'), async store => { await store.apply(writeOf(early)) })

    // b starts while the SoT is down (its address and peer id known ahead), so no sync can run before the later drift is in
    const sotKey = await loadOrCreatePeerKey(join(scope.dir, 'sot', 'agent', 'peer.key'))
    const port = await freePort()
    const sotAddress = `/ip4/127.0.0.1/tcp/${port}/p2p/${peerIdOf(sotKey)}`
    const { agent: b, lines } = await startLogged(agentConfig(scope.dir, 'b', [{ region: 'sot', address: sotAddress }], ['sot']), scope)
    const replica = b.datasets.get('orders')!
    expect(replica.index.suspects.size).toBe(0)
    expect(replica.state).toBe('no-source')

    const later: Drift = { changed: range(5000, 30), deleted: range(6000, 10), inserted: range(ROWS + 500, 10) }
    await replica.store.apply(writeOf(later))
    await replica.index.catchUp()
    expect(replica.index.suspects.size).toBe(size(later))
    expect(replica.counters.syncs).toBe(0)

    // the SoT comes up where b expects it, and dials b too
    const { agent: sot } = await startLogged(agentConfig(scope.dir, 'sot', [{ region: 'b', address: b.listenAddresses[0]! }], ['sot'], { listen: [`/ip4/127.0.0.1/tcp/${port}`] }), scope)
    expect(sot.peerId).toBe(peerIdOf(sotKey))
    await waitFor('b to be level with the SoT', () => level(b, sot) && replica.state === 'in-sync', 60_000)
    await expectSameRows(b, sot)

    // the first sync asked about the later keys; that was not the whole difference, so it decided nothing on it
    // and narrowed in the same sync, and the policy weighed the whole difference at once
    const byKey = lines.filter(l => l.byKey !== undefined)
    expect(byKey).toHaveLength(1)
    // logged as what it is, not as drift the sync found (the narrowing after it says that, once)
    expect(byKey[0]).toMatchObject({ msg: 'asked by key: not the whole difference, narrowing', byKey: size(later), ...found(later), unresolved: 0 })
    const sync = exchanges(lines).get(String(byKey[0]!.cid))!
    expect(sync).toHaveLength(2)
    expect(sync[0]).toBe(byKey[0])
    expect(sync[1]!.byKey).toBeUndefined()
    expect(lines.filter(l => l.cid === byKey[0]!.cid && l.msg === 'sync found drift')).toHaveLength(1)
    const both: Drift = { changed: [...early.changed, ...later.changed], deleted: [...early.deleted, ...later.deleted], inserted: [...early.inserted, ...later.inserted] }
    expect(sync[1]).toMatchObject({ msg: 'sync found drift', ...found(both), unresolved: 0 })
    const total = { changed: early.changed.length + later.changed.length, missing: early.deleted.length + later.deleted.length, extra: early.inserted.length + later.inserted.length }
    expect({ changed: replica.counters.changed, missing: replica.counters.missing, extra: replica.counters.extra }).toEqual(total)
    expect(replica.index.suspects.size).toBe(0)
  })
})
