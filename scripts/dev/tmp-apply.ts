/**
 * What keeping the digest index's pages in memory (src/index/page-cache.ts)
 * saves: a change batch of `--drift` changed rows of a `--rows`-row index
 * taken in (the step between the change feed and a sync, and a fix's take)
 * together with the write of their entries into their pages, timed with
 * the default page budget and with none, alternately, `--runs` times each.
 *
 * The rows live in a real LevelDB store (cluster/orders.ts), seen as a store
 * that is not its own index, so the index keeps its pages in its own state
 * LevelDB as it does for PostgreSQL and SQLite. Each configuration builds
 * its index once (a build leaves the pages it can keep in memory), then
 * takes `--rounds` batches of fresh versions of random rows; the write-behind
 * limit is the batch size, so every batch ends with its page write.
 *
 *   npx tsx scripts/bench/page-cache.ts [--rows 1000000] [--drift 10000] [--runs 2] [--rounds 5]
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ordersCodec as codec, orderRow } from '../../cluster/orders.ts'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { PAGE_CACHE_BYTES } from '../../src/index/page-cache.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import type { ReplicaStore } from '../../src/stores/replica-store.ts'
import { median } from '../bench/timing.ts'

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' }, drift: { type: 'string', default: '10000' }, runs: { type: 'string', default: '2' }, rounds: { type: 'string', default: '5' } } })
const rows = Number(values.rows)
const drift = Number(values.drift)
const runs = Number(values.runs)
const rounds = Number(values.rounds)
const SEED_BATCH = 20_000

const dir = await mkdtemp(join(tmpdir(), 'converge-page-cache-'))
try {
  const store = new LevelStore({ path: join(dir, 'store'), codec })
  await store.open()
  for (let s = 0; s < rows; s += SEED_BATCH) {
    await store.apply({ upserts: Array.from({ length: Math.min(SEED_BATCH, rows - s) }, (_, i) => codec.encodeRow(orderRow(s + i))), deletes: [] })
  }
  // not its own index: the digest index keeps pages, as for PostgreSQL
  const view: ReplicaStore = Object.create(store, { supports: { value: { ...store.supports, keyHashOrder: false } } })
  const results = new Map<string, { wall: number[], cpu: number[] }>()
  let version = 1
  let n = 0
  for (let run = 0; run < runs; run++) {
    for (const [name, bytes] of [['kept', PAGE_CACHE_BYTES]] as const) {
      const state = new StateDb(join(dir, `state-${n++}`))
      await state.open()
      const index = new DigestIndex({ dataset: 'orders', codec, store: view, state, writeBehind: { entries: 10_000_000, ms: 600_000, idleMs: 600_000 }, pageCacheBytes: bytes })
      await index.start()
      const r = results.get(name) ?? { wall: [], cpu: [] }
      for (let round = 0; round < rounds; round++) {
        const ids = new Set<number>()
        while (ids.size < drift) ids.add(Math.floor(Math.random() * rows))
        const upserts = [...ids].map(id => codec.encodeRow(orderRow(id, version)))
        version++
        const upsertKeys = upserts.map(r => codec.keyOfEncodedRow(r))
        const t = performance.now()
        const c = process.cpuUsage()
        await index.takeApplied({ upserts, deletes: [], upsertKeys })
        const cpu = process.cpuUsage(c)
        r.wall.push(performance.now() - t)
        r.cpu.push((cpu.user + cpu.system) / 1000)
      }
      results.set(name, r)
      await index.stop()
      await state.close()
    }
  }
  await store.close()
  console.log(`| ${drift.toLocaleString('en-US')} changes of ${rows.toLocaleString('en-US')} rows, then their page write | wall, median (min-max) | CPU of the process, median |`)
  console.log('| --- | --- | --- |')
  for (const [name, r] of results) {
    console.log(`| ${name} | ${median(r.wall).toFixed(0)} ms (${Math.min(...r.wall).toFixed(0)}-${Math.max(...r.wall).toFixed(0)}) | ${median(r.cpu).toFixed(0)} ms |`)
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
