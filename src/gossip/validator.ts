/**
 * The verdict on one summary from the cluster topic, given before gossipsub
 * delivers or forwards it:
 *
 * - reject: the bytes are not a summary (too large, not msgpack, a field out
 *   of range, a root that is not the sum of its children), or the author
 *   claims a region that is not its own (this agent's, or one bound to
 *   another peer, or a second region for one peer). A rejection counts
 *   against the peer that sent it in its gossip score.
 * - ignore: the same claims, when the message was forwarded by a peer other
 *   than its author. The forwarder may have judged the claim on bindings this
 *   agent does not share (a region it had not seen pinned yet), so it is not
 *   punished for it; the message simply goes no further.
 * - accept: everything else, including summaries of datasets this agent does
 *   not carry (other agents may), which are forwarded but not kept.
 */
import type { DatasetSummary } from './summary.ts'
import { decodeSummary } from './summary.ts'
import type { ClaimVerdict } from '../agent/summary-board.ts'

export type Verdict = 'accept' | 'reject' | 'ignore'

export interface SummaryJudgement {
  verdict: Verdict
  summary?: DatasetSummary
  /** Why it was not accepted, for the log. */
  reason?: string
}

export interface SummaryContext {
  /** This agent's own region: nobody else speaks for it. */
  region: string
  /** Whether the author may speak for the region (see SummaryBoard.verdict). */
  claim: (author: string, region: string) => ClaimVerdict
}

const CLAIM_REASONS: Record<Exclude<ClaimVerdict, 'ok'>, string> = {
  'region-taken': 'claims a region bound to another peer',
  'peer-has-another-region': 'comes from a peer that speaks for another region',
  'too-many-regions': 'claims a new region past the number this agent binds'
}

export function judgeSummary (ctx: SummaryContext, author: string, propagationSource: string, data: Uint8Array): SummaryJudgement {
  let summary: DatasetSummary
  try {
    summary = decodeSummary(data)
  } catch (err) {
    return { verdict: 'reject', reason: (err as Error).message }
  }
  const forwarded = author !== propagationSource
  const refuse = (reason: string): SummaryJudgement => ({ verdict: forwarded ? 'ignore' : 'reject', summary, reason })
  if (summary.region === ctx.region) return refuse('claims this agent\'s own region')
  const claim = ctx.claim(author, summary.region)
  if (claim !== 'ok') return refuse(CLAIM_REASONS[claim])
  return { verdict: 'accept', summary }
}
