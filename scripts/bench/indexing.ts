/**
 * Section 1: indexing throughput on one data set, measured three ways:
 * (a) raw xxh64 over encoded rows in memory, (b) a key-ordered scan of a
 * LevelStore, (c) a DigestIndex rebuild over that same store (it keeps rows in
 * key-hash order and serves as its own index: scan, key hash, row digest,
 * tree), (d) the same rebuild writing index entries of its own, as it does
 * for stores that cannot list rows by key hash.
 */
import { Level } from 'level'
import { ordersCodec, orderRow, seedOrders } from '../../cluster/orders.ts'
import { SCAN_BATCH_ROWS } from '../../src/constants.ts'
import { xxh64 } from '../../src/digest/hash.ts'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { memorySnapshot, type MemorySnapshot } from './memory.ts'
import { bytes, fixed, int, progress, rate, seconds, table } from './report.ts'
import { directoryBytes, makeTempDir, removeTempDir } from './temp-dirs.ts'
import { median, timed } from './timing.ts'

const HASH_PASSES = 3

export interface IndexingResult {
  rows: number
  /** Sum of the encoded row sizes. */
  encodedBytes: number
  hashPassMs: number[]
  seedMs: number
  settleMs: number
  storeBytes: number
  scanMs: number
  indexMs: number
  treeDepth: number
  before: MemorySnapshot
  after: MemorySnapshot
  indexBytes: number
  /** (d): the rebuild that writes its own index entries. */
  entriesMs: number
  entriesBytes: number
}

/** The n sample orders, canonically encoded, in id order. */
export function encodeOrders (n: number): Uint8Array[] {
  const rows = new Array<Uint8Array>(n)
  for (let id = 0; id < n; id++) rows[id] = ordersCodec.encodeRow(orderRow(id))
  return rows
}

/** (a) xxh64 of every row, one pass; returns the time of the pass. */
async function hashAllRows (rows: readonly Uint8Array[]): Promise<number> {
  let zeros = 0
  const { ms } = await timed(() => { for (const row of rows) if (xxh64(row) === 0n) zeros++ })
  if (zeros > 1) throw new Error(`xxh64 returned 0 for ${zeros} rows`)
  return ms
}

/**
 * Seeds a LevelStore with orders [0, n), drops the seeding change log (as an
 * agent following the feed would have) and compacts, so the scans below
 * read a settled database rather than racing background compactions.
 */
async function seedSettledStore (dir: string, n: number): Promise<{ store: LevelStore, seedMs: number, settleMs: number }> {
  const seeding = new LevelStore({ path: dir, codec: ordersCodec })
  await seeding.open()
  const { ms: seedMs } = await timed(async () => await seedOrders(seeding, 0, n))
  const { ms: settleMs } = await timed(async () => {
    await seeding.trimChanges(await seeding.lastSeq())
    await seeding.close()
    await compactWholeDatabase(dir)
  })
  const store = new LevelStore({ path: dir, codec: ordersCodec })
  await store.open()
  return { store, seedMs, settleMs }
}

/** Full-range compaction (classic-level's compactRange; `level` resolves to classic-level on Node). */
async function compactWholeDatabase (dir: string): Promise<void> {
  type Compactable = Level<Uint8Array, Uint8Array> & { compactRange: (start: Uint8Array, end: Uint8Array) => Promise<void> }
  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' }) as Compactable
  await db.open()
  try { await db.compactRange(Uint8Array.of(0x00), Uint8Array.of(0xff, 0xff, 0xff, 0xff)) } finally { await db.close() }
}

/** (b) key-ordered scan of the store, counting rows, in the batches the index rebuild uses. */
async function scanAndCount (store: LevelStore): Promise<{ rows: number, ms: number }> {
  const { value: rows, ms } = await timed(async () => {
    let count = 0
    for await (const batch of store.scan({ batchSize: SCAN_BATCH_ROWS })) count += batch.length
    return count
  })
  return { rows, ms }
}

/** (c) DigestIndex.start() on an empty StateDb: a full rebuild over the store; (d) with `keepEntries`. */
async function digestAndIndex (store: LevelStore, stateDir: string, keepEntries = false): Promise<{ ms: number, rowCount: number, depth: number, before: MemorySnapshot, after: MemorySnapshot }> {
  const state = new StateDb(stateDir)
  await state.open()
  const index = new DigestIndex({ dataset: 'orders', codec: ordersCodec, store, state, keepEntries })
  try {
    const before = memorySnapshot()
    const { ms } = await timed(async () => await index.start())
    const after = memorySnapshot()
    return { ms, rowCount: index.tree.rowCount, depth: index.tree.depth, before, after }
  } finally {
    await index.stop()
    await state.close()
  }
}

export async function measureIndexing (rows: readonly Uint8Array[]): Promise<IndexingResult> {
  const n = rows.length
  const encodedBytes = rows.reduce((sum, row) => sum + row.length, 0)
  progress(`1a: xxh64 over ${int(n)} encoded rows, ${HASH_PASSES} passes`)
  const hashPassMs: number[] = []
  for (let i = 0; i < HASH_PASSES; i++) hashPassMs.push(await hashAllRows(rows))

  const storeDir = await makeTempDir('store')
  const stateDir = await makeTempDir('state')
  try {
    progress(`1b: seeding a LevelStore with ${int(n)} rows`)
    const { store, seedMs, settleMs } = await seedSettledStore(storeDir, n)
    try {
      const storeBytes = await directoryBytes(storeDir)
      progress('1b: scanning the store')
      const scan = await scanAndCount(store)
      if (scan.rows !== n) throw new Error(`scan counted ${scan.rows} rows, expected ${n}`)
      progress('1c: DigestIndex.start() (full rebuild)')
      const indexed = await digestAndIndex(store, stateDir)
      if (indexed.rowCount !== n) throw new Error(`index tree holds ${indexed.rowCount} rows, expected ${n}`)
      const indexBytes = await directoryBytes(stateDir)
      const entriesDir = await makeTempDir('entries')
      try {
        progress('1d: DigestIndex.start() keeping its own entries')
        const withEntries = await digestAndIndex(store, entriesDir, true)
        if (withEntries.rowCount !== n) throw new Error(`entries index tree holds ${withEntries.rowCount} rows, expected ${n}`)
        return {
          rows: n, encodedBytes, hashPassMs, seedMs, settleMs, storeBytes,
          scanMs: scan.ms, indexMs: indexed.ms, treeDepth: indexed.depth,
          before: indexed.before, after: indexed.after,
          indexBytes, entriesMs: withEntries.ms, entriesBytes: await directoryBytes(entriesDir)
        }
      } finally {
        await removeTempDir(entriesDir)
      }
    } finally {
      await store.close()
    }
  } finally {
    await removeTempDir(storeDir)
    await removeTempDir(stateDir)
  }
}

export function indexingReport (r: IndexingResult): string {
  const hashMs = median(r.hashPassMs)
  const perSec = (ms: number): number => r.rows / (ms / 1000)
  const throughput = table(['step', 'time', 'rows/s', '(c) is … of this'], [
    [`(a) raw xxh64 of ${int(r.rows)} encoded rows in memory (median of ${r.hashPassMs.length} passes)`, seconds(hashMs), rate(r.rows, hashMs), `${fixed(perSec(r.indexMs) / perSec(hashMs) * 100, 1)} %`],
    ['(b) key-ordered LevelStore scan, counting rows', seconds(r.scanMs), rate(r.rows, r.scanMs), `${fixed(perSec(r.indexMs) / perSec(r.scanMs) * 100, 1)} %`],
    ['(c) DigestIndex.start(): full rebuild over the key-hash-ordered store (scan, key hash, row digest, tree; no index writes)', seconds(r.indexMs), rate(r.rows, r.indexMs), '100 %'],
    [`(d) the same rebuild keeping its own index entries (as for stores not ordered by key hash; ${bytes(r.entriesBytes)} written)`, seconds(r.entriesMs), rate(r.rows, r.entriesMs), `${fixed(perSec(r.indexMs) / perSec(r.entriesMs) * 100, 1)} %`]
  ])
  const mem = (pick: (m: MemorySnapshot) => number): string[] => [bytes(pick(r.before)), bytes(pick(r.after)), bytes(pick(r.after) - pick(r.before))]
  const memory = table(['memory', 'before (c)', 'after (c)', 'delta'], [
    ['process RSS', ...mem(m => m.rss)],
    ['V8 heap used', ...mem(m => m.heapUsed)],
    ['external (ArrayBuffers, Buffers)', ...mem(m => m.external)]
  ])
  const gcNote = r.before.collected
    ? 'Snapshots taken after a forced full GC (run with --expose-gc), so the deltas are retained memory.'
    : 'Run without --expose-gc: no GC was forced before the snapshots, so the deltas include uncollected garbage of the rebuild and are an upper bound on what the index keeps; run `NODE_OPTIONS=--expose-gc npm run bench` for retained memory.'
  return [
    '## 1. Indexing throughput',
    '',
    `Same ${int(r.rows)} orders for every step: ${fixed(r.encodedBytes / r.rows, 1)} bytes a row encoded, ` +
    `${bytes(r.storeBytes)} of LevelDB files for the store (${fixed(r.storeBytes / r.rows, 1)} bytes a row, snappy-compressed). ` +
    `Seeding the LevelStore took ${seconds(r.seedMs)} (${rate(r.rows, r.seedMs)}); its seeding change log was then trimmed and the database compacted (${seconds(r.settleMs)}), ` +
    'so (b) and (c) read a settled store, as an agent restarting over an existing replica would.',
    '',
    throughput,
    '',
    `Throughput ratios: (c)/(b) = **${fixed(r.scanMs / r.indexMs, 3)}**, (c)/(a) = **${fixed(hashMs / r.indexMs, 4)}** ` +
    `(the rebuild takes ${fixed(r.indexMs / r.scanMs, 2)}x the time of the bare scan and ${fixed(r.indexMs / hashMs, 1)}x the time of raw hashing).`,
    '',
    `Memory for ${int(r.rows)} rows indexed (tree depth ${r.treeDepth}; the index's own LevelDB directory holds ${bytes(r.indexBytes)} on disk afterwards):`,
    '',
    memory,
    '',
    `${gcNote} The index and its StateDb are still open at the "after" snapshot; RSS also counts native memory that heap and external do not ` +
    '(LevelDB memtables and caches of both databases, allocator pages not yet returned to the OS).'
  ].join('\n')
}
