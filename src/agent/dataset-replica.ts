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
import { merge, tick, type VectorClock } from '../audit/vector-clock.ts'
import type { DatasetConfig } from '../config/schema.ts'
import { ConvergeError, RemoteError, SchemaMismatchError } from '../errors.ts'
import { u64Hex } from '../digest/hash.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import type { DatasetSummary } from '../gossip/summary.ts'
import type { DigestIndex, ValidationReport } from '../index/digest-index.ts'
import type { Logger } from '../observability/logger.ts'
import { planRestore } from '../policy/restore.ts'
import type { ReplicaStore } from '../stores/replica-store.ts'
import type { FrameChannel } from '../sync/channel.ts'
import { runClientSync } from '../sync/session.ts'
import { sleep } from '../util/serial.ts'

export type DriftState = 'starting' | 'source' | 'in-sync' | 'drifted' | 'syncing' | 'no-source' | 'schema-mismatch' | 'error'

export interface DatasetCounters {
  syncs: number
  fixes: number
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
  publish: (replica: DatasetReplica) => void
}

export interface DatasetReplicaInit {
  config: DatasetConfig
  codec: RowCodec
  store: ReplicaStore
  index: DigestIndex
  host: ReplicaHost
  minIntervalMs: number
  timeoutMs: number
}

const MAX_BACKOFF_MS = 30_000

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
}

export class DatasetReplica {
  readonly config: DatasetConfig
  readonly codec: RowCodec
  readonly store: ReplicaStore
  readonly index: DigestIndex
  private readonly host: ReplicaHost
  private readonly minIntervalMs: number
  private readonly timeoutMs: number
  state: DriftState = 'starting'
  lastError: string | undefined
  lastSyncAt: number | undefined
  lastFixAt: number | undefined
  firstDriftAt: number | undefined
  lastValidation: (ValidationReport & { at: number }) | undefined
  readonly counters: DatasetCounters = { syncs: 0, fixes: 0, rowsUpserted: 0, rowsDeleted: 0, missing: 0, changed: 0, extra: 0, unresolved: 0, roundTrips: 0, bytesSent: 0, bytesReceived: 0, syncErrors: 0, validations: 0, validationCorrections: 0 }
  /** The SoT's root as last seen (gossip or sync), with the local time it was seen. */
  private sotRoot: { count: number, sum: bigint, seenAt: number } | undefined
  private wanted = false
  private syncStartedAt = 0
  private worker: Promise<void> | undefined
  private readonly stopping = new AbortController()
  private failures = 0

  constructor (init: DatasetReplicaInit) {
    this.config = init.config
    this.codec = init.codec
    this.store = init.store
    this.index = init.index
    this.host = init.host
    this.minIntervalMs = init.minIntervalMs
    this.timeoutMs = init.timeoutMs
    this.index.on('change', () => { this.host.publish(this); this.evaluate() })
  }

  get name (): string { return this.config.name }

  /** Re-reads who the SoT is and whether the roots differ; starts the worker when a sync is due. */
  evaluate (): void {
    if (this.stopping.signal.aborted) return
    const source = this.host.sourceOf(this.config)
    if (source === undefined) { this.state = 'no-source'; return }
    if (source.region === this.host.region) { this.state = 'source'; return }
    const s = source.summary
    if (s !== undefined && s.fp !== this.codec.fingerprint) {
      this.state = 'schema-mismatch'
      this.lastError = `source ${source.region} has schema ${s.fp}, local ${this.codec.fingerprint}`
      return
    }
    const root = this.index.tree.root
    const sot = this.sotRoot
    if (sot !== undefined && sot.count === root.count && sot.sum === root.sum) {
      if (this.state !== 'syncing') this.state = 'in-sync'
      this.firstDriftAt = undefined
      return
    }
    // nothing heard from the source yet and no peer to ask: wait for its summary
    if (sot === undefined && s === undefined && source.peerId === undefined) return
    this.firstDriftAt ??= Date.now()
    // during a sync the roots differ until its fix lands: only news from the source calls for another
    if (this.state === 'syncing' && (sot === undefined || sot.seenAt <= this.syncStartedAt)) return
    if (this.state !== 'syncing') this.state = 'drifted'
    this.wanted = true
    this.worker ??= this.work().finally(() => { this.worker = undefined; if (this.wanted && !this.stopping.signal.aborted) this.evaluate() })
  }

  /** A summary from the serving SoT arrived. */
  onSourceSummary (summary: DatasetSummary): void {
    this.sotRoot = { count: summary.count, sum: summary.sum, seenAt: Date.now() }
    this.evaluate()
  }

  async stop (): Promise<void> {
    this.stopping.abort()
    await this.worker?.catch(() => undefined)
  }

  private async work (): Promise<void> {
    while (this.wanted && !this.stopping.signal.aborted) {
      this.wanted = false
      const source = this.host.sourceOf(this.config)
      if (source?.peerId === undefined || source.region === this.host.region) return
      const started = Date.now()
      this.syncStartedAt = started
      try {
        this.host.log.debug({ dataset: this.name, source: source.region }, 'sync starting')
        this.state = 'syncing'
        await this.syncOnce(source.region, source.peerId)
        this.failures = 0
        this.lastError = undefined
      } catch (err) {
        if (this.stopping.signal.aborted) return
        if (isSchemaMismatch(err)) {
          // retrying cannot help: wait for a summary that carries another schema (evaluate() runs on each)
          this.state = 'schema-mismatch'
          this.lastError = (err as Error).message
          this.host.log.warn({ dataset: this.name, source: source.region, err: this.lastError }, 'schemas differ; nothing is applied until they agree')
          return
        }
        this.failures++
        this.counters.syncErrors++
        this.lastError = (err as Error).message
        this.state = 'error'
        this.host.log.warn({ dataset: this.name, source: source.region, err: (err as Error).message, code: (err as { code?: string }).code }, 'sync failed')
        this.wanted = true
        const backoff = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.failures, 10))
        await sleep(backoff / 2 + Math.random() * backoff / 2, this.stopping.signal).catch(() => undefined)
        continue
      }
      const root = this.index.tree.root
      const sot = this.sotRoot
      this.state = sot !== undefined && sot.count === root.count && sot.sum === root.sum ? 'in-sync' : 'drifted'
      // level with the newest root heard: whatever asked for another sync meanwhile is already done
      if (this.state === 'in-sync') { this.firstDriftAt = undefined; this.wanted = false }
      // still apart (a local write meanwhile, a newer source root, a row left unresolved): go again
      else this.wanted = true
      const wait = this.minIntervalMs - (Date.now() - started)
      if (wait > 0) await sleep(wait, this.stopping.signal).catch(() => undefined)
    }
  }

  /**
   * The deep pass: rescans the store and checks it row by row against the
   * digest index. Corrections change the tree, which starts a sync when the
   * replica now differs from its source.
   */
  async validateNow (): Promise<ValidationReport> {
    const report = await this.index.validate({ signal: this.stopping.signal })
    this.counters.validations++
    this.counters.validationCorrections += report.corrected
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
    const log = this.host.log.child({ dataset: this.name, cid: correlationId, source: sourceRegion })
    const t0 = performance.now()
    const channel = await this.host.openSyncChannel(peerId, signal)
    const tOpen = performance.now()
    const { opened, result, stats } = await runClientSync(channel, {
      dataset: this.name, region: this.host.region, codec: this.codec, view: this.index, clock: this.host.clock(), correlationId, signal
    })
    this.counters.syncs++
    this.counters.roundTrips += stats.roundTrips
    this.counters.bytesSent += stats.bytesSent
    this.counters.bytesReceived += stats.bytesReceived
    this.counters.unresolved += result.unresolved
    this.lastSyncAt = Date.now()
    // the root the source opened with, unless a newer summary arrived meanwhile
    if (this.sotRoot === undefined || this.sotRoot.seenAt <= this.syncStartedAt) {
      this.sotRoot = { count: opened.count, sum: new DataView(opened.sum.buffer, opened.sum.byteOffset, 8).getBigUint64(0), seenAt: Date.now() }
    }
    await this.host.setClock(merge(this.host.clock(), opened.clock))
    const fixes = planRestore(result, this.codec)
    log.info({
      missing: result.missing, changed: result.changed, extra: result.extra, unresolved: result.unresolved, roundTrips: stats.roundTrips,
      bytes: stats.bytesSent + stats.bytesReceived, dialMs: Math.round(tOpen - t0), exchangeMs: Math.round(performance.now() - tOpen)
    }, fixes.length === 0 ? 'sync found no drift' : 'sync found drift')
    for (const fix of fixes) {
      if (signal.aborted) break
      const fixId = randomUUID()
      const clock = tick(this.host.clock(), this.host.region)
      await this.host.setClock(clock)
      const common = { fixId, correlationId, dataset: this.name, region: this.host.region, clock, sourceRegion, rule: this.config.rule }
      await this.host.audit.append({ ...common, kind: 'intent', detected: { missing: result.missing, changed: result.changed, extra: result.extra }, upserts: fix.upserts, deletes: fix.deletes })
      const applied = await this.store.apply({ upserts: fix.upserts, deletes: fix.deletes, origin: 'converge' })
      await this.host.audit.append({ ...common, kind: 'commit', before: applied.before, storeSeq: applied.seq })
      this.counters.fixes++
      this.counters.rowsUpserted += fix.upserts.length
      this.counters.rowsDeleted += fix.deletes.length
      this.lastFixAt = Date.now()
      log.info({ fixId, upserts: fix.upserts.length, deletes: fix.deletes.length, storeSeq: applied.seq }, 'fix applied')
    }
    this.counters.missing += result.missing
    this.counters.changed += result.changed
    this.counters.extra += result.extra
    await this.index.catchUp({ signal })
    return {
      correlationId, sourceRegion, missing: result.missing, changed: result.changed, extra: result.extra, unresolved: result.unresolved,
      fixes: fixes.length, roundTrips: stats.roundTrips, bytesSent: stats.bytesSent, bytesReceived: stats.bytesReceived
    }
  }

  /** A JSON-ready view for the status port. */
  status (): Record<string, unknown> {
    const root = this.index.tree.root
    const source = this.host.sourceOf(this.config)
    return {
      name: this.name,
      state: this.state,
      sourceOfTruth: source?.region ?? null,
      root: { count: root.count, sum: u64Hex(root.sum) },
      sourceRoot: this.sotRoot === undefined ? null : { count: this.sotRoot.count, sum: u64Hex(this.sotRoot.sum) },
      depth: this.index.tree.depth,
      indexSeq: this.index.appliedSeq,
      schema: this.codec.fingerprint,
      lastError: this.lastError ?? null,
      lastSyncAt: this.lastSyncAt ?? null,
      lastFixAt: this.lastFixAt ?? null,
      driftSince: this.firstDriftAt ?? null,
      lastValidation: this.lastValidation ?? null,
      counters: this.counters
    }
  }
}

function isSchemaMismatch (err: unknown): boolean {
  return err instanceof SchemaMismatchError || (err instanceof RemoteError && err.remoteCode === 'CONVERGE_SCHEMA_MISMATCH')
}
