import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { StoreNotOpenError, StoreSchemaError } from '../../src/errors.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { FIX_ORIGIN, type ChangeBatch } from '../../src/stores/replica-store.ts'
import { ordersCodec as codec, order, ordersSchema } from '../helpers/datasets.ts'

const hex = (b: Uint8Array | null | undefined): string | null | undefined =>
  b === null || b === undefined ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

const row = (id: number, version = 0): Uint8Array => codec.encodeRow(order(id, version))
const key = (id: number): Uint8Array => codec.encodeKey({ id })
const rows = (from: number, to: number, version = 0): Uint8Array[] => Array.from({ length: to - from }, (_, i) => row(from + i, version))

/** Polls until `check` holds, failing after `ms`. */
async function until (check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

/** Resolves to `settled` or to 'timeout', whichever comes first. */
async function settleWithin (promise: Promise<unknown>, ms: number): Promise<{ done: true, error?: unknown } | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>(resolve => { timer = setTimeout(() => resolve('timeout'), ms) })
  try {
    return await Promise.race([promise.then(() => ({ done: true as const }), (error: unknown) => ({ done: true as const, error })), timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Reads the change feed in the background into `got` until the signal aborts. */
function follow (store: LevelStore, since: number, signal: AbortSignal): { got: ChangeBatch[], done: Promise<void> } {
  const got: ChangeBatch[] = []
  const done = (async () => { for await (const batch of store.changes({ since, signal })) got.push(batch) })()
  done.catch(() => undefined) // observed by the test through settleWithin
  return { got, done }
}

/**
 * The feed from `since` as it stands now: read until a batch with seq `last` arrived
 * (default: the store's last seq), or for a short while when `last` is not after `since`.
 */
async function feedFrom (store: LevelStore, since: number, last?: number): Promise<ChangeBatch[]> {
  const controller = new AbortController()
  const target = last ?? await store.lastSeq()
  const { got, done } = follow(store, since, controller.signal)
  if (target > since) await until(() => got.length > 0 && got[got.length - 1]!.seq >= target)
  else await new Promise(resolve => setTimeout(resolve, 30))
  controller.abort()
  expect(await settleWithin(done, 2000)).not.toBe('timeout')
  return got
}

const summary = (batches: ChangeBatch[]): Array<{ seq: number, origin: string | undefined, changes: Array<[string | null | undefined, string | null | undefined]> }> =>
  batches.map(b => ({ seq: b.seq, origin: b.origin, changes: b.changes.map(c => [hex(c.key), hex(c.row)]) }))

describe('LevelStore', () => {
  let dir: string
  let path: string
  const opened: LevelStore[] = []

  async function openStore (): Promise<LevelStore> {
    const store = new LevelStore({ path, codec })
    await store.open()
    opened.push(store)
    return store
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'converge-level-store-'))
    path = join(dir, 'orders')
  })

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('writes a fix to disk (a synced LevelDB write) before it answers; other writes need not wait for the disk', async () => {
    const store = await openStore()
    // the real database, the sync option of each batch written noted
    const db = (store as unknown as { db: { batch: () => { write: (options?: { sync?: boolean }) => Promise<void> } } }).db
    const realBatch = db.batch.bind(db)
    const syncs: Array<boolean | undefined> = []
    const spy = vi.spyOn(db, 'batch').mockImplementation(() => {
      const batch = realBatch()
      const write = batch.write.bind(batch)
      batch.write = async options => { syncs.push(options?.sync); await write(options) }
      return batch
    })
    try {
      await store.apply({ upserts: [row(1)], deletes: [], origin: FIX_ORIGIN })
      await store.apply({ upserts: [row(2)], deletes: [] })
    } finally {
      spy.mockRestore()
    }
    expect(syncs).toEqual([true, false])
    expect((await store.get([key(1), key(2)])).map(hex)).toEqual([hex(row(1)), hex(row(2))])
  })

  it('assigns increasing seqs, also to concurrent applies, and each is recorded whole', async () => {
    const store = await openStore()
    expect(await store.lastSeq()).toBe(0)
    expect((await store.apply({ upserts: [row(1)], deletes: [] })).seq).toBe(1)
    expect((await store.apply({ upserts: [row(2)], deletes: [] })).seq).toBe(2)
    expect(await store.lastSeq()).toBe(2)
    const concurrent = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      store.apply({ upserts: rows(100 + i * 50, 150 + i * 50), deletes: [key(1)] })))
    expect(concurrent.map(r => r.seq)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    // only the first of them found row 1 to delete
    expect(concurrent.map(r => r.before[50] === null)).toEqual([false, true, true, true, true, true, true, true, true, true])
    expect(await store.lastSeq()).toBe(12)
    const feed = await feedFrom(store, 2)
    expect(feed.map(b => b.seq)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    feed.forEach((batch, i) => {
      expect(batch.changes.length).toBe(51)
      expect(batch.changes.slice(0, 50).map(c => hex(c.row))).toEqual(rows(100 + i * 50, 150 + i * 50).map(hex))
      expect(batch.changes[50]!.row).toBeNull()
      expect(hex(batch.changes[50]!.key)).toBe(hex(key(1)))
    })
  })

  it('applies nothing from a request that fails, and burns no seq', async () => {
    const store = await openStore()
    await store.apply({ upserts: rows(1, 4), deletes: [] })
    const notARow = new Uint8Array([0xa1, 0x78]) // msgpack for the string 'x', not a row array
    await expect(store.apply({ upserts: [row(1, 5), notARow, row(9)], deletes: [key(2)] })).rejects.toMatchObject({ code: 'CONVERGE_ROW_ENCODING' })
    const aborted = AbortSignal.abort()
    await expect(store.apply({ upserts: [row(1, 6)], deletes: [key(3)] }, { signal: aborted })).rejects.toMatchObject({ code: 'CONVERGE_ABORTED' })
    expect(await store.lastSeq()).toBe(1)
    expect((await store.get([key(1), key(2), key(3), key(9)])).map(hex)).toEqual([hex(row(1)), hex(row(2)), hex(row(3)), undefined])
    expect(summary(await feedFrom(store, 0)).map(b => b.seq)).toEqual([1])
    // and the next good apply takes the next seq
    expect((await store.apply({ upserts: [row(9)], deletes: [] })).seq).toBe(2)
  })

  it('get returns rows in key order of the request, undefined for absent keys', async () => {
    const store = await openStore()
    await store.apply({ upserts: rows(1, 4), deletes: [] })
    expect((await store.get([key(3), key(99), key(1), key(3)])).map(hex)).toEqual([hex(row(3)), undefined, hex(row(1)), hex(row(3))])
    expect(await store.get([key(42)])).toEqual([undefined])
    expect(await store.get([])).toEqual([])
  })

  it('scan returns every row exactly once, in batches of at most batchSize', async () => {
    const store = await openStore()
    const all = rows(0, 2500)
    await store.apply({ upserts: all.slice(0, 1200), deletes: [] })
    await store.apply({ upserts: all.slice(1200), deletes: [key(7), key(2000)] })
    const expected = new Map(all.map((r, i) => [hex(key(i))!, hex(r)]))
    expected.delete(hex(key(7))!); expected.delete(hex(key(2000))!)

    const sizes: number[] = []
    const seen = new Map<string, string | null | undefined>()
    for await (const batch of store.scan({ batchSize: 300 })) {
      sizes.push(batch.length)
      for (const { key: k, row: r } of batch) {
        expect(seen.has(hex(k)!), 'a key seen twice').toBe(false)
        expect(hex(codec.keyOfEncodedRow(r))).toBe(hex(k))
        seen.set(hex(k)!, hex(r))
      }
    }
    expect(seen).toEqual(expected)
    expect(sizes.every(n => n > 0 && n <= 300)).toBe(true)
    expect(sizes.length).toBeGreaterThanOrEqual(Math.ceil(2498 / 300))
    expect(await store.countRows()).toBe(2498)

    let defaultBatches = 0
    let total = 0
    for await (const batch of store.scan()) { defaultBatches++; total += batch.length; expect(batch.length).toBeLessThanOrEqual(1000) }
    expect(total).toBe(2498)
    expect(defaultBatches).toBeGreaterThanOrEqual(3)
  })

  it('replays persisted changes after close and reopen, then delivers new ones live, and stops on abort', async () => {
    let store = await openStore()
    await store.apply({ upserts: rows(0, 3), deletes: [] })
    await store.apply({ upserts: [row(1, 1)], deletes: [key(2)], origin: 'converge' })
    await store.apply({ upserts: [row(5)], deletes: [] })
    await store.close()
    opened.splice(0)

    store = await openStore()
    expect(await store.lastSeq()).toBe(3)
    expect((await store.get([key(0), key(1), key(2), key(5)])).map(hex)).toEqual([hex(row(0)), hex(row(1, 1)), undefined, hex(row(5))])

    const controller = new AbortController()
    const { got, done } = follow(store, 1, controller.signal)
    await until(() => got.length >= 2)
    expect(summary(got)).toEqual([
      { seq: 2, origin: 'converge', changes: [[hex(key(1)), hex(row(1, 1))], [hex(key(2)), null]] },
      { seq: 3, origin: undefined, changes: [[hex(key(5)), hex(row(5))]] }
    ])
    // the feed is now waiting: a new apply arrives live
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(got.length).toBe(2)
    await store.apply({ upserts: [row(6)], deletes: [key(0)], origin: 'converge' })
    await until(() => got.length >= 3)
    expect(summary(got.slice(2))).toEqual([{ seq: 4, origin: 'converge', changes: [[hex(key(6)), hex(row(6))], [hex(key(0)), null]] }])
    await store.apply({ upserts: [row(7)], deletes: [] })
    await until(() => got.length >= 4)
    expect(got[3]!.seq).toBe(5)

    controller.abort()
    const outcome = await settleWithin(done, 2000)
    expect(outcome).not.toBe('timeout')
    // it ends either cleanly or with AbortedError, never with another error
    if (outcome !== 'timeout' && outcome.error !== undefined) expect(outcome.error).toMatchObject({ code: 'CONVERGE_ABORTED' })
    // nothing more arrives once aborted
    await store.apply({ upserts: [row(8)], deletes: [] })
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(got.map(b => b.seq)).toEqual([2, 3, 4, 5])
  })

  it('stops a feed whose signal is aborted while it waits for changes', async () => {
    const store = await openStore()
    const controller = new AbortController()
    const { got, done } = follow(store, 0, controller.signal)
    await new Promise(resolve => setTimeout(resolve, 20))
    controller.abort()
    const outcome = await settleWithin(done, 2000)
    expect(outcome).not.toBe('timeout')
    if (outcome !== 'timeout' && outcome.error !== undefined) expect(outcome.error).toMatchObject({ code: 'CONVERGE_ABORTED' })
    expect(got).toEqual([])
  })

  it('trimChanges forgets history up to the seq, durably, and leaves rows and seq alone', async () => {
    let store = await openStore()
    for (let i = 0; i < 5; i++) await store.apply({ upserts: [row(i)], deletes: [] })
    await store.trimChanges(3)
    // history that is gone is refused, so the consumer knows to rescan
    const refused = await settleWithin(follow(store, 0, AbortSignal.timeout(2000)).done, 1000)
    expect(refused).not.toBe('timeout')
    expect((refused as { error?: { code?: string } }).error?.code).toBe('CONVERGE_CHANGES_TRIMMED')
    expect((await feedFrom(store, 3)).map(b => b.seq)).toEqual([4, 5])
    expect(await store.lastSeq()).toBe(5)
    expect(await store.countRows()).toBe(5)
    await store.close()
    opened.splice(0)
    store = await openStore()
    expect((await feedFrom(store, 3)).map(b => b.seq)).toEqual([4, 5])
    expect(await store.lastSeq()).toBe(5)
    expect((await store.apply({ upserts: [row(9)], deletes: [] })).seq).toBe(6)
    await store.trimChanges(5)
    expect((await feedFrom(store, 5)).map(b => b.seq)).toEqual([6])
  })

  it('carries the origin of each batch, live and after reopen', async () => {
    let store = await openStore()
    const controller = new AbortController()
    const { got, done } = follow(store, 0, controller.signal)
    await store.apply({ upserts: [row(1)], deletes: [], origin: 'converge' })
    await store.apply({ upserts: [row(2)], deletes: [] })
    await store.apply({ upserts: [], deletes: [key(1)], origin: 'operator' })
    await until(() => got.length >= 3)
    expect(got.map(b => [b.seq, b.origin])).toEqual([[1, 'converge'], [2, undefined], [3, 'operator']])
    controller.abort()
    expect(await settleWithin(done, 2000)).not.toBe('timeout')
    await store.close()
    opened.splice(0)
    store = await openStore()
    expect((await feedFrom(store, 0)).map(b => [b.seq, b.origin])).toEqual([[1, 'converge'], [2, undefined], [3, 'operator']])
  })

  it('throws StoreNotOpenError when used before open or after close', async () => {
    const store = new LevelStore({ path, codec })
    const checks = async (): Promise<void> => {
      await expect(store.get([key(1)])).rejects.toBeInstanceOf(StoreNotOpenError)
      await expect(store.apply({ upserts: [row(1)], deletes: [] })).rejects.toMatchObject({ code: 'CONVERGE_STORE_NOT_OPEN' })
      await expect(store.scan()[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'CONVERGE_STORE_NOT_OPEN' })
      const feed = store.changes({ since: 0, signal: new AbortController().signal })
      await expect(feed[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'CONVERGE_STORE_NOT_OPEN' })
      await expect(store.countRows()).rejects.toMatchObject({ code: 'CONVERGE_STORE_NOT_OPEN' })
    }
    await checks()
    await store.open()
    await store.apply({ upserts: [row(1)], deletes: [] })
    expect((await store.get([key(1)])).map(hex)).toEqual([hex(row(1))])
    await store.close()
    await checks()
  })

  // regression: close() used to wake nobody, so a waiting feed hung until its signal aborted
  it('ends a waiting change feed when the store closes', async () => {
    const store = await openStore()
    await store.apply({ upserts: [row(1)], deletes: [] })
    const controller = new AbortController()
    const { got, done } = follow(store, 0, controller.signal)
    await until(() => got.length === 1)
    await store.close()
    opened.splice(0)
    const outcome = await settleWithin(done, 1000)
    controller.abort() // releases the feed if it hung, so the test file can finish
    expect(outcome).not.toBe('timeout')
  })

  // regression: asking for trimmed history used to restart the replay forever
  it('refuses history that has been trimmed at once, without spinning', async () => {
    const store = await openStore()
    for (let i = 0; i < 3; i++) await store.apply({ upserts: [row(i)], deletes: [] })
    await store.trimChanges(3)
    const controller = new AbortController()
    const { got, done } = follow(store, 0, controller.signal)
    const outcome = await settleWithin(done, 1000)
    controller.abort()
    expect(outcome).not.toBe('timeout')
    expect((outcome as { error?: { code?: string } }).error?.code).toBe('CONVERGE_CHANGES_TRIMMED')
    expect(got).toEqual([])
  })

  it('refuses to open under another key layout: rows sit in key-hash order, and a partition column moves them', async () => {
    const store = new LevelStore({ path: dir, codec })
    await store.open()
    await store.apply({ upserts: rows(0, 10), deletes: [] })
    await store.close()
    const partitioned = new RowCodec({ ...ordersSchema, primaryKey: ['id', 'customer'], partitionColumn: 'customer' })
    const other = new LevelStore({ path: dir, codec: partitioned })
    const err = await other.open().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StoreSchemaError)
    expect((err as StoreSchemaError).message).toMatch(/key layout .*\(the primary key or partition column changed\)/)
    // the store itself is untouched and opens again under its own layout
    const again = new LevelStore({ path: dir, codec })
    await again.open()
    expect(await again.get([key(3)])).toEqual([row(3)])
    await again.close()
  })
})
