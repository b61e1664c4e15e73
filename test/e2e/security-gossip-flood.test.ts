/**
 * A peer that keeps sending summaries the topic validator rejects, between
 * real agents over loopback TCP: it is allowed in (it is on the allowlist),
 * but every rejected summary costs it gossip score; at the graylist the agent
 * hangs up on it and refuses it for security.banMs. Its summaries change
 * nothing, and the replica converges with its real source meanwhile.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { pack } from 'msgpackr'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { summaryTopic } from '../../src/constants.ts'
import { encodeSummary, summarize } from '../../src/gossip/summary.ts'
import { createAgentNode, type AgentNode } from '../../src/net/node.ts'
import { peerIdOf } from '../../src/net/peer-key.ts'
import { MerkleTree } from '../../src/tree/merkle-tree.ts'
import { injectDrift, ordersCodec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, allRows, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
let sot: Agent
let b: Agent
let flooder: AgentNode

beforeAll(async () => {
  dir = await tempDir()
  for (const region of ['sot', 'b']) {
    await withOrdersStore(`${dir.path}/${region}/orders`, async store => {
      await seedOrders(store, 0, 1000)
      if (region === 'b') await injectDrift(store, 1000, { rows: 30, seed: 6 })
    })
  }
  const key = await generateKeyPair('Ed25519')
  sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot']))
  // b lets the flooder in: only its behaviour can get it cut off
  b = await startAgent(agentConfig(dir.path, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot'], { security: { allowPeers: [peerIdOf(key)], banMs: 60_000 } }))
  flooder = await createAgentNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'] })
  flooder.services.pubsub.subscribe(summaryTopic('test'))
}, 60_000)

afterAll(async () => {
  await flooder?.stop()
  await b?.stop()
  await sot?.stop()
  await dir.remove()
})

it('a peer flooding invalid summaries is graylisted, hung up on and refused; nothing it said is believed', async () => {
  const topic = summaryTopic('test')
  const bId = peerIdFromString(b.peerId!)
  await flooder.dial(multiaddr(b.listenAddresses[0]!))
  await waitFor('the flooder to see b on the topic', () => flooder.services.pubsub.getSubscribers(topic).some(p => p.equals(bId)), 10_000)
  const consistentButForged = summarize('sot', 'orders', ordersCodec.fingerprint, new MerkleTree(1)) // claims the pinned source's region
  const junk = [
    new Uint8Array([0xc1, 0xff]),
    pack({ v: 1, region: 'x', dataset: 'orders', fp: 'f', depth: 1, count: 5, sum: new Uint8Array(8), children: new Uint8Array(128).fill(1), at: 0 }), // root not the sum of its children
    encodeSummary(consistentButForged),
    new Uint8Array(new Array(20_000).fill(0x91)) // nested past any bound
  ]
  const refusedBefore = b.summariesRefused
  const publishing = setInterval(() => { for (const m of junk) flooder.services.pubsub.publish(topic, m).catch(() => undefined) }, 50)
  try {
    await waitFor('b to cut the flooder off', () => (b.network?.cutOff ?? 0) >= 1, 20_000)
    await waitFor('the flooder\'s connection to close', () => flooder.getConnections(bId).length === 0, 5000)
  } finally {
    clearInterval(publishing)
  }
  // graylisting takes seven rejected summaries in short order (see gossip/scoring.ts)
  expect(b.summariesRefused - refusedBefore).toBeGreaterThanOrEqual(7)
  // while banned, a redial is refused at the handshake
  const banned = b.network!.gater.refused.banned
  await flooder.dial(multiaddr(b.listenAddresses[0]!), { signal: AbortSignal.timeout(3000) }).catch(() => undefined)
  await waitFor('the redial to be refused', () => b.network!.gater.refused.banned > banned, 5000)
  await waitFor('no connection left', () => flooder.getConnections(bId).length === 0, 5000)

  // nothing the flooder said was believed: b converges with the real source, row for row
  const root = (a: Agent) => a.datasets.get('orders')!.index.tree.root
  await waitFor('b to converge with the source', () => root(b).sum === root(sot).sum && root(b).count === root(sot).count, 30_000)
  expect(await allRows(b.datasets.get('orders')!.store)).toEqual(await allRows(sot.datasets.get('orders')!.store))
  expect(b.heardSummaries().every(h => h.peerId === sot.peerId)).toBe(true)
})
