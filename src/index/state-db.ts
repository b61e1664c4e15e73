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

/** Iterator read-ahead for full scans: a larger buffer roughly doubles throughput on small rows (classic-level option). */
export const READ_AHEAD: object = { highWaterMarkBytes: 1 << 20 }

export interface KeyRange { gte: Uint8Array, lt?: Uint8Array }

/**
 * Reads several key ranges with one iterator, seeking from range to range
 * (cheaper than an iterator per range; reading on through the gaps instead
 * measured slower for the leaf-sized ranges a sync settles). Returns the
 * entries of each range in the order the ranges were given. Closes the
 * iterator.
 */
export async function readRanges<T> (it: AbstractIterator<ByteSublevel, Bytes, Bytes>, ranges: readonly KeyRange[], map: (key: Bytes, value: Bytes) => T, signal?: AbortSignal): Promise<T[][]> {
  const out: T[][] = []
  try {
    for (const range of ranges) {
      throwIfAborted(signal)
      it.seek(range.gte)
      const items: T[] = []
      read: for (;;) {
        const batch = await it.nextv(64)
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
