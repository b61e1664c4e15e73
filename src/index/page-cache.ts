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
 * The default budget, per index: the pages of some 750,000 rows (a page of a
 * million-row index holds some 15 entries in about 420 bytes).
 */
export const PAGE_CACHE_BYTES = 32 * 1024 * 1024

/**
 * What a cached page costs beyond its bytes: its Map slot, its typed array
 * object and the allocator's share (65,536 pages of 420 bytes read from
 * LevelDB and held in a Map grew the heap by 13 MiB and the buffers by
 * 26 MiB here: some 210 bytes a page besides its own).
 */
const ENTRY_OVERHEAD = 256

export class PageCache {
  /** Page id → page bytes, least recently used first (Map order). */
  private readonly pages = new Map<number, Uint8Array>()
  private used = 0
  /** Moves on with every write and clear; see `fill`. */
  private gen = 0

  constructor (readonly maxBytes = PAGE_CACHE_BYTES) {}

  /** Bytes held, overheads included. */
  get bytes (): number { return this.used }

  get size (): number { return this.pages.size }

  /** Whether the budget is used up: a warm-up stops here rather than pushing out what it put in. */
  get full (): boolean { return this.used >= this.maxBytes }

  /** Taken before a read whose pages go in by `fill`. */
  get generation (): number { return this.gen }

  get (id: number): Uint8Array | undefined {
    const page = this.pages.get(id)
    if (page !== undefined) {
      // most recently used: to the end
      this.pages.delete(id)
      this.pages.set(id, page)
    }
    return page
  }

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

  /** Forgets every page (the pages were cleared or cut again). */
  clear (): void {
    this.gen++
    this.pages.clear()
    this.used = 0
  }

  private keep (id: number, page: Uint8Array): void {
    this.drop(id)
    const cost = page.byteLength + ENTRY_OVERHEAD
    if (cost > this.maxBytes) return
    this.pages.set(id, page)
    this.used += cost
    while (this.used > this.maxBytes) this.drop(this.pages.keys().next().value!)
  }

  private drop (id: number): void {
    const page = this.pages.get(id)
    if (page === undefined) return
    this.pages.delete(id)
    this.used -= page.byteLength + ENTRY_OVERHEAD
  }
}
