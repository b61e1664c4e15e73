/**
 * The suspects a replica keeps (index/suspects.ts): keys written here lately
 * by others than the agent's own fixes, with their entries and rows. First
 * SuspectKeys alone, then a DigestIndex over a real LevelDB state db and a
 * LevelDB store noting the writes its change feed brings, and settling those
 * a fix overwrites.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { entryHash } from '../../src/digest/hash.ts'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { SuspectKeys, SUSPECT_ROW_BYTES, SUSPECTS_LIMIT } from '../../src/index/suspects.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { FIX_ORIGIN, type ChangeBatch, type ReplicaStore } from '../../src/stores/replica-store.ts'
import type { Suspect } from '../../src/sync/by-keys.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import { ordersCodec as codec, order } from '../helpers/datasets.ts'
import { withFeed } from '../helpers/feed-store.ts'

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
const row = (id: number, version = 0): Uint8Array => codec.encodeRow(order(id, version))
const key = (id: number): Uint8Array => codec.encodeKey({ id })
const entryOf = (r: Uint8Array): bigint => entryHash(codec.keyHash(codec.keyOfEncodedRow(r)), codec.rowDigest(r))
const ids = (suspects: readonly Suspect[] | undefined): number[] => (suspects ?? []).map(s => codec.decodeKey(s.key).id as number).sort((a, b) => a - b)

describe('SuspectKeys', () => {
  it('notes keys with their entries and rows; take gives them all; a key noted again keeps only its newest note', () => {
    const s = new SuspectKeys()
    expect(s.take(10)).toBeUndefined()
    s.note(key(1), row(1), entryOf(row(1)))
    s.note(key(2), null, undefined)
    s.note(key(1), row(1, 1), entryOf(row(1, 1)))
    expect(s.size).toBe(2)
    const taken = s.take(10)!
    expect(ids(taken)).toEqual([1, 2])
    const one = taken.find(t => hex(t.key) === hex(key(1)))!
    expect(one.entry).toBe(entryOf(row(1, 1)))
    expect(hex(one.row!)).toBe(hex(row(1, 1)))
    const two = taken.find(t => hex(t.key) === hex(key(2)))!
    expect(two.entry).toBeUndefined()
    expect(two.row).toBeNull()
    // the same key in another buffer is the same suspect
    s.note(Uint8Array.from(key(2)), row(2), entryOf(row(2)))
    expect(s.size).toBe(2)
    // take does not empty the set
    expect(ids(s.take(10))).toEqual([1, 2])
  })

  it('settle drops a key a fix wrote; settling a key not noted changes nothing', () => {
    const s = new SuspectKeys()
    for (const id of [1, 2, 3]) s.note(key(id), row(id), entryOf(row(id)))
    s.settle(key(2))
    s.settle(key(99))
    expect(ids(s.take(10))).toEqual([1, 3])
    s.settle(key(1)); s.settle(key(3))
    expect(s.size).toBe(0)
    expect(s.take(10)).toBeUndefined()
    // settling an empty set is fine
    s.settle(key(1))
    expect(s.size).toBe(0)
  })

  it('answered drops what was asked about, but not a suspect noted again after it was taken', () => {
    const s = new SuspectKeys()
    for (const id of [1, 2, 3, 4]) s.note(key(id), row(id), entryOf(row(id)))
    const asked = s.take(10)!
    // written again meanwhile: a newer note of the same key
    s.note(key(2), row(2, 1), entryOf(row(2, 1)))
    // a key first noted meanwhile
    s.note(key(5), null, undefined)
    // a key settled meanwhile and then noted again
    s.settle(key(3))
    s.note(key(3), row(3, 2), entryOf(row(3, 2)))
    s.answered(asked)
    expect(ids(s.take(10))).toEqual([2, 3, 5])
    expect(s.take(10)!.find(t => hex(t.key) === hex(key(2)))!.entry).toBe(entryOf(row(2, 1)))
    // answering the same list twice changes nothing more
    s.answered(asked)
    expect(s.size).toBe(3)
    s.answered(s.take(10)!)
    expect(s.size).toBe(0)
  })

  it('clear empties the set', () => {
    const s = new SuspectKeys()
    for (const id of [1, 2, 3]) s.note(key(id), row(id), entryOf(row(id)))
    s.clear()
    expect(s.size).toBe(0)
    expect(s.take(10)).toBeUndefined()
    s.note(key(4), row(4), entryOf(row(4)))
    expect(ids(s.take(10))).toEqual([4])
  })

  it('take(max) gives nothing while the set holds more than max', () => {
    const s = new SuspectKeys()
    for (const id of [1, 2, 3]) s.note(key(id), row(id), entryOf(row(id)))
    expect(s.take(2)).toBeUndefined()
    expect(s.take(3)).toHaveLength(3)
    s.settle(key(1))
    expect(s.take(2)).toHaveLength(2)
  })

  it('past its limit the set is dropped and stays unusable, whatever is noted, until clear', () => {
    expect(SUSPECTS_LIMIT).toBe(100_000)
    const s = new SuspectKeys(3)
    for (const id of [1, 2, 3]) s.note(key(id), row(id), entryOf(row(id)))
    expect(s.take(10)).toHaveLength(3)
    s.note(key(4), row(4), entryOf(row(4)))
    expect(s.size).toBe(0)
    expect(s.take(10)).toBeUndefined()
    // notes after the overflow are not taken either: the set is incomplete
    s.note(key(5), row(5), entryOf(row(5)))
    expect(s.size).toBe(0)
    expect(s.take(10)).toBeUndefined()
    s.settle(key(5))
    s.answered([{ key: key(5), entry: undefined }])
    expect(s.take(10)).toBeUndefined()
    // level again: usable
    s.clear()
    s.note(key(6), row(6), entryOf(row(6)))
    expect(ids(s.take(10))).toEqual([6])
    // noting the same key again does not count against the limit
    for (let i = 0; i < 10; i++) s.note(key(6), row(6, i), entryOf(row(6, i)))
    expect(ids(s.take(10))).toEqual([6])
  })

  it('keeps rows up to SUSPECT_ROW_BYTES: beyond it a suspect has its entry but no row, until rows are let go', () => {
    expect(SUSPECT_ROW_BYTES).toBe(32 * 1024 * 1024)
    // four rows fill the budget exactly (the bytes are not looked at; one buffer serves every note)
    const big = new Uint8Array(SUSPECT_ROW_BYTES / 4)
    const s = new SuspectKeys()
    const rowOf = (id: number): Suspect => s.take(100)!.find(t => hex(t.key) === hex(key(id)))!
    for (const id of [1, 2, 3, 4]) s.note(key(id), big, BigInt(id))
    for (const id of [1, 2, 3, 4]) expect(rowOf(id).row).toBe(big)
    s.note(key(5), big, 5n)
    expect(rowOf(5).entry).toBe(5n)
    expect(rowOf(5).row).toBeUndefined()
    expect('row' in rowOf(5)).toBe(false)
    // a small row beyond the budget is not kept either; a deletion is always kept (it holds no bytes)
    s.note(key(6), row(6), entryOf(row(6)))
    expect(rowOf(6).row).toBeUndefined()
    s.note(key(7), null, undefined)
    expect(rowOf(7).row).toBeNull()
    // settling a suspect with a row lets its bytes go
    s.settle(key(1))
    s.note(key(8), big, 8n)
    expect(rowOf(8).row).toBe(big)
    s.note(key(9), row(9), entryOf(row(9)))
    expect(rowOf(9).row).toBeUndefined()
    // a key noted again gives back its row's bytes (whether or not the new row is kept: see the test below)
    s.note(key(2), null, undefined)
    s.note(key(10), new Uint8Array(SUSPECT_ROW_BYTES / 4 - 1000), 10n)
    expect(rowOf(10).row).toBeDefined()
    s.note(key(3), row(3), entryOf(row(3)))
    s.note(key(11), big, 11n)
    expect(rowOf(11).row).toBe(big)
    // answered lets go of what it drops
    s.answered(s.take(100)!)
    expect(s.size).toBe(0)
    for (const id of [21, 22, 23, 24]) s.note(key(id), big, BigInt(id))
    for (const id of [21, 22, 23, 24]) expect(rowOf(id).row).toBe(big)
    // and so does clear
    s.clear()
    for (const id of [15, 16, 17, 18]) s.note(key(id), big, BigInt(id))
    for (const id of [15, 16, 17, 18]) expect(rowOf(id).row).toBe(big)
    // and an overflow (the set starts over when cleared)
    const small = new SuspectKeys(4)
    for (const id of [1, 2, 3, 4, 5]) small.note(key(id), big, BigInt(id))
    expect(small.take(100)).toBeUndefined()
    small.clear()
    for (const id of [1, 2, 3, 4]) small.note(key(id), big, BigInt(id))
    expect(small.take(100)!.every(t => t.row === big)).toBe(true)
  })
})


describe.each([
  { kind: 'store-backed (the LevelDB store is its own index)', keepEntries: false },
  { kind: 'with its own pages in the state db', keepEntries: true }
])('a DigestIndex $kind', ({ keepEntries }) => {
  let dir: string
  const cleanup: Array<() => Promise<void>> = []
  const errors: unknown[] = []

  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'converge-suspects-')) })
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn()
    await rm(dir, { recursive: true, force: true })
    expect(errors.splice(0)).toEqual([])
  })

  async function setUp (rows: number, feed?: Parameters<typeof withFeed>[1]): Promise<{ store: LevelStore, index: DigestIndex }> {
    const store = new LevelStore({ path: join(dir, 'store'), codec })
    await store.open()
    cleanup.push(async () => { await store.close() })
    const state = new StateDb(join(dir, 'state'))
    await state.open()
    cleanup.push(async () => { await state.close() })
    await store.apply({ upserts: Array.from({ length: rows }, (_, id) => row(id)), deletes: [], origin: 'seed' })
    const index = new DigestIndex({ dataset: 'orders', codec, store: feed === undefined ? store : withFeed(store, feed, { keyHashOrder: true }), state, keepEntries })
    index.on('error', err => { errors.push(err) })
    cleanup.push(async () => { await index.stop() })
    await index.start()
    return { store, index }
  }

  /** Each suspect's entry is the one the index lists for its key (none for a key it does not hold), and its row is the store's. */
  async function expectAsIndexed (index: DigestIndex, store: LevelStore, suspects: readonly Suspect[]): Promise<void> {
    const listed = new Map((await index.list(0, 0)).map(e => [hex(e.key), e.entry]))
    const now = await store.get(suspects.map(s => s.key))
    suspects.forEach((s, i) => {
      expect(s.entry).toBe(listed.get(hex(s.key)))
      const r = now[i]
      expect(s.row === null || s.row === undefined ? s.row : hex(s.row)).toBe(r === undefined ? null : hex(r))
      if (r !== undefined) expect(s.entry).toBe(entryOf(r))
    })
  }

  it('notes nothing for what the store held when it started', async () => {
    const { index } = await setUp(500)
    expect(index.tree.rowCount).toBe(500)
    expect(index.suspects.size).toBe(0)
  })

  it('notes the keys others write, with the entries the tree holds and the rows as written; a fix settles them', async () => {
    const { store, index } = await setUp(1000)
    await store.apply({ upserts: [row(5, 1), row(6, 1), row(2000)], deletes: [key(7), key(8)] })
    await store.apply({ upserts: [row(9, 2), row(3000)], deletes: [key(4000)], origin: 'replication' })
    // the same key twice in one batch: the last change counts
    await store.apply({ upserts: [row(10, 1)], deletes: [key(11)] })
    await store.apply({ upserts: [row(11, 3)], deletes: [key(10)] })
    await index.catchUp()
    const taken = index.suspects.take(1000)!
    expect(ids(taken)).toEqual([5, 6, 7, 8, 9, 10, 11, 2000, 3000, 4000])
    await expectAsIndexed(index, store, taken)
    // the tree is the store's
    const all: Uint8Array[] = []
    for await (const batch of store.scan()) for (const { row: r } of batch) all.push(r)
    expect(index.tree.root).toEqual(new MemoryReplica(codec, all).tree.root)

    // the agent's fix over some of them: written with FIX_ORIGIN, taken into the index
    const fix = { upserts: [row(5), row(7), row(8)], deletes: [key(2000), key(3000)] }
    await store.apply({ ...fix, origin: FIX_ORIGIN })
    const tookIn = await index.takeApplied(fix)
    // an index with pages takes the fix at once; a store-backed one from its feed
    expect(tookIn).toBe(keepEntries)
    if (keepEntries) expect(ids(index.suspects.take(1000))).toEqual([6, 9, 10, 11, 4000])
    await index.catchUp()
    expect(ids(index.suspects.take(1000))).toEqual([6, 9, 10, 11, 4000])
    await expectAsIndexed(index, store, index.suspects.take(1000)!)

    // a fix that takes in nothing the index had not (its replay from the feed) still settles; others' writes go on being noted
    await store.apply({ upserts: [row(6)], deletes: [], origin: FIX_ORIGIN })
    await store.apply({ upserts: [row(12, 1)], deletes: [] })
    await index.catchUp()
    expect(ids(index.suspects.take(1000))).toEqual([9, 10, 11, 12, 4000])
  })

  it('a write that lands while its fix is taken in ahead of the feed ends settled once the feed brings the fix back', async () => {
    let gate: Promise<void> | undefined
    const { store, index } = await setUp(500, async function * (source) { for await (const batch of source) { await gate; yield batch } })
    let open!: () => void
    gate = new Promise(resolve => { open = resolve })
    // someone writes key 7; the feed holds it back while the agent's fix over key 7 lands
    await store.apply({ upserts: [row(7, 1), row(8, 1)], deletes: [] })
    const fix = { upserts: [row(7)], deletes: [] }
    await store.apply({ ...fix, origin: FIX_ORIGIN })
    await index.takeApplied(fix)
    open()
    await index.catchUp()
    // the older write is noted when it comes, and the fix's own batch settles key 7 again; key 8 stays suspect
    expect(ids(index.suspects.take(100))).toEqual([8])
    await expectAsIndexed(index, store, index.suspects.take(100)!)
  })

  it('a suspect written again after a sync took it survives the answer; the others go', async () => {
    const { store, index } = await setUp(300)
    await store.apply({ upserts: [row(1, 1), row(2, 1), row(3, 1)], deletes: [] })
    await index.catchUp()
    const asked = index.suspects.take(100)!
    await store.apply({ upserts: [row(2, 2)], deletes: [] })
    await index.catchUp()
    index.suspects.answered(asked)
    const left = index.suspects.take(100)!
    expect(ids(left)).toEqual([2])
    expect(left[0]!.entry).toBe(entryOf(row(2, 2)))
  })
})
