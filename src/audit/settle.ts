/**
 * Settling a fix whose intent has no commit or abort: the store's rows say
 * what happened. All of them the fix's after-images → it landed (commit). All
 * of them the intent's before-images → nothing landed (abort; the next sync
 * finds the drift again). Anything else → it half landed (a store without
 * transactions) or the rows were written meanwhile; then it is finished by
 * writing the after-images again, or left pending when the caller cannot.
 */
import type { RowCodec } from '../digest/row-codec.ts'
import { FIX_ORIGIN, type ReplicaStore } from '../stores/replica-store.ts'
import type { AuditEntry, AuditLog } from './audit-log.ts'
import { afterImages, beforeImages, differing, fixIdentity, fixKeys, mergedBefore, sameRow, storedOf } from './fix-rows.ts'

export type Settlement = 'committed' | 'aborted' | 'finished' | 'pending'

export interface SettleInit {
  audit: AuditLog
  store: ReplicaStore
  codec: RowCodec
  /** The intent of the fix, with no commit or abort after it. */
  intent: AuditEntry
  /** The region appending the outcome. */
  region: string
  /** Write the after-images when the rows are neither state (recovery does); otherwise leave the fix pending. */
  finish: boolean
  /** The reason recorded for each outcome. */
  reasons: { applied: string, notApplied: string, finished: string }
  signal?: AbortSignal
}

export interface Settled {
  outcome: Settlement
  /** The commit or abort appended (none when left pending). */
  entry?: AuditEntry
  /** The fix's rows found as it leaves them, as they were before it (and not after), and neither. */
  rows: { applied: number, notApplied: number, other: number }
}

export async function settleFix (init: SettleInit): Promise<Settled> {
  const { audit, store, codec, intent, signal } = init
  const keys = fixKeys(intent, codec)
  const after = afterImages(intent)
  const before = beforeImages(intent, keys.length)
  const current = await store.get(keys, { signal })
  const rows = { applied: 0, notApplied: 0, other: 0 }
  current.forEach((row, i) => {
    if (sameRow(row, after[i])) rows.applied++
    else if (before !== undefined && sameRow(row, before[i])) rows.notApplied++
    else rows.other++
  })
  const common = { ...fixIdentity(intent), region: init.region }
  // the after-state first: where a row's before and after are the same, the fix is done either way
  if (differing(current, after).length === 0) {
    const entry = await audit.append({ ...common, kind: 'commit', before, reason: init.reasons.applied })
    return { outcome: 'committed', entry, rows }
  }
  if (before !== undefined && differing(current, before).length === 0) {
    const entry = await audit.append({ ...common, kind: 'abort', reason: init.reasons.notApplied })
    return { outcome: 'aborted', entry, rows }
  }
  if (!init.finish) return { outcome: 'pending', rows }
  const applied = await store.apply({ upserts: intent.upserts ?? [], deletes: intent.deletes ?? [], origin: FIX_ORIGIN }, { signal })
  // once written, the commit is appended whatever the signal says: a fix is never left half-recorded
  const entry = await audit.append({ ...common, kind: 'commit', before: mergedBefore(before, after, applied.before), ...storedOf(applied), storeSeq: applied.seq, reason: init.reasons.finished })
  return { outcome: 'finished', entry, rows }
}
