/**
 * Checks the settings and state handed to the policy engine, so that a bad
 * value fails at once with its name instead of quietly skewing a decision.
 * The rows themselves are checked as they are read (apart.ts).
 */
import { PolicyConfigError, PolicyInputError } from './errors.ts'
import type { PolicyInput } from './types.ts'

const RULES = new Set(['restore', 'merge', 'review'])

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
const isFinite = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n)

function check (ok: boolean, Err: typeof PolicyConfigError | typeof PolicyInputError, message: string): void {
  if (!ok) throw new Err(message)
}

export function validatePolicyInput (input: PolicyInput): void {
  const { rule, tolerance, risk, codec } = input
  check(RULES.has(rule), PolicyConfigError, `rule: "${String(rule)}" is not one of restore, merge, review`)
  // last writer wins needs to know when each row was written
  check(rule !== 'merge' || codec.eventTimePosition !== undefined, PolicyConfigError, 'rule: merge needs the schema\'s eventTimeColumn (the later event time wins)')

  check(isFinite(tolerance.graceMs) && tolerance.graceMs >= 0, PolicyConfigError, `tolerance.graceMs: ${tolerance.graceMs} is not a duration of 0 ms or more`)
  check(isCount(tolerance.confirmations) && tolerance.confirmations >= 1, PolicyConfigError, `tolerance.confirmations: ${tolerance.confirmations} is not a whole number of 1 or more`)
  check(isCount(tolerance.acceptableRows), PolicyConfigError, `tolerance.acceptableRows: ${tolerance.acceptableRows} is not a whole number of 0 or more`)

  check(risk.maxRows === undefined || (isCount(risk.maxRows) && risk.maxRows >= 1), PolicyConfigError, `risk.maxRows: ${risk.maxRows} is not a whole number of 1 or more`)
  check(risk.maxShare === undefined || (isFinite(risk.maxShare) && risk.maxShare >= 0 && risk.maxShare <= 1), PolicyConfigError, `risk.maxShare: ${risk.maxShare} is not a share between 0 and 1`)
  check(typeof risk.reviewDeletes === 'boolean', PolicyConfigError, `risk.reviewDeletes: ${String(risk.reviewDeletes)} is not a boolean`)
  check(risk.growthFactor === undefined || (isFinite(risk.growthFactor) && risk.growthFactor >= 1), PolicyConfigError, `risk.growthFactor: ${risk.growthFactor} is not a factor of 1 or more`)
  check(isCount(risk.history) && risk.history >= 1, PolicyConfigError, `risk.history: ${risk.history} is not a whole number of 1 or more`)

  check(isFinite(input.now), PolicyInputError, `now: ${input.now} is not a time in ms`)
  check(isCount(input.totalRows), PolicyInputError, `totalRows: ${input.totalRows} is not a row count`)
  check(Array.isArray(input.rows), PolicyInputError, 'rows: not an array')
  input.recentFixRows.forEach((n, i) => check(isCount(n), PolicyInputError, `recentFixRows.${i}: ${n} is not a row count`))
  for (const [id, n] of input.sightings) check(isCount(n), PolicyInputError, `sightings: "${id}" has ${n} sightings, not a count`)
}
