import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { pack } from 'msgpackr'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { MAX_SUMMARY_BYTES, summaryTopic } from '../../src/constants.ts'
import { encodeSummary, summarize } from '../../src/gossip/summary.ts'
import { createAgentNode, type AgentNode } from '../../src/net/node.ts'
import { MerkleTree } from '../../src/tree/merkle-tree.ts'
import { injectDrift, ordersCodec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, allRows, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
let sot: Agent
let b: Agent
let stranger: AgentNode

beforeAll(async () => {
  dir = await tempDir()
  for (const region of ['sot', 'b']) {
    await withOrdersStore(`${dir.path}/${region}/orders`, async store => {
      await seedOrders(store, 0, 3000)
      if (region === 'b') await injectDrift(store, 3000, { rows: 60, seed: 8 })
    })
  }
  sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot']))
  stranger = await createAgentNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
  stranger.services.pubsub.subscribe(summaryTopic('test'))
})

afterAll(async () => {
  await b?.stop()
  await stranger.stop()
  await sot.stop()
  await dir.remove()
})

it('garbage, oversized, malformed and forged summaries on the topic change nothing; the replica still converges', async () => {
  // b's config pins region "sot" to the real SoT's peer id, so a stranger speaking for "sot" is refused
  b = await startAgent(agentConfig(dir.path, 'b', [{ region: 'sot', address: `${sot.listenAddresses[0]!}` }], ['sot'], { sync: { minIntervalMs: 50, timeoutMs: 60_000 } }))
  await stranger.dial(multiaddr(b.listenAddresses[0]!))
  const topic = summaryTopic('test')
  const liar = new MerkleTree(1)
  const junk = [
    new Uint8Array([0xc1, 0xff, 0x00]), // not msgpack
    new Uint8Array(MAX_SUMMARY_BYTES + 1), // too large
    pack({ v: 1, region: 'sot', dataset: 'orders', fp: 'x', depth: 99, count: -1 }), // fields out of range
    encodeSummary(summarize('sot', 'orders', ordersCodec.fingerprint, liar)), // a forged SoT summary: an empty dataset
    encodeSummary(summarize('b', 'orders', ordersCodec.fingerprint, liar)) // b's own region
  ]
  const publishing = setInterval(() => { for (const m of junk) stranger.services.pubsub.publish(topic, m).catch(() => undefined) }, 100)
  try {
    const root = (a: Agent) => a.datasets.get('orders')!.index.tree.root
    await waitFor('b to converge despite the noise', () => root(b).sum === root(sot).sum && root(b).count === root(sot).count, 30_000)
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(await allRows(b.datasets.get('orders')!.store)).toEqual(await allRows(sot.datasets.get('orders')!.store))
    expect(b.datasets.get('orders')!.counters.rowsDeleted).toBe(12) // what the drift inserted, nothing more: the forged empty summary deleted nothing
    // the junk reached b and was refused (the forged empty SoT summary above deleted nothing)
    expect(b.summariesRefused).toBeGreaterThanOrEqual(junk.length)
  } finally {
    clearInterval(publishing)
  }
})
