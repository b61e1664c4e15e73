/**
 * The digest index's pages kept in memory, up to a byte budget, least
 * recently used out first. A 1 % drift of a million rows touches some 9,000
 * of the index's 65,536 pages, once when the change feed brings the drift
 * and again when its entries are written into their pages; read from
 * LevelDB each time, those are two getMany calls of some 60-80 ms of CPU
 * each here, on the way from a drift to its repair.
 *
 * It holds only what the pages sublevel holds. The index puts a page in
 * after writing it (`put`), or as read (`fill`) when no write or clear came
 * between the start of the read and its end: a read that overlapped a write
 * may have brought the page from before it (`generation` tells).
 */

/**
 * The budget of an index on its own (a tool's, a benchmark's): the pages of
 * some 750,000 rows (a page of a million-row index holds some 15 entries in
 * about 420 bytes). An agent's indexes share one pool instead, of the
 * budget its config gives (`index.pageCacheMiB`).
 */
export const PAGE_CACHE_BYTES = 32 * 1024 * 1024

/**
 * What a cached page costs beyond its bytes: its Map slot, its typed array
 * object and the allocator's share (65,536 pages of 420 bytes read from
 * LevelDB and held in a Map grew the heap by 13 MiB and the buffers by
 * 26 MiB here: some 210 bytes a page besides its own).
 */
const ENTRY_OVERHEAD = 256

/** Page ids stay below this; an index's slot times it, plus the page id, is the pool's key for a page. */
const SLOT_SPAN = 2 ** 32

const slotOf = (key: number): number => Math.floor(key / SLOT_SPAN)

/**
 * Pages of every index of an agent, up to one byte budget, least recently
 * used out first whichever index they are of: a budget per index would let
 * an agent of many datasets hold a budget for each, or hold too little of
 * one large dataset's pages when it has only that one. Each index sees its
 * own pages through the PageCache the pool gives it.
 */
export class PagePool {
  /** (slot · SLOT_SPAN + page id) → page bytes, least recently used first (Map order). */
  private readonly pages = new Map<number, Uint8Array>()
  private used = 0
  /** Pages held per slot: a slot that holds every page (an index with a pool of its own) is cleared at once. */
  private readonly held: number[] = []
  /** Look-ups of a page since start: found here, or to be read from LevelDB (too small a budget shows as misses). */
  hits = 0
  misses = 0

  constructor (readonly maxBytes = PAGE_CACHE_BYTES) {}

  /** A view of the pool for one more index. */
  cache (): PageCache { return new PageCache(this) }

  /** A slot for one more index's pages (PageCache takes one as it is made). */
  slot (): number {
    this.held.push(0)
    return this.held.length - 1
  }

  /** Bytes held, overheads included. */
  get bytes (): number { return this.used }

  get size (): number { return this.pages.size }

  get full (): boolean { return this.used >= this.maxBytes }

  get (key: number): Uint8Array | undefined {
    const page = this.pages.get(key)
    if (page === undefined) {
      this.misses++
      return undefined
    }
    this.hits++
    // most recently used: to the end
    this.pages.delete(key)
    this.pages.set(key, page)
    return page
  }

  keep (key: number, page: Uint8Array): void {
    this.drop(key)
    const cost = page.byteLength + ENTRY_OVERHEAD
    if (cost > this.maxBytes) return
    this.pages.set(key, page)
    this.used += cost
    this.held[slotOf(key)]!++
    while (this.used > this.maxBytes) this.drop(this.pages.keys().next().value!)
  }

  /** Forgets every page of one slot (its index's pages were cleared or cut again). */
  clearSlot (slot: number): void {
    if (this.held[slot] === 0) return
    if (this.held[slot] === this.pages.size) {
      this.pages.clear()
      this.used = 0
      this.held[slot] = 0
      return
    }
    for (const key of this.pages.keys()) if (slotOf(key) === slot) this.drop(key)
  }

  private drop (key: number): void {
    const page = this.pages.get(key)
    if (page === undefined) return
    this.pages.delete(key)
    this.used -= page.byteLength + ENTRY_OVERHEAD
    this.held[slotOf(key)]!--
  }
}

/**
 * One index's pages in a pool: a pool of its own (`new PageCache(bytes)`),
 * or a share of an agent's (`pool.cache()`).
 */
export class PageCache {
  private readonly pool: PagePool
  private readonly base: number
  /** Moves on with every write and clear of this index; see `fill`. */
  private gen = 0

  constructor (pool: PagePool | number = PAGE_CACHE_BYTES) {
    this.pool = typeof pool === 'number' ? new PagePool(pool) : pool
    this.base = this.pool.slot() * SLOT_SPAN
  }

  /** Bytes the pool holds, overheads included: this index's and those of the others sharing it. */
  get bytes (): number { return this.pool.bytes }

  /** Pages the pool holds, of every index sharing it. */
  get size (): number { return this.pool.size }

  /** Whether the pool's budget is used up: a warm-up stops here rather than pushing out what it (or another index) put in. */
  get full (): boolean { return this.pool.full }

  /** Taken before a read whose pages go in by `fill`. */
  get generation (): number { return this.gen }

  get (id: number): Uint8Array | undefined { return this.pool.get(this.base + id) }

  /** A page as read, when nothing was written or cleared since `generation` was taken. */
  fill (id: number, page: Uint8Array, generation: number): void {
    if (generation === this.gen) this.keep(id, page)
  }

  /**
   * Pages as just written (an empty page: the page is gone). Any read that
   * began before this no longer fills the cache.
   */
  put (written: Iterable<readonly [number, Uint8Array]>): void {
    this.gen++
    for (const [id, page] of written) this.keep(id, page)
  }

  /** Forgets every page of this index (its pages were cleared or cut again). */
  clear (): void {
    this.gen++
    this.pool.clearSlot(slotOf(this.base))
  }

  private keep (id: number, page: Uint8Array): void {
    if (id >= SLOT_SPAN) throw new RangeError(`page id ${id} is beyond the page cache's ${SLOT_SPAN}`)
    this.pool.keep(this.base + id, page)
  }
}
