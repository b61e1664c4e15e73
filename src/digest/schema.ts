/**
 * A dataset's schema: typed columns, a primary key of one or more columns,
 * columns left out of the row digest, and an optional event-time column.
 * The fingerprint identifies the schema on the wire: two peers compare rows
 * only when their fingerprints agree.
 */
import { encode } from 'msgpackr'
import { xxh64, u64Hex } from './hash.ts'
import type { TimePrecision } from './timestamp.ts'

export const COLUMN_TYPES = ['integer', 'float', 'decimal', 'string', 'boolean', 'timestamp', 'json', 'bytes'] as const
export type ColumnType = typeof COLUMN_TYPES[number]

export interface ColumnSpec {
  name: string
  type: ColumnType
  /** Whether NULL is allowed. Default: true, except for key columns. */
  nullable?: boolean
  /**
   * A timestamp column's precision: 'ms' (the default) compares and copies
   * whole milliseconds; 'us' microseconds, as PostgreSQL holds them
   * (timestamp.ts). Only for `timestamp` columns.
   */
  precision?: TimePrecision
  /**
   * A decimal column's digits as written, trailing fraction zeros included
   * (`10.50`, not `10.5`: decimal.ts), for a store whose decimals carry their
   * scale. Only for non-key `decimal` columns. Default false.
   */
  keepScale?: boolean
  /**
   * A json column's text as written: key order, spacing and number spelling
   * kept (json.ts), for a store that holds JSON as text (PostgreSQL's
   * `json`, SQLite). Only for non-key `json` columns. Default false: JSON
   * with sorted keys.
   */
  keepText?: boolean
}

export interface DatasetSchema {
  /** Increases when the schema changes; carried with the fingerprint. */
  version: number
  /** Columns in canonical order: the encoding follows this order, not the store's. */
  columns: ColumnSpec[]
  primaryKey: string[]
  /** Columns stored and copied but left out of the row digest (e.g. a local `synced_at`). */
  ignoreColumns: string[]
  /** Column holding each row's event time (UTC ms), used by merge and the grace window. */
  eventTimeColumn?: string
  /**
   * A key column whose value names the row's partition (a day, a tenant).
   * Partitions are reconciled independently: each is a subtree of its own.
   */
  partitionColumn?: string
}

/**
 * A stable fingerprint of what the digest depends on: columns, types, key,
 * ignored columns and the partition column. The version is not part of it,
 * so a version bump that changes nothing else keeps peers comparable.
 */
export function schemaFingerprint (schema: DatasetSchema): string {
  const shape: unknown[] = [
    schema.columns.map(c => [c.name, c.type]),
    schema.primaryKey,
    [...schema.ignoreColumns].sort()
  ]
  // the partition column moves every key hash; appended only when set, so unpartitioned fingerprints stay as they were
  if (schema.partitionColumn !== undefined) shape.push(['partition', schema.partitionColumn])
  // the same for microsecond timestamps: their values, and so their rows' digests, differ from milliseconds'
  const micros = schema.columns.filter(c => c.precision === 'us').map(c => c.name)
  if (micros.length > 0) shape.push(['us', micros])
  // and for decimals that keep their scale: 10.50 is not 10.5 there
  const scaled = schema.columns.filter(c => c.keepScale === true).map(c => c.name)
  if (scaled.length > 0) shape.push(['scale', scaled])
  // and for JSON kept as text: {"b":1,"a":2} is not {"a":2,"b":1} there
  const texts = schema.columns.filter(c => c.keepText === true).map(c => c.name)
  if (texts.length > 0) shape.push(['text', texts])
  return u64Hex(xxh64(encode(shape)))
}
