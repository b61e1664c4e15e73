/**
 * The PostgreSQL store when its server crashes and comes back: on a server
 * of the test's own (cluster/private-postgres.ts), since the machine's
 * shared one serves every other test. While the server is down every
 * operation fails with CONVERGE_STORE_UNAVAILABLE naming the table, not the
 * driver's bare socket error; once it is back the same store works again
 * without being reopened, and its change feed listens again (it does not
 * fall back to polling for good).
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { orderRow, ordersCodec as codec } from '../../cluster/orders.ts'
import { serverBinaries, startPrivatePostgres, type PrivatePostgres } from '../../cluster/private-postgres.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import type { ChangeBatch } from '../../src/stores/replica-store.ts'
import { ORDERS_DDL } from '../helpers/postgres.ts'

const key = (id: number): Uint8Array => codec.encodeKey({ order_id: id })

async function adminSql (url: string, text: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try { return await c.query(text) } finally { await c.end() }
}

/** The next feed batch, or undefined when none came within `ms`. */
async function nextBatch (feed: AsyncIterator<ChangeBatch>, ms: number): Promise<ChangeBatch | undefined> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<undefined>(resolve => { timer = setTimeout(() => resolve(undefined), ms) })
  try {
    const next = await Promise.race([feed.next(), timeout])
    return next === undefined || next.done === true ? undefined : next.value
  } finally {
    clearTimeout(timer)
  }
}

/** PostgreSQL's initdb and pg_ctl: without them (a server elsewhere) this is skipped, except in CI (CI=true), where it must run. */
const canMakeServers = await serverBinaries() !== undefined || process.env.CI === 'true'

describe.skipIf(!canMakeServers)('PostgreSQL store across a crash of its server', () => {
  let server: PrivatePostgres
  let url: string

  beforeAll(async () => {
    server = await startPrivatePostgres('store-test')
    await adminSql(server.adminUrl, 'CREATE DATABASE crash_test')
    url = server.adminUrl.replace(/\/postgres$/, '/crash_test')
    await adminSql(url, ORDERS_DDL)
  }, 60_000)
  afterAll(async () => { await server?.remove() }, 60_000)

  it('reports the server gone as unavailable, works again once it is back, and its change feed goes on', async () => {
    // a poll far longer than the test: a change seen in time was seen through LISTEN
    const store = new PgStore({ connectionString: url, table: 'public.orders', codec, pollMs: 60_000 })
    await store.open()
    const controller = new AbortController()
    const feeds: Array<AsyncIterator<ChangeBatch>> = []
    try {
      await store.apply({ upserts: [codec.encodeRow(orderRow(1, 0))], deletes: [] })
      feeds.push(store.changes({ since: 0, signal: controller.signal })[Symbol.asyncIterator]())
      const feed = feeds[0]!
      expect((await nextBatch(feed, 10_000))?.changes).toHaveLength(1)
      // waiting on its LISTEN connection (the poll is a minute away)
      const waiting = nextBatch(feed, 30_000)
      await new Promise(resolve => setTimeout(resolve, 200))

      await server.crash()
      for (const op of [async () => await store.get([key(1)]), async () => await store.apply({ upserts: [codec.encodeRow(orderRow(2, 0))], deletes: [] }), async () => await store.countRows()]) {
        const err = await op().then(() => undefined, (e: unknown) => e)
        expect(err).toMatchObject({ code: 'CONVERGE_STORE_UNAVAILABLE' })
        expect((err as Error).message).toMatch(/^PostgreSQL is unavailable for public\.orders: /)
      }
      await new Promise(resolve => setTimeout(resolve, 1000))
      await server.start()
      // the same store, not reopened: its pool connects anew
      expect(await store.countRows()).toBe(1)
      // and the same feed, still waiting: it listens again by itself, and the next change wakes it long before its poll
      const t = Date.now()
      await store.apply({ upserts: [codec.encodeRow(orderRow(3, 0))], deletes: [] })
      const seen = await waiting
      expect(seen?.changes).toHaveLength(1)
      expect(Date.now() - t).toBeLessThan(15_000)
    } finally {
      controller.abort()
      // a feed ends (and drops its LISTEN connection) when its consumer returns it
      for (const f of feeds) await f.return?.(undefined).catch(() => undefined)
      await store.close()
    }
  }, 60_000)

  it('listens again when only its LISTEN connection is cut, instead of polling for good', async () => {
    const store = new PgStore({ connectionString: url, table: 'public.orders', codec, pollMs: 60_000 })
    await store.open()
    const controller = new AbortController()
    const feeds: Array<AsyncIterator<ChangeBatch>> = []
    try {
      const since = await store.lastSeq()
      feeds.push(store.changes({ since, signal: controller.signal })[Symbol.asyncIterator]())
      const feed = feeds[0]!
      const first = nextBatch(feed, 20_000)
      // the feed is waiting on its LISTEN connection: cut that one alone
      let cut = 0
      for (let tries = 0; tries < 50 && cut === 0; tries++) {
        await new Promise(resolve => setTimeout(resolve, 100))
        cut = (await adminSql(url, "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN converge_changes'")).rows[0].n
      }
      expect(cut).toBe(1)
      await new Promise(resolve => setTimeout(resolve, 300))
      await store.apply({ upserts: [codec.encodeRow(orderRow(4, 0))], deletes: [] })
      const t = Date.now()
      const batch = await first
      expect(batch?.changes).toHaveLength(1)
      expect(Date.now() - t).toBeLessThan(10_000)
      // and the new LISTEN connection is there to wake the next change
      const next = nextBatch(feed, 20_000)
      await new Promise(resolve => setTimeout(resolve, 300))
      await store.apply({ upserts: [codec.encodeRow(orderRow(5, 0))], deletes: [] })
      expect((await next)?.changes).toHaveLength(1)
      const listening = (await adminSql(url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN converge_changes'")).rows[0].n
      expect(listening).toBe(1)
    } finally {
      controller.abort()
      // a feed ends (and drops its LISTEN connection) when its consumer returns it
      for (const f of feeds) await f.return?.(undefined).catch(() => undefined)
      await store.close()
    }
  }, 60_000)
})
