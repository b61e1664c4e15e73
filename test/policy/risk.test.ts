import { describe, expect, it } from 'vitest'
import { decide } from '../../src/policy/decide.ts'
import type { DriftRow, PolicyInput } from '../../src/policy/decide.ts'
import { changed, extra, hex, hexFixes, keyOf, missing, policyInput } from './fixtures.ts'

const risk = (r: Partial<PolicyInput['risk']>): PolicyInput['risk'] => ({ reviewDeletes: false, history: 10, ...r })
const missingRows = (n: number): DriftRow[] => Array.from({ length: n }, (_, i) => missing(i))

describe('risk.maxRows', () => {
  it('applies a fix of exactly maxRows', () => {
    expect(decide(policyInput(missingRows(5), { risk: risk({ maxRows: 5 }) })).action).toBe('apply')
  })

  it('sends a fix of one row more to review, with the fix proposed', () => {
    const rows = missingRows(6)
    const d = decide(policyInput(rows, { risk: risk({ maxRows: 5 }) }))
    expect(d.action).toBe('review')
    expect(d.reasons).toEqual(['fix of 6 rows exceeds maxRows 5'])
    expect(hexFixes(d.fixes)).toEqual(hexFixes(decide(policyInput(rows)).fixes))
  })
})

describe('risk.maxShare', () => {
  it('applies a fix of exactly maxShare of the rows', () => {
    expect(decide(policyInput(missingRows(25), { totalRows: 100, risk: risk({ maxShare: 0.25 }) })).action).toBe('apply')
  })

  it('sends a larger share to review', () => {
    const d = decide(policyInput(missingRows(26), { totalRows: 100, risk: risk({ maxShare: 0.25 }) }))
    expect(d.action).toBe('review')
    expect(d.reasons).toEqual(['fix of 26 rows is 26% of 100 rows, above maxShare 25%'])
  })

  it('counts any fix of an empty replica as a share of 1', () => {
    const d = decide(policyInput(missingRows(1), { totalRows: 0, risk: risk({ maxShare: 0.99 }) }))
    expect(d.action).toBe('review')
    expect(d.reasons).toEqual(['fix of 1 row is 100% of an empty replica, above maxShare 99%'])
    expect(decide(policyInput(missingRows(1), { totalRows: 0, risk: risk({ maxShare: 1 }) })).action).toBe('apply')
  })
})

describe('risk.reviewDeletes', () => {
  it('sends a fix that deletes to review', () => {
    const d = decide(policyInput([missing(1), extra(2), extra(3)], { risk: risk({ reviewDeletes: true }) }))
    expect(d.action).toBe('review')
    expect(d.reasons).toEqual(['fix deletes 2 rows and reviewDeletes is set'])
  })

  it('applies a fix without deletes', () => {
    expect(decide(policyInput([missing(1), changed(2)], { risk: risk({ reviewDeletes: true }) })).action).toBe('apply')
  })
})

describe('risk.growthFactor', () => {
  it('does nothing without a recent fix', () => {
    expect(decide(policyInput(missingRows(100), { risk: risk({ growthFactor: 2 }) })).action).toBe('apply')
  })

  it('applies a fix of exactly growthFactor times the largest recent fix', () => {
    expect(decide(policyInput(missingRows(10), { recentFixRows: [5, 3], risk: risk({ growthFactor: 2 }) })).action).toBe('apply')
  })

  it('sends a larger fix to review', () => {
    const d = decide(policyInput(missingRows(11), { recentFixRows: [5, 3], risk: risk({ growthFactor: 2 }) }))
    expect(d.action).toBe('review')
    expect(d.reasons).toEqual(['fix of 11 rows is more than 2 × the largest of the last 2 fixes (5 rows)'])
  })

  it('looks at the last `history` fixes only', () => {
    // the large fix of 100 rows is older than the last 2
    const d = decide(policyInput(missingRows(11), { recentFixRows: [100, 5, 3], risk: risk({ growthFactor: 2, history: 2 }) }))
    expect(d.action).toBe('review')
    expect(decide(policyInput(missingRows(11), { recentFixRows: [100, 5, 3], risk: risk({ growthFactor: 2, history: 3 }) })).action).toBe('apply')
  })
})

describe('heldKeys', () => {
  it('sends a fix touching a held key to review', () => {
    const d = decide(policyInput([missing(1), extra(2)], { heldKeys: new Set([hex(keyOf(2))]) }))
    expect(d.action).toBe('review')
    expect(d.reasons).toEqual(['fix touches 1 held row (rolled back by an operator)'])
  })

  it('ignores a held key that the fix does not touch', () => {
    expect(decide(policyInput([missing(1), missing(2)], { heldKeys: new Set([hex(keyOf(3))]) })).action).toBe('apply')
  })

  it('ignores a held key whose row is deferred, not fixed', () => {
    const d = decide(policyInput([missing(1), extra(2)], { rule: 'merge', heldKeys: new Set([hex(keyOf(2))]) }))
    expect(d.action).toBe('apply')
    expect(d.deferred.keptLocal).toBe(1)
  })
})

describe('several risks', () => {
  it('gives one reason per tripped check, in a fixed order', () => {
    const d = decide(policyInput([...missingRows(8), extra(100), extra(101)], {
      totalRows: 20,
      recentFixRows: [1],
      heldKeys: new Set([hex(keyOf(100)), hex(keyOf(0))]),
      risk: risk({ maxRows: 9, maxShare: 0.1, reviewDeletes: true, growthFactor: 3 })
    }))
    expect(d.action).toBe('review')
    expect(d.reasons).toEqual([
      'fix of 10 rows exceeds maxRows 9',
      'fix of 10 rows is 50% of 20 rows, above maxShare 10%',
      'fix deletes 2 rows and reviewDeletes is set',
      'fix of 10 rows is more than 3 × the largest of the last 1 fix (1 row)',
      'fix touches 2 held rows (rolled back by an operator)'
    ])
  })
})
