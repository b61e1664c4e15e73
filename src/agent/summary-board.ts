/**
 * What this agent has heard from its peers: the latest summary of each
 * dataset from each region, and which peer id speaks for which region.
 *
 * A region named in the config with a /p2p/<id> address is bound to that id;
 * any other region is bound to the first peer that claims it. A summary
 * claiming a region bound to another peer is refused, and so is one from a
 * peer that already speaks for another region: one agent is one region, so a
 * peer naming many regions is lying about all but one of them (and would
 * otherwise grow this board without bound).
 */
import type { DatasetSummary } from '../gossip/summary.ts'

export interface HeardSummary {
  peerId: string
  summary: DatasetSummary
  /** Local time it arrived. */
  receivedAt: number
}

/** Regions bound on first claim at most; past this, new claims are refused (the allowlist bounds real clusters far below). */
const MAX_CLAIMED_REGIONS = 4096

/** Whether a peer may speak for a region: `ok`, or why not. */
export type ClaimVerdict = 'ok' | 'region-taken' | 'peer-has-another-region' | 'too-many-regions'

export class SummaryBoard {
  private readonly regionPeer = new Map<string, string>()
  private readonly peerRegion = new Map<string, string>()
  private readonly latest = new Map<string, HeardSummary>()

  constructor (pinned: Iterable<[region: string, peerId: string]>) {
    for (const [region, peerId] of pinned) { this.regionPeer.set(region, peerId); this.peerRegion.set(peerId, region) }
  }

  /** Whether `peerId` may speak for `region`, binding nothing. */
  verdict (peerId: string, region: string): ClaimVerdict {
    const bound = this.regionPeer.get(region)
    if (bound !== undefined && bound !== peerId) return 'region-taken'
    const spoken = this.peerRegion.get(peerId)
    if (spoken !== undefined && spoken !== region) return 'peer-has-another-region'
    if (bound === undefined && this.regionPeer.size >= MAX_CLAIMED_REGIONS) return 'too-many-regions'
    return 'ok'
  }

  /**
   * Records a summary; returns false when its region is bound to another peer
   * or its peer speaks for another region. With `record` false only the
   * binding is made (a dataset this agent does not carry is not kept).
   */
  accept (peerId: string, summary: DatasetSummary, now = Date.now(), record = true): boolean {
    if (this.verdict(peerId, summary.region) !== 'ok') return false
    this.regionPeer.set(summary.region, peerId)
    this.peerRegion.set(peerId, summary.region)
    if (record) this.latest.set(`${summary.region}\u0000${summary.dataset}`, { peerId, summary, receivedAt: now })
    return true
  }

  /** The region a peer speaks for, if any. */
  regionOf (peerId: string): string | undefined { return this.peerRegion.get(peerId) }

  get (region: string, dataset: string): HeardSummary | undefined {
    return this.latest.get(`${region}\u0000${dataset}`)
  }

  peerOf (region: string): string | undefined { return this.regionPeer.get(region) }

  /** Every summary heard, newest per region and dataset. */
  all (): HeardSummary[] { return [...this.latest.values()] }
}
