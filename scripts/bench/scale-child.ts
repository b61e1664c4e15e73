/**
 * The scale benchmark's worker processes (see scale.ts). Each step runs in a
 * process of its own, so that a build's memory is the build's alone:
 *
 *   tsx scripts/bench/scale-child.ts seed STORE FROM TO
 *       grows the LevelStore of sample orders at STORE from FROM to TO rows
 *       and settles it (change log trimmed, compacted); prints {"ms"}
 *   tsx scripts/bench/scale-child.ts build STORE STATE store-backed|own-entries
 *       rebuilds a DigestIndex over it from nothing, in a new state dir:
 *       store-backed (the LevelStore is ordered by key hash and is its own
 *       index) or keeping entries of its own (the path of stores that are
 *       not: PostgreSQL, SQLite); prints a ScaleBuild: its time and the
 *       process's peak resident memory during it (VmHWM, reset just before
 *       it through /proc/self/clear_refs), and the peak of its anonymous
 *       part (RssAnon, sampled): resident memory also counts the store's
 *       table files, which LevelDB maps into the process to read them, and
 *       those pages are the kernel's page cache, given back under pressure
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { Level } from 'level'
import { ordersCodec, seedOrders } from '../../cluster/orders.ts'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { directoryBytes } from './temp-dirs.ts'

export interface ScaleBuild {
  mode: 'store-backed' | 'own-entries'
  ms: number
  /** RSS just before the build, after a full GC. */
  rssBefore: number
  /** Peak RSS during the build (VmHWM after a reset), or the highest sample where the reset is not allowed. */
  peakRss: number
  peakExact: boolean
  /** Highest anonymous resident memory (RssAnon) sampled every 20 ms during the build: the process's own memory, file mappings left out. */
  peakAnon: number
  anonBefore: number
  /** V8 heap used after the build, after a full GC, with the index still open. */
  heapAfter: number
  depth: number
  stateBytes: number
  rows: number
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined)

function vmHwm (): number | undefined {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))
  return m === null ? undefined : Number(m[1]) * 1024
}

function rssAnon (): number {
  const m = /RssAnon:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))
  return m === null ? Number.NaN : Number(m[1]) * 1024
}

function resetPeak (): boolean {
  try { writeFileSync('/proc/self/clear_refs', '5'); return true } catch { return false }
}

async function settle (dir: string): Promise<void> {
  type Compactable = Level<Uint8Array, Uint8Array> & { compactRange: (start: Uint8Array, end: Uint8Array) => Promise<void> }
  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' }) as Compactable
  await db.open()
  try { await db.compactRange(Uint8Array.of(0x00), Uint8Array.of(0xff, 0xff, 0xff, 0xff)) } finally { await db.close() }
}

async function build (store: LevelStore, stateDir: string, keepEntries: boolean): Promise<ScaleBuild> {
  const state = new StateDb(stateDir)
  await state.open()
  const index = new DigestIndex({ dataset: 'orders', codec: ordersCodec, store, state, keepEntries })
  let measured: Omit<ScaleBuild, 'stateBytes'>
  try {
    gc(); gc()
    const rssBefore = process.memoryUsage.rss()
    const anonBefore = rssAnon()
    const exact = resetPeak()
    let sampled = rssBefore
    let peakAnon = anonBefore
    const sampler = setInterval(() => { sampled = Math.max(sampled, process.memoryUsage.rss()); peakAnon = Math.max(peakAnon, rssAnon()) }, 20)
    const t = performance.now()
    await index.start()
    const ms = performance.now() - t
    clearInterval(sampler)
    peakAnon = Math.max(peakAnon, rssAnon())
    const peakRss = exact ? (vmHwm() ?? sampled) : Math.max(sampled, process.memoryUsage.rss())
    gc(); gc()
    measured = {
      mode: keepEntries ? 'own-entries' : 'store-backed', ms, rssBefore, peakRss, peakExact: exact, peakAnon, anonBefore,
      heapAfter: process.memoryUsage().heapUsed, depth: index.tree.depth, rows: index.tree.rowCount
    }
  } finally {
    await index.stop()
    await state.close()
  }
  // sized once closed: LevelDB compacts (and deletes files) while it is open
  const stateBytes = await directoryBytes(stateDir)
  await rm(stateDir, { recursive: true, force: true })
  return { ...measured, stateBytes }
}

async function main (): Promise<void> {
  const [command, storeDir, ...rest] = process.argv.slice(2)
  if (command === 'seed' && storeDir !== undefined && rest.length === 2) {
    const [from, to] = rest.map(Number) as [number, number]
    const t = performance.now()
    const seeding = new LevelStore({ path: storeDir, codec: ordersCodec })
    await seeding.open()
    try {
      await seedOrders(seeding, from, to, 20_000)
      await seeding.trimChanges(await seeding.lastSeq())
    } finally {
      await seeding.close()
    }
    await settle(storeDir)
    process.stdout.write(`${JSON.stringify({ ms: performance.now() - t })}\n`)
  } else if (command === 'build' && storeDir !== undefined && rest.length === 2 && (rest[1] === 'store-backed' || rest[1] === 'own-entries')) {
    const store = new LevelStore({ path: storeDir, codec: ordersCodec })
    await store.open()
    try {
      process.stdout.write(`${JSON.stringify(await build(store, rest[0]!, rest[1] === 'own-entries'))}\n`)
    } finally {
      await store.close()
    }
  } else {
    throw new Error('usage: scale-child.ts seed STORE FROM TO | build STORE STATE store-backed|own-entries')
  }
}

main().catch(err => {
  process.stderr.write(`scale-child failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
