/**
 * What an exchange's inconsistent nodes say about the source: the source's
 * answers about a node contradicted each other, so nothing was taken from
 * it (sync/narrowing.ts). Either the source changed between two rounds of
 * the exchange (a source under writes does, all the time) or it answers
 * wrongly. Its own summaries tell the two apart: a summary whose root is not
 * the one the exchange opened with means it changed. Heard during the
 * exchange, that is known at once; otherwise the verdict waits for the
 * source's next summary (it publishes one at least every gossip interval).
 * A change is logged at info, a contradiction the source's summaries do not
 * explain as a warning: only that one is worth an operator's look.
 */
import type { Logger } from '../observability/logger.ts'

interface Root { count: number, sum: bigint }

const CHANGED = 'the source changed during the exchange: those nodes are left for the next sync'
const CONTRADICTED = 'the source\'s answers contradict each other, and its summary says it did not change meanwhile: nothing taken from those nodes'

/** Whether the source's own summaries say it changed while an exchange ran: one heard since `startedAt` (epoch ms) gives another root than `from`. */
export function sourceChangedDuring (latest: (Root & { seenAt: number }) | undefined, startedAt: number, from: Root | undefined): boolean {
  if (latest === undefined || from === undefined || latest.seenAt < startedAt) return false
  return latest.count !== from.count || latest.sum !== from.sum
}

export class InconsistencyJudge {
  /** Inconsistent nodes waiting for the source's next summary: from the first exchange not yet judged, with the root it opened with. */
  private waiting: { from: Root, inconsistent: number, log: Logger } | undefined

  /**
   * An exchange that opened on `from` (the source's root) found
   * `inconsistent` nodes; `latest` is the source's newest summary as known
   * now. Judged at once when a summary heard since `startedAt` explains it,
   * else when the next one comes (summary()).
   */
  noted (inconsistent: number, from: Root | undefined, startedAt: number, latest: (Root & { seenAt: number }) | undefined, log: Logger): void {
    if (inconsistent === 0) return
    if (sourceChangedDuring(latest, startedAt, from)) { log.info({ inconsistent }, CHANGED); return }
    if (from === undefined) { log.warn({ inconsistent }, CONTRADICTED); return }
    if (this.waiting !== undefined) { this.waiting.inconsistent += inconsistent; return }
    this.waiting = { from, inconsistent, log }
    log.debug({ inconsistent }, 'the source\'s answers contradict each other: its next summary tells whether it changed meanwhile')
  }

  /** The source's next summary: the verdict on what waited for it. */
  summary (root: Root): void {
    const w = this.waiting
    if (w === undefined) return
    this.waiting = undefined
    if (root.count !== w.from.count || root.sum !== w.from.sum) w.log.info({ inconsistent: w.inconsistent }, CHANGED)
    else w.log.warn({ inconsistent: w.inconsistent }, CONTRADICTED)
  }
}
