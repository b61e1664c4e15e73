/**
 * The `restore` rule: the source of truth wins. Upsert its version of every
 * missing or changed row; delete every row it lacks. Deterministic: the fix
 * is sorted by key, so the same difference gives the same fix on any agent.
 */
import { MAX_FIX_ROWS } from '../constants.ts'
import type { NarrowingResult } from '../sync/narrowing.ts'
import type { RowCodec } from '../digest/row-codec.ts'

export interface PlannedFix {
  upserts: Uint8Array[]
  deletes: Uint8Array[]
}

const compareBytes = (a: Uint8Array, b: Uint8Array): number => Buffer.compare(a, b)

/** Splits the restore of a difference into fixes of at most `maxRows` rows, each applied atomically. */
export function planRestore (diff: NarrowingResult, codec: RowCodec, maxRows = MAX_FIX_ROWS): PlannedFix[] {
  const upserts = diff.upserts.map(row => ({ key: codec.keyOfEncodedRow(row), row })).sort((a, b) => compareBytes(a.key, b.key)).map(u => u.row)
  const deletes = [...diff.deletes].sort(compareBytes)
  const fixes: PlannedFix[] = []
  let u = 0; let d = 0
  while (u < upserts.length || d < deletes.length) {
    const takeU = Math.min(maxRows, upserts.length - u)
    const takeD = Math.min(maxRows - takeU, deletes.length - d)
    fixes.push({ upserts: upserts.slice(u, u + takeU), deletes: deletes.slice(d, d + takeD) })
    u += takeU; d += takeD
  }
  return fixes
}
