/**
 * Who may talk, between real agents over loopback TCP: a cluster closed by
 * an allowlist and a pre-shared key. Its members converge; a stranger off the
 * allowlist is refused right after the handshake, before identify, gossip or
 * sync run; a peer without the key (or with another key) cannot connect at
 * all, even one the allowlist names. Secrets that others can read, and
 * unpinned sources when pins are required, stop an agent's start.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { summaryTopic } from '../../src/constants.ts'
import { createAgentNode, type AgentNode } from '../../src/net/node.ts'
import { createPeerKeyFile, peerIdOf } from '../../src/net/peer-key.ts'
import { generatePsk, parsePsk } from '../../src/security/psk.ts'
import { injectDrift, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, allRows, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
let sot: Agent
let b: Agent
let pskFile: string
let psk: Uint8Array
/** Allowlisted on the source, but never given the key. */
let keyless: PrivateKey
const nodes: AgentNode[] = []

/** A peer key file where the agent looks for it (so its peer id is known before it starts). */
async function keyFor (region: string): Promise<string> {
  await mkdir(`${dir.path}/${region}/agent`, { recursive: true })
  return peerIdOf(await createPeerKeyFile(`${dir.path}/${region}/agent/peer.key`))
}

async function peer (key?: PrivateKey, withPsk?: Uint8Array): Promise<AgentNode> {
  const node = await createAgentNode({
    privateKey: key ?? await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    ...(withPsk === undefined ? {} : { security: { psk: withPsk, topics: [summaryTopic('test')], maxConnections: 8, maxBufferedBytes: 16 * 1024 * 1024 } })
  })
  nodes.push(node)
  return node
}

beforeAll(async () => {
  dir = await tempDir()
  pskFile = `${dir.path}/swarm.key`
  await writeFile(pskFile, generatePsk(), { mode: 0o600 })
  psk = parsePsk(generatePsk(), 'k', false) // another cluster's key
  for (const region of ['sot', 'b']) {
    await withOrdersStore(`${dir.path}/${region}/orders`, async store => {
      await seedOrders(store, 0, 1000)
      if (region === 'b') await injectDrift(store, 1000, { rows: 30, seed: 4 })
    })
  }
  const sotId = await keyFor('sot')
  const bId = await keyFor('b')
  keyless = await generateKeyPair('Ed25519')
  const security = (allow: string[]) => ({ security: { allowPeers: allow, pskFile } })
  sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot'], security([bId, peerIdFromString(peerIdOf(keyless)).toString()])))
  b = await startAgent(agentConfig(dir.path, 'b', [{ region: 'sot', address: `${sot.listenAddresses[0]!.replace(/\/p2p\/.*$/, '')}/p2p/${sotId}` }], ['sot'], security([sotId])))
}, 60_000)

afterAll(async () => {
  for (const n of nodes) await n.stop()
  await b?.stop()
  await sot?.stop()
  await dir.remove()
})

describe('a cluster closed by an allowlist and a pre-shared key', () => {
  it('its members connect and converge', async () => {
    const root = (a: Agent) => a.datasets.get('orders')!.index.tree.root
    await waitFor('b to converge with the source', () => root(b).sum === root(sot).sum && root(b).count === root(sot).count, 30_000)
    expect(await allRows(b.datasets.get('orders')!.store)).toEqual(await allRows(sot.datasets.get('orders')!.store))
  })

  it('a stranger off the allowlist is refused after the handshake, before any protocol runs', async () => {
    const stranger = await peer(undefined, await (async () => parsePsk(await import('node:fs/promises').then(fs => fs.readFile(pskFile, 'utf8')), 'k', false))())
    const identified: string[] = []
    stranger.addEventListener('peer:identify', (evt) => { identified.push(evt.detail.peerId.toString()) })
    const refusedBefore = sot.network!.gater.refused['not-allowed']
    const summariesBefore = sot.summariesRefused
    // the dialer may count its side as up for a moment (it finished the handshake); the agent hangs up at once
    await stranger.dial(multiaddr(sot.listenAddresses[0]!), { signal: AbortSignal.timeout(5000) }).catch(() => undefined)
    await waitFor('the agent to refuse the stranger', () => sot.network!.gater.refused['not-allowed'] > refusedBefore, 5000)
    await waitFor('the stranger\'s connection to be gone', () => stranger.getConnections(peerIdFromString(sot.peerId!)).length === 0, 5000)
    await new Promise(resolve => setTimeout(resolve, 300))
    // no identify exchange, no gossip, nothing seen by the agent beyond the refused handshake
    expect(identified).toEqual([])
    expect(sot.summariesRefused).toBe(summariesBefore)
    expect(sot.peers().some(p => p.peerId === stranger.peerId.toString())).toBe(false)
  })

  it('a peer without the key cannot connect, even one the allowlist names; nor can one with another cluster\'s key', async () => {
    for (const node of [await peer(keyless), await peer(keyless, psk)]) {
      // no handshake can complete: the dial fails, or stalls until given up
      const dialed = await node.dial(multiaddr(sot.listenAddresses[0]!), { signal: AbortSignal.timeout(2000) }).then(() => 'connected', (err: Error) => err.name)
      expect(dialed).not.toBe('connected')
      expect(node.getConnections().length).toBe(0)
    }
    // the agents themselves still talk
    expect(b.peers().find(p => p.region === 'sot')?.connected).toBe(true)
  })
})

describe('secrets and pins, checked at start', () => {
  /** An agent that names the source by address only (no /p2p/<id>). */
  const start = async (region: string, extra: Record<string, unknown>) => {
    const agent = await startAgent(agentConfig(dir.path, region, [{ region: 'sot', address: sot.listenAddresses[0]!.replace(/\/p2p\/.*$/, '') }], ['sot'], extra))
    await agent.stop()
    return 'started'
  }

  it('a pre-shared key file others can read stops the start, naming the file and the chmod to run', async () => {
    const open = `${dir.path}/open-swarm.key`
    await writeFile(open, generatePsk())
    await chmod(open, 0o644)
    await expect(start('c1', { security: { pskFile: open } })).rejects.toMatchObject({ code: 'CONVERGE_SECRET_FILE_MODE', message: `pre-shared key file ${open} is readable by group or others (mode 644); run chmod 600 ${open}` })
  })

  it('a peer key file others can read stops the start, naming the file and the chmod to run', async () => {
    await keyFor('c2')
    const key = `${dir.path}/c2/agent/peer.key`
    await chmod(key, 0o644)
    await expect(start('c2', {})).rejects.toMatchObject({ code: 'CONVERGE_SECRET_FILE_MODE', message: `peer key file ${key} is readable by group or others (mode 644); run chmod 600 ${key}` })
  })

  it('an unpinned source of truth stops the start when pins are required', async () => {
    await expect(start('c3', { security: { requirePinnedSources: true } })).rejects.toMatchObject({ code: 'CONVERGE_CONFIG_INVALID', message: expect.stringMatching(/region sot is not pinned/) })
  })
})
