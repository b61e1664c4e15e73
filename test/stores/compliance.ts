/**
 * What every ReplicaStore must do, checked through the ReplicaStore interface
 * only (plus, where the backend has one, a second writer behind the store's
 * back), so one suite serves the LevelDB, PostgreSQL and SQLite stores:
 *
 *   describeReplicaStoreCompliance('LevelDB', async schema => { … })
 *
 * Rows cross the interface as canonical bytes (RowCodec), so every check
 * compares canonical bytes: what was written must read back byte for byte,
 * whatever the backend does with the values in between. Each test makes its
 * own store from the factory, for its own schema, and cleans it up.
 *
 * Capabilities are read from `store.supports`: the change feed test is
 * reported as skipped for a store without a feed, and an apply that fails is
 * only required to leave the store unchanged where `supports.transactions`.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { packValues, RowCodec, type Row, type Value } from '../../src/digest/row-codec.ts'
import { COLUMN_TYPES, type ColumnType, type DatasetSchema } from '../../src/digest/schema.ts'
import type { ChangeBatch, ReplicaStore } from '../../src/stores/replica-store.ts'

export interface StoreUnderTest {
  store: ReplicaStore            // opened
  /** Writes rows straight into the backing database, as another application would (not through apply). Optional: LevelDB has no second writer. */
  writeBehind?: (upserts: Row[], deletes: Row[]) => Promise<void>
  /** Another store over the same data, not yet opened (a second process would make the same one). */
  openAgain: () => ReplicaStore
  cleanup: () => Promise<void>   // closes and removes everything
}
export type StoreFactory = (schema: DatasetSchema) => Promise<StoreUnderTest>

type Bytes = Uint8Array
/** Canonical rows by the hex of their canonical key. */
type Model = Map<string, Bytes>

/** How long a change feed may take to deliver what was committed (polling feeds need a while). */
const FEED_WAIT_MS = 10_000
/** How long a feed may take to end once its signal aborts. */
const FEED_STOP_MS = 2_000
const BASE_TIME = Date.UTC(2026, 0, 1)

// ---------------------------------------------------------------- helpers

const hex = (b: Bytes): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
const hexOrNull = (b: Bytes | null | undefined): string | null => (b === null || b === undefined ? null : hex(b))
const fromHex = (h: string): Bytes => new Uint8Array(Buffer.from(h, 'hex'))

/** A small deterministic PRNG (mulberry32), so every run writes the same data. */
function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

function shuffled<T> (items: readonly T[], random: () => number): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const t = out[i]!; out[i] = out[j]!; out[j] = t
  }
  return out
}

function randomBytes (n: number, random: () => number): Bytes {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256)
  return out
}

function chunks<T> (items: readonly T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

function formatValue (v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`
  if (v instanceof Uint8Array) return `0x${hex(v)}`
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)
  return String(v)
}

/** A key as a reader can tell it apart in a failure message. */
function describeKey (codec: RowCodec, keyHex: string): string {
  try {
    return `(${Object.values(codec.decodeKey(fromHex(keyHex))).map(formatValue).join(', ')})`
  } catch {
    return `<undecodable key ${keyHex.slice(0, 40)}>`
  }
}

/** The first few items and how many more, so a failure shows what went wrong without a megabyte diff. */
function firstFew (items: string[]): string[] {
  return items.length <= 5 ? items : [...items.slice(0, 5), `… and ${items.length - 5} more`]
}

async function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/** Makes a store for the schema, runs the body, and always cleans up. */
async function withStore (makeStore: StoreFactory, schema: DatasetSchema, body: (sut: StoreUnderTest, codec: RowCodec) => Promise<void>): Promise<void> {
  const sut = await makeStore(schema)
  try {
    const codec = new RowCodec(schema)
    expect(sut.store.codec.fingerprint, 'the factory made a store whose codec is for the schema it was given').toBe(codec.fingerprint)
    await body(sut, codec)
  } finally {
    await sut.cleanup()
  }
}

function modelOf (codec: RowCodec, rows: readonly Bytes[]): Model {
  const model: Model = new Map()
  for (const row of rows) {
    const key = hex(codec.keyOfEncodedRow(row))
    if (model.has(key)) throw new Error(`test data: key ${describeKey(codec, key)} is written twice`)
    model.set(key, row)
  }
  return model
}

/** The before-images an apply should return: upserts then deletes, in request order, null where absent. */
function expectedBefore (codec: RowCodec, model: Model, upserts: readonly Bytes[], deletes: readonly Bytes[]): Array<string | null> {
  return [...upserts.map(r => codec.keyOfEncodedRow(r)), ...deletes].map(k => hexOrNull(model.get(hex(k))))
}

function applyToModel (codec: RowCodec, model: Model, upserts: readonly Bytes[], deletes: readonly Bytes[]): void {
  for (const row of upserts) model.set(hex(codec.keyOfEncodedRow(row)), row)
  for (const key of deletes) model.delete(hex(key))
}

/** Applies through the store, checks the before-images against the model, then updates the model. */
async function applyChecked (store: ReplicaStore, codec: RowCodec, model: Model, upserts: Bytes[], deletes: Bytes[], origin?: string): Promise<number> {
  const want = expectedBefore(codec, model, upserts, deletes)
  const result = await store.apply(origin === undefined ? { upserts, deletes } : { upserts, deletes, origin })
  const got = result.before.map(hexOrNull)
  expect(got.length, 'apply returns one before-image per upsert and per delete').toBe(want.length)
  const wrong = want.flatMap((w, i) => (got[i] === w ? [] : [`#${i}: ${got[i] === null ? 'null' : 'a row'} where ${w === null ? 'null' : 'the prior row'} was expected`]))
  expect(firstFew(wrong), 'before-images are the rows before the apply, upserts then deletes, null where absent').toEqual([])
  applyToModel(codec, model, upserts, deletes)
  return result.seq
}

interface ScanResult {
  rows: Model
  duplicates: string[]
  misKeyed: string[]
  batchSizes: number[]
}

async function scanAll (store: ReplicaStore, batchSize?: number): Promise<ScanResult> {
  const out: ScanResult = { rows: new Map(), duplicates: [], misKeyed: [], batchSizes: [] }
  for await (const batch of store.scan(batchSize === undefined ? {} : { batchSize })) {
    out.batchSizes.push(batch.length)
    for (const { key, row } of batch) {
      const k = hex(key)
      if (out.rows.has(k)) out.duplicates.push(k)
      if (hex(store.codec.keyOfEncodedRow(row)) !== k) out.misKeyed.push(k)
      out.rows.set(k, row)
    }
  }
  return out
}

/** The rows read equal the model: same keys, same canonical bytes. */
function expectSameRows (codec: RowCodec, actual: Model, expected: Model, what: string): void {
  const missing = [...expected.keys()].filter(k => !actual.has(k))
  const extra = [...actual.keys()].filter(k => !expected.has(k))
  const differing = [...expected].filter(([k, r]) => actual.has(k) && hex(actual.get(k)!) !== hex(r)).map(([k]) => k)
  const show = (keys: string[]): string[] => firstFew(keys.map(k => describeKey(codec, k)))
  expect({ missing: show(missing), extra: show(extra), differing: show(differing) }, what).toEqual({ missing: [], extra: [], differing: [] })
}

async function expectScan (store: ReplicaStore, codec: RowCodec, model: Model, batchSize?: number): Promise<void> {
  const what = `scan${batchSize === undefined ? '' : ` (batchSize ${batchSize})`}`
  const scan = await scanAll(store, batchSize)
  expect(firstFew(scan.duplicates.map(k => describeKey(codec, k))), `${what} returns each row once`).toEqual([])
  expect(firstFew(scan.misKeyed.map(k => describeKey(codec, k))), `${what} gives each row under its canonical key`).toEqual([])
  if (batchSize !== undefined) expect(scan.batchSizes.filter(n => n > batchSize), `${what} respects batchSize`).toEqual([])
  expectSameRows(codec, scan.rows, model, `${what} returns exactly the rows written`)
  const digests = [...scan.rows].filter(([k, r]) => model.has(k) && store.codec.rowDigest(r) !== codec.rowDigest(model.get(k)!)).map(([k]) => describeKey(codec, k))
  expect(firstFew(digests), `${what}: rows digest as written`).toEqual([])
}

/** get of every row (shuffled, with absent keys mixed in) returns the canonical rows in request order. */
async function expectGet (store: ReplicaStore, codec: RowCodec, model: Model, absent: readonly Bytes[] = [], seed = 1): Promise<void> {
  const requests = shuffled([...[...model.keys()].map(fromHex), ...absent], rng(seed))
  const got = await store.get(requests)
  expect(got.length, 'get returns one entry per key').toBe(requests.length)
  const wrong: string[] = []
  requests.forEach((key, i) => {
    const want = model.get(hex(key))
    const have = got[i]
    if (want === undefined) {
      if (have !== undefined) wrong.push(`${describeKey(codec, hex(key))}: a row where none was expected`)
    } else if (have === undefined || have === null) {
      wrong.push(`${describeKey(codec, hex(key))}: missing`)
    } else if (hex(have) !== hex(want)) {
      wrong.push(`${describeKey(codec, hex(key))}: different bytes`)
    } else if (store.codec.rowDigest(have) !== codec.rowDigest(want)) {
      wrong.push(`${describeKey(codec, hex(key))}: different digest`)
    }
  })
  expect(firstFew(wrong), 'get returns the canonical rows in request order, undefined for absent keys').toEqual([])
}

async function expectHolds (store: ReplicaStore, codec: RowCodec, model: Model, options: { absent?: Bytes[], batchSizes?: Array<number | undefined> } = {}): Promise<void> {
  for (const batchSize of options.batchSizes ?? [undefined]) await expectScan(store, codec, model, batchSize)
  await expectGet(store, codec, model, options.absent)
}

interface Exercise {
  initial: Row[]
  /** A second apply over the initial rows. */
  upserts?: Row[]
  /** Rows (or key objects) deleted by the second apply. */
  deletes?: Row[]
  /** Keys that must read back as undefined. */
  absent?: Row[]
  batchSizes?: Array<number | undefined>
}

/**
 * Writes rows, reads them back by scan and get (bytes and digests), changes
 * some of them, checks the before-images, and reads everything back again.
 */
async function exercise (store: ReplicaStore, codec: RowCodec, ex: Exercise): Promise<Model> {
  const model: Model = new Map()
  const initial = ex.initial.map(r => codec.encodeRow(r))
  modelOf(codec, initial) // the test data has unique keys
  await applyChecked(store, codec, model, initial, [])
  const options = { absent: (ex.absent ?? []).map(k => codec.encodeKey(k)), batchSizes: ex.batchSizes }
  await expectHolds(store, codec, model, options)
  if ((ex.upserts?.length ?? 0) + (ex.deletes?.length ?? 0) > 0) {
    await applyChecked(store, codec, model, (ex.upserts ?? []).map(r => codec.encodeRow(r)), (ex.deletes ?? []).map(k => codec.encodeKey(k)))
    await expectHolds(store, codec, model, options)
  }
  return model
}

// ---------------------------------------------------------------- change feeds

interface Feed {
  got: ChangeBatch[]
  /** Waits until a batch with seq ≥ target has arrived; fails at once if the feed ended. */
  reach: (target: number) => Promise<void>
  /** Aborts the feed's signal and waits (a while) for it to end. */
  stop: () => Promise<{ ended: boolean, error: unknown }>
}

function follow (store: ReplicaStore, since: number): Feed {
  const controller = new AbortController()
  const got: ChangeBatch[] = []
  let ended = false
  let error: unknown
  const done = (async () => {
    try {
      for await (const batch of store.changes({ since, signal: controller.signal })) got.push(batch)
    } catch (err) {
      error = err
    } finally {
      ended = true
    }
  })()
  const last = (): number => got.at(-1)?.seq ?? since
  return {
    got,
    reach: async (target) => {
      const deadline = Date.now() + FEED_WAIT_MS
      while (last() < target) {
        if (ended) throw new Error(`the change feed from ${since} ended at seq ${last()} before reaching seq ${target}: ${String(error)}`, { cause: error })
        if (Date.now() > deadline) throw new Error(`the change feed from ${since} did not reach seq ${target} within ${FEED_WAIT_MS} ms (last seq ${last()})`)
        await sleep(5)
      }
    },
    stop: async () => {
      controller.abort()
      await Promise.race([done, sleep(FEED_STOP_MS)])
      return { ended, error }
    }
  }
}

interface Source { name: string, origin: string | undefined, prevSeq: number, seq: number }
interface Step { row: string | null, before: string | null, source: number }

// ---------------------------------------------------------------- schemas and rows

const ITEMS: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'name', type: 'string' },
    { name: 'qty', type: 'integer' },
    { name: 'price', type: 'decimal' },
    { name: 'updated_at', type: 'timestamp' }
  ],
  primaryKey: ['id'],
  ignoreColumns: [],
  eventTimeColumn: 'updated_at'
}

function item (id: number | bigint, rev = 0): Row {
  const h = Math.imul(Number(BigInt.asUintN(32, BigInt(id))) ^ 0x9e3779b9, 0x85ebca6b) >>> 0
  return { id, name: `item-${id}`, qty: (h + rev) % 1000, price: `${h % 100_000}.${(h + rev) % 100}`, updated_at: BASE_TIME + (h % 1_000_000) * 1000 + rev }
}

/** Composite key of two columns, declared in an order other than the columns'. */
const PAIRS: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'region', type: 'string' },
    { name: 'label', type: 'string' },
    { name: 'score', type: 'float' }
  ],
  primaryKey: ['region', 'id'],
  ignoreColumns: []
}

/** Composite key of three columns: bytes, timestamp, integer. */
const TRIPLES: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'n', type: 'integer' },
    { name: 'tenant', type: 'bytes' },
    { name: 'at', type: 'timestamp' },
    { name: 'payload', type: 'json' }
  ],
  primaryKey: ['tenant', 'at', 'n'],
  ignoreColumns: []
}

/** One nullable column of each type, and a nullable column left out of the digest. */
const NULLABLE: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'i', type: 'integer', nullable: true },
    { name: 'f', type: 'float', nullable: true },
    { name: 'd', type: 'decimal', nullable: true },
    { name: 's', type: 'string', nullable: true },
    { name: 'b', type: 'boolean', nullable: true },
    { name: 't', type: 'timestamp', nullable: true },
    { name: 'j', type: 'json', nullable: true },
    { name: 'y', type: 'bytes', nullable: true },
    { name: 'seen', type: 'timestamp', nullable: true }
  ],
  primaryKey: ['id'],
  ignoreColumns: ['seen']
}

const UNICODE: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'k', type: 'string' },
    { name: 'v', type: 'string' },
    { name: 'j', type: 'json' },
    { name: 'n', type: 'integer' }
  ],
  primaryKey: ['k'],
  ignoreColumns: []
}

const LARGE: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'text', type: 'string', nullable: true },
    { name: 'blob', type: 'bytes', nullable: true }
  ],
  primaryKey: ['id'],
  ignoreColumns: []
}

const WIDE_COLUMNS = 60
const WIDE: DatasetSchema = {
  version: 1,
  columns: Array.from({ length: WIDE_COLUMNS }, (_, i) => ({ name: `c${String(i).padStart(2, '0')}`, type: COLUMN_TYPES[i % COLUMN_TYPES.length]! })),
  primaryKey: ['c00'],
  ignoreColumns: []
}

const NARROW: DatasetSchema = { version: 1, columns: [{ name: 'id', type: 'string' }], primaryKey: ['id'], ignoreColumns: [] }
const NARROW_COMPOSITE: DatasetSchema = {
  version: 1,
  columns: [{ name: 'a', type: 'integer' }, { name: 'b', type: 'bytes' }],
  primaryKey: ['a', 'b'],
  ignoreColumns: []
}

/** Every type, each column nullable, and a column left out of the digest. */
const ALL_TYPES: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'id', type: 'integer' },
    ...COLUMN_TYPES.map(type => ({ name: `v_${type}`, type, nullable: true })),
    { name: 'synced_at', type: 'timestamp', nullable: true }
  ],
  primaryKey: ['id'],
  ignoreColumns: ['synced_at']
}

/** A deterministic value of a type, from a seed; varied enough to hit edge cases of each type. */
function valueOf (type: ColumnType, seed: number): unknown {
  const random = rng(seed)
  const pick = <T>(options: readonly T[]): T => options[seed % options.length]!
  switch (type) {
    case 'integer': return pick<number | bigint>([seed, -seed * 1000 - 1, 2n ** 62n + BigInt(seed), -(2n ** 63n), 2n ** 63n - 1n, 0, 2 ** 53 - 1])
    case 'float': return pick([seed / 7, -1e300, 5e-324, 0.1, 1.5e-10 * seed, -0, 2 ** 60])
    case 'decimal': return pick([`${seed}.${seed % 1000}`, `-${seed}.05`, '123456789012345678901234567890.000000001', '0.000', '1', `${seed}`])
    case 'string': return pick([`s${seed}`, '', `mixed ünïcødé ${seed} 😀`, 'NULL', ' padded ', 'tab\tand\nnewline'])
    case 'boolean': return seed % 2 === 0
    case 'timestamp': return pick([BASE_TIME + seed * 1_234_567, -86_400_000 * 365 * 30 + seed, 0, Date.UTC(2199, 11, 31, 23, 59, 59, 999)])
    case 'json': return pick([{ a: seed, b: [seed, 'x', null], nested: { z: null, y: true } }, [1, 2.5, 'three'], 'null', '"just a string"', { 'ключ': '值', 'emoji': '🎉' }, {}])
    case 'bytes': return randomBytes(seed % 50, random)
  }
}

function wideRow (id: number, rev = 0): Row {
  const row: Row = {}
  WIDE.columns.forEach((col, j) => {
    if (j === 0) row[col.name] = id
    else row[col.name] = (id + j + rev) % 11 === 0 ? null : valueOf(col.type, id * 61 + j + rev * 7)
  })
  return row
}

const UNICODE_STRINGS = [
  '😀', '👩‍👩‍👧‍👦', '🇯🇵', '🏳️‍🌈', // emoji: astral, ZWJ sequence, flag, variation selector
  '\u00e9', 'e\u0301', // é precomposed (NFC) and decomposed (NFD): two different keys
  '\u00c5', '\u212b', 'A\u030a', // Å three ways
  'Z\u0334\u0321\u032a\u034e\u0359\u032f\u0313\u0304\u035b', // a stack of combining marks
  '中文', '日本語のテキスト', '한국어', '𠜎𠜱𠝹', // CJK, including astral ideographs
  'שלום', 'مرحبا بالعالم', '\u202eabc\u202c', 'abc \u200f שלום', // RTL, RTL override, RLM mark
  'straße', 'STRASSE', 'Straße', 'a', 'A', 'abc', 'abc ', // case and trailing space are significant
  'ﬁ', 'fi', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '\u200b', '' // ligature, math alphanumerics, zero-width space, empty
]

// ---------------------------------------------------------------- random rows (fast-check)

const noNul = (s: string): boolean => !s.includes('\u0000') && !s.includes('\\u0000')
const ALL_TYPES_VALUE: Record<ColumnType, fc.Arbitrary<unknown>> = {
  integer: fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
  float: fc.double({ noNaN: true, noDefaultInfinity: true }),
  decimal: fc.tuple(fc.bigInt({ min: -(10n ** 28n), max: 10n ** 28n }), fc.nat({ max: 12 })).map(([n, scale]) => {
    const digits = (n < 0n ? -n : n).toString().padStart(scale + 1, '0')
    const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`
    return n < 0n ? `-${text}` : text
  }),
  string: fc.string({ unit: 'grapheme', maxLength: 24 }).filter(noNul),
  boolean: fc.boolean(),
  timestamp: fc.integer({ min: Date.UTC(1900, 0, 1), max: Date.UTC(2199, 11, 31) }),
  json: fc.jsonValue({ maxDepth: 2 }).map(v => JSON.stringify(v)).filter(noNul),
  bytes: fc.uint8Array({ maxLength: 48 })
}
const ALL_TYPES_ROW: fc.Arbitrary<Row> = fc.record(Object.fromEntries([
  ...COLUMN_TYPES.map(type => [`v_${type}`, fc.option(ALL_TYPES_VALUE[type], { nil: null, freq: 5 })]),
  ['synced_at', fc.option(ALL_TYPES_VALUE.timestamp, { nil: null })]
]) as Record<string, fc.Arbitrary<unknown>>)

// ---------------------------------------------------------------- the suite

export function describeReplicaStoreCompliance (name: string, makeStore: StoreFactory): void {
  describe(`${name} store compliance`, () => {
    it('scan returns every row exactly once whatever order the rows were written in, in batches of at most batchSize', async () => {
      const codec = new RowCodec(ITEMS)
      const ids: Array<number | bigint> = [0, -1, 1, 2 ** 31, 2 ** 53 - 1, 9_007_199_254_740_993n, -(2n ** 63n), 2n ** 63n - 1n]
      for (let i = 0; i < 600; i++) ids.push(i * 7919 - 250_000)
      const rows = ids.map(id => codec.encodeRow(item(id)))
      const expected = modelOf(codec, rows)
      const random = rng(42)

      // written all at once, in a shuffled order
      await withStore(makeStore, ITEMS, async ({ store }) => {
        expect((await scanAll(store)).rows.size, 'an empty store scans to nothing').toBe(0)
        await store.apply({ upserts: shuffled(rows, random), deletes: [] })
        for (const batchSize of [1, 7, 256, undefined]) await expectScan(store, codec, expected, batchSize)
      })
      // written in reverse, in batches of varying size, with rows first written in another
      // version and overwritten, and rows deleted and written again
      await withStore(makeStore, ITEMS, async ({ store }) => {
        const reversed = [...rows].reverse()
        const early = reversed.slice(0, 50).map(r => codec.encodeRow(item(codec.decodeRow(r).id as number | bigint, 3)))
        await store.apply({ upserts: early, deletes: [] })
        for (let at = 0, size = 1; at < reversed.length; at += size, size = size * 2 + 1) {
          await store.apply({ upserts: reversed.slice(at, at + size), deletes: [] })
        }
        const again = shuffled(rows, random).slice(0, 40)
        await store.apply({ upserts: [], deletes: again.map(r => codec.keyOfEncodedRow(r)) })
        await store.apply({ upserts: again, deletes: [] })
        for (const batchSize of [50, undefined]) await expectScan(store, codec, expected, batchSize)
      })
    })

    it('a scan stops with CONVERGE_ABORTED when its signal aborts', async () => {
      const codec = new RowCodec(ITEMS)
      await withStore(makeStore, ITEMS, async ({ store }) => {
        await store.apply({ upserts: Array.from({ length: 500 }, (_, i) => codec.encodeRow(item(i))), deletes: [] })
        const controller = new AbortController()
        let batches = 0
        const scanning = (async () => { for await (const _ of store.scan({ batchSize: 100, signal: controller.signal })) { if (++batches === 2) controller.abort() } })()
        await expect(scanning).rejects.toMatchObject({ code: 'CONVERGE_ABORTED' })
        expect(batches).toBe(2)
      })
    })

    it('get returns canonical rows in request order and undefined for absent keys', async () => {
      await withStore(makeStore, ITEMS, async ({ store }, codec) => {
        const key = (id: number): Bytes => codec.encodeKey({ id })
        const row = (id: number): Bytes => codec.encodeRow(item(id))
        expect(await store.get([]), 'get of no keys').toEqual([])
        expect(await store.get([key(1)]), 'get from an empty store').toEqual([undefined])
        const model: Model = new Map()
        await applyChecked(store, codec, model, Array.from({ length: 50 }, (_, i) => row(i)), [])
        const got = await store.get([key(3), key(99), key(1), key(3), key(49), key(-3), key(0)])
        expect(got.map(r => (r === undefined ? undefined : hex(r)))).toEqual([hex(row(3)), undefined, hex(row(1)), hex(row(3)), hex(row(49)), undefined, hex(row(0))])
        // many keys at once (more than some databases take as parameters of one statement), most absent
        await expectGet(store, codec, model, Array.from({ length: 2000 }, (_, i) => key(1000 + i)), 7)
        // a deleted key reads as absent
        await applyChecked(store, codec, model, [], [key(3)])
        expect((await store.get([key(2), key(3), key(4)])).map(r => (r === undefined ? undefined : hex(r)))).toEqual([hex(row(2)), undefined, hex(row(4))])
      })
    })

    it('opened read-only: reads the rows, refuses writes, the change feed, trimming and its id (CONVERGE_STORE_READ_ONLY), and trims nothing', async () => {
      await withStore(makeStore, ITEMS, async (under, codec) => {
        const { store } = under
        const key = (id: number): Bytes => codec.encodeKey({ id })
        const model: Model = new Map()
        await applyChecked(store, codec, model, Array.from({ length: 40 }, (_, i) => codec.encodeRow(item(i))), [])
        await applyChecked(store, codec, model, [codec.encodeRow(item(7, 1))], [key(8)])
        const seq = await store.lastSeq()
        const id = store.id
        // LevelDB lets one process at a time open a store: the agent's is closed first there (and everywhere, for one test)
        await store.close()
        const reader = under.openAgain()
        await reader.open({ readOnly: true })
        try {
          const rows: string[] = []
          for await (const batch of reader.scan({ batchSize: 16 })) for (const { row } of batch) rows.push(hex(row))
          expect(rows.sort(), 'a read-only scan reads every row').toEqual([...model.values()].map(hex).sort())
          expect((await reader.get([key(7), key(8)])).map(r => (r === undefined ? undefined : hex(r)))).toEqual([hex(codec.encodeRow(item(7, 1))), undefined])
          const refused = async (what: string, work: () => Promise<unknown>): Promise<void> => {
            await expect(work(), what).rejects.toMatchObject({ code: 'CONVERGE_STORE_READ_ONLY' })
          }
          await refused('apply', async () => await reader.apply({ upserts: [codec.encodeRow(item(100))], deletes: [] }))
          await refused('trimChanges', async () => await reader.trimChanges(seq))
          await refused('lastSeq', async () => await reader.lastSeq())
          await refused('changes', async () => { for await (const _ of reader.changes({ since: 0, signal: AbortSignal.timeout(FEED_WAIT_MS) })) break })
          expect(() => reader.id, 'id').toThrow(expect.objectContaining({ code: 'CONVERGE_STORE_READ_ONLY' }) as Error)
        } finally {
          await reader.close()
        }
        // as it was: the same rows, identity and change log, every change still there for its consumer
        const again = under.openAgain()
        await again.open()
        try {
          expect(again.id, 'the store keeps its identity').toBe(id)
          expect(await again.lastSeq()).toBe(seq)
          await expectGet(again, codec, model, [key(100), key(8)], 0)
          if (store.supports.changeFeed) {
            const seen: ChangeBatch[] = []
            for await (const batch of again.changes({ since: 0, signal: AbortSignal.timeout(FEED_WAIT_MS) })) { seen.push(batch); if (batch.seq >= seq) break }
            expect(seen.flatMap(b => b.changes).length, 'the change log from the start, untrimmed').toBeGreaterThanOrEqual(41)
          }
        } finally {
          await again.close()
        }
      })
    })

    it('apply returns before-images (null where absent), upserts then deletes; a repeated apply changes nothing', async () => {
      await withStore(makeStore, ITEMS, async ({ store }, codec) => {
        const key = (id: number): Bytes => codec.encodeKey({ id })
        const row = (id: number, rev = 0): Bytes => codec.encodeRow(item(id, rev))
        const model: Model = new Map()
        const seq0 = await store.lastSeq()
        const seq1 = await applyChecked(store, codec, model, Array.from({ length: 10 }, (_, i) => row(i + 1)), [])
        expect(seq1, 'apply returns a seq after the last one').toBeGreaterThan(seq0)
        const upserts = [row(3, 1), row(20), row(1, 1)]
        const deletes = [key(2), key(30), key(5)]
        const first = await store.apply({ upserts, deletes })
        expect(first.before.map(hexOrNull)).toEqual([hex(row(3)), null, hex(row(1)), hex(row(2)), null, hex(row(5))])
        expect(first.seq).toBeGreaterThan(seq1)
        expect(await store.lastSeq(), 'lastSeq covers the apply').toBeGreaterThanOrEqual(first.seq)
        applyToModel(codec, model, upserts, deletes)
        await expectHolds(store, codec, model)

        // the same request again: nothing changes, and the before-images are the rows as they now are
        const now = (await store.get([...upserts.map(r => codec.keyOfEncodedRow(r)), ...deletes])).map(r => hexOrNull(r))
        expect(now).toEqual([hex(row(3, 1)), hex(row(20)), hex(row(1, 1)), null, null, null])
        const second = await store.apply({ upserts, deletes })
        expect(second.before.map(hexOrNull), 'a repeated apply returns the current rows as before-images').toEqual(now)
        expect(second.seq).toBeGreaterThanOrEqual(first.seq)
        await expectHolds(store, codec, model)

        expect((await store.apply({ upserts: [], deletes: [] })).before, 'an empty apply').toEqual([])
        await expectHolds(store, codec, model)

        // a key both upserted and deleted in one request: both before-images are the prior row, and the delete wins
        const both = await store.apply({ upserts: [row(4, 2)], deletes: [key(4)] })
        expect(both.before.map(hexOrNull)).toEqual([hex(row(4)), hex(row(4))])
        expect(await store.get([key(4)])).toEqual([undefined])
      })
    })

    it('apply with an invalid row (wrong arity) fails and leaves the store unchanged (if supports.transactions)', async () => {
      await withStore(makeStore, ITEMS, async ({ store }, codec) => {
        const key = (id: number): Bytes => codec.encodeKey({ id })
        const row = (id: number, rev = 0): Bytes => codec.encodeRow(item(id, rev))
        const model: Model = new Map()
        await applyChecked(store, codec, model, Array.from({ length: 20 }, (_, i) => row(i)), [])
        const seqBefore = await store.lastSeq()
        const short = packValues(codec.normalize(item(50)).slice(0, -1))
        const long = packValues([...codec.normalize(item(51)), 'one too many'] as Value[])
        await expect(store.apply({ upserts: [row(1, 1), short, row(52)], deletes: [key(2)] }), 'a row with a value missing').rejects.toThrow()
        await expect(store.apply({ upserts: [row(3, 1), row(53)], deletes: [key(4)] }).then(() => store.apply({ upserts: [row(5, 1), long], deletes: [key(6)] })),
          'a row with a value too many').rejects.toThrow()
        // the good apply between the two failures went through
        applyToModel(codec, model, [row(3, 1), row(53)], [key(4)])
        const seqGood = await store.lastSeq()
        await expect(store.apply({ upserts: [row(7, 1)], deletes: [key(8)] }).then(() => store.apply({ upserts: [long], deletes: [] })), 'only the invalid row').rejects.toThrow()
        applyToModel(codec, model, [row(7, 1)], [key(8)])
        if (store.supports.transactions) {
          await expectHolds(store, codec, model, { absent: [key(50), key(51), key(52)] })
          expect(await store.lastSeq()).toBeGreaterThan(seqBefore)
          if (store.supports.changeFeed) {
            // the feed carries the good applies and nothing of the failed ones
            const feed = follow(store, seqBefore)
            try {
              const marker = row(99)
              const last = await store.apply({ upserts: [marker], deletes: [] })
              applyToModel(codec, model, [marker], [])
              await feed.reach(last.seq)
              const rows = feed.got.flatMap(b => b.changes.map(c => `${describeKey(codec, hex(c.key))}=${c.row === null ? 'deleted' : hex(c.row) === hex(model.get(hex(c.key)) ?? new Uint8Array()) ? 'final' : 'other'}`))
              expect(rows.sort(), 'the change feed holds only the applies that succeeded').toEqual(['(3)=final', '(4)=deleted', '(53)=final', '(7)=final', '(8)=deleted', '(99)=final'].sort())
              expect(feed.got.every(b => b.seq > seqBefore)).toBe(true)
              expect(seqGood).toBeGreaterThan(seqBefore)
            } finally {
              await feed.stop()
            }
          }
        }
        if (!store.supports.transactions) {
          // a store without transactions may have kept part of a failed apply: carry on from what it holds
          model.clear()
          for (const [k, r] of (await scanAll(store)).rows) model.set(k, r)
        }
        // the store still takes writes
        await applyChecked(store, codec, model, [row(1, 2), row(60)], [key(9)])
        await expectHolds(store, codec, model)
      })
    })

    it('change feed delivers every applied change after since, with the row after it, in increasing seq, and stops when its signal aborts (if supports.changeFeed)', async (ctx) => {
      await withStore(makeStore, ITEMS, async ({ store, writeBehind }, codec) => {
        if (!store.supports.changeFeed) ctx.skip(`the ${name} store has no change feed`)
        const key = (id: number): Bytes => codec.encodeKey({ id })
        const row = (id: number, rev = 0): Bytes => codec.encodeRow(item(id, rev))
        const model: Model = new Map()
        await applyChecked(store, codec, model, Array.from({ length: 30 }, (_, i) => row(i)), [])
        const since = await store.lastSeq()
        const live = follow(store, since)
        const feeds = [live]
        try {
          const steps = new Map<string, Step[]>()
          const sources: Source[] = []
          const record = (source: number, upserts: Bytes[], deletes: Bytes[]): void => {
            for (const r of upserts) {
              const k = hex(codec.keyOfEncodedRow(r))
              steps.set(k, [...(steps.get(k) ?? []), { row: hex(r), before: hexOrNull(model.get(k)), source }])
              model.set(k, r)
            }
            for (const d of deletes) {
              const k = hex(d)
              steps.set(k, [...(steps.get(k) ?? []), { row: null, before: hexOrNull(model.get(k)), source }])
              model.delete(k)
            }
          }
          const viaApply = async (upserts: Bytes[], deletes: Bytes[], origin?: string): Promise<void> => {
            const prevSeq = await store.lastSeq()
            const source = sources.length
            const before = expectedBefore(codec, model, upserts, deletes)
            const result = await store.apply(origin === undefined ? { upserts, deletes } : { upserts, deletes, origin })
            expect(result.before.map(hexOrNull)).toEqual(before)
            record(source, upserts, deletes)
            sources.push({ name: `apply #${source} (origin ${origin ?? 'none'})`, origin, prevSeq, seq: result.seq })
          }
          // deletes of absent keys and upserts of unchanged rows are left out: a store may record them or not
          await viaApply([row(1, 1), row(2, 1), row(100)], [key(3)])
          await viaApply([row(1, 2), row(101)], [key(4), key(100)], 'converge')
          await viaApply([row(5, 1)], [key(6)], 'operator')
          await viaApply([row(3)], [], 'converge')
          if (writeBehind !== undefined) {
            const prevSeq = await store.lastSeq()
            const source = sources.length
            const upserts = [item(200), item(7, 1)]
            const deletes = [item(8)]
            await writeBehind(upserts, deletes)
            record(source, upserts.map(r => codec.encodeRow(r)), deletes.map(r => codec.encodeKey(r)))
            await live.reach(prevSeq + 1) // a polling store may see behind-writes only after a while
            sources.push({ name: 'writeBehind', origin: undefined, prevSeq, seq: await store.lastSeq() })
            await viaApply([row(200, 1)], [key(7)], 'converge')
          }
          const target = await store.lastSeq()
          await live.reach(target)

          const seqs = live.got.map(b => b.seq)
          expect(seqs.every((s, i) => s > (i === 0 ? since : seqs[i - 1]!)), `batch seqs increase from ${since}: ${seqs.join(', ')}`).toBe(true)
          expect(seqs.at(-1), 'the feed reaches lastSeq()').toBe(target)

          // every change, per key in order, with the row after it (null for a delete)
          const delivered = new Map<string, Array<{ row: string | null, before: string | null | undefined, batch: number }>>()
          live.got.forEach((b, batch) => b.changes.forEach(c => {
            const k = hex(c.key)
            delivered.set(k, [...(delivered.get(k) ?? []), { row: hexOrNull(c.row), before: c.before === undefined ? undefined : hexOrNull(c.before), batch }])
          }))
          const byKey = <T>(m: Map<string, T[]>, f: (t: T) => string | null): Record<string, Array<string | null>> =>
            Object.fromEntries([...m].map(([k, list]) => [describeKey(codec, k), list.map(f)]).sort(([a], [b]) => String(a).localeCompare(String(b))))
          // a feed that reads rows at delivery may carry a later state of the key (when the later change had landed
          // by the time it read): any state from that change on is right, and the key's last change carries its final row
          const atDelivery = store.supports.feedRowsAtDelivery === true
          const wanted = new Map([...steps].map(([k, list]) => [k, list.map((s, i) => {
            const got = delivered.get(k)?.[i]?.row
            return atDelivery && got !== undefined && list.slice(i).some(later => later.row === got) ? got : s.row
          })]))
          expect(byKey(delivered, d => d.row), `the feed delivers every change after since, each key's changes in order, with the row after it${atDelivery ? ' or a later one' : ''}`).toEqual(byKey(wanted, r => r))

          const problems: string[] = []
          for (const [k, list] of delivered) {
            list.forEach((d, i) => {
              const step = steps.get(k)![i]!
              const source = sources[step.source]!
              const batch = live.got[d.batch]!
              const at = `${describeKey(codec, k)} change ${i} (${source.name}) in batch seq ${batch.seq}`
              if (d.before !== undefined && d.before !== step.before) problems.push(`${at}: before-image is not the row before`)
              if (batch.seq <= source.prevSeq || batch.seq > source.seq) problems.push(`${at}: seq is outside (${source.prevSeq}, ${source.seq}]`)
            })
          }
          expect(problems, 'before-images (where recorded) and seqs agree with the applies').toEqual([])

          // origin: a batch holds the agent's own changes or others', never both; 'converge' is carried where origins are recorded
          const recordsOrigin = live.got.some(b => b.origin !== undefined)
          const origins = live.got.map((b, batch) => {
            const from = new Set<string>()
            for (const [k, list] of delivered) list.forEach((d, i) => { if (d.batch === batch) from.add(sources[steps.get(k)![i]!.source]!.origin ?? 'none') })
            return { seq: b.seq, origin: b.origin, from: [...from].sort() }
          })
          for (const o of origins) {
            if (o.from.includes('converge')) {
              expect(o.from, `batch ${o.seq} mixes the agent's changes with others'`).toEqual(['converge'])
              if (recordsOrigin) expect(o.origin, `batch ${o.seq} carries apply's origin`).toBe('converge')
            } else {
              expect(o.origin, `batch ${o.seq} is not the agent's`).not.toBe('converge')
            }
          }

          // a second feed from the same seq replays the same batches, each change with the row after it;
          // a store whose feed re-reads rows on delivery (supports.feedRowsAtDelivery) carries them as they are now
          const replay = follow(store, since)
          feeds.push(replay)
          await replay.reach(target)
          const summary = (batches: ChangeBatch[]): unknown => batches.map(b => ({ seq: b.seq, origin: b.origin, changes: b.changes.map(c => [hex(c.key), hexOrNull(c.row)]) }))
          let expected = summary(live.got)
          if (store.supports.feedRowsAtDelivery === true) {
            const keys = live.got.flatMap(b => b.changes.map(c => c.key))
            const now = new Map((await store.get(keys)).map((row, i) => [hex(keys[i]!), hexOrNull(row ?? null)]))
            expected = live.got.map(b => ({ seq: b.seq, origin: b.origin, changes: b.changes.map(c => [hex(c.key), now.get(hex(c.key)) ?? null]) }))
          }
          expect(summary(replay.got), 'changes({ since }) replays what a live feed delivered').toEqual(expected)

          // the feed is now waiting for changes: aborting its signal ends it, and nothing more arrives
          await sleep(20)
          const count = live.got.length
          const { ended, error } = await live.stop()
          expect(ended, 'the feed ends when its signal aborts').toBe(true)
          if (error !== undefined) expect(error, 'an aborted feed ends cleanly or with AbortedError').toMatchObject({ code: 'CONVERGE_ABORTED' })
          await applyChecked(store, codec, model, [row(300)], [])
          await sleep(50)
          expect(live.got.length, 'nothing arrives after abort').toBe(count)

          // behind-writes are rows like any other
          await expectHolds(store, codec, model)
        } finally {
          for (const feed of feeds) await feed.stop()
        }
      })
    })

    it('change feed says when it is level with the store (caughtUp): at once on a quiet store, then again after the batches of a write (if supports.changeFeed)', async (ctx) => {
      await withStore(makeStore, ITEMS, async ({ store }, codec) => {
        if (!store.supports.changeFeed) ctx.skip(`the ${name} store has no change feed`)
        await store.apply({ upserts: [codec.encodeRow(item(1))], deletes: [] })
        const since = await store.lastSeq()
        const controller = new AbortController()
        // what the feed did, in order; repeated calls of caughtUp in a row (a store that polls makes them) as one
        const events: string[] = []
        let failure: unknown
        const done = (async () => {
          try {
            for await (const batch of store.changes({ since, signal: controller.signal, caughtUp: () => { if (events.at(-1) !== 'level') events.push('level') } })) events.push(`batch ${batch.seq}`)
          } catch (err) {
            if ((err as { code?: string }).code !== 'CONVERGE_ABORTED') failure = err
          }
        })()
        const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
          const deadline = Date.now() + FEED_WAIT_MS
          while (!ok()) {
            if (failure !== undefined) throw new Error(`the change feed failed while waiting for ${what}: ${String(failure)}`, { cause: failure })
            if (Date.now() > deadline) throw new Error(`the change feed did not show ${what} within ${FEED_WAIT_MS} ms: ${events.join(', ') || 'nothing'}`)
            await sleep(5)
          }
        }
        try {
          await waitFor('that it is level with a store nobody wrote to', () => events.length > 0)
          expect(events, 'nothing to deliver after since: level at once, no batch').toEqual(['level'])
          await store.apply({ upserts: [codec.encodeRow(item(2))], deletes: [codec.encodeKey({ id: 1 })] })
          const seq = await store.lastSeq()
          await waitFor(`the write's batch (seq ${seq}) and then level`, () => events.includes(`batch ${seq}`) && events.at(-1) === 'level')
          expect(events[0]).toBe('level')
          expect(events.slice(1, -1).every(e => e.startsWith('batch ')), `only batches between the two: ${events.join(', ')}`).toBe(true)
        } finally {
          controller.abort()
          await done
        }
        expect(failure).toBeUndefined()
      })
    })

    it('composite primary keys of two and three columns of different types', async () => {
      // ('a', 12) and ('a1', 2) would collide in a store that concatenated key parts
      const regions = ['eu', 'us', 'a', 'a1', '']
      const ids = [1, 2, 12, -1, 9_007_199_254_740_993n]
      const pairs: Row[] = regions.flatMap((region, r) => ids.map((id, i) => ({ id, region, label: `${region}/${id}`, score: r + i / 10 })))
      await withStore(makeStore, PAIRS, async ({ store }, codec) => {
        const model = await exercise(store, codec, {
          initial: shuffled(pairs, rng(3)),
          upserts: [{ id: 12, region: 'a', label: 'changed', score: -1 }, { id: 3, region: 'a', label: 'new', score: 0 }],
          deletes: [{ region: 'a1', id: 2 }, { id: 1, region: '' }],
          absent: [{ region: 'eu', id: 3 }, { region: 'a12', id: 2 }, { region: 'EU', id: 1 }, { region: 'eu ', id: 1 }],
          batchSizes: [4, undefined]
        })
        // a key given as an object of key columns, in any property order, finds its row
        const got = await store.get([codec.encodeKey({ id: 12, region: 'a' }), codec.encodeKey({ region: 'a1', id: 12 })])
        expect(got.map(hexOrNull)).toEqual([hexOrNull(model.get(hex(codec.encodeKey({ region: 'a', id: 12 })))), hexOrNull(model.get(hex(codec.encodeKey({ region: 'a1', id: 12 }))))])
        expect(model.size).toBe(pairs.length + 1 - 2)
      })

      const tenants = [new Uint8Array([]), new Uint8Array([0]), new Uint8Array([0, 0]), new Uint8Array([0xff]), new Uint8Array([1, 2, 3])]
      const ats = [BASE_TIME, BASE_TIME + 1, -86_400_000] // one millisecond apart, and before 1970
      const triples: Row[] = tenants.flatMap((tenant, t) => ats.flatMap(at => [0, 1].map(n => ({ n, tenant, at: new Date(at), payload: { t, at, n } }))))
      await withStore(makeStore, TRIPLES, async ({ store }, codec) => {
        const model = await exercise(store, codec, {
          initial: shuffled(triples, rng(4)),
          upserts: [{ tenant: new Uint8Array([0]), at: BASE_TIME + 1, n: 1, payload: ['changed'] }, { tenant: new Uint8Array([0, 0, 0]), at: BASE_TIME, n: 0, payload: null }],
          deletes: [{ tenant: new Uint8Array([0, 0]), at: BASE_TIME, n: 0 }, { tenant: new Uint8Array([]), at: -86_400_000, n: 1 }],
          absent: [{ tenant: new Uint8Array([0]), at: BASE_TIME + 2, n: 0 }, { tenant: new Uint8Array([0xfe]), at: BASE_TIME, n: 0 }, { tenant: new Uint8Array([1, 2]), at: BASE_TIME, n: 0 }],
          batchSizes: [7, undefined]
        })
        expect(model.size).toBe(triples.length + 1 - 2)
      })
    })

    it('NULLs in nullable columns survive round trips and digest the same as written', async () => {
      const valued = (id: number): Row => ({ id, i: -5, f: 2.25, d: '10.5', s: 'text', b: true, t: BASE_TIME, j: '{"a":[1,null]}', y: new Uint8Array([0, 1, 2]), seen: BASE_TIME })
      const rows: Row[] = [
        { id: 1 }, // every other column NULL
        // zero-like values, none of them NULL; the JSON value null is not SQL NULL
        // JSON null, which is not SQL NULL
        { id: 2, i: 0, f: 0, d: '0', s: '', b: false, t: 0, j: 'null', y: new Uint8Array(), seen: 0 },
        // a JSON string scalar
        { id: 3, s: 'NULL', j: '""' },
        { id: 4, s: 'null', j: '[null]' },
        valued(5)
      ]
      // each column alone non-NULL, and each column alone NULL
      NULLABLE.columns.slice(1).forEach((col, c) => {
        rows.push({ id: 10 + c, [col.name]: valued(0)[col.name] })
        rows.push({ ...valued(30 + c), [col.name]: null })
      })
      await withStore(makeStore, NULLABLE, async ({ store }, codec) => {
        const model = await exercise(store, codec, {
          initial: rows,
          upserts: [{ id: 5 }, { ...valued(1) }, { ...valued(2), s: null, j: null, y: null, i: null }],
          absent: [{ id: 0 }],
          batchSizes: [3, undefined]
        })
        const [allNull, zeroes] = await store.get([codec.encodeKey({ id: 5 }), codec.encodeKey({ id: 3 })])
        expect(codec.decodeValues(allNull!).slice(1), 'a row of NULLs reads back as NULLs').toEqual(NULLABLE.columns.slice(1).map(() => null))
        expect(codec.decodeValues(zeroes!).slice(1)).toEqual([null, null, null, 'NULL', null, null, '""', null, null])
        expect(model.size).toBe(rows.length)
      })
    })

    it('unicode (emoji, combining marks, CJK, RTL) in keys and values', async () => {
      expect(new Set(UNICODE_STRINGS).size, 'test data: the strings are distinct').toBe(UNICODE_STRINGS.length)
      const rows: Row[] = UNICODE_STRINGS.map((s, n) => ({ k: s, v: `${s}|${[...s].reverse().join('')}|${s.normalize('NFD')}`, j: { [s]: s, list: [s, n] }, n }))
      await withStore(makeStore, UNICODE, async ({ store }, codec) => {
        const model = await exercise(store, codec, {
          initial: rows,
          upserts: [{ k: 'e\u0301', v: 'decomposed, changed', j: '{"é":"e\u0301"}', n: -1 }, { k: '👩‍👩‍👧', v: 'a shorter family', j: [], n: 99 }],
          deletes: [{ k: '\u00e9' }, { k: 'straße' }, { k: 'abc ' }, { k: '\u212b' }],
          absent: [{ k: 'É' }, { k: 'e' }, { k: 'abc  ' }, { k: '😀😀' }, { k: 'strasse' }, { k: '\u00e9'.normalize('NFD').normalize('NFC') }],
          batchSizes: [5, undefined]
        })
        // the look-alikes of deleted keys are still there
        const alive = await store.get(['e\u0301', 'STRASSE', 'Straße', 'abc', '\u00c5', 'A\u030a'].map(k => codec.encodeKey({ k })))
        expect(alive.every(r => r !== undefined), 'keys that only look like deleted ones remain').toBe(true)
        expect(model.size).toBe(rows.length + 1 - 4)
      })
    })

    it('large rows: a 1 MiB string value and a 256 KiB bytes value', async () => {
      const random = rng(9)
      const letters = 'abcdefghijklmnopqrstuvwxyz0123456789 ,.'
      const bigText = (seed: number): string => {
        const r = rng(seed)
        let out = ''
        while (out.length < 1024 * 1024) out += Array.from({ length: 4096 }, () => letters[Math.floor(r() * letters.length)]).join('')
        return out.slice(0, 1024 * 1024 - 4) + 'ü😀' // ends in multi-byte characters
      }
      const text1 = bigText(1)
      const text2 = bigText(2)
      const blob = randomBytes(256 * 1024, random)
      await withStore(makeStore, LARGE, async ({ store }, codec) => {
        expect(Buffer.byteLength(text1)).toBeGreaterThanOrEqual(1024 * 1024)
        const model = await exercise(store, codec, {
          initial: [{ id: 1, text: text1 }, { id: 2, blob }, { id: 3, text: text2, blob }, { id: 4, text: 'small', blob: new Uint8Array([1]) }],
          upserts: [{ id: 1, text: text2, blob }, { id: 4, text: text1 }],
          deletes: [{ id: 2 }],
          batchSizes: [1, undefined]
        })
        const [one] = await store.get([codec.encodeKey({ id: 1 })])
        const decoded = codec.decodeRow(one!)
        expect(decoded.text === text2, 'the 1 MiB string reads back whole').toBe(true)
        expect(hex(decoded.blob as Bytes) === hex(blob), 'the 256 KiB bytes read back whole').toBe(true)
        expect(model.size).toBe(3)
      })
    })

    it('wide (60 columns of every type) and narrow (key-only) tables', async () => {
      expect(new Set(WIDE.columns.map(c => c.type)).size).toBe(COLUMN_TYPES.length)
      await withStore(makeStore, WIDE, async ({ store }, codec) => {
        const ids = Array.from({ length: 150 }, (_, i) => i)
        const model = await exercise(store, codec, {
          initial: ids.map(id => wideRow(id)),
          upserts: [...ids.slice(0, 30).map(id => wideRow(id, 1)), ...Array.from({ length: 10 }, (_, i) => wideRow(150 + i))],
          deletes: ids.slice(30, 40).map(id => ({ c00: id })),
          absent: [{ c00: 1000 }],
          batchSizes: [16, undefined]
        })
        expect(model.size).toBe(150)
        const [row] = await store.get([codec.encodeKey({ c00: 7 })])
        expect(codec.decodeValues(row!).length).toBe(WIDE_COLUMNS)
      })
      await withStore(makeStore, NARROW, async ({ store }, codec) => {
        const id = (i: number): Row => ({ id: `n-${i}` })
        const model = await exercise(store, codec, {
          initial: Array.from({ length: 300 }, (_, i) => id(i)),
          // upserting rows that exist (nothing to update in a key-only table) and new ones
          upserts: [...Array.from({ length: 10 }, (_, i) => id(i)), ...Array.from({ length: 10 }, (_, i) => id(300 + i))],
          deletes: Array.from({ length: 20 }, (_, i) => id(10 + i)),
          absent: [id(1000), { id: 'n-1 ' }],
          batchSizes: [64, undefined]
        })
        expect(model.size).toBe(290)
      })
      await withStore(makeStore, NARROW_COMPOSITE, async ({ store }, codec) => {
        const rows: Row[] = [0, 1, -1].flatMap(a => [new Uint8Array(), new Uint8Array([0]), new Uint8Array([a & 0xff, 7])].map(b => ({ a, b })))
        const model = await exercise(store, codec, {
          initial: rows,
          upserts: [rows[0]!, { a: 2, b: new Uint8Array([2]) }],
          deletes: [rows[1]!],
          absent: [{ a: 0, b: new Uint8Array([0, 0]) }]
        })
        expect(model.size).toBe(rows.length)
      })
    })

    it('concurrent writes during a scan: untouched rows are seen exactly once, and a fresh scan gives the final rows', async () => {
      await withStore(makeStore, ITEMS, async ({ store }, codec) => {
        const key = (id: number): Bytes => codec.encodeKey({ id })
        const row = (id: number, rev = 0): Bytes => codec.encodeRow(item(id, rev))
        const initialIds = Array.from({ length: 2000 }, (_, i) => i * 3)
        const model: Model = new Map()
        for (const part of chunks(initialIds, 500)) await applyChecked(store, codec, model, part.map(id => row(id)), [])
        const initial = new Map(model)
        const versions = new Map<string, Set<string>>([...model].map(([k, r]) => [k, new Set([hex(r)])]))
        const touched = new Set<string>()
        const random = rng(11)
        let untouchedIds = [...initialIds]
        let nextId = 100_000
        const writeAfter = [1, 3, 6, 10]
        const seen = new Map<string, string[]>()
        let batches = 0
        for await (const batch of store.scan({ batchSize: 100 })) {
          batches++
          for (const { key: k, row: r } of batch) seen.set(hex(k), [...(seen.get(hex(k)) ?? []), hex(r)])
          if (!writeAfter.includes(batches)) continue
          untouchedIds = shuffled(untouchedIds, random)
          const updated = untouchedIds.splice(0, 25)
          const deleted = untouchedIds.splice(0, 15)
          const inserted = Array.from({ length: 15 }, () => nextId++)
          const upserts = [...updated.map(id => row(id, batches)), ...inserted.map(id => row(id))]
          const deletes = deleted.map(key)
          await withTimeout(applyChecked(store, codec, model, upserts, deletes), 10_000, `apply while a scan is in progress (after batch ${batches})`)
          for (const r of upserts) {
            const k = hex(codec.keyOfEncodedRow(r))
            touched.add(k)
            versions.set(k, new Set([...(versions.get(k) ?? []), hex(r)]))
          }
          for (const d of deletes) touched.add(hex(d))
        }
        expect(batches, 'the writes happened while the scan was in progress').toBeGreaterThan(writeAfter.at(-1)!)
        const problems: string[] = []
        for (const [k, r] of initial) {
          if (touched.has(k)) continue
          const got = seen.get(k) ?? []
          if (got.length !== 1) problems.push(`${describeKey(codec, k)} untouched, seen ${got.length} times`)
          else if (got[0] !== hex(r)) problems.push(`${describeKey(codec, k)} untouched, seen with other bytes`)
        }
        for (const [k, rows] of seen) {
          const known = versions.get(k)
          if (known === undefined) problems.push(`${describeKey(codec, k)} was never written`)
          else if (rows.some(r => !known.has(r))) problems.push(`${describeKey(codec, k)} seen as a row it never held`)
        }
        expect(firstFew(problems), 'the scan during writes').toEqual([])
        await expectHolds(store, codec, model, { absent: [key(1), key(nextId)] })
      })
    })

    it('every row written via apply reads back with the same canonical bytes and the same codec.rowDigest', async () => {
      await withStore(makeStore, ALL_TYPES, async ({ store }, codec) => {
        const model: Model = new Map()
        let nextId = 0
        await fc.assert(fc.asyncProperty(fc.array(ALL_TYPES_ROW, { minLength: 1, maxLength: 12 }), async values => {
          const rows = values.map(v => codec.encodeRow({ ...v, id: nextId++ }))
          const keys = rows.map(r => codec.keyOfEncodedRow(r))
          const result = await store.apply({ upserts: rows, deletes: [] })
          expect(result.before.every(b => b === null)).toBe(true)
          // stored as written: a store that reads its rows back after writing them says none was changed
          expect(result.rewritten ?? [], 'rows the store says it holds otherwise').toEqual([])
          applyToModel(codec, model, rows, [])
          const got = await store.get(keys)
          rows.forEach((written, i) => {
            const read = got[i]
            expect(read === undefined ? undefined : hex(read), `row ${i} of ${codec.decodeRow(written).id}`).toBe(hex(written))
            expect(store.codec.rowDigest(read!)).toBe(codec.rowDigest(written))
          })
        }), { numRuns: 40 })
        // and rewritten over rows that exist, each key taking another key's values
        const all = [...model.values()]
        const rewritten = all.slice(0, 100).map((r, i) => codec.encodeRow({ ...codec.decodeRow(all[(i + 1) % all.length]!), id: codec.decodeRow(r).id }))
        await applyChecked(store, codec, model, rewritten, [])
        await expectHolds(store, codec, model, { batchSizes: [33, undefined] })
      })
    })
  })
}
