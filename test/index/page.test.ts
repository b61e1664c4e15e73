import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodePage, encodeEntry, forEachEntry, levelRange, pageIndexOf, pageKey, setEntry } from '../../src/index/page.ts'
import { nodeOfHigh32 } from '../../src/tree/merkle-tree.ts'

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
const view = (page: Uint8Array): string[] => decodePage(page).map(e => `${e.keyHash.toString(16)}|${hex(e.key)}|${e.entry.toString(16)}`)

describe('index pages', () => {
  it('keep the entries a map would, in key-hash then key order, through any sequence of sets and removals', () => {
    const key = fc.uint8Array({ minLength: 0, maxLength: 140 })
    // few distinct hashes, so equal hashes with different keys happen
    const hash = fc.constantFrom(0n, 1n, 0x8000000000000000n, 0xffffffffffffffffn, 0x1234567890abcdefn)
    const op = fc.record({ hash, key, entry: fc.option(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { nil: undefined }) })
    fc.assert(fc.property(fc.array(op, { maxLength: 60 }), ops => {
      let page: Uint8Array = new Uint8Array(0)
      const model = new Map<string, { hash: bigint, key: Uint8Array, entry: bigint }>()
      for (const o of ops) {
        const id = `${o.hash}|${hex(o.key)}`
        const result = setEntry(page, o.hash, o.key, o.entry)
        expect(result.before).toBe(model.get(id)?.entry)
        page = result.page
        if (o.entry === undefined) model.delete(id); else model.set(id, { hash: o.hash, key: o.key, entry: o.entry })
      }
      const want = [...model.values()].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : Buffer.compare(a.key, b.key)))
      expect(view(page)).toEqual(want.map(e => `${e.hash.toString(16)}|${hex(e.key)}|${e.entry.toString(16)}`))
      let n = 0
      forEachEntry(page, (hi, keyHash, entry) => { expect(hi).toBe(Number(keyHash >> 32n)); expect(entry).toBe(want[n]!.entry); n++ })
      expect(n).toBe(want.length)
    }))
  })

  it('leave a page as it is when nothing changes', () => {
    const page = encodeEntry(5n, 9n, Uint8Array.of(1, 2))
    expect(setEntry(page, 5n, Uint8Array.of(1, 2), 9n).page).toBe(page)
    expect(setEntry(page, 6n, Uint8Array.of(1, 2), undefined).page).toBe(page)
  })

  it('list only the entries under a deeper node when asked', () => {
    let page: Uint8Array = new Uint8Array(0)
    for (const h of [0x1000000000000000n, 0x1100000000000000n, 0x1f00000000000000n, 0x1f10000000000000n]) page = setEntry(page, h, Uint8Array.of(Number(h >> 56n)), h).page
    expect(decodePage(page, [], { level: 2, index: 0x1f }).map(e => e.keyHash)).toEqual([0x1f00000000000000n, 0x1f10000000000000n])
    expect(decodePage(page, [], { level: 2, index: 0x12 })).toEqual([])
    expect(nodeOfHigh32(0x1f100000, 3)).toBe(0x1f1)
    expect(nodeOfHigh32(0x1f100000, 0)).toBe(0)
  })

  it('sort page keys by level, then node index', () => {
    const keys = [pageKey(2, 0), pageKey(1, 0xffff), pageKey(2, 0x100), pageKey(2, 0xff), pageKey(3, 0)]
    expect(keys.map(hex).sort()).toEqual([pageKey(1, 0xffff), pageKey(2, 0), pageKey(2, 0xff), pageKey(2, 0x100), pageKey(3, 0)].map(hex))
    const { gte, lt } = levelRange(2)
    expect(Buffer.compare(gte, pageKey(2, 0))).toBe(0)
    expect(Buffer.compare(pageKey(2, 0xffffffff), lt)).toBeLessThan(0)
    expect(Buffer.compare(lt, pageKey(3, 0))).toBeLessThanOrEqual(0)
  })

  it('give back the node index they name', () => {
    for (const index of [0, 1, 0xff, 0x100, 0x7fffffff, 0x80000000, 0xffffffff]) expect(pageIndexOf(pageKey(5, index))).toBe(index)
  })

  it('refuse a damaged page with a stable code', () => {
    const page = encodeEntry(5n, 9n, Uint8Array.of(1, 2, 3))
    for (const bad of [page.subarray(0, 10), page.subarray(0, page.length - 1), Uint8Array.from([...page.subarray(0, 16), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]) {
      expect(() => decodePage(bad)).toThrow(expect.objectContaining({ code: 'CONVERGE_INDEX_PAGE_FORMAT' }))
      expect(() => setEntry(bad, 6n, Uint8Array.of(1), 1n)).toThrow(expect.objectContaining({ code: 'CONVERGE_INDEX_PAGE_FORMAT' }))
    }
  })
})
