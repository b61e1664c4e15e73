/**
 * The append-only audit log: one sublevel of the agent's LevelDB, entries
 * keyed by sequence number, each carrying the SHA-256 of the previous entry
 * (a hash chain: editing or removing an entry breaks every later link).
 *
 * A fix writes an `intent` (what will change, with after-images and the rows
 * as read just before) before it is applied and a `commit` (with the
 * before-images the store returned) after; or an `abort` when it turned out
 * not to have been applied (see recovery.ts).
 *
 * Lookups by fix go through a derived index (fix-index.ts) written in the same
 * batch as each entry; a log from before the index is indexed on first use.
 */
import { createHash } from 'node:crypto'
import { pack, unpack } from 'msgpackr'
import { AuditChainError, throwIfAborted } from '../errors.ts'
import type { ByteSublevel, StateDb } from '../index/state-db.ts'
import { SerialQueue } from '../util/serial.ts'
import { FixIndex, seqBytes, seqOf, type IndexOp } from './fix-index.ts'
import type { VectorClock } from './vector-clock.ts'

export type AuditKind = 'intent' | 'commit' | 'abort' | 'review' | 'review-approved' | 'review-rejected' | 'review-refused' | 'quarantine' | 'quarantine-lifted'

/** Every kind, for validating what an operator types; the `satisfies` makes the compiler flag a kind left out. */
export const AUDIT_KINDS = Object.keys({
  intent: true, commit: true, abort: true, review: true, 'review-approved': true, 'review-rejected': true, 'review-refused': true, quarantine: true, 'quarantine-lifted': true
} satisfies Record<AuditKind, true>) as AuditKind[]

export interface AuditRecord {
  kind: AuditKind
  fixId: string
  correlationId: string
  dataset: string
  region: string
  clock: VectorClock
  /** The peer whose rows were taken as canonical. */
  sourceRegion?: string
  rule?: string
  detected?: { missing: number, changed: number, extra: number }
  /** Canonical rows written by the fix. */
  upserts?: Uint8Array[]
  /** Canonical keys deleted by the fix. */
  deletes?: Uint8Array[]
  /**
   * Before-images, per upsert key then per delete key; null where the row was
   * absent. On an intent: the rows as read just before applying (so a restart
   * can tell whether the fix landed). On a commit: what the fix replaced.
   * Intents written before this field existed have none.
   */
  before?: Array<Uint8Array | null>
  /**
   * On a commit: the upserts the store holds otherwise than written (a
   * trigger, a type that rounds or cuts: ApplyResult.rewritten), each as
   * [its position among the upserts, the row as stored]. What the fix left
   * is these rows, not the upserts: a rollback checks the store against them.
   */
  stored?: Array<[number, Uint8Array]>
  storeSeq?: number
  reason?: string
  /** The partition value a fix of a partitioned dataset belongs to. */
  partition?: string
  /** On a rollback fix (rule 'rollback'): the fix id it rolls back. */
  rollbackOf?: string
  /** Who made the fix happen: an approver's name, or 'converge' for the agent itself. */
  by?: string
  /** The review item the fix or event belongs to. */
  reviewId?: string
}

export interface AuditEntry extends AuditRecord {
  seq: number
  at: number
  prevHash: string
  hash: string
}

/** What the log knows of one fix: its latest intent and what became of it. */
export interface FixEntries {
  intent: AuditEntry
  /** The commit after the intent, when the fix was applied. */
  commit?: AuditEntry
  /** The abort after the intent, when it was found not applied. */
  abort?: AuditEntry
}

export interface AuditFilter {
  dataset?: string
  /** Entries appended at or after this time (ms since the epoch). */
  since?: number
  /** Entries appended before this time (ms since the epoch). */
  until?: number
  fixId?: string
  correlationId?: string
  /** An AuditKind (a string, so a filter can come straight from a query string: another kind matches nothing). */
  kind?: string
  /** At most this many entries. */
  limit?: number
  /** Newest first (then `limit` keeps the latest). */
  reverse?: boolean
}

/** The outcome of walking the chain: intact, or where it first breaks. */
export type ChainCheck =
  | { intact: true, entries: number }
  | { intact: false, /** entries that verified before the break */ entries: number, seq: number, problem: string, /** the entry at the break, when it still decodes */ entry?: AuditEntry }

interface Options { signal?: AbortSignal }

interface AppendOptions extends Options {
  /**
   * On disk before append returns (LevelDB's sync write: its log is
   * fsynced), not only handed to the OS. A fix's intent is: the store
   * commits the fix durably, and an intent lost with the OS (a power cut)
   * would leave that fix with no audit entry to settle or roll it back.
   * Other entries can be lost with the tail of the log; what a lost commit
   * said, settling its intent finds again.
   */
  durable?: boolean
}

const GENESIS = '0'.repeat(64)
/** Entries indexed per batch when indexing a log written before the index existed. */
const CATCH_UP_BATCH = 500

function hashOf (body: Omit<AuditEntry, 'hash'>): string {
  return createHash('sha256').update(pack(body)).digest('hex')
}

/** msgpackr writes every plain object as a map 16 (this byte, then the entry count in two bytes), whatever its size. */
const MAP16 = 0xde

/**
 * An entry's stored bytes and hash from one encoding of its body: the entry
 * is the body with `hash` added last, so pack(entry) is pack(body) with the
 * map's entry count one higher and the key and value of `hash` appended.
 * This builds those bytes instead of packing a fix's rows a second time
 * (a 10,000-row intent is over a megabyte); when the body's encoding does
 * not start as that map, it packs the entry as before. Tested to give
 * exactly pack(entry).
 */
export function encodeEntry (body: Omit<AuditEntry, 'hash'>): { entry: AuditEntry, bytes: Uint8Array } {
  const bodyBytes = pack(body)
  const hash = createHash('sha256').update(bodyBytes).digest('hex')
  const entry: AuditEntry = { ...body, hash }
  const count = bodyBytes.length >= 3 && bodyBytes[0] === MAP16 ? (bodyBytes[1]! << 8) | bodyBytes[2]! : -1
  if (count < 0 || count + 1 > 0xffff || Object.keys(body).length !== count || 'hash' in body) return { entry, bytes: pack(entry) }
  const tail = [pack('hash'), pack(hash)]
  const bytes = Buffer.concat([bodyBytes, ...tail])
  bytes[1] = (count + 1) >> 8
  bytes[2] = (count + 1) & 0xff
  return { entry, bytes }
}

/** The stored bytes as an entry, or undefined when they are not one (msgpack decodes some garbage to a bare value). */
function unpackEntry (value: Uint8Array): AuditEntry | undefined {
  let decoded: unknown
  try { decoded = unpack(value) } catch { return undefined }
  const e = decoded as Partial<AuditEntry> | null
  return typeof e === 'object' && e !== null && typeof e.seq === 'number' && typeof e.hash === 'string' && typeof e.kind === 'string' ? e as AuditEntry : undefined
}

function decode (seq: number, value: Uint8Array): AuditEntry {
  const entry = unpackEntry(value)
  if (entry === undefined) throw new AuditChainError(`audit entry ${seq} cannot be decoded; run \`converge audit verify\``)
  return entry
}

export class AuditLog {
  private readonly state: StateDb
  private readonly entries: ByteSublevel
  private readonly index: FixIndex
  private readonly appends = new SerialQueue()
  private lastSeq = 0
  private lastHash = GENESIS
  /** Every entry up to this seq is in the fix index. */
  private indexedThrough = 0

  constructor (state: StateDb) {
    this.state = state
    this.entries = state.sublevel('audit')
    this.index = new FixIndex(state.sublevel('audit-index'))
  }

  async open (options: Options = {}): Promise<void> {
    throwIfAborted(options.signal)
    for await (const [key, value] of this.entries.iterator({ reverse: true, limit: 1 })) {
      const last = decode(seqOf(key), value)
      this.lastSeq = last.seq
      this.lastHash = last.hash
    }
    this.indexedThrough = await this.index.indexedThrough()
  }

  /** Sequence number of the last entry (0 when the log is empty). */
  get length (): number { return this.lastSeq }

  async append (record: AuditRecord, options: AppendOptions = {}): Promise<AuditEntry> {
    return await this.appends.run(async () => {
      throwIfAborted(options.signal)
      await this.catchUpIndex()
      // undefined fields are left out so that the hashed bytes survive a round trip through storage
      const defined = Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as unknown as AuditRecord
      const body = { ...defined, seq: this.lastSeq + 1, at: Date.now(), prevHash: this.lastHash }
      const { entry, bytes } = encodeEntry(body)
      // the entry and its index entries in one batch: the index never disagrees with the log
      await this.state.db.batch([
        { type: 'put', sublevel: this.entries, key: seqBytes(entry.seq), value: bytes },
        ...this.index.opsFor(entry),
        this.index.markOp(entry.seq)
      ], { sync: options.durable === true })
      this.lastSeq = entry.seq
      this.lastHash = entry.hash
      this.indexedThrough = entry.seq
      return entry
    })
  }

  async * read (options: { since?: number, reverse?: boolean, limit?: number, signal?: AbortSignal } = {}): AsyncGenerator<AuditEntry> {
    const range = options.since === undefined ? {} : { gt: seqBytes(options.since) }
    for await (const [key, value] of this.entries.iterator({ ...range, reverse: options.reverse ?? false, limit: options.limit ?? -1 })) {
      throwIfAborted(options.signal)
      yield decode(seqOf(key), value)
    }
  }

  /** The entry at `seq`, if there is one. */
  async entry (seq: number, options: Options = {}): Promise<AuditEntry | undefined> {
    throwIfAborted(options.signal)
    const value = await this.entries.get(seqBytes(seq))
    return value === undefined ? undefined : decode(seq, value)
  }

  /**
   * Entries matching every given filter, in seq order (newest first with
   * `reverse`). A fix id is looked up in the index; anything else reads the
   * log through, since `at` is wall-clock time and need not grow with seq.
   */
  async * query (filter: AuditFilter = {}, options: Options = {}): AsyncGenerator<AuditEntry> {
    const limit = filter.limit ?? Infinity
    if (limit <= 0) return
    let found = 0
    const source = filter.fixId === undefined
      ? this.read({ reverse: filter.reverse ?? false, ...options })
      : this.entriesAt(await this.seqsOfFix(filter.fixId, filter.reverse ?? false, options), options)
    for await (const entry of source) {
      if (!matches(entry, filter)) continue
      yield entry
      if (++found >= limit) return
    }
  }

  /** The latest intent of a fix and its commit or abort; undefined when the log has no intent for it. */
  async fixOf (fixId: string, options: Options = {}): Promise<FixEntries | undefined> {
    const entries: AuditEntry[] = []
    for await (const e of this.entriesAt(await this.seqsOfFix(fixId, false, options), options)) entries.push(e)
    let at = -1
    entries.forEach((e, i) => { if (e.kind === 'intent') at = i })
    if (at < 0) return undefined
    const fix: FixEntries = { intent: entries[at]! }
    const outcome = entries.slice(at + 1).find(e => e.kind === 'commit' || e.kind === 'abort')
    if (outcome?.kind === 'commit') fix.commit = outcome
    if (outcome?.kind === 'abort') fix.abort = outcome
    return fix
  }

  /** The commit of the first rollback of a fix that was applied, if any. */
  async rolledBackBy (fixId: string, options: Options = {}): Promise<AuditEntry | undefined> {
    await this.ensureIndexed(options)
    for (const seq of await this.index.rollbacksOf(fixId)) {
      const commit = await this.entry(seq, options)
      if (commit?.kind === 'commit' && commit.rollbackOf === fixId) return commit
    }
    return undefined
  }

  /** The intents of fixes with no commit or abort after them (in flight, or cut short by a crash), oldest first. */
  async * pendingFixes (options: Options = {}): AsyncGenerator<AuditEntry> {
    await this.ensureIndexed(options)
    // the seqs are taken up front, so settling a fix while iterating (which unindexes it) is safe
    yield * this.entriesAt(await this.index.openIntents(), options)
  }

  /**
   * Walks the whole chain and reports the first entry that is missing, does
   * not decode, does not link or does not hash. Also reports entries missing
   * from the end when the index saw more than the log now holds.
   */
  async check (options: Options = {}): Promise<ChainCheck> {
    let prev = GENESIS
    let expectSeq = 1
    for await (const [key, value] of this.entries.iterator()) {
      throwIfAborted(options.signal)
      const seq = seqOf(key)
      const entries = expectSeq - 1
      if (seq !== expectSeq) return { intact: false, entries, seq: expectSeq, problem: `audit entry ${expectSeq} is missing (found ${seq})` }
      const entry = unpackEntry(value)
      if (entry === undefined) return { intact: false, entries, seq, problem: `audit entry ${seq} cannot be decoded` }
      if (entry.seq !== seq) return { intact: false, entries, seq, problem: `audit entry ${seq} was altered`, entry }
      if (entry.prevHash !== prev) return { intact: false, entries, seq, problem: `audit entry ${seq} does not link to entry ${seq - 1}`, entry }
      const { hash, ...body } = entry
      if (hashOf(body) !== hash) return { intact: false, entries, seq, problem: `audit entry ${seq} was altered`, entry }
      prev = hash
      expectSeq++
    }
    const last = expectSeq - 1
    const indexed = await this.index.indexedThrough()
    if (indexed > last) return { intact: false, entries: last, seq: last + 1, problem: `audit entries ${last + 1} to ${indexed} are missing (the log ends at ${last})` }
    return { intact: true, entries: last }
  }

  /** Walks the whole chain; throws AuditChainError at the first entry that does not link or hash. */
  async verify (options: Options = {}): Promise<number> {
    const result = await this.check(options)
    if (!result.intact) throw new AuditChainError(result.problem)
    return result.entries
  }

  private async seqsOfFix (fixId: string, reverse: boolean, options: Options): Promise<number[]> {
    await this.ensureIndexed(options)
    const seqs = await this.index.entriesOf(fixId)
    return reverse ? seqs.reverse() : seqs
  }

  private async * entriesAt (seqs: number[], options: Options): AsyncGenerator<AuditEntry> {
    for (const seq of seqs) {
      const entry = await this.entry(seq, options)
      if (entry !== undefined) yield entry
    }
  }

  private async ensureIndexed (options: Options): Promise<void> {
    throwIfAborted(options.signal)
    if (this.indexedThrough < this.lastSeq) await this.appends.run(async () => { await this.catchUpIndex() })
  }

  /** Indexes the entries a log written before the index holds; runs in the append queue. */
  private async catchUpIndex (): Promise<void> {
    if (this.indexedThrough >= this.lastSeq) return
    let ops: IndexOp[] = []
    let count = 0
    let through = this.indexedThrough
    const flush = async (): Promise<void> => {
      await this.state.db.batch([...ops, this.index.markOp(through)])
      this.indexedThrough = through
      ops = []
      count = 0
    }
    for await (const [key, value] of this.entries.iterator({ gt: seqBytes(this.indexedThrough) })) {
      const entry = decode(seqOf(key), value)
      ops.push(...this.index.opsFor(entry))
      through = entry.seq
      if (++count >= CATCH_UP_BATCH) await flush()
    }
    if (count > 0) await flush()
  }
}

function matches (e: AuditEntry, f: AuditFilter): boolean {
  return (f.dataset === undefined || e.dataset === f.dataset) &&
    (f.since === undefined || e.at >= f.since) &&
    (f.until === undefined || e.at < f.until) &&
    (f.fixId === undefined || e.fixId === f.fixId) &&
    (f.correlationId === undefined || e.correlationId === f.correlationId) &&
    (f.kind === undefined || e.kind === f.kind)
}
