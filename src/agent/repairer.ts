/**
 * Turns an exact difference into what happens to the replica, under the
 * dataset's written policy: nothing (tolerated, in flight, not yet
 * confirmed), an audited fix applied at once, or a review item that waits
 * for a person. Also applies approved reviews and keeps the keys an operator
 * rolled back on hold, so the next sync does not silently undo a rollback.
 *
 * Every fix is one store transaction between an audit `intent` (after-images
 * and the rows as read just before) and a `commit` (the before-images the
 * store returned).
 */
import { randomUUID } from 'node:crypto'
import { applyFixOnce, type FixPlan } from '../audit/apply-fix.ts'
import { fixKeys } from '../audit/fix-rows.ts'
import type { AuditLog } from '../audit/audit-log.ts'
import { withFixLock } from '../audit/fix-lock.ts'
import type { DigestIndex } from '../index/digest-index.ts'
import { settleFix } from '../audit/settle.ts'
import { tick, type VectorClock } from '../audit/vector-clock.ts'
import type { DatasetConfig } from '../config/schema.ts'
import type { RowCodec, Value } from '../digest/row-codec.ts'
import type { ByteSublevel, StateDb } from '../index/state-db.ts'
import type { Logger } from '../observability/logger.ts'
import type { AgentMetrics } from '../observability/metrics.ts'
import { decide, type Decision, type DriftRow } from '../policy/decide.ts'
import { splitFix, type PlannedFix } from '../policy/restore.ts'
import { ReviewClosedError, ReviewNotFoundError, ReviewStaleError } from '../review/errors.ts'
import type { ReviewItem, ReviewQueue } from '../review/review-queue.ts'
import type { ReplicaStore, RewrittenRow } from '../stores/replica-store.ts'
import type { NarrowingResult } from '../sync/narrowing.ts'
import type { RowBudget } from './resilience.ts'
import { bytesOfLatin1, hexOf, latin1Of, sameBytes } from '../util/bytes.ts'

export interface FixContext {
  correlationId: string
  sourceRegion: string
  partition?: string
  /** Rows in the partition (or the dataset) here, for the share-of-rows risk. */
  totalRows: number
  signal?: AbortSignal
  log: Logger
}

export interface RepairOutcome {
  decision: Decision
  fixIds: string[]
  rowsUpserted: number
  rowsDeleted: number
  /** The review the fix waits in, when it went to review. */
  review?: ReviewItem
  /** Every fix applied was taken into the digest index at once (DigestIndex.takeApplied): no need to wait for the change feed. */
  indexed: boolean
}

/** The codec and store fixes are written through: the dataset's own, or a comparison view while the schemas differ. */
export interface RepairView { codec: RowCodec, store: ReplicaStore, index?: Pick<DigestIndex, 'takeApplied' | 'willTake' | 'abandonTake'> }

export interface RepairerInit {
  config: DatasetConfig
  /**
   * The view fixes go through now. A difference is decided and applied
   * through the view it was read under, even if the agreement on schemas
   * changes meanwhile: its rows are encoded for that view.
   */
  view: () => RepairView
  /** Rows per second repairs may write into this store. */
  budget: RowBudget
  state: StateDb
  audit: AuditLog
  reviews: ReviewQueue
  region: string
  clock: () => VectorClock
  setClock: (clock: VectorClock) => Promise<void>
  /** Where fixes and reviews are counted. */
  metrics?: AgentMetrics
}

/** What the policy saw last, for the status port. */
export interface LastDecision {
  at: number
  partition?: string
  action: Decision['action']
  reasons: string[]
  drift: number
  deferred: Decision['deferred']
  reviewId?: string
}

/** What a fix left in flight by a failed write is settled with, once the store answers again. */
const LEFTOVER_REASONS = {
  applied: 'found applied when its store answered again',
  notApplied: 'found not applied when its store answered again',
  finished: 'found partly applied when its store answered again; finished'
} as const

const enc = new TextEncoder()
const dec = new TextDecoder()

/** Keys remembered as rewritten by their store (Repairer.rewrites) at most; the oldest are forgotten first. */
const MAX_REWRITTEN_KEYS = 100_000

export class Repairer {
  private readonly init: RepairerInit
  /** Per place (partition value, or '' for the whole dataset): consecutive sightings of each drifted key. */
  private readonly sightings = new Map<string, Map<string, number>>()
  /** Rows of the fixes applied lately, oldest first, for the growth risk. */
  private readonly recentFixRows: number[] = []
  private readonly held: ByteSublevel
  private heldKeys = new Set<string>()
  /**
   * Fixes whose write failed and whose outcome could not be read then (the
   * store was gone): their intents have neither commit nor abort. Settled
   * before this dataset's next write, or as soon as the store answers,
   * through the view they were written through (their rows are its rows).
   */
  private readonly leftovers = new Map<string, RepairView>()
  /**
   * Keys (latin1Of) whose last fix the store kept otherwise than written (a
   * trigger that sets a column, a column type that rounds or cuts), with the
   * source's row that fix wrote. Writing that row again would change nothing
   * but the store's timestamp: it is not fixed again until the source's row
   * changes. Kept in the agent's LevelDB too (`rewritten:<dataset>`, key →
   * the source's row), so a restart does not write them all once more.
   */
  private readonly rewrites = new Map<string, Uint8Array>()
  private readonly rewrittenDb: ByteSublevel
  /** Changes to `rewrites` not yet written to rewrittenDb (flushRewrites). */
  private rewriteOps: Array<{ type: 'put', key: Uint8Array, value: Uint8Array } | { type: 'del', key: Uint8Array }> = []
  lastDecision: LastDecision | undefined

  constructor (init: RepairerInit) {
    this.init = init
    this.held = init.state.sublevel(`held:${init.config.name}`)
    this.rewrittenDb = init.state.sublevel(`rewritten:${init.config.name}`)
  }

  get heldCount (): number { return this.heldKeys.size }

  /** Keys left apart from the source because their store changes them as they are written (see rewrites). */
  get rewrittenCount (): number { return this.rewrites.size }

  /** Fixes of this run left in flight by a failed write (see settleLeftovers). */
  get leftoverCount (): number { return this.leftovers.size }

  /**
   * Settles the fixes a failed write left in flight, oldest first, as a
   * restart would (src/audit/settle.ts): found applied → commit, found not
   * applied → abort, partly → finished. Runs before any newer write of this
   * dataset, so an older fix's rows never land over a newer one's. Throws
   * when the store still does not answer; the rest stay for the next call.
   */
  async settleLeftovers (signal?: AbortSignal): Promise<number> {
    let settled = 0
    for (const [fixId, { codec, store }] of [...this.leftovers]) {
      signal?.throwIfAborted()
      await withFixLock(this.init.audit, fixId, async () => {
        const known = await this.init.audit.fixOf(fixId, { signal })
        if (known !== undefined && known.commit === undefined && known.abort === undefined) {
          await settleFix({ audit: this.init.audit, store, codec, intent: known.intent, region: this.init.region, finish: true, reasons: LEFTOVER_REASONS, signal })
          settled++
        }
        this.leftovers.delete(fixId)
      })
    }
    return settled
  }

  async open (): Promise<void> {
    for await (const key of this.held.keys()) this.heldKeys.add(dec.decode(key))
    for await (const [key, sourceRow] of this.rewrittenDb.iterator()) {
      if (this.rewrites.size >= MAX_REWRITTEN_KEYS) break
      this.rewrites.set(latin1Of(key), sourceRow)
    }
  }

  /** Decides on one difference and carries the decision out. */
  async handle (diff: NarrowingResult, ctx: FixContext): Promise<RepairOutcome> {
    const view = this.init.view()
    const { rows, rewritten } = this.withoutRewritten(await this.driftRows(diff, view, ctx.signal))
    try {
      return await this.decideAndCarryOut(diff, rows, rewritten, ctx, view)
    } finally {
      await this.flushRewrites(ctx.log)
    }
  }

  private async decideAndCarryOut (diff: NarrowingResult, rows: DriftRow[], rewritten: number, ctx: FixContext, view: RepairView): Promise<RepairOutcome> {
    const { config } = this.init
    const { codec } = view
    const place = ctx.partition ?? ''
    const decision = decide({
      codec,
      rule: config.rule,
      tolerance: config.tolerance,
      risk: config.risk,
      rows,
      now: Date.now(),
      totalRows: ctx.totalRows,
      recentFixRows: this.recentFixRows,
      sightings: this.sightings.get(place) ?? new Map(),
      heldKeys: this.heldKeys
    })
    if (decision.sightings.size === 0) this.sightings.delete(place); else this.sightings.set(place, decision.sightings)
    if (rewritten > 0) decision.reasons.push(`${rewritten} rows not written again: this store changed them as they were written (a trigger that sets a column, or a column type that rounds or cuts); they stay apart until the source changes them`)
    const outcome: RepairOutcome = { decision, fixIds: [], rowsUpserted: 0, rowsDeleted: 0, indexed: true }
    this.lastDecision = { at: Date.now(), partition: ctx.partition, action: decision.action, reasons: decision.reasons, drift: decision.drift, deferred: decision.deferred }
    if (decision.action === 'apply') {
      // the rows the policy saw are the fixes' before-images: no second read of them (nor, with their versions, a read by the fix)
      const seen = new Map<string, Uint8Array | null>()
      const versions = new Map<string, string>()
      for (const r of rows) {
        const id = latin1Of(r.key)
        seen.set(id, r.local ?? null)
        if (r.localVersion !== undefined) versions.set(id, r.localVersion)
      }
      Object.assign(outcome, await this.applyFixes(decision.fixes, { ...ctx, rule: config.rule, by: 'converge', seen, versions, view }))
    } else if (decision.action === 'review') {
      const upserts = decision.fixes.flatMap(f => f.upserts)
      const deletes = decision.fixes.flatMap(f => f.deletes)
      // this replica's rows as the policy saw them: the approval re-checks against these
      const seen = new Map(rows.map(r => [latin1Of(r.key), r.local ?? null]))
      const expected = [...decision.fixes.flatMap(f => upsertKeysOf(f, codec)), ...deletes].map(k => seen.get(latin1Of(k)) ?? null)
      const { review, created } = await this.init.reviews.propose({
        dataset: config.name, ...(ctx.partition === undefined ? {} : { partition: ctx.partition }), correlationId: ctx.correlationId, sourceRegion: ctx.sourceRegion,
        rule: config.rule, reasons: decision.reasons, upserts, deletes, expected
      })
      outcome.review = review
      this.lastDecision.reviewId = review.id
      if (created) {
        this.init.metrics?.review(config.name, 'raised')
        await this.appendAudit({ kind: 'review', fixId: review.id, reviewId: review.id, correlationId: ctx.correlationId, sourceRegion: ctx.sourceRegion, partition: ctx.partition, reason: decision.reasons.join('; '), detected: { missing: diff.missing, changed: diff.changed, extra: diff.extra } })
        ctx.log.warn({ reviewId: review.id, upserts: upserts.length, deletes: deletes.length, reasons: decision.reasons }, 'fix held for review')
      }
    } else if (decision.drift > 0) {
      ctx.log.info({ drift: decision.drift, deferred: decision.deferred, reasons: decision.reasons }, 'drift seen, nothing applied')
    }
    return outcome
  }

  /**
   * Applies planned fixes, each audited as intent then commit, at most once
   * per fix id (src/audit/apply-fix.ts). The rows read just before each fix
   * go into its intent, so a restart can tell whether a fix without a commit
   * was applied.
   */
  async applyFixes (fixes: readonly PlannedFix[], meta: {
    correlationId: string, sourceRegion: string, partition?: string, rule: string, by: string, reviewId?: string, signal?: AbortSignal, log: Logger
    /** This replica's rows by key (latin1Of), as read just before the fixes were planned: their before-images. */
    seen?: ReadonlyMap<string, Uint8Array | null>
    /** The store's versions of those rows, where it gave them (RowChange.version). */
    versions?: ReadonlyMap<string, string>
    /** The view the fixes' rows are encoded for; the current one when not given. */
    view?: RepairView
  }): Promise<{ fixIds: string[], rowsUpserted: number, rowsDeleted: number, indexed: boolean }> {
    try {
      return await this.applyEach(fixes, meta)
    } finally {
      await this.flushRewrites(meta.log)
    }
  }

  private async applyEach (fixes: readonly PlannedFix[], meta: Parameters<Repairer['applyFixes']>[1]): Promise<{ fixIds: string[], rowsUpserted: number, rowsDeleted: number, indexed: boolean }> {
    const out = { fixIds: [] as string[], rowsUpserted: 0, rowsDeleted: 0, indexed: true }
    const view = meta.view ?? this.init.view()
    if (fixes.length > 0) await this.settleLeftovers(meta.signal)
    for (const fix of this.paced(fixes, view.codec)) {
      if (meta.signal?.aborted === true) break
      await this.init.budget.take(fix.upserts.length + fix.deletes.length, meta.signal)
      const clock = tick(this.init.clock(), this.init.region)
      await this.init.setClock(clock)
      const plan: FixPlan = {
        fixId: randomUUID(), correlationId: meta.correlationId, dataset: this.init.config.name, region: this.init.region, clock,
        sourceRegion: meta.sourceRegion, rule: meta.rule, by: meta.by, upserts: fix.upserts, deletes: fix.deletes, upsertKeys: fix.upsertKeys,
        ...this.seenBefore(fix, meta.seen, meta.versions, view.codec),
        ...(meta.partition === undefined ? {} : { partition: meta.partition }), ...(meta.reviewId === undefined ? {} : { reviewId: meta.reviewId })
      }
      // said before the write: the write's own change event may find the replica level with its source already
      this.init.metrics?.fixing(this.init.config.name)
      let commit
      let rewritten: RewrittenRow[] = []
      const index = view.index
      // told the write's seq before it commits, the index lets its feed skip reading the fix back (DigestIndex.willTake)
      let announced: number | undefined
      const beforeCommit = index === undefined ? undefined : (seq: number): void => { announced = seq; index.willTake(seq) }
      try {
        ({ commit, rewritten } = await applyFixOnce({ audit: this.init.audit, store: view.store, fix: plan, signal: meta.signal, beforeCommit }))
      } catch (err) {
        if (announced !== undefined) index?.abandonTake(announced)
        // its intent may be left without an outcome (the store went away mid-write): settled once the store is back
        this.leftovers.set(plan.fixId, view)
        throw err
      }
      if (announced !== undefined && announced !== commit.storeSeq) index?.abandonTake(announced)
      // committed: the index takes the fix now, as stored, rather than when the change feed brings it back
      if (index === undefined || !await index.takeApplied(this.asStored(fix, rewritten, view.codec, meta.log), { seq: commit.storeSeq })) out.indexed = false
      out.fixIds.push(plan.fixId)
      out.rowsUpserted += fix.upserts.length
      out.rowsDeleted += fix.deletes.length
      this.init.metrics?.fixApplied(this.init.config.name, { upserts: fix.upserts, deletes: fix.deletes, reviewId: meta.reviewId })
      this.recentFixRows.push(fix.upserts.length + fix.deletes.length)
      if (this.recentFixRows.length > this.init.config.risk.history) this.recentFixRows.shift()
      meta.log.info({ fixId: plan.fixId, upserts: fix.upserts.length, deletes: fix.deletes.length, storeSeq: commit.storeSeq, by: meta.by }, 'fix applied')
    }
    return out
  }

  /**
   * The fix as its store holds it: each upsert the store changed as it was
   * written replaced by the row as stored (so the index holds what the store
   * does), and its key remembered with the source's row (rewrites).
   */
  private asStored (fix: PlannedFix, rewritten: readonly RewrittenRow[], codec: RowCodec, log: Logger): PlannedFix {
    if (rewritten.length === 0) return fix
    const keys = upsertKeysOf(fix, codec)
    const upserts = [...fix.upserts]
    const columns = new Set<string>()
    for (const { index, row } of rewritten) {
      const id = latin1Of(keys[index]!)
      this.rewrites.delete(id)
      this.rewrites.set(id, fix.upserts[index]!)
      this.rewriteOps.push({ type: 'put', key: keys[index]!, value: fix.upserts[index]! })
      upserts[index] = row
      const written = codec.decodeValues(fix.upserts[index]!)
      codec.decodeValues(row).forEach((v, i) => { if (!sameValue(v, written[i]!)) columns.add(codec.columns[i]!.name) })
    }
    for (const id of this.rewrites.keys()) { if (this.rewrites.size <= MAX_REWRITTEN_KEYS) break; this.forgetRewrite(id) }
    log.warn({ rows: rewritten.length, columns: [...columns], example: hexOf(keys[rewritten[0]!.index]!) },
      'the store changed rows of a fix as they were written (a trigger, or a column type that rounds or cuts): they stay apart from the source, and are not written again until the source changes them')
    return { ...fix, upserts }
  }

  /** The drift rows without those whose store rewrote the source's row, unchanged since, when last written (rewrites). */
  private withoutRewritten (rows: DriftRow[]): { rows: DriftRow[], rewritten: number } {
    if (this.rewrites.size === 0) return { rows, rewritten: 0 }
    const kept: DriftRow[] = []
    for (const row of rows) {
      const id = latin1Of(row.key)
      const written = this.rewrites.get(id)
      if (written !== undefined && row.sot !== undefined && sameBytes(written, row.sot)) continue
      // the source's row moved on (or is gone): it is written again
      if (written !== undefined) this.forgetRewrite(id)
      kept.push(row)
    }
    return { rows: kept, rewritten: rows.length - kept.length }
  }

  private forgetRewrite (id: string): void {
    this.rewrites.delete(id)
    this.rewriteOps.push({ type: 'del', key: bytesOfLatin1(id) })
  }

  /**
   * Writes the changes to `rewrites` since the last call to the agent's
   * LevelDB. A failure costs no correctness: a key not remembered is written
   * once more, a key remembered too long is written again once its source
   * row changes.
   */
  private async flushRewrites (log: Logger): Promise<void> {
    if (this.rewriteOps.length === 0) return
    const ops = this.rewriteOps
    this.rewriteOps = []
    await this.rewrittenDb.batch(ops).catch((err: Error) => { log.warn({ err: err.message }, 'could not keep the keys a store rewrote; after a restart they are written once more') })
  }

  /**
   * A fix's before-images from the rows seen while planning it, when every
   * key of it was seen; else none (they are read). With them, their versions
   * when the store gave one for every row there was.
   */
  private seenBefore (fix: PlannedFix, seen: ReadonlyMap<string, Uint8Array | null> | undefined, versions: ReadonlyMap<string, string> | undefined, codec: RowCodec): Pick<FixPlan, 'before' | 'beforeVersions'> {
    if (seen === undefined) return {}
    const before: Array<Uint8Array | null> = []
    const beforeVersions: Array<string | undefined> = []
    let versioned = versions !== undefined && versions.size > 0
    const keys = fix.upsertKeys?.length === fix.upserts.length ? [...fix.upsertKeys, ...fix.deletes] : fixKeys(fix, codec)
    for (const key of keys) {
      const id = latin1Of(key)
      const row = seen.get(id)
      if (row === undefined) return {}
      before.push(row)
      if (!versioned) continue
      const version = versions!.get(id)
      if (row !== null && version === undefined) versioned = false; else beforeVersions.push(version)
    }
    return versioned ? { before, beforeVersions } : { before }
  }

  /** With a rows-per-second budget, fixes are cut to at most one second's worth each, so writes come in an even stream. */
  private paced (fixes: readonly PlannedFix[], codec: RowCodec): readonly PlannedFix[] {
    const rate = this.init.budget.rate
    if (rate === 0 || fixes.every(f => f.upserts.length + f.deletes.length <= rate)) return fixes
    return fixes.flatMap(f => { const keys = upsertKeysOf(f, codec); return splitFix(f.upserts.map((row, i) => ({ key: keys[i]!, row })), f.deletes, rate) })
  }

  /**
   * Applies an approved review after checking that the rows it would change
   * are still as they were when it was proposed; refuses it otherwise.
   */
  async approve (id: string, by: string, reason: string, log: Logger): Promise<ReviewItem> {
    const review = this.openReview(id)
    const { codec, store } = this.init.view()
    const keys = [...review.upserts.map(r => codec.keyOfEncodedRow(r)), ...review.deletes]
    const now = await store.get(keys)
    const changed = now.filter((row, i) => {
      const expected = review.expected[i] ?? null
      return row === undefined || expected === null ? (row ?? null) !== expected : !sameBytes(row, expected)
    }).length
    if (changed > 0) {
      await this.init.reviews.settle(id, { state: 'refused', by, reason: `${changed} rows changed since it was proposed` })
      this.init.metrics?.review(this.init.config.name, 'refused')
      await this.appendAudit({ kind: 'review-refused', fixId: id, reviewId: id, correlationId: review.correlationId, by, reason: `approved (${reason}) but ${changed} rows changed since it was proposed`, partition: review.partition })
      throw new ReviewStaleError(id, changed)
    }
    this.init.metrics?.review(this.init.config.name, 'approved')
    await this.appendAudit({ kind: 'review-approved', fixId: id, reviewId: id, correlationId: review.correlationId, by, reason, partition: review.partition })
    // keys the approver has now seen and accepted are no longer held
    for (const k of keys) await this.release(hexOf(k))
    // an approved review applies as fixes of at most MAX_FIX_ROWS rows, like any other
    const fixes = splitFix(review.upserts.map((row, i) => ({ key: keys[i]!, row })), review.deletes)
    const applied = await this.applyFixes(fixes, { correlationId: review.correlationId, sourceRegion: review.sourceRegion, partition: review.partition, rule: review.rule, by, reviewId: id, log })
    return await this.init.reviews.settle(id, { state: 'applied', by, reason, fixIds: applied.fixIds })
  }

  async reject (id: string, by: string, reason: string): Promise<ReviewItem> {
    const review = this.openReview(id)
    this.init.metrics?.review(this.init.config.name, 'rejected')
    await this.appendAudit({ kind: 'review-rejected', fixId: id, reviewId: id, correlationId: review.correlationId, by, reason, partition: review.partition })
    return await this.init.reviews.settle(id, { state: 'rejected', by, reason })
  }

  /** Keys a rollback restored: a later fix touching them goes to review instead of undoing the rollback. */
  async hold (keysHex: readonly string[], reason: string): Promise<void> {
    for (const k of keysHex) {
      await this.held.put(enc.encode(k), enc.encode(reason))
      this.heldKeys.add(k)
    }
  }

  private async release (keyHex: string): Promise<void> {
    if (!this.heldKeys.delete(keyHex)) return
    await this.held.del(enc.encode(keyHex))
  }

  private openReview (id: string): ReviewItem {
    const review = this.init.reviews.get(id)
    if (review === undefined || review.dataset !== this.init.config.name) throw new ReviewNotFoundError(id)
    if (review.state !== 'pending') throw new ReviewClosedError(id, review.state)
    return review
  }

  /** Each differing key with the SoT's row (if any) and this replica's (if any). */
  private async driftRows (diff: NarrowingResult, { codec, store }: RepairView, signal?: AbortSignal): Promise<DriftRow[]> {
    // the narrowing knows each row's key from checking it; a difference from elsewhere may not say
    const upsertKeys = diff.upsertKeys?.length === diff.upserts.length ? diff.upsertKeys : diff.upserts.map(r => codec.keyOfEncodedRow(r))
    signal?.throwIfAborted()
    // the rows the index took in (asking by key) stand in for a read only where the decision does not turn on them:
    // restore without a grace window (merge weighs the local row's event time, a grace window its age)
    const useKnown = diff.local?.length === upsertKeys.length + diff.deletes.length && this.init.config.rule === 'restore' && this.init.config.tolerance.graceMs === 0
    const local = useKnown ? diff.local! : await store.get([...upsertKeys, ...diff.deletes])
    const rows: DriftRow[] = diff.upserts.map((sot, i) => ({ key: upsertKeys[i]!, sot, local: local[i] ?? undefined }))
    diff.deletes.forEach((key, i) => rows.push({ key, local: local[upsertKeys.length + i] ?? undefined }))
    // the versions of the rows the index took in, where the store gave them: the fix then need not read those rows
    if (useKnown && diff.localVersions !== undefined) {
      rows.forEach((r, i) => { const version = diff.localVersions![i]; if (version !== undefined && r.local !== undefined) r.localVersion = version })
    }
    return rows
  }

  /** Records a dataset event (a quarantine and its lifting) in the audit. */
  async record (event: { kind: 'quarantine' | 'quarantine-lifted', reason: string }): Promise<void> {
    await this.appendAudit({ ...event, fixId: randomUUID(), correlationId: randomUUID() })
  }

  /** Appends a governance entry (a review and what became of it) for this dataset, with a ticked clock. */
  private async appendAudit (record: Omit<Parameters<AuditLog['append']>[0], 'dataset' | 'region' | 'clock'>): Promise<void> {
    const clock = tick(this.init.clock(), this.init.region)
    await this.init.setClock(clock)
    const defined = Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as typeof record
    await this.init.audit.append({ ...defined, dataset: this.init.config.name, region: this.init.region, clock })
  }
}

/** A planned fix's upsert keys: the ones it carries, else each row's decoded. */
function upsertKeysOf (fix: PlannedFix, codec: RowCodec): Uint8Array[] {
  return fix.upsertKeys?.length === fix.upserts.length ? fix.upsertKeys : fix.upserts.map(r => codec.keyOfEncodedRow(r))
}

/** Whether two canonical values are the same (bytes compared by content). */
function sameValue (a: Value, b: Value): boolean {
  return a instanceof Uint8Array && b instanceof Uint8Array ? sameBytes(a, b) : Object.is(a, b)
}
