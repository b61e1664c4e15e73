/**
 * Drift: rows changed, added and removed in a replica behind its agent's
 * back, through the store itself (so a PostgreSQL or SQLite replica's own
 * capture triggers see an ordinary local write). Every drifted key is
 * recorded with the time it landed: the report matches them against the
 * audit to measure time to detect and to remediate.
 *
 * Updates give a row a revision no other writer uses, so each one is a real
 * difference from the source of truth; inserts take ids from the region's
 * own range (dataset-model.ts); hot keys are a small fixed set drifted over
 * and over; a partition loss deletes every seeded row of whole partitions.
 */
import type { ReplicaStore } from '../src/stores/replica-store.ts'
import { DRIFT_BASE, DRIFT_SPAN, type DatasetModel } from './dataset-model.ts'
import { sleep } from './live-load.ts'
import { rng } from './orders.ts'

/** Drift revisions stay below the live load's (LOAD_REVISION_BASE), so the two never write the same row. */
const MAX_DRIFT_REVISION = 4_000_000

export type DriftOp = 'update' | 'insert' | 'delete'

export interface Injection { region: string, dataset: string, key: string, at: number, op: DriftOp }

export interface DriftCounts { updated: number, inserted: number, deleted: number }

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** Every drifted key, and per region and dataset the ids and revisions handed out so far. */
export class DriftLedger {
  readonly injections: Injection[] = []
  private readonly next = new Map<string, { insert: number, revision: number }>()

  counters (region: string, dataset: string): { insert: number, revision: number } {
    const k = `${region}/${dataset}`
    let c = this.next.get(k)
    if (c === undefined) { c = { insert: 0, revision: 1 }; this.next.set(k, c) }
    return c
  }

  counts (region: string): DriftCounts {
    const c = { updated: 0, inserted: 0, deleted: 0 }
    for (const i of this.injections) if (i.region === region) c[i.op === 'update' ? 'updated' : i.op === 'insert' ? 'inserted' : 'deleted']++
    return c
  }
}

export interface DriftShape {
  mix: { update: number, insert: number, delete: number }
  hotKeys?: { keys: number, share: number }
}

/** Writes drift of one shape into one region's replica of one dataset. */
export class DriftInjector {
  private readonly random: () => number
  private readonly hot: number[]
  /** The store's change seq of the last drift written (0: none yet): the agent has seen it once its index is there. */
  lastSeq = 0

  constructor (
    private readonly model: DatasetModel,
    private readonly region: string,
    private readonly regionIndex: number,
    private readonly shape: DriftShape,
    seed: number,
    private readonly ledger: DriftLedger
  ) {
    this.random = rng(seed + regionIndex * 7919)
    const hotKeys = Math.min(shape.hotKeys?.keys ?? 0, model.rows)
    const hot = new Set<number>()
    while (hot.size < hotKeys) hot.add(Math.floor(this.random() * model.rows))
    this.hot = [...hot]
  }

  private pickExisting (taken: Set<number>): number {
    const hotShare = this.shape.hotKeys?.share ?? 0
    for (let tries = 0; ; tries++) {
      const fromHot = this.hot.length > 0 && this.random() < hotShare && tries < 50
      const id = fromHot ? this.hot[Math.floor(this.random() * this.hot.length)]! : Math.floor(this.random() * this.model.rows)
      if (!taken.has(id)) { taken.add(id); return id }
      if (tries > 10 * this.model.rows) throw new Error(`cannot pick more distinct rows of ${this.model.name}`)
    }
  }

  /** One batch of `rows` changes, split by the mix, in one store write. */
  async batch (store: ReplicaStore, rows: number): Promise<DriftCounts> {
    const { update, insert, delete: del } = this.shape.mix
    const total = update + insert + del
    const counts = { updated: 0, inserted: 0, deleted: 0 }
    // whole rows per kind, the remainder by chance so small batches follow the mix on average
    for (let i = 0; i < rows; i++) {
      const r = this.random() * total
      if (r < update) counts.updated++
      else if (r < update + insert) counts.inserted++
      else counts.deleted++
    }
    const next = this.ledger.counters(this.region, this.model.name)
    const taken = new Set<number>()
    const upserts: Uint8Array[] = []
    const deletes: Uint8Array[] = []
    const ops: Array<{ key: Uint8Array, op: DriftOp }> = []
    for (let i = 0; i < counts.updated; i++) {
      const id = this.pickExisting(taken)
      const revision = 1 + (next.revision++ % MAX_DRIFT_REVISION)
      upserts.push(this.model.encodeRow(id, revision))
      ops.push({ key: this.model.encodeKey(id), op: 'update' })
    }
    for (let i = 0; i < counts.deleted; i++) {
      const id = this.pickExisting(taken)
      deletes.push(this.model.encodeKey(id))
      ops.push({ key: this.model.encodeKey(id), op: 'delete' })
    }
    for (let i = 0; i < counts.inserted; i++) {
      const id = DRIFT_BASE + this.regionIndex * DRIFT_SPAN + next.insert++
      upserts.push(this.model.encodeRow(id))
      ops.push({ key: this.model.encodeKey(id), op: 'insert' })
    }
    this.wrote(await store.apply({ upserts, deletes, origin: 'drift' }))
    this.record(ops)
    return counts
  }

  /** Deletes every seeded row of `partitions` partitions chosen at random; returns their numbers. */
  async losePartitions (store: ReplicaStore, partitions: number): Promise<number[]> {
    const count = this.model.partitions ?? 1
    const lost = new Set<number>()
    while (lost.size < partitions) lost.add(Math.floor(this.random() * count))
    const deletes: Uint8Array[] = []
    for (let id = 0; id < this.model.rows; id++) if (lost.has(this.model.shardOf(id))) deletes.push(this.model.encodeKey(id))
    this.wrote(await store.apply({ upserts: [], deletes, origin: 'drift' }))
    this.record(deletes.map(key => ({ key, op: 'delete' as const })))
    return [...lost].sort((a, b) => a - b)
  }

  /** One drift entry's batch: `rows`, a `share` of the dataset, or `partitionLoss` partitions; says what it did. */
  async land (store: ReplicaStore, entry: { rows?: number, share?: number, partitionLoss?: number }): Promise<string> {
    if (entry.partitionLoss !== undefined) return `lost partitions ${(await this.losePartitions(store, entry.partitionLoss)).join(', ')}`
    const c = await this.batch(store, entry.rows ?? Math.max(1, Math.round((entry.share ?? 0) * this.model.rows)))
    return `drifted ${c.updated} updated, ${c.inserted} inserted, ${c.deleted} deleted`
  }

  /** A steady stream of `rowsPerSecond` until `untilAt` (epoch ms) or the signal; the rows written. */
  async stream (store: ReplicaStore, rowsPerSecond: number, untilAt: number, signal: AbortSignal): Promise<number> {
    const start = Date.now()
    let written = 0
    while (!signal.aborted && Date.now() < untilAt) {
      const due = Math.floor(rowsPerSecond * (Date.now() - start) / 1000) - written
      if (due > 0) { await this.batch(store, due); written += due }
      await sleep(100, signal)
    }
    return written
  }

  private wrote (result: { seq: number }): void {
    this.lastSeq = Math.max(this.lastSeq, result.seq)
  }

  private record (ops: Array<{ key: Uint8Array, op: DriftOp }>): void {
    const at = Date.now()
    for (const { key, op } of ops) this.ledger.injections.push({ region: this.region, dataset: this.model.name, key: hex(key), at, op })
  }
}
