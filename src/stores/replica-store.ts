/**
 * The seam between converge and a replica's database. Every store speaks in
 * canonical bytes (see RowCodec): rows and keys cross this interface already
 * encoded, so digests are computed the same way whatever the backend.
 *
 * Stores declare what they can do in `supports` instead of callers testing
 * their class.
 */
import type { RowCodec } from '../digest/row-codec.ts'

export interface StoreCapabilities {
  /** Delivers every committed change through `changes()`. */
  changeFeed: boolean
  /** The change feed survives restarts: `changes({ since })` replays what was missed. */
  durableChangeFeed: boolean
  /** `apply()` is atomic: all of it or none of it. */
  transactions: boolean
  /**
   * Rows are kept in key-hash order: `listRanges()` lists a tree node's rows and
   * `scanAt()` gives a scan consistent with a change seq, so the store serves as
   * its own digest index; change batches carry before-images.
   */
  keyHashOrder?: boolean
  /**
   * The change feed re-reads each changed row when it delivers the batch, so a
   * change carries the row as it is then (a later state, or null when gone),
   * not necessarily as that change left it; the later change comes again in
   * its own batch. The digest index converges either way.
   */
  feedRowsAtDelivery?: boolean
}

export interface HashedRow {
  keyHash: bigint
  key: Uint8Array
  row: Uint8Array
}

export interface StoredRow {
  key: Uint8Array
  row: Uint8Array
}

export interface RowChange {
  key: Uint8Array
  /** The row after the change (or as it is at delivery, with feedRowsAtDelivery); null for a delete. */
  row: Uint8Array | null
  /** The row before the batch, where the store records it (stores with keyHashOrder do); null where absent. */
  before?: Uint8Array | null
  /**
   * The row's version as the store read it, where the store has one
   * (PostgreSQL: the xmin of the row's tuple, which every write of the row
   * changes); absent for a delete. A fix planned on this row passes it back
   * (ApplyRequest.expected), so the store need not read the row again.
   */
  version?: string
}

/** A key's row as the caller last read it, with the store's version of it (RowChange.version). */
export interface ExpectedRow {
  /** null: the key had no row. */
  row: Uint8Array | null
  version?: string
}

/** The origin of the agent's own writes (fixes, their settling, rollbacks), as stores record it with each change. */
export const FIX_ORIGIN = 'converge'

export interface ChangeBatch {
  /** Increases with every committed batch. */
  seq: number
  changes: RowChange[]
  /** Who wrote it: FIX_ORIGIN for the agent's own fixes, else undefined. */
  origin?: string
}

export interface ChangesOptions {
  since: number
  signal: AbortSignal
  /**
   * Whether the consumer already took in the agent's own write committed as
   * this seq, exactly as written (DigestIndex.takeApplied). A store that
   * would read that transaction's rows again (PostgreSQL) may deliver it as
   * a batch without changes instead: a fix of 10,000 rows is not read back.
   */
  taken?: (seq: number) => boolean
  /**
   * Called whenever the feed has read the change log and found nothing more
   * to deliver, before it waits for the next write (so at once on a quiet
   * store, and again after each run of batches). A consumer whose feed
   * failed learns from it that the feed works again without waiting for a
   * write to the store.
   */
  caughtUp?: () => void
}

export interface ApplyRequest {
  upserts: Uint8Array[]
  deletes: Uint8Array[]
  origin?: string
  /**
   * Told the write's seq just before it commits, by a store that knows it
   * then (PostgreSQL: the transaction id): the index can then expect to take
   * the write in itself before its own change feed sees the commit
   * (DigestIndex.willTake). Not called when the write fails before commit.
   */
  beforeCommit?: (seq: number) => void
  /**
   * Each key's row (upserts, then deletes) as the caller read it just
   * before planning the write. A store that can check under the write's own
   * row locks that a row is still that version (PostgreSQL) writes without
   * reading the rows first and returns these as the before-images; where any
   * row has moved on since, it reads them all under lock as without it.
   * Other stores ignore it.
   */
  expected?: readonly ExpectedRow[]
}

export interface ApplyResult {
  seq: number
  /** The row before the change, per upsert then per delete, in request order; null where absent. */
  before: Array<Uint8Array | null>
  /**
   * The upserts the store holds otherwise than they were written, by index
   * into the request's upserts, each with the row as stored: a trigger that
   * sets a column, a column type that rounds or cuts what it is given. Left
   * out (or empty) when every row was stored as written.
   */
  rewritten?: RewrittenRow[]
}

/** An upsert the store keeps otherwise than written (ApplyResult.rewritten). */
export interface RewrittenRow {
  /** Its index in the request's upserts. */
  index: number
  /** The canonical row as the store holds it. */
  row: Uint8Array
}

export interface GetOptions {
  signal?: AbortSignal
  /**
   * The caller drops the rows soon (an answer sent at once): a store may
   * hand out views into memory the rows of one read share, rather than a
   * copy of each (PostgreSQL: a copy per row was a third of a read's CPU).
   * A row held for long would keep the others' memory alive.
   */
  shortLived?: boolean
}

export interface StoreOpenOptions {
  signal?: AbortSignal
  /**
   * Read without changing anything in the database: nothing is created (no
   * change capture, no change log, no table, no database file), and
   * apply(), changes(), lastSeq(), trimChanges() and id refuse with
   * StoreReadOnlyError. For comparisons of stores that agents may be
   * following (`converge diff`): trimming their change log would make them
   * rescan.
   */
  readOnly?: boolean
}

export interface ReplicaStore {
  readonly kind: string
  readonly codec: RowCodec
  readonly supports: StoreCapabilities
  /** Identifies this store's data (stable across restarts, new when the store is recreated); known after open(). */
  readonly id: string
  open: (options?: StoreOpenOptions) => Promise<void>
  close: () => Promise<void>
  /** Every row, in batches, in the store's own key order. */
  scan: (options?: { signal?: AbortSignal, batchSize?: number }) => AsyncIterable<StoredRow[]>
  /** Canonical rows for the keys, undefined where absent. */
  get: (keys: Uint8Array[], options?: GetOptions) => Promise<Array<Uint8Array | undefined>>
  /** Upserts and deletes in one atomic batch; returns the before-images. */
  apply: (request: ApplyRequest, options?: { signal?: AbortSignal }) => Promise<ApplyResult>
  /** Sequence number of the last committed change (0 when none). */
  lastSeq: () => Promise<number>
  /** Committed changes after `since`, then new ones as they commit, until the signal aborts. */
  changes: (options: ChangesOptions) => AsyncIterable<ChangeBatch>
  /** Forgets changes up to and including `seq` (the consumer has them). */
  trimChanges: (seq: number) => Promise<void>
  /** With keyHashOrder: for each [start, end) interval, the rows whose key hash lies in it. */
  listRanges?: (ranges: ReadonlyArray<readonly [bigint, bigint]>, options?: { signal?: AbortSignal }) => Promise<HashedRow[][]>
  /** With keyHashOrder: a full scan that reflects exactly the changes up to `seq`. */
  scanAt?: (options?: { signal?: AbortSignal, batchSize?: number }) => Promise<{ seq: number, rows: AsyncIterable<StoredRow[]> }>
  /** Number of rows (may be an estimate where counting is expensive). */
  countRows: (options?: { signal?: AbortSignal }) => Promise<number>
}

/** What taking a table's change capture off took away (removePgCapture, removeSqliteCapture). */
export interface CaptureRemoval {
  /** The objects dropped, in the order dropped: triggers, functions and log tables, the schema converge (PostgreSQL) once no table uses it. */
  dropped: string[]
  /** Changes the log still held for the table (an agent down since, or gone for good). */
  pendingChanges: number
}
