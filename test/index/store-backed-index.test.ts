import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import type { MerkleTree } from '../../src/tree/merkle-tree.ts'
import { orderRow, ordersCodec as codec } from '../../cluster/orders.ts'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

function expectSameTree (a: MerkleTree, b: MerkleTree): void {
  expect(a.depth).toBe(b.depth)
  for (let level = 0; level <= a.depth; level++) {
    for (let i = 0; i < 16 ** level; i++) {
      if (a.sum(level, i) !== b.sum(level, i) || a.count(level, i) !== b.count(level, i)) throw new Error(`node ${level}:${i} differs`)
    }
  }
}

/** The embedded store is its own digest index: the tree comes from a snapshot scan, nothing is written to the state db. */
describe('DigestIndex over a key-hash-ordered store', () => {
  let dir: string
  let store: LevelStore
  let state: StateDb
  const indexes: DigestIndex[] = []

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'converge-sbi-'))
    store = new LevelStore({ path: join(dir, 'store'), codec })
    await store.open()
    state = new StateDb(join(dir, 'state'))
    await state.open()
  })
  afterEach(async () => {
    for (const i of indexes.splice(0)) await i.stop()
    await store.close()
    await state.close()
    await rm(dir, { recursive: true, force: true })
  })

  const start = async (): Promise<DigestIndex> => {
    const index = new DigestIndex({ dataset: 'orders', codec, store, state })
    indexes.push(index)
    await index.start()
    return index
  }
  const truth = async (): Promise<MemoryReplica> => {
    const rows: Uint8Array[] = []
    for await (const batch of store.scan()) for (const r of batch) rows.push(r.row)
    return new MemoryReplica(codec, rows)
  }

  it('builds the tree a MemoryReplica of the same rows builds, and lists nodes the same', async () => {
    expect(store.supports.keyHashOrder).toBe(true)
    await store.apply({ upserts: Array.from({ length: 3000 }, (_, i) => codec.encodeRow(orderRow(i))), deletes: [] })
    const index = await start()
    const want = await truth()
    expectSameTree(index.tree, want.tree)
    for (const [level, node] of [[1, 3], [2, 200], [index.tree.depth, 7]] as const) {
      expect((await index.list(level, node)).map(e => hex(e.key))).toEqual((await want.list(level, node)).map(e => hex(e.key)))
    }
    // no entries of its own: the one record is the row count its next start expects
    const written: Array<[string, string]> = []
    for await (const [k, v] of state.db.iterator()) written.push([Buffer.from(k).toString(), Buffer.from(v).toString()])
    expect(written).toEqual([['!index:orders:m!rows', '3000']])
  })

  it('follows changes, including one key changed twice in a batch, from the before-images', async () => {
    await store.apply({ upserts: Array.from({ length: 2000 }, (_, i) => codec.encodeRow(orderRow(i))), deletes: [] })
    const index = await start()
    await store.apply({ upserts: [codec.encodeRow(orderRow(5, 1)), codec.encodeRow(orderRow(9000))], deletes: [codec.encodeKey({ order_id: 6 })] })
    // the same key upserted and deleted in one batch: the store applies puts, then deletes
    await store.apply({ upserts: [codec.encodeRow(orderRow(7, 2))], deletes: [codec.encodeKey({ order_id: 7 }), codec.encodeKey({ order_id: 123_456 })] })
    await index.catchUp()
    expectSameTree(index.tree, (await truth()).tree)
  })

  it('takes writes made during its start scan exactly once', async () => {
    await store.apply({ upserts: Array.from({ length: 20_000 }, (_, i) => codec.encodeRow(orderRow(i))), deletes: [] })
    const writes = (async () => {
      for (let i = 0; i < 20; i++) await store.apply({ upserts: [codec.encodeRow(orderRow(i * 7, i + 1)), codec.encodeRow(orderRow(50_000 + i))], deletes: [codec.encodeKey({ order_id: 10_000 + i })] })
    })()
    const index = await start()
    await writes
    await index.catchUp()
    expectSameTree(index.tree, (await truth()).tree)
  })

  it('after a restart rescans and includes what changed while it was stopped', async () => {
    await store.apply({ upserts: Array.from({ length: 1500 }, (_, i) => codec.encodeRow(orderRow(i))), deletes: [] })
    const first = await start()
    await first.stop()
    await store.apply({ upserts: [codec.encodeRow(orderRow(1, 3))], deletes: [codec.encodeKey({ order_id: 2 })] })
    const second = await start()
    expectSameTree(second.tree, (await truth()).tree)
    expect(second.appliedSeq).toBe(await store.lastSeq())
  })
})
