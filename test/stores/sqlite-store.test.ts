import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { promisify } from 'node:util'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { RowCodec, type Row } from '../../src/digest/row-codec.ts'
import type { DatasetSchema } from '../../src/digest/schema.ts'
import { ChangesTrimmedError } from '../../src/errors.ts'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import type { ChangeBatch } from '../../src/stores/replica-store.ts'
import { SqliteStore } from '../../src/stores/sqlite-store.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import { ordersCodec as codec, order } from '../helpers/datasets.ts'

const run = promisify(execFile)

const hex = (b: Uint8Array | null | undefined): string | null | undefined =>
  b === null || b === undefined ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
const row = (id: number, version = 0): Uint8Array => codec.encodeRow(order(id, version))
const key = (id: number): Uint8Array => codec.encodeKey({ id })
const rows = (from: number, to: number, version = 0): Uint8Array[] => Array.from({ length: to - from }, (_, i) => row(from + i, version))

/** Every column type, nullable; `id` is the key. */
const allTypes: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'i', type: 'integer' },
    { name: 'f', type: 'float' },
    { name: 'd', type: 'decimal' },
    { name: 's', type: 'string' },
    { name: 'b', type: 'boolean' },
    { name: 't', type: 'timestamp' },
    { name: 'j', type: 'json' },
    { name: 'by', type: 'bytes' }
  ],
  primaryKey: ['id'],
  ignoreColumns: []
}
const allCodec = new RowCodec(allTypes)

const JAN_1 = Date.UTC(2026, 0, 1)
const logicalRows: Row[] = [
  { id: 1, i: 42, f: 1.5, d: '12.340', s: 'héllo wörld, 世界 🌍', b: true, t: new Date(JAN_1), j: { b: 1, a: [1, 'two', null] }, by: new Uint8Array([0, 1, 254, 255]) },
  { id: 2, i: null, f: null, d: null, s: null, b: null, t: null, j: null, by: null },
  { id: 3, i: 2n ** 62n, f: -0.1, d: '-0.5', s: '', b: false, t: JAN_1 + 123, j: '"just a string"', by: new Uint8Array() },
  { id: 2n ** 53n + 1n, i: -(2n ** 63n), f: 1e300, d: '123456789012345678901234567890.123456789', s: 'x', b: 0, t: '2026-01-01T12:34:56.789Z', j: '{"z":{"y":1,"x":[]},"a":true}', by: Buffer.from('bytes') },
  { id: -5, i: 2n ** 63n - 1n, f: Number.NaN, d: 7, s: '\u0000nul', b: 1, t: '2026-01-01 01:02:03', j: [], by: new Uint8Array([0]) },
  { id: 6, i: Number.MAX_SAFE_INTEGER, f: Number.POSITIVE_INFINITY, d: '0.000', s: 'ℵ', b: 'true', t: '2026-01-01T01:00:00+01:00', j: 3.5, by: new Uint8Array(3) },
  { id: 7, i: -1, f: Number.NEGATIVE_INFINITY, d: '-0', s: 'end', b: 'f', t: -1000, j: 'null', by: new Uint8Array([7]) }
]

/** Polls until `check` holds, failing after `ms`. */
async function until (check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** Reads the change feed in the background into `got` until the signal aborts. */
function follow (store: SqliteStore, since: number, signal: AbortSignal): { got: ChangeBatch[], done: Promise<unknown> } {
  const got: ChangeBatch[] = []
  const done = (async () => { for await (const batch of store.changes({ since, signal })) got.push(batch) })()
    .then(() => undefined, (error: unknown) => error)
  return { got, done }
}

/** The feed from `since` up to the store's last seq. */
async function feedFrom (store: SqliteStore, since: number): Promise<ChangeBatch[]> {
  const controller = new AbortController()
  const target = await store.lastSeq()
  const { got, done } = follow(store, since, controller.signal)
  if (target > since) await until(() => got.length > 0 && got[got.length - 1]!.seq >= target)
  else await new Promise(resolve => setTimeout(resolve, 60))
  controller.abort()
  const ended = await done
  if (ended !== undefined) expect(ended).toMatchObject({ code: 'CONVERGE_ABORTED' })
  return got
}

const summary = (batches: ChangeBatch[]): Array<{ origin: string | undefined, changes: Array<[string | null | undefined, string | null | undefined]> }> =>
  batches.map(b => ({ origin: b.origin, changes: b.changes.map(c => [hex(c.key), hex(c.row)]) }))

async function scanAll (store: SqliteStore | LevelStore, batchSize?: number): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for await (const batch of store.scan({ batchSize })) for (const r of batch) out.set(hex(r.key)!, hex(r.row)!)
  return out
}

describe('SqliteStore', () => {
  let dir: string
  let path: string
  const cleanup: Array<() => Promise<void> | void> = []

  async function openStore (init: { table?: string, codec?: RowCodec, createTable?: boolean } = {}): Promise<SqliteStore> {
    const store = new SqliteStore({ path, table: init.table ?? 'orders', codec: init.codec ?? codec, createTable: init.createTable ?? true, pollMs: 50 })
    await store.open()
    cleanup.push(async () => { await store.close() })
    return store
  }

  /** A second, plain connection to the same file, as another application would have. */
  function connect (): DatabaseSync {
    const db = new DatabaseSync(path, { timeout: 5000 })
    cleanup.push(() => { if (db.isOpen) db.close() })
    return db
  }

  const insertOrder = (db: DatabaseSync, r: Row): void => {
    db.prepare('INSERT INTO orders (id, customer, amount, status, updated_at) VALUES (?, ?, ?, ?, ?)')
      .run(r.id as number, r.customer as string, r.amount as number, r.status as string, (r.updated_at as Date).toISOString())
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'converge-sqlite-store-'))
    path = join(dir, 'replica.db')
  })

  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn()
    await rm(dir, { recursive: true, force: true })
  })

  it('round-trips every column type, NULLs, unicode and 64-bit integers, with the canonical bytes a LevelDB store holds', async () => {
    const store = await openStore({ table: 'all_types', codec: allCodec })
    const encoded = logicalRows.map(r => allCodec.encodeRow(r))
    await store.apply({ upserts: encoded, deletes: [] })
    const keys = logicalRows.map(r => allCodec.encodeKey(r))
    expect((await store.get(keys)).map(hex)).toEqual(encoded.map(hex))
    const scanned = await scanAll(store, 2)

    const level = new LevelStore({ path: join(dir, 'level'), codec: allCodec })
    await level.open()
    await level.apply({ upserts: encoded, deletes: [] })
    const fromLevel = await scanAll(level)
    await level.close()
    expect(scanned).toEqual(fromLevel)
    expect(scanned.size).toBe(logicalRows.length)

    // what is in the file: SQLite types a plain SQL reader expects
    const db = connect()
    const stored = db.prepare('SELECT typeof(id) AS id, typeof(i) AS i, typeof(f) AS f, typeof(d) AS d, typeof(s) AS s, typeof(b) AS b, typeof(t) AS t, typeof(j) AS j, typeof(by) AS "by" FROM all_types WHERE id = 1').get()
    expect({ ...stored }).toEqual({ id: 'integer', i: 'integer', f: 'real', d: 'text', s: 'text', b: 'integer', t: 'text', j: 'text', by: 'blob' })
    const values = db.prepare('SELECT b, t, j, d FROM all_types WHERE id = 1').get()
    expect({ ...values }).toEqual({ b: 1, t: '2026-01-01T00:00:00.000Z', j: '{"a":[1,"two",null],"b":1}', d: '12.34' })
    const big = db.prepare('SELECT i FROM all_types WHERE id = -5')
    big.setReadBigInts(true)
    expect(big.get()).toEqual({ i: 2n ** 63n - 1n })
    expect(db.prepare('SELECT count(*) AS n FROM all_types WHERE i IS NULL AND f IS NULL AND t IS NULL AND by IS NULL').get()).toEqual({ n: 1 })
  })

  it('reads rows written by plain SQL (timestamps as ISO text or integer ms, big integers) with canonical bytes', async () => {
    const store = await openStore({ table: 'all_types', codec: allCodec })
    const db = connect()
    const insert = db.prepare('INSERT INTO all_types (id, i, f, d, s, b, t, j, by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
    insert.run(10, 9223372036854775807n, 2, '001.50', 'ünï', 1, '2026-01-01T00:00:00Z', '{ "b": 2, "a": 1 }', Buffer.from([1, 2]))
    insert.run(11, -9223372036854775808n, 0.25, '3', 'x', 0, BigInt(JAN_1 + 5), '[1, 2]', null)
    insert.run(12, null, null, null, null, null, '2026-01-01 00:00:00.250', null, null)
    insert.run(13, null, null, null, null, null, '2026-01-01T02:00:00.000+02:00', null, null)
    const expected: Row[] = [
      { id: 10, i: 2n ** 63n - 1n, f: 2, d: '1.5', s: 'ünï', b: true, t: new Date(JAN_1), j: { a: 1, b: 2 }, by: new Uint8Array([1, 2]) },
      { id: 11, i: -(2n ** 63n), f: 0.25, d: '3', s: 'x', b: false, t: JAN_1 + 5, j: [1, 2], by: null },
      { id: 12, t: JAN_1 + 250 },
      { id: 13, t: JAN_1 }
    ]
    const got = await store.get(expected.map(r => allCodec.encodeKey(r)))
    expect(got.map(hex)).toEqual(expected.map(r => hex(allCodec.encodeRow(r))))
    // the canonical values decode to the logical ones, 64-bit integers unrounded
    expect(allCodec.decodeRow(got[0]!)).toMatchObject({ i: 2n ** 63n - 1n, t: new Date(JAN_1) })
    expect(allCodec.decodeRow(got[1]!)).toMatchObject({ i: -(2n ** 63n) })
  })

  it('refuses an integer that does not fit SQLite\'s signed 64 bits, without writing anything', async () => {
    const store = await openStore({ table: 'all_types', codec: allCodec })
    const tooBig = allCodec.encodeRow({ id: 1, i: 2n ** 64n - 1n })
    await expect(store.apply({ upserts: [allCodec.encodeRow({ id: 2 }), tooBig], deletes: [] })).rejects.toMatchObject({ code: 'CONVERGE_ROW_ENCODING' })
    expect(await store.countRows()).toBe(0)
    expect(await store.lastSeq()).toBe(0)
  })

  it('writes timestamps as integer ms into an existing column declared INTEGER', async () => {
    const db = connect()
    db.exec('CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER, note TEXT)')
    db.exec(`INSERT INTO events VALUES (1, ${JAN_1}, 'before')`)
    const schema: DatasetSchema = { version: 1, columns: [{ name: 'id', type: 'integer' }, { name: 'at', type: 'timestamp' }, { name: 'note', type: 'string' }], primaryKey: ['id'], ignoreColumns: [] }
    const events = new RowCodec(schema)
    const store = await openStore({ table: 'events', codec: events, createTable: false })
    await store.apply({ upserts: [events.encodeRow({ id: 2, at: new Date(JAN_1 + 1), note: 'after' })], deletes: [] })
    expect(db.prepare('SELECT at, typeof(at) AS type FROM events ORDER BY id').all().map(r => ({ ...r })))
      .toEqual([{ at: JAN_1, type: 'integer' }, { at: JAN_1 + 1, type: 'integer' }])
    expect((await store.get([events.encodeKey({ id: 1 })])).map(hex)).toEqual([hex(events.encodeRow({ id: 1, at: JAN_1, note: 'before' }))])
  })

  it('keeps a decimal\'s scale in a TEXT column, and refuses keepScale on a column that would store 10.50 as the number 10.5', async () => {
    const db = connect()
    db.exec('CREATE TABLE prices (sku INTEGER PRIMARY KEY, price TEXT NOT NULL, cost NUMERIC)')
    const schema: DatasetSchema = { version: 1, columns: [{ name: 'sku', type: 'integer' }, { name: 'price', type: 'decimal', keepScale: true }, { name: 'cost', type: 'decimal' }], primaryKey: ['sku'], ignoreColumns: [] }
    const prices = new RowCodec(schema)
    const store = await openStore({ table: 'prices', codec: prices, createTable: false })
    await store.apply({ upserts: [prices.encodeRow({ sku: 1, price: '10.50', cost: '3.10' }), prices.encodeRow({ sku: 2, price: '7', cost: '2' })], deletes: [] })
    expect(db.prepare('SELECT price, typeof(price) AS type FROM prices ORDER BY sku').all().map(r => ({ ...r }))).toEqual([{ price: '10.50', type: 'text' }, { price: '7', type: 'text' }])
    expect((await store.get([prices.encodeKey({ sku: 1 })])).map(r => prices.decodeValues(r!)[1])).toEqual(['10.50'])
    const numeric = new RowCodec({ ...schema, columns: [schema.columns[0]!, schema.columns[1]!, { name: 'cost', type: 'decimal', keepScale: true }] })
    await expect(openStore({ table: 'prices', codec: numeric, createTable: false })).rejects.toThrow(/column "cost" keeps its decimals' scale \(keepScale\), but its declared type NUMERIC has NUMERIC affinity, which stores 10.50 as the number 10.5: declare it TEXT/)
  })

  it('keeps JSON text as written in a TEXT column, and refuses keepText on a column that would store the JSON 1.50 as a number', async () => {
    const db = connect()
    db.exec('CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT NOT NULL, extra NUMERIC)')
    const schema: DatasetSchema = { version: 1, columns: [{ name: 'id', type: 'integer' }, { name: 'body', type: 'json', keepText: true }, { name: 'extra', type: 'json' }], primaryKey: ['id'], ignoreColumns: [] }
    const docs = new RowCodec(schema)
    const store = await openStore({ table: 'docs', codec: docs, createTable: false })
    await store.apply({ upserts: [docs.encodeRow({ id: 1, body: '{"z": 1, "a": [2, 1.50]}', extra: '{"b":1,"a":2}' })], deletes: [] })
    expect(db.prepare('SELECT body, extra FROM docs').all().map(r => ({ ...r }))).toEqual([{ body: '{"z": 1, "a": [2, 1.50]}', extra: '{"a":2,"b":1}' }])
    expect((await store.get([docs.encodeKey({ id: 1 })])).map(r => docs.decodeValues(r!)[1])).toEqual(['{"z": 1, "a": [2, 1.50]}'])
    const numeric = new RowCodec({ ...schema, columns: [schema.columns[0]!, schema.columns[1]!, { name: 'extra', type: 'json', keepText: true }] })
    await expect(openStore({ table: 'docs', codec: numeric, createTable: false })).rejects.toThrow(/column "extra" keeps its JSON text \(keepText\), but its declared type NUMERIC has NUMERIC affinity, which stores the JSON 1.50 as the number 1.5: declare it TEXT/)
  })

  it('says which upserts it holds otherwise than written: a trigger that changes a row after it is written', async () => {
    const db = connect()
    db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, seen INTEGER NOT NULL)')
    db.exec('CREATE TRIGGER shout AFTER INSERT ON notes WHEN NEW.id = 2 BEGIN UPDATE notes SET body = upper(NEW.body) WHERE id = NEW.id; END')
    const schema: DatasetSchema = { version: 1, columns: [{ name: 'id', type: 'integer' }, { name: 'body', type: 'string' }, { name: 'seen', type: 'integer' }], primaryKey: ['id'], ignoreColumns: [] }
    const notes = new RowCodec(schema)
    const store = await openStore({ table: 'notes', codec: notes, createTable: false })
    const result = await store.apply({ upserts: [1, 2, 3].map(id => notes.encodeRow({ id, body: `note ${id}`, seen: 0 })), deletes: [] })
    expect((result.rewritten ?? []).map(r => ({ index: r.index, row: notes.decodeRow(r.row) }))).toEqual([{ index: 1, row: { id: 2, body: 'NOTE 2', seen: 0 } }])
  })

  it('scans in bounded batches in key order, also over a composite key holding text with NUL characters', async () => {
    const schema: DatasetSchema = {
      version: 1,
      columns: [{ name: 'region', type: 'string' }, { name: 'n', type: 'integer' }, { name: 'v', type: 'string' }],
      primaryKey: ['region', 'n'],
      ignoreColumns: []
    }
    const c = new RowCodec(schema)
    const store = await openStore({ table: 'stock', codec: c })
    // node:sqlite cuts text at a NUL when it reads it: such keys must still page, match and feed exactly
    const regions = ['eu', 'us', 'ap', 'a\u0000b', 'a\u0000', 'a']
    const logical = regions.flatMap(region => Array.from({ length: 20 }, (_, n) => ({ region, n: n * 3 - 20, v: `${region}${n}` })))
    await store.apply({ upserts: logical.map(r => c.encodeRow(r)), deletes: [] })
    const sizes: number[] = []
    const seen: Row[] = []
    for await (const batch of store.scan({ batchSize: 7 })) {
      sizes.push(batch.length)
      for (const r of batch) seen.push(c.decodeRow(r.row))
    }
    expect(sizes.every(s => s <= 7)).toBe(true)
    expect(seen.length).toBe(120)
    expect(new Set(seen.map(r => r.region))).toEqual(new Set(regions))
    const sorted = [...logical].sort((a, b) => (a.region < b.region ? -1 : a.region > b.region ? 1 : a.n - b.n))
    expect(seen).toEqual(sorted)
    expect(await store.countRows()).toBe(120)
    // composite keys in get and delete
    const target = { region: 'us', n: 13 }
    expect(c.decodeRow((await store.get([c.encodeKey(target)]))[0]!)).toEqual({ region: 'us', n: 13, v: 'us11' })
    const { before } = await store.apply({ upserts: [c.encodeRow({ region: 'us', n: 13, v: 'new' })], deletes: [c.encodeKey({ region: 'eu', n: -20 })] })
    expect(before.map(b => (b === null ? null : c.decodeRow(b).v))).toEqual(['us11', 'eu0'])
    expect((await store.get([c.encodeKey(target), c.encodeKey({ region: 'eu', n: -20 })])).map(r => (r === undefined ? undefined : c.decodeRow(r).v))).toEqual(['new', undefined])
    const nul = { region: 'a\u0000b', n: 1 }
    expect(c.decodeRow((await store.get([c.encodeKey(nul)]))[0]!)).toEqual({ ...nul, v: 'a\u0000b7' })
    const seq = await store.lastSeq()
    const db = connect()
    db.prepare('UPDATE stock SET v = ? WHERE region = ? AND n = 1').run('x\u0000y', 'a\u0000b')
    const feed = await feedFrom(store, seq)
    expect(feed.flatMap(b => b.changes).map(ch => [hex(ch.key), hex(ch.row)])).toEqual([[hex(c.encodeKey(nul)), hex(c.encodeRow({ ...nul, v: 'x\u0000y' }))]])
  })

  it('returns before-images in request order (upserts then deletes) and applies all or nothing', async () => {
    const store = await openStore()
    await store.apply({ upserts: rows(1, 6), deletes: [] })
    const result = await store.apply({ upserts: [row(3, 1), row(10), row(1, 1)], deletes: [key(2), key(11), key(5)] })
    expect(result.before.map(hex)).toEqual([hex(row(3)), null, hex(row(1)), hex(row(2)), null, hex(row(5))])
    expect((await store.get([key(1), key(2), key(3), key(4), key(5), key(10), key(11)])).map(hex))
      .toEqual([hex(row(1, 1)), undefined, hex(row(3, 1)), hex(row(4)), undefined, hex(row(10)), undefined])
    const both = await store.apply({ upserts: [row(4, 2)], deletes: [key(4)] })
    expect(both.before.map(hex)).toEqual([hex(row(4)), hex(row(4))])
    expect(await store.get([key(4)])).toEqual([undefined])

    // a row the table refuses rolls the whole apply back, deletes included
    const db = connect()
    db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON orders WHEN NEW.id = 666 BEGIN SELECT RAISE(ABORT, 'no 666'); END`)
    const seq = await store.lastSeq()
    const snapshot = await scanAll(store)
    await expect(store.apply({ upserts: [row(20), row(1, 5), row(666)], deletes: [key(3)], origin: 'converge' })).rejects.toThrow(/no 666/)
    expect(await scanAll(store)).toEqual(snapshot)
    expect(await store.lastSeq()).toBe(seq)
    // the control values did not leak: the next plain write is not tagged
    db.prepare("UPDATE orders SET status = 'plain' WHERE id = 10").run()
    const feed = await feedFrom(store, seq)
    expect(feed.map(b => b.origin)).toEqual([undefined])
    // and the store still works
    expect((await store.apply({ upserts: [row(21)], deletes: [] })).seq).toBe(seq + 2)
  })

  it('gives every apply a new seq, even one that changes nothing', async () => {
    const store = await openStore()
    expect(await store.lastSeq()).toBe(0)
    const a = await store.apply({ upserts: rows(0, 3), deletes: [] })
    const b = await store.apply({ upserts: [], deletes: [key(99)] })
    const c = await store.apply({ upserts: [], deletes: [] })
    expect(a.seq).toBeGreaterThan(0)
    expect(b.seq).toBeGreaterThan(a.seq)
    expect(c.seq).toBeGreaterThan(b.seq)
    expect(await store.lastSeq()).toBe(c.seq)
    const feed = await feedFrom(store, 0)
    expect(feed.map(x => x.seq)).toEqual([a.seq, b.seq, c.seq])
    expect(feed.map(x => x.changes.length)).toEqual([3, 0, 0])
  })

  it('feeds apply\'s changes with their origin, and writes by another connection and another process with none', async () => {
    const store = await openStore()
    const controller = new AbortController()
    const { got, done } = follow(store, 0, controller.signal)

    const first = await store.apply({ upserts: rows(1, 4), deletes: [], origin: 'converge' })
    await until(() => got.length >= 1)
    expect(got[0]!.seq).toBe(first.seq)
    expect(summary(got)).toEqual([{ origin: 'converge', changes: [1, 2, 3].map(id => [hex(key(id)), hex(row(id))]) }])

    // plain SQL through a second connection: insert, update, delete in one transaction
    const db = connect()
    db.exec('BEGIN')
    insertOrder(db, order(7))
    db.prepare('UPDATE orders SET status = ? WHERE id = 1').run('rev-1')
    db.prepare('DELETE FROM orders WHERE id = 2').run()
    db.exec('COMMIT')
    await until(() => got.length >= 2)
    expect(summary(got.slice(1))).toEqual([{
      origin: undefined,
      changes: [[hex(key(7)), hex(row(7))], [hex(key(1)), hex(codec.encodeRow({ ...order(1), status: 'rev-1' }))], [hex(key(2)), null]]
    }])

    // a write by a child process (plain node code, no sqlite3 binary)
    const code = `
      const { DatabaseSync } = require('node:sqlite')
      const db = new DatabaseSync(process.argv[1], { timeout: 5000 })
      db.prepare("UPDATE orders SET status = 'child' WHERE id = 3").run()
      db.prepare('UPDATE orders SET id = 30 WHERE id = 7').run()
      db.close()`
    await run(process.execPath, ['--no-warnings', '-e', code, path])
    await until(() => got.slice(2).flatMap(b => b.changes).length >= 3)
    const tail = got.slice(2)
    expect(tail.every(b => b.origin === undefined)).toBe(true)
    const changes = tail.flatMap(b => b.changes).map(ch => [hex(ch.key), hex(ch.row)])
    // a key changed by UPDATE shows as the old key gone and the new key present
    expect(changes).toEqual([
      [hex(key(3)), hex(codec.encodeRow({ ...order(3), status: 'child' }))],
      [hex(key(7)), null],
      [hex(key(30)), hex(codec.encodeRow({ ...order(7), id: 30 }))]
    ])
    // an apply right after is tagged again
    await store.apply({ upserts: [], deletes: [key(30)], origin: 'converge' })
    await until(() => got[got.length - 1]!.origin === 'converge')
    expect(got[got.length - 1]!.changes).toEqual([{ key: key(30), row: null }])
    expect(got.map(b => b.seq)).toEqual([...got.map(b => b.seq)].sort((x, y) => x - y))

    controller.abort()
    expect(await done).toMatchObject({ code: 'CONVERGE_ABORTED' })
  })

  it('tags only its own writes while another process writes the same table concurrently', async () => {
    const store = await openStore()
    const code = `
      const { DatabaseSync } = require('node:sqlite')
      const db = new DatabaseSync(process.argv[1], { timeout: 10000 })
      const insert = db.prepare('INSERT INTO orders (id, customer, amount, status, updated_at) VALUES (?, ?, ?, ?, ?)')
      const pause = new Int32Array(new SharedArrayBuffer(4))
      for (let i = 0; i < 300; i++) {
        insert.run(100000 + i, 'child', 1.5, 'child', '2026-01-01T00:00:00.000Z')
        Atomics.wait(pause, 0, 0, 1)
      }
      db.close()`
    let childDone = false
    const child = run(process.execPath, ['--no-warnings', '-e', code, path]).finally(() => { childDone = true })
    const applied = new Map<number, number[]>()
    for (let i = 0; !childDone || i < 10; i++) {
      const ids = Array.from({ length: 5 }, (_, j) => i * 5 + j)
      applied.set((await store.apply({ upserts: ids.map(id => row(id)), deletes: [], origin: 'converge' })).seq, ids)
      await new Promise(resolve => setTimeout(resolve, 2))
    }
    await child
    expect(await store.countRows()).toBe(300 + applied.size * 5)
    const feed = await feedFrom(store, 0)
    const ownKeys = new Set([...applied.values()].flat().map(id => hex(key(id))))
    for (const batch of feed) {
      if (batch.origin === 'converge') {
        // one batch per apply, with that apply's seq and rows
        expect(batch.changes.map(c => hex(c.key))).toEqual(applied.get(batch.seq)!.map(id => hex(key(id))))
      } else {
        expect(batch.origin).toBeUndefined()
        for (const c of batch.changes) expect(ownKeys.has(hex(c.key)!)).toBe(false)
      }
    }
    expect(feed.filter(b => b.origin === 'converge').length).toBe(applied.size)
    // the two writers did interleave
    const own = feed.filter(b => b.origin === 'converge').map(b => b.seq)
    expect(feed.some(b => b.origin === undefined && b.seq > own[0]! && b.seq < own[own.length - 1]!)).toBe(true)
    expect(feed.filter(b => b.origin === undefined).flatMap(b => b.changes).length).toBe(300)
  })

  it('keeps the feed across close and reopen, resumes from since, and keeps its id', async () => {
    let store = await openStore()
    const id = store.id
    const a = await store.apply({ upserts: rows(0, 3), deletes: [] })
    const b = await store.apply({ upserts: [row(1, 1)], deletes: [key(2)], origin: 'converge' })
    await store.close()
    // written while no store is open: the triggers in the file still record it
    const db = connect()
    insertOrder(db, order(5))
    db.close()

    store = await openStore()
    expect(store.id).toBe(id)
    const last = await store.lastSeq()
    expect(last).toBeGreaterThan(b.seq)
    const feed = await feedFrom(store, a.seq)
    expect(feed[0]!.seq).toBe(b.seq)
    expect(summary(feed)).toEqual([
      { origin: 'converge', changes: [[hex(key(1)), hex(row(1, 1))], [hex(key(2)), null]] },
      { origin: undefined, changes: [[hex(key(5)), hex(row(5))]] }
    ])
    expect((await feedFrom(store, b.seq)).map(x => x.seq)).toEqual([last])
    expect(await feedFrom(store, last)).toEqual([])
    // another table in the same file is another store
    const other = await openStore({ table: 'orders_copy' })
    expect(other.id).not.toBe(id)
  })

  it('refuses trimmed history with ChangesTrimmedError and serves what is kept', async () => {
    let store = await openStore()
    const seqs: number[] = []
    for (let i = 0; i < 5; i++) seqs.push((await store.apply({ upserts: [row(i)], deletes: [] })).seq)
    await store.trimChanges(seqs[2]!)
    const refused = await follow(store, seqs[0]!, AbortSignal.timeout(2000)).done
    expect(refused).toBeInstanceOf(ChangesTrimmedError)
    expect(refused).toMatchObject({ code: 'CONVERGE_CHANGES_TRIMMED' })
    expect((await feedFrom(store, seqs[2]!)).map(b => b.seq)).toEqual(seqs.slice(3))
    expect(await store.lastSeq()).toBe(seqs[4])
    await store.close()
    store = await openStore()
    expect(await store.lastSeq()).toBe(seqs[4])
    await store.trimChanges(seqs[4]!)
    // all history trimmed: seq carries on, and asking from the last seq is fine
    expect(await feedFrom(store, seqs[4]!)).toEqual([])
    expect((await follow(store, 0, AbortSignal.timeout(2000)).done)).toMatchObject({ code: 'CONVERGE_CHANGES_TRIMMED' })
    expect((await store.apply({ upserts: [row(9)], deletes: [] })).seq).toBe(seqs[4]! + 1)
  })

  it('ends a waiting feed on abort and on close', async () => {
    const store = await openStore()
    const controller = new AbortController()
    const aborted = follow(store, 0, controller.signal)
    const closing = follow(store, 0, new AbortController().signal)
    await new Promise(resolve => setTimeout(resolve, 80))
    controller.abort()
    expect(await aborted.done).toMatchObject({ code: 'CONVERGE_ABORTED' })
    await store.close()
    expect(await closing.done).toBeUndefined()
    await expect(store.get([key(1)])).rejects.toMatchObject({ code: 'CONVERGE_STORE_NOT_OPEN' })
    await expect(store.lastSeq()).rejects.toMatchObject({ code: 'CONVERGE_STORE_NOT_OPEN' })
  })

  it('checks an existing table: a missing column, a missing table, no key index', async () => {
    const db = connect()
    db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, updated_at TEXT)')
    const missing = new SqliteStore({ path, table: 'orders', codec })
    await expect(missing.open()).rejects.toMatchObject({ code: 'CONVERGE_STORE_SCHEMA', message: expect.stringContaining('"status"') })
    // createTable does not alter an existing table
    await expect(new SqliteStore({ path, table: 'orders', codec, createTable: true }).open()).rejects.toMatchObject({ code: 'CONVERGE_STORE_SCHEMA' })
    await expect(new SqliteStore({ path, table: 'nope', codec }).open()).rejects.toMatchObject({ code: 'CONVERGE_STORE_SCHEMA', message: expect.stringContaining('"nope"') })
    db.exec('CREATE TABLE loose (id INTEGER, customer TEXT, amount REAL, status TEXT, updated_at TEXT)')
    await expect(new SqliteStore({ path, table: 'loose', codec }).open()).rejects.toMatchObject({ code: 'CONVERGE_STORE_SCHEMA', message: expect.stringContaining('UNIQUE') })
    // a unique index on the key is enough, and other columns are left alone
    db.exec('CREATE UNIQUE INDEX loose_id ON loose (id)')
    db.exec('ALTER TABLE loose ADD COLUMN extra TEXT DEFAULT \'kept\'')
    const store = new SqliteStore({ path, table: 'loose', codec })
    await store.open()
    cleanup.push(async () => { await store.close() })
    await store.apply({ upserts: [row(1)], deletes: [] })
    await store.apply({ upserts: [row(1, 1)], deletes: [] })
    expect((await store.get([key(1)])).map(hex)).toEqual([hex(row(1, 1))])
    expect({ ...db.prepare('SELECT extra FROM loose').get() }).toEqual({ extra: 'kept' })
  })

  it('names a column dropped under the open store and says to restart; the file is left as it was', async () => {
    const store = await openStore()
    await store.apply({ upserts: [row(1)], deletes: [] })
    connect().exec('ALTER TABLE orders DROP COLUMN customer')
    const changed = { code: 'CONVERGE_STORE_SCHEMA', message: expect.stringMatching(/SQLite table "orders" in .* is not as the agent read it at start: no such column: "customer"; restart the agent/) }
    await expect(store.get([key(1)])).rejects.toMatchObject(changed)
    await expect(store.apply({ upserts: [row(2)], deletes: [key(1)] })).rejects.toMatchObject(changed)
    await expect((async () => { for await (const batch of store.scan()) void batch })()).rejects.toMatchObject(changed)
    expect({ ...connect().prepare('SELECT count(*) AS n FROM orders').get() }).toEqual({ n: 1 })
  })

  it('reports the file held by another writer past its busy timeout as unavailable, writes nothing, and works once it is let go', async () => {
    const store = new SqliteStore({ path, table: 'orders', codec, createTable: true, pollMs: 50, busyTimeoutMs: 100 })
    await store.open()
    cleanup.push(async () => { await store.close() })
    await store.apply({ upserts: [row(1)], deletes: [] })
    const other = connect()
    other.exec('BEGIN EXCLUSIVE')
    await expect(store.apply({ upserts: [row(2)], deletes: [key(1)] })).rejects.toMatchObject({
      code: 'CONVERGE_STORE_UNAVAILABLE',
      message: expect.stringMatching(/^SQLite database .*replica\.db is held by another writer \(waited 100 ms\): database is locked/)
    })
    other.exec('ROLLBACK')
    expect((await store.get([key(1), key(2)])).map(r => r === undefined ? null : 'row')).toEqual(['row', null])
    await store.apply({ upserts: [row(2)], deletes: [] })
    expect(await store.countRows()).toBe(2)
  })

  it('renews its id when the change triggers were dropped behind its back', async () => {
    let store = await openStore()
    const id = store.id
    await store.close()
    const db = connect()
    db.exec('DROP TRIGGER "converge_orders_update"')
    store = await openStore()
    expect(store.id).not.toBe(id)
    const reopenedId = store.id
    await store.close()
    store = await openStore()
    expect(store.id).toBe(reopenedId)
    // the trigger is back
    insertOrder(db, order(1))
    db.prepare("UPDATE orders SET status = 'x' WHERE id = 1").run()
    const feed = await feedFrom(store, 0)
    expect(feed.flatMap(b => b.changes).map(c => hex(c.row))).toEqual([hex(codec.encodeRow({ ...order(1), status: 'x' }))])
  })

  it('backs a DigestIndex that builds the same tree as a MemoryReplica and follows writes behind its back', async () => {
    const store = await openStore()
    await store.apply({ upserts: rows(0, 3000), deletes: [] })
    const model = new Map<number, Uint8Array>(Array.from({ length: 3000 }, (_, id) => [id, row(id)]))
    const state = new StateDb(join(dir, 'state'))
    await state.open()
    cleanup.push(async () => { await state.close() })
    const errors: unknown[] = []
    let index = new DigestIndex({ dataset: 'orders', codec, store, state })
    index.on('error', err => { errors.push(err) })
    cleanup.push(async () => { await index.stop() })
    await index.start()
    expect(index.tree.root).toEqual(new MemoryReplica(codec, model.values()).tree.root)

    // plain SQL behind the store's back
    const db = connect()
    db.exec('BEGIN')
    db.prepare("UPDATE orders SET status = 'rev-9', amount = amount + 9 WHERE id = 5").run()
    db.prepare('DELETE FROM orders WHERE id BETWEEN 100 AND 149').run()
    insertOrder(db, order(5000))
    db.exec('COMMIT')
    const o5 = order(5)
    model.set(5, codec.encodeRow({ ...o5, status: 'rev-9', amount: (o5.amount as number) + 9 }))
    for (let id = 100; id < 150; id++) model.delete(id)
    model.set(5000, row(5000))
    const expected = (): bigint => new MemoryReplica(codec, model.values()).tree.root.sum
    await until(() => index.tree.root.sum === expected())
    expect(index.tree.root).toEqual(new MemoryReplica(codec, model.values()).tree.root)

    // and the store's own applies
    await store.apply({ upserts: [row(6, 1)], deletes: [key(7)], origin: 'converge' })
    model.set(6, row(6, 1)); model.delete(7)
    await index.catchUp()
    expect(index.tree.root).toEqual(new MemoryReplica(codec, model.values()).tree.root)

    // stopped, a write happens; restarted over the same state, the index replays it from its seq
    await index.stop()
    db.prepare('DELETE FROM orders WHERE id = 8').run()
    model.delete(8)
    index = new DigestIndex({ dataset: 'orders', codec, store, state })
    index.on('error', err => { errors.push(err) })
    cleanup.push(async () => { await index.stop() })
    let rescanned = false
    const scan = store.scan.bind(store)
    store.scan = (options) => { rescanned = true; return scan(options) }
    await index.start()
    expect(rescanned).toBe(false)
    expect(index.tree.root).toEqual(new MemoryReplica(codec, model.values()).tree.root)
    expect(errors).toEqual([])
  })
})
