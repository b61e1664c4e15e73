/**
 * The digest index of one dataset replica: keyHash ‖ key → rowDigest, in the
 * agent's LevelDB, and the in-memory Merkle tree over it.
 *
 * Built by a full scan of the store when missing, when its schema
 * fingerprint differs, or when an earlier build did not finish; then kept
 * current by the store's change feed. Key-hash order makes the rows under any
 * tree node one contiguous range scan.
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
import { SCAN_BATCH_ROWS, TREE_FANOUT } from '../constants.ts'
import { SerialQueue, sleep } from '../util/serial.ts'
import { AbortedError, ChangesTrimmedError, ConvergeError, throwIfAborted } from '../errors.ts'
import { bytesToU64, entryHash, u64ToBytes } from '../digest/hash.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import type { ReplicaStore, RowChange } from '../stores/replica-store.ts'
import type { IndexEntry, ReplicaView } from '../sync/replica-view.ts'
import { depthFor, LeafBuffer, MerkleTree, nodeOf, nodeRange } from '../tree/merkle-tree.ts'
import { EntryBulkWriter } from './bulk-writer.ts'
import { hashRange, READ_AHEAD, readRanges, type ByteSublevel, type StateDb } from './state-db.ts'

const META_KEY = new TextEncoder().encode('meta')
/** Pause before following a store's change feed again after it failed, doubling up to the max. */
const FOLLOW_RETRY_MS = 500
const FOLLOW_RETRY_MAX_MS = 30_000

interface IndexMeta { fp: string, storeId: string, seq: number, complete: boolean }

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

function indexKey (keyHash: bigint, key: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(8 + key.length)
  out.writeBigUInt64BE(keyHash, 0)
  out.set(key, 8)
  return out
}

function toEntry (k: Uint8Array, v: Uint8Array): IndexEntry {
  const keyHash = bytesToU64(k, 0)
  const rowDigest = bytesToU64(v, 0)
  return { keyHash, key: k.subarray(8), rowDigest, entry: entryHash(keyHash, rowDigest) }
}

export interface DigestIndexInit {
  dataset: string
  codec: RowCodec
  store: ReplicaStore
  state: StateDb
  /** Keep entries in the state db even for a store that could serve as its own index (to compare the two ways). Default false. */
  keepEntries?: boolean
}

export class DigestIndex extends EventEmitter implements ReplicaView {
  readonly codec: RowCodec
  private readonly store: ReplicaStore
  private readonly db: StateDb['db']
  private readonly entries: ByteSublevel
  private readonly meta: ByteSublevel
  /** The store lists rows by key hash itself: no entries are kept here. */
  private readonly storeBacked: boolean
  private currentTree: MerkleTree = new MerkleTree(1)
  private seq = 0
  private following: AbortController | undefined
  private followLoop: Promise<void> | undefined
  private followFailures = 0
  /** Change batches and validation corrections go through the index one at a time. */
  private readonly updates = new SerialQueue()
  /** Resolvers waiting for the index to reach a seq. */
  private waiters: Array<{ seq: number, resolve: () => void }> = []

  constructor (init: DigestIndexInit) {
    super()
    this.codec = init.codec
    this.store = init.store
    this.db = init.state.db
    this.entries = init.state.sublevel(`index:${init.dataset}:e`)
    this.meta = init.state.sublevel(`index:${init.dataset}:m`)
    this.storeBacked = init.keepEntries !== true && init.store.supports.keyHashOrder === true && init.store.listRanges !== undefined && init.store.scanAt !== undefined
  }

  get tree (): MerkleTree { return this.currentTree }

  /** The store change seq the index reflects. */
  get appliedSeq (): number { return this.seq }

  /**
   * Makes the index current: rebuilds it by a full scan when it is missing or
   * distrusted, else loads the tree from it and replays missed changes. Then
   * follows the change feed until stop().
   */
  async start (options: { signal?: AbortSignal, onProgress?: (p: IndexProgress) => void, rebuild?: boolean } = {}): Promise<void> {
    const meta = this.storeBacked ? undefined : await this.readMeta()
    if (this.storeBacked) {
      await this.scanStore(options)
    } else if (options.rebuild === true || meta === undefined || !meta.complete || meta.fp !== this.codec.fingerprint || meta.storeId !== this.store.id) {
      await this.rebuild(options)
    } else {
      this.seq = meta.seq
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
  }

  /** Builds the tree from one snapshot scan of a key-hash-ordered store, and takes its seq. */
  private async scanStore (options: { signal?: AbortSignal, onProgress?: (p: IndexProgress) => void } = {}): Promise<void> {
    const { seq, rows: batches } = await this.store.scanAt!({ signal: options.signal, batchSize: SCAN_BATCH_ROWS })
    const leaves = new LeafBuffer()
    for await (const batch of batches) {
      for (const { key, row } of batch) {
        const keyHash = this.codec.keyHash(key)
        leaves.push(keyHash, entryHash(keyHash, this.codec.rowDigest(row)))
      }
      options.onProgress?.({ phase: 'scan', rows: leaves.length })
    }
    this.currentTree = leaves.build(this.codec.minTreeDepth)
    this.seq = seq
    await this.store.trimChanges(seq)
    this.emit('change')
  }

  /** Full scan of the store into a fresh index. */
  async rebuild (options: { signal?: AbortSignal, onProgress?: (p: IndexProgress) => void } = {}): Promise<void> {
    if (this.storeBacked) { await this.scanStore(options); return }
    const { signal } = options
    await this.writeMeta({ fp: this.codec.fingerprint, storeId: this.store.id, seq: 0, complete: false })
    await this.entries.clear()
    // changes committed while the scan runs are replayed from here; replays are idempotent
    const seqAtStart = await this.store.lastSeq()
    const leaves = new LeafBuffer()
    let rows = 0
    const writer = new EntryBulkWriter(this.db, this.entries)
    try {
      for await (const batch of this.store.scan({ signal, batchSize: SCAN_BATCH_ROWS })) {
        throwIfAborted(signal)
        for (const { key, row } of batch) {
          const keyHash = this.codec.keyHash(key)
          const rowDigest = this.codec.rowDigest(row)
          writer.put(keyHash, key, rowDigest)
          leaves.push(keyHash, entryHash(keyHash, rowDigest))
        }
        rows += batch.length
        await writer.flush({ signal })
        options.onProgress?.({ phase: 'scan', rows })
      }
      await writer.finish({ signal })
    } catch (err) {
      await writer.abandon()
      throw err
    }
    this.currentTree = leaves.build(this.codec.minTreeDepth)
    this.seq = seqAtStart
    await this.writeMeta({ fp: this.codec.fingerprint, storeId: this.store.id, seq: seqAtStart, complete: true })
    await this.store.trimChanges(seqAtStart)
    this.emit('change')
  }

  /** Rebuilds the in-memory tree from the index (at start, or when the row count calls for another depth). */
  async loadTree (options: { signal?: AbortSignal, onProgress?: (p: IndexProgress) => void } = {}): Promise<void> {
    if (this.storeBacked) { await this.scanStore(options); return }
    const leaves = new LeafBuffer()
    const it = this.entries.iterator(READ_AHEAD)
    try {
      for (;;) {
        throwIfAborted(options.signal)
        const batch = await it.nextv(10_000)
        if (batch.length === 0) break
        for (const [k, v] of batch) { const keyHash = bytesToU64(k, 0); leaves.push(keyHash, entryHash(keyHash, bytesToU64(v, 0))) }
        options.onProgress?.({ phase: 'load', rows: leaves.length })
      }
    } finally {
      await it.close()
    }
    this.currentTree = leaves.build(this.codec.minTreeDepth)
    this.emit('change')
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

  async listMany (nodes: ReadonlyArray<{ level: number, index: number }>, options: { signal?: AbortSignal } = {}): Promise<IndexEntry[][]> {
    const ranges = nodes.map(n => { const r = nodeRange(n.level, n.index); return [r.start, r.end] as const })
    if (this.storeBacked) {
      return (await this.store.listRanges!(ranges, options)).map(rows => rows.map(({ keyHash, key, row }) => {
        const rowDigest = this.codec.rowDigest(row)
        return { keyHash, key, rowDigest, entry: entryHash(keyHash, rowDigest) }
      }))
    }
    return await readRanges(this.entries, ranges.map(([start, end]) => hashRange(start, end)), toEntry, options.signal)
  }

  async getRows (keys: Uint8Array[], options: { signal?: AbortSignal } = {}): Promise<Array<Uint8Array | undefined>> {
    return await this.store.get(keys, options)
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
    const leaves = new LeafBuffer()
    let scanned = 0
    for await (const batch of this.store.scan({ signal, batchSize: SCAN_BATCH_ROWS })) {
      for (const { key, row } of batch) {
        const keyHash = this.codec.keyHash(key)
        leaves.push(keyHash, entryHash(keyHash, this.codec.rowDigest(row)))
      }
      scanned += batch.length
      options.onProgress?.({ phase: 'scan', rows: scanned })
    }
    const fresh = leaves.build(this.codec.minTreeDepth)
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
    const storeRows = new Map<string, { key: Uint8Array, digest: bigint }>()
    for await (const batch of this.store.scan({ signal, batchSize: SCAN_BATCH_ROWS })) {
      for (const { key, row } of batch) {
        const keyHash = this.codec.keyHash(key)
        if (inDiffering(keyHash)) storeRows.set(Buffer.from(key).toString('hex'), { key, digest: this.codec.rowDigest(row) })
      }
    }
    const suspects = new Map<string, Uint8Array>()
    const indexed = await this.listMany([...differingNodes].map(index => ({ level, index })), { signal })
    const indexKeys = new Set<string>()
    for (const e of indexed.flat()) {
      const id = Buffer.from(e.key).toString('hex')
      indexKeys.add(id)
      if (storeRows.get(id)?.digest !== e.rowDigest) suspects.set(id, e.key)
    }
    for (const [id, r] of storeRows) if (!indexKeys.has(id)) suspects.set(id, r.key)
    // correct from the rows as they are now, in turn with the change feed
    const keys = [...suspects.values()]
    await this.updates.run(async () => {
      const now = await this.store.get(keys, { signal })
      await this.applyChanges(keys.map((key, i) => ({ key, row: now[i] ?? null })), this.seq)
    })
    if (keys.length > 0) this.emit('change')
    return { rows: scanned, mismatchedNodes: differing.length, corrected: keys.length, ms: Date.now() - started }
  }

  private follow (): void {
    const controller = new AbortController()
    this.following = controller
    let applied = 0
    this.followLoop = (async () => {
      try {
        for await (const batch of this.store.changes({ since: this.seq, signal: controller.signal })) {
          // a rescan meanwhile (the tree changed depth) already took this batch in
          if (batch.seq <= this.seq) continue
          await this.updates.run(async () => await this.applyChanges(batch.changes, batch.seq))
          this.followFailures = 0
          this.seq = batch.seq
          // the store keeps its change log for this index only: drop what is applied
          if (++applied % 64 === 0) await this.store.trimChanges(this.seq)
          this.release()
          this.emit('change')
          // a rescan for a new depth goes in turn with batches and validation corrections
          await this.updates.run(async () => await this.maybeResize(controller.signal))
        }
      } catch (err) {
        if (err instanceof AbortedError || controller.signal.aborted) return
        if (err instanceof ChangesTrimmedError) {
          // the store no longer has the changes this index missed: rescan it
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

  /** Applies one batch of store changes to the index and the tree, and records the seq in the same write. */
  private async applyChanges (changes: RowChange[], seq: number): Promise<void> {
    const keys = changes.map(c => indexKey(this.codec.keyHash(c.key), c.key))
    const stored = this.storeBacked ? this.beforeDigests(changes) : await this.entries.getMany(keys)
    // the same key may change twice in one batch: track its digest as the batch goes
    const current = new Map<string, bigint | undefined>()
    const tree = this.currentTree
    const treeOps: Array<() => void> = []
    changes.forEach((change, i) => {
      const k = keys[i]!
      const id = Buffer.from(k).toString('latin1')
      const keyHash = bytesToU64(k, 0)
      const before = current.has(id) ? current.get(id) : stored[i] === undefined ? undefined : bytesToU64(stored[i]!, 0)
      const after = change.row === null ? undefined : this.codec.rowDigest(change.row)
      if (before !== undefined) { const e = entryHash(keyHash, before); treeOps.push(() => tree.remove(keyHash, e)) }
      if (after !== undefined) { const e = entryHash(keyHash, after); treeOps.push(() => tree.add(keyHash, e)) }
      current.set(id, after)
    })
    if (this.storeBacked) {
      for (const op of treeOps) op()
      return
    }
    const batch = this.db.batch()
    changes.forEach((_, i) => {
      const k = keys[i]!
      const after = current.get(Buffer.from(k).toString('latin1'))
      if (after === undefined) batch.del(k, { sublevel: this.entries }); else batch.put(k, u64ToBytes(after), { sublevel: this.entries })
    })
    batch.put(META_KEY, encodeMeta({ fp: this.codec.fingerprint, storeId: this.store.id, seq, complete: true }), { sublevel: this.meta })
    await batch.write()
    for (const op of treeOps) op()
  }

  /** For a store-backed index: the digest of each row before its batch, as 8-byte values like stored entries. */
  private beforeDigests (changes: RowChange[]): Array<Uint8Array | undefined> {
    return changes.map(c => {
      if (c.before === undefined) throw new ConvergeError('CONVERGE_NO_BEFORE_IMAGE', 'a key-hash-ordered store sent a change without its before-image')
      return c.before === null ? undefined : u64ToBytes(this.codec.rowDigest(c.before))
    })
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
