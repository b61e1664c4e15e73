/**
 * What this agent has heard from its peers: the latest summary of each
 * dataset from each region, and which peer id speaks for which region.
 *
 * A region named in the config with a /p2p/<id> address is bound to that id;
 * any other region is bound to the first peer that claims it. A summary
 * claiming a region bound to another peer is refused.
 */
import type { DatasetSummary } from '../gossip/summary.ts'

export interface HeardSummary {
  peerId: string
  summary: DatasetSummary
  /** Local time it arrived. */
  receivedAt: number
}

export class SummaryBoard {
  private readonly regionPeer = new Map<string, string>()
  private readonly latest = new Map<string, HeardSummary>()

  constructor (pinned: Iterable<[region: string, peerId: string]>) {
    for (const [region, peerId] of pinned) this.regionPeer.set(region, peerId)
  }

  /** Records a summary; returns false when its region is bound to another peer. */
  accept (peerId: string, summary: DatasetSummary, now = Date.now()): boolean {
    const bound = this.regionPeer.get(summary.region)
    if (bound !== undefined && bound !== peerId) return false
    if (bound === undefined) this.regionPeer.set(summary.region, peerId)
    this.latest.set(`${summary.region}\u0000${summary.dataset}`, { peerId, summary, receivedAt: now })
    return true
  }

  get (region: string, dataset: string): HeardSummary | undefined {
    return this.latest.get(`${region}\u0000${dataset}`)
  }

  peerOf (region: string): string | undefined { return this.regionPeer.get(region) }

  /** Every summary heard, newest per region and dataset. */
  all (): HeardSummary[] { return [...this.latest.values()] }
}
