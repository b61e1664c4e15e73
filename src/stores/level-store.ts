/**
 * The embedded replica store: one LevelDB directory per dataset.
 *
 *   rows     key hash (8 bytes) ‖ canonical key → canonical row
 *   changes  seq (8 bytes, big-endian) → msgpack [origin, [[key, row|null, before|null], …]]
 *   meta     'seq' → last committed seq; 'id' → this store's identity; 'layout' → the codec's key layout
 *
 * Rows are kept in key-hash order, so the rows under any tree node are one
 * range scan: the store is its own digest index (`supports.keyHashOrder`) and
 * the agent needs no second copy of the keys. Values are canonical rows, so a
 * scan hands them to the digest without decoding.
 *
 * Rows, their change record (with before-images) and the new seq are written
 * in one LevelDB batch, so the change feed is durable and never disagrees
 * with the rows.
 */
import { randomUUID } from 'node:crypto'
import { EventEmitter, on } from 'node:events'
import { access } from 'node:fs/promises'
import type { AbstractIterator, AbstractSublevel } from 'abstract-level'
import { Level } from 'level'
import { pack, unpack } from 'msgpackr'
import { SCAN_BATCH_ROWS } from '../constants.ts'
import { AbortedError, ChangesTrimmedError, StoreNotOpenError, StoreReadOnlyError, StoreSchemaError, StoreUnavailableError, throwIfAborted } from '../errors.ts'
import { bytesToU64 } from '../digest/hash.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { hashRange, READ_AHEAD, readRanges } from '../index/state-db.ts'
import { SerialQueue } from '../util/serial.ts'
import { FIX_ORIGIN, type ApplyRequest, type ApplyResult, type ChangeBatch, type ChangesOptions, type HashedRow, type ReplicaStore, type StoredRow, type StoreOpenOptions } from './replica-store.ts'

type Bytes = Uint8Array
type Sub = AbstractSublevel<Level<Bytes, Bytes>, string | Uint8Array, Bytes, Bytes>

export interface LevelStoreInit {
  /** Directory of the LevelDB database. */
  path: string
  codec: RowCodec
}

function seqKey (seq: number): Uint8Array {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(seq))
  return out
}

const SEQ = new TextEncoder().encode('seq')
const ID = new TextEncoder().encode('id')
const LAYOUT = new TextEncoder().encode('layout')

export class LevelStore implements ReplicaStore {
  readonly kind = 'level'
  readonly codec: RowCodec
  readonly supports = { changeFeed: true, durableChangeFeed: true, transactions: true, keyHashOrder: true }
  // made by open(): a Level opens itself once made, and only open() knows whether it may create the directory
  private db!: Level<Bytes, Bytes>
  private rows!: Sub
  private changeLog!: Sub
  private meta!: Sub
  private readonly writes = new SerialQueue()
  private readonly committed = new EventEmitter()
  private seq = 0
  private opened = false
  private readOnly = false
  private storeId: string | undefined
  private readonly path: string

  constructor (init: LevelStoreInit) {
    this.codec = init.codec
    this.path = init.path
    this.committed.setMaxListeners(0)
  }

  async open (options: StoreOpenOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    const readOnly = options.readOnly === true
    // read-only: a missing directory is an error, not a new empty store (LevelDB makes the directory even when told not to create the store)
    if (readOnly && !await access(this.path).then(() => true, () => false)) throw new StoreUnavailableError(`cannot open LevelDB store ${this.path}: it does not exist`)
    this.db = new Level<Bytes, Bytes>(this.path, { keyEncoding: 'view', valueEncoding: 'view', createIfMissing: !readOnly })
    const sub = (name: string): Sub => this.db.sublevel<Bytes, Bytes>(name, { keyEncoding: 'view', valueEncoding: 'view' })
    this.rows = sub('rows')
    this.changeLog = sub('changes')
    this.meta = sub('meta')
    try {
      await this.db.open()
    } catch (err) {
      const cause = (err as { cause?: { code?: string, message?: string } }).cause
      const why = cause?.code === 'LEVEL_LOCKED'
        ? 'it is already open (an agent running on it?): LevelDB lets one process at a time open it, once'
        : cause?.message ?? (err as Error).message
      throw new StoreUnavailableError(`cannot open LevelDB store ${this.path}: ${why}`, { cause: err })
    }
    const stored = await this.meta.get(SEQ)
    this.seq = stored === undefined ? 0 : Number(new DataView(stored.buffer, stored.byteOffset, 8).getBigUint64(0))
    this.readOnly = readOnly
    if (!readOnly) {
      const id = await this.meta.get(ID)
      if (id === undefined) {
        this.storeId = randomUUID()
        await this.meta.put(ID, new TextEncoder().encode(this.storeId))
      } else {
        this.storeId = new TextDecoder().decode(id)
      }
    }
    await this.checkKeyLayout()
    this.opened = true
  }

  /** Throws StoreReadOnlyError when opened read-only and `operation` would write. */
  private writable (operation: string): void {
    if (this.readOnly) throw new StoreReadOnlyError(`LevelDB store ${this.path}`, operation)
  }

  /** Rows sit in key-hash order: a store written under another key layout (key or partition column) cannot be read. */
  private async checkKeyLayout (): Promise<void> {
    const layout = this.codec.keyLayout
    const stored = await this.meta.get(LAYOUT)
    if (stored === undefined) {
      // stores from before layouts were recorded were written unpartitioned
      if (this.codec.partitioned && (await this.rows.keys({ limit: 1 }).all()).length > 0) {
        await this.db.close()
        throw new StoreSchemaError(`LevelDB store ${this.path} was written without a partition column; a partition column changes every row's place: re-create the store, or drop partitionColumn`)
      }
      if (!this.readOnly) await this.meta.put(LAYOUT, new TextEncoder().encode(layout))
      return
    }
    const was = new TextDecoder().decode(stored)
    if (was !== layout) {
      await this.db.close()
      throw new StoreSchemaError(`LevelDB store ${this.path} was written under key layout ${was}, the dataset's schema gives ${layout} (the primary key or partition column changed): re-create the store, or restore the previous key`)
    }
  }

  get id (): string {
    this.writable('its store id')
    if (this.storeId === undefined) throw new StoreNotOpenError('LevelDB store')
    return this.storeId
  }

  async close (): Promise<void> {
    this.opened = false
    // wakes change feeds waiting for a commit; they see the store closed and end
    this.committed.emit('seq', this.seq)
    if (this.db !== undefined) await this.db.close()
  }

  async * scan (options: { signal?: AbortSignal, batchSize?: number } = {}): AsyncGenerator<StoredRow[]> {
    this.assertOpen()
    yield * this.readRows(this.rows.iterator(READ_AHEAD), options)
  }

  /**
   * A scan that reflects exactly the changes up to the returned seq: the
   * iterator (a LevelDB snapshot) is opened between two writes.
   */
  async scanAt (options: { signal?: AbortSignal, batchSize?: number } = {}): Promise<{ seq: number, rows: AsyncIterable<StoredRow[]> }> {
    this.assertOpen()
    return await this.writes.run(async () => ({ seq: this.seq, rows: this.readRows(this.rows.iterator(READ_AHEAD), options) }))
  }

  /** For each [start, end) key-hash interval, its rows in key-hash order; iterators seek across them (see readRanges). */
  async listRanges (ranges: ReadonlyArray<readonly [bigint, bigint]>, options: { signal?: AbortSignal } = {}): Promise<HashedRow[][]> {
    this.assertOpen()
    return await readRanges(this.rows, ranges.map(([start, end]) => hashRange(start, end)),
      (stored, row) => ({ keyHash: bytesToU64(stored, 0), key: stored.subarray(8), row }), options.signal)
  }

  async get (keys: Uint8Array[]): Promise<Array<Uint8Array | undefined>> {
    this.assertOpen()
    if (keys.length === 0) return []
    return await this.rows.getMany(keys.map(k => this.storedKey(k)))
  }

  private async * readRows (it: AbstractIterator<Sub, Bytes, Bytes>, options: { signal?: AbortSignal, batchSize?: number }): AsyncGenerator<Array<StoredRow & { stored: Uint8Array }>> {
    try {
      for (;;) {
        throwIfAborted(options.signal)
        const entries = await it.nextv(options.batchSize ?? SCAN_BATCH_ROWS)
        if (entries.length === 0) return
        yield entries.map(([stored, row]) => ({ stored, key: stored.subarray(8), row }))
      }
    } finally {
      await it.close()
    }
  }

  /** The LevelDB key of a row: its key hash, then its canonical key. */
  private storedKey (key: Uint8Array): Uint8Array {
    const out = Buffer.allocUnsafe(8 + key.length)
    out.writeBigUInt64BE(this.codec.keyHash(key), 0)
    out.set(key, 8)
    return out
  }

  async apply (request: ApplyRequest, options: { signal?: AbortSignal } = {}): Promise<ApplyResult> {
    this.assertOpen()
    this.writable('apply')
    const upsertKeys = request.upserts.map(row => this.codec.keyOfEncodedRow(row))
    return await this.writes.run(async () => {
      throwIfAborted(options.signal)
      const keys = [...upsertKeys, ...request.deletes]
      const stored = keys.map(k => this.storedKey(k))
      const before = keys.length === 0 ? [] : (await this.rows.getMany(stored)).map(v => v ?? null)
      const seq = this.seq + 1
      const changes: Array<[Uint8Array, Uint8Array | null, Uint8Array | null]> = []
      const batch = this.db.batch()
      request.upserts.forEach((row, i) => { batch.put(stored[i]!, row, { sublevel: this.rows }); changes.push([keys[i]!, row, before[i]!]) })
      request.deletes.forEach((key, j) => {
        const i = upsertKeys.length + j
        batch.del(stored[i]!, { sublevel: this.rows })
        changes.push([key, null, before[i]!])
      })
      batch.put(seqKey(seq), pack([request.origin ?? null, changes]), { sublevel: this.changeLog })
      batch.put(SEQ, seqKey(seq), { sublevel: this.meta })
      // a fix is on disk before its audit commit is written, as a database's commit would be; other writes (seeding,
      // the simulator's drift) need not wait for the disk
      await batch.write({ sync: request.origin === FIX_ORIGIN })
      this.seq = seq
      this.committed.emit('seq', seq)
      return { seq, before }
    })
  }

  async lastSeq (): Promise<number> {
    this.writable('its change log')
    return this.seq
  }

  async * changes (options: ChangesOptions): AsyncGenerator<ChangeBatch> {
    this.assertOpen()
    this.writable('its change feed')
    let since = options.since
    if (since < this.seq && !(await this.hasChange(since + 1))) throw new ChangesTrimmedError(since, this.seq)
    const wake = on(this.committed, 'seq', { signal: options.signal })
    try {
      for (;;) {
        const it = this.changeLog.iterator({ gt: seqKey(since) })
        try {
          for (;;) {
            const entries = await it.nextv(64)
            if (entries.length === 0) break
            for (const [key, value] of entries) {
              const seq = Number(new DataView(key.buffer, key.byteOffset, 8).getBigUint64(0))
              const [origin, changes] = unpack(value) as [string | null, Array<[Uint8Array, Uint8Array | null, Uint8Array | null]>]
              since = seq
              yield { seq, changes: changes.map(([k, row, before]) => ({ key: k, row, before })), origin: origin ?? undefined }
            }
          }
        } finally {
          await it.close()
        }
        if (!this.opened) return
        if (this.seq > since) continue
        options.caughtUp?.()
        const next = await wake.next()
        if (next.done === true) return
      }
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw new AbortedError()
      throw err
    } finally {
      await wake.return?.()
    }
  }

  private async hasChange (seq: number): Promise<boolean> {
    return (await this.changeLog.get(seqKey(seq))) !== undefined
  }

  async trimChanges (seq: number): Promise<void> {
    this.assertOpen()
    this.writable('trimming its change log')
    await this.changeLog.clear({ lte: seqKey(seq) })
  }

  async countRows (): Promise<number> {
    let n = 0
    for await (const batch of this.scan({ batchSize: 10_000 })) n += batch.length
    return n
  }

  private assertOpen (): void {
    if (!this.opened) throw new StoreNotOpenError('LevelDB store')
  }
}
