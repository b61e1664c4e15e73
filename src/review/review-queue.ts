/**
 * Fixes held for a person: proposed by the policy (the `review` rule, or a
 * risk threshold), approved or rejected by name through the status port or
 * the CLI. Kept in the agent's LevelDB so a restart loses none.
 *
 * At most one review is pending per dataset (or partition of it): a newer
 * proposal for the same place supersedes it, and a proposal identical to one
 * already rejected is not raised again (the drift is still reported).
 */
import { createHash, randomUUID } from 'node:crypto'
import { pack, unpack } from 'msgpackr'
import type { ByteSublevel, StateDb } from '../index/state-db.ts'
import { SerialQueue } from '../util/serial.ts'

export type ReviewState = 'pending' | 'applied' | 'rejected' | 'superseded' | 'refused'

export interface Proposal {
  dataset: string
  partition?: string
  correlationId: string
  sourceRegion: string
  rule: string
  reasons: string[]
  /** The proposed fix: SoT rows to write and keys to delete, sorted by key. */
  upserts: Uint8Array[]
  deletes: Uint8Array[]
  /** This replica's rows when the fix was proposed, per upsert then per delete (null where absent): the approval re-checks them. */
  expected: Array<Uint8Array | null>
}

export interface ReviewItem extends Proposal {
  id: string
  createdAt: number
  /** Identifies the fix's content: the same rows and keys give the same hash. */
  contentHash: string
  state: ReviewState
  decidedBy?: string
  decidedAt?: number
  decisionReason?: string
  /** The audited fixes an approval applied. */
  fixIds?: string[]
}

const enc = new TextEncoder()

export function contentHash (upserts: readonly Uint8Array[], deletes: readonly Uint8Array[]): string {
  const h = createHash('sha256')
  for (const part of [upserts, deletes]) {
    h.update(String(part.length))
    for (const b of part) { h.update(String(b.length)); h.update(b) }
  }
  return h.digest('hex')
}

const placeOf = (r: { dataset: string, partition?: string }): string => `${r.dataset}\u0000${r.partition ?? ''}`

export class ReviewQueue {
  private readonly items: ByteSublevel
  private readonly writes = new SerialQueue()
  private readonly cache = new Map<string, ReviewItem>()

  constructor (state: StateDb) {
    this.items = state.sublevel('reviews')
  }

  async open (): Promise<void> {
    for await (const [, value] of this.items.iterator()) {
      const item = unpack(value) as ReviewItem
      this.cache.set(item.id, item)
    }
  }

  /** Files a proposal; returns the review that stands for it and whether it is new. */
  async propose (proposal: Proposal, now = Date.now()): Promise<{ review: ReviewItem, created: boolean }> {
    return await this.writes.run(async () => {
      const hash = contentHash(proposal.upserts, proposal.deletes)
      const place = placeOf(proposal)
      const here = [...this.cache.values()].filter(r => placeOf(r) === place)
      const same = here.find(r => r.contentHash === hash && (r.state === 'pending' || r.state === 'rejected'))
      if (same !== undefined) return { review: same, created: false }
      for (const r of here) if (r.state === 'pending') await this.save({ ...r, state: 'superseded', decidedAt: now, decisionReason: 'a newer proposal replaced it' })
      const review: ReviewItem = { ...proposal, id: randomUUID(), createdAt: now, contentHash: hash, state: 'pending' }
      await this.save(review)
      return { review, created: true }
    })
  }

  get (id: string): ReviewItem | undefined { return this.cache.get(id) }

  list (filter: { dataset?: string, state?: ReviewState } = {}): ReviewItem[] {
    return [...this.cache.values()]
      .filter(r => (filter.dataset === undefined || r.dataset === filter.dataset) && (filter.state === undefined || r.state === filter.state))
      .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
  }

  pendingCount (dataset?: string): number { return this.list({ dataset, state: 'pending' }).length }

  /** Records a decision on a pending review. */
  async settle (id: string, decision: { state: Exclude<ReviewState, 'pending'>, by: string, reason: string, fixIds?: string[] }, now = Date.now()): Promise<ReviewItem> {
    return await this.writes.run(async () => {
      const item = this.cache.get(id)
      if (item === undefined) throw new Error(`no review ${id}`)
      const settled: ReviewItem = { ...item, state: decision.state, decidedBy: decision.by, decidedAt: now, decisionReason: decision.reason, ...(decision.fixIds === undefined ? {} : { fixIds: decision.fixIds }) }
      await this.save(settled)
      return settled
    })
  }

  private async save (item: ReviewItem): Promise<void> {
    await this.items.put(enc.encode(item.id), pack(item))
    this.cache.set(item.id, item)
  }
}
