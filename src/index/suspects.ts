/**
 * The keys a replica changed lately by writes other than the agent's own
 * fixes (drift behind its back, a competing write path, replication), each
 * with its entry hash now. When the replica's root moves away from its
 * source's, these are where the drift most likely is: a sync asks the
 * source about them by key first (sync/by-keys.ts), and narrows only when
 * the roots still differ after that.
 *
 * Only a shortcut, never the truth: a replica that knows no suspects (just
 * started, drift from before the index was built, a source that moved) finds
 * its drift by narrowing as always. Bounded: past `limit` keys the set is
 * dropped and stays unusable until the replica is level again, since a key
 * left out would only be found by narrowing anyway.
 */
import type { Suspect } from '../sync/by-keys.ts'
import { latin1Of } from '../util/bytes.ts'

/** Suspects held at most by default: some 100 bytes each, and their rows. */
export const SUSPECTS_LIMIT = 100_000
/** Bytes of rows the suspects keep at most; past it, new suspects keep none (the policy then reads them from the store). */
export const SUSPECT_ROW_BYTES = 32 * 1024 * 1024

export class SuspectKeys {
  private readonly keys = new Map<string, Suspect>()
  private overflowed = false
  private rowBytes = 0

  constructor (private readonly limit = SUSPECTS_LIMIT) {}

  get size (): number { return this.keys.size }

  /**
   * A key written here by someone else, with the row it has now (null: the
   * write deleted it) and that row's entry hash. The row is kept while the
   * suspects' rows stay under SUSPECT_ROW_BYTES: it is this replica's row as
   * the index saw it, which the policy weighs instead of reading it again.
   * `id`: latin1Of(key), where the caller has it. `version`: the store's
   * version of the row as read (RowChange.version), kept with the row.
   */
  note (key: Uint8Array, row: Uint8Array | null, entry: bigint | undefined, id = latin1Of(key), version?: string): void {
    if (this.overflowed) return
    this.forgetRow(this.keys.get(id))
    const keep = row === null || this.rowBytes + row.length <= SUSPECT_ROW_BYTES
    if (keep && row !== null) this.rowBytes += row.length
    this.keys.set(id, !keep ? { key, entry } : version === undefined ? { key, entry, row } : { key, entry, row, version })
    if (this.keys.size > this.limit) { this.overflowed = true; this.keys.clear(); this.rowBytes = 0 }
  }

  private forgetRow (s: Suspect | undefined): void {
    if (s?.row != null) this.rowBytes -= s.row.length
  }

  /** A key written by the agent's own fix: as the source has it, no longer a suspect. */
  settle (key: Uint8Array, id?: string): void {
    if (this.keys.size === 0) return
    id ??= latin1Of(key)
    this.forgetRow(this.keys.get(id))
    this.keys.delete(id)
  }

  /**
   * Drops suspects once asked about, unless written again meanwhile (a newer
   * note replaced the one asked about).
   */
  answered (asked: readonly Suspect[]): void {
    for (const s of asked) {
      const id = latin1Of(s.key)
      if (this.keys.get(id) === s) { this.forgetRow(s); this.keys.delete(id) }
    }
  }

  /** The replica is level with its source (or is the source): nothing is suspect, and the set is usable again. */
  clear (): void {
    this.keys.clear()
    this.overflowed = false
    this.rowBytes = 0
  }

  /** Every suspect, when the set is usable and holds at most `max`; undefined otherwise (narrow instead). */
  take (max: number): Suspect[] | undefined {
    if (this.overflowed || this.keys.size === 0 || this.keys.size > max) return undefined
    return [...this.keys.values()]
  }
}
