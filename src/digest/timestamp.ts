/**
 * Timestamps to the microsecond, for `timestamp` columns whose schema says
 * `precision: us` (PostgreSQL's timestamp and timestamptz hold microseconds).
 * Their canonical value is the integer count of microseconds since the Unix
 * epoch, UTC: a number within ±(2^53 − 1) (years 1685 to 2255), a bigint
 * beyond it (as RowCodec does for integers), so every store gives one value,
 * and so one encoding, for one instant. A column without `precision` keeps
 * whole milliseconds, as before.
 *
 * Why not a fractional millisecond number: a double cannot hold the
 * microseconds of most instants exactly, and past 2255 not at all.
 */
import { RowEncodingError } from '../errors.ts'

/** A timestamp column's precision, as a schema says it (absent: ms). */
export const TIME_PRECISIONS = ['ms', 'us'] as const
export type TimePrecision = typeof TIME_PRECISIONS[number]
/** What a schema check says of a precision on a column that is not a timestamp. */
export const ONLY_TIMESTAMPS = 'only a timestamp column has a precision'

/** The range of a JavaScript Date (±100,000,000 days), which every store's conversion goes through. */
export const MAX_DATE_MS = 8.64e15
export const MAX_DATE_US = 8_640_000_000_000_000_000n

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

/** A microsecond count as its canonical value: a number when it is safe, else a bigint. */
export function canonicalMicros (us: bigint): number | bigint {
  return us <= MAX_SAFE && us >= -MAX_SAFE ? Number(us) : us
}

/** Whether `v` is a canonical microsecond value within the range of dates. */
export function isCanonicalMicros (v: unknown): boolean {
  if (typeof v === 'number') return Number.isSafeInteger(v) && !Object.is(v, -0)
  if (typeof v === 'bigint') return (v > MAX_SAFE || v < -MAX_SAFE) && v <= MAX_DATE_US && v >= -MAX_DATE_US
  return false
}

/**
 * Whether a decoded timestamp value lies within the range of dates, for its
 * precision (whatever its encoding: whether it is canonical is another check).
 */
export function withinDates (v: unknown, precision: TimePrecision = 'ms'): boolean {
  if (precision === 'ms') return typeof v === 'number' && Math.abs(v) <= MAX_DATE_MS
  if (typeof v === 'number') return Math.abs(v) <= MAX_DATE_MS * 1000
  return typeof v === 'bigint' && v <= MAX_DATE_US && v >= -MAX_DATE_US
}

/** Microseconds from whole milliseconds and the microseconds past them (0-999), exact, as their canonical value. */
export function microsOf (ms: number, micros: number): number | bigint {
  const us = ms * 1000 + micros
  return Number.isSafeInteger(us) ? us : canonicalMicros(BigInt(ms) * 1000n + BigInt(micros))
}

/**
 * ISO 8601 in UTC with six fraction digits (`2026-11-26T12:00:00.123456Z`),
 * as PostgreSQL and SQLite take it; years beyond 9999 in Date's ±YYYYYY form.
 */
export function microsToIso (us: number | bigint): string {
  const big = BigInt(us)
  let micros = Number(big % 1000n)
  let ms = Number(big / 1000n)
  if (micros < 0) { micros += 1000; ms -= 1 }
  const iso = new Date(ms).toISOString()
  return `${iso.slice(0, -1)}${String(micros).padStart(3, '0')}Z`
}

/**
 * ISO-style date-times: `YYYY-MM-DD`, then optionally `T` or a space,
 * `HH:MM`, `:SS`, a fraction of up to nine digits (cut to six), and a zone:
 * `Z`, `±HH`, `±HHMM`, `±HH:MM` or `±HH:MM:SS`. No zone reads as UTC. A year
 * of more than four digits (with a sign) as Date writes it is taken too.
 */
const ISO_TIME = /^([+-]\d{6}|\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?$/i

/** The canonical microseconds of a date-time's text, or undefined when it is not one ISO_TIME reads. */
export function parseIsoMicros (text: string): number | bigint | undefined {
  const m = ISO_TIME.exec(text.trim())
  if (m === null) return undefined
  const [, y, mo, d, h, mi, s, f, zone] = m
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  const hour = Number(h ?? 0)
  const minute = Number(mi ?? 0)
  const second = Number(s ?? 0)
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) return undefined
  const date = new Date(0)
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0-99 as 1900-1999
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hour, minute, second, 0)
  let ms = date.getTime()
  if (Number.isNaN(ms)) return undefined
  if (zone !== undefined && zone.toUpperCase() !== 'Z') {
    const digits = zone.slice(1).replaceAll(':', '')
    const offset = (Number(digits.slice(0, 2)) * 3600 + Number(digits.slice(2, 4) || 0) * 60 + Number(digits.slice(4, 6) || 0)) * 1000
    ms -= zone[0] === '-' ? -offset : offset
  }
  const total = microsOf(ms, Number((f ?? '').padEnd(6, '0').slice(0, 6)))
  return isCanonicalMicros(total) ? total : undefined
}

/**
 * A value as the canonical microseconds of a `precision: us` column: a Date
 * (whole milliseconds), a number or bigint (microseconds; a fraction is cut),
 * or ISO-style text (to the microsecond). Throws RowEncodingError naming the
 * column otherwise, or beyond the range of dates.
 */
export function normalizeMicros (v: unknown, column: string): number | bigint {
  let us: number | bigint | undefined
  if (v instanceof Date) us = Number.isNaN(v.getTime()) ? undefined : microsOf(v.getTime(), 0)
  else if (typeof v === 'number') us = Number.isFinite(v) ? canonicalMicros(BigInt(Math.trunc(v))) : undefined
  else if (typeof v === 'bigint') us = canonicalMicros(v)
  else if (typeof v === 'string') us = /^\s*[+-]?\d+\s*$/.test(v) ? canonicalMicros(BigInt(v.trim())) : parseIsoMicros(v)
  if (us === undefined) throw new RowEncodingError(`column "${column}": ${String(v)} is not a timestamp`)
  if (!isCanonicalMicros(us)) throw new RowEncodingError(`column "${column}": ${String(v)} microseconds is beyond the range of dates`)
  return us
}
