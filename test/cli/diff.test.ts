import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PgStore } from '../../src/stores/pg-store.ts'
import { SqliteStore } from '../../src/stores/sqlite-store.ts'
import { ORDERS_SCHEMA, orderRow, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import { converge } from '../helpers/cli.ts'
import { tempDir } from '../helpers/agents.ts'
import { createDatabase, ORDERS_DDL, sql } from '../helpers/postgres.ts'

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

  it('exits 2 on a store it cannot name', async () => {
    const r = await converge(['diff', '--schema', schemaFile, '--left', left, '--right', 'mysql://x/y'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/is not level:PATH, sqlite:PATH#TABLE or postgres/)
  })
})
