/**
 * The agent's network security, set up from the config's `security` block:
 * the allowlist and bans (the gater), the pre-shared key, the peer guard that
 * cuts off peers whose gossip score falls to the graylist, and the count of
 * sync streams each peer has this agent serve.
 *
 * prepare() reads every secret and checks every rule before anything
 * listens, so a bad key file or an unpinned source (when pins are required)
 * stops the start with a clear message.
 */
import { multiaddr } from '@multiformats/multiaddr'
import type { AgentConfig } from '../config/schema.ts'
import { ConfigError, ConvergeError, TooManyStreamsError } from '../errors.ts'
import { CLUSTER_SCORE_THRESHOLDS } from '../gossip/scoring.ts'
import type { NodeSecurity } from '../net/node.ts'
import type { Logger } from '../observability/logger.ts'
import { ClusterGater } from './gater.ts'
import { PeerGuard, type GuardedNode } from './peer-guard.ts'
import { loadPsk } from './psk.ts'

/** Peer ids the config pins to regions with /p2p/<id>. */
export function pinnedPeers (config: AgentConfig): Array<[region: string, peerId: string]> {
  return config.peers.flatMap(p => {
    const id = multiaddr(p.address).getComponents().find(c => c.name === 'p2p')?.value
    return id === undefined ? [] : [[p.region, id] as [string, string]]
  })
}

/** Regions that serve as some dataset's source of truth but are not pinned to a peer id (this agent's own excepted). */
export function unpinnedSources (config: AgentConfig): string[] {
  const pinned = new Set(pinnedPeers(config).map(([region]) => region))
  const out = new Set<string>()
  for (const d of config.datasets) for (const r of d.sourceOfTruth) if (r !== config.region && !pinned.has(r)) out.add(r)
  return [...out]
}

interface NodeLike extends GuardedNode {
  getConnections: (peerId?: import('@libp2p/interface').PeerId) => Array<unknown>
}

export class NetworkSecurity {
  readonly gater: ClusterGater
  private readonly config: AgentConfig['security']
  private readonly psk: Uint8Array | undefined
  private readonly log: Logger
  private guard: PeerGuard | undefined
  private readonly serving = new Map<string, number>()

  private constructor (config: AgentConfig, psk: Uint8Array | undefined, log: Logger) {
    this.config = config.security
    this.psk = psk
    this.log = log
    // peers pinned in the config are part of the cluster: an allowlist need not name them twice
    const allow = config.security.allowPeers.length === 0 ? [] : [...config.security.allowPeers, ...pinnedPeers(config).map(([, id]) => id)]
    this.gater = new ClusterGater({ allow })
    this.gater.onRefuse = (peerId, reason, direction) => this.log.warn({ peerId, reason, direction }, 'connection refused')
  }

  static async prepare (config: AgentConfig, log: Logger): Promise<NetworkSecurity> {
    const unpinned = unpinnedSources(config)
    if (unpinned.length > 0) {
      const what = `source of truth region${unpinned.length === 1 ? '' : 's'} ${unpinned.join(', ')} ${unpinned.length === 1 ? 'is' : 'are'} not pinned to a peer id (add /p2p/<id> to the peer's address)`
      if (config.security.requirePinnedSources) throw new ConfigError(`security.requirePinnedSources: ${what}`)
      log.warn({ regions: unpinned }, `${what}: the first ${config.security.allowPeers.length > 0 ? 'allowlisted ' : ''}peer that claims one is believed`)
    }
    if (config.security.allowPeers.length === 0) log.warn('security.allowPeers is empty: any peer that can reach this agent may connect')
    return new NetworkSecurity(config, await loadPsk(config.security), log)
  }

  /** What the libp2p node is built with. */
  nodeOptions (topic: string): NodeSecurity {
    return {
      gater: this.gater,
      ...(this.psk === undefined ? {} : { psk: this.psk }),
      topics: [topic],
      maxConnections: this.config.maxConnections,
      maxBufferedBytes: this.config.maxBufferedBytes
    }
  }

  /** Binds the gater and the peer guard to the running node. */
  attach (node: NodeLike, onCutOff?: (peerId: string, score: number) => void): void {
    this.gater.connectionsOf = peerId => node.getConnections(peerId).length
    const scored = node.services.pubsub as unknown as { getScore?: (peerId: string) => number }
    if (typeof scored.getScore !== 'function') throw new ConvergeError('CONVERGE_NO_PEER_SCORES', 'the gossip service keeps no peer scores: peers sending bad summaries could not be cut off')
    const scoreOf = scored.getScore.bind(scored)
    this.guard = new PeerGuard({
      node,
      gater: this.gater,
      scoreOf,
      threshold: CLUSTER_SCORE_THRESHOLDS.graylistThreshold,
      banMs: this.config.banMs,
      onCutOff: (peerId, score) => {
        this.log.warn({ peerId, score, banMs: this.config.banMs }, 'peer cut off: its gossip score fell to the graylist')
        onCutOff?.(peerId, score)
      }
    })
  }

  /** A gossip message from this peer was rejected. */
  rejected (peerId: string): void { this.guard?.rejected(peerId) }

  /** Peers cut off for bad gossip since start. */
  get cutOff (): number { return this.guard?.cutOff ?? 0 }

  get maxStreamsPerPeer (): number { return this.config.maxStreamsPerPeer }

  /**
   * Takes one of the peer's sync stream slots; the returned function gives it
   * back. Throws TooManyStreamsError when the peer has them all.
   */
  acquireStream (peerId: string): () => void {
    const n = this.serving.get(peerId) ?? 0
    if (n >= this.config.maxStreamsPerPeer) throw new TooManyStreamsError(peerId, this.config.maxStreamsPerPeer)
    this.serving.set(peerId, n + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.serving.get(peerId) ?? 1) - 1
      if (left === 0) this.serving.delete(peerId); else this.serving.set(peerId, left)
    }
  }

  stop (): void { this.guard?.stop() }
}
