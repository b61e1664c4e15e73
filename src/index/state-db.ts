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
  /** The database's directory; work files go beside it (`<location>-spill`). */
  readonly location: string
  constructor (path: string) {
    this.location = path
    this.db = new Level<Bytes, Bytes>(path, { keyEncoding: 'view', valueEncoding: 'view' })
  }

  async open (): Promise<void> { await this.db.open() }
  async close (): Promise<void> { await this.db.close() }

  sublevel (name: string): ByteSublevel {
    return this.db.sublevel<Bytes, Bytes>(name, { keyEncoding: 'view', valueEncoding: 'view' })
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
