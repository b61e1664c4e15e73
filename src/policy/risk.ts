/**
 * Risk: when a fix is too large, too unusual or too destructive to apply
 * without a person looking at it. Each check that trips adds one reason; any
 * reason turns the fix into a review item.
 */
import type { PolicyRisk } from './types.ts'
import { percent, rows } from './wording.ts'

/** What the risk checks look at in a fix. */
export interface FixShape {
  upserts: number
  deletes: number
  /** Key hex of every row the fix touches. */
  keys: readonly string[]
}

export interface RiskContext {
  totalRows: number
  recentFixRows: readonly number[]
  heldKeys: ReadonlySet<string> | undefined
}

/** The reasons this fix needs review, in a fixed order: maxRows, maxShare, reviewDeletes, growthFactor, heldKeys. */
export function riskReasons (fix: FixShape, risk: PolicyRisk, context: RiskContext): string[] {
  const size = fix.upserts + fix.deletes
  const reasons: string[] = []
  if (risk.maxRows !== undefined && size > risk.maxRows) reasons.push(`fix of ${rows(size)} exceeds maxRows ${risk.maxRows}`)
  if (risk.maxShare !== undefined) {
    // an empty replica has nothing to measure against: any fix there replaces all of it
    const share = context.totalRows === 0 ? (size > 0 ? 1 : 0) : size / context.totalRows
    if (share > risk.maxShare) {
      const of = context.totalRows === 0 ? 'an empty replica' : rows(context.totalRows)
      reasons.push(`fix of ${rows(size)} is ${percent(share)} of ${of}, above maxShare ${percent(risk.maxShare)}`)
    }
  }
  if (risk.reviewDeletes && fix.deletes > 0) reasons.push(`fix deletes ${rows(fix.deletes)} and reviewDeletes is set`)
  if (risk.growthFactor !== undefined) {
    const recent = context.recentFixRows.slice(-risk.history)
    if (recent.length > 0) {
      const largest = recent.reduce((a, b) => Math.max(a, b))
      if (size > risk.growthFactor * largest) {
        reasons.push(`fix of ${rows(size)} is more than ${risk.growthFactor} × the largest of the last ${recent.length} ${recent.length === 1 ? 'fix' : 'fixes'} (${rows(largest)})`)
      }
    }
  }
  const heldKeys = context.heldKeys
  if (heldKeys !== undefined && heldKeys.size > 0) {
    const held = fix.keys.filter(k => heldKeys.has(k)).length
    if (held > 0) reasons.push(`fix touches ${held} held ${held === 1 ? 'row' : 'rows'} (rolled back by an operator)`)
  }
  return reasons
}
