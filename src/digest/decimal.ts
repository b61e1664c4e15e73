/**
 * Decimals as canonical text. By default a decimal is its value: `10.50` and
 * `10.5` are one value, written `10.5` (no leading or trailing zeros, no
 * bare point, no sign on zero), so stores that keep the scale and stores
 * that do not compare alike. A column declared `keepScale: true` keeps its
 * fraction's digits as written (`10.50`), for a store whose decimals carry
 * their scale (PostgreSQL's unconstrained `numeric`): a repair then writes
 * `10.50`, not `10.5`. Two rows differing only in scale differ there.
 */
import { RowEncodingError } from '../errors.ts'

/** Refusal of `keepScale` on another type. */
export const ONLY_DECIMALS = 'only a decimal column keeps its scale'
/** Refusal of `keepScale` on a key column: a database compares keys by value, so `5.0` and `5` are one key to it. */
export const NOT_A_KEY = 'a key column cannot keep its scale: the database takes 5.0 and 5 for the same key'

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?$/

/** Exactly the strings canonicalDecimal gives back unchanged: no sign but a minus on a non-zero value, no leading or trailing zeros, no bare point. */
const CANONICAL = /^(?:-?[1-9]\d*(?:\.\d*[1-9])?|0(?:\.\d*[1-9])?|-0\.\d*[1-9])$/
/** The same with keepScale: trailing fraction zeros allowed, and no minus when every digit is zero. */
const CANONICAL_KEEPING_SCALE = /^(?:-?[1-9]\d*(?:\.\d+)?|0(?:\.\d+)?|-0\.\d*[1-9]\d*)$/

/** A decimal's text, canonical (see above); throws RowEncodingError naming the column. */
export function canonicalDecimal (text: string, column: string, keepScale = false): string {
  const m = DECIMAL.exec(text.trim())
  if (m === null || (m[2] === '' && (m[3] ?? '') === '')) throw new RowEncodingError(`column "${column}": "${text}" is not a decimal`)
  const int = (m[2] ?? '').replace(/^0+/, '') || '0'
  const frac = keepScale ? m[3] ?? '' : (m[3] ?? '').replace(/0+$/, '')
  const sign = m[1] === '-' && (int !== '0' || /[1-9]/.test(frac)) ? '-' : ''
  return frac === '' ? `${sign}${int}` : `${sign}${int}.${frac}`
}

/** Whether canonicalDecimal would give `text` back unchanged. */
export function isCanonicalDecimal (text: string, keepScale = false): boolean {
  return (keepScale ? CANONICAL_KEEPING_SCALE : CANONICAL).test(text)
}
