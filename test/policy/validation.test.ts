import { describe, expect, it } from 'vitest'
import { packValues } from '../../src/digest/row-codec.ts'
import { decide, PolicyConfigError, PolicyInputError } from '../../src/policy/decide.ts'
import type { PolicyInput } from '../../src/policy/decide.ts'
import { ConvergeError } from '../../src/errors.ts'
import { keyOf, missing, policyInput, row } from './fixtures.ts'

function codeOf (fn: () => unknown): string | undefined {
  try { fn() } catch (err) { expect(err).toBeInstanceOf(ConvergeError); return (err as ConvergeError).code }
  return undefined
}

describe('input validation', () => {
  it('refuses a key given twice', () => {
    expect(() => decide(policyInput([missing(1), missing(1)]))).toThrow(PolicyInputError)
  })

  it('refuses a row filed under another key', () => {
    expect(() => decide(policyInput([{ key: keyOf(1), sot: row(2) }]))).toThrow(/has another key/)
    expect(() => decide(policyInput([{ key: keyOf(1), sot: row(1), local: row(2) }]))).toThrow(/local row has another key/)
  })

  it('refuses a row with neither side', () => {
    expect(codeOf(() => decide(policyInput([{ key: keyOf(1) }])))).toBe('CONVERGE_POLICY_INPUT')
  })

  it('refuses a row that does not decode under the schema', () => {
    expect(() => decide(policyInput([{ key: keyOf(1), sot: packValues([1, 'x']) }]))).toThrow(/does not decode/)
  })

  it('refuses an event time that is not a time under merge', () => {
    const bad = packValues([1, 'c', 1, 'open', 'yesterday'])
    expect(() => decide(policyInput([{ key: keyOf(1), sot: bad }], { rule: 'merge' }))).toThrow(/not a time/)
  })

  const badSettings: Array<[string, Partial<PolicyInput>]> = [
    ['an unknown rule', { rule: 'newest' as PolicyInput['rule'] }],
    ['a negative grace window', { tolerance: { graceMs: -1, confirmations: 1, acceptableRows: 0 } }],
    ['zero confirmations', { tolerance: { graceMs: 0, confirmations: 0, acceptableRows: 0 } }],
    ['fractional acceptable rows', { tolerance: { graceMs: 0, confirmations: 1, acceptableRows: 1.5 } }],
    ['maxRows 0', { risk: { maxRows: 0, reviewDeletes: false, history: 10 } }],
    ['maxShare above 1', { risk: { maxShare: 1.5, reviewDeletes: false, history: 10 } }],
    ['growthFactor below 1', { risk: { growthFactor: 0.5, reviewDeletes: false, history: 10 } }],
    ['history 0', { risk: { reviewDeletes: false, history: 0 } }]
  ]
  for (const [what, overrides] of badSettings) {
    it(`refuses ${what} as a config error`, () => {
      expect(() => decide(policyInput([missing(1)], overrides))).toThrow(PolicyConfigError)
      expect(codeOf(() => decide(policyInput([missing(1)], overrides)))).toBe('CONVERGE_POLICY_CONFIG')
    })
  }

  const badState: Array<[string, Partial<PolicyInput>]> = [
    ['a time that is not finite', { now: Number.NaN }],
    ['a negative row count', { totalRows: -1 }],
    ['a recent fix that is not a count', { recentFixRows: [3, -2] }],
    ['a sighting that is not a count', { sightings: new Map([['ab:-:-', 0.5]]) }]
  ]
  for (const [what, overrides] of badState) {
    it(`refuses ${what} as an input error`, () => {
      expect(codeOf(() => decide(policyInput([missing(1)], overrides)))).toBe('CONVERGE_POLICY_INPUT')
    })
  }

  it('reports the same error whatever the order of the rows', () => {
    const message = (rows: PolicyInput['rows']): string => { try { decide(policyInput(rows)); return '' } catch (err) { return (err as Error).message } }
    const rows = [{ key: keyOf(5), sot: row(6) }, { key: keyOf(1), sot: row(2) }, missing(3)]
    expect(message(rows)).toBe(message([...rows].reverse()))
  })
})
