/**
 * Recovery at start: a crash between a fix's intent and its commit leaves the
 * fix in flight in the audit log. Each one is settled against its store's
 * rows (see settle.ts): found applied → commit; found not applied → abort (the
 * next sync redoes it, from fresh rows); anything else → finished by writing
 * its after-images, then committed. No fix is left half-applied.
 *
 * Run it before the dataset workers start, so that nothing of converge writes
 * the stores meanwhile. Idempotent: a settled fix is no longer in flight, so a
 * second run appends nothing. A fix of a dataset no longer configured is left
 * in flight and reported, every time, until its dataset comes back.
 */
import type { RowCodec } from '../digest/row-codec.ts'
import { throwIfAborted } from '../errors.ts'
import type { ReplicaStore } from '../stores/replica-store.ts'
import type { AuditEntry, AuditLog } from './audit-log.ts'
import { withFixLock } from './fix-lock.ts'
import { settleFix, type Settled } from './settle.ts'
import { descends, merge, type VectorClock } from './vector-clock.ts'

export interface RecoveryInit {
  audit: AuditLog
  /** Each configured dataset's store, by dataset name. */
  stores: Map<string, { store: ReplicaStore, codec: RowCodec }>
  region: string
  clock: () => VectorClock
  /** When given, the agent's clock is moved up to any in-flight intent's clock it lags (e.g. restored from an older backup). */
  setClock?: (clock: VectorClock) => Promise<void>
  signal?: AbortSignal
}

export type RecoveryOutcome = Exclude<Settled['outcome'], 'pending'> | 'unknown-dataset'

export interface RecoveryReport {
  fixId: string
  dataset: string
  partition?: string
  correlationId: string
  /** committed: found applied; aborted: found not applied; finished: written now; unknown-dataset: left in flight. */
  outcome: RecoveryOutcome
  /** Rows of the fix (upserts and deletes). */
  rows: number
  /** How the fix's rows were found; absent for an unknown dataset. */
  found?: Settled['rows']
  /** The commit or abort appended; absent for an unknown dataset. */
  entry?: AuditEntry
}

export const RECOVERY_REASONS = {
  applied: 'found applied at restart',
  notApplied: 'found not applied at restart',
  finished: 'found partly applied at restart; finished'
} as const

export async function recoverPendingFixes (init: RecoveryInit): Promise<RecoveryReport[]> {
  const { audit, signal } = init
  const reports: RecoveryReport[] = []
  for await (const intent of audit.pendingFixes({ signal })) {
    throwIfAborted(signal)
    const base = {
      fixId: intent.fixId,
      dataset: intent.dataset,
      ...(intent.partition === undefined ? {} : { partition: intent.partition }),
      correlationId: intent.correlationId,
      rows: (intent.upserts?.length ?? 0) + (intent.deletes?.length ?? 0)
    }
    const target = init.stores.get(intent.dataset)
    if (target === undefined) { reports.push({ ...base, outcome: 'unknown-dataset' }); continue }
    if (init.setClock !== undefined && !descends(init.clock(), intent.clock)) await init.setClock(merge(init.clock(), intent.clock))
    const settled = await withFixLock(audit, intent.fixId, async () => {
      // a fix applied through applyFixOnce meanwhile holds the lock until its commit: look again once we have it
      const now = await audit.fixOf(intent.fixId, { signal })
      if (now === undefined || now.intent.seq !== intent.seq || now.commit !== undefined || now.abort !== undefined) return undefined
      return await settleFix({ audit, store: target.store, codec: target.codec, intent, region: init.region, finish: true, reasons: RECOVERY_REASONS, signal })
    })
    if (settled === undefined) continue
    reports.push({ ...base, outcome: settled.outcome as RecoveryOutcome, found: settled.rows, ...(settled.entry === undefined ? {} : { entry: settled.entry }) })
  }
  return reports
}
