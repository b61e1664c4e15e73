/**
 * The digest index of one dataset replica: every row's key hash, key and
 * entry hash, in pages of the agent's LevelDB (page.ts: one record per tree
 * node at the page level, so the rows under any leaf are one point read),
 * and the in-memory Merkle tree over it.
 *
 * Built by a full scan of the store when missing, when its schema
 * fingerprint or layout differs, or when an earlier build did not finish;
 * then kept current by the store's change feed. The page level is the tree's
 * depth at the build; when the tree later changes depth, the pages are cut
 * again at the new one.
 *
 * Changed entries count in the tree at once but reach their pages later
 * (write-behind, see WRITE_BEHIND_ENTRIES), with the seq they bring the
 * pages to; lists read them over the pages.
 *
 * A store kept in key-hash order (`supports.keyHashOrder`, the embedded
 * LevelDB store) is its own index: nothing is written here, the tree is built
 * from one snapshot scan at a known change seq, and change batches carry the
 * before-images the tree update needs.
 *
 * Guaranteed: after `catchUp()` the index reflects every change the store
 * committed up to that moment, and the tree equals the sum over the index.
 * A change replayed twice leaves both unchanged.
 */
import { EventEmitter } from 'node:events'
import { rm } from 'node:fs/promises'
import { SCAN_BATCH_ROWS, TREE_FANOUT } from '../constants.ts'
import { SerialQueue, sleep } from '../util/serial.ts'
import { AbortedError, ChangesTrimmedError, ConvergeError, IndexPageFormatError, IndexWriteError, throwIfAborted } from '../errors.ts'
import { entryHash } from '../digest/hash.ts'
import { bytesOfLatin1, latin1Of } from '../util/bytes.ts'
import { high32 } from '../util/u64.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { FIX_ORIGIN, type GetOptions, type ReplicaStore, type RowChange } from '../stores/replica-store.ts'
import { SuspectKeys } from './suspects.ts'
import type { IndexEntry, ReplicaView } from '../sync/replica-view.ts'
import { depthFor, MerkleTree, TreeBuilder, type TreeBuilderOptions, nodeOf, nodeOfHigh32, nodeRange } from '../tree/merkle-tree.ts'
import { PageBulkWriter } from './bulk-writer.ts'
import { decodePage, entryOf, forEachEntry, levelRange, pageIndexOf, pageKey, setEntry } from './page.ts'
import { PageCache } from './page-cache.ts'
import { ReusedBatch } from './reused-batch.ts'
import { READ_AHEAD, type ByteSublevel, type StateDb } from './state-db.ts'

const META_KEY = new TextEncoder().encode('meta')
/** Written (empty) with a sync before the store's change log is trimmed: see durableWrittenSeq. */
const SYNC_KEY = new TextEncoder().encode('sync')
/** The row count of the last full scan (a decimal string): the next start's tree builder expects it (rowsHint). */
const ROWS_KEY = new TextEncoder().encode('rows')
/**
 * An agent's own write the index takes in itself (takeApplied), by its
 * store seq, until the feed passes it:
 *   pending  announced before its commit (willTake); the feed may deliver it
 *            without rows, and then waits for `settled` before passing it
 *            (false: abandoned, the feed reads it again with its rows);
 *   taken    in the index as written; the feed may deliver it without rows;
 *   stale    the write's rows in the index may not be the last word on its
 *            keys, so the feed reads them back (again, if it delivered the
 *            write without them). Either a batch older than the write came
 *            through after it was taken in: that batch's rows may have been
 *            read before the write committed and undone part of it here. Or
 *            one came through while the write was pending (`raced`): its rows
 *            may have been read after the write committed, holding a later
 *            write to the same keys (by a transaction that began before the
 *            fix and committed after it), which taking the write in undoes.
 */
interface TakenWrite {
  state: 'pending' | 'taken' | 'stale'
  /** A batch with changes came through while the write was pending: taken in, it is stale at once. */
  raced?: boolean
  settled: Promise<boolean>
  settle: (taken: boolean) => void
}

/** How long the feed waits for a fix delivered without rows to be taken in, before it reads it back itself. */
const TAKE_WAIT_MS = 30_000

/** Whether `settled` gives true within `ms`; false on timeout or abort. */
async function settledWithin (settled: Promise<boolean>, ms: number, signal: AbortSignal): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([
      settled,
      new Promise<boolean>(resolve => { timer = setTimeout(() => resolve(false), ms) }),
      new Promise<boolean>(resolve => { onAbort = () => resolve(false); signal.addEventListener('abort', onAbort, { once: true }) })
    ])
  } finally {
    clearTimeout(timer)
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
  }
}

/** Pause before following a store's change feed again after it failed, doubling up to the max. */
const FOLLOW_RETRY_MS = 500
/**
 * How late, at most, the feed of a store back from an outage is followed
 * again. While it is not, this index stays behind its store, and the
 * replicas of a source so behind agree with it rather than with its rows.
 * A try costs one failed connection (as the LISTEN connection's retries,
 * which stop at the same).
 */
const FOLLOW_RETRY_MAX_MS = 5000

/**
 * How the index is laid out on disk; an index of another layout is rebuilt.
 * 2: pages (page.ts). 1 (no `layout`): one record per row, keyHash ‖ key → rowDigest.
 */
const INDEX_LAYOUT = 2

interface IndexMeta { fp: string, storeId: string, seq: number, complete: boolean, layout?: number, pageLevel?: number }

/** Pages read per getMany call while listing. */
const PAGE_READ_CHUNK = 16_384
/** A node spanning more pages than this is listed with one range read over them instead of point reads. */
const POINT_READ_MAX_PAGES = 4096
const NO_PAGE = new Uint8Array(0)

/** The page at `level` a key hash's entry is in. */
function pageOf (keyHash: bigint, level: number): number { return nodeOfHigh32(high32(keyHash), level) }

/**
 * Write-behind: a changed entry waits in memory (it counts in the tree at
 * once) until this many wait, or no change came for WRITE_BEHIND_IDLE_MS,
 * or WRITE_BEHIND_MS after the first of them, whichever comes first; then
 * they all go into their pages in one batch, with the seq that brings the
 * pages to. A fix lands a second or so after the drift it repairs, on the
 * same keys, so both reach a page in one write instead of two, and the
 * write (its page reads and rewrites hold back the next change batch for
 * some 100 ms per 10,000 pages) waits for a lull rather than landing in
 * the middle of a repair. A sync in progress is no lull (holdPages): the
 * fix it is about to take in changes the same pages again, and its
 * takeApplied would queue behind the write. A crash loses nothing: the
 * meta's seq is the pages' own, the store keeps its change log from there
 * (trimChanges), and replaying changes is idempotent. At most about 10 MiB
 * wait.
 */
const WRITE_BEHIND_ENTRIES = 65_536
const WRITE_BEHIND_MS = 5_000
const WRITE_BEHIND_IDLE_MS = 1_000

/**
 * An entry changed in the tree and not yet in its page; `entry` undefined:
 * the key is gone. Filed under its key's id (keyId), which is the key's
 * bytes, so the entry holds no bytes of its own: neither a copy of each key
 * per change nor a view that would keep the change's whole batch alive.
 */
interface UnwrittenEntry { keyHash: bigint, entry: bigint | undefined }

/** An unwritten entry with its key's bytes, on its way into its page. */
interface PageEntry extends UnwrittenEntry { key: Uint8Array }

/** A page with entries set (or removed) over what it holds. */
function withEntries (page: Uint8Array, entries: readonly PageEntry[]): Uint8Array {
  for (const e of entries) page = setEntry(page, e.keyHash, e.key, e.entry).page
  return page
}

/** A key as the map key of the entries waiting in memory: its bytes as a latin1 string (the suspects use the same). */
const keyId = latin1Of

export interface IndexProgress { phase: 'scan' | 'load', rows: number }

export interface ValidationReport {
  /** Rows the deep pass read from the store. */
  rows: number
  /** Tree nodes where the store and the index disagreed. */
  mismatchedNodes: number
  /** Index entries corrected from the store. */
  corrected: number
  ms: number
}

function encodeMeta (meta: IndexMeta): Uint8Array { return new TextEncoder().encode(JSON.stringify(meta)) }

export interface DigestIndexInit {
  dataset: string
  codec: RowCodec
  store: ReplicaStore
  state: StateDb
  /** Keep entries in the state db even for a store that could serve as its own index (to compare the two ways). Default false. */
  keepEntries?: boolean
  /**
   * When changed entries go into their pages: once this many wait, once no
   * change came for `idleMs`, or `ms` after the first of them. Default
   * WRITE_BEHIND_ENTRIES, WRITE_BEHIND_IDLE_MS, WRITE_BEHIND_MS.
   */
  writeBehind?: { entries: number, ms: number, idleMs?: number }
  /** Where pages are kept in memory: a share of a pool (an agent's indexes share one, `PagePool.cache()`). Default a pool of its own, of `pageCacheBytes`. */
  pageCache?: PageCache
  /** Bytes of pages kept in memory by an index with a pool of its own (page-cache.ts); 0 keeps none. Default PAGE_CACHE_BYTES. */
  pageCacheBytes?: number
  /**
   * Built once by a scan and not kept current: start() neither follows nor
   * trims the store's change log, and asks nothing of the store but its rows
   * (it may be open read-only). For a one-shot comparison (compareStores) of
   * stores whose agents follow those change logs.
   */
  snapshot?: boolean
  /** For tests: the limits of a full scan's tree builder (BUILDER_PAIR_LIMIT, BUILDER_FINE_DEPTH by default). */
  treeBuild?: Pick<TreeBuilderOptions, 'pairLimit' | 'fineDepth'>
}

/** The store identity a snapshot index records: it is thrown away, never checked against its store again. */
const SNAPSHOT_STORE_ID = 'snapshot'

/**
 * Events: 'change' (the tree changed), 'rescan' (a rebuild began: the store
 * no longer has the changes the index missed, or a page was damaged),
 * 'error' (the feed failed and is followed again after a pause, or pages
 * were not written and are tried again), 'following' (the feed works
 * again after failures: it delivered a batch, or read the store's change
 * log to its end).
 */
export class DigestIndex extends EventEmitter implements ReplicaView {
  readonly codec: RowCodec
  private readonly store: ReplicaStore
  private readonly db: StateDb['db']
  private readonly pages: ByteSublevel
  /** The batch writePages writes through, made at its first write and let go at stop(). */
  private pageWrites: ReusedBatch | undefined
  /** Where layout 1 kept its entries: emptied by a rebuild. */
  private readonly legacyEntries: ByteSublevel
  private readonly meta: ByteSublevel
  /** Where a rebuild of a large table spills its sorted runs. */
  private readonly spillDir: string
  /** The tree level the pages are cut at. */
  private pageLevel = 0
  /** Pages of the page level as the pages sublevel holds them, those used lately. */
  private readonly pageCache: PageCache
  /** The store lists rows by key hash itself: no entries are kept here. */
  private readonly storeBacked: boolean
  /** DigestIndexInit.snapshot */
  private readonly snapshot: boolean
  private readonly treeBuild: DigestIndexInit['treeBuild']
  private currentTree: MerkleTree = new MerkleTree(1)
  /**
   * The rows the last full scan counted, kept across starts: a full scan
   * learns its count only at its end, and without one expected its builder
   * gathers a table above 33,554,432 rows into a tree a level shallower than
   * the count calls for, which the first change then deepens with another
   * full scan (and, for an index with pages of its own, the pages cut at the
   * shallower level and then again).
   */
  private rowsHint = 0
  private seq = 0
  /** Entries the tree has and the pages do not yet, by keyId (write-behind). */
  private readonly unwritten = new Map<string, UnwrittenEntry>()
  /** The seq the pages and the meta reflect. */
  private writtenSeq = 0
  /** The written seq known to be on disk (durableWrittenSeq): the store's change log is trimmed no further. */
  private syncedSeq = 0
  private writeTimer: NodeJS.Timeout | undefined
  private readonly writeBehind: { entries: number, ms: number, idleMs: number }
  /** When the oldest change not yet in its page (or the last failed write) was: the write is due `writeBehind.ms` after it at the latest. */
  private unwrittenSince: number | undefined
  /** Callers holding off the lull's write of the pages (holdPages): a write of theirs is on its way. */
  private pageHolds = 0
  private following: AbortController | undefined
  private followLoop: Promise<void> | undefined
  private followFailures = 0
  /** Change batches and validation corrections go through the index one at a time. */
  private readonly updates = new SerialQueue()
  /**
   * The agent's own writes, by store seq, that this index takes in itself
   * (takeApplied) until the feed passes them; see TakenWrite.
   */
  private readonly taken = new Map<number, TakenWrite>()
  /** Keys written here lately by others than this agent's fixes: where a sync looks first. */
  readonly suspects = new SuspectKeys()
  /** Resolvers waiting for the index to reach a seq. */
  private waiters: Array<{ seq: number, resolve: () => void }> = []

  constructor (init: DigestIndexInit) {
    super()
    this.codec = init.codec
    this.store = init.store
    this.db = init.state.db
    this.pages = init.state.sublevel(`index:${init.dataset}:p`)
    this.legacyEntries = init.state.sublevel(`index:${init.dataset}:e`)
    this.meta = init.state.sublevel(`index:${init.dataset}:m`)
    this.spillDir = `${init.state.location}-spill/${encodeURIComponent(init.dataset)}`
    const writeBehind = init.writeBehind ?? { entries: WRITE_BEHIND_ENTRIES, ms: WRITE_BEHIND_MS }
    this.writeBehind = { ...writeBehind, idleMs: writeBehind.idleMs ?? WRITE_BEHIND_IDLE_MS }
    this.pageCache = init.pageCache ?? new PageCache(init.pageCacheBytes)
    this.storeBacked = init.keepEntries !== true && init.store.supports.keyHashOrder === true && init.store.listRanges !== undefined && init.store.scanAt !== undefined
    this.snapshot = init.snapshot === true
    this.treeBuild = init.treeBuild
  }

  /** The identity of the store's data the meta records (see ReplicaStore.id). */
  private storeId (): string { return this.snapshot ? SNAPSHOT_STORE_ID : this.store.id }

  get tree (): MerkleTree { return this.currentTree }

  /** The store change seq the index reflects. */
  get appliedSeq (): number { return this.seq }

  /**
   * Makes the index current: rebuilds it by a full scan when it is missing or
   * distrusted, else loads the tree from it and replays missed changes. Then
   * follows the change feed until stop(). A snapshot index is built by a
   * scan, and that is all.
   */
  async start (options: { signal?: AbortSignal, onProgress?: (p: IndexProgress) => void, rebuild?: boolean } = {}): Promise<void> {
    this.rowsHint = await this.readRowsHint()
    if (this.snapshot) { await this.rebuild(options); return }
    const meta = this.storeBacked ? undefined : await this.readMeta()
    if (this.storeBacked) {
      await this.scanStore(options)
    } else if (options.rebuild === true || meta === undefined || !meta.complete || meta.layout !== INDEX_LAYOUT || meta.pageLevel === undefined ||
      meta.fp !== this.codec.fingerprint || meta.storeId !== this.storeId()) {
      await this.rebuild(options)
    } else {
      this.seq = meta.seq
      this.writtenSeq = meta.seq
      this.syncedSeq = meta.seq
      this.pageLevel = meta.pageLevel
      await this.loadTree(options)
    }
    this.follow()
    await this.catchUp(options)
  }

  async stop (): Promise<void> {
    this.following?.abort()
    await this.followLoop?.catch(() => undefined)
    this.following = undefined
    this.followLoop = undefined
    // what waits in memory goes into the pages now, so a restart need not replay it
    await this.updates.run(async () => await this.writePages()).catch(err => { this.emit('error', new IndexWriteError(err)) })
    await this.updates.run(async () => {
      const batch = this.pageWrites
      this.pageWrites = undefined
      await batch?.close()
    })
    // a pool shared with other indexes gets their room back
    this.pageCache.clear()
  }

  /** Builds the tree from one snapshot scan of a key-hash-ordered store, and takes its seq. */
  private async scanStore (options: { signal?: AbortSignal, onProgress?: (p: IndexProgress) => void } = {}): Promise<void> {
    const { seq, rows: batches } = await this.store.scanAt!({ signal: options.signal, batchSize: SCAN_BATCH_ROWS })
    const leaves = this.treeBuilder()
    for await (const batch of batches) {
      for (const { key, row } of batch) {
        const keyHash = this.codec.keyHash(key)
        leaves.push(keyHash, entryHash(keyHash, this.codec.rowDigest(row)))
      }
      options.onProgress?.({ phase: 'scan', rows: leaves.length })
    }
    this.currentTree = leaves.build()
    await this.noteRows(this.currentTree.rowCount)
    this.seq = seq
    if (!this.snapshot) await this.store.trimChanges(seq)
    this.release()
    this.emit('change')
  }

  /** Full scan of the store into a fresh index. */
  async rebuild (options: { signal?: AbortSignal, onProgress?: (p: IndexProgress) => void } = {}): Promise<void> {
    if (this.storeBacked) { await this.scanStore(options); return }
    const { signal } = options
    // the scan sees every row: what waited for its pages is in it, or comes again from the feed
    this.dropUnwritten()
    await this.writeMeta({ fp: this.codec.fingerprint, storeId: this.storeId(), seq: 0, complete: false, layout: INDEX_LAYOUT })
    await this.pages.clear()
    await this.legacyEntries.clear()
    // a build killed midway may have left its spilled runs
    await rm(this.spillDir, { recursive: true, force: true })
    // changes committed while the scan runs are replayed from here; replays are idempotent (a snapshot replays none)
    const seqAtStart = this.snapshot ? 0 : await this.store.lastSeq()
    const leaves = this.treeBuilder()
    let rows = 0
    const writer = new PageBulkWriter(this.db, this.pages, { spillDir: this.spillDir })
    let tree: MerkleTree
    try {
      for await (const batch of this.store.scan({ signal, batchSize: SCAN_BATCH_ROWS })) {
        throwIfAborted(signal)
        for (const { key, row } of batch) {
          const keyHash = this.codec.keyHash(key)
          const entry = entryHash(keyHash, this.codec.rowDigest(row))
          writer.put(keyHash, key, entry)
          leaves.push(keyHash, entry)
        }
        rows += batch.length
        await writer.flush({ signal })
        options.onProgress?.({ phase: 'scan', rows })
      }
      // the page level is the tree's depth, known once every row is counted
      tree = leaves.build()
      leaves.release()
      await writer.finish(tree.depth, { signal })
    } catch (err) {
      await writer.abandon()
      throw err
    }
    this.currentTree = tree
    this.pageLevel = tree.depth
    await this.noteRows(tree.rowCount)
    // the pages are the build's now: forget what was kept of the old ones, or read meanwhile (a sync lists during a build)
    this.pageCache.clear()
    this.seq = seqAtStart
    this.writtenSeq = seqAtStart
    await this.writeMeta({ fp: this.codec.fingerprint, storeId: this.storeId(), seq: seqAtStart, complete: true, layout: INDEX_LAYOUT, pageLevel: tree.depth })
    if (!this.snapshot) await this.store.trimChanges(seqAtStart)
    await this.warmPages(signal)
    // a catchUp waiting since before the rebuild may be past already
    this.release()
    this.emit('change')
  }

  /**
   * Rebuilds the in-memory tree from the index (at start, or when the row
   * count calls for another depth); cuts the pages again when the depth
   * differs from their level.
   */
  async loadTree (options: { signal?: AbortSignal, onProgress?: (p: IndexProgress) => void } = {}): Promise<void> {
    if (this.storeBacked) { await this.scanStore(options); return }
    // the tree is built from the pages (at start, or in turn with updates): they must hold everything first
    await this.writePages()
    const leaves = this.treeBuilder()
    let pages = 0
    // every page goes by once: the first of them stay in memory, as many as the cache keeps
    const generation = this.pageCache.generation
    await this.readPages(options.signal, (page, id) => {
      forEachEntry(page, (hi, _keyHash, entry) => leaves.pushAt(hi, entry))
      if (!this.pageCache.full) this.pageCache.fill(id, page, generation)
      if (++pages % 1000 === 0) options.onProgress?.({ phase: 'load', rows: leaves.length })
    })
    options.onProgress?.({ phase: 'load', rows: leaves.length })
    const tree = leaves.build()
    await this.noteRows(tree.rowCount)
    if (tree.depth !== this.pageLevel) await this.repage(tree.depth, options.signal)
    this.currentTree = tree
    this.emit('change')
  }

  /** Calls `each` with every page at the page level, in order, and its id; stops early when `each` returns false. */
  private async readPages (signal: AbortSignal | undefined, each: (page: Uint8Array, id: number) => boolean | void): Promise<void> {
    const it = this.pages.iterator({ ...READ_AHEAD, ...levelRange(this.pageLevel) })
    try {
      for (;;) {
        throwIfAborted(signal)
        const batch = await it.nextv(1000)
        if (batch.length === 0) break
        for (const [key, page] of batch) if (each(page, pageIndexOf(key)) === false) return
      }
    } finally {
      await it.close()
    }
  }

  /** Reads pages into the cache, in order, until it is full (after a build, which writes them without keeping them). */
  private async warmPages (signal?: AbortSignal): Promise<void> {
    const generation = this.pageCache.generation
    await this.readPages(signal, (page, id) => {
      this.pageCache.fill(id, page, generation)
      return !this.pageCache.full
    })
  }

  /**
   * Pages of the page level by id (NO_PAGE where there is none): from the
   * cache, else read, PAGE_READ_CHUNK per getMany call, and kept.
   */
  private async pagesById (ids: readonly number[], signal?: AbortSignal): Promise<Map<number, Uint8Array>> {
    const level = this.pageLevel
    const out = new Map<number, Uint8Array>()
    const missing: number[] = []
    for (const id of ids) {
      const page = this.pageCache.get(id)
      if (page === undefined) missing.push(id); else out.set(id, page)
    }
    for (let i = 0; i < missing.length; i += PAGE_READ_CHUNK) {
      throwIfAborted(signal)
      const part = missing.slice(i, i + PAGE_READ_CHUNK)
      const generation = this.pageCache.generation
      const read = await this.pages.getMany(part.map(id => pageKey(level, id)))
      part.forEach((id, j) => {
        const page = read[j] ?? NO_PAGE
        out.set(id, page)
        this.pageCache.fill(id, page, generation)
      })
    }
    return out
  }

  /**
   * Cuts the pages again at `level`: the new pages are written beside the old
   * ones (their keys carry their level), then the meta switches to them, then
   * the old ones go. A crash in between leaves pages of a level the meta does
   * not name, cleared before that level is written again.
   */
  private async repage (level: number, signal?: AbortSignal): Promise<void> {
    const old = this.pageLevel
    await this.pages.clear(levelRange(level))
    const writer = new PageBulkWriter(this.db, this.pages, { spillDir: this.spillDir })
    try {
      await this.readPages(signal, page => { for (const e of decodePage(page)) writer.put(e.keyHash, e.key, e.entry) })
      await writer.finish(level, { signal })
    } catch (err) {
      await writer.abandon()
      throw err
    }
    this.pageLevel = level
    // the pages kept were the old level's (they stayed right until the switch)
    this.pageCache.clear()
    await this.writeMeta({ fp: this.codec.fingerprint, storeId: this.storeId(), seq: this.seq, complete: true, layout: INDEX_LAYOUT, pageLevel: level })
    await this.pages.clear(levelRange(old))
    await this.warmPages(signal)
  }

  /** Waits until the index reflects every change the store has committed so far. */
  async catchUp (options: { signal?: AbortSignal } = {}): Promise<void> {
    const target = await this.store.lastSeq()
    if (this.seq >= target) return
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(new AbortedError())
      options.signal?.addEventListener('abort', onAbort, { once: true })
      this.waiters.push({ seq: target, resolve: () => { options.signal?.removeEventListener('abort', onAbort); resolve() } })
    })
  }

  async list (level: number, index: number, options: { signal?: AbortSignal } = {}): Promise<IndexEntry[]> {
    return (await this.listMany([{ level, index }], options))[0]!
  }

  /**
   * The entries under each node, in key-hash order. A node at or below the
   * page level is one page (filtered when below); a node above it spans
   * pages, read by point reads or, when many, by one range read. All point
   * reads go in one getMany call per PAGE_READ_CHUNK pages.
   */
  async listMany (nodes: ReadonlyArray<{ level: number, index: number }>, options: { signal?: AbortSignal } = {}): Promise<IndexEntry[][]> {
    const { signal } = options
    if (this.storeBacked) {
      const ranges = nodes.map(n => { const r = nodeRange(n.level, n.index); return [r.start, r.end] as const })
      return (await this.store.listRanges!(ranges, options)).map(rows => rows.map(({ keyHash, key, row }) => ({ keyHash, key, entry: entryHash(keyHash, this.codec.rowDigest(row)) })))
    }
    const level = this.pageLevel
    const span = (n: { level: number, index: number }): { first: number, count: number } =>
      n.level >= level ? { first: n.index >>> (4 * (n.level - level)), count: 1 } : { first: n.index * 16 ** (level - n.level), count: 16 ** (level - n.level) }
    const wanted = new Set<number>()
    for (const n of nodes) {
      const { first, count } = span(n)
      if (count <= POINT_READ_MAX_PAGES) for (let p = first; p < first + count; p++) wanted.add(p)
    }
    // a range read is for nodes of thousands of pages: let every entry reach its page first
    if (this.unwritten.size > 0 && nodes.some(n => span(n).count > POINT_READ_MAX_PAGES)) await this.updates.run(async () => await this.writePages())
    // taken before the reads: a write of the pages meanwhile puts the same entries there
    const unwritten = this.unwrittenByPage(level, wanted)
    const pages = await this.pagesById([...wanted], signal)
    for (const [id, over] of unwritten) pages.set(id, withEntries(pages.get(id)!, over))
    const out: IndexEntry[][] = []
    for (const n of nodes) {
      const { first, count } = span(n)
      const entries: IndexEntry[] = []
      if (count > POINT_READ_MAX_PAGES) {
        const it = this.pages.iterator({ ...READ_AHEAD, gte: pageKey(level, first), lt: pageKey(level, first + count) })
        try {
          for (let batch = await it.nextv(1000); batch.length > 0; batch = await it.nextv(1000)) {
            throwIfAborted(signal)
            for (const [, page] of batch) decodePage(page, entries)
          }
        } finally {
          await it.close()
        }
      } else if (n.level > level) {
        decodePage(pages.get(first)!, entries, n)
      } else {
        for (let p = first; p < first + count; p++) decodePage(pages.get(p)!, entries)
      }
      out.push(entries)
    }
    return out
  }

  async getRows (keys: Uint8Array[], options: GetOptions = {}): Promise<Array<Uint8Array | undefined>> {
    return await this.store.get(keys, options)
  }

  /**
   * Takes a write this agent committed to the store (a fix: canonical rows
   * upserted, with their keys when the caller has them, keys deleted) into the index and the tree at once, instead of
   * waiting for the change feed to bring it back: the replica shows level as
   * soon as its fix lands. The seq the index reflects is left alone: earlier
   * changes may still be on their way. The feed still delivers the write
   * later; given the write's store `seq`, the store may deliver it without
   * reading its rows back (ChangesOptions.taken), as the rows are as written
   * here (a write that raced the fix is a transaction of its own, delivered
   * with its rows). Unless a change batch older than the write comes through
   * after this: its rows may have been read before the write committed and
   * put back what the fix replaced here, so the write is then read back and
   * applied again. A write the feed is already past is not taken in at
   * all: the feed read its rows itself, and a write to the same key that
   * followed it may be in the index already. False for a store-backed
   * index, whose tree follows the feed's before-images.
   */
  async takeApplied (write: { upserts: readonly Uint8Array[], deletes: readonly Uint8Array[], upsertKeys?: readonly Uint8Array[] }, options: { signal?: AbortSignal, seq?: number } = {}): Promise<boolean> {
    if (this.storeBacked) return false
    const { seq } = options
    const keys = write.upsertKeys?.length === write.upserts.length ? write.upsertKeys : undefined
    const changes: RowChange[] = [
      ...write.upserts.map((row, i) => ({ key: keys?.[i] ?? this.codec.keyOfEncodedRow(row), row })),
      ...write.deletes.map(key => ({ key, row: null }))
    ]
    try {
      throwIfAborted(options.signal)
      await this.updates.run(async () => {
        if (seq !== undefined && seq <= this.seq) {
          // the feed is past it already and read its rows itself, as they were then or later: a write behind
          // the agent's back that followed the fix on the same key may be in the index, and the fix's rows would undo it
          const known = this.taken.get(seq)
          this.taken.delete(seq)
          known?.settle(true)
          return
        }
        await this.applyChanges(changes, 'settle')
        if (seq === undefined) return
        const known = this.taken.get(seq)
        if (known === undefined) this.taken.set(seq, { state: 'taken', settled: Promise.resolve(true), settle: () => {} })
        else if (known.state === 'pending') { known.state = known.raced === true ? 'stale' : 'taken'; known.settle(true) }
      })
    } catch (err) {
      if (seq !== undefined) this.abandonTake(seq)
      throw err
    }
    this.emit('change')
    return true
  }

  /**
   * Holds off the write of the pages in a lull until the returned release
   * is called (at most writeBehind.ms after the first entry waiting still
   * applies): a sync holds it while its fix is on its way, so the fix's
   * entries go into the same page write as the drift's they repair.
   */
  holdPages (): () => void {
    this.pageHolds++
    // a write already due in a lull now waits for the release
    if (this.writeTimer !== undefined) this.scheduleWrite()
    let held = true
    return () => {
      if (!held) return
      held = false
      if (--this.pageHolds === 0) this.scheduleWrite()
    }
  }

  /**
   * An agent's write is about to commit as `seq` and will be taken in here
   * (takeApplied) right after: the feed may deliver it without its rows, and
   * then waits for takeApplied before it passes the seq.
   */
  willTake (seq: number): void {
    if (this.storeBacked || seq <= this.seq || this.taken.has(seq)) return
    let settle: (taken: boolean) => void = () => {}
    const settled = new Promise<boolean>(resolve => { settle = resolve })
    this.taken.set(seq, { state: 'pending', settled, settle })
  }

  /** The write announced by willTake will not be taken in (it failed, or its fix did): the feed reads it back. */
  abandonTake (seq: number): void {
    const known = this.taken.get(seq)
    if (known?.state !== 'pending') return
    this.taken.delete(seq)
    known.settle(false)
  }

  /**
   * The deep pass: rescans the store and compares it row by row with the
   * index, catching writes that bypassed the change feed (a trigger disabled
   * for a bulk load, a restore from backup). First a fresh tree is built from
   * the scan and compared leaf by leaf; only if leaves differ is the store
   * scanned again for the rows under them, and the index corrected from the
   * rows as they are at correction time. Returns what it found and fixed.
   */
  async validate (options: { signal?: AbortSignal, onProgress?: (p: IndexProgress) => void } = {}): Promise<ValidationReport> {
    const { signal } = options
    const started = Date.now()
    const leaves = this.treeBuilder()
    let scanned = 0
    for await (const batch of this.store.scan({ signal, batchSize: SCAN_BATCH_ROWS })) {
      for (const { key, row } of batch) {
        const keyHash = this.codec.keyHash(key)
        leaves.push(keyHash, entryHash(keyHash, this.codec.rowDigest(row)))
      }
      scanned += batch.length
      options.onProgress?.({ phase: 'scan', rows: scanned })
    }
    const fresh = leaves.build()
    if (this.storeBacked) {
      // the store is the index: only the in-memory tree can be wrong; rebuild it if it is
      const same = fresh.depth === this.tree.depth && fresh.root.sum === this.tree.root.sum && fresh.root.count === this.tree.root.count
      if (!same) await this.updates.run(async () => await this.scanStore({ signal }))
      return { rows: scanned, mismatchedNodes: same ? 0 : 1, corrected: 0, ms: Date.now() - started }
    }
    // compare at the shallower depth of the two trees
    const level = Math.min(fresh.depth, this.tree.depth)
    const differing: Array<{ start: bigint, end: bigint }> = []
    for (let i = 0; i < TREE_FANOUT ** level; i++) {
      if (fresh.sum(level, i) !== this.tree.sum(level, i) || fresh.count(level, i) !== this.tree.count(level, i)) differing.push(nodeRange(level, i))
    }
    if (differing.length === 0) return { rows: scanned, mismatchedNodes: 0, corrected: 0, ms: Date.now() - started }
    const differingNodes = new Set(differing.map(r => Number(r.start >> BigInt(64 - 4 * level))))
    const inDiffering = (keyHash: bigint): boolean => differingNodes.has(nodeOf(keyHash, level))
    // rows under the differing nodes, as the store has them
    const storeRows = new Map<string, { key: Uint8Array, entry: bigint }>()
    for await (const batch of this.store.scan({ signal, batchSize: SCAN_BATCH_ROWS })) {
      for (const { key, row } of batch) {
        const keyHash = this.codec.keyHash(key)
        if (inDiffering(keyHash)) storeRows.set(Buffer.from(key).toString('hex'), { key, entry: entryHash(keyHash, this.codec.rowDigest(row)) })
      }
    }
    const suspects = new Map<string, Uint8Array>()
    const indexed = await this.listMany([...differingNodes].map(index => ({ level, index })), { signal })
    const indexKeys = new Set<string>()
    for (const e of indexed.flat()) {
      const id = Buffer.from(e.key).toString('hex')
      indexKeys.add(id)
      if (storeRows.get(id)?.entry !== e.entry) suspects.set(id, e.key)
    }
    for (const [id, r] of storeRows) if (!indexKeys.has(id)) suspects.set(id, r.key)
    // correct from the rows as they are now, in turn with the change feed
    const keys = [...suspects.values()]
    await this.updates.run(async () => {
      const now = await this.store.get(keys, { signal })
      await this.applyChanges(keys.map((key, i) => ({ key, row: now[i] ?? null })), 'note')
    })
    if (keys.length > 0) this.emit('change')
    return { rows: scanned, mismatchedNodes: differing.length, corrected: keys.length, ms: Date.now() - started }
  }

  /**
   * The feed delivered a batch or read the log to its end: after failures,
   * said once ('following'), so that a log of its failures can end.
   */
  private feedWorks (): void {
    if (this.followFailures === 0) return
    this.followFailures = 0
    this.emit('following')
  }

  private follow (): void {
    const controller = new AbortController()
    this.following = controller
    let applied = 0
    this.followLoop = (async () => {
      try {
        const taken = (seq: number): boolean => { const state = this.taken.get(seq)?.state; return state === 'pending' || state === 'taken' }
        let again = false
        // a quiet store delivers no batch: the feed says it is level instead, which also ends a run of failures
        for await (const batch of this.store.changes({ since: this.seq, signal: controller.signal, taken, caughtUp: () => this.feedWorks() })) {
          // a rescan meanwhile (the tree changed depth) already took this batch in
          if (batch.seq <= this.seq) continue
          const take = this.taken.get(batch.seq)
          if (batch.changes.length === 0 && take !== undefined) {
            const tookIn = take.state !== 'pending' || await settledWithin(take.settled, TAKE_WAIT_MS, controller.signal)
            // delivered without its rows, but the fix will not be taken in after all, or its rows in the index
            // may be older than the store's: read it again, rows and all (a stale write is not skipped: `taken`)
            if (!tookIn) this.abandonTake(batch.seq)
            if (!tookIn || this.taken.get(batch.seq)?.state === 'stale') {
              again = true
              break
            }
          }
          await this.updates.run(async () => {
            // in the order writes are applied here: a batch older than a write taken in before it may undo part of it
            for (const [seq, write] of this.taken) {
              if (seq <= batch.seq) this.taken.delete(seq)
              else if (batch.changes.length > 0 && write.state === 'taken') write.state = 'stale'
              else if (batch.changes.length > 0 && write.state === 'pending') write.raced = true
            }
            await this.applyChanges(batch.changes, batch.origin === FIX_ORIGIN ? 'settle' : 'note', batch.seq)
          })
          this.feedWorks()
          this.seq = batch.seq
          // the meta's seq follows, with the next write of the pages
          this.scheduleWrite()
          // the store keeps its change log for this index only: drop what the pages hold
          if (++applied % 64 === 0) await this.store.trimChanges(this.storeBacked ? this.seq : await this.durableWrittenSeq())
          this.release()
          this.emit('change')
          // a rescan for a new depth goes in turn with batches and validation corrections
          await this.updates.run(async () => await this.maybeResize(controller.signal))
        }
        if (again && !controller.signal.aborted) this.follow()
      } catch (err) {
        if (err instanceof AbortedError || controller.signal.aborted) return
        if (err instanceof ChangesTrimmedError || err instanceof IndexPageFormatError) {
          // the store no longer has the changes this index missed, or the index is damaged: rescan it
          this.emit('rescan', err)
          try {
            await this.rebuild({ signal: controller.signal })
            if (!controller.signal.aborted) this.follow()
          } catch (rebuildErr) {
            if (!controller.signal.aborted) this.emit('error', rebuildErr)
          }
          return
        }
        // the store went away (a dropped connection, a restart): report it and follow again after a pause
        this.emit('error', err)
        this.followFailures++
        const delay = Math.min(FOLLOW_RETRY_MAX_MS, FOLLOW_RETRY_MS * 2 ** Math.min(this.followFailures - 1, 8))
        await sleep(delay, controller.signal).catch(() => undefined)
        if (!controller.signal.aborted) this.follow()
      }
    })()
  }

  /**
   * Applies one batch of store changes to the tree, and to the index's
   * entries in memory (written to their pages later: writePages). Each
   * change's entry before it comes from the entries waiting in memory, else
   * from its page (read once for the batch), so the same key changed twice
   * in one batch ends as its last change left it. `seq`: the seq a feed
   * batch brings the index to.
   */
  private async applyChanges (changes: RowChange[], suspects: 'note' | 'settle', seq?: number): Promise<void> {
    const tree = this.currentTree
    const hashes = changes.map(c => this.codec.keyHash(c.key))
    const afters = changes.map((c, i) => c.row === null ? undefined : entryHash(hashes[i]!, this.codec.rowDigest(c.row)))
    // noted together with the tree's change (no await between): a replica that looks level meanwhile clears them
    const track = (ids?: readonly string[]): void => {
      if (suspects === 'note') changes.forEach((c, i) => this.suspects.note(c.key, c.row, afters[i], ids?.[i], c.version))
      else changes.forEach((c, i) => this.suspects.settle(c.key, ids?.[i]))
    }
    if (this.storeBacked) {
      const befores = this.beforeEntries(changes, hashes)
      changes.forEach((_, i) => {
        const keyHash = hashes[i]!
        const before = befores[i]
        const after = afters[i]
        if (before === after) return
        if (before !== undefined) tree.remove(keyHash, before)
        if (after !== undefined) tree.add(keyHash, after)
      })
      track()
      return
    }
    const level = this.pageLevel
    const ids = changes.map(c => keyId(c.key))
    // the pages of the keys not waiting in memory: where their entries before the batch are
    const wanted = new Set<number>()
    ids.forEach((id, i) => { if (!this.unwritten.has(id)) wanted.add(pageOf(hashes[i]!, level)) })
    const pages = await this.pagesById([...wanted])
    changes.forEach((change, i) => {
      const keyHash = hashes[i]!
      const after = afters[i]
      const waiting = this.unwritten.get(ids[i]!)
      const before = waiting !== undefined ? waiting.entry : entryOf(pages.get(pageOf(keyHash, level))!, keyHash, change.key)
      if (before === after) return
      this.unwritten.set(ids[i]!, { keyHash, entry: after })
      if (before !== undefined) tree.remove(keyHash, before)
      if (after !== undefined) tree.add(keyHash, after)
    })
    track(ids)
    if (this.unwritten.size >= this.writeBehind.entries) await this.writePages(Math.max(seq ?? 0, this.seq)); else this.scheduleWrite()
  }

  /**
   * (Re)schedules the write of the pages, in turn with updates: writeBehind.idleMs
   * from now (each change puts it off), but no later than writeBehind.ms
   * after the oldest entry waiting.
   */
  private scheduleWrite (): void {
    if (this.storeBacked || (this.unwritten.size === 0 && this.seq === this.writtenSeq)) return
    const now = Date.now()
    this.unwrittenSince ??= now
    const lull = this.pageHolds > 0 ? Number.POSITIVE_INFINITY : now + this.writeBehind.idleMs
    const due = Math.min(this.unwrittenSince + this.writeBehind.ms, lull)
    clearTimeout(this.writeTimer)
    this.writeTimer = setTimeout(() => {
      this.writeTimer = undefined
      this.updates.run(async () => await this.writePages()).catch(err => {
        // a failed write leaves the entries waiting; it is tried again a while later
        this.emit('error', new IndexWriteError(err))
        this.unwrittenSince = Date.now()
        this.scheduleWrite()
      })
    }, Math.max(0, due - now))
    this.writeTimer.unref()
  }

  /**
   * Puts every entry waiting in memory into its page, and the seq the index
   * has reached (`seq`, when a batch being applied is past this.seq) into
   * the meta, in one batch. Called in turn with updates (or from one), so
   * no entry changes meanwhile.
   */
  private async writePages (seq = this.seq): Promise<void> {
    clearTimeout(this.writeTimer)
    this.writeTimer = undefined
    if (this.storeBacked || (this.unwritten.size === 0 && seq === this.writtenSeq)) return
    const level = this.pageLevel
    const byPage = this.unwrittenByPage(level)
    const current = await this.pagesById([...byPage.keys()])
    const written = new Map<number, Uint8Array>()
    // one batch for every write, its native buffer used again (reused-batch.ts); keys with their sublevel's prefix, as it writes to the root
    const batch = this.pageWrites ??= new ReusedBatch(this.db)
    try {
      for (const [id, entries] of byPage) {
        const held = current.get(id)!
        const page = withEntries(held, entries)
        // entries back where the page has them (a drift its fix repaired before the write): nothing to write
        if (page === held) continue
        written.set(id, page)
        const key = this.pages.prefixKey(pageKey(level, id), 'view', false)
        if (page.length === 0) batch.del(key); else batch.put(key, page)
      }
      batch.put(this.meta.prefixKey(META_KEY, 'view', false), encodeMeta({ fp: this.codec.fingerprint, storeId: this.storeId(), seq, complete: true, layout: INDEX_LAYOUT, pageLevel: level }))
    } catch (err) {
      // a page that does not parse, say: what was put must not ride along with the next write
      await batch.discard()
      throw err
    }
    // one LevelDB write: the pages and the seq they bring the meta to land together or not at all (a failed one leaves the batch empty)
    await batch.write()
    // (a failed write leaves the cache as the pages are: unchanged)
    this.pageCache.put(written)
    this.unwritten.clear()
    this.unwrittenSince = undefined
    this.writtenSeq = seq
  }

  /**
   * The written seq, once it is on disk. Page writes are handed to the OS
   * without waiting for the disk, but the store's change log (PostgreSQL,
   * SQLite) is trimmed durably: trimmed past pages a power cut then took
   * back, the index would find the changes it lacks gone and rescan the
   * whole store. So before a trim one small synced write flushes LevelDB's
   * log, and with it every page write before it.
   */
  private async durableWrittenSeq (): Promise<number> {
    if (this.syncedSeq === this.writtenSeq) return this.syncedSeq
    await this.updates.run(async () => {
      const seq = this.writtenSeq
      const batch = this.db.batch()
      batch.put(SYNC_KEY, new Uint8Array(0), { sublevel: this.meta })
      await batch.write({ sync: true })
      this.syncedSeq = seq
    })
    return this.syncedSeq
  }

  /** The entries waiting in memory by page at `level`, with their keys' bytes; only those of `only` pages when given. */
  private unwrittenByPage (level: number, only?: ReadonlySet<number>): Map<number, PageEntry[]> {
    const out = new Map<number, PageEntry[]>()
    this.unwritten.forEach((e, id) => {
      const page = pageOf(e.keyHash, level)
      if (only !== undefined && !only.has(page)) return
      const entry = { keyHash: e.keyHash, key: bytesOfLatin1(id), entry: e.entry }
      const list = out.get(page)
      if (list === undefined) out.set(page, [entry]); else list.push(entry)
    })
    return out
  }

  private dropUnwritten (): void {
    clearTimeout(this.writeTimer)
    this.writeTimer = undefined
    this.unwritten.clear()
    this.unwrittenSince = undefined
  }

  /**
   * For a store-backed index: each row's entry hash before its change, as
   * the batch goes (the same key may change twice in one batch).
   */
  private beforeEntries (changes: RowChange[], hashes: bigint[]): Array<bigint | undefined> {
    const current = new Map<string, bigint | undefined>()
    return changes.map((c, i) => {
      if (c.before === undefined) throw new ConvergeError('CONVERGE_NO_BEFORE_IMAGE', 'a key-hash-ordered store sent a change without its before-image')
      const id = Buffer.from(c.key.buffer, c.key.byteOffset, c.key.byteLength).toString('latin1')
      const before = current.has(id) ? current.get(id) : c.before === null ? undefined : entryHash(hashes[i]!, this.codec.rowDigest(c.before))
      current.set(id, c.row === null ? undefined : entryHash(hashes[i]!, this.codec.rowDigest(c.row)))
      return before
    })
  }

  /** A full scan's tree builder: as deep as the tree it replaces calls for, so a resize gets the depth it was for. */
  private treeBuilder (): TreeBuilder {
    return new TreeBuilder({ ...this.treeBuild, minDepth: this.codec.minTreeDepth, expectedRows: Math.max(this.currentTree.rowCount, this.rowsHint) })
  }

  private async readRowsHint (): Promise<number> {
    const v = await this.meta.get(ROWS_KEY)
    const rows = v === undefined ? 0 : Number(new TextDecoder().decode(v))
    // only a hint: a record that does not parse expects nothing
    return Number.isSafeInteger(rows) && rows > 0 ? rows : 0
  }

  /** Keeps a full scan's row count for the next start's builder, and expects no more than it from now on. */
  private async noteRows (rows: number): Promise<void> {
    if (rows === this.rowsHint) return
    this.rowsHint = rows
    await this.meta.put(ROWS_KEY, new TextEncoder().encode(String(rows)))
  }

  private async maybeResize (signal: AbortSignal): Promise<void> {
    const rows = this.currentTree.rowCount
    const depth = this.currentTree.depth
    // hysteresis: only when the ideal depth is off by one even at twice or half the rows
    const min = this.codec.minTreeDepth
    if (depthFor(rows / 2, min) > depth || depthFor(rows * 2, min) < depth) await this.loadTree({ signal })
  }

  private release (): void {
    const ready = this.waiters.filter(w => w.seq <= this.seq)
    this.waiters = this.waiters.filter(w => w.seq > this.seq)
    for (const w of ready) w.resolve()
  }

  private async readMeta (): Promise<IndexMeta | undefined> {
    const v = await this.meta.get(META_KEY)
    return v === undefined ? undefined : JSON.parse(new TextDecoder().decode(v)) as IndexMeta
  }

  private async writeMeta (meta: IndexMeta): Promise<void> {
    await this.meta.put(META_KEY, encodeMeta(meta))
  }
}
