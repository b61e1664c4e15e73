/**
 * The options that shape a column's values beyond its type (a timestamp's
 * precision, a decimal's scale, a JSON column's text), and where each may
 * appear: one rule for the config file and for a schema a peer sends.
 */
import { NOT_A_KEY, ONLY_DECIMALS } from './decimal.ts'
import { NOT_A_TEXT_KEY, ONLY_JSON } from './json.ts'
import type { ColumnSpec } from './schema.ts'
import { ONLY_TIMESTAMPS } from './timestamp.ts'

type FormField = 'precision' | 'keepScale' | 'keepText'

const RULES: ReadonlyArray<{ field: FormField, type: ColumnSpec['type'], notHere: string, notOnKey?: string }> = [
  { field: 'precision', type: 'timestamp', notHere: ONLY_TIMESTAMPS },
  { field: 'keepScale', type: 'decimal', notHere: ONLY_DECIMALS, notOnKey: NOT_A_KEY },
  { field: 'keepText', type: 'json', notHere: ONLY_JSON, notOnKey: NOT_A_TEXT_KEY }
]

/** Whether a column sets this option (a flag set to false does not). */
function sets (column: Partial<Pick<ColumnSpec, FormField>>, field: FormField): boolean {
  const v = column[field]
  return v !== undefined && v !== false
}

/** The options set on a column of a type that does not take them, each with why. */
export function formIssues (column: Pick<ColumnSpec, 'type'> & Partial<Pick<ColumnSpec, FormField>>): Array<{ field: FormField, message: string }> {
  return RULES.filter(r => sets(column, r.field) && column.type !== r.type).map(r => ({ field: r.field, message: r.notHere }))
}

/** The options set on a key column that a key cannot have, each with why. */
export function keyFormIssues (column: Partial<Pick<ColumnSpec, FormField>>): Array<{ field: FormField, message: string }> {
  return RULES.filter(r => r.notOnKey !== undefined && sets(column, r.field)).map(r => ({ field: r.field, message: r.notOnKey! }))
}
