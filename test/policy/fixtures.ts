/** Builders for policy tests: orders rows at chosen versions and event times, and a PolicyInput with neutral settings. */
import { RowCodec, type Row } from '../../src/digest/row-codec.ts'
import type { DriftRow, PolicyInput } from '../../src/policy/decide.ts'
import { ordersCodec, order } from '../helpers/datasets.ts'

export const codec = ordersCodec
export const NOW = 1_800_000_000_000

/** A schema without an event-time column. */
export const plainCodec = new RowCodec({
  version: 1,
  columns: [{ name: 'id', type: 'integer' }, { name: 'value', type: 'string' }],
  primaryKey: ['id'],
  ignoreColumns: []
})

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
export const keyOf = (id: number): Uint8Array => codec.encodeKey({ id })

/** An order at a version, with its event time set when given (null: no event time). */
export function row (id: number, version = 0, eventTime?: number | null): Uint8Array {
  const r: Row = order(id, version)
  if (eventTime !== undefined) r.updated_at = eventTime === null ? null : new Date(eventTime)
  return codec.encodeRow(r)
}

export const missing = (id: number, sot = row(id)): DriftRow => ({ key: keyOf(id), sot })
export const extra = (id: number, local = row(id)): DriftRow => ({ key: keyOf(id), local })
export const changed = (id: number, sot = row(id, 1), local = row(id)): DriftRow => ({ key: keyOf(id), sot, local })

export function policyInput (rows: DriftRow[], overrides: Partial<PolicyInput> = {}): PolicyInput {
  return {
    codec,
    rule: 'restore',
    tolerance: { graceMs: 0, confirmations: 1, acceptableRows: 0 },
    risk: { reviewDeletes: false, history: 10 },
    rows,
    now: NOW,
    totalRows: 1000,
    recentFixRows: [],
    sightings: new Map(),
    ...overrides
  }
}

/** Keys (as hex) of every upsert and delete across all fixes, in fix order. */
export function fixKeys (fixes: Array<{ upserts: Uint8Array[], deletes: Uint8Array[] }>): { upserts: string[], deletes: string[] } {
  return {
    upserts: fixes.flatMap(f => f.upserts.map(r => hex(codec.keyOfEncodedRow(r)))),
    deletes: fixes.flatMap(f => f.deletes.map(hex))
  }
}

/** Fixes as hex, so that comparisons look at bytes only (canonical rows are Buffers sharing one pool). */
export function hexFixes (fixes: Array<{ upserts: Uint8Array[], deletes: Uint8Array[] }>): Array<{ upserts: string[], deletes: string[] }> {
  return fixes.map(f => ({ upserts: f.upserts.map(hex), deletes: f.deletes.map(hex) }))
}
