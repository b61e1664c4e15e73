/**
 * The client half of asking by key: the keys this replica changed lately
 * (its suspects, see index/suspects.ts) are asked about directly, in one
 * round trip per MAX_KEYS_PER_REQUEST keys, instead of narrowing down to them
 * level by level. Drift most often sits exactly where local writes went, and
 * the answer then costs no listing of the digest index on either side: the
 * SoT reads the rows for those keys from its store, and sends back those that
 * differ, in the order they were asked about.
 *
 * What is checked here: every row is canonical under the schema, is for a
 * key that was asked about, comes once and in the order asked, and differs
 * from this side's entry;
 * every position the SoT says it lacks is a held key it sent no row for.
 * What cannot be checked here: that the answers add up to the SoT's tree
 * (a key request settles no node). The caller checks that afterwards: when
 * its root after the fix still differs from the SoT's, it narrows, and
 * narrowing checks every node it settles against the SoT's sums.
 */
import { MAX_FRAME_BYTES } from '../constants.ts'
import { ProtocolViolationError } from '../errors.ts'
import { assertCanonicalRow } from '../security/canonical-row.ts'
import { entryHash } from '../digest/hash.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { sameBytes } from '../util/bytes.ts'
import { objectArray } from '../util/object-array.ts'
import { U64Sum } from '../util/u64.ts'
import { MAX_KEYS_PER_REQUEST, type KeyedMessage, type KeysMessage } from './messages.ts'
import type { NarrowingResult } from './narrowing.ts'

/** A key changed here lately, with its entry hash here (undefined: deleted here). */
export interface Suspect {
  key: Uint8Array
  entry: bigint | undefined
  /** The row here as the index took it in (null: deleted here), when it was kept. */
  row?: Uint8Array | null
  /** The store's version of that row, where the store has versions (RowChange.version). */
  version?: string
}

/** Key bytes one request carries at most: a quarter of a frame, leaving room for the entries and framing. */
const MAX_KEY_BYTES_PER_REQUEST = MAX_FRAME_BYTES / 4

/** The suspects cut into requests of at most MAX_KEYS_PER_REQUEST keys and MAX_KEY_BYTES_PER_REQUEST key bytes. */
export function keyRequests (suspects: readonly Suspect[]): Suspect[][] {
  // (general arrays from the start, as in KeyAnswers: see objectArray)
  const out = objectArray<Suspect[]>()
  let part = objectArray<Suspect>()
  let bytes = 0
  for (const s of suspects) {
    if (part.length === MAX_KEYS_PER_REQUEST || (bytes + s.key.length > MAX_KEY_BYTES_PER_REQUEST && part.length > 0)) { out.push(part); part = objectArray(); bytes = 0 }
    part.push(s)
    bytes += s.key.length
  }
  if (part.length > 0) out.push(part)
  return out
}

/** One request's message: held keys first (with their entries), then the absent ones. */
export function keysMessage (part: readonly Suspect[]): { message: KeysMessage, asked: Suspect[] } {
  const held = part.filter(s => s.entry !== undefined)
  const absent = part.filter(s => s.entry === undefined)
  const entries = Buffer.allocUnsafe(8 * held.length)
  held.forEach((s, i) => entries.writeBigUInt64BE(s.entry!, 8 * i))
  return { message: { t: 'keys', held: held.map(s => s.key), entries, absent: absent.map(s => s.key) }, asked: [...held, ...absent] }
}

/** Builds the difference from the answers to each request, checking them as it goes. */
export class KeyAnswers {
  // (every array filled per row is of the general kind from the start: see objectArray)
  private readonly result: NarrowingResult = { upserts: objectArray(), upsertKeys: objectArray(), deletes: objectArray(), missing: 0, changed: 0, extra: 0, unresolved: 0, diverged: [], truncated: false }
  /** This side's rows for the upserts, then for the deletes, as far as the suspects kept them (see NarrowingResult.local). */
  private readonly localUpserts = objectArray<Uint8Array | null | undefined>()
  private readonly localDeletes = objectArray<Uint8Array | null | undefined>()
  /** The versions of those rows, where the suspects had them (see NarrowingResult.localVersions). */
  private readonly versionsUpserts = objectArray<string | undefined>()
  private readonly versionsDeletes = objectArray<string | undefined>()
  /** What applying the difference adds to this side's root. */
  private readonly shiftSum = new U64Sum()
  private shiftCount = 0

  constructor (private readonly codec: RowCodec) {}

  /**
   * Takes the replies to one request (`asked`: held keys first, as
   * keysMessage ordered them). The source answers in the order asked, so
   * each row is found by moving forward through the keys asked: a row for a
   * key not asked about, one out of that order or the same key twice finds
   * none.
   */
  accept (asked: readonly Suspect[], replies: readonly KeyedMessage[]): void {
    const answered = new Uint8Array(asked.length)
    const heldCount = asked.findIndex(s => s.entry === undefined)
    const held = heldCount === -1 ? asked.length : heldCount
    let next = 0
    for (const reply of replies) {
      for (const row of reply.rows ?? []) {
        // a row that is not canonical under the schema is never taken (InvalidSourceRowError ends the exchange)
        assertCanonicalRow(this.codec, row)
        const key = this.codec.keyOfCanonicalRow(row)
        while (next < asked.length && !sameBytes(asked[next]!.key, key)) next++
        if (next === asked.length) throw new ProtocolViolationError('SoT sent a row for a key that was not asked about, out of the order asked, or twice')
        const at = next++
        answered[at] = 1
        const mine = asked[at]!.entry
        const theirs = entryHash(this.codec.keyHash(key), this.codec.rowDigest(row))
        if (theirs === mine) throw new ProtocolViolationError('SoT sent a row that is the same here')
        this.shiftSum.add(theirs)
        if (mine === undefined) this.shiftCount++; else this.shiftSum.subtract(mine)
        this.result.upserts.push(row)
        this.result.upsertKeys!.push(key)
        this.localUpserts.push(asked[at]!.row)
        this.versionsUpserts.push(asked[at]!.version)
        if (mine === undefined) this.result.missing++; else this.result.changed++
      }
    }
    const gone = replies[replies.length - 1]?.gone
    if (replies.slice(0, -1).some(r => r.gone !== undefined)) throw new ProtocolViolationError('SoT sent the keys it lacks before its last frame')
    if (gone === undefined) return
    const view = new DataView(gone.buffer, gone.byteOffset, gone.byteLength)
    let last = -1
    for (let i = 0; i < gone.length; i += 4) {
      const at = view.getUint32(i)
      if (at <= last || at >= held) throw new ProtocolViolationError('SoT named a key it lacks that was not among the held keys asked about, or out of order')
      if (answered[at] === 1) throw new ProtocolViolationError('SoT sent a row for a key it also says it lacks')
      last = at
      this.result.deletes.push(asked[at]!.key)
      this.localDeletes.push(asked[at]!.row)
      this.versionsDeletes.push(asked[at]!.version)
      this.shiftSum.subtract(asked[at]!.entry!)
      this.shiftCount--
      this.result.extra++
    }
  }

  /** The difference, with this side's rows when the suspects kept every one of them. */
  done (): NarrowingResult {
    const local = [...this.localUpserts, ...this.localDeletes]
    const result: NarrowingResult = { ...this.result, rootShift: { count: this.shiftCount, sum: this.shiftSum.toBigInt() } }
    return local.every(r => r !== undefined) ? { ...result, local: local as Array<Uint8Array | null>, localVersions: [...this.versionsUpserts, ...this.versionsDeletes] } : result
  }
}
