/**
 * Canonical encoding of rows and keys.
 *
 * A row is encoded as a msgpack array of its values in schema column order,
 * each value normalized by its column type so that the same logical row read
 * from any store gives the same bytes: integers as integers whatever the
 * driver returned (number, bigint, numeric string), timestamps as UTC
 * milliseconds (microseconds for a column of `precision: us`: timestamp.ts),
 * decimals as a canonical string (with their scale for a column of
 * `keepScale`: decimal.ts), JSON with sorted keys (its text as written for
 * a column of `keepText`: json.ts), bytes as msgpack
 * bin. A key is the msgpack array of the key column values.
 *
 * Guaranteed: encode(normalize(x)) is a function of the logical values only.
 * Not guaranteed: the encoding orders keys in any meaningful way; the tree
 * addresses rows by key hash, never by key order.
 */
import { Packr } from 'msgpackr'
import { RowEncodingError } from '../errors.ts'
import { PARTITION_LEVEL } from '../constants.ts'
import { u64Hex, xxh64 } from './hash.ts'
import { isCanonicalNumeric, readNumeric, scalarOffsets, UNREAD } from './row-scan.ts'
import { U64_MASK } from '../util/u64.ts'
import { schemaFingerprint, type ColumnSpec, type ColumnType, type DatasetSchema } from './schema.ts'
import { canonicalDecimal } from './decimal.ts'
import { canonicalJson } from './json.ts'
import { microsToIso, normalizeMicros } from './timestamp.ts'

/** A value as it appears in a canonical row. */
export type Value = null | boolean | number | bigint | string | Uint8Array
/** A row as callers see it: column name to value (before normalization any driver value is accepted). */
export type Row = Record<string, unknown>

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'bigint', mapsAsObjects: true })

/** The key-hash bits taken from the partition value: one hex digit per level down to PARTITION_LEVEL. */
const PARTITION_MASK = ((1n << BigInt(4 * PARTITION_LEVEL)) - 1n) << BigInt(64 - 4 * PARTITION_LEVEL)

export function packValues (values: readonly Value[]): Uint8Array {
  return packr.pack(values)
}

export function unpackValues (bytes: Uint8Array): Value[] {
  const out = packr.unpack(bytes) as unknown
  if (!Array.isArray(out)) throw new RowEncodingError('encoded row is not an array')
  return out as Value[]
}

/** ISO date-times without a zone designator, read as UTC (Date.parse would read them in the host's zone). */
const ZONELESS_TIMESTAMP = /^(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?$/

function timestampMs (v: unknown): number {
  if (v instanceof Date) return v.getTime()
  if (typeof v === 'number') return v
  if (typeof v === 'bigint') return Number(v)
  if (typeof v === 'string') {
    const m = ZONELESS_TIMESTAMP.exec(v.trim())
    return Date.parse(m === null ? v : `${m[1]}T${m[2] ?? '00:00:00'}Z`)
  }
  return Number.NaN
}

function normalizeInteger (v: unknown, column: string): number | bigint {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new RowEncodingError(`column "${column}": ${v} is not an integer`)
    if (Number.isSafeInteger(v)) return v === 0 ? 0 : v
  }
  let big: bigint
  // an integral number outside the safe range goes the bigint way, so it encodes as int64 like its bigint form
  if (typeof v === 'number') big = BigInt(v)
  else if (typeof v === 'bigint') big = v
  else if (typeof v === 'string' && /^[+-]?\d+$/.test(v.trim())) big = BigInt(v.trim())
  else throw new RowEncodingError(`column "${column}": ${typeof v} ${String(v)} is not an integer`)
  if (big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(big)
  if (big < -(2n ** 63n) || big >= 2n ** 64n) throw new RowEncodingError(`column "${column}": ${big} does not fit 64 bits`)
  return big
}

/** What besides its type a column's values are normalized by: a timestamp's precision, a decimal's scale, a JSON column's text (a ColumnSpec serves). */
export type ValueForm = Pick<ColumnSpec, 'precision' | 'keepScale' | 'keepText'>

/** Normalizes one value for its column type (and form); throws RowEncodingError naming the column. */
export function normalizeValue (type: ColumnType, v: unknown, column: string, form: ValueForm = {}): Value {
  switch (type) {
    case 'integer': return normalizeInteger(v, column)
    case 'float': {
      const n = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : typeof v === 'string' && v.trim() !== '' ? Number(v) : undefined
      if (n === undefined || (Number.isNaN(n) && typeof v === 'string' && v.trim() !== 'NaN')) throw new RowEncodingError(`column "${column}": ${String(v)} is not a number`)
      return Object.is(n, -0) ? 0 : n
    }
    case 'decimal':
      if (typeof v === 'number') { if (!Number.isFinite(v)) throw new RowEncodingError(`column "${column}": ${v} is not a decimal`); return canonicalDecimal(v.toString().includes('e') ? v.toFixed(20) : v.toString(), column) }
      if (typeof v === 'bigint') return v.toString()
      if (typeof v === 'string') return canonicalDecimal(v, column, form.keepScale === true)
      throw new RowEncodingError(`column "${column}": ${typeof v} is not a decimal`)
    case 'string':
      if (typeof v !== 'string') throw new RowEncodingError(`column "${column}": ${typeof v} is not a string`)
      return v
    case 'boolean':
      if (typeof v === 'boolean') return v
      if (v === 0 || v === 1) return v === 1
      if (v === 't' || v === 'true') return true
      if (v === 'f' || v === 'false') return false
      throw new RowEncodingError(`column "${column}": ${String(v)} is not a boolean`)
    case 'timestamp': {
      if (form.precision === 'us') return normalizeMicros(v, column)
      const ms = timestampMs(v)
      if (!Number.isFinite(ms)) throw new RowEncodingError(`column "${column}": ${String(v)} is not a timestamp`)
      return Math.trunc(ms)
    }
    case 'json': return canonicalJson(v, column, form.keepText === true)
    case 'bytes':
      if (v instanceof Uint8Array) return v.constructor === Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
      throw new RowEncodingError(`column "${column}": ${typeof v} is not bytes`)
  }
}

/**
 * Encodes and decodes rows of one dataset schema, and computes key hashes and
 * row digests. One instance per schema; cheap to call on hot paths.
 */
export class RowCodec {
  readonly schema: DatasetSchema
  readonly fingerprint: string
  readonly columns: readonly ColumnSpec[]
  /** Positions of the key columns in the row array. */
  readonly keyPositions: readonly number[]
  /** Positions kept in the digest; undefined when no column is ignored (then digest bytes = row bytes). */
  private readonly digestPositions: readonly number[] | undefined
  readonly eventTimePosition: number | undefined
  /** Position of the partition column among the key columns, when the dataset is partitioned. */
  readonly partitionKeyPosition: number | undefined
  /** The key columns' positions, then the event-time column's (what decodeKeyAndTime reads). */
  private readonly keyAndTimePositions: readonly number[]

  constructor (schema: DatasetSchema) {
    this.schema = schema
    this.fingerprint = schemaFingerprint(schema)
    this.columns = schema.columns
    const position = (name: string): number => {
      const i = schema.columns.findIndex(c => c.name === name)
      if (i < 0) throw new RowEncodingError(`column "${name}" is not in the schema`)
      return i
    }
    if (schema.primaryKey.length === 0) throw new RowEncodingError('schema has no primary key')
    this.keyPositions = schema.primaryKey.map(position)
    const ignored = new Set(schema.ignoreColumns.map(position))
    for (const k of this.keyPositions) if (ignored.has(k)) throw new RowEncodingError(`key column "${schema.columns[k]?.name}" cannot be ignored`)
    this.digestPositions = ignored.size === 0 ? undefined : schema.columns.map((_, i) => i).filter(i => !ignored.has(i))
    this.eventTimePosition = schema.eventTimeColumn === undefined ? undefined : position(schema.eventTimeColumn)
    this.keyAndTimePositions = this.eventTimePosition === undefined ? this.keyPositions : [...this.keyPositions, this.eventTimePosition]
    if (schema.partitionColumn === undefined) this.partitionKeyPosition = undefined
    else {
      const p = this.keyPositions.indexOf(position(schema.partitionColumn))
      // a partition value outside the key could change without the key hash, moving a row between subtrees unseen
      if (p < 0) throw new RowEncodingError(`partition column "${schema.partitionColumn}" must be one of the primary key columns`)
      this.partitionKeyPosition = p
    }
  }

  /**
   * Identifies how keys are laid out (key columns, their types, the partition
   * column): a store that orders rows by key hash was written under one layout
   * and cannot be read under another.
   */
  get keyLayout (): string {
    // a microsecond key column is named as such; other layouts stay as they were
    const key = this.keyPositions.map(i => { const c = this.columns[i]!; return c.precision === 'us' ? [c.name, c.type, 'us'] : [c.name, c.type] })
    return u64Hex(xxh64(packValues([JSON.stringify(key), this.schema.partitionColumn ?? null])))
  }

  get partitioned (): boolean { return this.partitionKeyPosition !== undefined }

  /** The shallowest tree this dataset may have: deep enough that every partition is a node of its own. */
  get minTreeDepth (): number { return this.partitioned ? PARTITION_LEVEL : 1 }

  /** Normalizes a row object to canonical values in column order. */
  normalize (row: Row): Value[] {
    const out = new Array<Value>(this.columns.length)
    for (let i = 0; i < this.columns.length; i++) {
      const col = this.columns[i]!
      const raw = row[col.name]
      if (raw === null || raw === undefined) {
        const nullable = col.nullable ?? !this.keyPositions.includes(i)
        if (!nullable) throw new RowEncodingError(`column "${col.name}" is not nullable`)
        out[i] = null
      } else {
        out[i] = normalizeValue(col.type, raw, col.name, col)
      }
    }
    return out
  }

  encodeRow (row: Row): Uint8Array { return packValues(this.normalize(row)) }

  /** Key bytes from a row object or a key given as an object of key columns. */
  encodeKey (row: Row): Uint8Array {
    return packValues(this.keyValues(row))
  }

  /** The key's values as encodeKey writes them (normalized, in key order), from a row object or a key object. */
  keyValues (row: Row): Value[] {
    return this.keyPositions.map(i => {
      const col = this.columns[i]!
      const raw = row[col.name]
      if (raw === null || raw === undefined) throw new RowEncodingError(`key column "${col.name}" is missing`)
      return normalizeValue(col.type, raw, col.name, col)
    })
  }

  /** Key bytes from canonical row values. */
  keyOfValues (values: readonly Value[]): Uint8Array {
    return packValues(this.keyPositions.map(i => values[i] ?? null))
  }

  keyOfEncodedRow (rowBytes: Uint8Array): Uint8Array { return this.keyOfValues(this.decodeValues(rowBytes)) }

  /**
   * keyOfEncodedRow for a row known to be in the canonical encoding (one
   * checkCanonicalRow passed, or this codec wrote): an array's encoding is
   * its header and then each value's own encoding, so such a row holds its
   * key columns' encodings as they are in the key, and the key is those
   * bytes under a header of its own, copied instead of decoding the row and
   * encoding the key again. A row of another shape goes through
   * keyOfEncodedRow. Not for rows that were not checked: a non-canonical
   * value would be copied as it is.
   */
  keyOfCanonicalRow (rowBytes: Uint8Array): Uint8Array {
    const offsets = scalarOffsets(rowBytes, this.columns.length)
    if (offsets === undefined) return this.keyOfEncodedRow(rowBytes)
    const positions = this.keyPositions
    // msgpackr's array header: fixarray up to 15 values, then array 16 (a key of 65,536 columns is no key)
    const header = positions.length <= 15 ? 1 : 3
    let length = header
    for (const p of positions) length += offsets[p + 1]! - offsets[p]!
    // a Buffer, as packValues gives (small ones come from Node's pool)
    const key = Buffer.allocUnsafe(length)
    if (header === 1) key[0] = 0x90 | positions.length
    else { key[0] = 0xdc; key[1] = positions.length >> 8; key[2] = positions.length & 0xff }
    let at = header
    for (const p of positions) for (let i = offsets[p]!; i < offsets[p + 1]!; i++) key[at++] = rowBytes[i]!
    return key
  }

  decodeValues (rowBytes: Uint8Array): Value[] {
    const values = unpackValues(rowBytes)
    if (values.length !== this.columns.length) throw new RowEncodingError(`encoded row has ${values.length} values, schema has ${this.columns.length} columns`)
    return values
  }

  /**
   * The values of a row's key columns and event-time column, the others left
   * undefined; it fails, and gives those values, exactly as decodeValues
   * would. Where the row is a flat array of plain scalars and those columns
   * hold nulls, booleans or numbers (integer keys, every canonical
   * timestamp), they are read straight from the encoding and nothing else is
   * decoded (a few times cheaper: strings are most of a row's decoding);
   * otherwise the row is decoded whole.
   */
  decodeKeyAndTime (rowBytes: Uint8Array): Value[] {
    const offsets = scalarOffsets(rowBytes, this.columns.length)
    if (offsets !== undefined) {
      const values = new Array<Value>(this.columns.length)
      let read = true
      for (const p of this.keyAndTimePositions) {
        const v = readNumeric(rowBytes, offsets[p]!)
        if (v === UNREAD) { read = false; break }
        values[p] = v
      }
      if (read) return values
    }
    return this.decodeValues(rowBytes)
  }

  /**
   * True when keyOfValues of the row's values would certainly give `key`:
   * its key columns hold nulls, booleans or numbers each encoded as this
   * codec encodes them, so the key's encoding is those bytes under a key
   * header, and `key` is exactly that. False means only "not known this
   * way" (a string key, another encoding): then encode the key to compare.
   * Spares encoding a key per row where most keys are integers.
   */
  isFiledUnder (rowBytes: Uint8Array, key: Uint8Array): boolean {
    const positions = this.keyPositions
    if (positions.length > 15 || key[0] !== (0x90 | positions.length)) return false
    const offsets = scalarOffsets(rowBytes, this.columns.length)
    if (offsets === undefined) return false
    let at = 1
    for (const p of positions) {
      if (!isCanonicalNumeric(rowBytes, offsets[p]!)) return false
      for (let i = offsets[p]!; i < offsets[p + 1]!; i++) if (key[at++] !== rowBytes[i]) return false
    }
    return at === key.length
  }

  /** A row object from canonical bytes; timestamps come back as Date, or as ISO text with microseconds for a column of `precision: us`. */
  decodeRow (rowBytes: Uint8Array): Row {
    const values = this.decodeValues(rowBytes)
    const row: Row = {}
    for (let i = 0; i < this.columns.length; i++) {
      const col = this.columns[i]!
      const v = values[i]
      if (col.type !== 'timestamp' || (typeof v !== 'number' && typeof v !== 'bigint')) row[col.name] = v
      else row[col.name] = col.precision === 'us' ? microsToIso(v) : new Date(Number(v))
    }
    return row
  }

  decodeKey (keyBytes: Uint8Array): Row {
    const values = unpackValues(keyBytes)
    const key: Row = {}
    this.keyPositions.forEach((p, i) => { key[this.columns[p]!.name] = values[i] })
    return key
  }

  /**
   * The key hash places the row in the tree. For a partitioned dataset its
   * top 16 bits come from the partition value and the rest from the key, so
   * that all rows of a partition sit under one node at PARTITION_LEVEL.
   */
  keyHash (keyBytes: Uint8Array): bigint {
    const h = xxh64(keyBytes)
    if (this.partitionKeyPosition === undefined) return h
    const value = unpackValues(keyBytes)[this.partitionKeyPosition] ?? null
    return (xxh64(packValues([value])) & PARTITION_MASK) | (h & ~PARTITION_MASK & U64_MASK)
  }

  /** The partition value of a key, for display; undefined when the dataset is not partitioned. */
  partitionOf (keyBytes: Uint8Array): Value | undefined {
    if (this.partitionKeyPosition === undefined) return undefined
    return unpackValues(keyBytes)[this.partitionKeyPosition] ?? null
  }

  /** The row digest: xxh64 of the canonical encoding without ignored columns. */
  rowDigest (rowBytes: Uint8Array): bigint {
    if (this.digestPositions === undefined) return xxh64(rowBytes)
    const values = this.decodeValues(rowBytes)
    return xxh64(packValues(this.digestPositions.map(i => values[i] ?? null)))
  }

  /** Event time (UTC ms, with a fraction for a column of `precision: us`) of canonical row values, if the schema declares one. */
  eventTime (values: readonly Value[]): number | undefined {
    if (this.eventTimePosition === undefined) return undefined
    const v = values[this.eventTimePosition]
    if (typeof v !== 'number' && typeof v !== 'bigint') return undefined
    return this.columns[this.eventTimePosition]!.precision === 'us' ? Number(v) / 1000 : Number(v)
  }
}
