import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, it, vi } from 'vitest'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import type { ChangeBatch, ChangesOptions, ReplicaStore } from '../../src/stores/replica-store.ts'
import { orderRow, ordersCodec as codec } from '../../cluster/orders.ts'

/**
 * A real LevelDB store whose change feed is `feed` around the store's own,
 * and an index following it, with the index's 'error' and 'following'
 * events in order.
 */
async function withFlakyFeed (
  feed: (inner: LevelStore, options: ChangesOptions) => AsyncIterable<ChangeBatch>,
  body: (ctx: { inner: LevelStore, index: DigestIndex, errors: Error[], events: string[] }) => Promise<void>
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'converge-retry-'))
  const inner = new LevelStore({ path: join(dir, 'store'), codec })
  await inner.open()
  const state = new StateDb(join(dir, 'state'))
  await state.open()
  const flaky: ReplicaStore = Object.assign(Object.create(inner) as LevelStore, { changes: (options: ChangesOptions) => feed(inner, options) })
  const index = new DigestIndex({ dataset: 'orders', codec, store: flaky, state, keepEntries: true })
  const errors: Error[] = []
  const events: string[] = []
  index.on('error', err => { errors.push(err as Error); events.push('error') })
  index.on('following', () => events.push('following'))
  try {
    await body({ inner, index, errors, events })
  } finally {
    await index.stop()
    await inner.close()
    await state.close()
    await rm(dir, { recursive: true, force: true })
  }
}

it('follows the change feed again after it fails, misses nothing, and says when it delivers again', async () => {
  let failuresLeft = 2
  // the first two feeds break after one batch, as a dropped database connection would
  const breaking = async function * (inner: LevelStore, options: ChangesOptions): AsyncGenerator<ChangeBatch> {
    let delivered = 0
    for await (const batch of inner.changes(options)) {
      if (delivered++ > 0 && failuresLeft > 0) { failuresLeft--; throw new Error('connection terminated') }
      yield batch
    }
  }
  await withFlakyFeed(breaking, async ({ inner, index, errors, events }) => {
    await index.start()
    for (let i = 0; i < 6; i++) await inner.apply({ upserts: [codec.encodeRow(orderRow(i))], deletes: [] })
    await vi.waitFor(() => { expect(index.appliedSeq).toBe(6) }, { timeout: 10_000 })
    expect(errors.map(e => e.message)).toEqual(['connection terminated', 'connection terminated'])
    expect(index.tree.rowCount).toBe(6)
    // each outage ends with the feed's next batch, said once
    expect(events).toEqual(['error', 'following', 'error', 'following'])
  })
})

it('says the feed works again once it reads a quiet store to its end, without waiting for a write', async () => {
  let failuresLeft = 2
  // the first two feeds fail before reading anything, as a server that is down would
  const down = async function * (inner: LevelStore, options: ChangesOptions): AsyncGenerator<ChangeBatch> {
    if (failuresLeft > 0) { failuresLeft--; throw new Error('connection refused') }
    yield * inner.changes(options)
  }
  await withFlakyFeed(down, async ({ inner, index, errors, events }) => {
    await inner.apply({ upserts: [codec.encodeRow(orderRow(1))], deletes: [] })
    await index.start()
    await vi.waitFor(() => { expect(events).toEqual(['error', 'error', 'following']) }, { timeout: 10_000 })
    expect(errors.map(e => e.message)).toEqual(['connection refused', 'connection refused'])
    // no write since: the feed said so from the log alone
    expect(index.appliedSeq).toBe(1)
    expect(index.tree.rowCount).toBe(1)
  })
})
