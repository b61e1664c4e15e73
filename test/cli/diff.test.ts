import { createHash } from 'node:crypto'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { stringify } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PgStore } from '../../src/stores/pg-store.ts'
import { SqliteStore } from '../../src/stores/sqlite-store.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { ORDERS_SCHEMA, orderRow, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import { converge } from '../helpers/cli.ts'
import { tempDir } from '../helpers/agents.ts'
import { createDatabase, LOGGED_KEYS, ORDERS_DDL, sql } from '../helpers/postgres.ts'

describe('converge diff (real PostgreSQL and SQLite, child process)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let db: Awaited<ReturnType<typeof createDatabase>>
  let schemaFile: string
  let left: string
  let right: string

  beforeAll(async () => {
    dir = await tempDir()
    db = await createDatabase()
    await sql(db.url, ORDERS_DDL)
    const pgStore = new PgStore({ connectionString: db.url, table: 'public.orders', codec })
    await pgStore.open(); await seedOrders(pgStore, 0, 2000); await pgStore.close()
    const lite = new SqliteStore({ path: join(dir.path, 'edge.db'), table: 'orders', codec, createTable: true })
    await lite.open()
    await seedOrders(lite, 0, 2000)
    await lite.apply({ upserts: [codec.encodeRow(orderRow(7, 1)), codec.encodeRow(orderRow(5000))], deletes: [codec.encodeKey({ order_id: 9 })] })
    await lite.close()
    schemaFile = join(dir.path, 'orders.yaml')
    await writeFile(schemaFile, stringify(ORDERS_SCHEMA))
    left = `${db.url}#public.orders`
    right = `sqlite:${join(dir.path, 'edge.db')}#orders`
  })
  afterAll(async () => { await db.drop(); await dir.remove() })

  it('prints the differing rows, +/- style, and exits 1', async () => {
    const r = await converge(['diff', '--schema', schemaFile, '--left', left, '--right', right])
    expect(r.stderr).not.toMatch(/Error/)
    expect(r.code).toBe(1)
    const lines = r.stdout.trim().split('\n')
    expect(lines.at(-1)).toBe('3 rows differ: 1 changed, 1 only in left, 1 only in right')
    expect(lines.filter(l => l.startsWith('- ')).map(l => JSON.parse(l.slice(2)).order_id).sort()).toEqual([5000, 7])
    expect(lines.filter(l => l.startsWith('+ ')).map(l => JSON.parse(l.slice(2)).order_id).sort()).toEqual([7, 9])
  })

  it('prints JSON with --json, without the connection credentials', async () => {
    const r = await converge(['diff', '--schema', schemaFile, '--left', left, '--right', right, '--json'])
    const report = JSON.parse(r.stdout)
    expect(report.counts).toEqual({ onlyLeft: 1, onlyRight: 1, changed: 1 })
    expect(report.changed[0].left.order_id).toBe(7)
    expect(report.changed[0].right.status).not.toBe(report.changed[0].left.status)
    expect(report.left).not.toMatch(/postgres@/)
  })

  it('exits 0 when the stores agree', async () => {
    const r = await converge(['diff', '--schema', schemaFile, '--left', left, '--right', left])
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe('no differences')
  })

  it('exits 1 on a table that is not there, at once: the failed open leaves no connection to keep it running', async () => {
    const r = await converge(['diff', '--schema', schemaFile, '--left', `${db.url}#public.no_such_table`, '--right', right])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/table public\.no_such_table does not exist \[CONVERGE_STORE_SCHEMA\]/)
  }, 20_000)

  it('exits 2 on a store it cannot name', async () => {
    const r = await converge(['diff', '--schema', schemaFile, '--left', left, '--right', 'mysql://x/y'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/is not level:PATH, sqlite:PATH#TABLE or postgres/)
  })
})

/**
 * A diff reads: it is run beside agents that follow these stores' change
 * logs, and against databases no agent has set up. It installs no change
 * capture, creates nothing, and leaves every change log as it was.
 */
describe('converge diff leaves the stores as they were (real PostgreSQL, SQLite and LevelDB, child process)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let schemaFile: string
  beforeAll(async () => {
    dir = await tempDir()
    schemaFile = join(dir.path, 'orders.yaml')
    await writeFile(schemaFile, stringify(ORDERS_SCHEMA))
  })
  afterAll(async () => { await dir.remove() })

  const diff = async (left: string, right: string): Promise<Awaited<ReturnType<typeof converge>>> => await converge(['diff', '--schema', schemaFile, '--left', left, '--right', right])

  it('installs no change capture in a PostgreSQL database no agent has set up', async () => {
    const db = await createDatabase()
    try {
      await sql(db.url, ORDERS_DDL)
      await sql(db.url, `INSERT INTO public.orders SELECT g, 'c' || g, 'eu', 'open', 10.5, 'EUR', 1, NULL, '2026-01-01T00:00:00Z' FROM generate_series(1, 300) g`)
      const r = await diff(`${db.url}#public.orders`, `${db.url}#public.orders`)
      expect(r.stderr).toBe('')
      expect(r.stdout.trim()).toBe('no differences')
      expect(r.code).toBe(0)
      const { rows: [found] } = await sql(db.url, `SELECT to_regnamespace('converge') IS NOT NULL AS schema,
        (SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass AND NOT tgisinternal) AS triggers`)
      expect(found).toEqual({ schema: false, triggers: 0 })
    } finally {
      await db.drop()
    }
  })

  it("leaves an agent's PostgreSQL change log as it was: nothing trimmed that its agent has not read", async () => {
    const db = await createDatabase()
    const store = new PgStore({ connectionString: db.url, table: 'public.orders', codec })
    try {
      await sql(db.url, ORDERS_DDL)
      await store.open()
      await seedOrders(store, 0, 500, 100)
      const log = async (): Promise<unknown> => (await sql(db.url, `SELECT count(*)::int AS entries, (SELECT trimmed::text FROM converge.stores) AS trimmed FROM ${LOGGED_KEYS} l`)).rows[0]
      const before = await log()
      expect(before).toMatchObject({ entries: 500, trimmed: '0' })
      const r = await diff(`${db.url}#public.orders`, `${db.url}#public.orders`)
      expect(r.stdout.trim()).toBe('no differences')
      expect(await log(), 'the change log after the diff').toEqual(before)
      // and the agent's feed still starts where it was: every seeded change comes
      const controller = new AbortController()
      let changes = 0
      for await (const batch of store.changes({ since: 0, signal: controller.signal })) { changes += batch.changes.length; if (changes >= 500) break }
      expect(changes).toBe(500)
    } finally {
      await store.close()
      await db.drop()
    }
  })

  it('creates nothing in a SQLite file: no change log, no triggers, the same bytes', async () => {
    const seeded = join(dir.path, 'seeded.db')
    const lite = new SqliteStore({ path: seeded, table: 'orders', codec, createTable: true })
    await lite.open(); await seedOrders(lite, 0, 200); await lite.close()
    // an application's own file: the table alone, as plain SQL made it
    const plain = join(dir.path, 'plain.db')
    const db = new DatabaseSync(plain)
    db.exec(`ATTACH DATABASE '${seeded}' AS s`)
    const { sql: ddl } = db.prepare("SELECT sql FROM s.sqlite_master WHERE type = 'table' AND name = 'orders'").get() as { sql: string }
    db.exec(ddl)
    db.exec('INSERT INTO main.orders SELECT * FROM s.orders')
    db.exec('DETACH DATABASE s')
    db.close()
    const digest = async (): Promise<string> => createHash('sha256').update(await readFile(plain)).digest('hex')
    const names = (): string[] => {
      const check = new DatabaseSync(plain, { readOnly: true })
      try { return (check.prepare('SELECT name FROM sqlite_master ORDER BY name').all() as Array<{ name: string }>).map(r => r.name) } finally { check.close() }
    }
    const bytes = await digest()
    const before = names()
    expect(before).toContain('orders')
    const r = await diff(`sqlite:${plain}#orders`, `sqlite:${plain}#orders`)
    expect(r.stderr).not.toMatch(/Error/)
    expect(r.stdout.trim()).toBe('no differences')
    expect(await digest(), 'the file byte for byte').toBe(bytes)
    expect(names(), 'tables, indexes and triggers').toEqual(before)
    await expect(stat(`${plain}-wal`), 'not switched to WAL').rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('refuses a SQLite file or LevelDB store that is not there, and creates none', async () => {
    const missing = join(dir.path, 'typo.db')
    const r = await diff(`sqlite:${missing}#orders`, `sqlite:${missing}#orders`)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/cannot open SQLite database .*typo\.db read-only: .*\[CONVERGE_STORE_UNAVAILABLE\]/)
    await expect(stat(missing)).rejects.toMatchObject({ code: 'ENOENT' })
    const gone = join(dir.path, 'no-such-store')
    const l = await diff(`level:${gone}`, `level:${gone}`)
    expect(l.code).toBe(1)
    expect(l.stderr).toMatch(/cannot open LevelDB store .*no-such-store: .*does not exist/)
    await expect(stat(gone)).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('says a LevelDB store is open elsewhere (an agent on it) instead of a bare lock error', async () => {
    const path = join(dir.path, 'held')
    const store = new LevelStore({ path, codec })
    await store.open()
    try {
      await seedOrders(store, 0, 50)
      const r = await diff(`level:${path}`, `level:${path}`)
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/cannot open LevelDB store .*held: it is already open \(an agent running on it\?\)/)
    } finally {
      await store.close()
    }
  })
})
