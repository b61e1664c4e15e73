import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { PageBulkWriter, sortByU64 } from '../../src/index/bulk-writer.ts'
import { decodePage, encodeEntry, pageKey } from '../../src/index/page.ts'
import { nodeOfHigh32 } from '../../src/tree/merkle-tree.ts'
import { StateDb } from '../../src/index/state-db.ts'

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
const be64 = (v: bigint): string => v.toString(16).padStart(16, '0')

describe('sortByU64', () => {
  it('orders 64-bit values as unsigned numbers, ascending or descending, ties in their first order', () => {
    fc.assert(fc.property(fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { maxLength: 300 }), fc.array(fc.nat(5)), fc.boolean(), (values, dupAt, descending) => {
      // some values repeated, so the ties are there to keep in order
      const all = [...values, ...dupAt.filter(i => i < values.length).map(i => values[i]!)]
      const words = new BigUint64Array(all)
      const order = [...sortByU64(new Uint32Array(words.buffer), all.length, descending).order]
      const sign = descending ? -1 : 1
      const expected = all.map((v, i) => [v, i] as const).sort((a, b) => (a[0] < b[0] ? -sign : a[0] > b[0] ? sign : a[1] - b[1])).map(([, i]) => i)
      expect(order).toEqual(expected)
    }))
  })

  it('orders values that share their top 16 bits (a partition) and values that differ only there', () => {
    const shared = Array.from({ length: 500 }, (_, i) => (0xabcdn << 48n) | BigInt(i * 7919 % 500))
    const top = Array.from({ length: 500 }, (_, i) => BigInt((i * 31) % 500) << 48n)
    for (const all of [shared, top]) {
      const order = sortByU64(new Uint32Array(new BigUint64Array(all).buffer), all.length).order
      const sorted = [...order].map(i => all[i]!)
      expect(sorted).toEqual([...all].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))
    }
  })

  it('orders large sets of hashes, and sets bunched too tightly for buckets, as a plain sort does', () => {
    let seed = 7
    const random32 = (): bigint => { seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0; return BigInt(seed) }
    const hash = (): bigint => (random32() << 32n) | random32()
    const sets = {
      // spread like key hashes: buckets of about a dozen values each
      hashes: Array.from({ length: 100_000 }, hash),
      // a partition's 16 bits on every hash (buckets cut from the bits below them), and one hash a hundred times (ties keep their first order)
      partition: Array.from({ length: 50_000 }, (_, i) => (i % 500 === 0 ? 0xabcd000000000000n : (0xabcdn << 48n) | (hash() >> 16n))),
      // one high word for all: no bits left to cut buckets from
      oneHigh: Array.from({ length: 20_000 }, () => (0x12345678n << 32n) | random32()),
      // half of them in one bucket, far past its limit
      bunched: Array.from({ length: 20_000 }, (_, i) => (i % 2 === 0 ? (0x80000000n << 32n) | random32() : hash()))
    }
    for (const [name, all] of Object.entries(sets)) {
      for (const descending of [false, true]) {
        const order = sortByU64(new Uint32Array(new BigUint64Array(all).buffer), all.length, descending).order
        const sign = descending ? -1 : 1
        const expected = all.map((v, i) => [v, i] as const).sort((a, b) => (a[0] < b[0] ? -sign : a[0] > b[0] ? sign : a[1] - b[1])).map(([, i]) => i)
        expect(Array.from(order), `${name}${descending ? ', descending' : ''}`).toEqual(expected)
      }
      // and the values themselves in that order, halves apart, beside it
      const sorted = sortByU64(new Uint32Array(new BigUint64Array(all).buffer), all.length)
      const values = Array.from(sorted.order, (_, k) => (BigInt(sorted.highs[k]!) << 32n) | BigInt(sorted.lows[k]!))
      expect(values, name).toEqual(Array.from(sorted.order, i => all[i]!))
    }
  })
})

describe('PageBulkWriter', () => {
  let dir: string
  let state: StateDb
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'converge-bulk-'))
    state = new StateDb(join(dir, 'state'))
    await state.open()
  })
  afterEach(async () => {
    await state.close()
    await rm(dir, { recursive: true, force: true })
  })

  /** Entries in random hash order, keys of varying length (short ones kept in the entry's record, long ones apart), some hashes shared. */
  const entries = (n: number): Array<{ hash: bigint, key: Uint8Array, value: bigint }> => Array.from({ length: n }, (_, i) => ({
    hash: i % 97 === 5 ? 0xabcdef0123456789n : (BigInt(Math.imul(i + 1, 0x9e3779b1) >>> 0) << 32n) | BigInt(Math.imul(i + 7, 0x85ebca6b) >>> 0),
    key: Uint8Array.from({ length: 1 + (i % 40) }, (_, j) => (i + j * 3) & 0xff),
    value: BigInt(i) * 0x100000001n
  }))

  /** The pages a plain sort would give: level, index, then each entry as page.ts encodes it. */
  function expectedPages (all: ReturnType<typeof entries>, level: number): string[] {
    const sorted = [...all].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : Buffer.compare(a.key, b.key)))
    const pages = new Map<number, string>()
    for (const e of sorted) {
      const page = nodeOfHigh32(Number(e.hash >> 32n), level)
      pages.set(page, (pages.get(page) ?? '') + hex(encodeEntry(e.hash, e.value, e.key)))
    }
    return [...pages].sort((a, b) => a[0] - b[0]).map(([page, bytes]) => `${hex(pageKey(level, page))}=${bytes}`)
  }

  async function contents (sub: ReturnType<StateDb['sublevel']>): Promise<string[]> {
    const out: string[] = []
    for await (const [k, v] of sub.iterator()) out.push(`${hex(k)}=${hex(v)}`)
    return out
  }

  it('writes the pages a plain sort would, from one run in memory or from spilled runs merged', async () => {
    const all = entries(2500)
    for (const level of [1, 2, 3]) {
      for (const [runEntries, laterRunEntries] of [[1, 1], [7, 7], [1000, 300], [5000, 5000]] as const) {
        const sub = state.sublevel(`t${level}-${runEntries}-${laterRunEntries}`)
        const spillDir = join(dir, `spill-${level}-${runEntries}`)
        const writer = new PageBulkWriter(state.db, sub, { spillDir, runEntries, laterRunEntries })
        for (let i = 0; i < all.length; i++) {
          writer.put(all[i]!.hash, all[i]!.key, all[i]!.value)
          if (i % 100 === 99) await writer.flush()
        }
        const spilled = writer.spilled
        await writer.finish(level)
        expect(spilled > 0, `runs of ${runEntries} spill`).toBe(runEntries < all.length)
        expect(await contents(sub), `level ${level}, runs of ${runEntries}, then ${laterRunEntries}`).toEqual(expectedPages(all, level))
        // the spills are gone
        await expect(readdir(spillDir)).rejects.toMatchObject({ code: 'ENOENT' })
      }
    }
  })

  it('decodes what it wrote into the same entries', async () => {
    const all = entries(3000)
    const sub = state.sublevel('decode')
    const writer = new PageBulkWriter(state.db, sub, { spillDir: join(dir, 'spill'), runEntries: 700, laterRunEntries: 300 })
    for (const e of all) { writer.put(e.hash, e.key, e.value); await writer.flush() }
    await writer.finish(2)
    const decoded = []
    for await (const [, page] of sub.iterator()) decoded.push(...decodePage(page))
    const want = [...all].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : Buffer.compare(a.key, b.key)))
    expect(decoded.map(e => `${be64(e.keyHash)}|${hex(e.key)}|${be64(e.entry)}`)).toEqual(want.map(e => `${be64(e.hash)}|${hex(e.key)}|${be64(e.value)}`))
  })

  it('keeps entries with keys longer than the spill buffer whole', async () => {
    const sub = state.sublevel('long')
    const writer = new PageBulkWriter(state.db, sub, { spillDir: join(dir, 'spill'), runEntries: 2 })
    const all = [0, 1, 2, 3, 4].map(i => ({ hash: BigInt(i) << 60n, key: new Uint8Array((1 << 20) + 1000 * i).fill(i + 1), value: BigInt(i) }))
    for (const e of all) { writer.put(e.hash, e.key, e.value); await writer.flush() }
    await writer.finish(1)
    expect(await contents(sub)).toEqual(expectedPages(all, 1))
  })

  it('ends a run at its key-byte budget', async () => {
    const sub = state.sublevel('bytes')
    const writer = new PageBulkWriter(state.db, sub, { spillDir: join(dir, 'spill'), runKeyBytes: 64 })
    const all = entries(300)
    for (const e of all) { writer.put(e.hash, e.key, e.value); await writer.flush() }
    expect(writer.spilled).toBeGreaterThan(1)
    await writer.finish(2)
    expect(await contents(sub)).toEqual(expectedPages(all, 2))
  })

  it('stops at an abort and leaves no write and no spill behind once abandoned', async () => {
    const sub = state.sublevel('abort')
    const spillDir = join(dir, 'spill')
    const writer = new PageBulkWriter(state.db, sub, { spillDir, runEntries: 10_000, laterRunEntries: 10_000 })
    const all = entries(50_000)
    for (let i = 0; i < 30_000; i++) writer.put(all[i]!.hash, all[i]!.key, all[i]!.value)
    await writer.flush()
    const controller = new AbortController()
    controller.abort()
    await expect(writer.finish(4, { signal: controller.signal })).rejects.toMatchObject({ code: 'CONVERGE_ABORTED' })
    await writer.abandon()
    expect(await contents(sub)).toEqual([])
    await expect(readdir(spillDir)).rejects.toMatchObject({ code: 'ENOENT' })
  })
})
