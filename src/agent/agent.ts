/**
 * The converge agent: one sidecar beside one regional replica.
 *
 * start() opens, in order: the agent's LevelDB, audit log and clock; each
 * dataset's store and digest index (built or caught up); the libp2p node with
 * the sync protocol handler and the summary topic; the status port. stop()
 * closes them in reverse, after the dataset workers finish their current step.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Message } from '@libp2p/gossipsub'
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { AuditLog } from '../audit/audit-log.ts'
import { recoverPendingFixes } from '../audit/recovery.ts'
import { rollbackFix, type RollbackReport } from '../audit/rollback.ts'
import type { VectorClock } from '../audit/vector-clock.ts'
import type { AgentConfig, DatasetConfig } from '../config/schema.ts'
import { SYNC_PROTOCOL, summaryTopic } from '../constants.ts'
import { ConvergeError, FixNotFoundError, IndexWriteError, RegionClaimError, UnknownDatasetError } from '../errors.ts'
import { resolveSchema } from '../config/resolve-schema.ts'
import { RowCodec } from '../digest/row-codec.ts'
import { compareSchemas, SchemaIncompatibleError } from '../digest/schema-compat.ts'
import { decodeSummary, encodeSummary, summarize, type DatasetSummary } from '../gossip/summary.ts'
import { judgeSummary } from '../gossip/validator.ts'
import { DigestIndex, type IndexProgress } from '../index/digest-index.ts'
import { PagePool } from '../index/page-cache.ts'
import { StateDb } from '../index/state-db.ts'
import { createAgentNode, type AgentNode } from '../net/node.ts'
import { loadOrCreatePeerKey } from '../net/peer-key.ts'
import { NetworkSecurity } from '../security/network.ts'
import { refuseStream } from '../security/refuse.ts'
import { createLogger, type Logger } from '../observability/logger.ts'
import { AgentMetrics } from '../observability/metrics.ts'
import { MIN_GAP_MS } from '../observability/drift-history.ts'
import { RepeatedFailure } from '../observability/repeated-failure.ts'
import { answerStatus, gatherClusterView, MAX_INBOUND_STATUS_STREAMS, MAX_STATUS_BYTES, STATUS_PROTOCOL, type ClusterView } from '../status/cluster-view.ts'
import { ReviewQueue } from '../review/review-queue.ts'
import { TokenRing, type Caller } from '../status/auth.ts'
import { StatusServer } from '../status/server.ts'
import { checkListenAddresses, listenFailure } from '../net/listen-check.ts'
import { createStore } from '../stores/open-store.ts'
import type { ReplicaStore } from '../stores/replica-store.ts'
import { streamChannel, type FrameChannel } from '../sync/channel.ts'
import { serveSync } from '../sync/session.ts'
import { Admin } from './admin.ts'
import { DatasetReplica, type ReplicaHost } from './dataset-replica.ts'
import { Repairer } from './repairer.ts'
import { ShapeViews } from './shape-views.ts'
import { Breakers, RowBudget, syncBulkhead } from './resilience.ts'
import type { BulkheadPolicy } from 'cockatiel'
import { SummaryBoard } from './summary-board.ts'

const CLOCK_KEY = new TextEncoder().encode('clock')
/** A region whose summary is older than this many gossip intervals is taken as unreachable. */
const STALE_INTERVALS = 3
/** Redial a peer that is not connected after this long, doubling on each failure up to REDIAL_MAX_MS. */
const REDIAL_MIN_MS = 250
const REDIAL_MAX_MS = 10_000

export interface AgentInit {
  config: AgentConfig
  logger?: Logger
  /** Called as each dataset's index is built or loaded. */
  onIndexProgress?: (dataset: string, progress: IndexProgress) => void
  /** Called as a scheduled deep pass reads each dataset's store (`expected`: the rows the index holds). */
  onValidationProgress?: (dataset: string, progress: IndexProgress & { expected: number }) => void
}

export class Agent implements ReplicaHost {
  readonly config: AgentConfig
  readonly region: string
  readonly log: Logger
  readonly state: StateDb
  /** Pages of every dataset's indexes kept in memory, under one budget (index.pageCacheMiB). */
  readonly pagePool: PagePool
  readonly audit: AuditLog
  readonly reviews: ReviewQueue
  readonly datasets = new Map<string, DatasetReplica>()
  /** Prometheus metrics (libp2p's too), on a registry of this agent's own. */
  readonly metrics: AgentMetrics
  /** Set once the agent is stopping: /readyz answers 503, no new sync or fix starts, actions are refused. */
  draining = false
  readonly breakers = new Breakers()
  readonly maxRowsPerExchange: number
  private readonly syncSlots: BulkheadPolicy
  private node: AgentNode | undefined
  private status: StatusServer | undefined
  private board: SummaryBoard
  private vectorClock: VectorClock = {}
  private readonly topic: string
  private readonly timers: NodeJS.Timeout[] = []
  private readonly publishPending = new Set<string>()
  private readonly redial = new Map<string, { at: number, delay: number }>()
  private readonly onIndexProgress: AgentInit['onIndexProgress']
  private readonly onValidationProgress: AgentInit['onValidationProgress']
  private readonly startedAt = Date.now()
  private running = false
  private validating = false
  /** Summaries from the topic that were malformed or claimed a region their sender does not hold. */
  summariesRefused = 0
  /** Allowlist, bans, pre-shared key, peer guard and stream slots (security/network.ts); set at start. */
  network: NetworkSecurity | undefined
  /** Summaries the topic validator accepted, decoded once, for the message handler. */
  private readonly judged = new WeakMap<Message, DatasetSummary>()
  /** Stores opened whose dataset is not set up yet: closed if start fails. */
  private readonly openingStores = new Set<ReplicaStore>()
  /** Datasets whose index is being built, with the rows read so far. */
  private readonly indexing = new Map<string, number>()
  private listenCache: string[] | undefined
  /** Each configured peer's address, parsed, and the peer id it pins (/p2p/<id>), by region. */
  private readonly peerAddresses = new Map<string, { address: Multiaddr, pinnedId: string | undefined }>()
  /** Peer ids parsed from their text, for the redial check. */
  private readonly peerIds = new Map<string, PeerId>()

  constructor (init: AgentInit) {
    this.config = init.config
    this.region = init.config.region
    this.log = init.logger ?? createLogger({ region: this.region })
    this.state = new StateDb(join(init.config.dataDir, 'state'))
    this.pagePool = new PagePool(init.config.index.pageCacheMiB * 1024 * 1024)
    this.audit = new AuditLog(this.state)
    this.reviews = new ReviewQueue(this.state)
    this.metrics = new AgentMetrics({ region: this.region, cluster: init.config.cluster })
    this.metrics.bind(this)
    this.syncSlots = syncBulkhead(init.config.sync.concurrency)
    this.maxRowsPerExchange = init.config.sync.maxRowsPerExchange
    this.topic = summaryTopic(init.config.cluster)
    this.onIndexProgress = init.onIndexProgress
    this.onValidationProgress = init.onValidationProgress
    // parsed once: the redial check looks at every peer four times a second
    for (const p of this.config.peers) {
      const address = multiaddr(p.address)
      this.peerAddresses.set(p.region, { address, pinnedId: address.getComponents().find(c => c.name === 'p2p')?.value })
    }
    this.board = new SummaryBoard([...this.peerAddresses].flatMap(([region, { pinnedId }]) => pinnedId === undefined ? [] : [[region, pinnedId] as [string, string]]))
  }

  get peerId (): string | undefined { return this.node?.peerId.toString() }
  /** This node's addresses, computed again only when libp2p says they changed (every /status shows them). */
  get listenAddresses (): string[] {
    if (this.node === undefined) return []
    this.listenCache ??= this.node.getMultiaddrs().map(String)
    return this.listenCache
  }
  get statusUrl (): string | undefined { return this.status?.url }

  async start (options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.startParts(options)
    } catch (err) {
      // leave nothing half-open (a listening status port would keep the process alive)
      await this.stop().catch(() => undefined)
      throw err
    }
  }

  private async startParts (options: { signal?: AbortSignal }): Promise<void> {
    const { signal } = options
    await mkdir(this.config.dataDir, { recursive: true })
    await this.state.open()
    await this.audit.open()
    await this.reviews.open()
    // secrets are read before anything listens, so a bad token file stops the start
    const tokens = await TokenRing.load(this.config.status?.tokens ?? [])
    // so are the peer key and the pre-shared key (modes checked), and the security rules, before minutes of index building
    const privateKey = await loadOrCreatePeerKey(this.config.keyFile!)
    const network = await NetworkSecurity.prepare(this.config, this.log)
    const storedClock = await this.state.sublevel('meta').get(CLOCK_KEY)
    this.vectorClock = storedClock === undefined ? {} : JSON.parse(new TextDecoder().decode(storedClock)) as VectorClock

    // the status port answers from the start, so a long first index build shows its progress
    if (this.config.status !== undefined) {
      this.status = new StatusServer({ agent: this, tokens, metrics: this.metrics, host: this.config.status.host, port: this.config.status.port })
      await this.status.start()
    }
    // libp2p listens only after the index build: a taken port is found now, not minutes in
    await checkListenAddresses(this.config.listen, signal)

    for (const dataset of this.config.datasets) {
      const codec = new RowCodec(await resolveSchema(dataset))
      const store = await createStore(dataset.store, codec)
      await store.open({ signal })
      this.openingStores.add(store)
      const index = new DigestIndex({ dataset: dataset.name, codec, store, state: this.state, pageCache: this.pagePool.cache() })
      // a store that is down fails the feed every few seconds for as long as it is: logged once a minute, and its end
      const feedFailures = new RepeatedFailure({ log: this.log, fields: { dataset: dataset.name }, message: 'change feed failed; following again after a pause', recoveredMessage: 'change feed following again' })
      index.on('error', err => {
        if (err instanceof IndexWriteError) this.log.error({ dataset: dataset.name, code: err.code, err: err.message }, 'digest index pages not written; tried again later')
        else feedFailures.failed(err)
      })
      index.on('following', () => { feedFailures.recovered() })
      const t0 = Date.now()
      this.indexing.set(dataset.name, 0)
      await index.start({ signal, onProgress: p => { this.indexing.set(dataset.name, p.rows); this.onIndexProgress?.(dataset.name, p) } })
      this.indexing.delete(dataset.name)
      this.log.info({ dataset: dataset.name, rows: index.tree.rowCount, depth: index.tree.depth, ms: Date.now() - t0 }, 'digest index ready')
      this.openingStores.delete(store)
      // fixes go through whatever the replica compares through (its own view, or a comparison view while schemas differ)
      let replica: DatasetReplica | undefined
      const repairer = new Repairer({
        config: dataset, view: () => replica!.compare, budget: new RowBudget(this.config.sync.maxRowsPerSecond), state: this.state, audit: this.audit, reviews: this.reviews, region: this.region, metrics: this.metrics,
        clock: () => this.clock(), setClock: async clock => { await this.setClock(clock) }
      })
      await repairer.open()
      const shapes = new ShapeViews({ dataset: dataset.name, schema: codec.schema, store, state: this.state, pages: this.pagePool, log: this.log, onChange: () => replica?.evaluate() })
      replica = new DatasetReplica({
        config: dataset, codec, store, index, repairer, shapes, host: this, minIntervalMs: this.config.sync.minIntervalMs, timeoutMs: this.config.sync.timeoutMs, roundIntervalMs: this.config.gossip.intervalMs
      })
      this.datasets.set(dataset.name, replica)
    }

    await this.recover(signal)

    const node = await createAgentNode({ privateKey, listen: this.config.listen, metrics: this.metrics.libp2pMetrics(), security: network.nodeOptions(this.topic) })
      .catch(err => { throw listenFailure(err, this.config.listen) })
    this.node = node
    node.addEventListener('self:peer:update', () => { this.listenCache = undefined })
    this.network = network
    network.attach(node)
    // the cluster view: a peer asks for this agent's status report (one bounded frame)
    await node.handle(STATUS_PROTOCOL, (stream) => { void answerStatus(stream, () => this.statusReport()) }, { maxInboundStreams: MAX_INBOUND_STATUS_STREAMS })
    // a peer's streams past maxStreamsPerPeer get an error frame from serve(); a couple more than that are reset by libp2p itself
    await node.handle(SYNC_PROTOCOL, (stream, connection) => { void this.serve(stream, connection.remotePeer.toString()) }, { maxInboundStreams: network.maxStreamsPerPeer + 2 })
    // every summary is judged before gossipsub delivers or forwards it; a rejection counts against the sender's score
    node.services.pubsub.topicValidators.set(this.topic, (source, msg) => this.judge(source, msg))
    node.services.pubsub.subscribe(this.topic)
    node.services.pubsub.addEventListener('message', (evt) => {
      const msg = evt.detail
      if (msg.topic !== this.topic || msg.type !== 'signed') return
      const summary = this.judged.get(msg)
      if (summary !== undefined) this.onSummary(summary)
    })
    node.addEventListener('peer:connect', () => {
      // a new peer may be a source of truth: tell it where we stand and look again
      for (const d of this.datasets.values()) { this.publish(d); d.evaluate() }
    })
    this.status?.attach(new Admin(this))
    this.running = true
    this.dialPeers()
    this.timers.push(setInterval(() => this.dialPeers(), REDIAL_MIN_MS))
    this.timers.push(setInterval(() => this.metrics.sample(), MIN_GAP_MS))
    this.timers.push(setInterval(() => { for (const d of this.datasets.values()) { this.publishNow(d); d.evaluate() } }, this.config.gossip.intervalMs))
    for (const d of this.datasets.values()) { this.publishNow(d); d.evaluate() }
    if (this.config.validation.intervalMs > 0) {
      this.timers.push(setInterval(() => { void this.validateAll() }, this.config.validation.intervalMs))
    }

    this.log.info({ peerId: node.peerId.toString(), listen: this.listenAddresses, status: this.statusUrl }, 'agent started')
  }

  /**
   * The first half of a stop: /readyz turns 503, actions are refused, no new
   * sync or fix starts, and the dataset workers finish their current step (a
   * fix whose intent is written is carried through; one not yet begun is not
   * begun). The status port keeps answering until stop() ends.
   */
  async drain (): Promise<void> {
    this.draining = true
    this.running = false
    for (const t of this.timers.splice(0)) clearInterval(t)
    await Promise.all([...this.datasets.values()].map(async d => await d.stop()))
  }

  async stop (): Promise<void> {
    await this.drain()
    this.network?.stop()
    await this.node?.stop()
    for (const d of this.datasets.values()) {
      await d.shapes.stop()
      await d.index.stop()
      await d.store.close()
    }
    for (const store of this.openingStores) await store.close().catch(() => undefined)
    // closing the state database flushes the audit log
    await this.state.close()
    await this.status?.stop()
    this.log.info('agent stopped')
  }

  /**
   * Finishes or undoes every fix that has an intent and no commit (the agent
   * died mid-fix), before any new fix can start: none is left half-applied.
   */
  private async recover (signal?: AbortSignal): Promise<void> {
    const stores = new Map([...this.datasets.values()].map(d => [d.name, { store: d.store, codec: d.codec }]))
    const reports = await recoverPendingFixes({ audit: this.audit, stores, region: this.region, clock: () => this.clock(), setClock: async c => { await this.setClock(c) }, signal })
    for (const r of reports) {
      const level = r.outcome === 'unknown-dataset' ? 'warn' : 'info'
      this.log[level]({ fixId: r.fixId, dataset: r.dataset, cid: r.correlationId, outcome: r.outcome, rows: r.rows, found: r.found }, r.outcome === 'unknown-dataset' ? 'fix left in flight: its dataset is not configured' : 'fix without a commit settled at start')
    }
    for (const d of this.datasets.values()) if (reports.some(r => r.dataset === d.name && r.outcome !== 'unknown-dataset')) await d.index.catchUp({ signal })
  }

  /**
   * Rolls a fix back as a new audited fix and holds its keys, so the next
   * sync proposes a review instead of quietly redoing what was undone.
   */
  async rollback (fixId: string, caller: Caller, reason: string, force: boolean): Promise<RollbackReport> {
    const found = await this.audit.fixOf(fixId)
    if (found === undefined) throw new FixNotFoundError(fixId)
    const replica = this.datasets.get(found.intent.dataset)
    if (replica === undefined) throw new UnknownDatasetError(found.intent.dataset)
    const report = await rollbackFix({
      audit: this.audit, store: replica.store, codec: replica.codec, region: this.region, clock: () => this.clock(), setClock: async c => { await this.setClock(c) },
      fixId, force, by: caller.name, reason, dataset: replica.name
    })
    await replica.repairer.hold(report.keys, `rolled back fix ${fixId} by ${caller.name}: ${reason}`)
    replica.counters.rollbacks++
    this.metrics.fixRolledBack(replica.name)
    this.log.warn({ dataset: replica.name, fixId: report.fixId, rollbackOf: fixId, by: caller.name, rows: report.rows, forced: force }, 'fix rolled back; its keys are held for review')
    await replica.index.catchUp()
    replica.evaluate()
    return report
  }

  /** The scheduled deep pass over every dataset, one at a time. */
  private async validateAll (): Promise<void> {
    if (this.validating) return // the last pass is still running
    this.validating = true
    try {
      for (const d of this.datasets.values()) {
        if (!this.running) return
        const expected = d.index.tree.rowCount
        await d.validateNow(p => this.onValidationProgress?.(d.name, { ...p, expected })).catch((err: Error) => this.log.error({ dataset: d.name, err: err.message }, 'deep pass failed'))
      }
    } finally {
      this.validating = false
    }
  }

  // ReplicaHost

  clock (): VectorClock { return { ...this.vectorClock } }

  async setClock (clock: VectorClock): Promise<void> {
    this.vectorClock = clock
    await this.state.sublevel('meta').put(CLOCK_KEY, new TextEncoder().encode(JSON.stringify(clock)))
  }

  sourceOf (dataset: DatasetConfig): { region: string, peerId?: string, summary?: ReturnType<typeof decodeSummary> } | undefined {
    const fresh = Date.now() - STALE_INTERVALS * this.config.gossip.intervalMs
    for (const region of dataset.sourceOfTruth) {
      if (region === this.region) return { region }
      const heard = this.board.get(region, dataset.name)
      if (heard !== undefined && heard.receivedAt >= fresh && this.isConnected(heard.peerId)) return { region, peerId: heard.peerId, summary: heard.summary }
      // a region pinned to a peer id in the config serves as soon as it is connected, before its first summary arrives,
      // for as long as a summary may take: a connection that stays silent longer (a partition holds it open) is no sign of life
      const pinned = this.board.peerOf(region)
      if (heard === undefined && pinned !== undefined && (this.connectedSince(pinned) ?? 0) >= fresh) return { region, peerId: pinned }
    }
    return undefined
  }

  async syncSlot<T> (task: () => Promise<T>, signal: AbortSignal): Promise<T> {
    return await this.syncSlots.execute(async () => await task(), signal)
  }

  async openSyncChannel (peerId: string, signal: AbortSignal): Promise<FrameChannel> {
    return streamChannel(await this.openStream(peerId, SYNC_PROTOCOL, signal))
  }

  /**
   * A stream to a peer: on its open connection, else through the address the
   * config gives for it. A dial by peer id alone would use the addresses the
   * peer announced (identify), which bypass whatever path the operator set
   * (a proxy, a tunnel, the simulator's links); only a peer the config does
   * not name is dialed that way.
   */
  private async openStream (peerId: string, protocol: string, signal: AbortSignal): Promise<Stream> {
    const node = this.node
    if (node === undefined) throw new ConvergeError('CONVERGE_NOT_STARTED', 'agent is not started')
    const id = this.peerIdOf(peerId)
    const configured = this.config.peers.find(p => this.configuredPeerId(p) === peerId)
    if (configured !== undefined && !node.getConnections(id).some(c => c.status === 'open')) {
      const { address, pinnedId } = this.peerAddresses.get(configured.region)!
      const pinned = pinnedId !== undefined ? address : address.encapsulate(`/p2p/${peerId}`)
      return await node.dialProtocol(pinned, protocol, { signal })
    }
    return await node.dialProtocol(id, protocol, { signal })
  }

  /** A peer id from its text, parsed once. */
  private peerIdOf (id: string): PeerId {
    let peerId = this.peerIds.get(id)
    if (peerId === undefined) {
      peerId = peerIdFromString(id)
      // ids learned from the topic change with the peers behind a region: the map stays as small as the cluster
      if (this.peerIds.size >= 4 * this.config.peers.length + 16) this.peerIds.clear()
      this.peerIds.set(id, peerId)
    }
    return peerId
  }

  /** A configured peer's id: from its address, else as learned when it first connected. */
  private configuredPeerId (peer: AgentConfig['peers'][number]): string | undefined {
    return this.peerAddresses.get(peer.region)?.pinnedId ?? this.board.peerOf(peer.region)
  }

  publish (replica: DatasetReplica): void {
    // coalesce bursts of index changes into one summary
    if (this.publishPending.has(replica.name)) return
    this.publishPending.add(replica.name)
    setTimeout(() => { this.publishPending.delete(replica.name); this.publishNow(replica) }, 100).unref()
  }

  /** Summaries heard from peers (for metrics: how far each peer's tree is from ours). */
  heardSummaries (): ReturnType<SummaryBoard['all']> { return this.board.all() }

  /** Datasets whose index is still being built, with the rows read so far. */
  indexingDatasets (): ReadonlyMap<string, number> { return this.indexing }

  /** This agent's report and every connected peer's, asked over libp2p. */
  async clusterView (): Promise<ClusterView> {
    const node = this.node
    const regions = new Map(this.peers().map(p => [String(p.peerId), typeof p.region === 'string' ? p.region : null]))
    const peers = (node?.getPeers() ?? []).map(id => ({ peerId: id.toString(), region: regions.get(id.toString()) ?? null }))
    return await gatherClusterView({
      self: this.statusReport(),
      peers,
      open: async (peerId, signal) => streamChannel(await this.openStream(peerId, STATUS_PROTOCOL, signal), MAX_STATUS_BYTES)
    })
  }

  /** Peers as this agent sees them. */
  peers (): Array<Record<string, unknown>> {
    const connected = new Set(this.node?.getPeers().map(String) ?? [])
    const byPeer = new Map<string, { region: string, lastSummaryAt: number }>()
    for (const h of this.board.all()) {
      const prev = byPeer.get(h.peerId)
      if (prev === undefined || prev.lastSummaryAt < h.receivedAt) byPeer.set(h.peerId, { region: h.summary.region, lastSummaryAt: h.receivedAt })
    }
    for (const p of this.config.peers) {
      const id = this.board.peerOf(p.region)
      if (id !== undefined && !byPeer.has(id)) byPeer.set(id, { region: p.region, lastSummaryAt: 0 })
    }
    return [...byPeer.entries()].map(([peerId, v]) => ({
      peerId, region: v.region, connected: connected.has(peerId),
      lastSummaryAt: v.lastSummaryAt === 0 ? null : v.lastSummaryAt,
      lagMs: v.lastSummaryAt === 0 ? null : Date.now() - v.lastSummaryAt
    }))
  }

  statusReport (): Record<string, unknown> {
    return {
      region: this.region,
      cluster: this.config.cluster,
      peerId: this.peerId ?? null,
      listen: this.listenAddresses,
      uptimeMs: Date.now() - this.startedAt,
      clock: this.vectorClock,
      peers: this.peers(),
      ready: this.running,
      draining: this.draining,
      summariesRefused: this.summariesRefused,
      breakers: this.breakers.notClosed(),
      datasets: [
        ...[...this.datasets.values()].map(d => d.status()),
        ...[...this.indexing.entries()].map(([name, rows]) => ({ name, state: 'indexing', rowsIndexed: rows }))
      ]
    }
  }

  private isConnected (peerId: string): boolean {
    return this.node?.getConnections(this.peerIdOf(peerId)).some(c => c.status === 'open') ?? false
  }

  /** When the newest open connection to a peer opened (epoch ms); undefined when none is open. */
  private connectedSince (peerId: string): number | undefined {
    const opened = (this.node?.getConnections(this.peerIdOf(peerId)) ?? []).filter(c => c.status === 'open').map(c => c.timeline.open)
    return opened.length === 0 ? undefined : Math.max(...opened)
  }

  private publishNow (replica: DatasetReplica): void {
    const node = this.node
    if (node === undefined || !this.running) return
    const data = encodeSummary(summarize(this.region, replica.name, replica.codec.fingerprint, replica.index.tree))
    node.services.pubsub.publish(this.topic, data).catch((err: Error) => this.log.debug({ err: err.message }, 'summary not published'))
  }

  /**
   * The topic validator (gossip/validator.ts): decodes and checks a summary
   * before gossipsub delivers or forwards it, and binds its author to its
   * region. Refusals are counted and logged; a rejection also has the peer
   * guard look at the sender's score.
   */
  private judge (source: PeerId, msg: Message): TopicValidatorResult {
    if (msg.type !== 'signed') return TopicValidatorResult.Reject
    const author = msg.from.toString()
    const from = source.toString()
    const j = judgeSummary({ region: this.region, claim: (peer, region) => this.board.verdict(peer, region) }, author, from, msg.data)
    if (j.verdict === 'accept') {
      // datasets this agent does not carry are forwarded, and bind their region, but are not kept
      this.board.accept(author, j.summary!, Date.now(), this.datasets.has(j.summary!.dataset))
      this.judged.set(msg, j.summary!)
      return TopicValidatorResult.Accept
    }
    this.summariesRefused++
    this.log.warn({ peerId: author, from, region: j.summary?.region, verdict: j.verdict, err: j.reason }, 'summary refused')
    if (j.verdict === 'reject') { this.network?.rejected(from); return TopicValidatorResult.Reject }
    return TopicValidatorResult.Ignore
  }

  private onSummary (summary: DatasetSummary): void {
    const replica = this.datasets.get(summary.dataset)
    if (replica === undefined) return
    const source = this.sourceOf(replica.config)
    if (source?.region === summary.region) replica.onSourceSummary(summary)
    else replica.evaluate()
  }

  private async serve (stream: Stream, peerId: string): Promise<void> {
    const channel = streamChannel(stream)
    const signal = AbortSignal.timeout(this.config.sync.timeoutMs)
    let release: () => void
    try {
      release = this.network!.acquireStream(peerId)
    } catch (err) {
      this.log.warn({ peerId, err: (err as Error).message, code: (err as ConvergeError).code }, 'sync stream refused')
      await refuseStream(channel, err as ConvergeError, signal)
      return
    }
    try {
      const { open, rounds } = await serveSync(channel, {
        signal,
        resolve: async (open) => {
          // a peer may speak for its own region only: this agent's, or one bound to another peer, is not its to claim
          const claim = this.board.verdict(peerId, open.region)
          if (open.region === this.region || claim === 'region-taken' || claim === 'peer-has-another-region') throw new RegionClaimError(open.region)
          const replica = this.datasets.get(open.dataset)
          if (replica === undefined) throw new UnknownDatasetError(open.dataset)
          const served = { region: this.region, clock: () => this.clock() }
          if (open.fp === replica.codec.fingerprint || open.schema === undefined) return { ...served, codec: replica.codec, view: replica.index }
          // the replica's schema differs: serve its rows under the comparison schema of the two, or refuse incompatible ones
          const compat = compareSchemas(open.schema, replica.codec.schema)
          if (!compat.compatible) throw new SchemaIncompatibleError(compat.reasons)
          const view = await replica.shapes.view(compat.shape, {}, signal)
          return { ...served, shape: view.shape, codec: view.codec, view: view.index }
        }
      })
      if (open !== undefined) this.metrics.syncServed(open.dataset)
      // the replica logs the same correlation id: one sync can be followed across both agents
      this.log.info({ dataset: open?.dataset, peer: open?.region, cid: open?.cid, rounds }, 'served sync')
    } catch (err) {
      this.log.warn({ peerId, err: (err as Error).message, code: (err as { code?: string }).code }, 'sync stream refused')
    } finally {
      release()
    }
  }

  private dialPeers (): void {
    const node = this.node
    if (node === undefined || !this.running) return
    const now = Date.now()
    for (const p of this.config.peers) {
      const addr = this.peerAddresses.get(p.region)!.address
      const id = this.configuredPeerId(p)
      if (id !== undefined && node.getConnections(this.peerIdOf(id)).length > 0) { this.redial.delete(p.region); continue }
      const state = this.redial.get(p.region) ?? { at: 0, delay: REDIAL_MIN_MS }
      if (now < state.at) continue
      this.redial.set(p.region, { at: now + state.delay, delay: Math.min(REDIAL_MAX_MS, state.delay * 2) })
      node.dial(addr, { signal: AbortSignal.timeout(5000) }).then(
        () => { this.redial.delete(p.region) },
        (err: Error) => this.log.debug({ peer: p.region, err: err.message }, 'dial failed')
      )
    }
  }
}

