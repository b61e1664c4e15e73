/**
 * A real store shown with its change feed passed through `feed` (to record,
 * hold back or reorder batches): every other call goes to the store itself.
 * With `keyHashOrder`, the store's key-hash listing comes along too, so an
 * index over it is store-backed as it would be over the store itself.
 */
import type { ChangeBatch, ReplicaStore } from '../../src/stores/replica-store.ts'

export function withFeed (inner: ReplicaStore, feed: (source: AsyncIterable<ChangeBatch>) => AsyncIterable<ChangeBatch>, options: { keyHashOrder?: boolean } = {}): ReplicaStore {
  const { scanAt, listRanges } = inner
  return {
    kind: inner.kind,
    get id () { return inner.id },
    codec: inner.codec,
    supports: inner.supports,
    open: async () => { await inner.open() },
    close: async () => { await inner.close() },
    scan: o => inner.scan(o),
    get: async (keys, o) => await inner.get(keys, o),
    apply: async (request, o) => await inner.apply(request, o),
    lastSeq: async () => await inner.lastSeq(),
    changes: o => feed(inner.changes(o)),
    trimChanges: async seq => { await inner.trimChanges(seq) },
    countRows: async () => await inner.countRows(),
    ...(options.keyHashOrder === true && scanAt !== undefined && listRanges !== undefined
      ? { scanAt: async o => await scanAt.call(inner, o), listRanges: async (ranges, o) => await listRanges.call(inner, ranges, o) }
      : {})
  }
}
