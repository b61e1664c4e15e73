import { describe, expect, it } from 'vitest'
import { PageCache, PagePool } from '../../src/index/page-cache.ts'

const page = (bytes: number, fill = 1): Uint8Array => new Uint8Array(bytes).fill(fill)
/** The cost of a page of `bytes` in the cache: its bytes and the fixed overhead (bytes of an empty page). */
const costOf = (bytes: number): number => { const c = new PageCache(); c.put([[0, page(0)]]); return c.bytes + bytes }

describe('PageCache', () => {
  it('keeps pages up to its budget and lets the least recently used go first', () => {
    const cost = costOf(100)
    const cache = new PageCache(3 * cost)
    cache.put([[1, page(100, 1)], [2, page(100, 2)], [3, page(100, 3)]])
    expect(cache.size).toBe(3)
    expect(cache.full).toBe(true)
    // 1 used again: 2 is now the least recently used
    expect(cache.get(1)?.[0]).toBe(1)
    cache.put([[4, page(100, 4)]])
    expect(cache.get(2)).toBeUndefined()
    expect([1, 3, 4].map(id => cache.get(id)?.[0])).toEqual([1, 3, 4])
    expect(cache.bytes).toBe(3 * cost)
  })

  it('replaces a page written again and counts its new size', () => {
    const cache = new PageCache(10 * costOf(100))
    cache.put([[7, page(100, 1)]])
    cache.put([[7, page(40, 2)]])
    expect(cache.size).toBe(1)
    expect(cache.get(7)).toEqual(page(40, 2))
    expect(cache.bytes).toBe(costOf(40))
  })

  it('takes a page as read only when nothing was written or cleared since the read began', () => {
    const cache = new PageCache()
    const before = cache.generation
    // a write lands while the read is out: what the read brings may be the page from before it
    cache.put([[5, page(10, 9)]])
    cache.fill(5, page(10, 1), before)
    cache.fill(6, page(10, 1), before)
    expect(cache.get(5)?.[0]).toBe(9)
    expect(cache.get(6)).toBeUndefined()
    const now = cache.generation
    cache.fill(6, page(10, 2), now)
    expect(cache.get(6)?.[0]).toBe(2)
    cache.clear()
    cache.fill(6, page(10, 3), now)
    expect(cache.size).toBe(0)
    expect(cache.bytes).toBe(0)
  })

  it('keeps nothing with a budget of 0, nor a page larger than its budget', () => {
    const none = new PageCache(0)
    none.put([[1, page(10)]])
    none.fill(2, page(10), none.generation)
    expect(none.size).toBe(0)
    const small = new PageCache(costOf(50))
    small.put([[1, page(51)]])
    expect(small.size).toBe(0)
    small.put([[1, page(50)]])
    expect(small.size).toBe(1)
  })

  it('shares one budget among the indexes of a pool, least recently used out first whichever index they are of', () => {
    const cost = costOf(100)
    const pool = new PagePool(3 * cost)
    const a = pool.cache()
    const b = pool.cache()
    // the same page id in two indexes: two pages
    a.put([[1, page(100, 1)], [2, page(100, 2)]])
    b.put([[1, page(100, 7)]])
    expect([a.get(1)?.[0], a.get(2)?.[0], b.get(1)?.[0]]).toEqual([1, 2, 7])
    expect(pool.size).toBe(3)
    expect(a.full && b.full).toBe(true)
    // a's page 1 is now the least recently used of all three
    b.put([[2, page(100, 8)]])
    expect(a.get(1)).toBeUndefined()
    expect([a.get(2)?.[0], b.get(1)?.[0], b.get(2)?.[0]]).toEqual([2, 7, 8])
    expect(pool.bytes).toBe(3 * cost)
  })

  it('clears one index of a pool without touching the others, and keeps each index\'s reads apart from the other\'s writes', () => {
    const pool = new PagePool()
    const a = pool.cache()
    const b = pool.cache()
    a.put([[1, page(10, 1)], [2, page(10, 2)]])
    b.put([[1, page(10, 3)]])
    const aRead = a.generation
    // b's write says nothing about a's pages: a read of a's that began before it still fills
    b.put([[5, page(10, 4)]])
    a.fill(3, page(10, 5), aRead)
    expect(a.get(3)?.[0]).toBe(5)
    a.clear()
    expect([a.get(1), a.get(2), a.get(3)]).toEqual([undefined, undefined, undefined])
    expect([b.get(1)?.[0], b.get(5)?.[0]]).toEqual([3, 4])
    expect(pool.size).toBe(2)
    expect(pool.bytes).toBe(2 * costOf(10))
  })

  it('counts its look-ups, found or not', () => {
    const pool = new PagePool()
    const a = pool.cache()
    a.put([[1, page(10)]])
    a.get(1); a.get(1); a.get(2)
    expect([pool.hits, pool.misses]).toEqual([2, 1])
  })
})
