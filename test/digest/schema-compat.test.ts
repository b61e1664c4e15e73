import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { RowCodec, type Row } from '../../src/digest/row-codec.ts'
import {
  compareSchemas, narrowValue, NarrowingError, Projection, renameSchema, SchemaIncompatibleError, widenValue, widerType, type CompatResult
} from '../../src/digest/schema-compat.ts'
import { schemaFingerprint, type ColumnSpec, type ColumnType, type DatasetSchema } from '../../src/digest/schema.ts'
import { RowEncodingError } from '../../src/errors.ts'

const source: DatasetSchema = {
  version: 4,
  columns: [
    { name: 'region', type: 'string' },
    { name: 'id', type: 'integer' },
    { name: 'amount', type: 'decimal' },
    { name: 'qty', type: 'integer' },
    { name: 'note', type: 'string' },
    { name: 'at', type: 'timestamp' },
    { name: 'synced_at', type: 'timestamp' }
  ],
  primaryKey: ['region', 'id'],
  ignoreColumns: ['synced_at'],
  eventTimeColumn: 'at'
}

/** The source schema with `edit` applied to a copy. */
function variant (edit: (s: DatasetSchema) => void): DatasetSchema {
  const copy = structuredClone(source)
  edit(copy)
  return copy
}

/** Row bytes as hex: Buffers from different pools compare unequal with toEqual. */
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

const column = (s: DatasetSchema, name: string): ColumnSpec => s.columns.find(c => c.name === name)!

function compatible (r: CompatResult): Extract<CompatResult, { compatible: true }> {
  if (!r.compatible) throw new Error(`expected compatible, got: ${r.reasons.join('; ')}`)
  return r
}

function reasonsOf (r: CompatResult): string[] {
  if (r.compatible) throw new Error('expected incompatible')
  return r.reasons
}

describe('compareSchemas: compatible differences', () => {
  it('identical schemas are identical and P is the source shape', () => {
    const r = compatible(compareSchemas(structuredClone(source), source))
    expect(r.identical).toBe(true)
    expect(r.notes).toEqual([])
    expect(r.shape).toEqual(source)
    expect(schemaFingerprint(r.shape)).toBe(schemaFingerprint(source))
  })

  it('timestamps of another precision are not comparable, and the reason says what to declare', () => {
    const micros = variant(s => { s.columns.find(c => c.name === 'at')!.precision = 'us' })
    for (const [local, remote, here, there] of [[micros, source, 'us', 'ms'], [source, micros, 'ms', 'us']] as const) {
      const r = compareSchemas(local, remote)
      expect(r.compatible).toBe(false)
      if (!r.compatible) expect(r.reasons).toEqual([`column "at": local ${here} timestamps, source ${there}; declare the same precision on both sides`])
    }
    // the same precision on both sides: identical, and P keeps it
    const same = compatible(compareSchemas(structuredClone(micros), micros))
    expect(same.identical).toBe(true)
    expect(same.shape.columns.find(c => c.name === 'at')!.precision).toBe('us')
    expect(schemaFingerprint(same.shape)).toBe(schemaFingerprint(micros))
    expect(() => new Projection(source, micros)).toThrow(/column "at": ms timestamps here, us in the comparison schema/)
  })

  it('a decimal that keeps its scale against one that does not: compared by value, each side\'s rows projected so', () => {
    const kept = variant(s => { s.columns.find(c => c.name === 'amount')!.keepScale = true })
    for (const [local, remote, note] of [
      [kept, source, 'column "amount": the local column keeps its decimals\' scale (keepScale), the source\'s drops trailing fraction zeros: compared by value, 10.50 as 10.5'],
      [source, kept, 'column "amount": the local column drops trailing fraction zeros, the source\'s keeps its decimals\' scale (keepScale): compared by value, 10.50 as 10.5']
    ] as const) {
      const r = compatible(compareSchemas(local, remote))
      expect(r.identical).toBe(false)
      expect(r.notes).toContain(note)
      expect(column(r.shape, 'amount').keepScale).toBeUndefined()
    }
    const shape = compatible(compareSchemas(kept, source)).shape
    // the side that keeps the scale gives it up towards P; P's rows embed back unchanged
    const row = { region: 'eu', id: 1, amount: '10.50', qty: 2, note: 'n', at: 1000, synced_at: 2000 }
    const keptCodec = new RowCodec(kept)
    const projection = new Projection(kept, shape)
    expect(projection.identity).toBe(false)
    const projected = projection.project(keptCodec.encodeRow(row))
    expect(hex(projected)).toBe(hex(new RowCodec(shape).encodeRow({ ...row, amount: '10.5' })))
    expect(hex(projection.embed(projected))).toBe(hex(keptCodec.encodeRow({ ...row, amount: '10.5' })))
    // the same scale on both sides: identical, and P keeps it
    const same = compatible(compareSchemas(structuredClone(kept), kept))
    expect(same.identical).toBe(true)
    expect(column(same.shape, 'amount').keepScale).toBe(true)
    // a comparison schema that keeps a scale this side does not have cannot be served
    expect(() => new Projection(source, kept)).toThrow(/column "amount": here it drops trailing fraction zeros, in the comparison schema it keeps its decimals' scale/)
  })

  it('a json column that keeps its text against one that does not (json against jsonb): compared by its data, keys sorted', () => {
    const withDoc = variant(s => { s.columns.push({ name: 'doc', type: 'json', nullable: true }) })
    const kept: DatasetSchema = { ...withDoc, columns: withDoc.columns.map(c => c.name === 'doc' ? { ...c, keepText: true } : c) }
    const r = compatible(compareSchemas(kept, withDoc))
    expect(r.notes).toContain('column "doc": the local column keeps its JSON text as written (keepText), the source\'s compares JSON with its keys sorted: compared by its data, keys sorted')
    expect(compatible(compareSchemas(withDoc, kept)).notes).toContain('column "doc": the local column compares JSON with its keys sorted, the source\'s keeps its JSON text as written (keepText): compared by its data, keys sorted')
    expect(column(r.shape, 'doc').keepText).toBeUndefined()
    const row = { region: 'eu', id: 1, amount: '1', qty: 2, note: 'n', at: 1000, synced_at: 2000, doc: '{"b": 1, "a": 2}' }
    const projection = new Projection(kept, r.shape)
    expect(hex(projection.project(new RowCodec(kept).encodeRow(row)))).toBe(hex(new RowCodec(r.shape).encodeRow({ ...row, doc: '{"a":2,"b":1}' })))
    const same = compatible(compareSchemas(structuredClone(kept), kept))
    expect(same.identical).toBe(true)
    expect(column(same.shape, 'doc').keepText).toBe(true)
    expect(() => new Projection(withDoc, kept)).toThrow(/column "doc": here it compares JSON with its keys sorted, in the comparison schema it keeps its JSON text as written/)
  })

  it('a nullable column only in the local schema is left out', () => {
    const local = variant(s => { s.columns.push({ name: 'note2', type: 'string', nullable: true }) })
    const r = compatible(compareSchemas(local, source))
    expect(r.identical).toBe(false)
    expect(r.shape.columns.map(c => c.name)).toEqual(source.columns.map(c => c.name))
    expect(r.notes).toEqual(['column "note2" only in the local schema (nullable): not compared'])
  })

  it('a nullable column only in the source schema is left out', () => {
    const local = variant(s => { s.columns = s.columns.filter(c => c.name !== 'note') })
    const r = compatible(compareSchemas(local, source))
    expect(r.shape.columns.map(c => c.name)).not.toContain('note')
    expect(r.notes.join('\n')).toMatch(/column "note" only in the source schema \(nullable\)/)
  })

  it('a widened type is compared as the wider type, in either direction', () => {
    // local wider than the source
    const wider = variant(s => { column(s, 'qty').type = 'decimal' })
    const r1 = compatible(compareSchemas(wider, source))
    expect(column(r1.shape, 'qty').type).toBe('decimal')
    expect(r1.notes).toContain('column "qty": local decimal, source integer: compared as decimal')
    // local narrower than the source
    const narrower = variant(s => { column(s, 'amount').type = 'integer' })
    const r2 = compatible(compareSchemas(narrower, source))
    expect(column(r2.shape, 'amount').type).toBe('decimal')
    // float against decimal, and integer against float
    const float = variant(s => { column(s, 'amount').type = 'float'; column(s, 'qty').type = 'float' })
    const r3 = compatible(compareSchemas(float, source))
    expect(column(r3.shape, 'amount').type).toBe('decimal')
    expect(column(r3.shape, 'qty').type).toBe('float')
    expect(compatible(compareSchemas(source, float)).shape).toEqual(r3.shape)
  })

  it('a renamed column is compared under the source name', () => {
    const local = variant(s => { column(s, 'note').name = 'remark' })
    const r = compatible(compareSchemas(local, source, { remark: 'note' }))
    // renames change names, not row bytes
    expect(r.identical).toBe(true)
    expect(r.shape).toEqual(source)
    expect(r.notes).toEqual(['local column "remark" is source column "note" (renamed)'])
  })

  it('renames apply to the key, ignored, event-time and partition columns', () => {
    const src: DatasetSchema = { ...source, partitionColumn: 'region' }
    const local = renameSchema(src, { region: 'zone', id: 'ident', synced_at: 'seen', at: 'when' })
    expect(local.primaryKey).toEqual(['zone', 'ident'])
    expect(local.ignoreColumns).toEqual(['seen'])
    expect(local.eventTimeColumn).toBe('when')
    expect(local.partitionColumn).toBe('zone')
    const r = compatible(compareSchemas(local, src, { zone: 'region', ident: 'id', seen: 'synced_at', when: 'at' }))
    expect(r.identical).toBe(true)
    expect(r.shape).toEqual(src)
  })

  it('a swap of two same-typed columns is not identical: the projection moves values', () => {
    const ab: DatasetSchema = { version: 1, columns: [{ name: 'k', type: 'integer' }, { name: 'a', type: 'string' }, { name: 'b', type: 'string' }], primaryKey: ['k'], ignoreColumns: [] }
    const r = compatible(compareSchemas(ab, ab, { a: 'b', b: 'a' }))
    expect(r.identical).toBe(false)
    const p = new Projection(ab, r.shape, { a: 'b', b: 'a' })
    expect(p.identity).toBe(false)
    const codec = new RowCodec(ab)
    expect(codec.decodeRow(p.project(codec.encodeRow({ k: 1, a: 'x', b: 'y' })))).toEqual({ k: 1, a: 'y', b: 'x' })
  })

  it('ignored columns are the union of both sides, among common columns', () => {
    const local = variant(s => { s.ignoreColumns = ['note'] })
    const r = compatible(compareSchemas(local, source))
    expect([...r.shape.ignoreColumns].sort()).toEqual(['note', 'synced_at'])
    expect(r.notes).toContain('column "note" is ignored locally only: left out of the comparison')
    expect(r.notes).toContain('column "synced_at" is ignored at the source only: left out of the comparison')
  })

  it('a nullability difference on a common column is compatible, with a note', () => {
    const local = variant(s => { column(s, 'note').nullable = false })
    const r = compatible(compareSchemas(local, source))
    expect(r.identical).toBe(true)
    expect(r.notes).toEqual(['column "note": nullable at the source only: a source row with NULL there cannot be applied locally'])
  })
})

describe('compareSchemas: incompatible differences', () => {
  const cases: Array<[string, DatasetSchema, Record<string, string>, RegExp]> = [
    ['key columns differ', variant(s => { s.primaryKey = ['region', 'qty'] }), {}, /primary key differs: local \(region, qty\) \(after renames\), source \(region, id\)/],
    ['key order differs', variant(s => { s.primaryKey = ['id', 'region'] }), {}, /primary key differs/],
    ['a key column type differs (even a widening)', variant(s => { column(s, 'id').type = 'decimal' }), {}, /key column "id": local decimal, source integer; key types must be identical/],
    ['the partition column differs', variant(s => { s.partitionColumn = 'region' }), {}, /partition column differs: local "region", source none/],
    ['string vs integer', variant(s => { column(s, 'qty').type = 'string' }), {}, /column "qty": local string and source integer cannot be widened/],
    ['timestamp vs integer', variant(s => { column(s, 'at').type = 'integer' }), {}, /column "at": local integer and source timestamp cannot be widened/],
    ['a local column that is not nullable', variant(s => { s.columns.push({ name: 'extra', type: 'string', nullable: false }) }), {}, /column "extra" only in the local schema and not nullable there/],
    ['a rename of a missing local column', source, { nothere: 'note' }, /rename "nothere" → "note": the local schema has no column "nothere"/],
    ['a rename into a missing source column', variant(s => { column(s, 'note').name = 'remark' }), { remark: 'nothere' }, /rename "remark" → "nothere": the source schema has no column "nothere"/],
    ['a rename onto another local column', source, { note: 'region' }, /local columns "region", "note" would all be named "region"/]
  ]
  for (const [name, local, renames, reason] of cases) {
    it(name, () => {
      const reasons = reasonsOf(compareSchemas(local, source, renames))
      expect(reasons.some(r => reason.test(r)), reasons.join('\n')).toBe(true)
    })
  }

  it('json vs bytes', () => {
    const a: DatasetSchema = { version: 1, columns: [{ name: 'k', type: 'integer' }, { name: 'v', type: 'json' }], primaryKey: ['k'], ignoreColumns: [] }
    const b: DatasetSchema = { ...a, columns: [{ name: 'k', type: 'integer' }, { name: 'v', type: 'bytes' }] }
    expect(reasonsOf(compareSchemas(a, b))).toEqual(['column "v": local json and source bytes cannot be widened into each other'])
  })

  it('a source column that is not nullable and missing here', () => {
    const src = variant(s => { column(s, 'note').nullable = false })
    const local = variant(s => { s.columns = s.columns.filter(c => c.name !== 'note') })
    expect(reasonsOf(compareSchemas(local, src))).toEqual(['column "note" only in the source schema and not nullable there: the local replica could not supply it'])
  })

  it('every problem is reported, not only the first', () => {
    const local = variant(s => { column(s, 'qty').type = 'string'; column(s, 'note').type = 'bytes'; s.partitionColumn = 'region' })
    expect(reasonsOf(compareSchemas(local, source))).toHaveLength(3)
  })
})

describe('widening lattice and values', () => {
  it('integer < float < decimal; other types only widen to themselves', () => {
    expect(widerType('integer', 'float')).toBe('float')
    expect(widerType('float', 'integer')).toBe('float')
    expect(widerType('integer', 'decimal')).toBe('decimal')
    expect(widerType('float', 'decimal')).toBe('decimal')
    expect(widerType('string', 'string')).toBe('string')
    expect(widerType('string', 'json')).toBeUndefined()
    expect(widerType('timestamp', 'integer')).toBeUndefined()
    expect(widerType('boolean', 'integer')).toBeUndefined()
  })

  it('floats become the decimal of their shortest digits, exponent spelled out', () => {
    const dec = (v: number): unknown => widenValue('float', 'decimal', v, 'c')
    expect(dec(1.5)).toBe('1.5')
    expect(dec(0.1)).toBe('0.1')
    expect(dec(-2.5e-7)).toBe('-0.00000025')
    expect(dec(1e-25)).toBe('0.0000000000000000000000001')
    expect(dec(1e21)).toBe('1000000000000000000000')
    expect(dec(1.5e22)).toBe('15000000000000000000000')
    expect(dec(5)).toBe('5')
    expect(() => dec(Number.NaN)).toThrow(RowEncodingError)
    expect(() => dec(Number.POSITIVE_INFINITY)).toThrow(RowEncodingError)
  })

  it('integers widen exactly or not at all', () => {
    expect(widenValue('integer', 'decimal', 2n ** 63n - 1n, 'c')).toBe('9223372036854775807')
    expect(widenValue('integer', 'decimal', -5, 'c')).toBe('-5')
    expect(widenValue('integer', 'float', 2n ** 60n, 'c')).toBe(2 ** 60)
    expect(() => widenValue('integer', 'float', 2n ** 60n + 1n, 'c')).toThrow(/no exact float form/)
  })

  it('narrowing is accepted only when lossless', () => {
    expect(narrowValue('decimal', 'integer', '2', 'qty')).toBe(2)
    expect(narrowValue('decimal', 'integer', '18446744073709551615', 'qty')).toBe(2n ** 64n - 1n)
    expect(narrowValue('decimal', 'float', '0.1', 'x')).toBe(0.1)
    expect(narrowValue('float', 'integer', 2 ** 60, 'x')).toBe(2n ** 60n)
    const fail = (fn: () => unknown): NarrowingError => {
      try { fn() } catch (err) { expect(err).toBeInstanceOf(NarrowingError); return err as NarrowingError }
      throw new Error('expected a NarrowingError')
    }
    expect(fail(() => narrowValue('decimal', 'integer', '2.5', 'qty')).column).toBe('qty')
    expect(fail(() => narrowValue('decimal', 'integer', '18446744073709551616', 'qty')).message).toMatch(/column "qty"/)
    expect(fail(() => narrowValue('float', 'integer', 2.5, 'qty')).code).toBe('CONVERGE_ROW_ENCODING')
    fail(() => narrowValue('decimal', 'float', '0.1000000000000000055511151231257827', 'x'))
    fail(() => narrowValue('decimal', 'float', `1${'0'.repeat(400)}`, 'x'))
  })
})

describe('Projection', () => {
  const local = variant(s => {
    column(s, 'amount').type = 'float'
    column(s, 'note').name = 'remark'
    s.columns.push({ name: 'local_only', type: 'string' })
    s.columns.reverse()
  })
  const renames = { remark: 'note' }
  const shape = compatible(compareSchemas(local, source, renames)).shape
  const toLocal = new Projection(local, shape, renames)
  const toShape = new Projection(source, shape)
  const localCodec = new RowCodec(local)
  const sourceCodec = new RowCodec(source)
  const row: Row = { region: 'eu', id: 7, amount: 12.5, qty: 3, remark: 'hi', at: 1000, synced_at: 5, local_only: 'mine' }
  const sourceRow: Row = { region: 'eu', id: 7, amount: '12.50', qty: 3, note: 'hi', at: 1000, synced_at: null }

  it('projects both sides to the same bytes and digest', () => {
    expect(toLocal.codec.fingerprint).toBe(toShape.codec.fingerprint)
    const l = localCodec.encodeRow(row)
    const s = sourceCodec.encodeRow(sourceRow)
    expect(hex(toLocal.project(l))).toBe(hex(toShape.project(sourceCodec.encodeRow({ ...sourceRow, synced_at: 5 }))))
    expect(toLocal.codec.decodeRow(toLocal.project(l))).toMatchObject({ amount: '12.5', note: 'hi' })
    // synced_at differs, but it is ignored
    expect(toLocal.rowDigest(l)).toBe(toShape.rowDigest(s))
    expect(toLocal.rowDigest(localCodec.encodeRow({ ...row, amount: 12.25 }))).not.toBe(toShape.rowDigest(s))
  })

  it('keeps the key hash', () => {
    const l = localCodec.encodeRow(row)
    const p = toLocal.project(l)
    expect(toLocal.codec.keyHash(toLocal.codec.keyOfEncodedRow(p))).toBe(localCodec.keyHash(localCodec.keyOfEncodedRow(l)))
  })

  it('embeds a source row, keeping local-only columns from the current row', () => {
    const current = localCodec.encodeRow(row)
    const incoming = toShape.project(sourceCodec.encodeRow({ ...sourceRow, amount: '99.25', note: 'new' }))
    expect(localCodec.decodeRow(toLocal.embed(incoming, current))).toMatchObject({ amount: 99.25, remark: 'new', local_only: 'mine' })
    expect(localCodec.decodeRow(toLocal.embed(incoming)).local_only).toBeNull()
    expect(hex(toLocal.embed(toLocal.project(current), current))).toBe(hex(current))
  })

  it('refuses a source value that does not fit, naming the column', () => {
    const intLocal = variant(s => { column(s, 'amount').type = 'integer' })
    const p = new Projection(intLocal, compatible(compareSchemas(intLocal, source)).shape)
    const intCodec = new RowCodec(intLocal)
    const ok = p.embed(sourceCodec.encodeRow({ ...sourceRow, amount: '2.00' }))
    expect(intCodec.decodeRow(ok).amount).toBe(2)
    expect(() => p.embed(sourceCodec.encodeRow({ ...sourceRow, amount: '2.50' }))).toThrow(NarrowingError)
    expect(() => p.embed(sourceCodec.encodeRow({ ...sourceRow, amount: '2.50' }))).toThrow(/column "amount"/)
  })

  it('refuses a NULL for a column not nullable here', () => {
    const strict = variant(s => { column(s, 'note').nullable = false })
    const p = new Projection(strict, compatible(compareSchemas(strict, source)).shape)
    expect(p.identity).toBe(true)
    expect(() => p.embed(sourceCodec.encodeRow({ ...sourceRow, note: null }))).toThrow(NarrowingError)
    expect(() => p.embed(sourceCodec.encodeRow(sourceRow))).not.toThrow()
  })

  it('is the identity when the shapes match, renamed or not', () => {
    const same = new Projection(source, source)
    const bytes = sourceCodec.encodeRow(sourceRow)
    expect(same.identity).toBe(true)
    expect(same.project(bytes)).toBe(bytes)
    expect(same.embed(bytes)).toBe(bytes)
    const renamedLocal = renameSchema(source, { note: 'remark' })
    const p = new Projection(renamedLocal, source, { remark: 'note' })
    expect(p.identity).toBe(true)
    expect(p.project(bytes)).toBe(bytes)
  })

  it('refuses a shape its schema cannot be projected to', () => {
    const otherKey = variant(s => { column(s, 'id').type = 'string' })
    expect(() => new Projection(otherKey, source)).toThrow(SchemaIncompatibleError)
    const narrower = variant(s => { column(s, 'amount').type = 'integer' })
    expect(() => new Projection(source, narrower)).toThrow(/decimal does not widen to integer/)
    expect(() => new Projection(source, { ...source, columns: [...source.columns, { name: 'x', type: 'string' }] })).toThrow(/"x" of the comparison schema is not in this schema/)
  })
})

// ---- properties over random compatible schema pairs ----

type Kind = 'numeric' | 'string' | 'boolean' | 'timestamp' | 'json' | 'bytes'
const NUMERIC: ColumnType[] = ['integer', 'float', 'decimal']

interface Side { name: string, type: ColumnType, nullable: boolean, ignored: boolean }
/** One logical column: its source name, and how each side holds it (absent when undefined). */
interface Logical { name: string, kind: Kind, key: boolean, local?: Side, source?: Side }
interface Pair { columns: Logical[], local: DatasetSchema, source: DatasetSchema, renames: Record<string, string> }

const keyArb = fc.record({ type: fc.constantFrom<ColumnType>('integer', 'string', 'decimal', 'timestamp'), renamed: fc.boolean() })
const columnArb = fc.record({
  kind: fc.constantFrom<Kind>('numeric', 'numeric', 'string', 'boolean', 'timestamp', 'json', 'bytes'),
  presence: fc.constantFrom('both', 'both', 'both', 'local', 'source'),
  localType: fc.constantFrom(...NUMERIC),
  sourceType: fc.constantFrom(...NUMERIC),
  localNullable: fc.boolean(),
  sourceNullable: fc.boolean(),
  localIgnored: fc.boolean(),
  sourceIgnored: fc.boolean(),
  renamed: fc.boolean()
})

const pairArb: fc.Arbitrary<Pair> = fc.record({
  keys: fc.array(keyArb, { minLength: 1, maxLength: 2 }),
  cols: fc.array(columnArb, { maxLength: 7 }),
  localOrder: fc.array(fc.double({ noNaN: true }), { minLength: 9, maxLength: 9 }),
  sourceOrder: fc.array(fc.double({ noNaN: true }), { minLength: 9, maxLength: 9 }),
  partitioned: fc.boolean(),
  version: fc.nat(5)
}).map(({ keys, cols, localOrder, sourceOrder, partitioned, version }) => {
  const columns: Logical[] = []
  keys.forEach((k, i) => {
    const name = `k${i}`
    columns.push({ name, kind: k.type === 'decimal' || k.type === 'integer' ? 'numeric' : k.type as Kind, key: true, local: { name: k.renamed ? `l_${name}` : name, type: k.type, nullable: false, ignored: false }, source: { name, type: k.type, nullable: false, ignored: false } })
  })
  cols.forEach((c, i) => {
    const name = `c${i}`
    const type = (side: ColumnType): ColumnType => c.kind === 'numeric' ? side : c.kind as ColumnType
    // a column one side lacks must be nullable on the side that has it
    const local: Side = { name: c.renamed && c.presence === 'both' ? `l_${name}` : name, type: type(c.localType), nullable: c.localNullable || c.presence === 'local', ignored: c.localIgnored }
    const source: Side = { name, type: type(c.sourceType), nullable: c.sourceNullable || c.presence === 'source', ignored: c.sourceIgnored }
    columns.push({ name, kind: c.kind, key: false, ...(c.presence !== 'source' ? { local } : {}), ...(c.presence !== 'local' ? { source } : {}) })
  })
  const schemaOf = (side: 'local' | 'source', order: number[]): DatasetSchema => {
    const held = columns.map((c, i) => ({ spec: c[side], at: order[i % order.length]! + i * 1e-9 })).filter(x => x.spec !== undefined).sort((a, b) => a.at - b.at).map(x => x.spec!)
    const s: DatasetSchema = {
      version,
      columns: held.map(h => ({ name: h.name, type: h.type, nullable: h.nullable })),
      primaryKey: columns.filter(c => c.key).map(c => c[side]!.name),
      ignoreColumns: held.filter(h => h.ignored).map(h => h.name)
    }
    if (partitioned) s.partitionColumn = columns[0]![side]!.name
    return s
  }
  const renames: Record<string, string> = {}
  for (const c of columns) if (c.local !== undefined && c.local.name !== c.name) renames[c.local.name] = c.name
  return { columns, local: schemaOf('local', localOrder), source: schemaOf('source', sourceOrder), renames }
})

/** A logical value of a column, one every type it has on either side can hold. */
function valueArb (c: Logical): fc.Arbitrary<unknown> {
  const types = [c.local?.type, c.source?.type].filter((t): t is ColumnType => t !== undefined)
  let arb: fc.Arbitrary<unknown>
  if (c.kind === 'numeric') {
    if (types.includes('integer') && types.includes('float')) arb = fc.maxSafeInteger()
    else if (types.includes('integer')) arb = fc.oneof(fc.maxSafeInteger(), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }))
    // n / 10^k with under 15 digits: its shortest float digits are exactly the decimal n / 10^k
    else if (types.includes('float')) arb = fc.tuple(fc.integer({ min: -(1e14), max: 1e14 }), fc.nat(6)).map(([n, k]) => n / 10 ** k)
    else arb = fc.tuple(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), fc.nat(12)).map(([n, k]) => decimalText(n, k))
  } else if (c.kind === 'string') arb = fc.string()
  else if (c.kind === 'boolean') arb = fc.boolean()
  else if (c.kind === 'timestamp') arb = fc.integer({ min: 0, max: 4e12 })
  else if (c.kind === 'json') arb = fc.jsonValue().map(v => JSON.stringify(v))
  else arb = fc.uint8Array({ maxLength: 8 })
  const nullable = (c.local?.nullable ?? true) && (c.source?.nullable ?? true)
  return nullable ? fc.option(arb, { nil: null }) : arb
}

/** n / 10^k as decimal text, trailing zeros kept (normalization drops them). */
function decimalText (n: bigint, k: number): string {
  const digits = (n < 0n ? -n : n).toString().padStart(k + 1, '0')
  return `${n < 0n ? '-' : ''}${k === 0 ? digits : `${digits.slice(0, -k)}.${digits.slice(-k)}`}`
}

/** The logical value as a driver of a store with column type `type` would return it. */
function asType (type: ColumnType, v: unknown): unknown {
  if (v === null) return null
  if (type === 'float') return Number(v)
  if (type === 'decimal') return String(v)
  return v
}

/** A different logical value (xxh64 collisions aside, a different digest). */
function mutate (c: Logical, v: unknown): unknown {
  if (v === null) return { numeric: 7, string: 'z', boolean: true, timestamp: 1, json: '1', bytes: new Uint8Array([1]) }[c.kind]
  if (c.kind === 'numeric') return typeof v === 'bigint' ? v + 1n : typeof v === 'number' ? (v >= 0 ? v + 1 : v - 1) : `${String(v)}1`
  if (c.kind === 'string') return `${String(v)}x`
  if (c.kind === 'boolean') return v !== true
  if (c.kind === 'timestamp') return (v as number) + 1
  if (c.kind === 'json') return `[${String(v)}]`
  return new Uint8Array([...(v as Uint8Array), 0])
}

function rowsOf (p: Pair, values: unknown[]): { local: Row, source: Row } {
  const local: Row = {}
  const source: Row = {}
  p.columns.forEach((c, i) => {
    if (c.local !== undefined) local[c.local.name] = asType(c.local.type, values[i])
    if (c.source !== undefined) source[c.source.name] = asType(c.source.type, values[i])
  })
  return { local, source }
}

const caseArb = pairArb.chain(p => fc.record({
  pair: fc.constant(p),
  values: fc.tuple(...p.columns.map(valueArb)),
  other: fc.tuple(...p.columns.map(valueArb)),
  pick: fc.nat()
}))

describe('properties', () => {
  it('both sides derive the same comparison schema, whatever the local column order', () => {
    fc.assert(fc.property(pairArb, fc.array(fc.double({ noNaN: true }), { minLength: 9, maxLength: 9 }), (p, order) => {
      const here = compatible(compareSchemas(p.local, p.source, p.renames))
      const there = compatible(compareSchemas(renameSchema(p.local, p.renames), p.source))
      expect(there.shape).toStrictEqual(here.shape)
      expect(there.identical).toBe(here.identical)
      const shuffled = { ...p.local, columns: p.local.columns.map((c, i) => ({ c, at: order[i % 9]! + i * 1e-9 })).sort((a, b) => a.at - b.at).map(x => x.c) }
      expect(compatible(compareSchemas(shuffled, p.source, p.renames)).shape).toStrictEqual(here.shape)
      const fromLocal = new Projection(p.local, here.shape, p.renames)
      const fromSource = new Projection(p.source, there.shape)
      expect(fromLocal.codec.fingerprint).toBe(fromSource.codec.fingerprint)
      // P keeps exactly the common columns, in source order, with the source key
      const common = p.columns.filter(c => c.local !== undefined && c.source !== undefined).map(c => c.name)
      expect(here.shape.columns.map(c => c.name)).toEqual(p.source.columns.map(c => c.name).filter(n => common.includes(n)))
      expect(here.shape.primaryKey).toEqual(p.source.primaryKey)
      if (here.identical) expect(schemaFingerprint(here.shape)).toBe(schemaFingerprint(p.source))
    }), { numRuns: 300 })
  })

  it('the same logical row digests alike on both sides; a changed common column does not', () => {
    fc.assert(fc.property(caseArb, ({ pair: p, values, other, pick }) => {
      const { shape } = compatible(compareSchemas(p.local, p.source, p.renames))
      const toLocal = new Projection(p.local, shape, p.renames)
      const toSource = new Projection(p.source, shape)
      const lc = new RowCodec(p.local)
      const sc = new RowCodec(p.source)
      // columns only one side has take unrelated values: they are not compared
      const localValues = values.map((v, i) => p.columns[i]!.source === undefined ? other[i] : v)
      const l = lc.encodeRow(rowsOf(p, localValues).local)
      const s = sc.encodeRow(rowsOf(p, values).source)
      expect(hex(toLocal.project(l))).toBe(hex(toSource.project(s)))
      expect(toLocal.rowDigest(l)).toBe(toSource.rowDigest(s))
      expect(lc.keyHash(lc.keyOfEncodedRow(l))).toBe(toSource.codec.keyHash(toSource.codec.keyOfEncodedRow(toSource.project(s))))

      const compared = p.columns.map((_, i) => i).filter(i => shape.columns.some(c => c.name === p.columns[i]!.name) && !shape.ignoreColumns.includes(p.columns[i]!.name))
      const i = compared[pick % compared.length]!
      const changed = [...values]
      changed[i] = mutate(p.columns[i]!, values[i])
      // a key column may not become NULL, and mutate never returns NULL
      const s2 = sc.encodeRow(rowsOf(p, changed).source)
      expect(toSource.rowDigest(s2)).not.toBe(toLocal.rowDigest(l))
    }), { numRuns: 400 })
  })

  it('embed(project(x), x) is x, and a source row applied here digests as at the source', () => {
    fc.assert(fc.property(caseArb, ({ pair: p, values, other }) => {
      const { shape } = compatible(compareSchemas(p.local, p.source, p.renames))
      const toLocal = new Projection(p.local, shape, p.renames)
      const toSource = new Projection(p.source, shape)
      const lc = new RowCodec(p.local)
      const sc = new RowCodec(p.source)
      const l = lc.encodeRow(rowsOf(p, values).local)
      expect(hex(toLocal.embed(toLocal.project(l), l))).toBe(hex(l))
      const s = sc.encodeRow(rowsOf(p, values).source)
      expect(hex(toSource.embed(toSource.project(s), s))).toBe(hex(s))
      // the source's version of a row (other common values) applied over the local row
      const incoming = toSource.project(sc.encodeRow(rowsOf(p, other.map((v, i) => p.columns[i]!.key ? values[i] : v)).source))
      const applied = toLocal.embed(incoming, l)
      expect(hex(toLocal.project(applied))).toBe(hex(incoming))
      // local-only columns keep their local values
      const before = lc.decodeValues(l)
      const after = lc.decodeValues(applied)
      p.local.columns.forEach((c, j) => { if (!shape.columns.some(s => s.name === (p.renames[c.name] ?? c.name))) expect(after[j]).toEqual(before[j]) })
    }), { numRuns: 400 })
  })
})
