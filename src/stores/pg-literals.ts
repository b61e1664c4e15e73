/**
 * Canonical values as PostgreSQL reads them in text: one value as its column
 * type's input text, a list of them as an array literal, and such a literal
 * written into a statement that takes no parameters (COPY).
 *
 * Why a key list is written into a statement at all: `COPY (SELECT …) TO
 * STDOUT` hands the store bare lines it turns straight into canonical rows
 * (pg-copy.ts), but COPY takes no parameters. Nothing is escaped for SQL by
 * hand: the array literal is dollar-quoted under a tag that does not occur in
 * it, so the server takes its text as it is, whatever
 * standard_conforming_strings says; only array_in's own quoting applies,
 * which is the same whether the literal is inlined or sent as a parameter.
 */
import type { Value } from '../digest/row-codec.ts'
import type { ColumnType } from '../digest/schema.ts'
import { microsToIso, type TimePrecision } from '../digest/timestamp.ts'

/**
 * The text a canonical value is written as for its column's input function
 * (null for SQL NULL): timestamps (UTC milliseconds, or microseconds for
 * `precision: us`) as ISO 8601 in UTC,
 * bytes as bytea's hex form, JSON as its text (cast to json or jsonb by the
 * statement, so a JSON null stays a JSON null), numbers as JavaScript prints
 * them (the shortest text that reads back as the same double; `Infinity` and
 * `NaN` as float8 reads them).
 */
export function pgText (value: Value, type: ColumnType, precision: TimePrecision = 'ms'): string | null {
  if (value === null) return null
  if (value instanceof Uint8Array) return `\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`
  if (type === 'timestamp' && precision === 'us' && (typeof value === 'number' || typeof value === 'bigint')) return microsToIso(value)
  if (type === 'timestamp' && typeof value === 'number') return new Date(value).toISOString()
  return String(value)
}

/** A character array_in treats specially inside a quoted element. */
const ARRAY_ESCAPE = /[\\"]/g

/**
 * An array literal of `items` (one dimension): every element double-quoted,
 * so that empty strings, NULL, braces, commas and spaces are data, with `"`
 * and `\` backslash-escaped; a null item is the unquoted NULL.
 */
export function arrayLiteral (items: ReadonlyArray<string | null>): string {
  const parts = new Array<string>(items.length)
  for (let i = 0; i < items.length; i++) {
    const item = items[i]
    parts[i] = item === null || item === undefined ? 'NULL' : `"${item.includes('\\') || item.includes('"') ? item.replace(ARRAY_ESCAPE, '\\$&') : item}"`
  }
  return `{${parts.join(',')}}`
}

/**
 * `text` as a dollar-quoted string constant: the server reads the text
 * between the tags as it is, with no escapes. The tag is one that `$tag`
 * does not occur in the text at all, so no part of the text, nor its end
 * with the closing tag (`…$k` + `$k$`), reads as the closing tag.
 */
export function dollarQuoted (text: string): string {
  let tag = 'k'
  for (let n = 0; text.includes(`$${tag}`); n++) tag = `k${n}`
  return `$${tag}$${text}$${tag}$`
}
