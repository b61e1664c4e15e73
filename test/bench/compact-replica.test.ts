/**
 * The sync benchmark's compact replica must look to the sync engine exactly
 * like MemoryReplica over the same rows: same tree, same entries under every
 * node, same rows; so one exchange moves the same bytes in the same round trips.
 */
import { describe, expect, it } from 'vitest'
import { ordersCodec as codec, orderRow } from '../../cluster/orders.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import { CompactReplica, type OrdersDrift } from '../../scripts/bench/compact-replica.ts'
import { exchange } from '../../scripts/bench/sync-bytes.ts'

const N = 20_000
const drift: OrdersDrift = { updated: [3, 77, 1999, 12_345], deleted: [0, 500, 19_999], inserted: [N, N + 1, N + 7] }

function memoryRows (): Uint8Array[] {
  const deleted = new Set(drift.deleted)
  const updated = new Set(drift.updated)
  const rows: Uint8Array[] = []
  for (let id = 0; id < N; id++) if (!deleted.has(id)) rows.push(codec.encodeRow(orderRow(id, updated.has(id) ? 1 : 0)))
  for (const id of drift.inserted) rows.push(codec.encodeRow(orderRow(id)))
  return rows
}

const hex = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString('hex'))

describe('compact replica (sync benchmark)', () => {
  const sot = CompactReplica.source(N)
  const local = sot.drifted(drift)
  const memSot = new MemoryReplica(codec, Array.from({ length: N }, (_, id) => codec.encodeRow(orderRow(id))))
  const memLocal = new MemoryReplica(codec, memoryRows())

  it('holds the same tree and the same entries under a node as MemoryReplica', async () => {
    for (const [compact, memory] of [[sot, memSot], [local, memLocal]] as const) {
      expect(compact.rows).toBe(memory.entries.length)
      expect(compact.tree.root).toEqual(memory.tree.root)
      for (const index of [0, 5, 15]) {
        const [a, b] = [await compact.list(1, index), await memory.list(1, index)]
        expect(a.map(e => [e.keyHash, hex(e.key), e.entry])).toEqual(b.map(e => [e.keyHash, hex(e.key), e.entry]))
      }
    }
    const keys = [0, 3, 500, 1000, N, N + 1, N + 2].map(id => codec.encodeKey({ order_id: id }))
    expect((await local.getRows(keys)).map(hex)).toEqual((await memLocal.getRows(keys)).map(hex))
  })

  it('gives the same exchange, byte for byte', async () => {
    const compact = await exchange(sot, local)
    const memory = await exchange(memSot, memLocal)
    expect(compact.stats).toEqual(memory.stats)
    expect(compact.result.upserts.map(hex).sort()).toEqual(memory.result.upserts.map(hex).sort())
    expect(compact.result.deletes.map(hex).sort()).toEqual(memory.result.deletes.map(hex).sort())
    expect(compact.result).toMatchObject({ changed: 4, missing: 3, extra: 3, unresolved: 0 })
  })
})
