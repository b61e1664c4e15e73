/**
 * The agent's Prometheus metrics (prom-client), one registry per agent so
 * several agents in one process (tests, the simulator) never share series.
 * libp2p's own metrics go on the same registry (see libp2pMetrics()).
 *
 * Naming follows Prometheus conventions: a `converge_` prefix, base units
 * (seconds, bytes), `_total` on counters. Label values are bounded: dataset
 * names and regions come from the config, operations and outcomes from
 * fixed lists; a row key never becomes a label.
 *
 * Two kinds of values:
 *  - events (syncs, fixes, reviews, rollbacks) are counted where they happen,
 *    through the methods below, called by the replica, repairer and agent;
 *  - states (dataset state, pending reviews, peers, breakers, divergence from
 *    each peer's gossiped summary) are read from the agent at scrape time
 *    (collect), so they can never drift from what /status says.
 */
import { createRequire } from 'node:module'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { TREE_FANOUT } from '../constants.ts'
import { DriftHistory } from './drift-history.ts'

/** The package's version, for converge_build_info. */
const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version

/** Every state a dataset can be in, so each gets a series (0 or 1) and a state change never leaves a stale 1 behind. */
export const DATASET_STATES = ['starting', 'indexing', 'source', 'in-sync', 'drifted', 'held', 'syncing', 'no-source', 'quarantined', 'error'] as const

/** Breaker states as numbers: a gauge, so alerts can say `> 0`. */
const BREAKER_VALUE: Record<string, number> = { closed: 0, 'half-open': 1, open: 2, isolated: 3 }

/**
 * Detection and remediation times run from milliseconds (a change feed
 * noticing a write at once) to days (a fix waiting in review over a weekend).
 */
const LATENCY_BUCKETS_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 3 * 24 * 3600]
const SYNC_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/** What the metrics read from a dataset replica at scrape time. */
export interface ReplicaView {
  readonly name: string
  readonly state: string
  readonly index: { tree: { rowCount: number, depth: number, sum: (level: number, index: number) => bigint } }
  readonly codec: { fingerprint: string }
  readonly partitions: { status: () => Array<{ state: string }> }
  readonly config: { sourceOfTruth: readonly string[] }
}

/** A summary heard from a peer, as the summary board keeps it. */
export interface HeardView { summary: { region: string, dataset: string, fp: string, count: number, children: bigint[] }, receivedAt: number }

/** What the metrics read from the agent at scrape time. */
export interface MetricsHost {
  readonly region: string
  readonly datasets: ReadonlyMap<string, ReplicaView>
  readonly reviews: { pendingCount: (dataset?: string) => number }
  readonly summariesRefused: number
  peers: () => Array<Record<string, unknown>>
  /** Summaries heard from peers, newest per region and dataset. */
  heardSummaries?: () => HeardView[]
  /** Datasets whose index is still being built, with the rows read so far. */
  indexingDatasets?: () => ReadonlyMap<string, number>
  readonly breakers?: { state: (name: string) => string }
  /** The digest indexes' page pool (index/page-cache.ts). */
  readonly pagePool?: { readonly bytes: number, readonly maxBytes: number, readonly hits: number, readonly misses: number }
  readonly draining?: boolean
}

export interface AgentMetricsInit {
  region: string
  cluster: string
  version?: string
  /** Adds prom-client's default process metrics (CPU, memory, event loop, GC). */
  processMetrics?: boolean
}

type SyncOutcome = 'ok' | 'error' | 'quarantined'
type FixKind = 'automatic' | 'review' | 'rollback'

export class AgentMetrics {
  readonly registry = new Registry()
  /** Drift seen over time, for the dashboard's chart. */
  readonly history = new DriftHistory()
  private host: MetricsHost | undefined

  private readonly driftRows: Gauge<'dataset' | 'peer'>
  private readonly timeToDetect: Histogram<'dataset'>
  private readonly timeToRemediate: Histogram<'dataset'>
  private readonly rowsRepaired: Counter<'dataset' | 'operation'>
  private readonly bytesRepaired: Counter<'dataset'>
  private readonly fixes: Counter<'dataset' | 'kind'>
  private readonly syncs: Counter<'dataset' | 'peer' | 'outcome'>
  private readonly syncRounds: Counter<'dataset' | 'peer'>
  private readonly syncBytes: Counter<'dataset' | 'peer' | 'direction'>
  private readonly syncDuration: Histogram<'dataset'>
  private readonly syncsServed: Counter<'dataset'>
  private readonly rolledBack: Counter<'dataset'>
  private readonly reviews: Counter<'dataset' | 'outcome'>
  private readonly lastReconcile: Gauge<'dataset'>
  private readonly validations: Counter<'dataset'>
  private readonly validationCorrections: Counter<'dataset'>

  /** Per dataset: the drift episode (its first sight) whose detection was observed already. */
  private readonly detected = new Map<string, number>()
  /** Per dataset: whether a fix was applied since the last time it was level with its source. */
  private readonly fixedSinceLevel = new Set<string>()

  constructor (init: AgentMetricsInit) {
    const r = this.registry
    const self = this // collect() callbacks are called with the metric as `this`
    new Gauge({ name: 'converge_build_info', help: 'Build information: always 1.', labelNames: ['version', 'node_version', 'region', 'cluster'], registers: [r] })
      .set({ version: init.version ?? VERSION, node_version: process.versions.node, region: init.region, cluster: init.cluster }, 1)
    if (init.processMetrics !== false) collectDefaultMetrics({ register: r, prefix: '' })

    this.driftRows = new Gauge({ name: 'converge_drift_rows', help: 'Rows found apart from the peer (the source of truth) in the last sync: missing, changed and extra.', labelNames: ['dataset', 'peer'], registers: [r] })
    new Gauge({
      name: 'converge_diverged_nodes',
      help: 'First-level tree nodes (of 16) whose sums differ from the last summary gossiped by the peer, under the same schema.',
      labelNames: ['dataset', 'peer'],
      registers: [r],
      collect () { self.collectDivergence(this) }
    })
    new Gauge({
      name: 'converge_peer_row_count_difference',
      help: "This replica's row count minus the peer's, from its last gossiped summary.",
      labelNames: ['dataset', 'peer'],
      registers: [r],
      collect () { self.collectRowDifference(this) }
    })
    this.timeToDetect = new Histogram({ name: 'converge_time_to_detect_seconds', help: 'From the first sight of a drift (roots apart) to a sync naming its rows.', labelNames: ['dataset'], buckets: LATENCY_BUCKETS_SECONDS, registers: [r] })
    this.timeToRemediate = new Histogram({ name: 'converge_time_to_remediate_seconds', help: 'From the first sight of a drift to the replica level with its source again after a fix (reviews included).', labelNames: ['dataset'], buckets: LATENCY_BUCKETS_SECONDS, registers: [r] })
    this.rowsRepaired = new Counter({ name: 'converge_repaired_rows_total', help: 'Rows written (upsert) or deleted by fixes.', labelNames: ['dataset', 'operation'], registers: [r] })
    this.bytesRepaired = new Counter({ name: 'converge_repaired_bytes_total', help: 'Bytes of canonical rows written by fixes.', labelNames: ['dataset'], registers: [r] })
    this.fixes = new Counter({ name: 'converge_fixes_total', help: 'Fixes applied, by how they came about.', labelNames: ['dataset', 'kind'], registers: [r] })
    this.syncs = new Counter({ name: 'converge_syncs_total', help: 'Syncs with the source of truth, by outcome.', labelNames: ['dataset', 'peer', 'outcome'], registers: [r] })
    this.syncRounds = new Counter({ name: 'converge_sync_round_trips_total', help: 'Round trips of sync exchanges.', labelNames: ['dataset', 'peer'], registers: [r] })
    this.syncBytes = new Counter({ name: 'converge_sync_bytes_total', help: 'Bytes of sync exchanges, framing included.', labelNames: ['dataset', 'peer', 'direction'], registers: [r] })
    this.syncDuration = new Histogram({ name: 'converge_sync_duration_seconds', help: 'Duration of a whole sync (exchanges and fixes).', labelNames: ['dataset'], buckets: SYNC_BUCKETS_SECONDS, registers: [r] })
    this.syncsServed = new Counter({ name: 'converge_syncs_served_total', help: 'Sync sessions served to replicas as their source of truth.', labelNames: ['dataset'], registers: [r] })
    this.rolledBack = new Counter({ name: 'converge_fixes_rolled_back_total', help: 'Fixes rolled back by an operator.', labelNames: ['dataset'], registers: [r] })
    this.reviews = new Counter({ name: 'converge_reviews_total', help: 'Reviews raised, and how they were settled.', labelNames: ['dataset', 'outcome'], registers: [r] })
    this.lastReconcile = new Gauge({ name: 'converge_last_reconcile_success_timestamp_seconds', help: 'When the replica was last seen level with its source, or a sync with it last succeeded (Unix time).', labelNames: ['dataset'], registers: [r] })
    this.validations = new Counter({ name: 'converge_validations_total', help: 'Deep validation passes run.', labelNames: ['dataset'], registers: [r] })
    this.validationCorrections = new Counter({ name: 'converge_validation_corrections_total', help: 'Index entries a deep pass corrected (writes the change feed missed).', labelNames: ['dataset'], registers: [r] })

    new Gauge({
      name: 'converge_reviews_pending', help: 'Fixes waiting for a person to approve or reject them.', labelNames: ['dataset'], registers: [r],
      collect () { this.reset(); const h = self.host; if (h !== undefined) for (const name of h.datasets.keys()) this.set({ dataset: name }, h.reviews.pendingCount(name)) }
    })
    new Gauge({
      name: 'converge_quarantined_datasets', help: 'Datasets quarantined: their schema is incompatible with the source\'s, nothing is applied.', registers: [r],
      collect () { this.set([...(self.host?.datasets.values() ?? [])].filter(d => d.state === 'quarantined').length) }
    })
    new Gauge({
      name: 'converge_dataset_state', help: 'The state of each dataset: 1 for its current state, 0 for the others.', labelNames: ['dataset', 'state'], registers: [r],
      collect () { self.collectStates(this) }
    })
    new Gauge({
      name: 'converge_index_rows', help: 'Rows in the dataset\'s digest index (rows read so far while it is built).', labelNames: ['dataset'], registers: [r],
      collect () {
        this.reset()
        const h = self.host
        if (h === undefined) return
        for (const d of h.datasets.values()) this.set({ dataset: d.name }, d.index.tree.rowCount)
        for (const [name, rows] of h.indexingDatasets?.() ?? []) this.set({ dataset: name }, rows)
      }
    })
    new Gauge({
      name: 'converge_sync_queue_depth', help: 'Drifted partitions waiting for a sync session of their own (0 or 1 for an unpartitioned dataset waiting to sync).', labelNames: ['dataset'], registers: [r],
      collect () {
        this.reset()
        for (const d of self.host?.datasets.values() ?? []) {
          const parts = d.partitions.status()
          this.set({ dataset: d.name }, parts.length > 0 ? parts.filter(p => p.state === 'drifted').length : d.state === 'drifted' ? 1 : 0)
        }
      }
    })
    new Gauge({
      name: 'converge_breaker_state', help: 'Circuit breaker per store and peer: 0 closed, 1 half-open, 2 open, 3 isolated.', labelNames: ['kind', 'target'], registers: [r],
      collect () { self.collectBreakers(this) }
    })
    new Gauge({
      name: 'converge_peers', help: 'Peers this agent knows of, by whether a connection is open.', labelNames: ['connected'], registers: [r],
      collect () {
        const peers = self.host?.peers() ?? []
        this.set({ connected: 'true' }, peers.filter(p => p.connected === true).length)
        this.set({ connected: 'false' }, peers.filter(p => p.connected !== true).length)
      }
    })
    new Gauge({
      name: 'converge_peer_last_summary_timestamp_seconds', help: 'When the last summary from each peer region arrived (Unix time).', labelNames: ['peer'], registers: [r],
      collect () {
        this.reset()
        for (const p of self.host?.peers() ?? []) if (typeof p.lastSummaryAt === 'number' && typeof p.region === 'string') this.set({ peer: p.region }, p.lastSummaryAt / 1000)
      }
    })
    new Gauge({
      name: 'converge_index_page_cache_bytes', help: 'Bytes of digest-index pages the agent keeps in memory, all datasets together (overheads included).', registers: [r],
      collect () { this.set(self.host?.pagePool?.bytes ?? 0) }
    })
    new Gauge({
      name: 'converge_index_page_cache_limit_bytes', help: 'The budget of the page cache (index.pageCacheMiB).', registers: [r],
      collect () { this.set(self.host?.pagePool?.maxBytes ?? 0) }
    })
    new Counter({
      name: 'converge_index_page_cache_lookups_total', help: 'Digest-index pages looked up by change batches and page writes: found in memory (hit) or read from LevelDB (miss).', labelNames: ['result'], registers: [r],
      collect () {
        // the pool counts; the counter shows its totals
        const pool = self.host?.pagePool
        this.reset()
        if (pool === undefined) return
        this.inc({ result: 'hit' }, pool.hits)
        this.inc({ result: 'miss' }, pool.misses)
      }
    })
    new Gauge({
      name: 'converge_summaries_refused', help: 'Summaries from the topic refused since start (malformed, or claiming a region their sender does not hold).', registers: [r],
      collect () { this.set(self.host?.summariesRefused ?? 0) }
    })
    new Gauge({
      name: 'converge_draining', help: '1 while the agent is stopping: it starts no new sync or fix.', registers: [r],
      collect () { this.set(self.host?.draining === true ? 1 : 0) }
    })
  }

  /** The agent whose state is read at scrape time. */
  bind (host: MetricsHost): void { this.host = host }

  /**
   * libp2p's metrics on this registry. Its module keeps one map of metric
   * names for the whole process and clears it when a node is created, so with
   * several nodes in one process (tests) the latest node's series win; an
   * agent process has one node. Process metrics are ours (processMetrics).
   */
  libp2pMetrics (): ReturnType<typeof prometheusMetrics> {
    return prometheusMetrics({ registry: this.registry, collectDefaultMetrics: false })
  }

  /** The exposition text for /metrics. */
  async text (): Promise<string> { return await this.registry.metrics() }
  get contentType (): string { return this.registry.contentType }

  // events, called where they happen

  /** One exchange with the source finished (a whole sync, a survey, or one partition's session). */
  exchanged (dataset: string, peer: string, stats: { roundTrips: number, bytesSent: number, bytesReceived: number }, rowsApart: number, driftSince: number | undefined): void {
    this.syncRounds.inc({ dataset, peer }, stats.roundTrips)
    this.syncBytes.inc({ dataset, peer, direction: 'sent' }, stats.bytesSent)
    this.syncBytes.inc({ dataset, peer, direction: 'received' }, stats.bytesReceived)
    if (rowsApart > 0 && driftSince !== undefined && this.detected.get(dataset) !== driftSince) {
      this.detected.set(dataset, driftSince)
      this.timeToDetect.observe({ dataset }, Math.max(0, Date.now() - driftSince) / 1000)
    }
  }

  /** A sync finished: its rows apart (all exchanges) become the dataset's drift for that peer. */
  syncSucceeded (dataset: string, peer: string, rowsApart: number, startedAt: number): void {
    this.syncs.inc({ dataset, peer, outcome: 'ok' })
    this.syncDuration.observe({ dataset }, Math.max(0, Date.now() - startedAt) / 1000)
    this.driftRows.set({ dataset, peer }, rowsApart)
    this.lastReconcile.set({ dataset }, Date.now() / 1000)
    this.history.record(dataset, rowsApart)
  }

  syncFailed (dataset: string, peer: string, outcome: Exclude<SyncOutcome, 'ok'> = 'error'): void {
    this.syncs.inc({ dataset, peer, outcome })
  }

  syncServed (dataset: string): void { this.syncsServed.inc({ dataset }) }

  /** The replica is level with its source (roots equal): a drift episode, if any, is over. */
  level (dataset: string, driftSince: number | undefined, peer: string | undefined): void {
    this.lastReconcile.set({ dataset }, Date.now() / 1000)
    if (peer !== undefined) this.driftRows.set({ dataset, peer }, 0)
    this.history.record(dataset, 0)
    if (driftSince !== undefined && this.fixedSinceLevel.has(dataset)) this.timeToRemediate.observe({ dataset }, Math.max(0, Date.now() - driftSince) / 1000)
    this.fixedSinceLevel.delete(dataset)
    this.detected.delete(dataset)
  }

  /** A fix is about to be written: the drift episode it ends counts as remediated. */
  fixing (dataset: string): void { this.fixedSinceLevel.add(dataset) }

  fixApplied (dataset: string, fix: { upserts: readonly Uint8Array[], deletes: readonly Uint8Array[], reviewId?: string, rollback?: boolean }): void {
    const kind: FixKind = fix.rollback === true ? 'rollback' : fix.reviewId !== undefined ? 'review' : 'automatic'
    this.fixes.inc({ dataset, kind })
    this.rowsRepaired.inc({ dataset, operation: 'upsert' }, fix.upserts.length)
    this.rowsRepaired.inc({ dataset, operation: 'delete' }, fix.deletes.length)
    let bytes = 0
    for (const row of fix.upserts) bytes += row.byteLength
    this.bytesRepaired.inc({ dataset }, bytes)
  }

  fixRolledBack (dataset: string): void { this.rolledBack.inc({ dataset }) }

  review (dataset: string, outcome: 'raised' | 'approved' | 'rejected' | 'refused'): void { this.reviews.inc({ dataset, outcome }) }

  validated (dataset: string, corrected: number): void {
    this.validations.inc({ dataset })
    this.validationCorrections.inc({ dataset }, corrected)
  }

  /** Records each dataset's current drift for the chart; called on a timer. */
  sample (): void {
    for (const d of this.host?.datasets.values() ?? []) {
      if (d.state === 'in-sync' || d.state === 'source') this.history.record(d.name, 0)
      else this.history.touch(d.name)
    }
  }

  // scrape-time readings

  private collectStates (g: Gauge<'dataset' | 'state'>): void {
    g.reset()
    const h = this.host
    if (h === undefined) return
    const set = (name: string, current: string): void => { for (const s of DATASET_STATES) g.set({ dataset: name, state: s }, s === current ? 1 : 0) }
    for (const d of h.datasets.values()) set(d.name, d.state)
    for (const name of h.indexingDatasets?.().keys() ?? []) set(name, 'indexing')
  }

  private comparable (): Array<{ d: ReplicaView, heard: HeardView }> {
    const h = this.host
    if (h === undefined) return []
    const out: Array<{ d: ReplicaView, heard: HeardView }> = []
    for (const heard of h.heardSummaries?.() ?? []) {
      const d = h.datasets.get(heard.summary.dataset)
      if (d !== undefined && heard.summary.fp === d.codec.fingerprint) out.push({ d, heard })
    }
    return out
  }

  private collectDivergence (g: Gauge<'dataset' | 'peer'>): void {
    g.reset()
    for (const { d, heard } of this.comparable()) {
      let n = 0
      for (let j = 0; j < TREE_FANOUT; j++) if (heard.summary.children[j] !== d.index.tree.sum(1, j)) n++
      g.set({ dataset: d.name, peer: heard.summary.region }, n)
    }
  }

  private collectRowDifference (g: Gauge<'dataset' | 'peer'>): void {
    g.reset()
    for (const { d, heard } of this.comparable()) g.set({ dataset: d.name, peer: heard.summary.region }, d.index.tree.rowCount - heard.summary.count)
  }

  private collectBreakers (g: Gauge<'kind' | 'target'>): void {
    g.reset()
    const h = this.host
    const breakers = h?.breakers
    if (h === undefined || breakers === undefined) return
    for (const name of h.datasets.keys()) g.set({ kind: 'store', target: name }, BREAKER_VALUE[breakers.state(`store:${name}`)] ?? 0)
    for (const p of h.peers()) {
      if (typeof p.peerId !== 'string') continue
      g.set({ kind: 'peer', target: typeof p.region === 'string' ? p.region : p.peerId }, BREAKER_VALUE[breakers.state(`peer:${p.peerId}`)] ?? 0)
    }
  }
}
