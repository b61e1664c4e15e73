/**
 * Taking converge's change capture off a table (`converge capture remove`):
 * the triggers, functions and change log go, the rows stay, other captured
 * tables keep theirs, and an agent's store set up again on the table starts
 * over under a new store id.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { orderRow, ordersCodec as codec } from '../../cluster/orders.ts'
import { PgStore, removePgCapture } from '../../src/stores/pg-store.ts'
import { removeSqliteCapture, SqliteStore } from '../../src/stores/sqlite-store.ts'
import { createDatabase, LOGGED_KEYS, ORDERS_DDL, sql } from '../helpers/postgres.ts'

const rows = (ids: number[], rev = 0): Uint8Array[] => ids.map(id => codec.encodeRow(orderRow(id, rev)))

describe('removing the change capture of a PostgreSQL table', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>
  const captureTriggers = async (table: string): Promise<string[]> =>
    (await sql(db.url, "SELECT tgname::text AS name FROM pg_trigger WHERE tgrelid = $1::regclass AND starts_with(tgname, 'converge_') ORDER BY 1", [table])).rows.map((r: { name: string }) => r.name)
  const schemaExists = async (): Promise<boolean> => (await sql(db.url, "SELECT to_regnamespace('converge') IS NOT NULL AS present")).rows[0].present

  beforeEach(async () => {
    db = await createDatabase()
    await sql(db.url, ORDERS_DDL)
    await sql(db.url, ORDERS_DDL.replace('public.orders', 'public.orders_archive'))
  })
  afterEach(async () => { await db.drop() })

  async function captured (table: string, ids: number[]): Promise<string> {
    const store = new PgStore({ connectionString: db.url, table, codec })
    await store.open()
    try {
      await store.apply({ upserts: rows(ids), deletes: [] })
      return store.id
    } finally {
      await store.close()
    }
  }

  it('drops the triggers, functions and logged changes of one table, leaves its rows and the other table\'s capture, and the schema goes with the last', async () => {
    const firstId = await captured('public.orders', [1, 2, 3])
    await captured('public.orders_archive', [7])
    expect(await captureTriggers('public.orders')).toEqual(['converge_capture_delete', 'converge_capture_insert', 'converge_capture_update', 'converge_notify'])

    const removed = await removePgCapture(db.url, 'public.orders')
    expect(removed.pendingChanges).toBe(3)
    expect(removed.dropped).toEqual([
      'trigger converge_capture_delete on public.orders', 'trigger converge_capture_insert on public.orders', 'trigger converge_capture_update on public.orders',
      'trigger converge_notify on public.orders', 'function converge."capture_statement_public_orders"'
    ])
    expect(await captureTriggers('public.orders')).toEqual([])
    expect((await sql(db.url, 'SELECT count(*)::int AS n FROM public.orders')).rows[0].n).toBe(3)
    // the other table is still captured: a write to it is logged
    expect(await captureTriggers('public.orders_archive')).toHaveLength(4)
    await sql(db.url, "UPDATE public.orders_archive SET status = 'x'")
    expect((await sql(db.url, `SELECT count(*)::int AS n FROM ${LOGGED_KEYS} l WHERE l.tbl = 'public.orders_archive'`)).rows[0].n).toBe(2)
    // nothing left to remove the second time
    expect(await removePgCapture(db.url, 'public.orders')).toEqual({ dropped: [], pendingChanges: 0 })

    const last = await removePgCapture(db.url, 'public.orders_archive')
    expect(last.dropped.at(-1)).toBe('schema converge')
    expect(last.pendingChanges).toBe(2)
    expect(await schemaExists()).toBe(false)

    // set up again, the store is another one: an agent's index of it rebuilds from a scan
    expect(await captured('public.orders', [4])).not.toBe(firstId)
    expect(await captureTriggers('public.orders')).toHaveLength(4)
  })

  it('works on a table that is gone, and on a database converge never touched', async () => {
    expect(await removePgCapture(db.url, 'public.orders')).toEqual({ dropped: [], pendingChanges: 0 })
    await captured('public.orders', [1])
    await sql(db.url, 'DROP TABLE public.orders')
    expect(await removePgCapture(db.url, 'public.orders')).toEqual({ dropped: ['function converge."capture_statement_public_orders"', 'schema converge'], pendingChanges: 1 })
  })

  it('names the server it cannot reach', async () => {
    await expect(removePgCapture('postgres://postgres@127.0.0.1:1/none', 'public.orders')).rejects.toMatchObject({ code: 'CONVERGE_STORE_UNAVAILABLE' })
  })
})

describe('removing the change capture of a SQLite table', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'converge-capture-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('drops the triggers, the change log and the meta table, and leaves the rows', async () => {
    const path = join(dir, 'edge.db')
    const store = new SqliteStore({ path, table: 'orders', codec, createTable: true })
    await store.open()
    await store.apply({ upserts: rows([1, 2]), deletes: [] })
    const firstId = store.id
    await store.close()

    const removed = removeSqliteCapture(path, 'orders')
    expect(removed).toEqual({
      dropped: ['trigger converge_orders_insert', 'trigger converge_orders_update', 'trigger converge_orders_delete', 'table converge_changes_orders', 'table converge_meta_orders'],
      pendingChanges: 2
    })
    const db = new DatabaseSync(path)
    try {
      expect((db.prepare("SELECT name FROM sqlite_master WHERE name LIKE 'converge%'").all())).toEqual([])
      expect({ ...db.prepare('SELECT count(*) AS n FROM orders').get() }).toEqual({ n: 2 })
    } finally {
      db.close()
    }
    expect(removeSqliteCapture(path, 'orders')).toEqual({ dropped: [], pendingChanges: 0 })

    const again = new SqliteStore({ path, table: 'orders', codec })
    await again.open()
    expect(again.id).not.toBe(firstId)
    await again.close()
  })

  it('names a file that is not there', () => {
    expect(() => removeSqliteCapture(join(dir, 'none.db'), 'orders')).toThrow(expect.objectContaining({ code: 'CONVERGE_STORE_UNAVAILABLE' }))
  })
})
