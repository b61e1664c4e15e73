/**
 * Comparing replicas held under different but compatible schemas.
 *
 * A replica (L) and the source of truth (S) may disagree on their schemas in
 * ways that still let their rows be compared: a nullable column only one side
 * has, a numeric column widened on one side, a column renamed locally
 * (`renames: { localName: sourceName }`). Both sides then digest their rows
 * under one comparison schema P, derived here, and exchange P's fingerprint
 * instead of their own. Anything else (another key, another partition
 * column, types that do not widen, a column one side must have but the other
 * cannot supply, a rename of a column that does not exist) quarantines the
 * dataset.
 *
 * Roles are fixed: the first argument of compareSchemas is always the replica,
 * the second always the source. The replica calls
 * `compareSchemas(L, S, renames)`; the source, given the replica's schema in
 * source names (`renameSchema(L, renames)`, what the replica sends), calls
 * `compareSchemas(renameSchema(L, renames), S)`. P depends only on the renamed
 * local schema and S (the local column order included: it does not matter),
 * so both calls give the same P. The only verdict that can differ is a rename
 * into a column the source lacks: the source sees it as a local-only column,
 * the replica, which owns the renames, refuses it and never asks.
 *
 * P: the source's column names and order restricted to the common columns;
 * the source's key and partition column (which must match the local ones);
 * each column typed as the wider of its two types; ignored = the union of
 * both sides' ignored columns among the common ones; the source's event-time
 * column when common; the source's version.
 *
 * Widening lattice (a chain, plus every other type alone):
 *
 *     integer < float < decimal        string, boolean, timestamp, json, bytes: only themselves
 *
 * (a timestamp of one precision only with the same precision: ms or us.) A
 * form of the values kept on one side only, a decimal's scale or a JSON
 * text, is given up in P: compared by value (10.50 as 10.5) or by data (keys
 * sorted), which the kept form determines; the side that keeps it projects
 * its values so, and takes P's back as they are (10.5 and sorted JSON are
 * values of its form too).
 *
 * Widening a value is exact or a RowEncodingError: an integer beyond 2^53 that
 * no float holds exactly, a NaN or infinite float as a decimal. A float
 * becomes the decimal of its shortest round-trip digits (0.1 → "0.1",
 * 1e-25 → "0.0000000000000000000000001"), not normalizeValue's toFixed(20)
 * form, which rounds below 1e-20 and refuses 1e21 and above. Narrowing back
 * (embed) is accepted only when lossless, i.e. widening the result gives the
 * source's value again, so a row applied here digests exactly as the source's.
 */
import { ConvergeError, RowEncodingError } from '../errors.ts'
import { normalizeValue, packValues, RowCodec, type Value } from './row-codec.ts'
import { schemaFingerprint, type ColumnSpec, type ColumnType, type DatasetSchema } from './schema.ts'

export type CompatResult =
  | { compatible: true, identical: boolean, shape: DatasetSchema, notes: string[] }
  | { compatible: false, reasons: string[] }

/** Thrown when a schema pair or a projection cannot be used; `reasons` name each column and why. */
export class SchemaIncompatibleError extends ConvergeError {
  readonly reasons: readonly string[]
  constructor (reasons: readonly string[]) {
    super('CONVERGE_SCHEMA_INCOMPATIBLE', `incompatible schemas: ${reasons.join('; ')}`)
    this.reasons = reasons
  }
}

/** Thrown by Projection.embed when a source value does not fit the local column: the row cannot be applied here. */
export class NarrowingError extends RowEncodingError {
  readonly column: string
  constructor (column: string, message: string) {
    super(`column "${column}": ${message}`)
    this.column = column
  }
}

const NUMERIC_RANK: Partial<Record<ColumnType, number>> = { integer: 0, float: 1, decimal: 2 }

/** The least type both widen to, or undefined when there is none. */
export function widerType (a: ColumnType, b: ColumnType): ColumnType | undefined {
  if (a === b) return a
  const ra = NUMERIC_RANK[a]
  const rb = NUMERIC_RANK[b]
  if (ra === undefined || rb === undefined) return undefined
  return ra > rb ? a : b
}

/** A timestamp column's precision, the default spelled out. */
function precisionOf (col: ColumnSpec): string { return col.precision ?? 'ms' }

/** A decimal column's scale rule, in words. */
function scaleOf (col: ColumnSpec): string { return col.keepScale === true ? 'keeps its decimals\' scale (keepScale)' : 'drops trailing fraction zeros' }

/** Whether `from` keeps a form of its values (a decimal's scale, a JSON text) that `to` does not. */
function givesUpForm (from: ColumnSpec, to: ColumnSpec): boolean {
  return (from.keepScale === true && to.keepScale !== true) || (from.keepText === true && to.keepText !== true)
}

/** A json column's rule, in words. */
function jsonTextOf (col: ColumnSpec): string { return col.keepText === true ? 'keeps its JSON text as written (keepText)' : 'compares JSON with its keys sorted' }

function isNullable (schema: DatasetSchema, col: ColumnSpec): boolean {
  return col.nullable ?? !schema.primaryKey.includes(col.name)
}

const renamed = (renames: Record<string, string>, name: string): string => Object.hasOwn(renames, name) ? renames[name]! : name

/** Problems of the renames seen from the local schema alone. */
function renameProblems (local: DatasetSchema, renames: Record<string, string>): string[] {
  const reasons: string[] = []
  const names = new Set(local.columns.map(c => c.name))
  for (const [from, to] of Object.entries(renames)) {
    if (!names.has(from)) reasons.push(`rename "${from}" → "${to}": the local schema has no column "${from}"`)
  }
  const owners = new Map<string, string[]>()
  for (const c of local.columns) {
    const to = renamed(renames, c.name)
    owners.set(to, [...owners.get(to) ?? [], c.name])
  }
  for (const [to, from] of owners) {
    if (from.length > 1) reasons.push(`local columns ${from.map(n => `"${n}"`).join(', ')} would all be named "${to}" after renames`)
  }
  return reasons
}

/**
 * The local schema in source names: what a replica sends so that the source
 * can compute the same comparison schema. Throws SchemaIncompatibleError when
 * a rename names a missing local column or two columns end up with one name.
 */
export function renameSchema (local: DatasetSchema, renames: Record<string, string>): DatasetSchema {
  const problems = renameProblems(local, renames)
  if (problems.length > 0) throw new SchemaIncompatibleError(problems)
  const r = (name: string): string => renamed(renames, name)
  const out: DatasetSchema = {
    version: local.version,
    columns: local.columns.map(c => ({ ...c, name: r(c.name) })),
    primaryKey: local.primaryKey.map(r),
    ignoreColumns: local.ignoreColumns.map(r)
  }
  if (local.eventTimeColumn !== undefined) out.eventTimeColumn = r(local.eventTimeColumn)
  if (local.partitionColumn !== undefined) out.partitionColumn = r(local.partitionColumn)
  return out
}

/**
 * Decides whether `local` (the replica) and `source` (the source of truth)
 * can be compared and, if so, under which comparison schema P (`shape`).
 * `identical` means P has the source's digest shape and both projections are
 * the identity (renames change names only, not row bytes).
 */
export function compareSchemas (local: DatasetSchema, source: DatasetSchema, renames: Record<string, string> = {}): CompatResult {
  const reasons = renameProblems(local, renames)
  const sourceNames = new Set(source.columns.map(c => c.name))
  for (const [from, to] of Object.entries(renames)) {
    if (!sourceNames.has(to)) reasons.push(`rename "${from}" → "${to}": the source schema has no column "${to}"`)
  }
  if (reasons.length > 0) return { compatible: false, reasons }
  const notes: string[] = []
  for (const [from, to] of Object.entries(renames)) if (from !== to) notes.push(`local column "${from}" is source column "${to}" (renamed)`)
  return compareRenamed(renameSchema(local, renames), source, notes)
}

const list = (names: readonly string[]): string => `(${names.join(', ')})`

/** compareSchemas once local names are source names. */
function compareRenamed (local: DatasetSchema, source: DatasetSchema, notes: string[]): CompatResult {
  const reasons: string[] = []
  const localCols = new Map(local.columns.map(c => [c.name, c]))
  const sourceCols = new Map(source.columns.map(c => [c.name, c]))
  const keyNames = new Set([...local.primaryKey, ...source.primaryKey])

  if (list(local.primaryKey) !== list(source.primaryKey)) {
    reasons.push(`primary key differs: local ${list(local.primaryKey)} (after renames), source ${list(source.primaryKey)}`)
  } else {
    for (const name of source.primaryKey) {
      const l = localCols.get(name)
      const s = sourceCols.get(name)
      // key bytes feed the key hash, which places rows in the tree: no widening there
      if (l !== undefined && s !== undefined && l.type !== s.type) reasons.push(`key column "${name}": local ${l.type}, source ${s.type}; key types must be identical`)
    }
  }
  if (local.partitionColumn !== source.partitionColumn) {
    const show = (p: string | undefined): string => p === undefined ? 'none' : `"${p}"`
    reasons.push(`partition column differs: local ${show(local.partitionColumn)}, source ${show(source.partitionColumn)}`)
  }

  const columns: ColumnSpec[] = []
  for (const s of source.columns) {
    const l = localCols.get(s.name)
    if (l === undefined) {
      if (keyNames.has(s.name)) continue // reported as a key difference
      if (isNullable(source, s)) notes.push(`column "${s.name}" only in the source schema (nullable): not compared, not applied locally`)
      else reasons.push(`column "${s.name}" only in the source schema and not nullable there: the local replica could not supply it`)
      continue
    }
    const type = widerType(l.type, s.type)
    if (type === undefined) {
      if (!keyNames.has(s.name)) reasons.push(`column "${s.name}": local ${l.type} and source ${s.type} cannot be widened into each other`)
      continue
    }
    if (type === 'timestamp' && precisionOf(l) !== precisionOf(s)) {
      // milliseconds and microseconds are other values of one instant: they would never digest alike
      reasons.push(`column "${s.name}": local ${precisionOf(l)} timestamps, source ${precisionOf(s)}; declare the same precision on both sides`)
      continue
    }
    // a form one side keeps and the other cannot (a numeric(12,2) against an unconstrained numeric, jsonb against json):
    // compared in the form both have, the value (10.50 as 10.5) or the data (keys sorted), which the kept form determines
    const keepScale = l.keepScale === true && s.keepScale === true
    if ((l.keepScale === true) !== (s.keepScale === true)) notes.push(`column "${s.name}": the local column ${scaleOf(l)}, the source's ${scaleOf(s)}: compared by value, 10.50 as 10.5`)
    const keepText = l.keepText === true && s.keepText === true
    if ((l.keepText === true) !== (s.keepText === true)) notes.push(`column "${s.name}": the local column ${jsonTextOf(l)}, the source's ${jsonTextOf(s)}: compared by its data, keys sorted`)
    if (l.type !== s.type) notes.push(`column "${s.name}": local ${l.type}, source ${s.type}: compared as ${type}`)
    const ln = isNullable(local, l)
    const sn = isNullable(source, s)
    if (sn && !ln) notes.push(`column "${s.name}": nullable at the source only: a source row with NULL there cannot be applied locally`)
    if (ln && !sn) notes.push(`column "${s.name}": nullable locally only`)
    const spec: ColumnSpec = { name: s.name, type, ...(s.precision === 'us' ? { precision: 'us' as const } : {}), ...(keepScale ? { keepScale: true } : {}), ...(keepText ? { keepText: true } : {}) }
    // spelled out only when not the default, so P of two default-nullability schemas reads like the source's
    if ((ln || sn) !== !source.primaryKey.includes(s.name)) spec.nullable = ln || sn
    columns.push(spec)
  }
  for (const l of local.columns) {
    if (sourceCols.has(l.name) || keyNames.has(l.name)) continue
    if (isNullable(local, l)) notes.push(`column "${l.name}" only in the local schema (nullable): not compared`)
    else reasons.push(`column "${l.name}" only in the local schema and not nullable there: the source could not supply it`)
  }
  if (reasons.length > 0) return { compatible: false, reasons }

  const common = new Set(columns.map(c => c.name))
  const localIgnored = new Set(local.ignoreColumns)
  const sourceIgnored = new Set(source.ignoreColumns)
  const ignoreColumns = columns.map(c => c.name).filter(n => localIgnored.has(n) || sourceIgnored.has(n))
  for (const n of ignoreColumns) {
    if (!localIgnored.has(n)) notes.push(`column "${n}" is ignored at the source only: left out of the comparison`)
    if (!sourceIgnored.has(n)) notes.push(`column "${n}" is ignored locally only: left out of the comparison`)
  }
  const shape: DatasetSchema = { version: source.version, columns, primaryKey: [...source.primaryKey], ignoreColumns }
  if (source.eventTimeColumn !== undefined && common.has(source.eventTimeColumn)) shape.eventTimeColumn = source.eventTimeColumn
  if (local.eventTimeColumn !== shape.eventTimeColumn || source.eventTimeColumn !== shape.eventTimeColumn) {
    notes.push(`event-time column: local ${local.eventTimeColumn ?? 'none'}, source ${source.eventTimeColumn ?? 'none'}, compared as ${shape.eventTimeColumn ?? 'none'}`)
  }
  if (source.partitionColumn !== undefined) shape.partitionColumn = source.partitionColumn
  const identical = schemaFingerprint(local) === schemaFingerprint(source)
  return { compatible: true, identical, shape, notes }
}

/** A float as the decimal of its shortest round-trip digits, exponent spelled out. */
function floatToDecimal (v: number, column: string): string {
  if (!Number.isFinite(v)) throw new RowEncodingError(`column "${column}": ${v} has no decimal form`)
  const text = String(v)
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(text)
  if (m === null) return normalizeValue('decimal', text, column) as string
  const digits = m[2]! + (m[3] ?? '')
  const point = 1 + Number(m[4]) // the decimal point sits after this many digits
  const plain = point <= 0
    ? `0.${'0'.repeat(-point)}${digits}`
    : point >= digits.length ? digits + '0'.repeat(point - digits.length) : `${digits.slice(0, point)}.${digits.slice(point)}`
  return normalizeValue('decimal', m[1]! + plain, column) as string
}

/** A canonical value of type `from` as type `to` (to = widerType(from, to)); exact or a RowEncodingError. */
export function widenValue (from: ColumnType, to: ColumnType, v: Value, column: string): Value {
  if (v === null || from === to) return v
  if (from === 'integer' && to === 'float') {
    const n = Number(v)
    if (typeof v === 'bigint' && BigInt(n) !== v) throw new RowEncodingError(`column "${column}": integer ${v} has no exact float form`)
    return n
  }
  if (from === 'integer' && to === 'decimal') return normalizeValue('decimal', v, column)
  if (from === 'float' && to === 'decimal' && typeof v === 'number') return floatToDecimal(v, column)
  throw new RowEncodingError(`column "${column}": ${from} does not widen to ${to}`)
}

/**
 * A canonical value of the wider type `wide` as the narrower type `narrow`,
 * accepted only when widening the result gives `v` again; else NarrowingError.
 */
export function narrowValue (wide: ColumnType, narrow: ColumnType, v: Value, column: string): Value {
  if (v === null || wide === narrow) return v
  let out: Value
  let back: Value
  try {
    out = normalizeValue(narrow, v, column)
    back = widenValue(narrow, wide, out, column)
  } catch {
    throw new NarrowingError(column, `${wide} ${String(v)} does not fit ${narrow}`)
  }
  if (back !== v) throw new NarrowingError(column, `${wide} ${String(v)} is not exactly a ${narrow}`)
  return out
}

/**
 * Moves rows between one side's schema (`from`) and the comparison schema P
 * (`shape`). `renames` maps from-side names to P names ({} on the source).
 *
 * The key hash is the same under `from` and P: the constructor checks that
 * P's key columns are `from`'s, in order and with identical types, and that
 * the partition column is the same, so the key bytes and the partition
 * position, all keyHash depends on, are unchanged.
 */
export class Projection {
  readonly from: DatasetSchema
  readonly shape: DatasetSchema
  /** The codec of P: its fingerprint identifies P on the wire. */
  readonly codec: RowCodec
  readonly fromCodec: RowCodec
  /** Rows under `from` are already rows under P (same columns and types in the same positions). */
  readonly identity: boolean
  private readonly embedIdentity: boolean
  /** For each P column, its position in `from`. */
  private readonly sources: readonly number[]
  /** For each `from` column, its position in P, or -1 when P lacks it. */
  private readonly targets: readonly number[]

  constructor (from: DatasetSchema, shape: DatasetSchema, renames: Record<string, string> = {}) {
    this.from = from
    this.shape = shape
    this.fromCodec = new RowCodec(from)
    this.codec = new RowCodec(shape)
    const problems = renameProblems(from, renames)
    const position = new Map(from.columns.map((c, j) => [renamed(renames, c.name), j]))
    const sources: number[] = []
    for (const p of shape.columns) {
      const j = position.get(p.name)
      if (j === undefined) { problems.push(`column "${p.name}" of the comparison schema is not in this schema`); continue }
      const f = from.columns[j]!
      if (widerType(f.type, p.type) !== p.type) problems.push(`column "${p.name}": ${f.type} does not widen to ${p.type}`)
      else if (f.type === 'timestamp' && precisionOf(f) !== precisionOf(p)) problems.push(`column "${p.name}": ${precisionOf(f)} timestamps here, ${precisionOf(p)} in the comparison schema`)
      // a kept form is given up towards the comparison schema, never made up
      else if (p.keepScale === true && f.keepScale !== true) problems.push(`column "${p.name}": here it ${scaleOf(f)}, in the comparison schema it ${scaleOf(p)}`)
      else if (p.keepText === true && f.keepText !== true) problems.push(`column "${p.name}": here it ${jsonTextOf(f)}, in the comparison schema it ${jsonTextOf(p)}`)
      sources.push(j)
    }
    const key = from.primaryKey.map(n => renamed(renames, n))
    if (list(key) !== list(shape.primaryKey)) problems.push(`primary key ${list(key)} differs from the comparison key ${list(shape.primaryKey)}`)
    for (const name of shape.primaryKey) {
      const f = from.columns[position.get(name) ?? -1]
      const p = shape.columns.find(c => c.name === name)
      if (f !== undefined && p !== undefined && f.type !== p.type) problems.push(`key column "${name}": ${f.type} here, ${p.type} in the comparison schema`)
    }
    const partition = from.partitionColumn === undefined ? undefined : renamed(renames, from.partitionColumn)
    if (partition !== shape.partitionColumn) problems.push(`partition column ${partition ?? 'none'} differs from the comparison's ${shape.partitionColumn ?? 'none'}`)
    if (problems.length > 0) throw new SchemaIncompatibleError(problems)

    this.sources = sources
    const targets = from.columns.map(() => -1)
    sources.forEach((j, i) => { targets[j] = i })
    this.targets = targets
    this.identity = sources.length === from.columns.length &&
      sources.every((j, i) => j === i && from.columns[j]!.type === shape.columns[i]!.type && !givesUpForm(from.columns[j]!, shape.columns[i]!))
    // embedding passes P's NULLs through unchecked, so it is the identity only if `from` accepts every one
    this.embedIdentity = this.identity &&
      shape.columns.every((p, i) => !isNullable(shape, p) || isNullable(from, from.columns[i]!))
  }

  /** A row encoded under `from` as the same row encoded under P. */
  project (rowBytes: Uint8Array): Uint8Array {
    if (this.identity) return rowBytes
    const values = this.fromCodec.decodeValues(rowBytes)
    const from = this.from.columns
    return packValues(this.shape.columns.map((p, i) => {
      const j = this.sources[i]!
      const v = widenValue(from[j]!.type, p.type, values[j] ?? null, p.name)
      // a kept form the comparison schema does not have: the value (10.50 as 10.5), the data (keys sorted)
      return givesUpForm(from[j]!, p) && v !== null ? normalizeValue(p.type, v, p.name, p) : v
    }))
  }

  /** The row digest under P of a row encoded under `from`. */
  rowDigest (rowBytes: Uint8Array): bigint {
    return this.codec.rowDigest(this.project(rowBytes))
  }

  /**
   * A row under P (from the source) as a row under `from`, to apply here.
   * Columns P lacks keep their value from `current` (the local row of the
   * same key, when there is one; the caller pairs them) else NULL. Throws
   * NarrowingError (a RowEncodingError) naming the column when a value does
   * not fit the local type or a NULL meets a column not nullable here: the
   * row cannot be applied.
   */
  embed (shapeRow: Uint8Array, current?: Uint8Array): Uint8Array {
    if (this.embedIdentity) return shapeRow
    const values = this.codec.decodeValues(shapeRow)
    const kept = current === undefined ? undefined : this.fromCodec.decodeValues(current)
    const shape = this.shape.columns
    return packValues(this.from.columns.map((c, j) => {
      const i = this.targets[j]!
      const v = i < 0 ? kept?.[j] ?? null : narrowValue(shape[i]!.type, c.type, values[i] ?? null, c.name)
      if (v === null && !isNullable(this.from, c)) throw new NarrowingError(c.name, 'NULL in a column not nullable here')
      return v
    }))
  }
}
