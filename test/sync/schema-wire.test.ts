import { describe, expect, it } from 'vitest'
import type { DatasetSchema } from '../../src/digest/schema.ts'
import { MalformedMessageError } from '../../src/errors.ts'
import { checkMessage, schemaWire, wireSchema } from '../../src/sync/messages.ts'

const schema: DatasetSchema = {
  version: 3,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'at', type: 'timestamp', precision: 'us' },
    { name: 'price', type: 'decimal', keepScale: true },
    { name: 'doc', type: 'json', keepText: true, nullable: true }
  ],
  primaryKey: ['id'],
  ignoreColumns: []
}

describe('a schema on the wire', () => {
  it('carries each column\'s form: precision, keepScale, keepText', () => {
    expect(checkMessage(schemaWire, wireSchema(schema), 'open.schema')).toEqual(schema)
  })

  it('refuses a form on a column of a type that does not take it, naming the column and the form', () => {
    const bad = (column: number, form: Record<string, unknown>): DatasetSchema =>
      ({ ...schema, columns: schema.columns.map((c, i) => i === column ? { ...c, ...form } : c) }) as DatasetSchema
    const refused = (s: DatasetSchema): string => {
      try { checkMessage(schemaWire, s, 'open.schema') } catch (err) { expect(err).toBeInstanceOf(MalformedMessageError); return (err as Error).message }
      throw new Error('accepted')
    }
    expect(refused(bad(0, { keepText: true }))).toBe('open.schema: columns.0.keepText: only a json column keeps its text')
    expect(refused(bad(3, { keepScale: true }))).toBe('open.schema: columns.3.keepScale: only a decimal column keeps its scale')
    expect(refused(bad(2, { precision: 'ms' }))).toBe('open.schema: columns.2.precision: only a timestamp column has a precision')
  })
})
