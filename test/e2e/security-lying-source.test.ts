/**
 * What may be believed, between real agents over loopback TCP: a replica
 * takes rows only from its dataset's source of truth, and only rows that
 * check out against what that source said in the same exchange.
 *
 * The source here is a real agent whose sync handler was swapped for one
 * that lies (forged rows whose sums agree with each other but not with its
 * tree, wrong entry hashes, a claim that it is empty, a forged region name,
 * an oversized frame), while its gossip stays honest. Through every lie the
 * replica's rows stay exactly as they were, nothing is fixed, and the lie
 * shows in its counters; once the source tells the truth the replica
 * converges. An impostor agent that claims the source's region the whole
 * time is refused and never synced from.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { SYNC_PROTOCOL } from '../../src/constants.ts'
import type { AgentNode } from '../../src/net/node.ts'
import { streamChannel } from '../../src/sync/channel.ts'
import type { ReplicaView } from '../../src/sync/replica-view.ts'
import { serveSync } from '../../src/sync/session.ts'
import { encode as varint } from 'uint8-varint'
import { injectDrift, ordersCodec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, allRows, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'
import { forgingView, garbledView, rewritingChannel } from '../security/liars.ts'

type Mode = 'forged-rows' | 'wrong-hashes' | 'claims-empty' | 'forged-region' | 'oversized-frame' | 'honest'

let dir: Awaited<ReturnType<typeof tempDir>>
let sot: Agent
let replica: Agent
let impostor: Agent
let mode: Mode = 'forged-rows'
const ROWS = 2000

const forgeStatus = (row: Uint8Array): Uint8Array => ordersCodec.encodeRow({ ...ordersCodec.decodeRow(row), status: 'forged' })

beforeAll(async () => {
  dir = await tempDir()
  for (const region of ['sot', 'b', 'impostor']) {
    await withOrdersStore(`${dir.path}/${region}/orders`, async store => {
      await seedOrders(store, 0, ROWS)
      if (region === 'b') await injectDrift(store, ROWS, { rows: 40, seed: 5 })
      if (region === 'impostor') await injectDrift(store, ROWS, { rows: 500, seed: 9 })
    })
  }
  sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot']))
  // the lying handler: the source's own index and codec, served through a lie chosen by `mode`
  const node = (sot as unknown as { node: AgentNode }).node
  await node.handle(SYNC_PROTOCOL, (stream) => {
    const honest = sot.datasets.get('orders')!
    const channel = streamChannel(stream)
    if (mode === 'oversized-frame') {
      // a length prefix past the protocol's frame limit, then a trickle of bytes
      stream.send(new Uint8Array([...varint(5 * 1024 * 1024), 1, 2, 3]))
      return
    }
    const view: ReplicaView = mode === 'forged-rows' ? forgingView(honest.index, ordersCodec, forgeStatus) : mode === 'wrong-hashes' ? garbledView(honest.index) : honest.index
    const lied = mode === 'claims-empty'
      ? rewritingChannel(channel, m => (m.t === 'opened' ? { ...m, count: 0, sum: new Uint8Array(8), children: new Uint8Array(48) } : m))
      : mode === 'forged-region' ? rewritingChannel(channel, m => (m.t === 'opened' ? { ...m, region: 'impostor' } : m)) : channel
    void serveSync(lied, { resolve: () => ({ region: 'sot', codec: honest.codec, view, clock: () => ({}) }) }).catch(() => undefined)
  }, { force: true, maxInboundStreams: 16 })

  // the replica pins region "sot" to the real source's peer id
  replica = await startAgent(agentConfig(dir.path, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot']))
  // an agent that names itself "sot" too, and dials the replica
  impostor = await startAgent(agentConfig(dir.path, 'sot', [{ region: 'b', address: replica.listenAddresses[0]! }], ['sot'], { dataDir: `${dir.path}/impostor/agent`, datasets: [{ name: 'orders', schema: sot.datasets.get('orders')!.config.schema, store: { kind: 'level', path: `${dir.path}/impostor/orders` }, sourceOfTruth: ['sot'] }] }))
}, 60_000)

afterAll(async () => {
  await impostor?.stop()
  await replica?.stop()
  await sot?.stop()
  await dir.remove()
})

it('lie after lie changes nothing in the replica and each shows in its counters; the truth then converges it', async () => {
  const b = replica.datasets.get('orders')!
  const before = await allRows(b.store)
  const attempts = (): number => b.counters.syncs + b.counters.syncErrors
  const expectUntouched = async (what: string): Promise<void> => {
    expect(await allRows(b.store), what).toEqual(before)
    expect(b.counters.fixes, what).toBe(0)
  }
  // a lie that fails the exchange backs the replica off (0.5 s, doubling), so those are met once each; the others twice
  const through = async (m: Mode, reported: () => boolean, times = 2): Promise<void> => {
    mode = m
    const start = attempts()
    await waitFor(`${times} syncs against a source that lies (${m})`, () => attempts() >= start + times && reported(), 20_000)
    await expectUntouched(m)
  }

  let unresolved = b.counters.unresolved
  await through('forged-rows', () => b.counters.unresolved > unresolved)
  unresolved = b.counters.unresolved
  await through('wrong-hashes', () => b.counters.unresolved > unresolved)
  unresolved = b.counters.unresolved
  await through('claims-empty', () => b.counters.unresolved > unresolved)
  let errors = b.counters.syncErrors
  await through('forged-region', () => b.counters.syncErrors > errors && /answered as "impostor"/.test(b.lastError ?? ''), 1)
  errors = b.counters.syncErrors
  await through('oversized-frame', () => b.counters.syncErrors > errors && /exceeds the maximum/.test(b.lastError ?? ''), 1)

  // the impostor's summaries claim a region pinned to another peer: refused, and it is never asked for rows
  expect(replica.summariesRefused).toBeGreaterThan(0)
  expect(replica.heardSummaries().every(h => h.peerId === sot.peerId)).toBe(true)

  mode = 'honest'
  const root = (a: Agent) => a.datasets.get('orders')!.index.tree.root
  await waitFor('the replica to converge once the source tells the truth', () => root(replica).sum === root(sot).sum && root(replica).count === root(sot).count, 30_000)
  expect(await allRows(b.store)).toEqual(await allRows(sot.datasets.get('orders')!.store))
  // and the impostor, which differs from the source in 500 rows, was never asked for any
  expect(impostor.datasets.get('orders')!.index.tree.root.sum).not.toBe(root(sot).sum)
})
