/**
 * A fix's rows as the audit log holds them, and how they compare with a
 * store's. Everything is per key in one order: each upsert's key, then each
 * delete key — the order of before-images in intents, commits and
 * ReplicaStore.apply().
 */
import type { RowCodec } from '../digest/row-codec.ts'
import type { ApplyResult } from '../stores/replica-store.ts'
import { objectArrayOf } from '../util/object-array.ts'
import type { AuditRecord } from './audit-log.ts'

export type RowImage = Uint8Array | null

type FixRows = Pick<AuditRecord, 'upserts' | 'deletes'>

/** The canonical keys a fix touches: each upsert's key, then each delete key. */
export function fixKeys (fix: FixRows, codec: RowCodec): Uint8Array[] {
  return [...(fix.upserts ?? []).map(row => codec.keyOfEncodedRow(row)), ...(fix.deletes ?? [])]
}

/**
 * The rows a fix leaves behind, per key: its upserts, then absent (null) for
 * each delete. Built in an array of the general kind (see objectArray): a
 * spread of a mapped array follows its input's kind, and this was
 * deoptimized ("wrong map") by a kind it had not met in a later repair.
 */
export function afterImages (fix: FixRows): RowImage[] {
  const out = objectArrayOf<RowImage>(fix.upserts ?? [])
  const deletes = fix.deletes?.length ?? 0
  for (let i = 0; i < deletes; i++) out.push(null)
  return out
}

/** The commit field recording the upserts a store kept otherwise than written; nothing when it kept them all. */
export function storedOf (applied: Pick<ApplyResult, 'rewritten'>): Pick<AuditRecord, 'stored'> {
  const rewritten = applied.rewritten ?? []
  return rewritten.length === 0 ? {} : { stored: rewritten.map(r => [r.index, r.row]) }
}

/**
 * The rows a committed fix left, per key (fixKeys order): its after-images,
 * with each upsert its commit records as stored otherwise (`stored`) taken
 * as stored.
 */
export function leftImages (intent: FixRows, commit: Pick<AuditRecord, 'stored'>): RowImage[] {
  const left = afterImages(intent)
  const upserts = intent.upserts?.length ?? 0
  for (const [index, row] of commit.stored ?? []) if (Number.isInteger(index) && index >= 0 && index < upserts) left[index] = row
  return left
}

export function sameRow (a: Uint8Array | null | undefined, b: Uint8Array | null | undefined): boolean {
  if (a == null || b == null) return (a == null) === (b == null)
  return Buffer.compare(a, b) === 0
}

/** Positions where the store's rows (undefined where absent) are not the wanted images. */
export function differing (current: ReadonlyArray<Uint8Array | undefined>, wanted: readonly RowImage[]): number[] {
  const out: number[] = []
  wanted.forEach((row, i) => { if (!sameRow(current[i], row)) out.push(i) })
  return out
}

/** Usable before-images for `count` keys, or undefined (an intent from before they were recorded, or a malformed one). */
export function beforeImages (record: Pick<AuditRecord, 'before'>, count: number): RowImage[] | undefined {
  return record.before?.length === count ? record.before.map(r => r ?? null) : undefined
}

/**
 * What a fix replaced, per key, when it is applied again over an earlier
 * attempt: where the row already is the after-image, the earlier attempt
 * wrote it, so the row read before that attempt is the truer before-image;
 * elsewhere, what the store returned now. Without this, rolling back a fix
 * finished at restart would put back a half-applied state.
 */
export function mergedBefore (earlier: readonly RowImage[] | undefined, after: readonly RowImage[], returned: readonly RowImage[]): RowImage[] {
  return returned.map((row, i) => (earlier !== undefined && sameRow(row, after[i]) ? earlier[i] ?? null : row))
}

/** The fields every entry of one fix shares (the kind, rows and outcome are each entry's own). */
export function fixIdentity (r: AuditRecord): Pick<AuditRecord, 'fixId' | 'correlationId' | 'dataset' | 'region' | 'clock' | 'sourceRegion' | 'rule' | 'partition' | 'rollbackOf' | 'by' | 'reviewId'> {
  return {
    fixId: r.fixId,
    correlationId: r.correlationId,
    dataset: r.dataset,
    region: r.region,
    clock: r.clock,
    sourceRegion: r.sourceRegion,
    rule: r.rule,
    partition: r.partition,
    rollbackOf: r.rollbackOf,
    by: r.by,
    reviewId: r.reviewId
  }
}
