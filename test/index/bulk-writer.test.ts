import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { EntryBulkWriter, orderByU64 } from '../../src/index/bulk-writer.ts'
import { StateDb } from '../../src/index/state-db.ts'

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
const be64 = (v: bigint): string => v.toString(16).padStart(16, '0')

describe('orderByU64', () => {
  it('orders 64-bit values as unsigned numbers, ascending or descending, ties in their first order', () => {
    fc.assert(fc.property(fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { maxLength: 300 }), fc.array(fc.nat(5)), fc.boolean(), (values, dupAt, descending) => {
      // some values repeated, so the ties are there to keep in order
      const all = [...values, ...dupAt.filter(i => i < values.length).map(i => values[i]!)]
      const words = new BigUint64Array(all)
      const order = [...orderByU64(new Uint32Array(words.buffer), all.length, descending)]
      const sign = descending ? -1 : 1
      const expected = all.map((v, i) => [v, i] as const).sort((a, b) => (a[0] < b[0] ? -sign : a[0] > b[0] ? sign : a[1] - b[1])).map(([, i]) => i)
      expect(order).toEqual(expected)
    }))
  })

  it('orders values that share their top 16 bits (a partition) and values that differ only there', () => {
    const shared = Array.from({ length: 500 }, (_, i) => (0xabcdn << 48n) | BigInt(i * 7919 % 500))
    const top = Array.from({ length: 500 }, (_, i) => BigInt((i * 31) % 500) << 48n)
    for (const all of [shared, top]) {
      const order = orderByU64(new Uint32Array(new BigUint64Array(all).buffer), all.length)
      const sorted = [...order].map(i => all[i]!)
      expect(sorted).toEqual([...all].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))
    }
  })
})

describe('EntryBulkWriter', () => {
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

  /** Entries in random hash order, keys of varying length (short ones kept in the entry's record, long ones apart). */
  const entries = (n: number): Array<{ hash: bigint, key: Uint8Array, value: bigint }> => Array.from({ length: n }, (_, i) => ({
    hash: (BigInt(Math.imul(i + 1, 0x9e3779b1) >>> 0) << 32n) | BigInt(Math.imul(i + 7, 0x85ebca6b) >>> 0),
    key: Uint8Array.from({ length: 1 + (i % 40) }, (_, j) => (i + j) & 0xff),
    value: BigInt(i) * 0x100000001n
  }))

  async function contents (sub: ReturnType<StateDb['sublevel']>): Promise<string[]> {
    const out: string[] = []
    for await (const [k, v] of sub.iterator()) out.push(`${hex(k)}=${hex(v)}`)
    return out
  }

  it('writes every entry under its hash and key, in runs of any size, as plain puts would', async () => {
    const all = entries(2500)
    const expected = all.map(e => `${be64(e.hash)}${hex(e.key)}=${be64(e.value)}`).sort()
    for (const [runEntries, laterRunEntries] of [[1, 1], [7, 7], [1000, 1000], [1000, 300], [5000, 5000]] as const) {
      const sub = state.sublevel(`t${runEntries}-${laterRunEntries}`)
      const writer = new EntryBulkWriter(state.db, sub, { runEntries, laterRunEntries })
      for (let i = 0; i < all.length; i++) {
        writer.put(all[i]!.hash, all[i]!.key, all[i]!.value)
        if (i % 100 === 99) await writer.flush()
      }
      await writer.finish()
      expect(await contents(sub), `runs of ${runEntries}, then ${laterRunEntries}`).toEqual(expected)
    }
  })

  it('gives every put bytes of its own while a write listener sees the puts', async () => {
    const sub = state.sublevel('watched')
    const seen: string[] = []
    const listener = (ops: Array<{ type: string, key: Uint8Array, value?: Uint8Array }>): void => { for (const op of ops) seen.push(`${hex(op.key)}=${hex(op.value!)}`) }
    state.db.on('write', listener)
    try {
      const all = entries(1000)
      const writer = new EntryBulkWriter(state.db, sub)
      for (const e of all) writer.put(e.hash, e.key, e.value)
      await writer.finish()
      const prefix = hex(new TextEncoder().encode(sub.prefix))
      const expected = all.map(e => `${prefix}${be64(e.hash)}${hex(e.key)}=${be64(e.value)}`).sort()
      expect([...seen].sort()).toEqual(expected)
      expect(await contents(sub)).toHaveLength(1000)
    } finally {
      state.db.off('write', listener)
    }
  })

  it('ends a run at its key-byte budget', async () => {
    const sub = state.sublevel('bytes')
    const writer = new EntryBulkWriter(state.db, sub, { runKeyBytes: 64 })
    const all = entries(300)
    for (const e of all) { writer.put(e.hash, e.key, e.value); await writer.flush() }
    await writer.finish()
    expect(await contents(sub)).toHaveLength(300)
  })

  it('stops at an abort between batches and leaves no write behind once abandoned', async () => {
    const sub = state.sublevel('abort')
    const writer = new EntryBulkWriter(state.db, sub, { runEntries: 50_000 })
    for (const e of entries(50_000)) writer.put(e.hash, e.key, e.value)
    const controller = new AbortController()
    controller.abort()
    await writer.flush({ signal: controller.signal })
    await expect(writer.finish({ signal: controller.signal })).rejects.toMatchObject({ code: 'CONVERGE_ABORTED' })
    await writer.abandon()
    // at most the first batch went out before the abort was seen
    expect((await contents(sub)).length).toBeLessThanOrEqual(20_000)
  })
})
