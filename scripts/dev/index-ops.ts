/**
 * Times the digest index's hot paths on 1,000,000 orders: a rebuild, a
 * listing of the ~9,300 leaves a 1 % drift touches, then rounds as a
 * replica's index meets them in the cluster simulator: a change batch of
 * 10,000 random keys (their entries before it read from their pages), the
 * fix of the same keys taken in (their rows as before the batch), and a
 * lull in which the entries are written to their pages; each round's wall
 * time and the process's CPU over the batch and the fix. A dev tool:
 *
 *     ROUNDS=10 PAGE_CACHE_BYTES=67108864 bash scripts/run npx tsx scripts/dev/index-ops.ts
 *
 * (ROUNDS: default 10; PAGE_CACHE_BYTES: the index's page cache, default
 * page-cache.ts's; ROWS: default 1,000,000.)
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
const pageCacheBytes = process.env.PAGE_CACHE_BYTES === undefined ? undefined : Number(process.env.PAGE_CACHE_BYTES)
const index = new DigestIndex({ dataset: 'orders', codec: ordersCodec, store, state, ...(pageCacheBytes === undefined ? {} : { pageCacheBytes }) })
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
const ROUNDS = Number(process.env.ROUNDS ?? 10)
/** Longer than the write-behind's wait for a lull (1 s): the round's entries are in their pages before the next round. */
const LULL_MS = 2500
const randomIds = (): number[] => { const picked = new Set<number>(); while (picked.size < 10_000) picked.add(Math.floor(Math.random() * N)); return [...picked] }
for (let r = 0; r < ROUNDS; r++) {
  const drifted = randomIds()
  const changes = drifted.map(id => ({ key: ordersCodec.keyOfEncodedRow(ordersCodec.encodeRow(orderRow(id))), row: ordersCodec.encodeRow(orderRow(id, r + 1)) }))
  const fix = drifted.map(id => ordersCodec.encodeRow(orderRow(id)))
  const upsertKeys = changes.map(c => c.key)
  const cpu = process.cpuUsage()
  t = performance.now()
  push({ seq: ++seq, changes })
  await new Promise<void>(resolve => { const f = (): void => { if (index.appliedSeq >= seq) { index.off('change', f); resolve() } }; index.on('change', f) })
  const batchMs = performance.now() - t
  t = performance.now()
  await index.takeApplied({ upserts: fix, deletes: [], upsertKeys })
  const takeMs = performance.now() - t
  const used = process.cpuUsage(cpu)
  console.log(`round ${r + 1}: change batch of ${changes.length} ${batchMs.toFixed(1)} ms, the fix taken in ${takeMs.toFixed(1)} ms, CPU ${((used.user + used.system) / 1000).toFixed(1)} ms`)
  await new Promise(resolve => setTimeout(resolve, LULL_MS))
}
await index.stop()
await state.close()
await rm(dir, { recursive: true, force: true })
