/**
 * A fix the index took in as written (takeApplied with its store seq) is not
 * read back from PostgreSQL by the change feed, unless a batch older than it
 * came through after it was taken (its rows were read before the fix
 * committed) or while it was pending (its rows may hold a later write to the
 * fixed rows): the fix is then read back and applied again. A fix the feed
 * is already past is not taken in at all.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import { FIX_ORIGIN, type ChangeBatch, type ReplicaStore } from '../../src/stores/replica-store.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import { orderRow, ordersCodec as codec } from '../../cluster/orders.ts'
import { createDatabase, ORDERS_DDL, sql } from '../helpers/postgres.ts'
import { withFeed } from '../helpers/feed-store.ts'

const rows = (ids: number[], rev = 0): Uint8Array[] => ids.map(id => codec.encodeRow(orderRow(id, rev)))
const key = (id: number): Uint8Array => codec.encodeKey({ order_id: id })
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)

/** Waits (up to 5 s) until the recorded feed has delivered the batch of `seq`. */
async function untilDelivered (seen: readonly ChangeBatch[], seq: number): Promise<void> {
  const deadline = Date.now() + 5000
  while (!seen.some(b => b.seq === seq) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
}

/** The real store, its feed's batches recorded and, while `hold` says so, held back before the index gets them. */
function recorded (store: PgStore, seen: ChangeBatch[], hold: (b: ChangeBatch) => Promise<void>): ReplicaStore {
  return withFeed(store, async function * (source) {
    for await (const batch of source) {
      seen.push(batch)
      await hold(batch)
      yield batch
    }
  })
}

describe('writes the index took in as written (real PostgreSQL)', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>
  let store: PgStore
  let dir: string
  let state: StateDb
  let index: DigestIndex | undefined
  let seeded = 0

  beforeEach(async () => {
    db = await createDatabase()
    await sql(db.url, ORDERS_DDL)
    store = new PgStore({ connectionString: db.url, table: 'public.orders', codec, pollMs: 200 })
    await store.open()
    seeded = (await store.apply({ upserts: rows(range(0, 2000)), deletes: [] })).seq
    dir = await mkdtemp(join(tmpdir(), 'converge-taken-'))
    state = new StateDb(dir)
    await state.open()
  })
  afterEach(async () => {
    await index?.stop()
    index = undefined
    await state.close()
    await rm(dir, { recursive: true, force: true })
    await store.close()
    await db.drop()
  })

  /**
   * Starts the index once the seed is past the feed: the feed reads a
   * transaction only below the server-wide xmin, which another test's
   * transaction can hold back, and the seed delivered late would be a batch
   * older than the fix coming through after it (a read-back, rightly).
   */
  const startIndex = async (init: ReplicaStore): Promise<DigestIndex> => {
    while (await store.lastSeq() < seeded) await new Promise(resolve => setTimeout(resolve, 25))
    const started = new DigestIndex({ dataset: 'orders', codec, store: init, state })
    await started.start()
    await started.catchUp()
    return started
  }

  const truth = async (): Promise<MemoryReplica> => {
    const all: Uint8Array[] = []
    for await (const b of store.scan()) for (const r of b) all.push(r.row)
    return new MemoryReplica(codec, all)
  }

  /** The index holds what the store holds: the same tree, and nothing for a deep pass to correct. */
  const expectExact = async (live: DigestIndex): Promise<void> => {
    expect(live.tree.root).toEqual((await truth()).tree.root)
    expect((await live.validate()).corrected).toBe(0)
  }

  /** Waits (up to 5 s) until the index's feed has passed `seq`. */
  const untilApplied = async (live: DigestIndex, seq: number): Promise<void> => {
    const deadline = Date.now() + 5000
    while (live.appliedSeq < seq && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    expect(live.appliedSeq).toBeGreaterThanOrEqual(seq)
  }

  it('delivers a taken fix without its rows, and the index stays exact', async () => {
    const seen: ChangeBatch[] = []
    index = await startIndex(recorded(store, seen, async () => {}))
    const live = index
    const fix = { upserts: rows(range(0, 100), 1), upsertKeys: range(0, 100).map(key), deletes: range(100, 120).map(key) }
    // announced before its commit, as the repairer does: the feed may read the commit before takeApplied is called
    const { seq } = await store.apply({ ...fix, origin: FIX_ORIGIN, beforeCommit: s => { live.willTake(s) } })
    expect(await index.takeApplied(fix, { seq })).toBe(true)
    await index.catchUp()
    const delivered = seen.find(b => b.seq === seq)
    expect(delivered?.origin).toBe(FIX_ORIGIN)
    expect(delivered?.changes).toEqual([])
    await expectExact(index)

    // not taken (no seq given): read back with its rows, as before
    const again = { upserts: rows(range(200, 230), 1), upsertKeys: range(200, 230).map(key), deletes: [] }
    const second = await store.apply({ ...again, origin: FIX_ORIGIN })
    await index.takeApplied(again)
    await index.catchUp()
    expect(seen.find(b => b.seq === second.seq)?.changes).toHaveLength(30)
    expect(index.tree.root).toEqual((await truth()).tree.root)
  })

  it('reads a taken fix back when a batch read before it committed came through after it was taken', async () => {
    const seen: ChangeBatch[] = []
    let release: (() => void) | undefined
    let arrivedNow: () => void = () => {}
    const arrived = new Promise<void>(resolve => { arrivedNow = resolve })
    const hold = async (b: ChangeBatch): Promise<void> => {
      if (b.origin === FIX_ORIGIN || !b.changes.some(c => Buffer.from(c.key).equals(key(7)))) return
      arrivedNow()
      await new Promise<void>(resolve => { release = resolve })
    }
    index = await startIndex(recorded(store, seen, hold))
    // a write behind the agent's back: the feed reads it (order 7 void) and is held before the index gets it
    await sql(db.url, "UPDATE public.orders SET status = 'void' WHERE order_id = 7")
    await arrived
    // the fix commits over it and is taken in at once
    const fix = { upserts: rows([7], 2), upsertKeys: [key(7)], deletes: [] }
    const { seq } = await store.apply({ ...fix, origin: FIX_ORIGIN })
    await index.takeApplied(fix, { seq })
    // the held batch now lands after the fix was taken, with the row as it was before the fix
    release!()
    await index.catchUp()
    const delivered = seen.find(b => b.seq === seq)
    expect(delivered?.changes.map(c => Buffer.from(c.row!).equals(rows([7], 2)[0]!))).toEqual([true])
    await expectExact(index)
  })

  it('takes nothing in from a fix the feed is already past, when a later write changed the same row', async () => {
    const seen: ChangeBatch[] = []
    index = await startIndex(recorded(store, seen, async () => {}))
    // committed and not announced: the feed reads it with its rows, as it does from SQLite
    const fix = { upserts: rows([9], 5), upsertKeys: [key(9)], deletes: [] }
    const { seq } = await store.apply({ ...fix, origin: FIX_ORIGIN })
    // a write behind the agent's back over the fixed row, which the feed passes too before the fix is taken in
    await sql(db.url, "UPDATE public.orders SET status = 'void' WHERE order_id = 9")
    const later = await store.lastSeq()
    expect(later).toBeGreaterThan(seq)
    await untilApplied(index, later)
    expect(await index.takeApplied(fix, { seq })).toBe(true)
    await expectExact(index)
  })

  it('reads a taken fix back when a write that began before it and committed after it came through while it was pending', async () => {
    const seen: ChangeBatch[] = []
    index = await startIndex(recorded(store, seen, async () => {}))
    const live = index
    // a transaction behind the agent's back takes its id (a seq below the fix's) before the fix begins
    const other = new pg.Client({ connectionString: db.url })
    await other.connect()
    try {
      await other.query('BEGIN')
      const { rows: [own] } = await other.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid')
      const fix = { upserts: rows([11], 6), upsertKeys: [key(11)], deletes: [] }
      const { seq } = await store.apply({ ...fix, origin: FIX_ORIGIN, beforeCommit: s => { live.willTake(s) } })
      expect(seq).toBeGreaterThan(Number(own!.xid))
      // it writes the fixed row after the fix committed: the store ends with its row, not the fix's
      await other.query("UPDATE public.orders SET status = 'void' WHERE order_id = 11")
      await other.query('COMMIT')
      // the feed brings that write (its rows read after both commits) before the fix is taken in
      await untilApplied(live, Number(own!.xid))
      await live.takeApplied(fix, { seq })
      await live.catchUp()
      expect(seen.filter(b => b.seq === seq).map(b => b.changes.length)).toEqual([0, 1])
      await expectExact(live)
    } finally {
      await other.end()
    }
  })

  it('waits for a fix announced before its commit, delivered without rows before it was taken in', async () => {
    const seen: ChangeBatch[] = []
    index = await startIndex(recorded(store, seen, async () => {}))
    const live = index
    const fix = { upserts: rows(range(300, 400), 3), upsertKeys: range(300, 400).map(key), deletes: range(400, 410).map(key) }
    const { seq } = await store.apply({ ...fix, origin: FIX_ORIGIN, beforeCommit: s => { live.willTake(s) } })
    // the feed hears of the commit at once and reads it, without its rows: it must not pass the seq before the fix is in
    await untilDelivered(seen, seq)
    expect(seen.find(b => b.seq === seq)?.changes).toEqual([])
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(live.appliedSeq).toBeLessThan(seq)
    await live.takeApplied(fix, { seq })
    await live.catchUp()
    expect(live.appliedSeq).toBeGreaterThanOrEqual(seq)
    await expectExact(live)
  })

  it('reads back a fix announced before its commit that is then not taken in', async () => {
    const seen: ChangeBatch[] = []
    index = await startIndex(recorded(store, seen, async () => {}))
    const live = index
    const fix = { upserts: rows(range(500, 520), 4), upsertKeys: range(500, 520).map(key), deletes: [] }
    const { seq } = await store.apply({ ...fix, origin: FIX_ORIGIN, beforeCommit: s => { live.willTake(s) } })
    await untilDelivered(seen, seq)
    live.abandonTake(seq)
    await live.catchUp()
    // first without rows, then read again with them
    expect(seen.filter(b => b.seq === seq).map(b => b.changes.length)).toEqual([0, 20])
    await expectExact(live)
  })
})
