/**
 * The cluster's connection gater: who may hold a connection to this agent.
 *
 * A peer is let in only when the allowlist is empty or names it, it is not
 * serving a ban (set by the peer guard for bad gossip), and it does not
 * already hold as many connections as a peer may. The check runs right after
 * the noise handshake has proved the remote peer id and before the muxer is
 * negotiated, so a refused peer never reaches identify, gossipsub or sync.
 * Outbound dials are held to the same list, so this agent never opens a
 * connection a peer's own gater would have to refuse.
 */
import type { ConnectionGater, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Connections one peer may hold to this agent at once: one is normal, a few cover simultaneous dials and reconnects. */
export const MAX_CONNECTIONS_PER_PEER = 4

export type RefusalReason = 'not-allowed' | 'banned' | 'too-many-connections'

export interface GaterInit {
  /** Peer ids let in; empty: any peer. */
  allow: Iterable<string>
  /** Counts this agent's open connections to a peer (bound once the node exists). */
  connectionsOf?: (peerId: PeerId) => number
  now?: () => number
}

export class ClusterGater implements ConnectionGater {
  private readonly allow: ReadonlySet<string>
  private readonly bans = new Map<string, number>()
  private readonly now: () => number
  connectionsOf: (peerId: PeerId) => number
  /** Connections refused, by reason: what tests and operators look at. */
  readonly refused: Record<RefusalReason, number> = { 'not-allowed': 0, banned: 0, 'too-many-connections': 0 }
  /** Called on every refusal (the agent logs it). */
  onRefuse: (peerId: string, reason: RefusalReason, direction: 'inbound' | 'outbound') => void = () => undefined

  constructor (init: GaterInit) {
    this.allow = new Set(init.allow)
    this.connectionsOf = init.connectionsOf ?? (() => 0)
    this.now = init.now ?? Date.now
  }

  /** Whether an allowlist is in force. */
  get restricted (): boolean { return this.allow.size > 0 }

  /** Refuses the peer for `ms` from now. */
  ban (peerId: string, ms: number): void { this.bans.set(peerId, this.now() + ms) }

  isBanned (peerId: string): boolean {
    const until = this.bans.get(peerId)
    if (until === undefined) return false
    if (until > this.now()) return true
    this.bans.delete(peerId)
    return false
  }

  /** Why the peer would be refused now, or undefined when it may connect. */
  reasonToRefuse (peerId: string): RefusalReason | undefined {
    if (this.allow.size > 0 && !this.allow.has(peerId)) return 'not-allowed'
    if (this.isBanned(peerId)) return 'banned'
    return undefined
  }

  private refuse (peerId: PeerId, direction: 'inbound' | 'outbound', extra?: RefusalReason): boolean {
    const id = peerId.toString()
    const reason = this.reasonToRefuse(id) ?? extra
    if (reason === undefined) return false
    this.refused[reason]++
    this.onRefuse(id, reason, direction)
    return true
  }

  denyDialPeer (peerId: PeerId): boolean { return this.refuse(peerId, 'outbound') }

  denyDialMultiaddr (addr: Multiaddr): boolean {
    const id = addr.getComponents().find(c => c.name === 'p2p')?.value
    if (id === undefined) return false // the peer id is checked once the handshake proves it
    const reason = this.reasonToRefuse(id)
    if (reason === undefined) return false
    this.refused[reason]++
    this.onRefuse(id, reason, 'outbound')
    return true
  }

  denyInboundEncryptedConnection (peerId: PeerId): boolean {
    // the new connection is not counted yet: refuse when the peer already holds the maximum
    const crowded = this.connectionsOf(peerId) >= MAX_CONNECTIONS_PER_PEER ? 'too-many-connections' : undefined
    return this.refuse(peerId, 'inbound', crowded)
  }

  denyOutboundEncryptedConnection (peerId: PeerId): boolean { return this.refuse(peerId, 'outbound') }
}
