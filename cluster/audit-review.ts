/**
 * Reads a stopped agent's audit log from its data directory (as `converge
 * audit --data-dir` does) and checks what must hold after any run, faults
 * and all:
 *
 *   - the hash chain is intact;
 *   - no fix was applied twice: no fix id has two commits (or a commit and
 *     an abort);
 *   - no fix was lost: every intent has a commit or an abort.
 *
 * It also returns each fix's keys with its intent and commit times, from
 * which the report measures time to detect and to remediate.
 */
import { AuditLog, type AuditEntry } from '../src/audit/audit-log.ts'
import { openOfflineState } from '../src/cli/offline-state.ts'
import type { RowCodec } from '../src/digest/row-codec.ts'

export interface FixRecord {
  fixId: string
  /** The sync (or partition session) that found the rows: its log line says when. */
  correlationId: string
  dataset: string
  sourceRegion?: string
  /** When the fix was decided (its intent) and applied (its commit), agent clock. */
  intentAt: number
  commitAt: number
  upserted: number
  deleted: number
  /** Keys (hex) the fix wrote or deleted. */
  keys: string[]
}

export interface AuditReview {
  entries: number
  chainIntact: boolean
  chainProblem?: string
  intents: number
  commits: number
  aborts: number
  /** Fix ids with more than one commit, or a commit and an abort. */
  appliedTwice: string[]
  /** Fix ids with an intent and neither commit nor abort. */
  unsettled: string[]
  fixes: FixRecord[]
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

export async function reviewAudit (dataDir: string, codecs: Map<string, RowCodec>, signal?: AbortSignal): Promise<AuditReview> {
  const state = await openOfflineState(dataDir)
  try {
    const audit = new AuditLog(state)
    await audit.open({ signal })
    const check = await audit.check({ signal })
    const byFix = new Map<string, { intent?: AuditEntry, commits: AuditEntry[], aborts: number }>()
    let entries = 0
    // past a break the entries cannot be trusted (or even decoded): read up to it, and the check fails on the break
    for await (const e of audit.read({ signal, ...(check.intact ? {} : { limit: check.entries }) })) {
      entries++
      if (e.kind !== 'intent' && e.kind !== 'commit' && e.kind !== 'abort') continue
      let f = byFix.get(e.fixId)
      if (f === undefined) { f = { commits: [], aborts: 0 }; byFix.set(e.fixId, f) }
      if (e.kind === 'intent') f.intent ??= e
      else if (e.kind === 'commit') f.commits.push(e)
      else f.aborts++
    }
    const review: AuditReview = {
      entries, chainIntact: check.intact, ...(check.intact ? {} : { chainProblem: `entry ${check.seq}: ${check.problem}` }),
      intents: 0, commits: 0, aborts: 0, appliedTwice: [], unsettled: [], fixes: []
    }
    for (const [fixId, f] of byFix) {
      if (f.intent !== undefined) review.intents++
      review.commits += f.commits.length
      review.aborts += f.aborts
      if (f.commits.length > 1 || (f.commits.length === 1 && f.aborts > 0)) review.appliedTwice.push(fixId)
      if (f.intent !== undefined && f.commits.length === 0 && f.aborts === 0) review.unsettled.push(fixId)
      const commit = f.commits[0]
      if (commit === undefined) continue
      // the intent carries the rows (a commit may too); keys come from whichever has them
      const body = f.intent ?? commit
      const codec = codecs.get(body.dataset)
      const upserts = body.upserts ?? []
      const deletes = body.deletes ?? []
      review.fixes.push({
        fixId, correlationId: body.correlationId, dataset: body.dataset, ...(body.sourceRegion === undefined ? {} : { sourceRegion: body.sourceRegion }),
        intentAt: f.intent?.at ?? commit.at, commitAt: commit.at, upserted: upserts.length, deleted: deletes.length,
        keys: codec === undefined ? [] : [...upserts.map(r => hex(codec.keyOfEncodedRow(r))), ...deletes.map(hex)]
      })
    }
    return review
  } finally {
    await state.close()
  }
}
