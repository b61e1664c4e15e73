/**
 * Asking by key when the source cannot answer: a key that is valid under the
 * schema (integers go up to 2^64 - 1, which LevelDB holds) but that the
 * source's store cannot hold (SQLite's and PostgreSQL's signed 64-bit
 * integers) makes the source's read fail. The source answers with an error
 * frame naming why, and the replica narrows instead in the same sync (which
 * finds the key as one the source lacks), instead of asking the same keys
 * again and failing for good. Also: the suspects' row budget lets go of a
 * key's old row before it weighs the new one.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { entryHash } from '../../src/digest/hash.ts'
import { SuspectKeys, SUSPECT_ROW_BYTES } from '../../src/index/suspects.ts'
import { SqliteStore } from '../../src/stores/sqlite-store.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import { StoreUnavailableError } from '../../src/errors.ts'
import { createDatabase, ORDERS_DDL, sql } from '../helpers/postgres.ts'
import { memoryChannelPair } from '../../src/sync/channel.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import { runClientSync, serveSync } from '../../src/sync/session.ts'
import { orderRow, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, agentScope, allRows, startAgent, startLevelPair, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
/** A valid order id under the schema (integers go up to 2^64 - 1) that SQLite's signed INTEGER cannot hold. */
const WIDE_ID = 2n ** 63n + 5n
const wideRow = (): Uint8Array => codec.encodeRow({ ...orderRow(7), order_id: WIDE_ID })

/** A source whose rows are read from a SQLite store, as an agent's source reads them. */
class SqliteSource extends MemoryReplica {
  constructor (rows: Uint8Array[], private readonly store: SqliteStore) { super(codec, rows) }
  override async getRows (keys: Uint8Array[]): Promise<Array<Uint8Array | undefined>> { return await this.store.get(keys) }
}

describe('a key the source\'s store cannot hold', () => {
  const scope = agentScope()

  it('gets an error frame when asked by key, and narrowing finds it as a key the source lacks (source rows read from SQLite)', async () => {
    const dir = await tempDir()
    const store = new SqliteStore({ path: join(dir.path, 'sot.sqlite'), table: 'orders', codec, createTable: true })
    await store.open()
    try {
      const rows = Array.from({ length: 100 }, (_, id) => codec.encodeRow(orderRow(id)))
      await store.apply({ upserts: rows, deletes: [] })
      const sot = new SqliteSource(rows, store)
      const local = new MemoryReplica(codec, [...rows, wideRow()])
      const key = codec.keyOfEncodedRow(wideRow())
      const suspect = { key, entry: entryHash(codec.keyHash(key), codec.rowDigest(wideRow())), row: wideRow() }
      const exchange = async (suspects?: typeof suspect[]): Promise<Awaited<ReturnType<typeof runClientSync>>> => {
        const [client, server] = memoryChannelPair()
        const served = serveSync(server, { resolve: () => ({ region: 'sot', codec, view: sot, clock: () => ({}) }) })
        served.catch(() => undefined)
        return await runClientSync(client, { dataset: 'orders', region: 'b', codec, view: local, clock: {}, correlationId: 'wide', ...(suspects === undefined ? {} : { suspects }) })
      }
      await expect(exchange([suspect])).rejects.toMatchObject({ remoteCode: 'CONVERGE_ROW_ENCODING', message: expect.stringMatching(/does not fit SQLite/) })
      const { result } = await exchange()
      expect(result.deletes.map(hex)).toEqual([hex(key)])
      expect(result.upserts).toEqual([])
    } finally {
      await store.close()
      await dir.remove()
    }
  })

  it('gets CONVERGE_KEYS_UNREADABLE from a PostgreSQL source whose read fails on the key', async () => {
    const db = await createDatabase()
    await sql(db.url, ORDERS_DDL)
    const store = new PgStore({ connectionString: db.url, table: 'public.orders', codec })
    await store.open()
    try {
      const rows = Array.from({ length: 10 }, (_, id) => codec.encodeRow(orderRow(id)))
      await store.apply({ upserts: rows, deletes: [] })
      const sot = new (class extends MemoryReplica { override async getRows (keys: Uint8Array[]): Promise<Array<Uint8Array | undefined>> { return await store.get(keys) } })(codec, rows)
      const key = codec.keyOfEncodedRow(wideRow())
      const [client, server] = memoryChannelPair()
      const served = serveSync(server, { resolve: () => ({ region: 'sot', codec, view: sot, clock: () => ({}) }) })
      served.catch(() => undefined)
      await expect(runClientSync(client, {
        dataset: 'orders', region: 'b', codec, view: new MemoryReplica(codec, [...rows, wideRow()]), clock: {}, correlationId: 'wide-pg',
        suspects: [{ key, entry: entryHash(codec.keyHash(key), codec.rowDigest(wideRow())) }]
      })).rejects.toMatchObject({ remoteCode: 'CONVERGE_KEYS_UNREADABLE' })
    } finally {
      await store.close()
      await db.drop()
    }
  })

  it('does not stop a LevelDB replica of a SQLite source from converging (end to end)', async () => {
    await mkdir(join(scope.dir, 'sot'), { recursive: true })
    const sotPath = join(scope.dir, 'sot', 'orders.sqlite')
    const seed = new SqliteStore({ path: sotPath, table: 'orders', codec, createTable: true })
    await seed.open()
    try { await seedOrders(seed, 0, 2000) } finally { await seed.close() }
    await withOrdersStore(join(scope.dir, 'b', 'orders'), async store => { await seedOrders(store, 0, 2000) })
    const sotConfig = agentConfig(scope.dir, 'sot', [], ['sot'])
    sotConfig.datasets[0]!.store = { kind: 'sqlite', path: sotPath, table: 'orders', createTable: false }
    const sot = await startAgent(sotConfig)
    scope.agents.push(sot)
    const b = await startAgent(agentConfig(scope.dir, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot']))
    scope.agents.push(b)
    const replica = b.datasets.get('orders')!
    const root = (a: Agent): { count: number, sum: bigint } => a.datasets.get('orders')!.index.tree.root
    const level = (): boolean => root(b).count === root(sot).count && root(b).sum === root(sot).sum
    await waitFor('b level with the SoT', () => level() && replica.state === 'in-sync')

    // drift written here while the agents run: a changed row, and a row the source lacks (and cannot hold)
    await replica.store.apply({ upserts: [codec.encodeRow(orderRow(5, 1)), wideRow()], deletes: [], origin: 'drift' })
    await replica.index.catchUp()
    expect(replica.index.suspects.size).toBe(2)
    // level again (by narrowing, once asking by key failed), or two failed syncs in a row
    await waitFor('b level again, or failing', () => level() || replica.counters.syncErrors >= 2, 30_000)
    expect({ level: level(), syncErrors: replica.counters.syncErrors, lastError: replica.lastError }).toEqual({ level: true, syncErrors: 0, lastError: undefined })
    expect(await allRows(replica.store)).toEqual(await allRows(sot.datasets.get('orders')!.store))
  })
})

describe('a source whose store is down', () => {
  const scope = agentScope()

  it('fails the sync and keeps the replica\'s suspects for the next one, instead of narrowing, then asks by key once the store is back', async () => {
    const { sot, replica, level } = await startLevelPair(scope.dir, scope.agents)

    // the source's store goes away: every read of its rows fails as a store that cannot be reached does
    const sotStore = sot.datasets.get('orders')!.store
    const get = sotStore.get.bind(sotStore)
    sotStore.get = async () => { throw new StoreUnavailableError('PostgreSQL is unavailable for public.orders: connect ECONNREFUSED 127.0.0.1:1') }
    await replica.store.apply({ upserts: [codec.encodeRow(orderRow(5, 1))], deletes: [], origin: 'drift' })
    await replica.index.catchUp()
    await waitFor('a sync failed', () => replica.counters.syncErrors >= 1, 30_000)
    expect(replica.lastError).toMatch(/CONVERGE_STORE_UNAVAILABLE: PostgreSQL is unavailable for public\.orders/)
    // the suspect is kept for the next sync (narrowing instead would have let it go)
    expect(replica.index.suspects.size).toBe(1)

    sotStore.get = get
    await waitFor('b level again', () => level() && replica.state === 'in-sync', 30_000)
    expect(replica.index.suspects.size).toBe(0)
    expect(await allRows(replica.store)).toEqual(await allRows(sot.datasets.get('orders')!.store))
  })
})

describe('SuspectKeys row budget', () => {
  it('keeps the row of a key written again when its old row makes room for it (budget full)', () => {
    const big = new Uint8Array(SUSPECT_ROW_BYTES / 4)
    const s = new SuspectKeys()
    for (const id of [1, 2, 3, 4]) s.note(codec.encodeKey({ order_id: id }), big, BigInt(id))
    const small = codec.encodeRow(orderRow(1, 1))
    s.note(codec.encodeKey({ order_id: 1 }), small, 1n)
    const one = s.take(10)!.find(t => hex(t.key) === hex(codec.encodeKey({ order_id: 1 })))!
    expect(one.row === undefined ? 'not kept' : hex(one.row!)).toBe(hex(small))
  })
})
