import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { pack } from 'msgpackr'
import { encode as varint } from 'uint8-varint'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { MAX_FRAME_BYTES, SYNC_PROTOCOL } from '../../src/constants.ts'
import { createAgentNode, type AgentNode } from '../../src/net/node.ts'
import { streamChannel } from '../../src/sync/channel.ts'
import { checkMessage, decodeFrame, errorSchema } from '../../src/sync/messages.ts'
import { encodeReconcileBlock } from '../../src/sync/wire.ts'
import { injectDrift, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, allRows, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

describe('a sync stream that carries bad frames', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let sot: Agent
  let stranger: AgentNode

  beforeAll(async () => {
    dir = await tempDir()
    await withOrdersStore(`${dir.path}/sot/orders`, async store => { await seedOrders(store, 0, 2000) })
    sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot']))
    stranger = await createAgentNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    await stranger.dial(multiaddr(sot.listenAddresses[0]!))
  })

  afterAll(async () => {
    await stranger.stop()
    await sot.stop()
    await dir.remove()
  })

  /** Opens a raw sync stream, writes the bytes, and returns the error frame the agent answers with. */
  async function answerTo (bytes: Uint8Array): Promise<{ code: string, message: string }> {
    const stream = await stranger.dialProtocol(peerIdFromString(sot.peerId!), SYNC_PROTOCOL)
    stream.send(bytes)
    const channel = streamChannel(stream)
    const reply = checkMessage(errorSchema, decodeFrame(await channel.receive({ signal: AbortSignal.timeout(10_000) }), 'reply'), 'reply')
    return { code: reply.code, message: reply.message }
  }

  const framed = (body: Uint8Array): Uint8Array => new Uint8Array([...varint(body.length), ...body])

  it('refuses a frame whose declared length is over the maximum, before reading it', async () => {
    const header = varint(MAX_FRAME_BYTES + 1)
    const err = await answerTo(new Uint8Array([...header, 1, 2, 3]))
    expect(err.code).toBe('CONVERGE_FRAME_TOO_LARGE')
    expect(err.message).toMatch(/exceeds the maximum/)
  })

  it('refuses a frame that is not msgpack', async () => {
    const err = await answerTo(framed(new Uint8Array([0xc1, 0xff, 0x00, 0x13])))
    expect(err.code).toBe('CONVERGE_MALFORMED_MESSAGE')
    expect(err.message).toMatch(/open: not valid msgpack/)
  })

  it('refuses a well-formed message with a field of the wrong type, naming the field', async () => {
    const err = await answerTo(framed(pack({ t: 'open', v: 1, cid: 'x', dataset: 42, region: 'r', fp: 'f', clock: {} })))
    expect(err.code).toBe('CONVERGE_MALFORMED_MESSAGE')
    expect(err.message).toMatch(/dataset/)
  })

  it('refuses a round that names nodes outside the tree', async () => {
    const stream = await stranger.dialProtocol(peerIdFromString(sot.peerId!), SYNC_PROTOCOL)
    const channel = streamChannel(stream)
    const fp = sot.datasets.get('orders')!.codec.fingerprint
    await channel.send(pack({ t: 'open', v: 1, cid: 'x', dataset: 'orders', region: 'stranger', fp, clock: {} }))
    await channel.receive()
    await channel.send(pack({ t: 'round', reconcile: [[1, 2, encodeReconcileBlock([{ index: 999, entries: [] }], 2)]] }))
    const reply = checkMessage(errorSchema, decodeFrame(await channel.receive({ signal: AbortSignal.timeout(10_000) }), 'reply'), 'reply')
    expect(reply.code).toBe('CONVERGE_MALFORMED_MESSAGE')
    expect(reply.message).toMatch(/node 999 is outside the level \(size 16\)/)
  })

  it('refuses an unknown dataset with its own code', async () => {
    const err = await answerTo(framed(pack({ t: 'open', v: 1, cid: 'x', dataset: 'nope', region: 'r', fp: 'f', clock: {} })))
    expect(err.code).toBe('CONVERGE_UNKNOWN_DATASET')
  })

  it('keeps serving: a replica that starts afterwards still converges', async () => {
    await withOrdersStore(`${dir.path}/b/orders`, async store => { await seedOrders(store, 0, 2000); await injectDrift(store, 2000, { rows: 50, seed: 3 }) })
    const b = await startAgent(agentConfig(dir.path, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot']))
    try {
      const root = (a: Agent) => a.datasets.get('orders')!.index.tree.root
      await waitFor('b to match the SoT', () => root(b).sum === root(sot).sum && root(b).count === root(sot).count)
      expect(await allRows(b.datasets.get('orders')!.store)).toEqual(await allRows(sot.datasets.get('orders')!.store))
    } finally {
      await b.stop()
    }
  })
})
