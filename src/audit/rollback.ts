/**
 * Rolling back a fix: its before-images are written again, as a new audited
 * fix (rule 'rollback', rollbackOf the fix id) — upserting each row that was
 * there before and deleting each key that was absent.
 *
 * Refused when:
 *   - the fix is unknown (FixNotFoundError) or never committed (FixNotCommittedError);
 *   - it already was rolled back (FixAlreadyRolledBackError, even with force:
 *     roll back the rollback instead, which is a fix like any other);
 *   - any of its rows changed since it was applied (RollbackConflictError),
 *     unless forced: then those later writes are overwritten too.
 *
 * The report lists the keys written, in hex, so that the agent can hold them:
 * the source of truth still has the fix's rows, and the next sync would
 * otherwise undo the rollback.
 */
import { randomUUID } from 'node:crypto'
import type { RowCodec } from '../digest/row-codec.ts'
import { FixAlreadyRolledBackError, FixDatasetMismatchError, FixNotCommittedError, FixNotFoundError, RollbackConflictError, RollbackUnavailableError, throwIfAborted } from '../errors.ts'
import type { ReplicaStore } from '../stores/replica-store.ts'
import { hexOf } from '../util/bytes.ts'
import type { AuditLog } from './audit-log.ts'
import { applyFixOnce } from './apply-fix.ts'
import { withFixLock } from './fix-lock.ts'
import { beforeImages, differing, fixKeys, leftImages } from './fix-rows.ts'
import { tick, type VectorClock } from './vector-clock.ts'

/** Keys named in a conflict message. */
const CONFLICT_SAMPLE = 5

export interface RollbackInit {
  audit: AuditLog
  /** The store of the fix's dataset. */
  store: ReplicaStore
  codec: RowCodec
  region: string
  clock: () => VectorClock
  setClock: (clock: VectorClock) => Promise<void>
  fixId: string
  /** Overwrite rows that changed since the fix. */
  force?: boolean
  /** Who asked: an approver's name. */
  by: string
  reason?: string
  /** When given, the fix must belong to this dataset (a guard against passing the wrong store). */
  dataset?: string
  /** Of the rollback fix; a new one by default. */
  correlationId?: string
  signal?: AbortSignal
}

export interface RollbackReport {
  /** The new fix that restored the rows. */
  fixId: string
  rollbackOf: string
  dataset: string
  partition?: string
  correlationId: string
  /** Every key written, in hex: the upserts' keys, then the deleted keys. */
  keys: string[]
  upserts: number
  deletes: number
  rows: number
  /** Rows that had changed since the fix and were overwritten because of force (0 otherwise). */
  overwritten: number
  /**
   * Restored rows the store holds otherwise than their before-images (a
   * trigger that sets a column, a column type that rounds): its commit
   * records them as stored (AuditRecord.stored).
   */
  storedOtherwise: number
  storeSeq: number
}

export async function rollbackFix (init: RollbackInit): Promise<RollbackReport> {
  const { audit, store, codec, fixId, signal } = init
  // two rollbacks of one fix at once would both find it not rolled back yet
  return await withFixLock(audit, `rollback:${fixId}`, async () => {
    throwIfAborted(signal)
    const fix = await audit.fixOf(fixId, { signal })
    if (fix === undefined) throw new FixNotFoundError(fixId)
    const { intent, commit } = fix
    if (init.dataset !== undefined && intent.dataset !== init.dataset) throw new FixDatasetMismatchError(fixId, intent.dataset, init.dataset)
    if (commit === undefined) throw new FixNotCommittedError(fixId, fix.abort !== undefined ? `aborted: ${fix.abort.reason ?? 'no reason recorded'}` : 'still in flight')
    const earlier = await audit.rolledBackBy(fixId, { signal })
    if (earlier !== undefined) throw new FixAlreadyRolledBackError(fixId, earlier.fixId)
    const keys = fixKeys(intent, codec)
    // the commit's before-images are what the store replaced; an intent's are the next best
    const before = beforeImages(commit, keys.length) ?? beforeImages(intent, keys.length)
    if (before === undefined) throw new RollbackUnavailableError(fixId)

    const current = await store.get(keys, { signal })
    // what the fix left: its upserts, or where the store kept one otherwise, the row as stored
    const changed = differing(current, leftImages(intent, commit))
    if (changed.length > 0 && init.force !== true) {
      throw new RollbackConflictError(fixId, changed.length, keys.length, changed.slice(0, CONFLICT_SAMPLE).map(i => hexOf(keys[i]!)))
    }

    const upserts: Uint8Array[] = []
    const deletes: Uint8Array[] = []
    before.forEach((row, i) => { if (row === null) deletes.push(keys[i]!); else upserts.push(row) })
    const clock = tick(init.clock(), init.region)
    await init.setClock(clock)
    const correlationId = init.correlationId ?? randomUUID()
    const { commit: done, rewritten } = await applyFixOnce({
      audit,
      store,
      signal,
      fix: {
        fixId: randomUUID(),
        correlationId,
        dataset: intent.dataset,
        region: init.region,
        clock,
        rule: 'rollback',
        rollbackOf: fixId,
        by: init.by,
        ...(init.reason === undefined ? {} : { reason: init.reason }),
        ...(intent.partition === undefined ? {} : { partition: intent.partition }),
        upserts,
        deletes
      }
    })
    return {
      fixId: done.fixId,
      rollbackOf: fixId,
      dataset: intent.dataset,
      ...(intent.partition === undefined ? {} : { partition: intent.partition }),
      correlationId,
      keys: [...upserts.map(row => hexOf(codec.keyOfEncodedRow(row))), ...deletes.map(hexOf)],
      upserts: upserts.length,
      deletes: deletes.length,
      rows: upserts.length + deletes.length,
      overwritten: changed.length,
      storedOtherwise: rewritten.length,
      storeSeq: done.storeSeq ?? 0
    }
  })
}
