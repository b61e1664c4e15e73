/**
 * The agent's own LevelDB (in its data directory): digest indexes and the
 * audit log live here as sublevels, apart from any replica store.
 */
import type { AbstractIterator, AbstractSublevel } from 'abstract-level'
import { throwIfAborted } from '../errors.ts'
import { Level } from 'level'

export type Bytes = Uint8Array
export type ByteSublevel = AbstractSublevel<Level<Bytes, Bytes>, string | Uint8Array, Bytes, Bytes>

export class StateDb {
  readonly db: Level<Bytes, Bytes>
  constructor (path: string) {
    this.db = new Level<Bytes, Bytes>(path, { keyEncoding: 'view', valueEncoding: 'view' })
  }

  async open (): Promise<void> { await this.db.open() }
  async close (): Promise<void> { await this.db.close() }

  sublevel (name: string): ByteSublevel {
    return this.db.sublevel<Bytes, Bytes>(name, { keyEncoding: 'view', valueEncoding: 'view' })
  }
}

/** Entries per LevelDB write during a bulk load. */
const BULK_BATCH_ENTRIES = 20_000
/** Keys and values of a bulk load are cut from slabs of this size (a new slab when one is full). */
const BULK_SLAB_BYTES = 1 << 20

/**
 * Loads entries keyed keyHash ‖ key with 8-byte big-endian values into one
 * sublevel, for a full index rebuild.
 *
 * Puts go to the root database's chained batch with the sublevel prefix
 * already in the key: classic-level's chained batch hands each put straight
 * to the native LevelDB batch, whereas a sublevel's chained batch collects
 * one op object per put and has both the sublevel and the root re-check and
 * re-prefix them all at write time; on a million rows that was about half
 * the rebuild's time. Keys and values are views into a shared slab rather
 * than two buffers each, to keep garbage (and GC time) down. A slab is never
 * reused, so the views stay valid however long the batch holds them.
 *
 * At most one write is in flight: `flush()` waits for the previous write
 * only when the next batch is full, so the caller reads on while LevelDB
 * writes. Memory stays bounded by two batches.
 */
export class EntryBulkWriter {
  private readonly db: StateDb['db']
  private readonly prefix: Uint8Array
  private slab = new Uint8Array(0)
  /** DataView.setBigUint64 is several times faster than Buffer.writeBigUInt64BE. */
  private slabView = new DataView(this.slab.buffer)
  private offset = 0
  private batch: ReturnType<StateDb['db']['batch']>
  private writing: Promise<void> | undefined

  constructor (db: StateDb['db'], sublevel: ByteSublevel) {
    this.db = db
    // the sublevel's global prefix is ASCII (abstract-level requires it), so its UTF-8 bytes are the key prefix
    this.prefix = new TextEncoder().encode(sublevel.prefix)
    this.batch = db.batch()
  }

  put (keyHash: bigint, key: Uint8Array, value: bigint): void {
    const hashAt = this.prefix.length
    const keyEnd = hashAt + 8 + key.length
    if (this.offset + keyEnd + 8 > this.slab.length) {
      this.slab = new Uint8Array(Math.max(BULK_SLAB_BYTES, keyEnd + 8))
      this.slabView = new DataView(this.slab.buffer)
      this.offset = 0
    }
    const slab = this.slab
    const at = this.offset
    slab.set(this.prefix, at)
    this.slabView.setBigUint64(at + hashAt, keyHash)
    slab.set(key, at + hashAt + 8)
    this.slabView.setBigUint64(at + keyEnd, value)
    this.batch.put(slab.subarray(at, at + keyEnd), slab.subarray(at + keyEnd, at + keyEnd + 8))
    this.offset = at + keyEnd + 8
  }

  /** Starts writing the batch once it is full, after waiting for the write before it. */
  async flush (): Promise<void> {
    if (this.batch.length >= BULK_BATCH_ENTRIES) await this.send()
  }

  /** Writes what is left and waits until every write is done. */
  async finish (): Promise<void> {
    await this.send()
    await this.writing
  }

  /** After a failure: drops the unwritten batch and waits out (ignoring) the write in flight, so no rejection goes unhandled. */
  async abandon (): Promise<void> {
    await this.batch.close()
    await this.writing?.catch(() => undefined)
  }

  private async send (): Promise<void> {
    await this.writing
    const full = this.batch
    this.batch = this.db.batch()
    this.writing = full.write()
  }
}

/** Iterator read-ahead for full scans: a larger buffer roughly doubles throughput on small rows (classic-level option). */
export const READ_AHEAD: object = { highWaterMarkBytes: 1 << 20 }

export interface KeyRange { gte: Uint8Array, lt?: Uint8Array }

/**
 * Entries asked of the iterator per call while reading a range: a tree leaf
 * holds up to about TARGET_LEAF_ROWS (32) rows, so most leaf-sized ranges
 * take one call without converting many entries past the range's end.
 */
const RANGE_READ_STEP = 32
/** Iterators reading ranges at once: each call runs on the libuv threadpool, four threads by default. */
const RANGE_READERS = 4
/** Fewer ranges than this per iterator are read by one iterator: another iterator (and a snapshot) would cost more than it saves. */
const MIN_RANGES_PER_READER = 32

/**
 * Reads several key ranges of `db`, seeking from range to range (cheaper
 * than an iterator per range; reading on through the gaps instead measured
 * slower for the leaf-sized ranges a sync settles). Many ranges are split
 * among a few iterators that run in parallel on the threadpool, all on one
 * snapshot, so the result is as consistent as one iterator's; a sync's
 * thousand-odd leaves took about half the time. Returns the entries of each
 * range in the order the ranges were given.
 */
export async function readRanges<T> (db: ByteSublevel, ranges: readonly KeyRange[], map: (key: Bytes, value: Bytes) => T, signal?: AbortSignal): Promise<T[][]> {
  const readers = Math.min(RANGE_READERS, Math.floor(ranges.length / MIN_RANGES_PER_READER))
  // a snapshot needs the db open; one iterator also waits for a db still opening (or reports it closed)
  if (readers <= 1 || db.status !== 'open') return await readRangesWith(db.iterator(), ranges, map, signal)
  const snapshot = db.snapshot()
  try {
    const per = Math.ceil(ranges.length / readers)
    const parts: Array<Promise<T[][]>> = []
    for (let i = 0; i < ranges.length; i += per) parts.push(readRangesWith(db.iterator({ snapshot }), ranges.slice(i, i + per), map, signal))
    // every reader settles (and closes its iterator) before the snapshot closes
    const settled = await Promise.allSettled(parts)
    for (const part of settled) if (part.status === 'rejected') throw part.reason
    return settled.flatMap(part => (part as PromiseFulfilledResult<T[][]>).value)
  } finally {
    await snapshot.close()
  }
}

/** Reads the ranges in order with one iterator, seeking to each; closes the iterator. */
async function readRangesWith<T> (it: AbstractIterator<ByteSublevel, Bytes, Bytes>, ranges: readonly KeyRange[], map: (key: Bytes, value: Bytes) => T, signal?: AbortSignal): Promise<T[][]> {
  const out: T[][] = []
  try {
    for (const range of ranges) {
      throwIfAborted(signal)
      it.seek(range.gte)
      const items: T[] = []
      read: for (;;) {
        const batch = await it.nextv(RANGE_READ_STEP)
        if (batch.length === 0) break
        for (const [key, value] of batch) {
          if (range.lt !== undefined && Buffer.compare(key, range.lt) >= 0) break read
          items.push(map(key, value))
        }
      }
      out.push(items)
    }
  } finally {
    await it.close()
  }
  return out
}

/** The key range of a key-hash interval [start, end) for keys that begin with the 8-byte hash. */
export function hashRange (start: bigint, end: bigint): KeyRange {
  const bound = (v: bigint): Uint8Array => { const b = Buffer.allocUnsafe(8); b.writeBigUInt64BE(v, 0); return b }
  return end >= 1n << 64n ? { gte: bound(start) } : { gte: bound(start), lt: bound(end) }
}
