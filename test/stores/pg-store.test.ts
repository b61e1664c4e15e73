import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { KEYS_PER_LOG_ROW, PgStore, readCatalogSchema } from '../../src/stores/pg-store.ts'
import { RowCodec } from '../../src/digest/row-codec.ts'
import type { ChangeBatch } from '../../src/stores/replica-store.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import { ORDERS_SCHEMA, orderRow, ordersCodec as codec } from '../../cluster/orders.ts'
import { randomBytes } from 'node:crypto'
import { createDatabase, LOGGED_KEYS, ORDERS_DDL, PG_ADMIN_URL, sql } from '../helpers/postgres.ts'

const hex = (b: Uint8Array | null | undefined): string | null => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'))
const rows = (ids: number[], rev = 0): Uint8Array[] => ids.map(id => codec.encodeRow(orderRow(id, rev)))
const key = (id: number): Uint8Array => codec.encodeKey({ order_id: id })

async function scanAll (store: PgStore): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for await (const batch of store.scan({ batchSize: 333 })) for (const r of batch) out.set(hex(r.key)!, hex(r.row)!)
  return out
}

/** Collects feed batches until `until` holds (or 10 s). */
async function collect (store: PgStore, since: number, until: (got: ChangeBatch[]) => boolean): Promise<ChangeBatch[]> {
  const got: ChangeBatch[] = []
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), 10_000)
  try {
    for await (const batch of store.changes({ since, signal: controller.signal })) {
      got.push(batch)
      if (until(got)) break
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err
  } finally {
    clearTimeout(timer)
  }
  return got
}

/** The statements a store sends (through any pg client) while `work` runs. */
async function statements (work: () => Promise<unknown>): Promise<string[]> {
  const sent: string[] = []
  const originalQuery = pg.Client.prototype.query as (...args: unknown[]) => unknown
  const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
    const q = args[0] as string | { text?: string }
    sent.push(typeof q === 'string' ? q : q.text ?? '')
    return originalQuery.apply(this, args) as never
  })
  try { await work() } finally { spy.mockRestore() }
  return sent
}

describe('PostgreSQL store (real server)', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>
  let store: PgStore

  beforeEach(async () => {
    db = await createDatabase()
    await sql(db.url, ORDERS_DDL)
    store = new PgStore({ connectionString: db.url, table: 'public.orders', codec, pollMs: 200 })
    await store.open()
  })
  afterEach(async () => {
    await store.close()
    await db.drop()
  })

  it('writes and reads rows back with the same canonical bytes a LevelDB store holds', async () => {
    const written = rows([1, 2, 3, 500, 2 ** 33])
    await store.apply({ upserts: written, deletes: [] })
    const got = await scanAll(store)
    expect([...got.values()].sort()).toEqual(written.map(r => hex(r)!).sort())
    const dir = await mkdtemp(join(tmpdir(), 'converge-pg-level-'))
    const level = new LevelStore({ path: dir, codec })
    await level.open()
    await level.apply({ upserts: written, deletes: [] })
    const fromLevel = new Map<string, string>()
    for await (const batch of level.scan()) for (const r of batch) fromLevel.set(hex(r.key)!, hex(r.row)!)
    await level.close()
    await rm(dir, { recursive: true, force: true })
    expect(got).toEqual(fromLevel)
    expect((await store.get([key(2), key(999)])).map(hex)).toEqual([hex(written[1]), null])
  })

  it('reads many keys at once in parts, side by side, each row in its place, absent ones included', async () => {
    const ids = Array.from({ length: 9000 }, (_, i) => i * 3)
    const written = rows(ids)
    await store.apply({ upserts: written, deletes: [] })
    // present and absent keys interleaved, out of order, one key twice
    const asked = [...ids.slice(0, 4000).reverse(), ...Array.from({ length: 3000 }, (_, i) => i * 3 + 1), ...ids.slice(4000), 6]
    const query = vi.spyOn(pg.Pool.prototype, 'connect')
    const got = await store.get(asked.map(key))
    expect(query.mock.calls.length).toBeGreaterThanOrEqual(3)
    query.mockRestore()
    expect(got.map(hex)).toEqual(asked.map(id => (id % 3 === 0 ? hex(rows([id])[0]) : null)))
  })

  it('gives each row read by key memory of its own, unless the caller drops them soon (shortLived): the same rows then, as views', async () => {
    await store.apply({ upserts: rows([1, 2, 3]), deletes: [] })
    const keys = [1, 2, 3, 4].map(key)
    const own = await store.get(keys)
    const shared = await store.get(keys, { shortLived: true })
    expect(shared.map(hex)).toEqual(own.map(hex))
    expect(own.map(hex)).toEqual([...rows([1, 2, 3]).map(hex), null])
    for (const row of own.slice(0, 3)) expect(row!.buffer.byteLength).toBe(row!.byteLength)
    // the three rows of one read in one block of memory
    expect(new Set(shared.slice(0, 3).map(row => row!.buffer)).size).toBe(1)
  })

  it('applies in one transaction and returns before-images', async () => {
    await store.apply({ upserts: rows([1, 2]), deletes: [] })
    const result = await store.apply({ upserts: rows([2, 3], 1), deletes: [key(1), key(7)] })
    expect(result.before.map(hex)).toEqual([hex(rows([2])[0]), null, hex(rows([1])[0]), null])
    // a row the table refuses rolls the whole apply back, deletes included
    await sql(db.url, 'ALTER TABLE public.orders ADD CONSTRAINT items_small CHECK (items < 100)')
    await expect(store.apply({ upserts: [rows([8])[0]!, codec.encodeRow({ ...orderRow(9), items: 500 })], deletes: [key(3)] })).rejects.toThrow(/items_small/)
    const after = await scanAll(store)
    expect(after.has(hex(key(8))!)).toBe(false)
    expect(after.has(hex(key(3))!)).toBe(true)
  })

  it('an apply whose signal has aborted fails with CONVERGE_ABORTED and changes nothing; the store takes writes after it', async () => {
    await store.apply({ upserts: rows([1, 2]), deletes: [] })
    const seq = await store.lastSeq()
    const controller = new AbortController()
    controller.abort()
    await expect(store.apply({ upserts: rows([1, 3], 1), deletes: [key(2)] }, { signal: controller.signal })).rejects.toMatchObject({ code: 'CONVERGE_ABORTED' })
    expect((await store.get([key(1), key(2), key(3)])).map(hex)).toEqual([hex(rows([1])[0]), hex(rows([2])[0]), null])
    expect(await store.lastSeq()).toBe(seq)
    await store.apply({ upserts: rows([3]), deletes: [] }, { signal: new AbortController().signal })
    expect((await store.get([key(3)])).map(hex)).toEqual([hex(rows([3])[0])])
  })

  it('says which upserts it holds otherwise than written, with the rows as stored: a trigger, a varchar that cuts, a numeric that rounds', async () => {
    const schema = { version: 1, columns: [{ name: 'id', type: 'integer' as const }, { name: 'code', type: 'string' as const }, { name: 'price', type: 'decimal' as const }, { name: 'touched', type: 'boolean' as const }], primaryKey: ['id'], ignoreColumns: [] }
    const items = new RowCodec(schema)
    await sql(db.url, `CREATE TABLE public.items (id integer PRIMARY KEY, code varchar(5) NOT NULL, price numeric(8,2) NOT NULL, touched boolean NOT NULL);
      CREATE FUNCTION mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.id = 3 THEN NEW.touched := true; END IF; RETURN NEW; END $$;
      CREATE TRIGGER mark BEFORE INSERT OR UPDATE ON public.items FOR EACH ROW EXECUTE FUNCTION mark()`)
    const itemStore = new PgStore({ connectionString: db.url, table: 'public.items', codec: items })
    await itemStore.open()
    try {
      const written = [
        { id: 1, code: 'abc', price: '1.5', touched: false },
        { id: 2, code: 'abcdefg', price: '2', touched: false }, // cut to 5 characters by the column's type
        { id: 3, code: 'x', price: '3', touched: false }, // the trigger sets touched
        { id: 4, code: 'y', price: '4.005', touched: false } // rounded to two decimals
      ].map(r => items.encodeRow(r))
      const result = await itemStore.apply({ upserts: written, deletes: [] })
      expect((result.rewritten ?? []).map(r => ({ index: r.index, row: items.decodeRow(r.row) })).sort((a, b) => a.index - b.index)).toEqual([
        { index: 1, row: { id: 2, code: 'abcde', price: '2', touched: false } },
        { index: 2, row: { id: 3, code: 'x', price: '3', touched: true } },
        { index: 3, row: { id: 4, code: 'y', price: '4.01', touched: false } }
      ])
      // each as stored is what a read gives
      for (const { row } of result.rewritten!) expect(hex((await itemStore.get([items.keyOfEncodedRow(row)]))[0]!)).toBe(hex(row))
      // written again as stored, nothing is rewritten
      expect((await itemStore.apply({ upserts: result.rewritten!.map(r => r.row), deletes: [] })).rewritten).toBeUndefined()
    } finally {
      await itemStore.close()
    }
  })

  it('reads no upsert back from a table that stores rows as written, until a BEFORE trigger appears on it while the store is open', async () => {
    const schema = { version: 1, columns: [{ name: 'id', type: 'integer' as const }, { name: 'code', type: 'string' as const }, { name: 'price', type: 'decimal' as const }, { name: 'touched', type: 'boolean' as const }], primaryKey: ['id'], ignoreColumns: [] }
    const items = new RowCodec(schema)
    await sql(db.url, 'CREATE TABLE public.items (id integer PRIMARY KEY, code varchar NOT NULL, price numeric NOT NULL, touched boolean NOT NULL)')
    const itemStore = new PgStore({ connectionString: db.url, table: 'public.items', codec: items })
    await itemStore.open()
    // what each apply sends: an upsert that returns its rows says RETURNING
    try {
      const written = [{ id: 1, code: 'abcdefg', price: '1.50', touched: false }, { id: 3, code: 'x', price: '3', touched: false }].map(r => items.encodeRow(r))
      let result: Awaited<ReturnType<PgStore['apply']>> | undefined
      let sent = await statements(async () => { result = await itemStore.apply({ upserts: written, deletes: [] }) })
      expect(result!.rewritten).toBeUndefined()
      expect(sent.filter(q => /INSERT INTO/.test(q))).toHaveLength(1)
      expect(sent.filter(q => /RETURNING/.test(q))).toEqual([])
      expect((await itemStore.get(written.map(r => items.keyOfEncodedRow(r)))).map(hex)).toEqual(written.map(hex))
      await sql(db.url, `CREATE FUNCTION mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.id = 3 THEN NEW.touched := true; END IF; RETURN NEW; END $$;
        CREATE TRIGGER mark BEFORE INSERT OR UPDATE ON public.items FOR EACH ROW EXECUTE FUNCTION mark()`)
      sent = await statements(async () => { result = await itemStore.apply({ upserts: written, deletes: [] }) })
      expect(sent.filter(q => /RETURNING/.test(q))).toHaveLength(1)
      expect((result!.rewritten ?? []).map(r => ({ index: r.index, row: items.decodeRow(r.row) }))).toEqual([{ index: 1, row: { id: 3, code: 'x', price: '3', touched: true } }])
      // disabled, it changes nothing: rows are stored as written again, and not read back
      await sql(db.url, 'ALTER TABLE public.items DISABLE TRIGGER mark')
      sent = await statements(async () => { result = await itemStore.apply({ upserts: written, deletes: [] }) })
      expect(result!.rewritten).toBeUndefined()
      expect(sent.filter(q => /RETURNING/.test(q))).toEqual([])
    } finally {
      await itemStore.close()
    }
  })

  describe('a fix planned on rows the feed read, with their versions', () => {
    // a table that stores rows as written (exact column types, no trigger that rewrites): nothing to read back
    const items = new RowCodec({ version: 1, columns: [{ name: 'id', type: 'integer' as const }, { name: 'code', type: 'string' as const }, { name: 'price', type: 'decimal' as const }], primaryKey: ['id'], ignoreColumns: [] })
    const item = (id: number, code = `c${id}`): Uint8Array => items.encodeRow({ id, code, price: `${id}.5` })
    const itemKey = (id: number): Uint8Array => items.encodeKey({ id })
    let itemStore: PgStore

    beforeEach(async () => {
      await sql(db.url, 'CREATE TABLE public.items (id integer PRIMARY KEY, code text NOT NULL, price numeric NOT NULL)')
      itemStore = new PgStore({ connectionString: db.url, table: 'public.items', codec: items, pollMs: 200 })
      await itemStore.open()
    })
    afterEach(async () => { await itemStore.close() })

    /**
     * Rows 1-4, then behind the store's back: row 2 changed, row 3 deleted,
     * row 5 inserted. The fix that puts the table back (rows 2 and 3 as
     * they were, row 5 deleted), with the feed's rows for those keys as what
     * it expects there.
     */
    async function drifted (): Promise<{ fix: { upserts: Uint8Array[], deletes: Uint8Array[] }, expected: Array<{ row: Uint8Array | null, version?: string }> }> {
      await itemStore.apply({ upserts: [1, 2, 3, 4].map(id => item(id)), deletes: [] })
      const since = await itemStore.lastSeq()
      await sql(db.url, "BEGIN; UPDATE public.items SET code = 'drifted' WHERE id = 2; DELETE FROM public.items WHERE id = 3; INSERT INTO public.items VALUES (5, 'c5', 5.5); COMMIT")
      const [batch] = await collect(itemStore, since, g => g.length >= 1)
      const byKey = new Map(batch!.changes.map(c => [hex(c.key), c]))
      const seen = (id: number): { row: Uint8Array | null, version?: string } => {
        const c = byKey.get(hex(itemKey(id)))!
        return c.version === undefined ? { row: c.row } : { row: c.row, version: c.version }
      }
      return { fix: { upserts: [item(2), item(3)], deletes: [itemKey(5)] }, expected: [seen(2), seen(3), seen(5)] }
    }

    /** The table holds rows 1-4 as first written, nothing else. */
    async function expectRepaired (): Promise<void> {
      const { rows: now } = await sql(db.url, 'SELECT id, code, price::text FROM public.items ORDER BY id')
      expect(now).toEqual([1, 2, 3, 4].map(id => ({ id, code: `c${id}`, price: `${id}.5` })))
    }

    it('the feed gives each row it read its version (xmin), and none for a key without a row', async () => {
      const { expected } = await drifted()
      const { rows: xmins } = await sql(db.url, 'SELECT xmin::text AS x FROM public.items WHERE id IN (2, 5) ORDER BY id')
      expect(expected.map(e => e.version)).toEqual([xmins[0].x, undefined, xmins[1].x])
      expect(expected[1]!.row).toBeNull()
    })

    it('writes it without reading the rows again, and gives the rows the feed read as the before-images', async () => {
      const { fix, expected } = await drifted()
      let result: Awaited<ReturnType<PgStore['apply']>> | undefined
      const sent = await statements(async () => { result = await itemStore.apply({ ...fix, expected }) })
      expect(sent.filter(q => /FOR UPDATE/.test(q))).toEqual([])
      expect(sent.filter(q => /ROLLBACK TO SAVEPOINT/.test(q))).toEqual([])
      expect(result!.before.map(hex)).toEqual(expected.map(e => hex(e.row)))
      await expectRepaired()
    })

    it.each([
      ['changed', "UPDATE public.items SET code = 'moved on' WHERE id = 2", 0],
      ['inserted where it had none', "INSERT INTO public.items VALUES (3, 'moved on', 3.5)", 1],
      ['changed before its delete', "UPDATE public.items SET code = 'moved on' WHERE id = 5", 2],
      ['deleted and inserted again as it was', "DELETE FROM public.items WHERE id = 5; INSERT INTO public.items VALUES (5, 'c5', 5.5)", 2]
    ])('reads them all under lock when a row was %s after the feed read it: that row\'s before-image is the row as then found', async (_, move, at) => {
      const { fix, expected } = await drifted()
      await sql(db.url, move)
      const { rows: [found] } = await sql(db.url, `SELECT id, code, price::text AS price FROM public.items WHERE id = ${[2, 3, 5][at]!}`)
      let result: Awaited<ReturnType<PgStore['apply']>> | undefined
      const sent = await statements(async () => { result = await itemStore.apply({ ...fix, expected }) })
      expect(sent.filter(q => /ROLLBACK TO SAVEPOINT/.test(q))).toHaveLength(1)
      expect(sent.filter(q => /FOR UPDATE/.test(q))).toHaveLength(1)
      const before = result!.before
      expect(items.decodeRow(before[at]!)).toEqual(found)
      before.forEach((row, i) => { if (i !== at) expect(hex(row)).toBe(hex(expected[i]!.row)) })
      await expectRepaired()
    })

    it('writes it without reading the rows again in a table of a composite key, and reads them when a row moved on', async () => {
      const stock = new RowCodec({ version: 1, columns: [{ name: 'site', type: 'string' as const }, { name: 'sku', type: 'integer' as const }, { name: 'qty', type: 'integer' as const }], primaryKey: ['site', 'sku'], ignoreColumns: [] })
      await sql(db.url, 'CREATE TABLE public.stock (site text, sku integer, qty integer NOT NULL, PRIMARY KEY (site, sku))')
      const stockStore = new PgStore({ connectionString: db.url, table: 'public.stock', codec: stock, pollMs: 200 })
      await stockStore.open()
      try {
        const line = (site: string, sku: number, qty = sku): Uint8Array => stock.encodeRow({ site, sku, qty })
        for (const moved of [false, true]) {
          await stockStore.apply({ upserts: [line('a', 1), line('a', 2), line('b', 1)], deletes: [] })
          const since = await stockStore.lastSeq()
          await sql(db.url, "BEGIN; UPDATE public.stock SET qty = 0 WHERE site = 'a' AND sku = 2; DELETE FROM public.stock WHERE site = 'b'; INSERT INTO public.stock VALUES ('c', 9, 9); COMMIT")
          const [batch] = await collect(stockStore, since, g => g.length >= 1)
          const byKey = new Map(batch!.changes.map(c => [hex(c.key), c]))
          const seen = (site: string, sku: number): { row: Uint8Array | null, version?: string } => {
            const c = byKey.get(hex(stock.encodeKey({ site, sku })))!
            return c.version === undefined ? { row: c.row } : { row: c.row, version: c.version }
          }
          const expected = [seen('a', 2), seen('b', 1), seen('c', 9)]
          if (moved) await sql(db.url, "UPDATE public.stock SET qty = 7 WHERE site = 'c'")
          const sent = await statements(async () => await stockStore.apply({ upserts: [line('a', 2), line('b', 1)], deletes: [stock.encodeKey({ site: 'c', sku: 9 })], expected }))
          expect(sent.filter(q => /FOR UPDATE/.test(q))).toHaveLength(moved ? 1 : 0)
          const { rows: now } = await sql(db.url, 'SELECT site, sku, qty FROM public.stock ORDER BY site, sku')
          expect(now).toEqual([{ site: 'a', sku: 1, qty: 1 }, { site: 'a', sku: 2, qty: 2 }, { site: 'b', sku: 1, qty: 1 }])
        }
      } finally {
        await stockStore.close()
      }
    })

    it('reads the rows as without versions when a version is not a transaction id, or missing', async () => {
      const { fix, expected } = await drifted()
      for (const bad of [[{ ...expected[0]!, version: "1'); DROP TABLE public.items; --" }, expected[1]!, expected[2]!], [{ row: expected[0]!.row }, expected[1]!, expected[2]!]]) {
        const sent = await statements(async () => await itemStore.apply({ ...fix, expected: bad }))
        expect(sent.filter(q => /FOR UPDATE/.test(q))).toHaveLength(1)
        expect(sent.filter(q => /SAVEPOINT/.test(q))).toEqual([])
      }
      await expectRepaired()
    })
  })

  it('reads every upsert back from a partitioned table, whose partitions may have triggers of their own', async () => {
    const schema = { version: 1, columns: [{ name: 'id', type: 'integer' as const }, { name: 'code', type: 'string' as const }, { name: 'touched', type: 'boolean' as const }], primaryKey: ['id'], ignoreColumns: [] }
    const items = new RowCodec(schema)
    await sql(db.url, `CREATE TABLE public.parts (id integer PRIMARY KEY, code text NOT NULL, touched boolean NOT NULL) PARTITION BY RANGE (id);
      CREATE TABLE public.parts_low PARTITION OF public.parts FOR VALUES FROM (0) TO (1000);
      CREATE FUNCTION mark_part() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.id = 3 THEN NEW.touched := true; END IF; RETURN NEW; END $$;
      CREATE TRIGGER mark_part BEFORE INSERT OR UPDATE ON public.parts_low FOR EACH ROW EXECUTE FUNCTION mark_part()`)
    const partStore = new PgStore({ connectionString: db.url, table: 'public.parts', codec: items })
    await partStore.open()
    try {
      const written = [{ id: 1, code: 'a', touched: false }, { id: 3, code: 'x', touched: false }].map(r => items.encodeRow(r))
      const result = await partStore.apply({ upserts: written, deletes: [] })
      expect((result.rewritten ?? []).map(r => ({ index: r.index, row: items.decodeRow(r.row) }))).toEqual([{ index: 1, row: { id: 3, code: 'x', touched: true } }])
    } finally {
      await partStore.close()
    }
  })

  it('captures its own fixes with origin "converge" and writes behind its back with none', async () => {
    const since = await store.lastSeq()
    await store.apply({ upserts: rows([1, 2]), deletes: [], origin: 'converge' })
    await sql(db.url, "UPDATE public.orders SET status = 'lost' WHERE order_id = 2")
    await sql(db.url, 'DELETE FROM public.orders WHERE order_id = 1')
    const got = await collect(store, since, g => g.length >= 3)
    expect(got.map(b => b.origin)).toEqual(['converge', undefined, undefined])
    expect(got[0]!.changes.map(c => hex(c.key))).toEqual([hex(key(1)), hex(key(2))])
    // rows are read as they are now: row 1 is gone, row 2 carries the later update
    expect(got[0]!.changes.map(c => c.row === null ? null : codec.decodeRow(c.row).status)).toEqual([null, 'lost'])
    expect(got[2]!.changes.map(c => [hex(c.key), c.row])).toEqual([[hex(key(1)), null]])
    expect(got.map(b => b.seq)).toEqual([...got.map(b => b.seq)].sort((a, b) => a - b))
  })

  it('never skips a transaction that commits after a later one', async () => {
    const since = await store.lastSeq()
    const a = new pg.Client({ connectionString: db.url }); await a.connect()
    const b = new pg.Client({ connectionString: db.url }); await b.connect()
    try {
      await a.query('BEGIN'); await a.query(`INSERT INTO public.orders VALUES (1, 'a', 'r', 's', 1, 'USD', 1, null, now())`)
      await b.query('BEGIN'); await b.query(`INSERT INTO public.orders VALUES (2, 'b', 'r', 's', 1, 'USD', 1, null, now())`)
      await b.query('COMMIT')
      // b committed, but a (older) is still open: nothing may be handed out past a
      expect(await collect(store, since, () => true).then(g => g.length, () => 0)).toBe(0)
      await a.query('COMMIT')
      const got = await collect(store, since, g => g.length >= 2)
      expect(got.map(g => g.changes.map(c => codec.decodeKey(c.key).order_id))).toEqual([[1], [2]])
    } finally {
      await a.end(); await b.end()
    }
  }, 30_000)

  it('is not held back by a write transaction open in another database on the same server: lastSeq and the feed reach a commit made meanwhile', async () => {
    const other = await createDatabase()
    const holder = new pg.Client({ connectionString: other.url }); await holder.connect()
    try {
      const since = await store.lastSeq()
      // older than the apply below, and running until the end: pg_snapshot_xmin stays below the apply throughout
      await holder.query('BEGIN'); await holder.query('CREATE TABLE t (a int)'); await holder.query('SELECT pg_current_xact_id()')
      const { seq } = await store.apply({ upserts: rows([7]), deletes: [] })
      expect(await store.lastSeq(), 'lastSeq covers the commit').toBeGreaterThanOrEqual(seq)
      const got = await collect(store, since, g => g.some(b => b.seq >= seq))
      expect(got.flatMap(g => g.changes.map(c => codec.decodeKey(c.key).order_id))).toEqual([7])
      // the same kind of transaction in this database does hold it (it may yet write the table)
      const near = new pg.Client({ connectionString: db.url }); await near.connect()
      try {
        await near.query('BEGIN'); await near.query('CREATE TABLE t (a int)'); await near.query('SELECT pg_current_xact_id()')
        const later = await store.apply({ upserts: rows([8]), deletes: [] })
        expect(await store.lastSeq(), 'held below the open transaction of this database').toBeLessThan(later.seq)
        await near.query('ROLLBACK')
        expect(await store.lastSeq()).toBeGreaterThanOrEqual(later.seq)
      } finally { await near.end() }
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined)
      await holder.end()
      await other.drop()
    }
  }, 30_000)

  it('after a notification that found its transaction not yet readable, looks again soon instead of a whole poll interval', async () => {
    // a poll interval far longer than the test: only the notification's retries can deliver the change in time
    const slow = new PgStore({ connectionString: db.url, table: 'public.orders', codec, pollMs: 60_000 })
    await slow.open()
    const since = await slow.lastSeq()
    const holder = new pg.Client({ connectionString: db.url }); await holder.connect()
    const controller = new AbortController()
    try {
      // an older write transaction of the same database holds the feed back (it may yet write the table)
      await holder.query('BEGIN'); await holder.query('SELECT pg_current_xact_id()')
      const feed = slow.changes({ since, signal: controller.signal })[Symbol.asyncIterator]()
      const first = feed.next()
      // the feed is waiting; this commit notifies it, but it cannot read the change while the holder is open
      await new Promise(resolve => setTimeout(resolve, 300))
      await store.apply({ upserts: rows([42]), deletes: [] })
      await new Promise(resolve => setTimeout(resolve, 500))
      await holder.query('COMMIT')
      const t = Date.now()
      const got = await Promise.race([first, new Promise<undefined>(resolve => setTimeout(() => resolve(undefined), 10_000))])
      const batch = got?.done === false ? got.value : undefined
      expect(batch?.changes.map(c => codec.decodeKey(c.key).order_id)).toEqual([42])
      // delivered by the retries after the notification (25 ms doubling), well before the 60 s poll
      expect(Date.now() - t).toBeLessThan(10_000)
    } finally {
      controller.abort()
      await holder.end().catch(() => undefined)
      await slow.close()
    }
  }, 30_000)

  it('resumes its feed after close and reopen, and refuses trimmed history', async () => {
    const first = await store.lastSeq()
    await store.apply({ upserts: rows([1]), deletes: [] })
    const mid = await store.lastSeq()
    await store.apply({ upserts: rows([2]), deletes: [] })
    await store.close()
    store = new PgStore({ connectionString: db.url, table: 'orders', codec, pollMs: 200 })
    await store.open()
    const got = await collect(store, mid, g => g.length >= 1)
    expect(got.map(g => g.changes.map(c => codec.decodeKey(c.key).order_id))).toEqual([[2]])
    await store.trimChanges(mid)
    const refused = store.changes({ since: first, signal: AbortSignal.timeout(5000) })[Symbol.asyncIterator]().next()
    await expect(refused).rejects.toMatchObject({ code: 'CONVERGE_CHANGES_TRIMMED' })
  })

  it('opens again without touching its triggers while a write transaction is open on the table, and puts back a dropped trigger', async () => {
    // an application transaction holds a row write open: trigger DDL would wait for it and block every writer behind it
    const app = new pg.Client({ connectionString: db.url })
    await app.connect()
    try {
      await app.query('BEGIN')
      await app.query(`INSERT INTO public.orders VALUES (99, 'c', 'r', 's', 1.5, 'EUR', 1, null, now())`)
      const again = new PgStore({ connectionString: db.url, table: 'public.orders', codec, pollMs: 200 })
      const opened = await Promise.race([again.open().then(() => 'opened'), new Promise(resolve => setTimeout(() => resolve('blocked'), 5000))])
      expect(opened).toBe('opened')
      expect(again.id).toBe(store.id)
      await again.close()
      await app.query('COMMIT')
    } finally {
      await app.end()
    }
    await sql(db.url, 'DROP TRIGGER converge_capture_update ON public.orders')
    await sql(db.url, 'ALTER TABLE public.orders DISABLE TRIGGER converge_capture_delete')
    const repaired = new PgStore({ connectionString: db.url, table: 'public.orders', codec, pollMs: 200 })
    await repaired.open()
    await repaired.close()
    const { rows: triggers } = await sql(db.url, "SELECT tgname, tgenabled <> 'D' AS enabled FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass AND NOT tgisinternal ORDER BY tgname")
    expect(triggers.map(t => [t.tgname, t.enabled])).toEqual([['converge_capture_delete', true], ['converge_capture_insert', true], ['converge_capture_update', true], ['converge_notify', true]])
  })

  it('logs the same changes with its statement triggers as the row trigger a partitioned table keeps: inserts, updates, key changes, deletes, upserts, transactions of several statements', async () => {
    // the same table partitioned (one partition): PgStore gives it the row trigger
    await sql(db.url, `${ORDERS_DDL.replace('public.orders', 'public.orders_p')} PARTITION BY RANGE (order_id)`)
    await sql(db.url, 'CREATE TABLE public.orders_p_all PARTITION OF public.orders_p DEFAULT')
    const partitioned = new PgStore({ connectionString: db.url, table: 'public.orders_p', codec, pollMs: 200 })
    await partitioned.open()
    const triggersOf = async (table: string): Promise<string[]> =>
      (await sql(db.url, 'SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY tgname', [table])).rows.map(r => r.tgname as string)
    expect(await triggersOf('public.orders')).toEqual(['converge_capture_delete', 'converge_capture_insert', 'converge_capture_update', 'converge_notify'])
    expect(await triggersOf('public.orders_p')).toEqual(['converge_capture', 'converge_notify'])
    const value = (id: number): string => `(${id}, 'c', 'r', 's', 1.5, 'EUR', 1, null, now())`
    const transactions = (t: string): string[][] => [
      [`INSERT INTO ${t} VALUES ${[1, 2, 3, 4, 5].map(value).join(', ')}`],
      [`UPDATE ${t} SET status = 'x' WHERE order_id IN (1, 2)`],
      [`UPDATE ${t} SET order_id = order_id + 100 WHERE order_id = 3`],
      [`DELETE FROM ${t} WHERE order_id IN (4, 999)`],
      [`UPDATE ${t} SET status = 'none' WHERE false`],
      ["SELECT set_config('converge.origin', 'converge', true)", `INSERT INTO ${t} VALUES ${value(6)}`, `UPDATE ${t} SET status = 'y' WHERE order_id = 6`,
        `UPDATE ${t} SET order_id = 106 WHERE order_id = 6`, `DELETE FROM ${t} WHERE order_id = 5`, `INSERT INTO ${t} VALUES ${value(5)}`],
      [`INSERT INTO ${t} VALUES ${value(1)}, ${value(7)} ON CONFLICT (order_id) DO UPDATE SET status = 'upserted'`],
      [`UPDATE ${t} SET order_id = order_id + 1000`],
      [`DELETE FROM ${t}`]
    ]
    const client = new pg.Client({ connectionString: db.url })
    await client.connect()
    try {
      for (const table of ['public.orders', 'public.orders_p']) {
        for (const statements of transactions(table)) {
          await client.query('BEGIN')
          for (const statement of statements) await client.query(statement)
          await client.query('COMMIT')
        }
      }
    } finally {
      await client.end()
    }
    /** Per transaction, in order: its logged keys (sorted, repeats kept) and origins. */
    const logOf = async (table: string): Promise<Array<{ keys: string[], origins: Array<string | null> }>> => {
      const { rows } = await sql(db.url, `SELECT l.xid::text AS xid, l.key::text AS key, l.origin FROM ${LOGGED_KEYS} l WHERE l.tbl = $1 ORDER BY l.xid, l.seq`, [table])
      const byXid = new Map<string, Array<{ key: string, origin: string | null }>>()
      for (const r of rows) byXid.set(r.xid, [...(byXid.get(r.xid) ?? []), { key: r.key, origin: r.origin }])
      return [...byXid.values()].map(entries => ({ keys: entries.map(e => e.key).sort(), origins: [...new Set(entries.map(e => e.origin))] }))
    }
    const k = (id: number): string => `{"order_id": "${id}"}`
    const log = await logOf('public.orders')
    expect(log).toEqual([
      { keys: [1, 2, 3, 4, 5].map(k).sort(), origins: [null] },
      { keys: [1, 2].map(k).sort(), origins: [null] },
      { keys: [103, 3].map(k).sort(), origins: [null] },
      { keys: [k(4)], origins: [null] },
      // insert 6, update 6, move 6 to 106, delete 5, insert 5
      { keys: [106, 5, 5, 6, 6, 6].map(k).sort(), origins: ['converge'] },
      { keys: [1, 7].map(k).sort(), origins: [null] },
      { keys: [1, 1001, 1002, 1005, 1007, 1103, 1106, 103, 106, 2, 5, 7].map(k).sort(), origins: [null] },
      { keys: [1001, 1002, 1005, 1007, 1103, 1106].map(k).sort(), origins: [null] }
    ])
    expect(await logOf('public.orders_p'), 'the statement triggers log what the row trigger logs').toEqual(log)
    // and the feed hands out each transaction's keys once, as the row trigger's feed does
    const feed = async (store: PgStore): Promise<unknown> => (await collect(store, 0, g => g.length >= log.length)).map(b => ({ origin: b.origin, keys: b.changes.map(c => Number(codec.decodeKey(c.key).order_id)).sort((x, y) => x - y) }))
    expect(await feed(store)).toEqual(await feed(partitioned))
    await partitioned.close()
  })

  it('logs a key that one row leaves and another takes in the same statement once (the row trigger logged it twice); the feed delivers it once either way', async () => {
    const pairs = new RowCodec({ version: 1, columns: [{ name: 'id', type: 'integer' }, { name: 'v', type: 'string' }], primaryKey: ['id'], ignoreColumns: [] })
    await sql(db.url, 'CREATE TABLE public.pairs (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v text NOT NULL)')
    const swapped = new PgStore({ connectionString: db.url, table: 'public.pairs', codec: pairs, pollMs: 200 })
    await swapped.open()
    try {
      await sql(db.url, "INSERT INTO public.pairs VALUES (1, 'one'), (2, 'two'), (3, 'three')")
      const since = await swapped.lastSeq()
      await sql(db.url, 'UPDATE public.pairs SET id = CASE id WHEN 1 THEN 2 WHEN 2 THEN 3 ELSE 1 END')
      const { rows } = await sql(db.url, `SELECT l.key->>'id' AS id FROM ${LOGGED_KEYS} l WHERE l.tbl = 'public.pairs' AND l.xid > $1::text::xid8 ORDER BY l.key->>'id'`, [String(since)])
      expect(rows.map(r => r.id)).toEqual(['1', '2', '3'])
      const [batch] = await collect(swapped, since, g => g.length >= 1)
      expect(batch!.changes.map(c => [pairs.decodeKey(c.key).id, pairs.decodeRow(c.row!).v]).sort()).toEqual([[1, 'three'], [2, 'one'], [3, 'two']])
    } finally {
      await swapped.close()
    }
  })

  it('upgrades a table captured by the row trigger of an earlier version: statement triggers instead, the old function gone, the store id and the log kept', async () => {
    await store.close()
    // the capture as the version before statement triggers installed it (whose log had a key a row, and no count of keys)
    await sql(db.url, `ALTER TABLE converge.changes DROP COLUMN n;
      DROP TRIGGER converge_capture_insert ON public.orders; DROP TRIGGER converge_capture_update ON public.orders; DROP TRIGGER converge_capture_delete ON public.orders;
      DROP FUNCTION converge.capture_statement_public_orders();
      CREATE OR REPLACE FUNCTION converge."capture_public_orders"() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (OLD."order_id" IS DISTINCT FROM NEW."order_id")) THEN
            INSERT INTO converge.changes (tbl, key, origin) VALUES ('public.orders', jsonb_build_object('order_id', OLD."order_id"::text), nullif(current_setting('converge.origin', true), ''));
          END IF;
          IF TG_OP <> 'DELETE' THEN
            INSERT INTO converge.changes (tbl, key, origin) VALUES ('public.orders', jsonb_build_object('order_id', NEW."order_id"::text), nullif(current_setting('converge.origin', true), ''));
          END IF;
          RETURN NULL;
        END $$;
      CREATE OR REPLACE TRIGGER converge_capture AFTER INSERT OR UPDATE OR DELETE ON public.orders FOR EACH ROW EXECUTE FUNCTION converge."capture_public_orders"();
      UPDATE converge.stores SET setup = 'the earlier version''s' WHERE tbl = 'public.orders'`)
    const id = store.id
    const since = (await sql(db.url, 'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xid')).rows[0].xid as string
    await sql(db.url, `INSERT INTO public.orders VALUES (1, 'c', 'r', 's', 1.5, 'EUR', 1, null, now()), (2, 'c', 'r', 's', 1.5, 'EUR', 1, null, now())`)
    expect((await sql(db.url, "SELECT count(*)::int AS n FROM converge.changes WHERE tbl = 'public.orders'")).rows[0].n, 'the old trigger logged its rows').toBe(2)

    store = new PgStore({ connectionString: db.url, table: 'public.orders', codec, pollMs: 200 })
    await store.open()
    expect(store.id).toBe(id)
    const { rows: triggers } = await sql(db.url, "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass AND NOT tgisinternal ORDER BY tgname")
    expect(triggers.map(t => t.tgname)).toEqual(['converge_capture_delete', 'converge_capture_insert', 'converge_capture_update', 'converge_notify'])
    expect((await sql(db.url, "SELECT to_regprocedure('converge.capture_public_orders()') IS NULL AS gone")).rows[0].gone).toBe(true)
    expect((await sql(db.url, "SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'converge.changes'::regclass AND attname = 'n' AND NOT attisdropped")).rows[0].n, 'the log counts keys again').toBe(1)
    await sql(db.url, 'UPDATE public.orders SET order_id = 3 WHERE order_id = 2')
    await sql(db.url, 'DELETE FROM public.orders WHERE order_id = 1')
    const got = await collect(store, Number(since) - 1, g => g.length >= 3)
    expect(got.map(b => b.changes.map(c => [Number(codec.decodeKey(c.key).order_id), c.row === null ? null : 'row']).sort())).toEqual([[[1, null], [2, null]], [[2, null], [3, 'row']], [[1, null]]])
    expect((await sql(db.url, `SELECT count(*)::int AS n FROM ${LOGGED_KEYS} l WHERE l.tbl = 'public.orders'`)).rows[0].n, 'each change logged once').toBe(2 + 2 + 1)
  })

  it('hands out whole transactions around the change log read limit (10,000 rows): one that ends at it, one past it, and several', async () => {
    const since = await store.lastSeq()
    const client = new pg.Client({ connectionString: db.url })
    await client.connect()
    const insert = async (from: number, count: number): Promise<void> => {
      await client.query(`INSERT INTO public.orders SELECT i, 'c', 'r', 's', 1.5, 'EUR', 1, null, now() FROM generate_series($1::bigint, $2::bigint) i`, [from, from + count - 1])
    }
    try {
      await insert(0, 10_000)
      await insert(20_000, 3)
      await insert(30_000, 10_001)
      await client.query('BEGIN')
      await insert(50_000, 4000)
      await client.query('UPDATE public.orders SET status = $1 WHERE order_id < 7000', ['both'])
      await client.query('COMMIT')
    } finally {
      await client.end()
    }
    const got = await collect(store, since, g => g.length >= 4)
    expect(got.map(b => b.changes.length)).toEqual([10_000, 3, 10_001, 11_000])
    expect(new Set(got.map(b => b.seq)).size).toBe(4)
    // a statement's keys are logged KEYS_PER_LOG_ROW a row, its last row holding the rest
    const counts = async (seq: number): Promise<number[]> => (await sql(db.url, "SELECT n FROM converge.changes WHERE tbl = 'public.orders' AND xid = $1::text::xid8", [String(seq)])).rows.map(r => r.n as number).sort((a, b) => b - a)
    const statement = (rows: number): number[] => [...Array<number>(Math.floor(rows / KEYS_PER_LOG_ROW)).fill(KEYS_PER_LOG_ROW), ...(rows % KEYS_PER_LOG_ROW === 0 ? [] : [rows % KEYS_PER_LOG_ROW])]
    expect(await counts(got[0]!.seq)).toEqual(statement(10_000))
    expect(await counts(got[1]!.seq)).toEqual([3])
    expect(await counts(got[2]!.seq)).toEqual(statement(10_001))
    expect(await counts(got[3]!.seq)).toEqual([...statement(4000), ...statement(7000)].sort((a, b) => b - a))
  }, 60_000)

  it('hands out transactions in xid order, not in the order of their ids as text (9 before 10), and one origin only when all its keys agree', async () => {
    await store.apply({ upserts: rows([1, 2, 3]), deletes: [] })
    // log rows as transactions 9 and 10 would have left them (written straight into the log: real ids are far past these)
    await sql(db.url, `INSERT INTO converge.changes (tbl, xid, key, origin) VALUES
      ('public.orders', '10', '{"order_id": 2}', 'converge'), ('public.orders', '10', '{"order_id": 3}', 'drift'),
      ('public.orders', '9', '{"order_id": 1}', 'converge'), ('public.orders', '9', '{"order_id": 4}', 'converge')`)
    const got = await collect(store, 8, g => g.length >= 2)
    expect(got.slice(0, 2).map(b => b.seq)).toEqual([9, 10])
    expect(got[0]!.changes.map(c => [hex(c.key), hex(c.row)])).toEqual([[hex(key(1)), hex(rows([1])[0])], [hex(key(4)), null]])
    expect(got[0]!.origin).toBe('converge')
    // written under two origins: the agent's own fix alone is never mixed with another writer's rows
    expect(got[1]!.origin).toBeUndefined()
    expect(got[1]!.changes.map(c => hex(c.key))).toEqual([hex(key(2)), hex(key(3))])
  })

  it('reads, writes and follows rows whose keys are awkward for SQL and for array literals', async () => {
    const awkward = ['', ' ', 'NULL', '"', '\\', '\\"', "'", '{', '}', ',', '$', '$k$', '$k', 'a$', '$k0$', 'tab\there', 'new\nline', '\\N', 'é 東京 🚀', ');DROP TABLE x;--']
    const keyed = new RowCodec({ version: 1, columns: [{ name: 'k', type: 'string' }, { name: 'at', type: 'timestamp' }, { name: 'n', type: 'integer' }, { name: 'v', type: 'string' }], primaryKey: ['k', 'at', 'n'], ignoreColumns: [] })
    await sql(db.url, 'CREATE TABLE public.awkward (k text, at timestamptz, n bigint, v text NOT NULL, PRIMARY KEY (k, at, n))')
    const single = new RowCodec({ version: 1, columns: [{ name: 'k', type: 'string' }, { name: 'v', type: 'string' }], primaryKey: ['k'], ignoreColumns: [] })
    await sql(db.url, 'CREATE TABLE public.awkward_single (k text PRIMARY KEY, v text NOT NULL)')
    // bytea keys: the capture logs them as '\\x…' text in the key's JSON, which the feed must turn back into bytes
    const bytesKeyed = new RowCodec({ version: 1, columns: [{ name: 'k', type: 'bytes' }, { name: 'd', type: 'decimal' }, { name: 'v', type: 'string' }], primaryKey: ['k', 'd'], ignoreColumns: [] })
    await sql(db.url, 'CREATE TABLE public.awkward_bytes (k bytea, d numeric, v text NOT NULL, PRIMARY KEY (k, d))')
    for (const [table, c, row] of [
      ['public.awkward', keyed, (k: string, i: number, v: string) => ({ k, at: Date.UTC(2026, 0, 1) + i, n: 2n ** 62n + BigInt(i), v })],
      ['public.awkward_single', single, (k: string, _i: number, v: string) => ({ k, v })],
      ['public.awkward_bytes', bytesKeyed, (k: string, i: number, v: string) => ({ k: new Uint8Array(Buffer.from(k)), d: `${i}.5`, v })]
    ] as const) {
      const awkwardStore = new PgStore({ connectionString: db.url, table, codec: c, pollMs: 200 })
      await awkwardStore.open()
      try {
        const since = await awkwardStore.lastSeq()
        const rows1 = awkward.map((k, i) => c.encodeRow(row(k, i, 'one')))
        const keys = rows1.map(r => c.keyOfEncodedRow(r))
        expect((await awkwardStore.apply({ upserts: rows1, deletes: [] })).before).toEqual(awkward.map(() => null))
        expect((await awkwardStore.get(keys)).map(hex)).toEqual(rows1.map(hex))
        const rows2 = awkward.map((k, i) => c.encodeRow(row(k, i, 'two')))
        const second = await awkwardStore.apply({ upserts: rows2.filter((_, i) => i % 2 === 0), deletes: keys.filter((_, i) => i % 2 === 1) })
        expect(second.before.map(hex)).toEqual([...rows1.filter((_, i) => i % 2 === 0), ...rows1.filter((_, i) => i % 2 === 1)].map(hex))
        const want = awkward.map((_, i) => (i % 2 === 0 ? hex(rows2[i]) : null))
        expect((await awkwardStore.get(keys)).map(hex)).toEqual(want)
        const scanned = new Map<string, string>()
        for await (const batch of awkwardStore.scan()) for (const r of batch) scanned.set(hex(r.key)!, hex(r.row)!)
        expect(keys.map(k => scanned.get(hex(k)!) ?? null)).toEqual(want)
        const got = await collect(awkwardStore, since, g => g.length >= 2)
        expect(got.map(b => b.changes.length)).toEqual([awkward.length, awkward.length])
        expect(got[1]!.changes.map(ch => [hex(ch.key), hex(ch.row)]).sort()).toEqual(keys.map((k, i) => [hex(k), want[i]]).sort())
      } finally {
        await awkwardStore.close()
      }
    }
  })

  it('names a column dropped under the open store and says to restart; nothing is written', async () => {
    await store.apply({ upserts: rows([1, 2]), deletes: [] })
    await sql(db.url, 'ALTER TABLE public.orders DROP COLUMN note')
    const changed = { code: 'CONVERGE_STORE_SCHEMA', message: expect.stringMatching(/^table public\.orders is not as the agent read it at start: column .*"note" does not exist; restart the agent/) }
    await expect(store.get([key(1)])).rejects.toMatchObject(changed)
    await expect(store.apply({ upserts: rows([3]), deletes: [key(1)] })).rejects.toMatchObject(changed)
    await expect(scanAll(store)).rejects.toMatchObject(changed)
    expect((await sql(db.url, 'SELECT count(*)::int AS n FROM public.orders')).rows[0].n).toBe(2)
  })

  it('names a missing column', async () => {
    await sql(db.url, 'ALTER TABLE public.orders DROP COLUMN note')
    const other = new PgStore({ connectionString: db.url, table: 'public.orders', codec })
    await expect(other.open()).rejects.toMatchObject({ code: 'CONVERGE_STORE_SCHEMA', message: expect.stringMatching(/no column "note"/) })
    await other.close()
  })

  it('keeps a digest index current from the change feed, writes behind its back included', async () => {
    await store.apply({ upserts: rows(Array.from({ length: 3000 }, (_, i) => i)), deletes: [] })
    const dir = await mkdtemp(join(tmpdir(), 'converge-pg-index-'))
    const state = new StateDb(dir)
    await state.open()
    const index = new DigestIndex({ dataset: 'orders', codec, store, state })
    try {
      await index.start()
      const truth = async (): Promise<MemoryReplica> => { const all: Uint8Array[] = []; for await (const b of store.scan()) for (const r of b) all.push(r.row); return new MemoryReplica(codec, all) }
      expect(index.tree.root).toEqual((await truth()).tree.root)
      await sql(db.url, "UPDATE public.orders SET status = 'void' WHERE order_id < 50")
      await sql(db.url, 'DELETE FROM public.orders WHERE order_id BETWEEN 100 AND 120')
      await index.catchUp()
      const want = await truth()
      expect(want.tree.rowCount).toBe(2979)
      expect(index.tree.root).toEqual(want.tree.root)
      expect((await index.list(1, 5)).map(e => hex(e.key))).toEqual((await want.list(1, 5)).map(e => hex(e.key)))
    } finally {
      await index.stop()
      await state.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('reads a dataset schema from the catalog that fingerprints like the hand-written one', async () => {
    const read = await readCatalogSchema(db.url, 'public.orders')
    expect(read.primaryKey).toEqual(['order_id'])
    expect(read.columns.map(c => [c.name, c.type])).toEqual(ORDERS_SCHEMA.columns.map(c => [c.name, c.type]))
    expect(read.columns.find(c => c.name === 'note')!.nullable).toBe(true)
    expect(read.columns.find(c => c.name === 'status')!.nullable).toBe(false)
    // timestamptz holds microseconds: read as such, it fingerprints like the hand-written schema saying so
    expect(read.columns.find(c => c.name === 'updated_at')!.precision).toBe('us')
    const micros = { ...ORDERS_SCHEMA, columns: ORDERS_SCHEMA.columns.map(c => c.name === 'updated_at' ? { ...c, precision: 'us' as const } : c) }
    expect(new RowCodec({ ...read, version: 1, ignoreColumns: [] }).fingerprint).toBe(new RowCodec(micros).fingerprint)
    expect(new RowCodec(micros).fingerprint).not.toBe(codec.fingerprint)
    // declared with at most three fraction digits (or a date), a time column is read in milliseconds
    await sql(db.url, 'CREATE TABLE public.coarse (id int PRIMARY KEY, at timestamptz(3), plain timestamp(0), day date, fine timestamp(4))')
    const coarse = await readCatalogSchema(db.url, 'public.coarse')
    expect(coarse.columns.map(c => [c.name, c.precision])).toEqual([['id', undefined], ['at', undefined], ['plain', undefined], ['day', undefined], ['fine', 'us']])
    await sql(db.url, 'CREATE TABLE public.odd (id int PRIMARY KEY, spot point)')
    await expect(readCatalogSchema(db.url, 'public.odd')).rejects.toThrow(/column "spot" has type point/)
    await sql(db.url, 'CREATE TABLE public.keyless (id int)')
    await expect(readCatalogSchema(db.url, 'public.keyless')).rejects.toMatchObject({ code: 'CONVERGE_STORE_SCHEMA', message: expect.stringMatching(/no primary key/) })
  })

  it('fixes and scans under backends terminated every few milliseconds: each fails or lands whole, the process lives on', async () => {
    await store.apply({ upserts: rows(Array.from({ length: 2000 }, (_, i) => i)), deletes: [] })
    let stop = false
    let terminated = 0
    const killer = (async () => {
      // at uneven pauses, so that connections die at every step of a fix and of a scan, and some fixes go through
      for (let i = 0; !stop; i++) {
        const { rows: killed } = await sql(PG_ADMIN_URL, 'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name])
        terminated += killed.length
        await new Promise(resolve => setTimeout(resolve, [5, 40, 150][i % 3]))
      }
    })()
    const outcomes = { landed: 0, failed: 0, scans: 0, scansFailed: 0 }
    const deadline = Date.now() + 3000
    let rev = 1
    while (Date.now() < deadline) {
      const fix = rows(Array.from({ length: 2000 }, (_, i) => i), rev)
      try {
        await store.apply({ upserts: fix, deletes: [] })
        outcomes.landed++
      } catch {
        outcomes.failed++
      }
      try { for await (const batch of store.scan({ batchSize: 100 })) { void batch; await new Promise(resolve => setImmediate(resolve)) } outcomes.scans++ } catch { outcomes.scansFailed++ }
      rev++
    }
    stop = true
    await killer
    expect(terminated).toBeGreaterThan(0)
    expect(outcomes.failed + outcomes.scansFailed).toBeGreaterThan(0)
    // one transaction per fix: the table holds a single revision, whichever fix landed last, never a mix
    const now = await scanAll(store)
    expect(now.size).toBe(2000)
    const revisions = new Set([...now.values()].map(r => {
      const row = codec.decodeRow(Buffer.from(r, 'hex'))
      return (Number(row.updated_at) - Number(orderRow(Number(row.order_id), 0).updated_at)) / 60_000
    }))
    expect(revisions.size).toBe(1)
    // and the pool hands out working connections again
    await store.apply({ upserts: rows([1], 999), deletes: [] })
    expect(codec.decodeRow((await store.get([key(1)]))[0]!).status).toBe(orderRow(1, 999).status)
  })

  it('an abort cancels a statement waiting on a lock: the fix rolls back at once, writes nothing, and the store works on', async () => {
    await store.apply({ upserts: rows([1]), deletes: [] })
    const holder = new pg.Client({ connectionString: db.url })
    await holder.connect()
    try {
      await holder.query('BEGIN')
      await holder.query('LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE')
      const controller = new AbortController()
      const applying = store.apply({ upserts: rows([1, 2], 1), deletes: [] }, { signal: controller.signal })
      applying.catch(() => undefined)
      // the fix's statement is on the server, waiting for the lock
      await vi.waitFor(async () => {
        const { rows: waiting } = await sql(PG_ADMIN_URL, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", [db.name])
        expect(waiting[0].n).toBe(1)
      }, { timeout: 5000 })
      const t = Date.now()
      controller.abort()
      await expect(applying).rejects.toMatchObject({ code: 'CONVERGE_ABORTED' })
      expect(Date.now() - t).toBeLessThan(3000)
      // nothing of it waits on the server any more, while the lock is still held
      const { rows: left } = await sql(PG_ADMIN_URL, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", [db.name])
      expect(left[0].n).toBe(0)
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined)
      await holder.end()
    }
    // not written, and the store goes on (its pool did not keep the cancelled connection)
    expect((await store.get([key(1), key(2)])).map(hex)).toEqual([hex(rows([1])[0]), null])
    await store.apply({ upserts: rows([2]), deletes: [] })
    expect(await store.countRows()).toBe(2)
  })

  it('keeps delivering changes after its connections are killed (pg_terminate_backend)', async () => {
    const since = await store.lastSeq()
    const got: ChangeBatch[] = []
    const controller = new AbortController()
    const feed = (async () => {
      try { for await (const batch of store.changes({ since, signal: controller.signal })) got.push(batch) } catch (err) { if (!controller.signal.aborted) throw err }
    })()
    await store.apply({ upserts: rows([1]), deletes: [] })
    await vi.waitFor(() => { expect(got.length).toBe(1) }, { timeout: 5000 })
    // every connection to this database goes, the feed's LISTEN connection and the pool's included
    await sql(PG_ADMIN_URL, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name])
    await new Promise(resolve => setTimeout(resolve, 200))
    await sql(db.url, "UPDATE public.orders SET status = 'after the cut' WHERE order_id = 1")
    await vi.waitFor(() => { expect(got.length).toBe(2) }, { timeout: 10_000 })
    expect(codec.decodeRow(got[1]!.changes[0]!.row!).status).toBe('after the cut')
    controller.abort()
    await feed
  })
})

/** The role an agent connects as: what it may not do, the error says, and what it needs suffices. */
describe('PostgreSQL store set up by a role of its own (real server)', () => {
  const role = `converge_test_role_${randomBytes(4).toString('hex')}`
  let db: Awaited<ReturnType<typeof createDatabase>>
  const asRole = (): string => { const url = new URL(db.url); url.username = role; return url.toString() }

  beforeEach(async () => {
    db = await createDatabase()
    await sql(PG_ADMIN_URL, `CREATE ROLE ${role} LOGIN`)
    await sql(db.url, ORDERS_DDL)
    // an application's role: it reads and writes the table, and may create nothing (PostgreSQL 15 lets no one create in public by default)
    await sql(db.url, `GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO ${role}; REVOKE CREATE ON SCHEMA public FROM PUBLIC`)
  })
  afterEach(async () => {
    await db.drop()
    await sql(PG_ADMIN_URL, `DROP ROLE IF EXISTS ${role}`)
  })

  it('says what the role lacks when it may not set up change capture, and creates nothing', async () => {
    const store = new PgStore({ connectionString: asRole(), table: 'public.orders', codec })
    await expect(store.open()).rejects.toMatchObject({
      code: 'CONVERGE_STORE_SETUP',
      message: expect.stringMatching(/^cannot set up change capture for public\.orders: permission denied for database .*The agent's role must be allowed to create the schema converge \(CREATE on the database.*and TRIGGER on public\.orders \(owning it gives that\)/) as string
    })
    await store.close()
    expect((await sql(db.url, "SELECT to_regnamespace('converge') IS NULL AS none")).rows[0].none).toBe(true)
    // reading is all a diff needs
    const reader = new PgStore({ connectionString: asRole(), table: 'public.orders', codec })
    await reader.open({ readOnly: true })
    expect(await reader.countRows()).toBe(0)
    await reader.close()
  })

  it('reports a server out of connections for its role as unavailable, naming the table', async () => {
    await sql(db.url, `GRANT CREATE ON DATABASE ${db.name} TO ${role}; GRANT TRIGGER ON public.orders TO ${role}`)
    const store = new PgStore({ connectionString: asRole(), table: 'public.orders', codec })
    await store.open()
    try {
      // the role may hold the one connection its pool already has, no more: a read in parts side by side needs more
      await sql(PG_ADMIN_URL, `ALTER ROLE ${role} CONNECTION LIMIT 1`)
      const keys = Array.from({ length: 30_000 }, (_, id) => key(id))
      await expect(store.get(keys)).rejects.toMatchObject({
        code: 'CONVERGE_STORE_UNAVAILABLE',
        message: expect.stringMatching(/^PostgreSQL is unavailable for public\.orders: too many connections for role/) as string
      })
    } finally {
      await store.close()
    }
  })

  it('sets up and captures with what the error names: CREATE on the database and TRIGGER on the table', async () => {
    await sql(db.url, `GRANT CREATE ON DATABASE ${db.name} TO ${role}; GRANT TRIGGER ON public.orders TO ${role}`)
    const store = new PgStore({ connectionString: asRole(), table: 'public.orders', codec })
    await store.open()
    try {
      const since = await store.lastSeq()
      await store.apply({ upserts: [codec.encodeRow(orderRow(1))], deletes: [] })
      const controller = new AbortController()
      for await (const batch of store.changes({ since, signal: controller.signal })) { expect(batch.changes.length).toBe(1); break }
    } finally {
      await store.close()
    }
  })
})
