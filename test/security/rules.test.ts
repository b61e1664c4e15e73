/**
 * The rules behind each refusal, one by one: the gater's allowlist, bans and
 * per-peer connection cap; secret files and their modes; the pre-shared key
 * format; the summary validator's verdicts and the board's region bindings;
 * the config's security block. The same refusals between real agents over
 * TCP are in test/e2e/security-*.test.ts.
 */
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SummaryBoard } from '../../src/agent/summary-board.ts'
import { parseConfig } from '../../src/config/load.ts'
import { encodeSummary, summarize } from '../../src/gossip/summary.ts'
import { judgeSummary } from '../../src/gossip/validator.ts'
import { createPeerKeyFile, readPeerKeyFile } from '../../src/net/peer-key.ts'
import { ClusterGater, MAX_CONNECTIONS_PER_PEER } from '../../src/security/gater.ts'
import { NetworkSecurity, unpinnedSources } from '../../src/security/network.ts'
import { generatePsk, loadPsk, parsePsk } from '../../src/security/psk.ts'
import { readSecretFile } from '../../src/security/secret-file.ts'
import { silentLogger } from '../../src/observability/logger.ts'
import { MerkleTree } from '../../src/tree/merkle-tree.ts'
import { agentConfig, tempDir } from '../helpers/agents.ts'

const newPeer = async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))

let dir: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => { dir = await tempDir() })
afterAll(async () => { await dir.remove() })

describe('the connection gater', () => {
  it('lets in only allowlisted peers, after the handshake proves who they are, and holds outbound dials to the same list', async () => {
    const friend = await newPeer(); const stranger = await newPeer()
    const gater = new ClusterGater({ allow: [friend.toString()] })
    expect(gater.denyInboundEncryptedConnection(friend)).toBe(false)
    expect(gater.denyInboundEncryptedConnection(stranger)).toBe(true)
    expect(gater.denyDialPeer(stranger)).toBe(true)
    expect(gater.denyOutboundEncryptedConnection(stranger)).toBe(true)
    expect(gater.denyDialMultiaddr(multiaddr(`/ip4/127.0.0.1/tcp/1/p2p/${stranger.toString()}`))).toBe(true)
    expect(gater.denyDialMultiaddr(multiaddr('/ip4/127.0.0.1/tcp/1'))).toBe(false) // checked once the handshake names the peer
    expect(gater.refused['not-allowed']).toBe(4)
  })

  it('an empty allowlist lets anyone in; a ban refuses a peer until it runs out', async () => {
    let now = 1000
    const peer = await newPeer()
    const gater = new ClusterGater({ allow: [], now: () => now })
    expect(gater.denyInboundEncryptedConnection(peer)).toBe(false)
    gater.ban(peer.toString(), 500)
    expect(gater.denyInboundEncryptedConnection(peer)).toBe(true)
    expect(gater.denyDialPeer(peer)).toBe(true)
    now += 501
    expect(gater.denyInboundEncryptedConnection(peer)).toBe(false)
    expect(gater.refused.banned).toBe(2)
  })

  it('refuses a peer that already holds the most connections a peer may', async () => {
    const peer = await newPeer()
    let open = MAX_CONNECTIONS_PER_PEER - 1
    const gater = new ClusterGater({ allow: [], connectionsOf: () => open })
    expect(gater.denyInboundEncryptedConnection(peer)).toBe(false)
    open++
    expect(gater.denyInboundEncryptedConnection(peer)).toBe(true)
    expect(gater.refused['too-many-connections']).toBe(1)
  })
})

describe('secret files', () => {
  it('refuses a file group or others can read, naming the file and the chmod to run', async () => {
    const path = join(dir.path, 'open.secret')
    await writeFile(path, 'x'.repeat(20), { mode: 0o644 })
    await chmod(path, 0o644)
    await expect(readSecretFile('pre-shared key file', path)).rejects.toMatchObject({ code: 'CONVERGE_SECRET_FILE_MODE', message: `pre-shared key file ${path} is readable by group or others (mode 644); run chmod 600 ${path}` })
    await chmod(path, 0o600)
    expect(await readSecretFile('pre-shared key file', path)).toBe('x'.repeat(20))
  })

  it('refuses a missing file, a directory and an oversized file with CONVERGE_SECRET_FILE', async () => {
    await expect(readSecretFile('key', join(dir.path, 'nope'))).rejects.toMatchObject({ code: 'CONVERGE_SECRET_FILE' })
    await expect(readSecretFile('key', dir.path)).rejects.toMatchObject({ code: 'CONVERGE_SECRET_FILE' })
    const big = join(dir.path, 'big.secret')
    await writeFile(big, 'x'.repeat(100_000), { mode: 0o600 })
    await expect(readSecretFile('key', big)).rejects.toMatchObject({ code: 'CONVERGE_SECRET_FILE' })
  })

  it('a peer key file readable by others is refused, not quietly fixed', async () => {
    const path = join(dir.path, 'peer.key')
    await createPeerKeyFile(path)
    await chmod(path, 0o640)
    await expect(readPeerKeyFile(path)).rejects.toMatchObject({ code: 'CONVERGE_SECRET_FILE_MODE', message: expect.stringContaining(`run chmod 600 ${path}`) })
  })
})

describe('the pre-shared key', () => {
  it('reads the swarm key format from a file, or bare hex from an environment variable, and names what is wrong without the secret', async () => {
    const key = generatePsk()
    const path = join(dir.path, 'swarm.key')
    await writeFile(path, key, { mode: 0o600 })
    const fromFile = await loadPsk({ pskFile: path })
    const hex = key.trim().split('\n')[2]!
    expect(await loadPsk({ pskEnv: 'PSK' }, { PSK: hex })).toEqual(fromFile)
    expect(await loadPsk({}, {})).toBeUndefined()
    await expect(loadPsk({ pskEnv: 'PSK' }, {})).rejects.toMatchObject({ code: 'CONVERGE_PSK_INVALID', message: expect.stringContaining('PSK') })
    expect(() => parsePsk('/key/swarm/psk/1.0.0/\n/base16/\nabc', 'file k', false)).toThrow(/file k is not a swarm key/)
    const err = (() => { try { parsePsk(`${hex}zz`, 'env', true) } catch (e) { return e as Error } })()
    expect(err?.message).not.toContain(hex)
  })
})

describe('summaries on the topic', () => {
  const tree = new MerkleTree(2)
  const summary = (region: string) => encodeSummary(summarize(region, 'orders', 'fp', tree))

  it('rejects malformed summaries and false region claims from their author, ignores them when forwarded, accepts the rest', () => {
    const board = new SummaryBoard([['us-east', 'PINNED']])
    const ctx = { region: 'eu-west', claim: (peer: string, region: string) => board.verdict(peer, region) }
    expect(judgeSummary(ctx, 'A', 'A', new Uint8Array([0xc1])).verdict).toBe('reject')
    expect(judgeSummary(ctx, 'A', 'A', summary('eu-west'))).toMatchObject({ verdict: 'reject', reason: 'claims this agent\'s own region' })
    expect(judgeSummary(ctx, 'A', 'A', summary('us-east'))).toMatchObject({ verdict: 'reject', reason: 'claims a region bound to another peer' })
    expect(judgeSummary(ctx, 'A', 'B', summary('us-east')).verdict).toBe('ignore')
    expect(judgeSummary(ctx, 'PINNED', 'B', summary('us-east')).verdict).toBe('accept')
    const ok = judgeSummary(ctx, 'A', 'A', summary('ap-south'))
    expect(ok.verdict).toBe('accept')
    board.accept('A', ok.summary!)
    // one agent is one region: the same peer naming another is refused
    expect(judgeSummary(ctx, 'A', 'A', summary('sa-east'))).toMatchObject({ verdict: 'reject', reason: 'comes from a peer that speaks for another region' })
  })

  it('the board keeps summaries of carried datasets only, and binds a region once', () => {
    const board = new SummaryBoard([])
    const s = summarize('ap-south', 'other', 'fp', tree)
    expect(board.accept('A', s, 1, false)).toBe(true)
    expect(board.all()).toEqual([])
    expect(board.peerOf('ap-south')).toBe('A')
    expect(board.accept('B', s)).toBe(false)
    expect(board.regionOf('A')).toBe('ap-south')
  })
})

describe('the security block of the config', () => {
  const base = (extra: Record<string, unknown>) => agentConfig(dir.path, 'b', [{ region: 'sot', address: '/ip4/127.0.0.1/tcp/7000' }], ['sot'], extra)

  it('defaults keep the cluster open but bounded; bad values name the field', () => {
    const c = parseConfig(base({}))
    expect(c.security).toMatchObject({ allowPeers: [], requirePinnedSources: false, maxConnections: 64, maxStreamsPerPeer: 16, maxBufferedBytes: 16 * 1024 * 1024 })
    expect(() => parseConfig(base({ security: { allowPeers: ['not a peer id'] } }))).toThrow(/security\.allowPeers\.0: must be a peer id/)
    expect(() => parseConfig(base({ security: { pskFile: 'a', pskEnv: 'B' } }))).toThrow(/give at most one of pskFile or pskEnv/)
    expect(() => parseConfig(base({ security: { maxBufferedBytes: 1024 * 1024 } }))).toThrow(/security\.maxBufferedBytes/)
    expect(parseConfig(base({ security: { pskFile: 'swarm.key' } }), '/etc/converge').security.pskFile).toBe('/etc/converge/swarm.key')
  })

  it('an unpinned source of truth is named, and refuses the start when pins are required', async () => {
    const c = parseConfig(base({ security: { requirePinnedSources: true } }))
    expect(unpinnedSources(c)).toEqual(['sot'])
    await expect(NetworkSecurity.prepare(c, silentLogger)).rejects.toMatchObject({ code: 'CONVERGE_CONFIG_INVALID', message: expect.stringMatching(/source of truth region sot is not pinned/) })
    const pinned = parseConfig(agentConfig(dir.path, 'b', [{ region: 'sot', address: `/ip4/127.0.0.1/tcp/7000/p2p/${(await newPeer()).toString()}` }], ['sot'], { security: { requirePinnedSources: true } }))
    expect(unpinnedSources(pinned)).toEqual([])
    await expect(NetworkSecurity.prepare(pinned, silentLogger)).resolves.toBeDefined()
  })
})
