/**
 * An audit entry as one line of JSON, for export and `converge audit --json`:
 * bytes as lowercase hex, bigints as decimal strings, fields in a fixed order
 * (fields this version does not know follow, by name), so that two exports of
 * the same log are byte for byte the same and diff cleanly.
 */
import type { AuditEntry } from './audit-log.ts'

const FIELD_ORDER = [
  'seq', 'at', 'kind', 'fixId', 'correlationId', 'dataset', 'partition', 'region', 'sourceRegion', 'rule',
  'rollbackOf', 'reviewId', 'by', 'reason', 'clock', 'detected', 'upserts', 'deletes', 'before', 'stored', 'storeSeq', 'prevHash', 'hash'
] as const

const KNOWN = new Set<string>(FIELD_ORDER)

function jsonValue (v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')
  if (typeof v === 'bigint') return v.toString()
  if (v instanceof Date) return v.toISOString()
  if (Array.isArray(v)) return v.map(jsonValue)
  if (v !== null && typeof v === 'object') {
    // nested objects (a vector clock) by key, so their order does not depend on insertion
    return Object.fromEntries(Object.keys(v).sort().map(k => [k, jsonValue((v as Record<string, unknown>)[k])]).filter(([, x]) => x !== undefined))
  }
  return v
}

export function toJsonLine (entry: AuditEntry): string {
  const record = entry as unknown as Record<string, unknown>
  const out: Record<string, unknown> = {}
  for (const name of [...FIELD_ORDER, ...Object.keys(record).filter(k => !KNOWN.has(k)).sort()]) {
    const value = record[name]
    if (value !== undefined) out[name] = jsonValue(value)
  }
  return JSON.stringify(out)
}
