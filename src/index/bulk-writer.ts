/**
 * Bulk loading of index pages (page.ts) for a full index rebuild: an
 * external sort of the scanned entries by key hash, with bounded memory.
 *
 * Entries are gathered into runs held in typed arrays. A table that fits
 * one run (RUN_MAX_ENTRIES, a million rows) is ordered in memory and written
 * page by page. A larger one is spilled: each full run is ordered and written
 * to a file while the next one fills (at most two runs are held), and at the
 * end the files are merged, page by page, into the index. Pages are written
 * in ascending key order, so LevelDB flushes them into tables that overlap
 * nothing and are never rewritten (the index's meta record, written just
 * before, sorts below every page).
 *
 * The page level is only known at the end, from the row count (the tree's
 * depth): runs are kept in entry order, and pages are cut as they are written.
 * Runs after the first are smaller (LATER_RUN_ENTRIES): two small runs take a
 * fraction of the memory of two large ones.
 */
import { randomUUID } from 'node:crypto'
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { IndexPageFormatError, throwIfAborted } from '../errors.ts'
import { nodeOfHigh32 } from '../tree/merkle-tree.ts'
import { ENTRY_HEAD_MAX, PAGE_KEY_BYTES, putVarint, varintSize } from './page.ts'
import { ReusedBatch } from './reused-batch.ts'
import type { ByteSublevel, StateDb } from './state-db.ts'

/** Entries of the first run: 40 bytes each and 8 more while it is ordered, about 50 MB (a table of up to a million rows is one run). */
export const RUN_MAX_ENTRIES = 1 << 20
/** Entries of each later run, about 12 MB. */
export const LATER_RUN_ENTRIES = 1 << 18
/** Bytes of keys too long for an entry's record in one run, for tables with long keys. */
export const RUN_MAX_KEY_BYTES = 32 << 20
/** Bytes of pages per LevelDB write. */
const BATCH_BYTES = 4 << 20
/** Bytes read from or written to a spill file at a time. */
const SPILL_IO_BYTES = 1 << 20
/** Bytes of read buffers of all the runs being merged, each between MIN_READ_BYTES and SPILL_IO_BYTES. */
const MERGE_READ_BYTES = 8 << 20
const MIN_READ_BYTES = 64 << 10

/** Which 32-bit half of a BigUint64Array element is the high one, in this platform's byte order. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1
const HI = LITTLE_ENDIAN ? 1 : 0
const LO = LITTLE_ENDIAN ? 0 : 1

const RADIX_BITS = 16
const RADIX = 1 << RADIX_BITS
/** Buckets of bucketOrder hold this many values on average (fewer: more buckets to count; more: longer insertion sorts). */
const BUCKET_MEAN_LOG2 = 3
/** A bucket larger than this (values bunched, not hashes) sends bucketOrder's caller to the radix sort: insertion sort is quadratic. */
const BUCKET_MAX = 256

/** Positions in order, and the values in that order (their halves; complemented when descending). */
export interface SortedU64 { order: Uint32Array, highs: Uint32Array, lows: Uint32Array }

/**
 * Positions 0..n-1 ordered by the 64-bit values whose 32-bit halves are
 * `words[stride * i + hi]` and `words[stride * i + lo]` (by default a
 * BigUint64Array's words), ascending or descending, ties in their first
 * order; with the values in that order beside them, so a caller that reads
 * them in order reads memory in order too. Key hashes are spread evenly, so
 * first by their leading bits into buckets of a few values each, then each
 * bucket by insertion sort (one pass over the values that moves them, a
 * third of the four radix passes' time for a million); values bunched into
 * large buckets go through the radix sort instead.
 */
export function sortByU64 (words: Uint32Array, n: number, descending = false, stride = 2, hi = HI, lo = LO): SortedU64 {
  return bucketOrder(words, n, descending, stride, hi, lo) ?? radixOrder(words, n, descending, stride, hi, lo)
}

/**
 * The bucket sort of sortByU64, or undefined when it does not fit the
 * values. Buckets are cut from the high words' bits below those every value
 * shares (the 16 bits a partition value gives the key hashes of a
 * partitioned dataset), about 2^BUCKET_MEAN_LOG2 values to a bucket. The
 * scatter copies each value's words next to its position, so the insertion
 * sorts read memory in order rather than at random.
 */
function bucketOrder (words: Uint32Array, n: number, descending: boolean, stride: number, hi: number, lo: number): SortedU64 | undefined {
  const flip = descending ? 0xffffffff : 0
  let all = 0xffffffff
  let any = 0
  for (let i = 0; i < n; i++) { const h = words[stride * i + hi]!; all &= h; any |= h }
  const shared = Math.clz32(all ^ any)
  const bits = Math.min(RADIX_BITS, Math.max(1, 31 - Math.clz32(n) - BUCKET_MEAN_LOG2))
  if (n < 2 || shared + bits > 32) return undefined
  const shift = 32 - shared - bits
  const mask = (1 << bits) - 1
  // starts[d]: where bucket d begins (bucket d + 1's entry counts bucket d's values at first)
  const starts = new Uint32Array(mask + 2)
  for (let i = 0; i < n; i++) starts[(((words[stride * i + hi]! ^ flip) >>> shift) & mask) + 1]!++
  for (let d = 1; d <= mask + 1; d++) {
    if (starts[d]! > BUCKET_MAX) return undefined
    starts[d] = starts[d]! + starts[d - 1]!
  }
  const next = starts.slice(0, mask + 1)
  const order = new Uint32Array(n)
  const highs = new Uint32Array(n)
  const lows = new Uint32Array(n)
  for (let i = 0; i < n; i++) {
    const h = (words[stride * i + hi]! ^ flip) >>> 0
    const at = next[(h >>> shift) & mask]!++
    order[at] = i
    highs[at] = h
    lows[at] = (words[stride * i + lo]! ^ flip) >>> 0
  }
  for (let d = 0; d <= mask; d++) {
    const end = starts[d + 1]!
    // strictly greater moves on: equal values keep the order the scatter gave them, their first
    for (let x = starts[d]! + 1; x < end; x++) {
      const h = highs[x]!
      const l = lows[x]!
      const p = order[x]!
      let y = x - 1
      for (; y >= starts[d]! && (highs[y]! > h || (highs[y] === h && lows[y]! > l)); y--) {
        highs[y + 1] = highs[y]!
        lows[y + 1] = lows[y]!
        order[y + 1] = order[y]!
      }
      highs[y + 1] = h
      lows[y + 1] = l
      order[y + 1] = p
    }
  }
  return { order, highs, lows }
}

/**
 * The LSD radix sort of sortByU64, in four 16-bit passes. A pass is
 * skipped when every value has the same digit there.
 */
function radixOrder (words: Uint32Array, n: number, descending: boolean, stride: number, hi: number, lo: number): SortedU64 {
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
  const highs = new Uint32Array(n)
  const lows = new Uint32Array(n)
  for (let k = 0; k < n; k++) {
    highs[k] = (words[stride * from[k]! + hi]! ^ flip) >>> 0
    lows[k] = (words[stride * from[k]! + lo]! ^ flip) >>> 0
  }
  return { order: from, highs, lows }
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

  /** Entries in ascending key-hash order, equal hashes by key bytes (as a page holds them). */
  order (): Uint32Array {
    const { order, highs, lows } = sortByU64(this.hashWords, this.length, false, 2, 0, 1)
    // equal 64-bit hashes are astronomically rare, but a page orders them by key: so do the runs
    // (found on the sorted hashes, read in order, not through the positions at random)
    for (let a = 0; a + 1 < order.length;) {
      let b = a + 1
      while (b < order.length && highs[b] === highs[a] && lows[b] === lows[a]) b++
      if (b - a > 1) order.subarray(a, b).sort((x, y) => Buffer.compare(this.keyOf(x), this.keyOf(y)))
      a = b
    }
    return order
  }

  /** The key hash's high 32 bits of entry i. */
  hashHigh (i: number): number { return this.records[i * RECORD_WORDS + HASH_HI]! }

  /** Entry i's key (a view of the run's arrays). */
  keyOf (i: number): Uint8Array {
    const base = i * RECORD_WORDS
    const length = this.records[base + KEY_LENGTH]!
    if (length <= INLINE_KEY_BYTES) return this.recordBytes.subarray((base + KEY_AT) * 4, (base + KEY_AT) * 4 + length)
    const at = this.records[base + KEY_AT]!
    return this.keys.subarray(at, at + length)
  }

  /** Bytes of entry i as a page holds it. */
  entrySize (i: number): number {
    const length = this.records[i * RECORD_WORDS + KEY_LENGTH]!
    return 16 + varintSize(length) + length
  }

  /** Writes entry i as a page holds it (page.ts) at `at`; returns where it ends. */
  encodeEntry (i: number, out: Uint8Array, at: number): number {
    const r = this.records
    const base = i * RECORD_WORDS
    at = putU32(out, at, r[base + HASH_HI]!)
    at = putU32(out, at, r[base + HASH_LO]!)
    at = putU32(out, at, r[base + VALUE_HI]!)
    at = putU32(out, at, r[base + VALUE_LO]!)
    const length = r[base + KEY_LENGTH]!
    at = putVarint(out, at, length)
    if (length > INLINE_KEY_BYTES) {
      out.set(this.keyOf(i), at)
      return at + length
    }
    // a key in the record is a few bytes: copied by a loop, without a view object per entry (a million of them per run)
    const bytes = this.recordBytes
    for (let k = 0, from = (base + KEY_AT) * 4; k < length; k++) out[at++] = bytes[from + k]!
    return at
  }

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

function putU32 (out: Uint8Array, at: number, v: number): number {
  out[at] = v >>> 24
  out[at + 1] = (v >>> 16) & 0xff
  out[at + 2] = (v >>> 8) & 0xff
  out[at + 3] = v & 0xff
  return at + 4
}

function getU32 (b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0
}

/**
 * Cuts an ordered stream of entries into pages at `level` and writes them,
 * ascending, in LevelDB batches of about BATCH_BYTES, one write in flight:
 * two batches, each filled while the other is written, and used again
 * (reused-batch.ts: a new batch per write kept each one's native buffer
 * until a full collection). Puts go to the root database with the sublevel
 * prefix already in the key: a sublevel's chained batch would collect an op
 * object per put and re-check and re-prefix them all at write time.
 */
class PageSink {
  private page = -1
  private buffer = new Uint8Array(1 << 12)
  private length = 0
  private batch: ReusedBatch
  private other: ReusedBatch
  private inFlight: Promise<void> | undefined
  pages = 0

  constructor (db: StateDb['db'], private readonly prefix: Uint8Array, private readonly level: number) {
    this.batch = new ReusedBatch(db)
    this.other = new ReusedBatch(db)
  }

  /** The buffer the page being cut is gathered in (room() may replace it). */
  get bytes (): Uint8Array { return this.buffer }

  /** Room for `size` more bytes of page `page` (the one being cut, or the next) in `bytes`; returns where they go. */
  room (page: number, size: number): number {
    if (page !== this.page) { this.cut(); this.page = page }
    if (this.length + size > this.buffer.length) {
      const bytes = new Uint8Array(Math.max(2 * this.buffer.length, this.length + size))
      bytes.set(this.buffer.subarray(0, this.length))
      this.buffer = bytes
    }
    const at = this.length
    this.length += size
    return at
  }

  get full (): boolean { return this.batch.size >= BATCH_BYTES }

  /** Sends the batch once it is full, after the write before it. */
  async drain (signal?: AbortSignal): Promise<void> {
    if (!this.full) return
    await this.inFlight
    throwIfAborted(signal)
    const sending = this.batch
    this.batch = this.other
    this.other = sending
    this.inFlight = sending.write()
    // handled here so a failed write waits, without an unhandled rejection, for the next drain or finish to throw it
    this.inFlight.catch(() => undefined)
  }

  async finish (signal?: AbortSignal): Promise<void> {
    this.cut()
    await this.inFlight
    this.inFlight = undefined
    throwIfAborted(signal)
    await this.batch.write()
    await this.close()
  }

  async abandon (): Promise<void> {
    await this.inFlight?.catch(() => undefined)
    await this.close().catch(() => undefined)
  }

  private async close (): Promise<void> {
    await this.batch.close()
    await this.other.close()
  }

  /** Puts the page being cut in the batch (which copies it), so its buffer is filled again. */
  private cut (): void {
    if (this.page < 0 || this.length === 0) return
    const key = new Uint8Array(this.prefix.length + PAGE_KEY_BYTES)
    key.set(this.prefix)
    key[this.prefix.length] = this.level
    putU32(key, this.prefix.length + 1, this.page)
    this.batch.put(key, this.buffer.subarray(0, this.length))
    this.pages++
    this.length = 0
  }
}

/** Reads one spilled run back, entry by entry, through a buffer. */
class SpillReader {
  private buffer: Uint8Array
  private start = 0
  private end = 0
  private eof = false
  /** The current entry: where it starts in `bytes`, its size, where its key starts, its hash's halves. */
  at = 0
  size = 0
  keyAt = 0
  hi = 0
  lo = 0

  private constructor (private readonly file: FileHandle, private readonly path: string, bufferBytes: number) {
    this.buffer = new Uint8Array(bufferBytes)
  }

  static async open (path: string, bufferBytes: number): Promise<SpillReader> {
    return new SpillReader(await open(path, 'r'), path, bufferBytes)
  }

  get bytes (): Uint8Array { return this.buffer }

  /** Makes the next entry current: true; false at the end; undefined when more must be read first (fill()). */
  advance (): boolean | undefined {
    const b = this.buffer
    const at = this.start
    const left = this.end - at
    if (left === 0) return this.eof ? false : undefined
    if (left < ENTRY_HEAD_MAX && !this.eof) return undefined
    const damaged = (): IndexPageFormatError => new IndexPageFormatError(`spill file ${this.path} ends inside an entry`)
    if (left < 17) throw damaged()
    let p = at + 16
    let length = 0
    let shift = 0
    for (;;) {
      if (p >= this.end || shift > 28) throw damaged()
      const c = b[p++]!
      length += (c & 0x7f) * 2 ** shift
      if (c < 0x80) break
      shift += 7
    }
    if (p + length > this.end) {
      if (this.eof) throw damaged()
      return undefined
    }
    this.at = at
    this.keyAt = p
    this.size = p + length - at
    this.hi = getU32(b, at)
    this.lo = getU32(b, at + 4)
    this.start = p + length
    return true
  }

  /** Reads on: keeps the bytes not yet taken, then fills the rest of the buffer (growing it for an entry larger than half of it). */
  async fill (): Promise<void> {
    const left = this.end - this.start
    if (left > this.buffer.length / 2) {
      const bigger = new Uint8Array(this.buffer.length * 2)
      bigger.set(this.buffer.subarray(this.start, this.end))
      this.buffer = bigger
    } else {
      this.buffer.copyWithin(0, this.start, this.end)
    }
    this.start = 0
    this.end = left
    const { bytesRead } = await this.file.read(this.buffer, this.end, this.buffer.length - this.end, null)
    this.end += bytesRead
    if (bytesRead === 0) this.eof = true
  }

  async close (): Promise<void> { await this.file.close() }
}

/** Whether reader a's current entry comes before b's: by hash, then key bytes. */
function before (a: SpillReader, b: SpillReader): boolean {
  if (a.hi !== b.hi) return a.hi < b.hi
  if (a.lo !== b.lo) return a.lo < b.lo
  return Buffer.compare(a.bytes.subarray(a.keyAt, a.at + a.size), b.bytes.subarray(b.keyAt, b.at + b.size)) < 0
}

/** A binary min-heap of spill readers by their current entry. */
class ReaderHeap {
  readonly items: SpillReader[] = []

  push (r: SpillReader): void {
    const h = this.items
    h.push(r)
    for (let i = h.length - 1; i > 0;) {
      const parent = (i - 1) >> 1
      if (!before(h[i]!, h[parent]!)) break
      [h[i], h[parent]] = [h[parent]!, h[i]!]
      i = parent
    }
  }

  /** Restores the order after the top's current entry moved on. */
  settleTop (): void {
    const h = this.items
    for (let i = 0; ;) {
      const l = 2 * i + 1
      let least = i
      if (l < h.length && before(h[l]!, h[least]!)) least = l
      if (l + 1 < h.length && before(h[l + 1]!, h[least]!)) least = l + 1
      if (least === i) return
      [h[i], h[least]] = [h[least]!, h[i]!]
      i = least
    }
  }

  popTop (): void {
    const last = this.items.pop()!
    if (this.items.length > 0) { this.items[0] = last; this.settleTop() }
  }
}

/** Makes a reader's next entry current, reading on as needed; false at its end. */
async function nextEntry (r: SpillReader): Promise<boolean> {
  let ok = r.advance()
  while (ok === undefined) { await r.fill(); ok = r.advance() }
  return ok
}

export interface BulkWriterLimits {
  /** Entries of the first run (default RUN_MAX_ENTRIES). */
  runEntries?: number
  /** Entries of each later run (default LATER_RUN_ENTRIES, at most runEntries). */
  laterRunEntries?: number
  /** Bytes of long keys per run (default RUN_MAX_KEY_BYTES). */
  runKeyBytes?: number
}

export interface PageWriterInit extends BulkWriterLimits {
  /** A directory of the writer's own for spilled runs: created when needed, removed at the end. */
  spillDir: string
}

export class PageBulkWriter {
  private readonly db: StateDb['db']
  private readonly prefix: Uint8Array
  private readonly spillDir: string
  private readonly laterRunEntries: number
  private readonly runKeyBytes: number
  private run: EntryRun
  /** The spill of the run before the current one, while the current one fills. */
  private spilling: Promise<void> | undefined
  /** The run that spill is (or was) writing. */
  private spilledRun: EntryRun | undefined
  private readonly spills: string[] = []
  private abandoned = false
  private sink: PageSink | undefined

  constructor (db: StateDb['db'], sublevel: ByteSublevel, init: PageWriterInit) {
    this.db = db
    // the sublevel's global prefix is ASCII (abstract-level requires it), so its UTF-8 bytes are the key prefix
    this.prefix = new TextEncoder().encode(sublevel.prefix)
    this.spillDir = init.spillDir
    const runEntries = init.runEntries ?? RUN_MAX_ENTRIES
    this.laterRunEntries = init.laterRunEntries ?? Math.min(runEntries, LATER_RUN_ENTRIES)
    this.runKeyBytes = init.runKeyBytes ?? RUN_MAX_KEY_BYTES
    this.run = new EntryRun(runEntries, this.runKeyBytes)
  }

  /** Runs spilled to files so far. */
  get spilled (): number { return this.spills.length }

  /** Pages written by finish(). */
  get pages (): number { return this.sink?.pages ?? 0 }

  /** Adds an entry (key hash, key, entry hash) to the current run. Call flush() between batches of puts, so a full run gets spilled. */
  put (keyHash: bigint, key: Uint8Array, entry: bigint): void {
    this.run.add(keyHash, key, entry)
  }

  /** Once the current run is full: waits for the spill before it, then starts spilling this one. */
  async flush (options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.run.full) await this.spill(options.signal)
  }

  /** Writes every page at `level`: from the run in memory, or by merging the spilled runs (which are then removed). */
  async finish (level: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    const { signal } = options
    await this.spilling
    const sink = this.sink = new PageSink(this.db, this.prefix, level)
    if (this.spills.length === 0) {
      const run = this.run
      for (const i of run.order()) {
        const at = sink.room(nodeOfHigh32(run.hashHigh(i), level), run.entrySize(i))
        run.encodeEntry(i, sink.bytes, at)
        if (sink.full) await sink.drain(signal)
      }
    } else {
      if (this.run.length > 0) { await this.spill(signal); await this.spilling }
      // every run is on disk: their arrays (up to a million entries) are not needed for the merge
      this.run = new EntryRun(1, this.runKeyBytes, 1)
      this.spilledRun = undefined
      await this.merge(sink, level, signal)
    }
    await sink.finish(signal)
    await this.removeSpills()
  }

  /** After a failure: stops, waits out (ignoring) the work in flight, and removes the spills. */
  async abandon (): Promise<void> {
    this.abandoned = true
    await this.spilling?.catch(() => undefined)
    await this.sink?.abandon()
    await this.removeSpills()
  }

  private async removeSpills (): Promise<void> {
    if (this.spills.length > 0) await rm(this.spillDir, { recursive: true, force: true })
    this.spills.length = 0
  }

  private async spill (signal?: AbortSignal): Promise<void> {
    await this.spilling
    // the run spilled before is done with: a later run fills its arrays again, so at most two later runs are ever allocated
    const full = this.run
    const spare = this.spilledRun?.maxEntries === this.laterRunEntries ? this.spilledRun : undefined
    this.run = spare?.reset() ?? new EntryRun(this.laterRunEntries, this.runKeyBytes, this.laterRunEntries)
    this.spilledRun = full
    const path = join(this.spillDir, `run-${this.spills.length}-${randomUUID()}`)
    this.spills.push(path)
    this.spilling = this.writeRun(full, path, signal)
    // handled here so a failed spill waits, without an unhandled rejection, for the next flush or finish to throw it
    this.spilling.catch(() => undefined)
  }

  /** Writes a run to a file, its entries in page order, as pages hold them. */
  private async writeRun (run: EntryRun, path: string, signal?: AbortSignal): Promise<void> {
    await mkdir(this.spillDir, { recursive: true })
    const file = await open(path, 'w')
    try {
      let chunk = new Uint8Array(SPILL_IO_BYTES)
      let used = 0
      for (const i of run.order()) {
        const size = run.entrySize(i)
        if (used + size > chunk.length) {
          throwIfAborted(signal)
          if (this.abandoned) return
          await file.write(chunk, 0, used)
          used = 0
          // an entry larger than the chunk (a very long key) gets a chunk of its size
          if (size > chunk.length) chunk = new Uint8Array(size)
        }
        used = run.encodeEntry(i, chunk, used)
      }
      if (used > 0) await file.write(chunk, 0, used)
    } finally {
      await file.close()
    }
  }

  /** Merges the spilled runs, each in page order, into pages. */
  private async merge (sink: PageSink, level: number, signal?: AbortSignal): Promise<void> {
    const readers: SpillReader[] = []
    try {
      // the readers' buffers together take at most MERGE_READ_BYTES (a 10,000,000-row build merges some 40 runs)
      const bufferBytes = Math.max(MIN_READ_BYTES, Math.min(SPILL_IO_BYTES, Math.floor(MERGE_READ_BYTES / this.spills.length)))
      for (const path of this.spills) readers.push(await SpillReader.open(path, bufferBytes))
      const heap = new ReaderHeap()
      for (const r of readers) if (await nextEntry(r)) heap.push(r)
      while (heap.items.length > 0) {
        const top = heap.items[0]!
        const size = top.size
        const at = sink.room(nodeOfHigh32(top.hi, level), size)
        // entries are a few dozen bytes: a loop copies them without a view object each (ten million of them at 10,000,000 rows)
        const to = sink.bytes
        const from = top.bytes
        if (size <= 64) for (let k = 0, src = top.at; k < size; k++) to[at + k] = from[src + k]!
        else to.set(from.subarray(top.at, top.at + size), at)
        // mostly synchronous: a reader needs its file only once per SPILL_IO_BYTES
        let ok = top.advance()
        if (ok === undefined) ok = await nextEntry(top)
        if (ok) heap.settleTop(); else heap.popTop()
        if (sink.full) await sink.drain(signal)
      }
    } finally {
      for (const r of readers) await r.close().catch(() => undefined)
    }
  }
}
