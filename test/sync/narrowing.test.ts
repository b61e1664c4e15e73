import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { memoryChannelPair } from '../../src/sync/channel.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import { runClientSync, serveSync } from '../../src/sync/session.ts'
import { ordersCodec as codec, order } from '../helpers/datasets.ts'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

async function reconcile (sot: MemoryReplica, local: MemoryReplica) {
  const [client, server] = memoryChannelPair()
  const served = serveSync(server, { resolve: () => ({ region: 'sot', codec, view: sot, clock: () => ({ sot: 1 }) }) })
  const outcome = await runClientSync(client, { dataset: 'orders', region: 'local', codec, view: local, clock: {}, correlationId: 'test' })
  await served
  return outcome
}

/** The exact difference, computed row by row. */
function expectedDiff (sot: MemoryReplica, local: MemoryReplica) {
  const s = sot.rowMap(); const l = local.rowMap()
  const upserts = new Set<string>(); const deletes = new Set<string>()
  let missing = 0; let changed = 0
  for (const [k, row] of s) {
    const mine = l.get(k)
    if (mine === undefined) { missing++; upserts.add(hex(row)) } else if (hex(mine) !== hex(row)) { changed++; upserts.add(hex(row)) }
  }
  for (const k of l.keys()) if (!s.has(k)) deletes.add(k)
  return { upserts, deletes, missing, changed, extra: deletes.size }
}

function check (sot: MemoryReplica, local: MemoryReplica, result: Awaited<ReturnType<typeof reconcile>>['result']): void {
  const want = expectedDiff(sot, local)
  expect(new Set(result.upserts.map(hex))).toEqual(want.upserts)
  expect(new Set(result.deletes.map(hex))).toEqual(want.deletes)
  expect({ missing: result.missing, changed: result.changed, extra: result.extra, unresolved: result.unresolved })
    .toEqual({ missing: want.missing, changed: want.changed, extra: want.extra, unresolved: 0 })
}

describe('narrowing', () => {
  it('yields exactly the difference of any two row sets (property)', async () => {
    const rowSet = fc.dictionary(fc.integer({ min: 0, max: 5000 }).map(String), fc.integer({ min: 0, max: 3 }), { maxKeys: 3000 })
    await fc.assert(fc.asyncProperty(rowSet, rowSet, fc.integer({ min: 1, max: 3 }), async (a, b, depth) => {
      const sot = new MemoryReplica(codec, Object.entries(a).map(([id, v]) => codec.encodeRow(order(Number(id), v))), depth)
      const local = new MemoryReplica(codec, Object.entries(b).map(([id, v]) => codec.encodeRow(order(Number(id), v))))
      const { result } = await reconcile(sot, local)
      check(sot, local, result)
    }), { numRuns: 60 })
  })

  it('yields exactly the difference for small drift in a large set (property)', async () => {
    const base = Array.from({ length: 20_000 }, (_, i) => i)
    const sot = new MemoryReplica(codec, base.map(i => codec.encodeRow(order(i))))
    const drift = fc.record({
      changed: fc.uniqueArray(fc.integer({ min: 0, max: 19_999 }), { maxLength: 200 }),
      deleted: fc.uniqueArray(fc.integer({ min: 0, max: 19_999 }), { maxLength: 50 }),
      inserted: fc.uniqueArray(fc.integer({ min: 20_000, max: 40_000 }), { maxLength: 50 })
    })
    await fc.assert(fc.asyncProperty(drift, async ({ changed, deleted, inserted }) => {
      const rows = new Map(base.map(i => [i, order(i)]))
      for (const i of changed) rows.set(i, order(i, 1))
      for (const i of deleted) rows.delete(i)
      for (const i of inserted) rows.set(i, order(i))
      const local = new MemoryReplica(codec, [...rows.values()].map(r => codec.encodeRow(r)))
      const { result } = await reconcile(sot, local)
      check(sot, local, result)
    }), { numRuns: 25 })
  })

  it('needs no round beyond open when the roots agree', async () => {
    const rows = Array.from({ length: 1000 }, (_, i) => codec.encodeRow(order(i)))
    const { result, stats } = await reconcile(new MemoryReplica(codec, rows), new MemoryReplica(codec, rows))
    expect(result.upserts.length + result.deletes.length).toBe(0)
    expect(stats.roundTrips).toBe(1)
  })

  it('copies everything into an empty replica and empties one the SoT lacks', async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => codec.encodeRow(order(i)))
    const sot = new MemoryReplica(codec, rows)
    const empty = new MemoryReplica(codec, [])
    const fill = await reconcile(sot, empty)
    check(sot, empty, fill.result)
    const drain = await reconcile(empty, sot)
    check(empty, sot, drain.result)
  })
})
