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
 * during the write; at most two runs are held, which bounds the memory. Runs
 * after the first are smaller (LATER_RUN_ENTRIES): a table that outgrows the
 * first run is written as several overlapping runs anyway, which LevelDB
 * merges, and two small runs take a fraction of the memory of two large ones
 * (a ten-million-row build peaked about 70 MB lower).
 *
 * Puts go to the root database's chained batch with the sublevel prefix
 * already in the key: classic-level's chained batch hands each put straight
 * to the native LevelDB batch, whereas a sublevel's chained batch collects
 * one op object per put and has both the sublevel and the root re-check and
 * re-prefix them all at write time.
 */
import { throwIfAborted } from '../errors.ts'
import type { ByteSublevel, StateDb } from './state-db.ts'

/** Entries of the first run: 40 bytes each and 8 more while it is ordered, about 50 MB (a table of up to a million rows is one run). */
export const RUN_MAX_ENTRIES = 1 << 20
/** Entries of each later run, about 12 MB. */
export const LATER_RUN_ENTRIES = 1 << 18
/** Bytes of keys too long for an entry's record in one run, for tables with long keys. */
export const RUN_MAX_KEY_BYTES = 32 << 20
/** Entries per LevelDB write. */
const BATCH_ENTRIES = 20_000
/** Bytes of keys and values of one batch (prefix, hash, key and value: about 40 bytes an entry with small keys). */
const SLAB_BYTES = 1 << 20

/** Which 32-bit half of a BigUint64Array element is the high one, in this platform's byte order. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1
const HI = LITTLE_ENDIAN ? 1 : 0
const LO = LITTLE_ENDIAN ? 0 : 1

const RADIX_BITS = 16
const RADIX = 1 << RADIX_BITS

/**
 * Positions 0..n-1 ordered by the 64-bit values whose 32-bit halves are
 * `words[stride * i + hi]` and `words[stride * i + lo]` (by default a
 * BigUint64Array's words), ascending or descending, ties in their first
 * order: an LSD radix sort in four 16-bit passes. A pass is skipped when
 * every value has the same digit there (the 16 bits a partition value gives
 * the key hashes of a partitioned dataset).
 */
export function orderByU64 (words: Uint32Array, n: number, descending = false, stride = 2, hi = HI, lo = LO): Uint32Array {
  const flip = descending ? 0xffffffff : 0
  let from = new Uint32Array(n)
  for (let i = 0; i < n; i++) from[i] = i
  let to = new Uint32Array(n)
  const counts = new Uint32Array(RADIX)
  for (const [half, shift] of [[lo, 0], [lo, RADIX_BITS], [hi, 0], [hi, RADIX_BITS]] as const) {
    counts.fill(0)
    for (let i = 0; i < n; i++) counts[((words[stride * i + half]! ^ flip) >>> shift) & (RADIX - 1)]!++
    if (n === 0 || counts[((words[half]! ^ flip) >>> shift) & (RADIX - 1)] === n) continue
    let sum = 0
    for (let d = 0; d < RADIX; d++) { const c = counts[d]!; counts[d] = sum; sum += c }
    for (let i = 0; i < n; i++) {
      const at = from[i]!
      to[counts[((words[stride * at + half]! ^ flip) >>> shift) & (RADIX - 1)]!++] = at
    }
    const swap = from; from = to; to = swap
  }
  return from
}

/** Entries a run has room for at first; it grows by doubling. */
const RUN_INITIAL_ENTRIES = 1 << 12
/** 32-bit words per entry record: hash (hi, lo), value (hi, lo), key length, then the key inline or its offset. */
const RECORD_WORDS = 8
const HASH_HI = 0
const HASH_LO = 1
const VALUE_HI = 2
const VALUE_LO = 3
const KEY_LENGTH = 4
const KEY_AT = 5
/** Keys up to this long sit in the record itself (words 5-7); longer ones in the run's key slab, the record holding their offset. */
const INLINE_KEY_BYTES = 12

/**
 * Entries buffered for one ordered write, one record of RECORD_WORDS words
 * each. Why records: the write reads the entries in key-hash order, that is
 * at random; with an entry's hash, value and (short) key together, that is
 * one cache miss per entry instead of one per field.
 *
 * `full` is a threshold, not a capacity: puts between two flushes may take a
 * run past it.
 */
class EntryRun {
  records: Uint32Array
  recordBytes: Uint8Array
  /** The key hashes again, (hi, lo) back to back: the sort reads them four times, from a quarter of the memory. */
  hashWords: Uint32Array
  /** Keys longer than INLINE_KEY_BYTES, back to back. */
  keys = new Uint8Array(0)
  keyBytes = 0
  length = 0
  /** Splits a bigint into 32-bit words without a BigInt operation. */
  private readonly scratch = new BigUint64Array(1)
  private readonly scratchWords = new Uint32Array(this.scratch.buffer)

  /** Room for `capacity` entries at first; later runs start at their full size, so they never grow (a growing array is held twice while it is copied). */
  constructor (readonly maxEntries: number, private readonly maxKeyBytes: number, capacity = RUN_INITIAL_ENTRIES) {
    this.records = new Uint32Array(capacity * RECORD_WORDS)
    this.recordBytes = new Uint8Array(this.records.buffer)
    this.hashWords = new Uint32Array(capacity * 2)
  }

  /** Empties the run for reuse, keeping its arrays. */
  reset (): this {
    this.length = 0
    this.keyBytes = 0
    return this
  }

  get full (): boolean { return this.length >= this.maxEntries || this.keyBytes >= this.maxKeyBytes }

  add (keyHash: bigint, key: Uint8Array, value: bigint): void {
    const i = this.length
    if ((i + 1) * RECORD_WORDS > this.records.length) this.grow()
    const r = this.records
    const at = i * RECORD_WORDS
    const w = this.scratchWords
    this.scratch[0] = keyHash
    r[at + HASH_HI] = this.hashWords[2 * i] = w[HI]!
    r[at + HASH_LO] = this.hashWords[2 * i + 1] = w[LO]!
    this.scratch[0] = value
    r[at + VALUE_HI] = w[HI]!
    r[at + VALUE_LO] = w[LO]!
    r[at + KEY_LENGTH] = key.length
    if (key.length <= INLINE_KEY_BYTES) {
      const bytes = this.recordBytes
      let b = (at + KEY_AT) * 4
      for (let k = 0; k < key.length; k++) bytes[b++] = key[k]!
    } else {
      if (this.keyBytes + key.length > this.keys.length) {
        const keys = new Uint8Array(Math.max(1 << 16, this.keys.length * 2, this.keyBytes + key.length))
        keys.set(this.keys.subarray(0, this.keyBytes))
        this.keys = keys
      }
      r[at + KEY_AT] = this.keyBytes
      this.keys.set(key, this.keyBytes)
      this.keyBytes += key.length
    }
    this.length = i + 1
  }

  /** Entries in descending key-hash order. */
  order (): Uint32Array { return orderByU64(this.hashWords, this.length, true, 2, 0, 1) }

  /** Writes entry i's hash (big-endian) and key at `at`; returns where they end. */
  encodeKey (i: number, out: Uint8Array, at: number): number {
    const r = this.records
    const base = i * RECORD_WORDS
    at = putU32(out, at, r[base + HASH_HI]!)
    at = putU32(out, at, r[base + HASH_LO]!)
    const length = r[base + KEY_LENGTH]!
    const inline = length <= INLINE_KEY_BYTES
    const from = inline ? this.recordBytes : this.keys
    const start = inline ? (base + KEY_AT) * 4 : r[base + KEY_AT]!
    for (let k = start; k < start + length; k++) out[at++] = from[k]!
    return at
  }

  /** Writes entry i's value (big-endian) at `at`. */
  encodeValue (i: number, out: Uint8Array, at: number): void {
    const base = i * RECORD_WORDS
    putU32(out, at, this.records[base + VALUE_HI]!)
    putU32(out, at + 4, this.records[base + VALUE_LO]!)
  }

  /** Bytes of entry i's hash and key. */
  keySize (i: number): number { return 8 + this.records[i * RECORD_WORDS + KEY_LENGTH]! }

  private grow (): void {
    const records = new Uint32Array(this.records.length * 2)
    records.set(this.records)
    this.records = records
    this.recordBytes = new Uint8Array(records.buffer)
    const hashWords = new Uint32Array(this.hashWords.length * 2)
    hashWords.set(this.hashWords)
    this.hashWords = hashWords
  }
}

/** One buffer for every key of a write, the prefix in front once; views of it by length, made once per length. */
class SharedKey {
  private buffer: Uint8Array
  private views: Uint8Array[] = []

  constructor (private readonly prefix: Uint8Array) {
    this.buffer = new Uint8Array(prefix.length + 64)
    this.buffer.set(prefix)
  }

  /** The buffer, with room for `bytes` after the prefix. */
  room (bytes: number): Uint8Array {
    if (this.prefix.length + bytes > this.buffer.length) {
      this.buffer = new Uint8Array(2 * (this.prefix.length + bytes))
      this.buffer.set(this.prefix)
      this.views = []
    }
    return this.buffer
  }

  /** The key ending at `end`. */
  view (end: number): Uint8Array {
    return this.views[end] ??= this.buffer.subarray(0, end)
  }
}

function putU32 (out: Uint8Array, at: number, v: number): number {
  out[at] = v >>> 24
  out[at + 1] = (v >>> 16) & 0xff
  out[at + 2] = (v >>> 8) & 0xff
  out[at + 3] = v & 0xff
  return at + 4
}

export interface BulkWriterLimits {
  /** Entries of the first run (default RUN_MAX_ENTRIES). */
  runEntries?: number
  /** Entries of each later run (default LATER_RUN_ENTRIES, at most runEntries). */
  laterRunEntries?: number
  /** Bytes of long keys per run (default RUN_MAX_KEY_BYTES). */
  runKeyBytes?: number
}

export class EntryBulkWriter {
  private readonly db: StateDb['db']
  private readonly prefix: Uint8Array
  private readonly laterRunEntries: number
  private readonly runKeyBytes: number
  private run: EntryRun
  /** The write of the run before the current one, while the current one fills. */
  private writing: Promise<void> | undefined
  /** The run that write is (or was) writing. */
  private writtenRun: EntryRun | undefined
  private abandoned = false

  constructor (db: StateDb['db'], sublevel: ByteSublevel, limits: BulkWriterLimits = {}) {
    this.db = db
    // the sublevel's global prefix is ASCII (abstract-level requires it), so its UTF-8 bytes are the key prefix
    this.prefix = new TextEncoder().encode(sublevel.prefix)
    const runEntries = limits.runEntries ?? RUN_MAX_ENTRIES
    this.laterRunEntries = limits.laterRunEntries ?? Math.min(runEntries, LATER_RUN_ENTRIES)
    this.runKeyBytes = limits.runKeyBytes ?? RUN_MAX_KEY_BYTES
    this.run = new EntryRun(runEntries, this.runKeyBytes)
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
    // the run written before is done with: a later run fills its arrays again, so at most two later runs are ever allocated
    const full = this.run
    const spare = this.writtenRun?.maxEntries === this.laterRunEntries ? this.writtenRun : undefined
    this.run = spare?.reset() ?? new EntryRun(this.laterRunEntries, this.runKeyBytes, this.laterRunEntries)
    this.writtenRun = full
    this.writing = this.write(full, signal)
    // handled here so a failed write waits, without an unhandled rejection, for the next flush or finish to throw it
    this.writing.catch(() => undefined)
  }

  /**
   * Writes one run in descending key-hash order, BATCH_ENTRIES at a time, one
   * LevelDB write in flight.
   *
   * classic-level's chained batch copies a put's key and value into LevelDB's
   * batch at once, so when nothing else sees the put (no prewrite hook, no
   * 'write' listener: either would keep the op), every put of a batch is laid
   * out in one buffer, the sublevel prefix written there once: no object, no
   * copy of the prefix per entry. Otherwise each put gets bytes of its own,
   * cut from two slabs taken in turn, one per batch: a slab is filled again
   * only once the batch that used it is written.
   */
  private async write (run: EntryRun, signal?: AbortSignal): Promise<void> {
    const order = run.order()
    const prefix = this.prefix
    const key = new SharedKey(prefix)
    const value = new Uint8Array(8)
    const slabs = [new Uint8Array(SLAB_BYTES), new Uint8Array(SLAB_BYTES)]
    let slab = slabs[0]!
    let turn = 0
    let offset = 0
    let batch = this.db.batch()
    let shared = this.nothingKeepsPuts()
    let inFlight: Promise<void> | undefined
    try {
      for (let j = 0; j < order.length; j++) {
        const i = order[j]!
        if (shared) {
          const buffer = key.room(run.keySize(i))
          const end = run.encodeKey(i, buffer, prefix.length)
          run.encodeValue(i, value, 0)
          batch.put(key.view(end), value)
        } else {
          const size = prefix.length + run.keySize(i) + 8
          if (offset + size > slab.length) {
            // a batch's entries outgrew its slab: the rest of it goes into a new one
            slab = new Uint8Array(Math.max(SLAB_BYTES, size))
            offset = 0
          }
          slab.set(prefix, offset)
          const valueAt = run.encodeKey(i, slab, offset + prefix.length)
          run.encodeValue(i, slab, valueAt)
          batch.put(slab.subarray(offset, valueAt), slab.subarray(valueAt, valueAt + 8))
          offset = valueAt + 8
        }
        if (batch.length >= BATCH_ENTRIES) {
          await inFlight
          throwIfAborted(signal)
          if (this.abandoned) return
          inFlight = batch.write()
          batch = this.db.batch()
          shared = this.nothingKeepsPuts()
          // the batch before the one in flight is written: its slab is free again
          turn ^= 1
          slab = slabs[turn]!
          offset = 0
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

  /**
   * No prewrite hook and no 'write' listener: nothing holds on to a batch's
   * keys and values once put() returns. (`noop` is how abstract-level's own
   * batches tell a hook without functions; should it go, this answers no and
   * every put gets bytes of its own again.)
   */
  private nothingKeepsPuts (): boolean {
    return (this.db.hooks.prewrite as { noop?: unknown }).noop === true && this.db.listenerCount('write') === 0
  }
}
