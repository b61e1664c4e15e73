/**
 * The `merge` rule: last writer wins on the schema's event-time column.
 *
 * - The SoT lacks the key: the local row stays (merge never deletes).
 * - This replica lacks the key: the SoT row is inserted.
 * - Both hold it: the later event time wins; a null event time is the oldest.
 *   Equal event times (both null included) are broken by the canonical row
 *   bytes: the greater one, compared byte by byte as unsigned, wins. Both
 *   sides see the same two byte strings, so every agent picks the same row
 *   without a clock or a coin.
 */
import type { ApartRow } from './apart.ts'
import { compareBytes } from './restore.ts'

export type Winner = 'sot' | 'local'

export function lastWriter (row: ApartRow): Winner {
  if (row.sot === undefined) return 'local'
  if (row.local === undefined) return 'sot'
  const sot = row.sotTime ?? Number.NEGATIVE_INFINITY
  const local = row.localTime ?? Number.NEGATIVE_INFINITY
  if (sot !== local) return sot > local ? 'sot' : 'local'
  return compareBytes(row.sot, row.local) > 0 ? 'sot' : 'local'
}
