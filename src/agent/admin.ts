/**
 * The agent's governance actions, as the status port and the CLI reach them:
 * reviews (list, show, approve, reject), rollbacks, reconcile-now, and audit
 * reads. Who may do what is checked here against the dataset's config (the
 * port has already checked the caller's role).
 */
import type { AuditLog } from '../audit/audit-log.ts'
import { UnknownDatasetError } from '../errors.ts'
import type { Logger } from '../observability/logger.ts'
import { NotAnApproverError, ReviewNotFoundError } from '../review/errors.ts'
import type { ReviewItem, ReviewQueue, ReviewState } from '../review/review-queue.ts'
import type { Caller } from '../status/auth.ts'
import type { AdminActions, AuditQuery } from '../status/server.ts'
import type { DatasetReplica } from './dataset-replica.ts'

/** Rows of a review shown in full; a larger fix is shown by its first rows and its counts. */
const REVIEW_ROWS_SHOWN = 1000

export interface AdminHost {
  readonly datasets: ReadonlyMap<string, DatasetReplica>
  readonly reviews: ReviewQueue
  readonly audit: AuditLog
  readonly log: Logger
  /** Rolls a fix back as a new audited fix; see src/audit/rollback.ts. */
  rollback: (fixId: string, caller: Caller, reason: string, force: boolean) => Promise<unknown>
}

/** A review as listed: what, where, why, and its state; not its rows. */
function summary (r: ReviewItem): Record<string, unknown> {
  return {
    id: r.id, dataset: r.dataset, partition: r.partition ?? null, state: r.state, createdAt: r.createdAt, correlationId: r.correlationId,
    sourceRegion: r.sourceRegion, rule: r.rule, reasons: r.reasons, upserts: r.upserts.length, deletes: r.deletes.length,
    decidedBy: r.decidedBy ?? null, decidedAt: r.decidedAt ?? null, decisionReason: r.decisionReason ?? null, fixIds: r.fixIds ?? []
  }
}

export class Admin implements AdminActions {
  constructor (private readonly host: AdminHost) {}

  reviews (filter: { dataset?: string, state?: string }): unknown {
    return this.host.reviews.list({ dataset: filter.dataset, state: filter.state as ReviewState | undefined }).map(summary)
  }

  /** One review with its diff: each row to write beside the row it replaces, each key to delete beside its row. */
  review (id: string): unknown {
    const r = this.host.reviews.get(id)
    if (r === undefined) throw new ReviewNotFoundError(id)
    const codec = this.replica(r.dataset).codec
    const show = (bytes: Uint8Array | null | undefined): unknown => (bytes === null || bytes === undefined ? null : codec.decodeRow(bytes))
    const upserts = r.upserts.slice(0, REVIEW_ROWS_SHOWN).map((row, i) => ({ key: codec.decodeKey(codec.keyOfEncodedRow(row)), now: show(r.expected[i]), after: show(row) }))
    const deletes = r.deletes.slice(0, Math.max(0, REVIEW_ROWS_SHOWN - upserts.length)).map((key, i) => ({ key: codec.decodeKey(key), now: show(r.expected[r.upserts.length + i]), after: null }))
    return { ...summary(r), diff: { upserts, deletes, truncated: upserts.length + deletes.length < r.upserts.length + r.deletes.length } }
  }

  async approve (id: string, caller: Caller, reason: string): Promise<unknown> {
    const replica = this.replicaOfReview(id)
    this.checkApprover(replica, caller)
    const settled = await replica.repairer.approve(id, caller.name, reason, this.host.log.child({ dataset: replica.name, reviewId: id }))
    replica.countFixes({ fixIds: settled.fixIds ?? [], rowsUpserted: settled.upserts.length, rowsDeleted: settled.deletes.length })
    this.host.log.info({ dataset: replica.name, reviewId: id, by: caller.name, fixIds: settled.fixIds }, 'review approved and applied')
    await replica.index.catchUp()
    replica.evaluate()
    return summary(settled)
  }

  async reject (id: string, caller: Caller, reason: string): Promise<unknown> {
    const replica = this.replicaOfReview(id)
    this.checkApprover(replica, caller)
    const settled = await replica.repairer.reject(id, caller.name, reason)
    this.host.log.info({ dataset: replica.name, reviewId: id, by: caller.name }, 'review rejected')
    return summary(settled)
  }

  async rollback (fixId: string, caller: Caller, reason: string, force: boolean): Promise<unknown> {
    return await this.host.rollback(fixId, caller, reason, force)
  }

  async reconcile (dataset: string, caller: Caller): Promise<unknown> {
    const replica = this.replica(dataset)
    this.host.log.info({ dataset, by: caller.name }, 'reconcile asked for')
    return await replica.reconcileNow()
  }

  async audit (filter: AuditQuery): Promise<unknown> {
    const entries = []
    for await (const e of this.host.audit.query(filter)) entries.push(e)
    return { entries }
  }

  async verifyAudit (): Promise<unknown> {
    const entries = await this.host.audit.verify()
    return { ok: true, entries }
  }

  async fix (fixId: string): Promise<unknown> {
    return await this.host.audit.fixOf(fixId)
  }

  private replica (name: string): DatasetReplica {
    const replica = this.host.datasets.get(name)
    if (replica === undefined) throw new UnknownDatasetError(name)
    return replica
  }

  private replicaOfReview (id: string): DatasetReplica {
    const review = this.host.reviews.get(id)
    if (review === undefined) throw new ReviewNotFoundError(id)
    return this.replica(review.dataset)
  }

  private checkApprover (replica: DatasetReplica, caller: Caller): void {
    const approvers = replica.config.review.approvers
    if (approvers.length > 0 && !approvers.includes(caller.name)) throw new NotAnApproverError(caller.name, replica.name)
  }
}
