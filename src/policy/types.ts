/**
 * The policy engine's input and output. Kept apart from the engine so that
 * its small modules can share them without importing one another.
 */
import type { RowCodec } from '../digest/row-codec.ts'
import type { PlannedFix } from './restore.ts'

export type PolicyRule = 'restore' | 'merge' | 'review'

/** One key on which this replica and the source of truth differ. */
export interface DriftRow {
  /** Canonical key bytes. */
  key: Uint8Array
  /** The SoT's canonical row; undefined when the SoT lacks the key (a local extra row). */
  sot?: Uint8Array
  /** This replica's canonical row; undefined when missing here. */
  local?: Uint8Array
  /** The store's version of `local` as read (RowChange.version), where known; not weighed, passed on to the fix. */
  localVersion?: string
}

export interface PolicyTolerance {
  /** Rows whose event time is younger than this are in flight; 0 turns the window off. */
  graceMs: number
  /** Consecutive rounds (this one included) a key must be seen apart, unchanged, before it is fixed. */
  confirmations: number
  /** A fix of at most this many rows is reported, not applied. */
  acceptableRows: number
}

export interface PolicyRisk {
  maxRows?: number
  maxShare?: number
  reviewDeletes: boolean
  growthFactor?: number
  history: number
}

export interface PolicyInput {
  codec: RowCodec
  rule: PolicyRule
  tolerance: PolicyTolerance
  risk: PolicyRisk
  /** The exact difference for one dataset (or one partition of it), any order. */
  rows: DriftRow[]
  /** ms since the epoch; the engine reads no clock of its own. */
  now: number
  /** Rows in the partition (or dataset) on this replica, for maxShare. */
  totalRows: number
  /** Row counts of the last applied fixes, oldest first; the last `risk.history` are used. */
  recentFixRows: number[]
  /**
   * The `sightings` of the previous call. Each entry is keyed by a sighting id,
   * `<key hex>:<SoT row digest hex or ->:<local row digest hex or ->`
   * (sightingKeyHex gives the key back), and counts the consecutive earlier
   * rounds the key was seen apart with exactly those digests: a change on
   * either side is a new id, so its count restarts.
   */
  sightings: ReadonlyMap<string, number>
  /** Key hex of rows an operator rolled back: any fix touching them goes to review. */
  heldKeys?: ReadonlySet<string>
}

export interface DeferredRows {
  /** Event time within the grace window: not drift yet. */
  inFlight: number
  /** Seen apart in fewer consecutive rounds than `confirmations`. */
  unconfirmed: number
  /** merge: the local version is the later write (or the SoT lacks the row), so it stays. */
  keptLocal: number
}

export interface Decision {
  action: 'none' | 'apply' | 'review'
  /** Sorted by key, split at MAX_FIX_ROWS: applied (apply) or proposed (review); [] for none. */
  fixes: PlannedFix[]
  /** Why review, or why nothing is applied; stable wording, stable order. */
  reasons: string[]
  /** Rows that differ, excluding those in the grace window. */
  drift: number
  deferred: DeferredRows
  /**
   * The state to pass to the next call: only keys still apart and outside
   * the grace window; empty when `confirmations` is 1 (a first sighting
   * confirms, so no count is kept).
   */
  sightings: Map<string, number>
}
