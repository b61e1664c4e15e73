/**
 * Cuts off peers whose gossip score falls to the graylist: gossipsub then
 * already ignores their messages, and the guard also hangs up on them and has
 * the gater refuse them for a while, so a peer that floods the topic with
 * summaries the validator rejects costs nothing more than the handshake of a
 * refused redial.
 *
 * Scores move after the validator's verdict is applied, so the guard looks at
 * a peer right after each rejection, and at every connected peer on each
 * gossipsub heartbeat (scores also fall through decay-free penalties such as
 * broken promises).
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ClusterGater } from './gater.ts'

export interface GuardedNode {
  getPeers: () => PeerId[]
  hangUp: (peer: PeerId) => Promise<void>
  services: {
    pubsub: {
      addEventListener: (type: 'gossipsub:heartbeat', listener: () => void) => void
      removeEventListener: (type: 'gossipsub:heartbeat', listener: () => void) => void
    }
  }
}

export interface PeerGuardInit {
  node: GuardedNode
  gater: ClusterGater
  /** A peer's gossip score (gossipsub's getScore, which its public interface does not declare). */
  scoreOf: (peerId: string) => number
  /** Score at or below which a peer is cut off (the graylist threshold). */
  threshold: number
  /** How long a cut-off peer is refused. */
  banMs: number
  /** Called once per peer cut off. */
  onCutOff?: (peerId: string, score: number) => void
}

export class PeerGuard {
  private readonly init: PeerGuardInit
  private readonly onHeartbeat = (): void => { for (const p of this.init.node.getPeers()) this.check(p.toString()) }
  /** Peers cut off since start. */
  cutOff = 0
  private stopped = false

  constructor (init: PeerGuardInit) {
    this.init = init
    init.node.services.pubsub.addEventListener('gossipsub:heartbeat', this.onHeartbeat)
  }

  /** A message from this peer was rejected: look at its score once the verdict has been applied. */
  rejected (peerId: string): void { setImmediate(() => this.check(peerId)) }

  check (peerId: string): void {
    // a look scheduled just before the node stopped finds no scores to read
    if (this.stopped) return
    const { node, gater, threshold, banMs } = this.init
    // a banned peer still connected (a hang-up that failed) is hung up on again
    if (gater.isBanned(peerId)) { node.hangUp(peerIdFromString(peerId)).catch(() => undefined); return }
    const score = this.init.scoreOf(peerId)
    if (score > threshold) return
    gater.ban(peerId, banMs)
    this.cutOff++
    this.init.onCutOff?.(peerId, score)
    node.hangUp(peerIdFromString(peerId)).catch(() => undefined)
  }

  stop (): void {
    this.stopped = true
    this.init.node.services.pubsub.removeEventListener('gossipsub:heartbeat', this.onHeartbeat)
  }
}
