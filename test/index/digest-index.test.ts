import { mkdtemp, rm } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { entryHash } from '../../src/digest/hash.ts'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { IndexWriteError } from '../../src/errors.ts'
import { DigestIndex, type DigestIndexInit, type IndexProgress } from '../../src/index/digest-index.ts'
import { decodePage } from '../../src/index/page.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import type { ChangeBatch, ReplicaStore } from '../../src/stores/replica-store.ts'
import type { IndexEntry } from '../../src/sync/replica-view.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import { isUnder, type MerkleTree } from '../../src/tree/merkle-tree.ts'
import { ordersCodec as codec, ordersSchema, order } from '../helpers/datasets.ts'
import { withFeed } from '../helpers/feed-store.ts'

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
const row = (id: number, version = 0): Uint8Array => codec.encodeRow(order(id, version))
const key = (id: number): Uint8Array => codec.encodeKey({ id })

/** Every node of every level both trees have, as comparable strings. */
function nodes (tree: MerkleTree, depth: number): string[][] {
  const out: string[][] = []
  for (let level = 0; level <= depth; level++) {
    const values: string[] = []
    for (let i = 0; i < 16 ** level; i++) { const n = tree.node(level, i); values.push(`${n.count}:${n.sum}`) }
    out.push(values)
  }
  return out
}

/** The index tree equals the tree of `expected`: root, every level-1 node, and every deeper level both have. */
function expectSameTree (actual: MerkleTree, expected: MerkleTree): void {
  expect(actual.root).toEqual(expected.root)
  const depth = Math.min(actual.depth, expected.depth)
  expect(nodes(actual, depth)).toEqual(nodes(expected, depth))
}

const entryView = (entries: IndexEntry[]): string[] =>
  entries.map(e => `${e.keyHash.toString(16)}|${hex(e.key)}|${e.entry}`)

/** The model: the rows the store should hold, by id. */
class Model {
  readonly rows = new Map<number, Uint8Array>()
  constructor (ids: Iterable<number> = []) { for (const id of ids) this.rows.set(id, row(id)) }
  upsert (id: number, version = 0): Uint8Array { const r = row(id, version); this.rows.set(id, r); return r }
  delete (id: number): Uint8Array { this.rows.delete(id); return key(id) }
  replica (c: RowCodec = codec): MemoryReplica { return new MemoryReplica(c, this.rows.values()) }
}

/** All rows the store holds, read by a full scan (ground truth for the index). */
async function storeReplica (store: ReplicaStore, c: RowCodec = codec): Promise<MemoryReplica> {
  const all: Uint8Array[] = []
  for await (const batch of store.scan()) for (const { row: r } of batch) all.push(r)
  return new MemoryReplica(c, all)
}


/** The same store without its key-hash order: the index then keeps entries of its own. */
function keyOrdered (inner: ReplicaStore): ReplicaStore {
  return {
    kind: inner.kind,
    get id () { return inner.id },
    codec: inner.codec,
    supports: { ...inner.supports, keyHashOrder: false },
    open: async () => { await inner.open() },
    close: async () => { await inner.close() },
    scan: options => inner.scan(options),
    get: async keys => await inner.get(keys),
    apply: async (request, options) => await inner.apply(request, options),
    lastSeq: async () => await inner.lastSeq(),
    changes: options => inner.changes(options),
    trimChanges: async seq => { await inner.trimChanges(seq) },
    countRows: async () => await inner.countRows()
  }
}

describe('DigestIndex', () => {
  let dir: string
  const cleanup: Array<() => Promise<void>> = []
  /** Errors the indexes emitted (a failed follow loop); none are expected. */
  const errors: unknown[] = []

  async function openStore (): Promise<LevelStore> {
    const store = new LevelStore({ path: join(dir, 'store'), codec })
    await store.open()
    cleanup.push(async () => { await store.close() })
    return store
  }

  async function openStateAt (path: string): Promise<StateDb> {
    const state = new StateDb(path)
    await state.open()
    cleanup.push(async () => { await state.close() })
    return state
  }

  async function openState (): Promise<StateDb> { return await openStateAt(join(dir, 'state')) }

  /** These tests exercise the index that keeps its own entries: the store is shown to it as key-ordered. */
  function makeIndex (store: ReplicaStore, state: StateDb, c: RowCodec = codec, writeBehind?: { entries: number, ms: number, idleMs?: number }, pageCacheBytes?: number): DigestIndex {
    const index = new DigestIndex({ dataset: 'orders', codec: c, store: keyOrdered(store), state, ...(writeBehind === undefined ? {} : { writeBehind }), ...(pageCacheBytes === undefined ? {} : { pageCacheBytes }) })
    index.on('error', err => { errors.push(err) })
    cleanup.push(async () => { await index.stop() })
    return index
  }

  /** makeIndex with a full scan's tree builder limits of its own, and the store shown as it is when `storeBacked`. */
  function makeIndexWith (store: ReplicaStore, state: StateDb, treeBuild: DigestIndexInit['treeBuild'], storeBacked = false): DigestIndex {
    const index = new DigestIndex({ dataset: 'orders', codec, store: storeBacked ? store : keyOrdered(store), state, treeBuild })
    index.on('error', err => { errors.push(err) })
    cleanup.push(async () => { await index.stop() })
    return index
  }

  /** Starts an index, recording its progress phases and whether it scanned the store. */
  async function start (index: DigestIndex, store: LevelStore): Promise<{ phases: Set<IndexProgress['phase']>, scans: number }> {
    const phases = new Set<IndexProgress['phase']>()
    const scan = vi.spyOn(store, 'scan')
    try {
      await index.start({ onProgress: p => phases.add(p.phase) })
      return { phases, scans: scan.mock.calls.length }
    } finally {
      scan.mockRestore()
    }
  }

  async function stopAll (): Promise<void> {
    // stop indexes before closing what they read (cleanup runs in reverse order of creation)
    for (const fn of cleanup.splice(0).reverse()) await fn()
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'converge-digest-index-'))
  })

  afterEach(async () => {
    // a test that failed midway leaves no spy on a class that later tests write through
    vi.restoreAllMocks()
    await stopAll()
    await rm(dir, { recursive: true, force: true })
    expect(errors.splice(0)).toEqual([])
  })

  it('rebuilds an empty index from a full scan into the tree a MemoryReplica builds', async () => {
    const store = await openStore()
    const model = new Model(Array.from({ length: 3000 }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()].slice(0, 1000), deletes: [] })
    await store.apply({ upserts: [...model.rows.values()].slice(1000), deletes: [] })
    const index = makeIndex(store, await openState())
    const { phases, scans } = await start(index, store)
    expect(scans).toBe(1)
    expect(phases.has('scan')).toBe(true)
    const expected = model.replica()
    expect(index.tree.rowCount).toBe(3000)
    expect(index.tree.depth).toBe(expected.tree.depth)
    expectSameTree(index.tree, expected.tree)
    expect(index.appliedSeq).toBe(2)
    // an index of an empty store is empty
    const other = new LevelStore({ path: join(dir, 'empty-store'), codec })
    await other.open()
    cleanup.push(async () => { await other.close() })
    const emptyIndex = makeIndex(other, await openStateAt(join(dir, 'empty-state')))
    await emptyIndex.start()
    expect(emptyIndex.tree.root).toEqual({ count: 0, sum: 0n })
    expect(await emptyIndex.list(0, 0)).toEqual([])
  })

  it('follows store changes: after apply and catchUp the tree equals a fresh MemoryReplica', async () => {
    const store = await openStore()
    const model = new Model(Array.from({ length: 2000 }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    const index = makeIndex(store, await openState())
    await start(index, store)
    expectSameTree(index.tree, model.replica().tree)

    // updates, inserts and deletes in one batch
    await store.apply({
      upserts: [model.upsert(5, 1), model.upsert(17, 2), model.upsert(2500), model.upsert(2501)],
      deletes: [model.delete(0), model.delete(1999), model.delete(4242)]
    })
    await index.catchUp()
    expect(index.appliedSeq).toBe(2)
    expectSameTree(index.tree, model.replica().tree)

    // many small batches, some written concurrently
    await Promise.all(Array.from({ length: 30 }, async (_, i) => {
      await store.apply({ upserts: [model.upsert(100 + i, 3), model.upsert(3000 + i)], deletes: [model.delete(500 + i)] })
    }))
    await index.catchUp()
    expect(index.appliedSeq).toBe(32)
    const expected = model.replica()
    expect(index.tree.rowCount).toBe(model.rows.size)
    expectSameTree(index.tree, expected.tree)
    expectSameTree(index.tree, (await storeReplica(store)).tree)
    expect(entryView(await index.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))

    // a large delete shrinks the tree; it is reloaded at the smaller depth and stays right
    expect(index.tree.depth).toBe(2)
    const survivors = [...model.rows.keys()].slice(0, 100)
    await store.apply({ upserts: [], deletes: [...model.rows.keys()].filter(id => !survivors.includes(id)).map(id => model.delete(id)) })
    await index.catchUp()
    expectSameTree(index.tree, model.replica().tree)
    await vi.waitFor(() => { expect(index.tree.depth).toBe(1) })
    expectSameTree(index.tree, model.replica().tree)
    expect(index.tree.rowCount).toBe(100)
  })

  it('lists exactly the entries under a node, like MemoryReplica.list', async () => {
    const store = await openStore()
    const model = new Model(Array.from({ length: 2500 }, (_, i) => i * 3))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    const index = makeIndex(store, await openState())
    await start(index, store)
    await store.apply({ upserts: [model.upsert(3, 1), model.upsert(1)], deletes: [model.delete(6)] })
    await index.catchUp()
    const expected = model.replica()

    const all = await index.list(0, 0)
    expect(all.length).toBe(model.rows.size)
    expect(entryView(all)).toEqual(entryView(await expected.list(0, 0)))
    let total = 0
    for (let i = 0; i < 16; i++) {
      const listed = await index.list(1, i)
      expect(entryView(listed), `level 1 node ${i}`).toEqual(entryView(await expected.list(1, i)))
      expect(listed.every(e => isUnder(e.keyHash, 1, i))).toBe(true)
      expect(listed.length).toBe(index.tree.count(1, i))
      total += listed.length
    }
    expect(total).toBe(model.rows.size)
    for (const i of [0, 1, 0x7f, 0xa5, 0xfe, 0xff]) {
      expect(entryView(await index.list(2, i)), `level 2 node ${i}`).toEqual(entryView(await expected.list(2, i)))
    }
    for (const i of [0, 0x123, 0xfff]) {
      expect(entryView(await index.list(3, i))).toEqual(entryView(await expected.list(3, i)))
    }
    // each entry carries the row's key, key hash and entry hash
    const one = all.find(e => hex(e.key) === hex(key(3)))!
    expect(one.keyHash).toBe(codec.keyHash(key(3)))
    expect(one.entry).toBe(entryHash(codec.keyHash(key(3)), codec.rowDigest(row(3, 1))))
    expect(all.some(e => hex(e.key) === hex(key(6)))).toBe(false)
    expect((await index.getRows([key(3), key(6)])).map(r => r === undefined ? undefined : hex(r))).toEqual([hex(row(3, 1)), undefined])
  })

  it('restarts from the index without a rescan and replays changes made while it was stopped', async () => {
    let store = await openStore()
    let state = await openState()
    const model = new Model(Array.from({ length: 2000 }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    let index = makeIndex(store, state)
    await start(index, store)
    await store.apply({ upserts: [model.upsert(1, 1)], deletes: [model.delete(2)] })
    await index.catchUp()
    expect(index.appliedSeq).toBe(2)

    // stop and close everything; the store changes while the index is down
    await stopAll()
    store = await openStore()
    await store.apply({ upserts: [model.upsert(3, 1), model.upsert(7000)], deletes: [model.delete(4)] })
    await store.apply({ upserts: [model.upsert(5, 2)], deletes: [model.delete(7000), model.delete(6)] })
    await store.close()
    cleanup.splice(0)

    store = await openStore()
    state = await openState()
    index = makeIndex(store, state)
    const { phases, scans } = await start(index, store)
    expect(scans).toBe(0)
    expect(phases.has('scan')).toBe(false)
    expect(phases.has('load')).toBe(true)
    expect(index.appliedSeq).toBe(4)
    const expected = model.replica()
    expectSameTree(index.tree, expected.tree)
    expect(entryView(await index.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))

    // and it keeps following after the restart
    await store.apply({ upserts: [model.upsert(8, 3)], deletes: [model.delete(9)] })
    await index.catchUp()
    expectSameTree(index.tree, model.replica().tree)
  })

  /** The seq the index's pages record on disk (its meta). */
  async function writtenSeq (state: StateDb): Promise<number> {
    const meta = await state.sublevel('index:orders:m').get(new TextEncoder().encode('meta'))
    return (JSON.parse(new TextDecoder().decode(meta)) as { seq: number }).seq
  }

  /** A store of `rows` orders and a started index over it, with the seq its pages were built at. */
  /** A new index opened on what is on disk (no entries waiting in memory) lists exactly `expected`'s rows. */
  async function expectPagesHold (store: LevelStore, state: StateDb, expected: { list: (level: number, index: number) => Promise<IndexEntry[]> }): Promise<void> {
    const again = makeIndex(store, state)
    await start(again, store)
    expect(entryView(await again.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))
    await again.stop()
  }

  async function indexed (rows: number, writeBehind?: { entries: number, ms: number, idleMs?: number }): Promise<{ store: LevelStore, state: StateDb, model: Model, index: DigestIndex, built: number }> {
    const store = await openStore()
    const state = await openState()
    const model = new Model(Array.from({ length: rows }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    const index = makeIndex(store, state, codec, writeBehind)
    await start(index, store)
    return { store, state, model, index, built: await writtenSeq(state) }
  }

  it('keeps changed entries in memory before their pages: lists them, and a crash before the write loses none', async () => {
    const { store, state, model, index: first, built } = await indexed(2000)
    // more batches than the feed trims after (64), each a change of its own
    for (let i = 0; i < 70; i++) await store.apply(i % 3 === 0 ? { upserts: [], deletes: [model.delete(i)] } : { upserts: [model.upsert(i, 1)], deletes: [] })
    await first.catchUp()
    expect(first.appliedSeq).toBe(built + 70)
    // the pages have not been written yet, and lists read the entries over them
    expect(await writtenSeq(state)).toBe(built)
    const expected = model.replica()
    expectSameTree(first.tree, expected.tree)
    expect(entryView(await first.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))

    // a kill: the first index never writes its entries; a new one opens what is on disk
    const rescans: unknown[] = []
    const second = makeIndex(store, state)
    second.on('rescan', err => rescans.push(err))
    const { scans } = await start(second, store)
    // the store kept its change log from the pages' seq: replayed, not rescanned
    expect(scans).toBe(0)
    expect(rescans).toEqual([])
    expect(second.appliedSeq).toBe(built + 70)
    expectSameTree(second.tree, expected.tree)
    expect(entryView(await second.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))
  })

  it('makes its written pages durable (a synced write) before the store trims its change log past them', async () => {
    const { store, state, model, index } = await indexed(500, { entries: 1, ms: 60_000, idleMs: 60_000 })
    // the real databases, each synced write of the state and each trim of the store noted in order
    const events: string[] = []
    const realBatch = state.db.batch.bind(state.db) as () => { write: (options?: { sync?: boolean }) => Promise<void> }
    const batchSpy = vi.spyOn(state.db, 'batch').mockImplementation((() => {
      const batch = realBatch()
      const write = batch.write.bind(batch)
      batch.write = async options => { await write(options); if (options?.sync === true) events.push(`sync, pages at ${index.appliedSeq}`) }
      return batch
    }) as never)
    const realTrim = store.trimChanges.bind(store)
    const trimSpy = vi.spyOn(store, 'trimChanges').mockImplementation(async seq => { events.push(`trim to ${seq}`); await realTrim(seq) })
    try {
      // more batches than the feed trims after (64), each a change of its own, each written to its page at once
      for (let i = 0; i < 70; i++) await store.apply({ upserts: [model.upsert(i, 1)], deletes: [] })
      await index.catchUp()
    } finally {
      batchSpy.mockRestore()
      trimSpy.mockRestore()
    }
    const trims = events.filter(e => e.startsWith('trim'))
    expect(trims).toHaveLength(1)
    const at = events.indexOf(trims[0]!)
    expect(events[at - 1]).toMatch(/^sync/)
    // trimmed to no more than the pages held at that sync
    expect(Number(trims[0]!.split(' ').pop())).toBeLessThanOrEqual(Number(events[at - 1]!.split(' ').pop()))
    expectSameTree(index.tree, model.replica().tree)
  })

  it('writes its pages once enough entries wait, once they have waited long enough, and at stop', async () => {
    const { store, state, model, index, built } = await indexed(500, { entries: 100, ms: 60_000, idleMs: 60_000 })
    // 99 entries wait; the 100th fills the batch
    await store.apply({ upserts: Array.from({ length: 99 }, (_, i) => model.upsert(i, 1)), deletes: [] })
    await index.catchUp()
    expect(await writtenSeq(state)).toBe(built)
    await store.apply({ upserts: [], deletes: [model.delete(200)] })
    await index.catchUp()
    expect(await writtenSeq(state)).toBe(built + 2)
    await store.apply({ upserts: [model.upsert(300, 1)], deletes: [] })
    await index.catchUp()
    expect(await writtenSeq(state)).toBe(built + 2)
    await index.stop()
    expect(await writtenSeq(state)).toBe(built + 3)
    expect(errors).toEqual([])

    // after a while: a write 50 ms after the first change
    const timed = makeIndex(store, state, codec, { entries: 100, ms: 50 })
    await start(timed, store)
    await store.apply({ upserts: [model.upsert(301, 1)], deletes: [] })
    await timed.catchUp()
    await vi.waitFor(async () => { expect(await writtenSeq(state)).toBe(built + 4) }, { timeout: 5000, interval: 20 })
    const expected = model.replica()
    expectSameTree(timed.tree, expected.tree)
    // the pages alone (no entries waiting) hold the rows: a restart loads exactly them
    await timed.stop()
    await expectPagesHold(store, state, expected)
  })

  it('writes no page whose waiting entries a fix took back to what it holds: a drift repaired before the write', async () => {
    const { store, state, model, index, built } = await indexed(500, { entries: 100_000, ms: 600_000, idleMs: 600_000 })
    // the drift: a row changed, one deleted, one inserted; then the fix that puts back what was there
    await store.apply({ upserts: [model.upsert(1, 1), model.upsert(5000, 1)], deletes: [model.delete(2)] })
    await index.catchUp()
    const fix = { upserts: [model.upsert(1, 0), model.upsert(2, 0)], deletes: [model.delete(5000)] }
    const { seq } = await store.apply(fix)
    expect(await index.takeApplied(fix, { seq })).toBe(true)
    // what the write of the pages puts into LevelDB, seen where every chained batch's puts and deletes go (the page
    // writes use one batch again and again through these): page keys by their sublevel's prefix, the meta by name
    const proto = await chainedBatchPrototype(state)
    const name = (k: Uint8Array): string => { const t = new TextDecoder().decode(k); return t.startsWith('!index:orders:p!') ? 'page' : t.slice(t.lastIndexOf('!') + 1) }
    const put = vi.spyOn(proto, '_put')
    const del = vi.spyOn(proto, '_del')
    let writes: string[]
    try {
      await index.stop()
      // (the class is the store's too: only the state db's batches count)
      const ours = (spy: typeof put | typeof del): Array<[Uint8Array]> => spy.mock.calls.filter((_, i) => (spy.mock.contexts[i] as { db?: unknown }).db === state.db) as Array<[Uint8Array]>
      writes = [...ours(put).map(([k]) => name(k)), ...ours(del).map(([k]) => `${name(k)} deleted`)]
    } finally {
      put.mockRestore()
      del.mockRestore()
    }
    // the meta moves on to the fix's seq; no page changed
    expect(writes).toEqual(['meta'])
    expect(await writtenSeq(state)).toBe(built + 2)
    await expectPagesHold(store, state, model.replica())
  })

  it('writes its pages once changes pause, without waiting out the longest wait', async () => {
    const { store, state, model, index, built } = await indexed(300, { entries: 1000, ms: 600_000, idleMs: 100 })
    await store.apply({ upserts: [model.upsert(7, 1)], deletes: [] })
    await index.catchUp()
    // only the pause can have written it: the longest wait is ten minutes, and one entry is far from 1,000
    await vi.waitFor(async () => { expect(await writtenSeq(state)).toBe(built + 1) }, { timeout: 5000, interval: 20 })
    const expected = model.replica()
    expectSameTree(index.tree, expected.tree)
    await index.stop()
    await expectPagesHold(store, state, expected)
  })

  it('holds the pause\'s write of its pages while a caller holds them, and writes them once released', async () => {
    const { store, state, model, index, built } = await indexed(300, { entries: 1000, ms: 600_000, idleMs: 50 })
    await store.apply({ upserts: [model.upsert(7, 1)], deletes: [] })
    await index.catchUp()
    // the pause's write is armed; a sync takes the hold before it fires, and its fix lands meanwhile
    const release = index.holdPages()
    await sleep(300)
    expect(await writtenSeq(state)).toBe(built)
    const fix = { upserts: [model.upsert(8, 2)], deletes: [] }
    const { seq } = await store.apply(fix)
    expect(await index.takeApplied(fix, { seq })).toBe(true)
    await sleep(300)
    expect(await writtenSeq(state)).toBe(built)
    release()
    release() // a second call changes nothing
    // the drift's entry and the fix's go into the pages in one write, after the pause that follows the release
    await vi.waitFor(async () => { expect(await writtenSeq(state)).toBeGreaterThan(built) }, { timeout: 5000, interval: 20 })
    await index.catchUp()
    const expected = model.replica()
    expectSameTree(index.tree, expected.tree)
    await index.stop()
    await expectPagesHold(store, state, expected)
  })

  it.each([['kept in memory (the default)', undefined], ['none kept (a budget of 0)', 0]])('pages %s: a change batch and the write of its pages read from LevelDB only without them, and the pages hold', async (_name, cacheBytes) => {
    const store = await openStore()
    const state = await openState()
    const model = new Model(Array.from({ length: 2000 }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    const index = makeIndex(store, state, codec, { entries: 100_000, ms: 600_000, idleMs: 600_000 }, cacheBytes)
    await start(index, store)
    const reads = vi.spyOn(state.db, 'getMany')
    await store.apply({ upserts: [model.upsert(1, 1), model.upsert(5000, 1)], deletes: [model.delete(2)] })
    await index.catchUp()
    await index.stop() // writes the pages
    // the build put every page in memory (2,000 rows: a few KiB), so nothing was read; without them both steps read
    if (cacheBytes === undefined) expect(reads).not.toHaveBeenCalled(); else expect(reads.mock.calls.length).toBeGreaterThanOrEqual(2)
    reads.mockRestore()
    const expected = model.replica()
    expectSameTree(index.tree, expected.tree)
    await expectPagesHold(store, state, expected)
  })

  it('lists entries from pages kept in memory as they are after each write', async () => {
    const { store, model, index } = await indexed(500, { entries: 1, ms: 600_000, idleMs: 600_000 })
    for (let round = 1; round <= 3; round++) {
      // each change batch reaches a page write at once (entries: 1), which updates the pages kept in memory
      await store.apply({ upserts: [model.upsert(round * 7, round), model.upsert(1000 + round, 0)], deletes: [model.delete(round * 11)] })
      await index.catchUp()
      const expected = model.replica()
      expectSameTree(index.tree, expected.tree)
      expect(entryView(await index.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))
    }
  })

  it('writes held pages anyway once the oldest entry has waited the longest wait', async () => {
    const { store, state, model, index, built } = await indexed(300, { entries: 1000, ms: 200, idleMs: 50 })
    const release = index.holdPages()
    await store.apply({ upserts: [model.upsert(7, 1)], deletes: [] })
    await index.catchUp()
    await vi.waitFor(async () => { expect(await writtenSeq(state)).toBe(built + 1) }, { timeout: 5000, interval: 20 })
    release()
    await index.stop()
    await expectPagesHold(store, state, model.replica())
  })

  it('keeps its entries waiting when their pages cannot be written, says so, and writes them once it can', async () => {
    const { store, state, model, index, built } = await indexed(200, { entries: 1000, ms: 30 })
    // every chained batch's write to the state db fails while the disk is "full" (the page writes' batch, used again, too)
    let full = true
    const proto = await chainedBatchPrototype(state)
    const realWrite = proto._write
    // (the class is the store's too: only the state db's disk is full)
    vi.spyOn(proto, '_write').mockImplementation(async function (this: { db?: unknown }, options: object) {
      if (full && this.db === state.db) throw new Error('disk full')
      await realWrite.call(this, options)
    })
    await store.apply({ upserts: [model.upsert(1, 1)], deletes: [model.delete(2)] })
    await index.catchUp()
    await vi.waitFor(() => { expect(errors.length).toBeGreaterThan(0) }, { timeout: 5000, interval: 10 })
    const failed = errors.splice(0)
    expect(failed[0]).toBeInstanceOf(IndexWriteError)
    expect(failed[0]).toMatchObject({ code: 'CONVERGE_INDEX_WRITE', message: expect.stringMatching(/disk full/) })
    // nothing lost meanwhile: the tree and lists have the change, the pages do not
    expect(await writtenSeq(state)).toBe(built)
    const expected = model.replica()
    expectSameTree(index.tree, expected.tree)
    expect(entryView(await index.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))

    full = false
    await vi.waitFor(async () => { expect(await writtenSeq(state)).toBe(built + 1) }, { timeout: 5000, interval: 20 })
    errors.splice(0)
    await index.stop()
    vi.restoreAllMocks()
    await expectPagesHold(store, state, expected)
  })

  it('rebuilds when the schema fingerprint changes, and not for a version bump alone', async () => {
    const store = await openStore()
    const state = await openState()
    const model = new Model(Array.from({ length: 1500 }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    const first = makeIndex(store, state)
    await start(first, store)
    const before = first.tree.root
    await first.stop()

    // same shape, new version: same fingerprint, loaded from the index
    const bumped = new RowCodec({ ...ordersSchema, version: ordersSchema.version + 1 })
    expect(bumped.fingerprint).toBe(codec.fingerprint)
    const second = makeIndex(store, state, bumped)
    const loaded = await start(second, store)
    expect(loaded.scans).toBe(0)
    expect(loaded.phases.has('load')).toBe(true)
    expect(second.tree.root).toEqual(before)
    await second.stop()

    // ignoring a column changes every row digest: the index must be rebuilt
    const ignoring = new RowCodec({ ...ordersSchema, ignoreColumns: ['status'] })
    expect(ignoring.fingerprint).not.toBe(codec.fingerprint)
    const third = makeIndex(store, state, ignoring)
    const rebuilt = await start(third, store)
    expect(rebuilt.scans).toBe(1)
    expect(rebuilt.phases.has('scan')).toBe(true)
    const expected = model.replica(ignoring)
    expect(expected.tree.root.sum).not.toBe(before.sum)
    expectSameTree(third.tree, expected.tree)
    expect(entryView(await third.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))

    // rows whose status differs only in the ignored column keep their digest under the new schema
    await store.apply({ upserts: [codec.encodeRow({ ...order(10), status: 'changed' })], deletes: [] })
    await third.catchUp()
    expectSameTree(third.tree, expected.tree)
  })

  it('rebuilds again after a rebuild that did not finish, instead of loading the partial index', async () => {
    const store = await openStore()
    const state = await openState()
    const model = new Model(Array.from({ length: 3000 }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    const first = makeIndex(store, state)
    await start(first, store)
    await first.stop()

    // a forced rebuild aborted after the first scan batch
    const controller = new AbortController()
    const aborted = makeIndex(store, state)
    await expect(aborted.start({ rebuild: true, signal: controller.signal, onProgress: () => { controller.abort() } }))
      .rejects.toMatchObject({ code: 'CONVERGE_ABORTED' })
    await aborted.stop()

    const next = makeIndex(store, state)
    const { scans, phases } = await start(next, store)
    expect(scans).toBe(1)
    expect(phases.has('scan')).toBe(true)
    expectSameTree(next.tree, model.replica().tree)
    expect((await next.list(0, 0)).length).toBe(3000)
  })

  it('handles the same key twice in one batch: upsert then delete, and delete then upsert', async () => {
    const inner = await openStore()
    // the coalescing feed merges a batch with origin 'hold' into the batch after it, so one
    // delivered batch can hold a delete followed by an upsert of the same key
    const store = withFeed(inner, async function * (source) {
      const pending: ChangeBatch['changes'] = []
      for await (const batch of source) {
        if (batch.origin === 'hold') { pending.push(...batch.changes); continue }
        yield { ...batch, changes: [...pending.splice(0), ...batch.changes] }
      }
    })
    const model = new Model(Array.from({ length: 1000 }, (_, i) => i))
    await inner.apply({ upserts: [...model.rows.values()], deletes: [] })
    const state = await openState()
    const index = makeIndex(store, state)
    await index.start()
    expectSameTree(index.tree, model.replica().tree)

    // upsert then delete: an existing key and an absent one (LevelStore records upserts first)
    const upsertThenDelete = await inner.apply({ upserts: [row(10, 1), row(5000)], deletes: [model.delete(10), key(5000)] })
    await index.catchUp()
    expect(index.appliedSeq).toBe(upsertThenDelete.seq)
    expectSameTree(index.tree, model.replica().tree)
    expectSameTree(index.tree, (await storeReplica(inner)).tree)

    // delete then upsert: an existing key, an absent one, and an existing key updated twice
    await inner.apply({ upserts: [], deletes: [key(20), key(6000)], origin: 'hold' })
    await inner.apply({ upserts: [model.upsert(20, 1), model.upsert(6000), row(30, 1), model.upsert(30, 2)], deletes: [] })
    await index.catchUp()
    expectSameTree(index.tree, model.replica().tree)
    expectSameTree(index.tree, (await storeReplica(inner)).tree)
    const expected = model.replica()
    expect(entryView(await index.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))

    // the index entries (not only the tree) are right: a restart loads the same tree from them
    await index.stop()
    const again = makeIndex(store, state)
    const phases = new Set<string>()
    await again.start({ onProgress: p => phases.add(p.phase) })
    expect([...phases]).toEqual(['load'])
    expectSameTree(again.tree, expected.tree)
  })

  it('takes a fix into the tree at once, and the change feed replaying it later (even after an older batch read before the fix) leaves the index right', async () => {
    const inner = await openStore()
    // a feed held shut while `gate` is set: the fix is taken before the feed brings anything back
    let gate: Promise<void> | undefined
    const store = withFeed(inner, async function * (source) {
      for await (const batch of source) { await gate; yield batch }
    })
    const model = new Model(Array.from({ length: 1000 }, (_, i) => i))
    await inner.apply({ upserts: [...model.rows.values()], deletes: [] })
    const index = makeIndex(store, await openState())
    await index.start()
    const seq = index.appliedSeq
    let open!: () => void
    gate = new Promise(resolve => { open = resolve })
    // a local write, then a fix over the same key: the feed holds the older batch (the row at version 1) while the fix lands
    await inner.apply({ upserts: [model.upsert(7, 1)], deletes: [] })
    const fix = { upserts: [model.upsert(7, 2), model.upsert(4000)], deletes: [model.delete(8)] }
    await inner.apply({ ...fix, origin: 'converge' })
    expect(await index.takeApplied(fix)).toBe(true)
    expectSameTree(index.tree, model.replica().tree)
    expect(index.appliedSeq).toBe(seq)
    // the feed resumes: the older batch sets key 7 back to version 1 for a moment, the fix's own batch sets it right again
    open()
    await index.catchUp()
    expect(index.appliedSeq).toBe(seq + 2)
    const expected = model.replica()
    expectSameTree(index.tree, expected.tree)
    expect(entryView(await index.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))
  })

  it('a batch delivered twice is applied once', async () => {
    const inner = await openStore()
    // a feed that delivers every batch twice
    const delivered: number[] = []
    const store = withFeed(inner, async function * (source) {
      for await (const batch of source) { delivered.push(batch.seq); yield batch; delivered.push(batch.seq); yield batch }
    })
    const model = new Model(Array.from({ length: 1200 }, (_, i) => i))
    await inner.apply({ upserts: [...model.rows.values()], deletes: [] })
    const index = makeIndex(store, await openState())
    let applied = 0
    index.on('change', () => { applied++ })
    await index.start()
    const startChanges = applied

    await inner.apply({ upserts: [model.upsert(1, 1), model.upsert(9000)], deletes: [model.delete(2)] })
    await inner.apply({ upserts: [row(3, 1)], deletes: [model.delete(3), model.delete(9001)] })
    await inner.apply({ upserts: [model.upsert(4, 5)], deletes: [] })
    await index.catchUp()
    // let the duplicate of the last batch go through as well
    await vi.waitFor(() => { expect(delivered.filter(seq => seq >= 2)).toEqual([2, 2, 3, 3, 4, 4]) })
    expect(applied - startChanges).toBe(3)
    const expected = model.replica()
    expectSameTree(index.tree, expected.tree)
    expect(entryView(await index.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))
  })

  it('replays already-applied changes after a restart without changing the tree', async () => {
    const inner = await openStore()
    const model = new Model(Array.from({ length: 1200 }, (_, i) => i))
    await inner.apply({ upserts: [...model.rows.values()], deletes: [] })
    let state = await openState()
    const first = makeIndex(inner, state)
    await first.start()
    for (let i = 0; i < 5; i++) await inner.apply({ upserts: [model.upsert(10 + i, 1), model.upsert(8000 + i)], deletes: [model.delete(100 + i)] })
    await first.catchUp()
    expect(first.appliedSeq).toBe(6)
    const expected = model.replica()
    expectSameTree(first.tree, expected.tree)
    await first.stop()
    await state.close()

    // a feed that starts three batches before the index's seq: those are applied a second time
    const replayed: number[] = []
    const rewinding: ReplicaStore = {
      ...withFeed(inner, source => source),
      changes: options => (async function * () {
        for await (const batch of inner.changes({ ...options, since: Math.max(0, options.since - 3) })) { replayed.push(batch.seq); yield batch }
      })()
    }
    state = await openStateAt(join(dir, 'state'))
    const second = makeIndex(rewinding, state)
    let changes = 0
    second.on('change', () => { changes++ })
    const phases = new Set<string>()
    await second.start({ onProgress: p => phases.add(p.phase) })
    expect([...phases]).toEqual(['load'])
    // the replayed batches arrive and are skipped: only the loaded tree counts as a change
    await vi.waitFor(() => { expect(replayed).toEqual([4, 5, 6]) })
    expect(changes).toBe(1)
    expect(second.appliedSeq).toBe(6)
    expectSameTree(second.tree, expected.tree)
    expect(entryView(await second.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))
  })

  /** The levels of the page records the index holds. */
  /** The class of the state db's chained batches (classic-level's), whose implementation methods every batch write goes through. */
  async function chainedBatchPrototype (state: StateDb): Promise<{ _put: (k: Uint8Array, v: Uint8Array) => void, _del: (k: Uint8Array) => void, _write: (options: object) => Promise<void> }> {
    const batch = state.db.batch()
    await batch.close()
    return Object.getPrototypeOf(batch)
  }

  async function pageLevels (state: StateDb): Promise<number[]> {
    const levels = new Set<number>()
    for await (const k of state.sublevel('index:orders:p').keys()) levels.add(k[0]!)
    return [...levels].sort()
  }

  it('cuts its pages again at the new depth when the tree changes depth, and loads them after a restart', async () => {
    const store = await openStore()
    const state = await openState()
    const model = new Model(Array.from({ length: 100 }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    const index = makeIndex(store, state)
    await start(index, store)
    expect(index.tree.depth).toBe(1)
    expect(await pageLevels(state)).toEqual([1])
    for (let from = 100; from < 4000; from += 500) {
      await store.apply({ upserts: Array.from({ length: 500 }, (_, i) => model.upsert(from + i)), deletes: [] })
    }
    await index.catchUp()
    await vi.waitFor(() => { expect(index.tree.depth).toBe(2) })
    const expected = model.replica()
    expectSameTree(index.tree, expected.tree)
    expect(await pageLevels(state)).toEqual([2])
    for (const i of [0, 7, 0xa5, 0xff]) expect(entryView(await index.list(2, i))).toEqual(entryView(await expected.list(2, i)))
    expect(entryView(await index.list(1, 3))).toEqual(entryView(await expected.list(1, 3)))
    expect(entryView(await index.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))
    await index.stop()

    const again = makeIndex(store, state)
    const { scans } = await start(again, store)
    expect(scans).toBe(0)
    expectSameTree(again.tree, expected.tree)
    await store.apply({ upserts: [model.upsert(5, 1)], deletes: [model.delete(6)] })
    await again.catchUp()
    expectSameTree(again.tree, model.replica().tree)
  })

  it('builds a large store\'s tree without holding a pair per row, at the ideal depth, or one level shallow and deepened once changes come', async () => {
    const store = await openStore()
    const model = new Model(Array.from({ length: 20_000 }, (_, i) => i))
    const rows = [...model.rows.values()]
    for (let from = 0; from < rows.length; from += 5000) await store.apply({ upserts: rows.slice(from, from + 5000), deletes: [] })
    const expected = model.replica()
    expect(expected.tree.depth).toBe(3)
    // small limits stand for a million pairs and a gathering tree of depth 5: 64 pairs, then a tree of depth 4 (ideal 3) or 2 (one level shallow)
    for (const [name, storeBacked] of [['own entries', false], ['store-backed', true]] as const) {
      for (const fineDepth of [4, 2]) {
        const index = makeIndexWith(store, await openStateAt(join(dir, `state-${name}-${fineDepth}`)), { pairLimit: 64, fineDepth }, storeBacked)
        await index.start()
        expect(index.tree.rowCount, name).toBe(20_000)
        expect(index.tree.depth, `${name}, gathered at ${fineDepth}`).toBe(Math.min(3, fineDepth))
        expectSameTree(index.tree, expected.tree)
        if (!storeBacked) for (const i of [0, 0x5a, 0xff]) expect(entryView(await index.list(2, i))).toEqual(entryView(await expected.list(2, i)))
        await index.stop()
      }
    }
    // shallow by a level with twice the rows a level holds: the next change deepens it, the count expected this time
    const state = await openStateAt(join(dir, 'state-deepened'))
    const index = makeIndexWith(store, state, { pairLimit: 64, fineDepth: 2 })
    await index.start()
    expect(index.tree.depth).toBe(2)
    await store.apply({ upserts: [model.upsert(5, 1)], deletes: [model.delete(6)] })
    await index.catchUp()
    await vi.waitFor(() => { expect(index.tree.depth).toBe(3) })
    expectSameTree(index.tree, model.replica().tree)
    expect(await pageLevels(state)).toEqual([3])
    // started again, it expects the count of its last full scan: the tree is at the ideal depth at once, the pages left as they are
    await index.stop()
    const again = makeIndexWith(store, state, { pairLimit: 64, fineDepth: 2 })
    const { scans } = await start(again, store)
    expect(scans).toBe(0)
    expect(again.tree.depth).toBe(3)
    expectSameTree(again.tree, model.replica().tree)
    expect(await pageLevels(state)).toEqual([3])
    // a store-backed index the same: its second start's scan builds at the ideal depth
    const backedState = await openStateAt(join(dir, 'state-backed-again'))
    for (const expected of [2, 3]) {
      const backed = makeIndexWith(store, backedState, { pairLimit: 64, fineDepth: 2 }, true)
      await backed.start()
      expect(backed.tree.depth, expected === 2 ? 'first start: no count to expect' : 'second start').toBe(expected)
      expectSameTree(backed.tree, model.replica().tree)
      await backed.stop()
    }
  })

  it('rebuilds an index of the earlier layout (a record per row) and drops its records', async () => {
    const store = await openStore()
    const state = await openState()
    const model = new Model(Array.from({ length: 500 }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    // what layout 1 left: its meta (no layout field) and one record per row
    await state.sublevel('index:orders:m').put(new TextEncoder().encode('meta'), new TextEncoder().encode(JSON.stringify({ fp: codec.fingerprint, storeId: store.id, seq: await store.lastSeq(), complete: true })))
    const legacy = state.sublevel('index:orders:e')
    await legacy.put(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9), Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 1))
    const index = makeIndex(store, state)
    const { scans } = await start(index, store)
    expect(scans).toBe(1)
    expectSameTree(index.tree, model.replica().tree)
    expect(await legacy.keys().all()).toEqual([])
  })

  it('drops the pages of a write that failed midway, so the next write carries none of them', async () => {
    const store = await openStore()
    const state = await openState()
    const model = new Model(Array.from({ length: 600 }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    // no pages kept in memory, and no write until asked: the write reads every page it changes from LevelDB
    const index = makeIndex(store, state, codec, { entries: 100_000, ms: 600_000, idleMs: 600_000 }, 0)
    await start(index, store)
    const pages = state.sublevel('index:orders:p')
    const pageOf = new Map<string, string>()
    for await (const [k, v] of pages.iterator()) for (const e of decodePage(v)) pageOf.set(hex(e.key), hex(k))
    // two changes on two pages, the first page's first: the write puts that page, then meets the second one damaged
    const a = 1
    const b = [...model.rows.keys()].find(i => pageOf.get(hex(key(i))) !== pageOf.get(hex(key(a))))!
    const damaged = Buffer.from(pageOf.get(hex(key(b)))!, 'hex')
    await store.apply({ upserts: [model.upsert(a, 1)], deletes: [] })
    await store.apply({ upserts: [model.upsert(b, 1)], deletes: [] })
    await index.catchUp()
    const whole = (await pages.get(damaged))!
    // cut inside its first entry: any read of it fails
    await pages.put(damaged, whole.subarray(0, 10))
    // loadTree writes what waits before it reads the pages
    await expect(index.loadTree()).rejects.toMatchObject({ code: 'CONVERGE_INDEX_PAGE_FORMAT' })
    await pages.put(damaged, whole)
    // the first row back as its page holds it: the next write leaves that page alone, so a put of it left over
    // from the failed write would be all that changed it, back to the row the store no longer has
    await store.apply({ upserts: [model.upsert(a, 0)], deletes: [] })
    await index.catchUp()
    await index.loadTree()
    expectSameTree(index.tree, model.replica().tree)
    await index.stop()
    await expectPagesHold(store, state, model.replica())
  })

  it('rebuilds from the store when it finds a page damaged', async () => {
    const store = await openStore()
    const state = await openState()
    const model = new Model(Array.from({ length: 600 }, (_, i) => i))
    await store.apply({ upserts: [...model.rows.values()], deletes: [] })
    // no pages kept in memory: the damage is behind the index's back, only a read of the pages meets it
    const index = makeIndex(store, state, codec, undefined, 0)
    await start(index, store)
    const rescans: unknown[] = []
    index.on('rescan', err => rescans.push(err))
    // every page cut short: the next change lands on a damaged one
    const pages = state.sublevel('index:orders:p')
    for await (const [k, v] of pages.iterator()) await pages.put(k, v.subarray(0, v.length - 1))
    await store.apply({ upserts: [model.upsert(3, 2)], deletes: [] })
    await vi.waitFor(() => { expect(rescans).toHaveLength(1) })
    expect(rescans[0]).toMatchObject({ code: 'CONVERGE_INDEX_PAGE_FORMAT' })
    await index.catchUp()
    const expected = model.replica()
    await vi.waitFor(() => { expectSameTree(index.tree, expected.tree) })
    expect(entryView(await index.list(0, 0))).toEqual(entryView(await expected.list(0, 0)))
  })
})
