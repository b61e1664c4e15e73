/**
 * Bulk loading of index entries (keyHash ‖ key → 8-byte big-endian value)
 * into one sublevel, for a full index rebuild.
 *
 * Entries are gathered into runs held in typed arrays and each run is written
 * in key order. LevelDB takes keys in order far more cheaply than in random
 * order (and a scan in the store's order gives random key hashes): random
 * keys make every memtable flush overlap every other, so LevelDB merges them
 * again and again in the background, while ordered keys flush into tables
 * that overlap nothing and are never rewritten, and the memtable inserts stay
 * in cache. On a million entries that was about a second of CPU less, and
 * reads of the new index right after the build were faster too. A table that
 * fits one run (RUN_MAX_ENTRIES) is written as one ordered sequence; a larger
 * one as several, each ordered.
 *
 * The order is descending: the first memtable of a build also holds the
 * index's "incomplete" mark, written just before, whose key (the meta
 * sublevel, `…:m`) sorts after every entry (`…:e`). Written ascending, that
 * first table would span the whole range of entries still to come, each
 * later table would overlap it, and LevelDB would compact them all once;
 * written descending, each later table lies below every earlier one.
 *
 * While a full run is written the next one fills, so the store's scan goes on
 * during the write; at most two runs are held, which bounds the memory.
 *
 * Puts go to the root database's chained batch with the sublevel prefix
 * already in the key: classic-level's chained batch hands each put straight
 * to the native LevelDB batch, whereas a sublevel's chained batch collects
 * one op object per put and has both the sublevel and the root re-check and
 * re-prefix them all at write time. Keys and values are views into a shared
 * slab rather than two buffers each, to keep garbage (and GC time) down; a
 * slab is never reused, so the views stay valid as long as the batch holds
 * them.
 */
import { throwIfAborted } from '../errors.ts'
import type { ByteSublevel, StateDb } from './state-db.ts'

/** Entries of one run: about 40 MB with small keys (a table of up to a million rows is one run). */
export const RUN_MAX_ENTRIES = 1 << 20
/** Bytes of keys in one run, for tables with long keys. */
export const RUN_MAX_KEY_BYTES = 32 << 20
/** Entries per LevelDB write. */
const BATCH_ENTRIES = 20_000
/** Keys and values are cut from slabs of this size (a new slab when one is full). */
const SLAB_BYTES = 1 << 20

/** Which 32-bit half of a BigUint64Array element is the high one, in this platform's byte order. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1
const HI = LITTLE_ENDIAN ? 1 : 0
const LO = LITTLE_ENDIAN ? 0 : 1

const RADIX_BITS = 16
const RADIX = 1 << RADIX_BITS

/**
 * Positions 0..n-1 ordered by the 64-bit values whose 32-bit halves are
 * `words[2i + HI]` and `words[2i + LO]` (a BigUint64Array's words),
 * ascending or descending, ties in their first order: an LSD radix sort in
 * four 16-bit passes. A pass is skipped when every value has the same digit
 * there (the 16 bits a partition value gives the key hashes of a partitioned
 * dataset).
 */
export function orderByU64 (words: Uint32Array, n: number, descending = false): Uint32Array {
  const flip = descending ? 0xffffffff : 0
  let from = new Uint32Array(n)
  for (let i = 0; i < n; i++) from[i] = i
  let to = new Uint32Array(n)
  const counts = new Uint32Array(RADIX)
  for (const [half, shift] of [[LO, 0], [LO, RADIX_BITS], [HI, 0], [HI, RADIX_BITS]] as const) {
    counts.fill(0)
    for (let i = 0; i < n; i++) counts[((words[2 * i + half]! ^ flip) >>> shift) & (RADIX - 1)]!++
    if (n === 0 || counts[((words[half]! ^ flip) >>> shift) & (RADIX - 1)] === n) continue
    let sum = 0
    for (let d = 0; d < RADIX; d++) { const c = counts[d]!; counts[d] = sum; sum += c }
    for (let i = 0; i < n; i++) {
      const at = from[i]!
      to[counts[((words[2 * at + half]! ^ flip) >>> shift) & (RADIX - 1)]!++] = at
    }
    const swap = from; from = to; to = swap
  }
  return from
}

/** Below this many bytes a loop copies faster than TypedArray.set (whose call costs more than the copy). */
const SHORT_COPY = 48

function copyBytes (to: Uint8Array, at: number, from: Uint8Array, start: number, end: number): void {
  if (end - start >= SHORT_COPY) { to.set(from.subarray(start, end), at); return }
  for (let k = start; k < end; k++) to[at++] = from[k]!
}

/** Entries a run has room for at first; it grows by doubling. */
const RUN_INITIAL_ENTRIES = 1 << 12

/**
 * Entries buffered for one ordered write: key hashes and values as 64-bit
 * words, keys back to back. `full` is a threshold, not a capacity: puts
 * between two flushes may take a run past it.
 */
class EntryRun {
  hashes = new BigUint64Array(RUN_INITIAL_ENTRIES)
  hashWords = new Uint32Array(this.hashes.buffer)
  values = new BigUint64Array(RUN_INITIAL_ENTRIES)
  valueWords = new Uint32Array(this.values.buffer)
  /** End of each key in `keys`; a key starts where the one before it ends. */
  keyEnds = new Uint32Array(RUN_INITIAL_ENTRIES)
  keys = new Uint8Array(1 << 16)
  keyBytes = 0
  length = 0

  constructor (private readonly maxEntries: number, private readonly maxKeyBytes: number) {}

  get full (): boolean { return this.length >= this.maxEntries || this.keyBytes >= this.maxKeyBytes }

  add (keyHash: bigint, key: Uint8Array, value: bigint): void {
    const i = this.length
    if (i === this.hashes.length) this.grow()
    if (this.keyBytes + key.length > this.keys.length) {
      const keys = new Uint8Array(Math.max(this.keys.length * 2, this.keyBytes + key.length))
      keys.set(this.keys.subarray(0, this.keyBytes))
      this.keys = keys
    }
    this.keys.set(key, this.keyBytes)
    this.keyBytes += key.length
    this.keyEnds[i] = this.keyBytes
    this.hashes[i] = keyHash
    this.values[i] = value
    this.length = i + 1
  }

  private grow (): void {
    const size = this.hashes.length * 2
    const hashes = new BigUint64Array(size); hashes.set(this.hashes); this.hashes = hashes; this.hashWords = new Uint32Array(hashes.buffer)
    const values = new BigUint64Array(size); values.set(this.values); this.values = values; this.valueWords = new Uint32Array(values.buffer)
    const keyEnds = new Uint32Array(size); keyEnds.set(this.keyEnds); this.keyEnds = keyEnds
  }
}

export interface BulkWriterLimits {
  /** Entries per run (default RUN_MAX_ENTRIES). */
  runEntries?: number
  /** Bytes of keys per run (default RUN_MAX_KEY_BYTES). */
  runKeyBytes?: number
}

export class EntryBulkWriter {
  private readonly db: StateDb['db']
  private readonly prefix: Uint8Array
  private readonly runEntries: number
  private readonly runKeyBytes: number
  private run: EntryRun
  /** The run being written, while the next one fills. */
  private writing: Promise<void> | undefined
  private abandoned = false

  constructor (db: StateDb['db'], sublevel: ByteSublevel, limits: BulkWriterLimits = {}) {
    this.db = db
    // the sublevel's global prefix is ASCII (abstract-level requires it), so its UTF-8 bytes are the key prefix
    this.prefix = new TextEncoder().encode(sublevel.prefix)
    this.runEntries = limits.runEntries ?? RUN_MAX_ENTRIES
    this.runKeyBytes = limits.runKeyBytes ?? RUN_MAX_KEY_BYTES
    this.run = new EntryRun(this.runEntries, this.runKeyBytes)
  }

  /** Adds an entry to the current run. Call flush() between batches of puts, so a full run gets written. */
  put (keyHash: bigint, key: Uint8Array, value: bigint): void {
    this.run.add(keyHash, key, value)
  }

  /** Once the current run is full: waits for the run before it to be written, then starts writing this one. */
  async flush (options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.run.full) await this.send(options.signal)
  }

  /** Writes what is left and waits until every write is done. */
  async finish (options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.send(options.signal)
    await this.writing
  }

  /** After a failure: stops writing (the batch in hand is dropped) and waits out, ignoring, the write in flight. */
  async abandon (): Promise<void> {
    this.abandoned = true
    await this.writing?.catch(() => undefined)
  }

  private async send (signal?: AbortSignal): Promise<void> {
    await this.writing
    const full = this.run
    this.run = new EntryRun(this.runEntries, this.runKeyBytes)
    this.writing = this.write(full, signal)
    // handled here so a failed write waits, without an unhandled rejection, for the next flush or finish to throw it
    this.writing.catch(() => undefined)
  }

  /** Writes one run in descending key-hash order, BATCH_ENTRIES at a time, one LevelDB write in flight. */
  private async write (run: EntryRun, signal?: AbortSignal): Promise<void> {
    const order = orderByU64(run.hashWords, run.length, true)
    const prefix = this.prefix
    let slab = new Uint8Array(0)
    let view = new DataView(slab.buffer)
    let offset = 0
    let batch = this.db.batch()
    let inFlight: Promise<void> | undefined
    try {
      for (let j = 0; j < order.length; j++) {
        const i = order[j]!
        const keyStart = i === 0 ? 0 : run.keyEnds[i - 1]!
        const keyEnd = run.keyEnds[i]!
        const hashAt = prefix.length
        const keyAt = hashAt + 8
        const valueAt = keyAt + keyEnd - keyStart
        const size = valueAt + 8
        if (offset + size > slab.length) {
          slab = new Uint8Array(Math.max(SLAB_BYTES, size))
          view = new DataView(slab.buffer)
          offset = 0
        }
        copyBytes(slab, offset, prefix, 0, prefix.length)
        view.setUint32(offset + hashAt, run.hashWords[2 * i + HI]!)
        view.setUint32(offset + hashAt + 4, run.hashWords[2 * i + LO]!)
        copyBytes(slab, offset + keyAt, run.keys, keyStart, keyEnd)
        view.setUint32(offset + valueAt, run.valueWords[2 * i + HI]!)
        view.setUint32(offset + valueAt + 4, run.valueWords[2 * i + LO]!)
        batch.put(slab.subarray(offset, offset + valueAt), slab.subarray(offset + valueAt, offset + size))
        offset += size
        if (batch.length >= BATCH_ENTRIES) {
          await inFlight
          throwIfAborted(signal)
          if (this.abandoned) return
          inFlight = batch.write()
          batch = this.db.batch()
        }
      }
      await inFlight
      inFlight = undefined
      if (!this.abandoned) await batch.write()
    } finally {
      await inFlight?.catch(() => undefined)
      // a batch left unwritten (an abort, a failure) is closed; closing a written one changes nothing
      await batch.close().catch(() => undefined)
    }
  }
}
