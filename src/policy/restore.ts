/**
 * The `restore` rule: the source of truth wins. Upsert its version of every
 * missing or changed row; delete every row it lacks. Deterministic: the fix
 * is sorted by key, so the same difference gives the same fix on any agent.
 */
import { MAX_FIX_ROWS } from '../constants.ts'
import type { NarrowingResult } from '../sync/narrowing.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { objectArray, objectArrayOf } from '../util/object-array.ts'

export interface PlannedFix {
  upserts: Uint8Array[]
  deletes: Uint8Array[]
  /** The canonical key of each upsert, in order, when known (splitFix knows them): spares decoding every row again. */
  upsertKeys?: Uint8Array[]
}

/** A canonical row with its canonical key, so that sorting does not decode it again. */
export interface KeyedRow {
  key: Uint8Array
  row: Uint8Array
}

/** Past this many bytes Buffer.compare's native loop pays for its call; keys are mostly shorter. */
const SHORT_COMPARE_BYTES = 64

/**
 * Unsigned byte order, shorter first on a common prefix: Buffer.compare's
 * order and result (-1, 0, 1), compared in JS while short, where the loop
 * costs less than the call into Buffer.compare (sorting a fix calls this
 * about n log n times).
 */
export function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  if (n > SHORT_COMPARE_BYTES) return Buffer.compare(a, b)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1
}

/** Splits the restore of a difference into fixes of at most `maxRows` rows, each applied atomically. */
export function planRestore (diff: NarrowingResult, codec: RowCodec, maxRows = MAX_FIX_ROWS): PlannedFix[] {
  return splitFix(diff.upserts.map(row => ({ key: codec.keyOfEncodedRow(row), row })), diff.deletes, maxRows)
}

/**
 * Sorts upserts and deletes by key and cuts them into fixes of at most
 * `maxRows` rows, upserts first and then deletes. Sorting makes the fixes a
 * function of the difference alone, whatever order it was found in.
 */
export function splitFix (upserts: readonly KeyedRow[], deletes: readonly Uint8Array[], maxRows = MAX_FIX_ROWS): PlannedFix[] {
  const sorted = objectArrayOf(upserts).sort((a, b) => compareBytes(a.key, b.key))
  // the fixes' arrays (slices of these) are all of one general kind, whatever the input's: a map, slice or spread
  // follows its input's kind (holey from a holey input, small integers when empty), and every consumer of a fix
  // (the audit's images, the index's take, the metrics) was deoptimized by a kind it had not met yet ("wrong map")
  const rows = objectArray<Uint8Array>()
  const upsertKeys = objectArray<Uint8Array>()
  for (const u of sorted) { rows.push(u.row); upsertKeys.push(u.key) }
  const keys = objectArrayOf(deletes).sort(compareBytes)
  const fixes = objectArray<PlannedFix>()
  let u = 0; let d = 0
  while (u < rows.length || d < keys.length) {
    const takeU = Math.min(maxRows, rows.length - u)
    const takeD = Math.min(maxRows - takeU, keys.length - d)
    fixes.push({ upserts: rows.slice(u, u + takeU), deletes: keys.slice(d, d + takeD), upsertKeys: upsertKeys.slice(u, u + takeU) })
    u += takeU; d += takeD
  }
  return fixes
}
