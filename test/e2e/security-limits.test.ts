/**
 * What one peer may cost an agent, over loopback TCP: sync streams past
 * security.maxStreamsPerPeer are refused with their own code (and served
 * again once one closes); a peer that asks for everything and never reads is
 * dropped at the sync timeout, having received what flow control let through;
 * connections past security.maxConnections are refused; and a stream whose
 * reader stalls cannot make a writer buffer past security.maxBufferedBytes
 * (yamux's default is no bound at all). Frames past the protocol's limit are
 * in test/e2e/bad-frames.test.ts (served side) and
 * test/e2e/security-lying-source.test.ts (client side).
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { pack } from 'msgpackr'
import { encode as varint } from 'uint8-varint'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { SYNC_PROTOCOL } from '../../src/constants.ts'
import { createAgentNode, type AgentNode } from '../../src/net/node.ts'
import { streamChannel } from '../../src/sync/channel.ts'
import { checkMessage, decodeFrame, errorSchema, openedSchema } from '../../src/sync/messages.ts'
import { encodeNodeSet } from '../../src/sync/wire.ts'
import { seedOrders } from '../../cluster/orders.ts'
import { agentConfig, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
let sot: Agent
const nodes: AgentNode[] = []

async function plainNode (): Promise<AgentNode> {
  const node = await createAgentNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
  nodes.push(node)
  return node
}

const framed = (message: unknown): Uint8Array => { const body = pack(message); return new Uint8Array([...varint(body.length), ...body]) }

beforeAll(async () => {
  dir = await tempDir()
  // about 600 KB of rows: more than one flow-control window
  await withOrdersStore(`${dir.path}/sot/orders`, async store => { await seedOrders(store, 0, 6000) })
  sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot'], { sync: { minIntervalMs: 50, timeoutMs: 1500 }, security: { maxStreamsPerPeer: 2, maxConnections: 3 } }))
}, 60_000)

afterAll(async () => {
  for (const n of nodes) await n.stop()
  await sot?.stop()
  await dir.remove()
})

describe('limits per peer and per agent', () => {
  it('sync streams past maxStreamsPerPeer get CONVERGE_TOO_MANY_STREAMS; a slot freed is served again', async () => {
    const peer = await plainNode()
    const sotId = peerIdFromString(sot.peerId!)
    await peer.dial(multiaddr(sot.listenAddresses[0]!))
    const open = async (): Promise<Stream> => await peer.dialProtocol(sotId, SYNC_PROTOCOL)
    const held = [await open(), await open()]
    const third = streamChannel(await open())
    const refusal = checkMessage(errorSchema, decodeFrame(await third.receive({ signal: AbortSignal.timeout(5000) }), 'reply'), 'reply')
    expect(refusal.code).toBe('CONVERGE_TOO_MANY_STREAMS')
    expect(refusal.message).toMatch(/already has 2 sync streams open here/)

    // one of the held streams still works, and once it closes a new one is served
    const fp = sot.datasets.get('orders')!.codec.fingerprint
    const first = streamChannel(held[0]!)
    await first.send(pack({ t: 'open', v: 1, cid: 'a', dataset: 'orders', region: 'peer', fp, clock: {} }))
    expect(checkMessage(openedSchema, decodeFrame(await first.receive({ signal: AbortSignal.timeout(5000) }), 'opened'), 'opened').count).toBe(6000)
    await first.close()
    await waitFor('the slot to be given back', async () => {
      const again = streamChannel(await open())
      await again.send(pack({ t: 'open', v: 1, cid: 'b', dataset: 'orders', region: 'peer', fp, clock: {} }))
      const answer = decodeFrame(await again.receive({ signal: AbortSignal.timeout(5000) }), 'answer') as { t: string }
      again.abort(new Error('done'))
      return answer.t === 'opened'
    }, 5000, 100)
    for (const s of held) s.abort(new Error('done'))
  })

  it('a peer that asks for every row and never reads is dropped at the sync timeout; the agent serves on', async () => {
    const peer = await plainNode()
    const fp = sot.datasets.get('orders')!.codec.fingerprint
    const stream = await peer.dialProtocol(multiaddr(sot.listenAddresses[0]!), SYNC_PROTOCOL)
    // raw writes, and no reader attached: the agent's replies pile up against the flow-control window
    stream.send(framed({ t: 'open', v: 1, cid: 'greedy', dataset: 'orders', region: 'greedy', fp, clock: {} }))
    stream.send(framed({ t: 'round', fetchAll: [[0, encodeNodeSet([0])]] }))
    // the agent gives up at its sync timeout (1.5 s here) and ends its side of the stream
    await waitFor('the agent to end the stalled exchange', () => stream.remoteWriteStatus === 'closed' || stream.status !== 'open', 10_000)
    // it sent what flow control let through before it stalled, not the whole 600 KB asked for
    expect(stream.readBufferLength).toBeLessThan(600 * 1024)
    const again = streamChannel(await peer.dialProtocol(peerIdFromString(sot.peerId!), SYNC_PROTOCOL))
    await again.send(pack({ t: 'open', v: 1, cid: 'next', dataset: 'orders', region: 'greedy', fp, clock: {} }))
    expect((decodeFrame(await again.receive({ signal: AbortSignal.timeout(5000) }), 'opened') as { t: string }).t).toBe('opened')
    again.abort(new Error('done'))
  })

  it('connections past maxConnections are refused', async () => {
    for (const n of nodes) await n.hangUp(peerIdFromString(sot.peerId!)).catch(() => undefined)
    await waitFor('earlier connections to close', () => nodes.every(n => n.getConnections(peerIdFromString(sot.peerId!)).length === 0), 5000)
    const peers = await Promise.all([1, 2, 3, 4, 5].map(async () => await plainNode()))
    const held: AgentNode[] = []
    for (const p of peers) {
      // one at a time, and slower than libp2p's per-host rate limit, so only the connection ceiling refuses
      await new Promise(resolve => setTimeout(resolve, 250))
      await p.dial(multiaddr(sot.listenAddresses[0]!), { signal: AbortSignal.timeout(5000) }).catch(() => undefined)
      await new Promise(resolve => setTimeout(resolve, 50))
      if (p.getConnections(peerIdFromString(sot.peerId!)).length > 0) held.push(p)
    }
    expect(held.length).toBe(3)
  })
})

describe('buffered bytes, with the agent\'s node settings', () => {
  it('a writer whose reader stalls is reset once maxBufferedBytes are queued, instead of buffering without bound', async () => {
    const security = { topics: ['t'], maxConnections: 8, maxBufferedBytes: 9 * 1024 * 1024 }
    const reader = await createAgentNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], security })
    const writer = await createAgentNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], security })
    nodes.push(reader, writer)
    await reader.handle('/converge/test-stall/1', () => { /* never reads */ })
    const stream = await writer.dialProtocol(reader.getMultiaddrs()[0]!, '/converge/test-stall/1')
    const closed = new Promise<Error | undefined>(resolve => stream.addEventListener('close', (evt) => resolve((evt as unknown as { error?: Error }).error), { once: true }))
    const chunk = new Uint8Array(64 * 1024)
    let queued = 0
    try { for (let i = 0; i < 320; i++) { stream.send(chunk); queued += chunk.length } } catch { /* the stream was reset under us */ }
    const error = await closed
    expect(error?.name).toBe('StreamBufferError')
    // what was queued: the bound, plus the flow-control window already on its way, plus the chunk that overflowed
    expect(queued).toBeLessThanOrEqual(security.maxBufferedBytes + 256 * 1024 + 2 * chunk.length)
  })
})
