/**
 * The policy engine: from the exact difference of one dataset (or one
 * partition), the dataset's rule, tolerance and risk settings and the state
 * of the previous round, decides what to fix and whether to apply it or hand
 * it to a person.
 *
 * Pure and deterministic: no clock but `now`, no randomness, no I/O; the rows
 * are sorted by key first, so the same difference in any order gives the same
 * Decision, fixes and reasons in the same order.
 *
 * A row goes through, in this order:
 *   1. grace window: in flight, not drift (deferred.inFlight)
 *   2. it is drift; its sighting is counted (when more than one confirms)
 *   3. the rule: under merge the local row may win (deferred.keptLocal)
 *   4. confirmations: not yet seen apart often enough (deferred.unconfirmed)
 *   5. the fix
 * Then the whole fix: acceptableRows may leave it alone ('none'); the review
 * rule and any risk check send it to review; otherwise it is applied.
 */
import { objectArray } from '../util/object-array.ts'
import { apartRows, type ApartRow } from './apart.ts'
import { lastWriter } from './merge.ts'
import { splitFix, type KeyedRow } from './restore.ts'
import { riskReasons } from './risk.ts'
import { acceptableReason, deferralReasons, inFlight, sightingId } from './tolerance.ts'
import type { Decision, DeferredRows, PolicyInput } from './types.ts'
import { validatePolicyInput } from './validate.ts'

export type { Decision, DeferredRows, DriftRow, PolicyInput, PolicyRisk, PolicyRule, PolicyTolerance } from './types.ts'
export type { PlannedFix } from './restore.ts'
export { PolicyConfigError, PolicyInputError } from './errors.ts'

/** The key hex of a sighting id (an entry of Decision.sightings). */
export function sightingKeyHex (id: string): string {
  const end = id.indexOf(':')
  return end < 0 ? id : id.slice(0, end)
}

const REVIEW_RULE_REASON = 'rule is review: every fix waits for a person'

export function decide (input: PolicyInput): Decision {
  validatePolicyInput(input)
  const { tolerance } = input
  const deferred: DeferredRows = { inFlight: 0, unconfirmed: 0, keptLocal: 0 }
  const sightings = new Map<string, number>()
  // general arrays from the start (see objectArray): a fresh [] deoptimized decide at its first push in a later repair
  const upserts = objectArray<KeyedRow>()
  const deletes = objectArray<Uint8Array>()
  const touched = objectArray<string>()
  let drift = 0

  for (const row of apartRows(input.codec, input.rows)) {
    // a row in flight is not tracked either: its confirmations start once it leaves the window
    if (inFlight(row, input.now, tolerance.graceMs)) { deferred.inFlight++; continue }
    drift++
    // counted only where a row waits for more than one sighting: with one, nothing needs the count
    let seen = 1
    if (tolerance.confirmations > 1) {
      const id = sightingId(row)
      seen = (input.sightings.get(id) ?? 0) + 1
      sightings.set(id, seen)
    }

    const winner = input.rule === 'merge' ? lastWriter(row) : 'sot'
    if (winner === 'local') { deferred.keptLocal++; continue }
    if (seen < tolerance.confirmations) { deferred.unconfirmed++; continue }
    take(row, upserts, deletes)
    touched.push(row.keyHex)
  }

  const fixRows = upserts.length + deletes.length
  const deferrals = deferralReasons(deferred, tolerance.graceMs, tolerance.confirmations)
  const none = (reasons: string[]): Decision => ({ action: 'none', fixes: [], reasons, drift, deferred, sightings })
  if (fixRows === 0) return none(deferrals)
  if (fixRows <= tolerance.acceptableRows) return none([acceptableReason(fixRows, tolerance.acceptableRows), ...deferrals])

  const reasons = [
    ...(input.rule === 'review' ? [REVIEW_RULE_REASON] : []),
    ...riskReasons({ upserts: upserts.length, deletes: deletes.length, keys: touched }, input.risk, {
      totalRows: input.totalRows,
      recentFixRows: input.recentFixRows,
      heldKeys: input.heldKeys
    })
  ]
  return { action: reasons.length > 0 ? 'review' : 'apply', fixes: splitFix(upserts, deletes), reasons, drift, deferred, sightings }
}

/** The SoT side wins: its row is upserted, or the key is deleted when the SoT lacks it. */
function take (row: ApartRow, upserts: KeyedRow[], deletes: Uint8Array[]): void {
  if (row.sot !== undefined) upserts.push({ key: row.key, row: row.sot })
  else deletes.push(row.key)
}
