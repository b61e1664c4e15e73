import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { orderRow, ORDERS_SCHEMA, ordersCodec as codec } from '../../cluster/orders.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import { SqliteStore } from '../../src/stores/sqlite-store.ts'
import { converge } from '../helpers/cli.ts'
import { createDatabase, ORDERS_DDL, sql } from '../helpers/postgres.ts'

describe('converge capture remove (a real child process)', () => {
  let dir: string
  let db: Awaited<ReturnType<typeof createDatabase>>
  let config: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'converge-capture-cli-'))
    db = await createDatabase()
    await sql(db.url, ORDERS_DDL)
    const pgStore = new PgStore({ connectionString: db.url, table: 'public.orders', codec })
    const edge = new SqliteStore({ path: join(dir, 'edge.db'), table: 'orders', codec, createTable: true })
    for (const store of [pgStore, edge]) {
      await store.open()
      await store.apply({ upserts: [codec.encodeRow(orderRow(1))], deletes: [] })
      await store.close()
    }
    config = join(dir, 'agent.json')
    const schema = { columns: ORDERS_SCHEMA.columns, primaryKey: ORDERS_SCHEMA.primaryKey }
    await writeFile(config, JSON.stringify({
      cluster: 'shop', region: 'eu-west', dataDir: join(dir, 'data'), peers: [{ region: 'us-east', address: '/ip4/127.0.0.1/tcp/7000' }],
      datasets: [
        { name: 'orders', sourceOfTruth: ['us-east'], schema, store: { kind: 'postgres', connectionString: db.url, table: 'public.orders' } },
        { name: 'edge', sourceOfTruth: ['us-east'], schema, store: { kind: 'sqlite', path: join(dir, 'edge.db'), table: 'orders' } },
        { name: 'local', sourceOfTruth: ['us-east'], schema, store: { kind: 'level', path: join(dir, 'local') } }
      ]
    }))
  })
  afterAll(async () => {
    await db.drop()
    await rm(dir, { recursive: true, force: true })
  })

  it('refuses while the agent holds its data directory, and names an unknown dataset', async () => {
    const state = new StateDb(join(dir, 'data', 'state'))
    await state.open()
    try {
      const running = await converge(['capture', 'remove', '--config', config])
      expect(running.code).toBe(1)
      expect(running.stderr).toContain('CONVERGE_AGENT_RUNNING')
    } finally {
      await state.close()
    }
    const unknown = await converge(['capture', 'remove', '--config', config, '--dataset', 'nope'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/has no dataset "nope" \(it has orders, edge, local\)/)
    // nothing was removed meanwhile
    expect((await sql(db.url, "SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass AND starts_with(tgname, 'converge_')")).rows[0].n).toBe(4)
  })

  it('removes the capture of each dataset\'s table once the agent is stopped, and says what it took', async () => {
    const r = await converge(['capture', 'remove', '--config', config])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^orders: removed from public\.orders: trigger converge_capture_delete on public\.orders, .*, schema converge; 1 logged changes dropped with the log$/)
    expect(lines[1]).toMatch(/^edge: removed from .*edge\.db#orders: trigger converge_orders_insert, .*, table converge_meta_orders; 1 logged changes dropped with the log$/)
    expect(lines[2]).toMatch(/^local: a LevelDB store \(.*local\) has no change capture to remove$/)
    expect((await sql(db.url, 'SELECT count(*)::int AS n FROM public.orders')).rows[0].n).toBe(1)
    const again = await converge(['capture', 'remove', '--config', config, '--dataset', 'orders'])
    expect(again.stdout).toBe('orders: public.orders had no change capture\n')
  })
})
