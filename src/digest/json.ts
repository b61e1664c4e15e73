/**
 * JSON as canonical text. By default a JSON value is its data: keys sorted,
 * no spacing (`{"a":1,"b":2}` for `{ "b": 2, "a": 1 }`), so stores that
 * normalize JSON (PostgreSQL's `jsonb`) and stores that keep its text compare
 * alike. A column declared `keepText: true` keeps the text as written, key
 * order, spacing and number spelling included, for a store that holds JSON
 * as text (PostgreSQL's `json`, SQLite): a repair then writes the source's
 * text, not a re-sorted one. Two rows differing only in key order differ
 * there, as they do to the store.
 */
import { RowEncodingError } from '../errors.ts'

/** Refusal of `keepText` on another type. */
export const ONLY_JSON = 'only a json column keeps its text'
/** Refusal of `keepText` on a key column: a key is compared by value (PostgreSQL's `json` cannot even be one). */
export const NOT_A_TEXT_KEY = 'a key column cannot keep its JSON text: keys are compared by value'

/** Sorts object keys recursively. Input is plain JSON data (from JSON.parse); fromEntries keeps a "__proto__" key as data. */
function sortKeys (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map(k => [k, sortKeys((value as Record<string, unknown>)[k])]))
  }
  return value
}

/**
 * A JSON value's canonical text (see above); throws RowEncodingError naming
 * the column. A string is JSON text; anything else is data, written as
 * JSON.stringify writes it (with keepText, in its own key order).
 */
export function canonicalJson (v: unknown, column: string, keepText = false): string {
  let text: string
  let data: unknown
  try {
    // a round trip through JSON text applies toJSON (Dates) and drops what JSON cannot hold, as a store would
    text = typeof v === 'string' ? v : JSON.stringify(v)
    data = JSON.parse(text)
  } catch (err) {
    throw new RowEncodingError(`column "${column}": not valid JSON (${(err as Error).message})`)
  }
  return keepText ? text : JSON.stringify(sortKeys(data))
}
