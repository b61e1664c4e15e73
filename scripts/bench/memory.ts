/**
 * Process memory snapshots. With --expose-gc (e.g. NODE_OPTIONS=--expose-gc)
 * a full collection runs before each snapshot, so deltas are retained memory;
 * without it the deltas include whatever garbage is still uncollected.
 */
export interface MemorySnapshot {
  rss: number
  heapUsed: number
  /** Memory of ArrayBuffers and other off-heap objects owned by JS (typed arrays, Buffers). */
  external: number
  collected: boolean
}

const collect = (globalThis as { gc?: () => void }).gc

export function gcAvailable (): boolean { return collect !== undefined }

export function memorySnapshot (): MemorySnapshot {
  if (collect !== undefined) { collect(); collect() }
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, collected: collect !== undefined }
}
