/**
 * Times the digest index's hot paths on 1,000,000 orders: a rebuild, a
 * listing of the ~9,300 leaves a 1 % drift touches, a 10,000-row change
 * batch, and taking a 10,000-row fix. A dev tool: `npx tsx scripts/dev/index-ops.ts`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ordersCodec, orderRow } from '../../cluster/orders.ts'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { StateDb } from '../../src/index/state-db.ts'
import type { ReplicaStore, ChangeBatch } from '../../src/stores/replica-store.ts'
import { nodeOf } from '../../src/tree/merkle-tree.ts'

const N = Number(process.env.ROWS ?? 1_000_000)
const rows = (from: number, to: number, rev = 0): Uint8Array[] => { const out = []; for (let id = from; id < to; id++) out.push(ordersCodec.encodeRow(orderRow(id, rev))); return out }

let pending: ((b: ChangeBatch) => void) | undefined
const queue: ChangeBatch[] = []
const store = {
  kind: 'fake', id: 'fake', codec: ordersCodec, supports: {},
  open: async () => {}, close: async () => {},
  async * scan () {
    for (let from = 0; from < N; from += 1000) yield rows(from, Math.min(N, from + 1000)).map(row => ({ key: ordersCodec.keyOfEncodedRow(row), row }))
  },
  get: async () => [], apply: async () => ({ seq: 0, before: [] }), lastSeq: async () => 0,
  async * changes (options: { since: number, signal: AbortSignal }) {
    for (;;) {
      if (queue.length > 0) { yield queue.shift()!; continue }
      const b = await new Promise<ChangeBatch | undefined>(resolve => { pending = resolve; options.signal.addEventListener('abort', () => resolve(undefined), { once: true }) })
      if (b === undefined) return
      yield b
    }
  },
  trimChanges: async () => {}, countRows: async () => N
} as unknown as ReplicaStore
const push = (b: ChangeBatch): void => { if (pending !== undefined) { const p = pending; pending = undefined; p(b) } else queue.push(b) }

const dir = await mkdtemp(join(tmpdir(), 'index-ops-'))
const state = new StateDb(join(dir, 'state'))
await state.open()
const index = new DigestIndex({ dataset: 'orders', codec: ordersCodec, store, state })
let t = performance.now()
await index.start()
console.log(`rebuild ${N} rows: ${Math.round(performance.now() - t)} ms, depth ${index.tree.depth}`)
const depth = index.tree.depth
// the leaves 10,000 random rows fall in
const ids = new Set<number>(); while (ids.size < 10_000) ids.add(Math.floor(Math.random() * N))
const leaves = [...new Set([...ids].map(id => nodeOf(ordersCodec.keyHash(ordersCodec.keyOfEncodedRow(ordersCodec.encodeRow(orderRow(id)))), depth)))].sort((a, b) => a - b)
for (let r = 0; r < 3; r++) {
  t = performance.now()
  const lists = await index.listMany(leaves.map(index => ({ level: depth, index })))
  console.log(`listMany ${leaves.length} leaves (${lists.reduce((s, l) => s + l.length, 0)} entries): ${Math.round(performance.now() - t)} ms`)
}
let seq = 1
for (let r = 0; r < 3; r++) {
  const changes = [...ids].map(id => ({ key: ordersCodec.keyOfEncodedRow(ordersCodec.encodeRow(orderRow(id))), row: ordersCodec.encodeRow(orderRow(id, r + 1)) }))
  t = performance.now()
  push({ seq: ++seq, changes })
  await new Promise<void>(resolve => { const f = (): void => { if (index.appliedSeq >= seq) { index.off('change', f); resolve() } }; index.on('change', f) })
  console.log(`change batch of ${changes.length}: ${Math.round(performance.now() - t)} ms`)
}
for (let r = 0; r < 3; r++) {
  const upserts = [...ids].map(id => ordersCodec.encodeRow(orderRow(id, r + 10)))
  t = performance.now()
  await index.takeApplied({ upserts, deletes: [] })
  console.log(`takeApplied ${upserts.length}: ${Math.round(performance.now() - t)} ms`)
}
await index.stop()
await state.close()
await rm(dir, { recursive: true, force: true })
