/**
 * One dataset on one agent: its store, digest index and tree, and — when this
 * region is not the serving source of truth — the worker that reconciles it
 * against the SoT whenever their roots differ.
 *
 * The worker runs at most one sync at a time per dataset, no more often than
 * `minIntervalMs`, and backs off exponentially (with jitter) after a failure.
 */
import { randomUUID } from 'node:crypto'
import type { AuditLog } from '../audit/audit-log.ts'
import { merge, type VectorClock } from '../audit/vector-clock.ts'
import type { DatasetConfig } from '../config/schema.ts'
import { ConvergeError, RemoteError, RowEncodingError, SchemaMismatchError, ShapeOfferedError, StoreUnavailableError } from '../errors.ts'
import { renameSchema, SchemaIncompatibleError } from '../digest/schema-compat.ts'
import type { ColumnSpec, DatasetSchema } from '../digest/schema.ts'
import { microsToIso } from '../digest/timestamp.ts'
import { wireSchema } from '../sync/messages.ts'
import type { ShapeView, ShapeViews } from './shape-views.ts'
import type { Breakers } from './resilience.ts'
import { PARTITION_CONCURRENCY, PARTITION_LEVEL } from '../constants.ts'
import { bytesToU64, u64Hex } from '../digest/hash.ts'
import type { RowCodec, Value } from '../digest/row-codec.ts'
import type { DatasetSummary } from '../gossip/summary.ts'
import type { DigestIndex, IndexProgress, ValidationReport } from '../index/digest-index.ts'
import type { Logger } from '../observability/logger.ts'
import { InconsistencyJudge } from './inconsistency.ts'
import type { AgentMetrics } from '../observability/metrics.ts'
import type { ReplicaStore } from '../stores/replica-store.ts'
import type { FrameChannel } from '../sync/channel.ts'
import type { NarrowingResult, NodeRef } from '../sync/narrowing.ts'
import { runClientSync, type ClientSyncOutcome } from '../sync/session.ts'
import { retryDelayMs, sleep } from '../util/serial.ts'
import pLimit from 'p-limit'
import { PartitionBoard } from './partition-board.ts'
import type { Repairer, RepairOutcome } from './repairer.ts'
import type { Suspect } from '../sync/by-keys.ts'
import { U64_MASK } from '../util/u64.ts'
import { RepeatedFailure } from '../observability/repeated-failure.ts'

/**
 * `held`: apart from the SoT, but the policy applies nothing more (tolerated, waiting for review, kept local under merge).
 * `quarantined`: the SoT's schema is incompatible with this one; nothing is applied until they agree.
 */
export type DriftState = 'starting' | 'source' | 'in-sync' | 'drifted' | 'held' | 'syncing' | 'no-source' | 'quarantined' | 'error'

/**
 * How this replica's schema stands with the SoT's: the same, compatibly
 * different (rows are compared through a view under the comparison schema),
 * or incompatible (quarantined). `sourceFp` is the SoT's own fingerprint
 * when the agreement was made: a summary with another one reopens it.
 */
type Agreement =
  | { kind: 'same' }
  | { kind: 'shape', sourceFp: string | undefined, view: ShapeView }
  | { kind: 'quarantined', sourceFp: string | undefined, reasons: string[], since: number }

export interface DatasetCounters {
  syncs: number
  /** Fixes applied here: by syncs and by approved reviews (a rollback counts under `rollbacks`). */
  fixes: number
  /** Rows those fixes wrote and deleted. */
  rowsUpserted: number
  rowsDeleted: number
  missing: number
  changed: number
  extra: number
  unresolved: number
  roundTrips: number
  bytesSent: number
  bytesReceived: number
  syncErrors: number
  validations: number
  validationCorrections: number
  /** Fixes the policy held for review. */
  reviewsRaised: number
  /** Fixes rolled back by an operator (each written back as a fix of its own). */
  rollbacks: number
}

/** What the replica needs from its agent. */
export interface ReplicaHost {
  readonly region: string
  readonly audit: AuditLog
  readonly log: Logger
  clock: () => VectorClock
  setClock: (clock: VectorClock) => Promise<void>
  /** The region serving as SoT for this dataset now, and its latest summary; undefined when none is reachable. */
  sourceOf: (dataset: DatasetConfig) => { region: string, peerId?: string, summary?: DatasetSummary } | undefined
  openSyncChannel: (peerId: string, signal: AbortSignal) => Promise<FrameChannel>
  /** Breakers per peer and per store: a failing one is left alone for a while. */
  readonly breakers: Breakers
  /** Runs a whole sync when one of the agent's sync slots is free. */
  syncSlot: <T>(task: () => Promise<T>, signal: AbortSignal) => Promise<T>
  /** Rows one exchange takes at most. */
  readonly maxRowsPerExchange: number
  publish: (replica: DatasetReplica) => void
  /** Where syncs, drift and fixes are counted. */
  readonly metrics?: AgentMetrics
}

export interface DatasetReplicaInit {
  config: DatasetConfig
  codec: RowCodec
  store: ReplicaStore
  index: DigestIndex
  repairer: Repairer
  shapes: ShapeViews
  host: ReplicaHost
  minIntervalMs: number
  timeoutMs: number
  /** The gossip interval: one round of the confirmation count, and how soon rows in flight are looked at again. */
  roundIntervalMs: number
}

/** One sync's context, shared by its survey and partition sessions. */
interface Session {
  sourceRegion: string
  peerId: string
  correlationId: string
  signal: AbortSignal
  log: Logger
}

export interface SyncReport {
  correlationId: string
  sourceRegion: string
  missing: number
  changed: number
  extra: number
  unresolved: number
  fixes: number
  roundTrips: number
  bytesSent: number
  bytesReceived: number
  /** Rows the policy left for a later round: in their grace window, or not yet seen apart often enough. */
  waiting: number
  /** An exchange stopped at its row limit: more drift is left for the next sync. */
  truncated: boolean
  /** Every fix applied was taken into the index at once: the sync need not wait for the change feed to bring its writes back. */
  indexed: boolean
}

/**
 * Where a sync left the replica when the policy applied nothing more (drift
 * tolerated, held for review, kept local under merge): until either root
 * moves, another sync would decide the same, so none is started.
 */
interface Settled { sotSum: bigint, localSum: bigint, until: number }

/** What a sync compares through: the dataset's own codec, store and index, or a comparison view's. */
interface CompareView { codec: RowCodec, store: ReplicaStore, index: DigestIndex }

const LEFTOVER_ERROR = 'a fix left in flight by a failed write cannot be settled yet'

export class DatasetReplica {
  readonly config: DatasetConfig
  readonly codec: RowCodec
  readonly store: ReplicaStore
  readonly index: DigestIndex
  readonly repairer: Repairer
  private readonly host: ReplicaHost
  private readonly minIntervalMs: number
  private readonly timeoutMs: number
  private current: DriftState = 'starting'
  /**
   * When the state last changed (epoch ms): since when the replica has been
   * level, syncing or held. The status shows it, so a reader polling every
   * so often (the simulator's runner) can tell when a replica became level
   * to the millisecond, not to its poll.
   */
  stateSince = Date.now()
  get state (): DriftState { return this.current }
  set state (next: DriftState) {
    if (next === this.current) return
    this.current = next
    this.stateSince = Date.now()
  }

  lastError: string | undefined
  lastSyncAt: number | undefined
  lastFixAt: number | undefined
  firstDriftAt: number | undefined
  lastValidation: (ValidationReport & { at: number }) | undefined
  readonly counters: DatasetCounters = { syncs: 0, fixes: 0, rowsUpserted: 0, rowsDeleted: 0, missing: 0, changed: 0, extra: 0, unresolved: 0, roundTrips: 0, bytesSent: 0, bytesReceived: 0, syncErrors: 0, validations: 0, validationCorrections: 0, reviewsRaised: 0, rollbacks: 0 }
  /** The SoT's root as last seen (gossip or sync), with the local time it was seen. */
  private sotRoot: { count: number, sum: bigint, seenAt: number } | undefined
  private wanted = false
  private syncStartedAt = 0
  private readonly inconsistency = new InconsistencyJudge()
  private worker: Promise<void> | undefined
  private readonly stopping = new AbortController()
  private failures = 0
  /** Syncs that fail again and again (a source out of reach): logged once a minute while they do, and their end. */
  private readonly syncFailures: RepeatedFailure
  private settled: Settled | undefined
  /** Syncs in a row that found the roots apart but no row that differs. */
  private emptyRounds = 0
  /** How long a round is: rows waiting on time or confirmation are looked at again after this. */
  private readonly roundIntervalMs: number
  /** Drifted partitions of a partitioned dataset, each with its own state and backoff. */
  readonly partitions = new PartitionBoard()
  /** Views under comparison schemas: served to replicas whose schemas differ, or used here against a differing SoT. */
  readonly shapes: ShapeViews
  private agreement: Agreement = { kind: 'same' }
  /** Quarantine reasons to record as lifted once a sync goes through again. */
  private liftedFrom: string[] | undefined
  /** The SoT's own root sum as last gossiped, while its roots cannot be compared with ours (its schema differs). */
  private sourceSum: bigint | undefined

  constructor (init: DatasetReplicaInit) {
    this.config = init.config
    this.codec = init.codec
    this.store = init.store
    this.index = init.index
    this.repairer = init.repairer
    this.host = init.host
    this.minIntervalMs = init.minIntervalMs
    this.timeoutMs = init.timeoutMs
    this.roundIntervalMs = init.roundIntervalMs
    this.shapes = init.shapes
    this.syncFailures = new RepeatedFailure({ log: init.host.log, level: 'warn', fields: { dataset: init.config.name }, message: 'sync failed', recoveredMessage: 'sync succeeded again' })
    this.index.on('change', () => { this.host.publish(this); this.evaluate() })
  }

  get name (): string { return this.config.name }

  /** Re-reads who the SoT is and whether the roots differ; starts the worker when a sync is due. */
  evaluate (): void {
    if (this.stopping.signal.aborted) return
    const source = this.host.sourceOf(this.config)
    if (source === undefined) { this.state = 'no-source'; return }
    if (source.region === this.host.region) { this.state = 'source'; this.index.suspects.clear(); return }
    const s = source.summary
    const agreement = this.agreement
    if (agreement.kind === 'quarantined') {
      if (s === undefined || s.fp === agreement.sourceFp) { this.state = 'quarantined'; return }
      // the source's schema changed: the next exchange looks again
      this.liftedFrom = agreement.reasons
      this.agreement = { kind: 'same' }
      this.sotRoot = undefined
    } else if (agreement.kind === 'shape' && s !== undefined && agreement.sourceFp === undefined) {
      // agreed in an exchange before the source's first summary came: that summary names the schema agreed with
      // (had it changed meanwhile, the next exchange would be offered another shape)
      this.agreement = { ...agreement, sourceFp: s.fp }
    } else if (agreement.kind === 'shape' && s !== undefined && s.fp !== agreement.sourceFp) {
      this.agreement = { kind: 'same' }
      this.sotRoot = undefined
    }
    const root = this.compare.index.tree.root
    const sot = this.sotRoot
    if (sot !== undefined && sot.count === root.count && sot.sum === root.sum) {
      if (this.state !== 'syncing') { this.state = 'in-sync'; this.partitions.clear() }
      if (this.repairer.leftoverCount > 0) this.startWorker()
      this.host.metrics?.level(this.name, this.firstDriftAt, source.region)
      this.firstDriftAt = undefined
      // a hold is for one pair of roots; agreeing ends it (a rollback can bring the same pair back)
      this.settled = undefined
      // level: whatever was written here lately is as the source has it
      this.index.suspects.clear()
      return
    }
    // nothing heard from the source yet and no peer to ask: wait for its summary
    if (sot === undefined && s === undefined && source.peerId === undefined) return
    this.firstDriftAt ??= Date.now()
    // during a sync the roots differ until its fix lands: only news from the source calls for another
    if (this.state === 'syncing' && (sot === undefined || sot.seenAt <= this.syncStartedAt)) return
    if (this.state !== 'syncing') this.state = 'drifted'
    const settled = this.settled
    if (settled !== undefined && sot !== undefined && sot.sum === settled.sotSum && root.sum === settled.localSum && Date.now() < settled.until) { this.state = 'held'; return }
    this.settled = undefined
    this.wanted = true
    this.startWorker()
  }

  private startWorker (): void {
    this.worker ??= this.work().finally(() => { this.worker = undefined; if (this.wanted && !this.stopping.signal.aborted) this.evaluate() })
  }

  /** A summary from the serving SoT arrived. */
  onSourceSummary (summary: DatasetSummary): void {
    if (summary.fp === this.compare.codec.fingerprint) {
      this.sotRoot = { count: summary.count, sum: summary.sum, seenAt: Date.now() }
      this.inconsistency.summary(summary)
    } else if (summary.sum !== this.sourceSum) {
      // its tree is under another schema: not comparable with ours, but a change there calls for an exchange
      this.sotRoot = undefined
    }
    this.sourceSum = summary.sum
    this.evaluate()
  }

  /** The codec, store and index syncs compare through. */
  get compare (): CompareView {
    return this.agreement.kind === 'shape' ? this.agreement.view : { codec: this.codec, store: this.store, index: this.index }
  }

  async stop (): Promise<void> {
    this.stopping.abort()
    await this.worker?.catch(() => undefined)
  }

  private async work (): Promise<void> {
    while ((this.wanted || this.repairer.leftoverCount > 0) && !this.stopping.signal.aborted) {
      if (this.repairer.leftoverCount > 0) {
        // a fix whose write failed waits for its outcome: settle it first, even if the replica looks level now
        try {
          const settled = await this.repairer.settleLeftovers(this.stopping.signal)
          if (settled > 0) this.host.log.info({ dataset: this.name, settled }, 'fixes left in flight by a failed write settled')
          if (this.lastError?.startsWith(LEFTOVER_ERROR) === true) this.lastError = undefined
        } catch (err) {
          if (this.stopping.signal.aborted) return
          this.failures++
          this.lastError = `${LEFTOVER_ERROR}: ${(err as Error).message}`
          await sleep(retryDelayMs(this.failures), this.stopping.signal).catch(() => undefined)
          continue
        }
        if (!this.wanted) return
      }
      this.wanted = false
      const source = this.host.sourceOf(this.config)
      if (source?.peerId === undefined || source.region === this.host.region) return
      const started = Date.now()
      this.syncStartedAt = started
      let report: SyncReport | undefined
      try {
        this.host.log.debug({ dataset: this.name, source: source.region }, 'sync starting')
        this.state = 'syncing'
        const peerId = source.peerId
        report = await this.host.syncSlot(async () => await this.syncOnce(source.region, peerId), this.stopping.signal)
        this.failures = 0
        this.syncFailures.recovered({ source: source.region })
        this.host.metrics?.syncSucceeded(this.name, source.region, report.missing + report.changed + report.extra, started)
        if (this.liftedFrom !== undefined) await this.liftQuarantine()
        const failing = this.partitions.failing
        this.lastError = failing === 0 ? undefined : `${failing} partition${failing === 1 ? '' : 's'} failing (see partitions); the others are reconciled`
      } catch (err) {
        if (this.stopping.signal.aborted) return
        if (err instanceof ShapeOfferedError) {
          // the schemas differ compatibly: compare through a view under the schema the source offered, then go again
          if (await this.adoptShape(err.shape, source.summary?.fp)) { this.wanted = true; continue }
          return
        }
        const reasons = incompatibility(err)
        if (reasons !== undefined) {
          // retrying cannot help: wait for a summary that carries another schema (evaluate() runs on each)
          this.host.metrics?.syncFailed(this.name, source.region, 'quarantined')
          await this.quarantine(reasons, source.summary?.fp)
          return
        }
        this.host.metrics?.syncFailed(this.name, source.region)
        this.failures++
        this.counters.syncErrors++
        this.lastError = (err as Error).message
        this.state = 'error'
        this.syncFailures.failed(err, { source: source.region })
        this.wanted = true
        await sleep(retryDelayMs(this.failures), this.stopping.signal).catch(() => undefined)
        continue
      }
      const root = this.compare.index.tree.root
      const sot = this.sotRoot
      this.state = sot !== undefined && sot.count === root.count && sot.sum === root.sum ? 'in-sync' : 'drifted'
      // level with the newest root heard: whatever asked for another sync meanwhile is already done
      if (this.state === 'in-sync') { this.host.metrics?.level(this.name, this.firstDriftAt, source.region); this.firstDriftAt = undefined; this.wanted = false; this.partitions.clear(); this.settled = undefined } else if (report !== undefined && report.fixes === 0 && report.unresolved === 0 && !report.truncated && this.partitions.failing === 0 && sot !== undefined && report.missing + report.changed + report.extra > 0) {
        // the policy applied nothing: wait for either root to move, or for the next round when rows wait on time or confirmation
        this.settled = { sotSum: sot.sum, localSum: root.sum, until: report.waiting > 0 ? Date.now() + this.roundIntervalMs : Number.POSITIVE_INFINITY }
        this.state = 'held'
        this.wanted = false
        if (report.waiting > 0) setTimeout(() => this.evaluate(), this.roundIntervalMs).unref()
      } else {
        // still apart (a local write meanwhile, a newer source root, a row left unresolved): go again
        this.wanted = true
      }
      let wait = this.minIntervalMs - (Date.now() - started)
      // apart, yet the exchange found no row: something moved under it; look again, more slowly each time
      const foundNothing = this.state !== 'in-sync' && report !== undefined && report.missing + report.changed + report.extra + report.unresolved === 0 && !report.truncated && this.partitions.failing === 0
      this.emptyRounds = foundNothing ? this.emptyRounds + 1 : 0
      if (this.emptyRounds > 1) wait = Math.max(wait, retryDelayMs(this.emptyRounds - 1))
      // apart only by partitions that back off: nothing to do before the first of them is due
      const retryAt = this.partitions.nextRetryAt()
      if (this.state === 'drifted' && retryAt !== undefined && this.partitions.failing > 0) wait = Math.max(wait, retryAt - Date.now())
      if (wait > 0) await sleep(wait, this.stopping.signal).catch(() => undefined)
    }
  }

  /**
   * The deep pass: rescans the store and checks it row by row against the
   * digest index. Corrections change the tree, which starts a sync when the
   * replica now differs from its source.
   */
  async validateNow (onProgress?: (p: IndexProgress) => void): Promise<ValidationReport> {
    const report = await this.index.validate({ signal: this.stopping.signal, onProgress })
    this.counters.validations++
    this.counters.validationCorrections += report.corrected
    this.host.metrics?.validated(this.name, report.corrected)
    this.lastValidation = { ...report, at: Date.now() }
    this.host.log[report.corrected > 0 ? 'warn' : 'info']({ dataset: this.name, ...report }, report.corrected > 0 ? 'deep pass found rows the change feed missed' : 'deep pass found the index exact')
    return report
  }

  /**
   * Runs one sync against the serving SoT now, whatever the roots say, and
   * applies what it finds. Waits for a sync already running to finish first.
   */
  async reconcileNow (): Promise<SyncReport> {
    await this.worker?.catch(() => undefined)
    const source = this.host.sourceOf(this.config)
    if (source === undefined) throw new ConvergeError('CONVERGE_NO_SOURCE', `dataset "${this.name}": no source of truth is reachable`)
    if (source.region === this.host.region) throw new ConvergeError('CONVERGE_IS_SOURCE', `dataset "${this.name}": this region is its source of truth`)
    if (source.peerId === undefined) throw new ConvergeError('CONVERGE_NO_SOURCE', `dataset "${this.name}": source ${source.region} has no known peer`)
    return await this.syncOnce(source.region, source.peerId)
  }

  private async syncOnce (sourceRegion: string, peerId: string): Promise<SyncReport> {
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(this.timeoutMs)])
    const correlationId = randomUUID()
    const session: Session = { sourceRegion, peerId, correlationId, signal, log: this.host.log.child({ dataset: this.name, cid: correlationId, source: sourceRegion }) }
    const report: SyncReport = { correlationId, sourceRegion, missing: 0, changed: 0, extra: 0, unresolved: 0, fixes: 0, roundTrips: 0, bytesSent: 0, bytesReceived: 0, waiting: 0, truncated: false, indexed: true }
    // the pages wait for this sync's fix: written in the next lull, with the drift it repairs, in one write
    const releases = [...new Set([this.index, this.compare.index])].map(index => index.holdPages())
    try {
      return await this.syncWith(session, report)
    } finally {
      for (const release of releases) release()
    }
  }

  private async syncWith (session: Session, report: SyncReport): Promise<SyncReport> {
    const { signal } = session
    if (!this.codec.partitioned) {
      if (!await this.askSuspects(session, report)) {
        const { result } = await this.exchange(session, report, {})
        await this.repair(session, report, result)
      }
    } else {
      // survey down to the partition level, then one session per drifted partition, side by side
      const { result } = await this.exchange(session, report, { surveyLevel: PARTITION_LEVEL })
      const due = this.partitions.survey(result.diverged.map(n => n.index))
      const limit = pLimit(PARTITION_CONCURRENCY)
      await Promise.all(due.map(async bucket => await limit(async () => { await this.syncPartition(session, report, bucket) })))
    }
    // the fixes' writes must show in the tree before the roots are compared again, or the same drift would be found again
    if (report.fixes === 0 || !report.indexed) await this.compare.index.catchUp({ signal })
    return report
  }

  /**
   * Asks the source about the keys written here lately (the index's
   * suspects) by key before any narrowing: drift most often sits where local
   * writes went, and asking costs neither side a listing of its index. When
   * the difference found that way is the whole of it (this root, shifted by
   * applying it, is the root the source opened with), the policy decides on
   * it and that is all this sync does (true). Otherwise nothing is decided on
   * it (false): the caller narrows, so the policy always weighs the whole
   * difference (its acceptable drift, its share of the rows), and narrowing
   * checks every node it settles against the source's sums.
   */
  private async askSuspects (session: Session, report: SyncReport): Promise<boolean> {
    // under a comparison schema the index's entries are not the ones compared
    if (this.agreement.kind !== 'same') return false
    const suspects = this.index.suspects.take(this.host.maxRowsPerExchange)
    if (suspects === undefined) return false
    let asked: ClientSyncOutcome
    try {
      asked = await this.exchange(session, report, { suspects })
    } catch (err) {
      // a store that is down (the source's or this one's) answers no other way either: the sync fails, and the
      // suspects stay for the next one, once the store is back
      if (session.signal.aborted || err instanceof ShapeOfferedError || incompatibility(err) !== undefined || storeUnavailable(err)) throw err
      // the source could not answer by key (a key its store cannot hold, a source that predates asking by key):
      // narrowing finds the same drift; asking about the same keys again would fail the same way
      this.index.suspects.answered(suspects)
      session.log.warn({ err: (err as Error).message, code: (err as { code?: string }).code, keys: suspects.length }, 'asking the source by key failed; narrowing instead')
      return false
    }
    this.index.suspects.answered(suspects)
    if (!this.isWhole(asked)) return false
    const { result } = asked
    if (result.missing + result.changed + result.extra > 0) await this.repair(session, report, result)
    return true
  }

  /** Whether an answer by key is the whole difference: applied here, it would bring this root to the one the source opened with. */
  private isWhole ({ opened, result }: ClientSyncOutcome): boolean {
    const root = this.index.tree.root
    const shift = result.rootShift ?? { count: 0, sum: 0n }
    return root.count + shift.count === opened.count && ((root.sum + shift.sum) & U64_MASK) === bytesToU64(opened.sum)
  }

  /**
   * One partition's own session and fix. Its failure is its own: it is
   * recorded on the partition, which backs off, and the others go on.
   */
  private async syncPartition (session: Session, report: SyncReport, bucket: number): Promise<void> {
    if (session.signal.aborted) return
    const cid = randomUUID()
    const part: Session = { ...session, correlationId: cid, log: session.log.child({ partitionBucket: bucket, cid }) }
    this.partitions.started(bucket)
    let value: string | undefined
    try {
      const { result } = await this.exchange(part, report, { at: { level: PARTITION_LEVEL, index: bucket } })
      value = this.partitionValue(result)
      await this.repair(part, report, result, { bucket, value })
      this.partitions.succeeded(bucket, value)
    } catch (err) {
      if (this.stopping.signal.aborted) return
      if (incompatibility(err) !== undefined || err instanceof ShapeOfferedError) throw err
      this.counters.syncErrors++
      this.partitions.failed(bucket, (err as Error).message, value)
      part.log.warn({ err: (err as Error).message, code: (err as { code?: string }).code }, 'partition sync failed; the other partitions go on')
    }
  }

  /** Runs one exchange with the SoT and counts it; also remembers the SoT's root when the exchange started there. */
  private async exchange (session: Session, report: SyncReport, options: { at?: NodeRef, surveyLevel?: number, suspects?: readonly Suspect[] }): Promise<ClientSyncOutcome> {
    const { signal } = session
    const t0 = performance.now()
    const startedAt = Date.now()
    const rootBefore = this.sotRoot
    let tOpen = t0
    const { codec, index } = this.compare
    const schema = this.schemaToSend()
    // the source's own signed word on its size: an exchange claiming it is empty while this says otherwise deletes nothing
    const heard = this.host.sourceOf(this.config)
    const sourceCount = options.at === undefined && heard?.region === session.sourceRegion ? heard.summary?.count : undefined
    // a peer that keeps failing (dials, streams, lies) trips its breaker: every dataset leaves it alone for a while
    const outcome = await this.host.breakers.run(`peer:${session.peerId}`, async () => {
      const channel = await this.host.openSyncChannel(session.peerId, signal)
      tOpen = performance.now()
      return await runClientSync(channel, {
        dataset: this.name, region: this.host.region, codec, view: index, clock: this.host.clock(), correlationId: session.correlationId, signal,
        maxRows: this.host.maxRowsPerExchange, sourceRegion: session.sourceRegion, sourceCount, ...options, ...(schema === undefined ? {} : { schema })
      })
    })
    if (outcome.result.truncated) report.truncated = true
    const { opened, result, stats } = outcome
    this.counters.syncs++
    this.counters.roundTrips += stats.roundTrips
    this.counters.bytesSent += stats.bytesSent
    this.counters.bytesReceived += stats.bytesReceived
    this.counters.unresolved += result.unresolved
    report.roundTrips += stats.roundTrips
    report.bytesSent += stats.bytesSent
    report.bytesReceived += stats.bytesReceived
    report.unresolved += result.unresolved
    this.host.metrics?.exchanged(this.name, session.sourceRegion, stats, result.missing + result.changed + result.extra, this.firstDriftAt)
    this.lastSyncAt = Date.now()
    // the root the source opened with, unless a newer summary arrived meanwhile
    if (options.at === undefined && (this.sotRoot === undefined || this.sotRoot.seenAt <= this.syncStartedAt)) {
      this.sotRoot = { count: opened.count, sum: bytesToU64(opened.sum), seenAt: Date.now() }
    }
    await this.host.setClock(merge(this.host.clock(), opened.clock))
    const found = result.upserts.length + result.deletes.length > 0
    // an answer by key that is not the whole difference is not what the sync found: the narrowing after it says that
    const message = options.surveyLevel !== undefined ? 'partition survey done' : !found ? 'sync found no drift' : options.suspects !== undefined && !this.isWhole(outcome) ? 'asked by key: not the whole difference, narrowing' : 'sync found drift'
    session.log.info({
      ...(options.surveyLevel === undefined ? { missing: result.missing, changed: result.changed, extra: result.extra, unresolved: result.unresolved } : { drifted: result.diverged.length }),
      ...(options.suspects === undefined ? {} : { byKey: options.suspects.length }),
      roundTrips: stats.roundTrips, bytes: stats.bytesSent + stats.bytesReceived, dialMs: Math.round(tOpen - t0), exchangeMs: Math.round(performance.now() - tOpen)
    }, message)
    // a source under writes changes between two rounds of an exchange, which is no warning: its summaries tell (inconsistency.ts)
    const from = options.at === undefined ? { count: opened.count, sum: bytesToU64(opened.sum) } : rootBefore
    this.inconsistency.noted(result.inconsistent ?? 0, from, startedAt, this.sotRoot, session.log)
    return outcome
  }

  /** Hands a difference to the policy, which applies it, holds it for review, or leaves it (tolerated, in flight, unconfirmed). */
  private async repair (session: Session, report: SyncReport, result: NarrowingResult, partition?: { bucket: number, value?: string }): Promise<RepairOutcome> {
    const tree = this.compare.index.tree
    const totalRows = partition === undefined ? tree.root.count : tree.count(PARTITION_LEVEL, partition.bucket)
    const outcome = await this.host.breakers.run(`store:${this.name}`, async () => await this.repairer.handle(result, {
      correlationId: session.correlationId, sourceRegion: session.sourceRegion, partition: partition?.value, totalRows, signal: session.signal, log: session.log
    }))
    const fixes = outcome.fixIds.length
    if (!outcome.indexed) report.indexed = false
    this.countFixes(outcome)
    if (outcome.review !== undefined) this.counters.reviewsRaised++
    report.fixes += fixes
    report.waiting += outcome.decision.deferred.inFlight + outcome.decision.deferred.unconfirmed
    this.counters.missing += result.missing
    this.counters.changed += result.changed
    this.counters.extra += result.extra
    report.missing += result.missing
    report.changed += result.changed
    report.extra += result.extra
    return outcome
  }

  /** The partition value a partition session dealt with, for status and audit (from any key it touched). */
  private partitionValue (result: NarrowingResult): string | undefined {
    const key = result.deletes[0] ?? (result.upserts[0] === undefined ? undefined : this.codec.keyOfEncodedRow(result.upserts[0]))
    if (key === undefined) return undefined
    return displayValue(this.codec.partitionOf(key), this.codec.columns[this.codec.keyPositions[this.codec.partitionKeyPosition!]!]!)
  }

  /**
   * This side's schema in the source's column names, sent while the two may
   * differ (the source's fingerprint is unknown, differs, or a comparison
   * schema is in use), so the source can offer the comparison schema.
   */
  private schemaToSend (): DatasetSchema | undefined {
    const summary = this.host.sourceOf(this.config)?.summary
    if (this.agreement.kind === 'same' && summary !== undefined && summary.fp === this.codec.fingerprint) return undefined
    return wireSchema(renameSchema(this.codec.schema, this.config.renames))
  }

  /** Compares through a view under `shape` from now on; false (and quarantined) when the shape does not fit this schema. */
  private async adoptShape (shape: DatasetSchema, sourceFp: string | undefined): Promise<boolean> {
    let view: ShapeView
    try {
      view = await this.shapes.view(shape, this.config.renames, this.stopping.signal)
    } catch (err) {
      if (err instanceof SchemaIncompatibleError || err instanceof RowEncodingError) { await this.quarantine([(err as Error).message], sourceFp); return false }
      throw err
    }
    this.agreement = { kind: 'shape', sourceFp, view }
    this.sotRoot = undefined
    this.host.log.warn({ dataset: this.name, shape: view.codec.fingerprint, columns: shape.columns.map(c => c.name) }, 'schemas differ compatibly; comparing on the columns both share')
    if (this.liftedFrom !== undefined) await this.liftQuarantine()
    return true
  }

  private async quarantine (reasons: string[], sourceFp: string | undefined): Promise<void> {
    const was = this.agreement.kind === 'quarantined' ? this.agreement.reasons : this.liftedFrom
    this.agreement = { kind: 'quarantined', sourceFp, reasons, since: Date.now() }
    this.liftedFrom = undefined
    this.state = 'quarantined'
    this.lastError = `quarantined: ${reasons.join('; ')}`
    // the same reasons again (the source changed its schema, but not this way) are not news
    if (was !== undefined && was.join() === reasons.join()) return
    this.host.log.warn({ dataset: this.name, reasons }, 'schemas are incompatible; dataset quarantined: nothing is applied until they agree')
    await this.repairer.record({ kind: 'quarantine', reason: reasons.join('; ') })
  }

  private async liftQuarantine (): Promise<void> {
    const reasons = this.liftedFrom
    this.liftedFrom = undefined
    this.host.log.info({ dataset: this.name, was: reasons }, 'schemas agree again; quarantine lifted')
    await this.repairer.record({ kind: 'quarantine-lifted', reason: `was: ${(reasons ?? []).join('; ')}` })
  }

  private schemaStatus (): Record<string, unknown> {
    const a = this.agreement
    return {
      fingerprint: this.codec.fingerprint,
      version: this.codec.schema.version,
      comparison: a.kind === 'shape' ? { fingerprint: a.view.codec.fingerprint, columns: a.view.shape.columns.map(c => c.name), sourceFingerprint: a.sourceFp ?? null } : null,
      quarantine: a.kind === 'quarantined' ? { reasons: a.reasons, since: a.since, sourceFingerprint: a.sourceFp ?? null } : null
    }
  }

  /** Counts fixes applied here, whether a sync or an approved review applied them. */
  countFixes (applied: { fixIds: readonly string[], rowsUpserted: number, rowsDeleted: number }): void {
    this.counters.fixes += applied.fixIds.length
    this.counters.rowsUpserted += applied.rowsUpserted
    this.counters.rowsDeleted += applied.rowsDeleted
    if (applied.fixIds.length > 0) this.lastFixAt = Date.now()
  }

  /** A JSON-ready view for the status port. */
  status (): Record<string, unknown> {
    const root = this.index.tree.root
    const source = this.host.sourceOf(this.config)
    return {
      name: this.name,
      state: this.state,
      stateSince: this.stateSince,
      sourceOfTruth: source?.region ?? null,
      root: { count: root.count, sum: u64Hex(root.sum) },
      sourceRoot: this.sotRoot === undefined ? null : { count: this.sotRoot.count, sum: u64Hex(this.sotRoot.sum) },
      depth: this.index.tree.depth,
      indexSeq: this.index.appliedSeq,
      schema: this.schemaStatus(),
      lastError: this.lastError ?? null,
      lastSyncAt: this.lastSyncAt ?? null,
      lastFixAt: this.lastFixAt ?? null,
      driftSince: this.firstDriftAt ?? null,
      lastValidation: this.lastValidation ?? null,
      policy: { rule: this.config.rule, lastDecision: this.repairer.lastDecision ?? null, heldKeys: this.repairer.heldCount, rewrittenKeys: this.repairer.rewrittenCount },
      ...(this.codec.partitioned ? { partitionColumn: this.codec.schema.partitionColumn, partitions: this.partitions.status() } : {}),
      counters: this.counters
    }
  }
}

/** Whether `err` says a store could not be reached: this agent's own, or the source's (its error frame). */
function storeUnavailable (err: unknown): boolean {
  return err instanceof StoreUnavailableError || (err instanceof RemoteError && err.remoteCode === 'CONVERGE_STORE_UNAVAILABLE')
}

/** The reasons a schema disagreement cannot be bridged, when `err` is one; undefined otherwise. */
function incompatibility (err: unknown): string[] | undefined {
  if (err instanceof SchemaIncompatibleError) return [...err.reasons]
  if (err instanceof SchemaMismatchError) return [err.message]
  if (err instanceof RemoteError && (err.remoteCode === 'CONVERGE_SCHEMA_INCOMPATIBLE' || err.remoteCode === 'CONVERGE_SCHEMA_MISMATCH')) return [err.message]
  return undefined
}

/** A partition value as operators write it: dates as ISO strings (timestamp columns hold UTC ms, or µs), bytes in hex. */
function displayValue (v: Value | undefined, column: ColumnSpec): string | undefined {
  if (v === undefined) return undefined
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex')
  if (column.type === 'timestamp' && column.precision === 'us' && (typeof v === 'number' || typeof v === 'bigint')) return microsToIso(v)
  if (column.type === 'timestamp' && typeof v === 'number') return new Date(v).toISOString()
  return String(v)
}
