/**
 * Applying one fix, audited and at most once per fix id:
 *
 *   1. the fix id already has a commit → nothing is read, written or appended;
 *   2. otherwise: read the rows (before-images; or take them from the caller,
 *      who read them just before planning the fix), append the intent,
 *      apply the fix as one store batch, append the commit.
 *
 * So retrying a fix (an approval sent twice, a caller that lost the answer)
 * is harmless. A fix id whose earlier attempt has no commit (it was aborted,
 * or its apply failed) is simply attempted again.
 */
import { throwIfAborted } from '../errors.ts'
import { FIX_ORIGIN, type ApplyResult, type ExpectedRow, type ReplicaStore, type RewrittenRow } from '../stores/replica-store.ts'
import type { AuditEntry, AuditLog, AuditRecord } from './audit-log.ts'
import { withFixLock } from './fix-lock.ts'
import { afterImages, beforeImages, fixIdentity, fixKeys, mergedBefore, storedOf, type RowImage } from './fix-rows.ts'
import { settleFix } from './settle.ts'

/** A fix to apply: what its intent records, with its rows. */
export interface FixPlan extends Omit<AuditRecord, 'kind' | 'before' | 'storeSeq' | 'upserts' | 'deletes'> {
  /** Canonical rows to write. */
  upserts: Uint8Array[]
  /** Canonical keys to delete. */
  deletes: Uint8Array[]
  /**
   * This replica's rows for the fix's keys (fixKeys order), read just before
   * the fix was planned: the intent records them as its before-images
   * instead of reading them again. Like a read here, they may be overtaken
   * by a write before the fix lands; settling a fix left in flight then
   * finds neither state and finishes it (settle.ts). The commit records the
   * before-images the store read under lock while applying.
   */
  before?: RowImage[]
  /**
   * With `before`: the store's version of each of those rows (undefined
   * where there was none), as read with them (RowChange.version). The store
   * then writes without reading the rows again while they are still those
   * versions (ApplyRequest.expected). Not written to the audit.
   */
  beforeVersions?: Array<string | undefined>
  /**
   * The key of each upsert under the store's codec, in order, when the
   * caller has them (the policy checked each row against its key): the
   * before-images are read by these instead of by decoding every row again.
   * Not written to the audit.
   */
  upsertKeys?: Uint8Array[]
}

export interface FixResult {
  /** False when the fix id had already committed: nothing was written or appended. */
  applied: boolean
  intent: AuditEntry
  commit: AuditEntry
  /** Upserts the store holds otherwise than written (ApplyResult.rewritten); none when nothing was written. */
  rewritten: RewrittenRow[]
}

export interface ApplyFixInit {
  audit: AuditLog
  store: ReplicaStore
  fix: FixPlan
  /** Cancels up to the intent; once the intent is appended the fix is carried through, so a cancel never leaves it in flight. */
  signal?: AbortSignal
  /** See ApplyRequest.beforeCommit. */
  beforeCommit?: (seq: number) => void
}

export async function applyFixOnce (init: ApplyFixInit): Promise<FixResult> {
  const { audit, store, fix, signal } = init
  return await withFixLock(audit, fix.fixId, async () => {
    const known = await audit.fixOf(fix.fixId, { signal })
    if (known?.commit !== undefined) return { applied: false, intent: known.intent, commit: known.commit, rewritten: [] }
    const keys = fix.upsertKeys?.length === fix.upserts.length ? [...fix.upsertKeys, ...fix.deletes] : fixKeys(fix, store.codec)
    const after = afterImages(fix)
    const before = fix.before ?? (await store.get(keys, { signal })).map(row => row ?? null)
    if (before.length !== keys.length) throw new RangeError(`a fix of ${keys.length} rows came with ${before.length} before-images`)
    throwIfAborted(signal)
    const common = { ...fixIdentity(fix as AuditRecord), reason: fix.reason }
    // on disk before the store commits the fix (AuditLog.append, durable)
    const intent = await audit.append({ ...common, kind: 'intent', detected: fix.detected, upserts: fix.upserts, deletes: fix.deletes, before }, { durable: true })
    let applied: ApplyResult
    try {
      applied = await store.apply({
        upserts: fix.upserts, deletes: fix.deletes, origin: FIX_ORIGIN,
        ...(init.beforeCommit === undefined ? {} : { beforeCommit: init.beforeCommit }),
        ...(fix.before === undefined || fix.beforeVersions?.length !== before.length ? {} : { expected: expectedRows(before, fix.beforeVersions) })
      })
    } catch (err) {
      // the write may have landed before the error (a lost acknowledgement): record what the rows say, when they can be read
      const message = (err as Error).message
      await settleFix({
        audit, store, codec: store.codec, intent, region: fix.region, finish: false,
        reasons: { applied: `applied, though the store reported: ${message}`, notApplied: `not applied: ${message}`, finished: '' }
      }).catch(() => undefined)
      throw err
    }
    // an earlier attempt left pending may have written some rows already: what it replaced is the truer before-image
    const earlier = known !== undefined && known.abort === undefined ? beforeImages(known.intent, keys.length) : undefined
    const commit = await audit.append({ ...common, kind: 'commit', before: mergedBefore(earlier, after, applied.before), ...storedOf(applied), storeSeq: applied.seq })
    return { applied: true, intent, commit, rewritten: applied.rewritten ?? [] }
  })
}

/** The rows read before a fix with their versions, as ApplyRequest.expected takes them. */
function expectedRows (before: readonly RowImage[], versions: ReadonlyArray<string | undefined>): ExpectedRow[] {
  return before.map((row, i) => { const version = versions[i]; return version === undefined ? { row } : { row, version } })
}
