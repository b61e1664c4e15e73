/**
 * A live write load on a source of truth while the replicas reconcile: an
 * application writing through the store (PostgreSQL or SQLite; converge sees
 * it through the store's change capture). Every acknowledged write is kept
 * in a ledger (id → revision, or deleted), so the end checks can prove that
 * none was lost: the source and, being equal to it, every replica hold
 * exactly what the load last wrote to each key.
 *
 * A write that fails (a terminated backend, a locked file) is retried as the
 * same batch until it goes through, as a careful client would; a batch still
 * unacknowledged when the load is stopped is left out of the ledger and
 * counted as uncertain.
 */
import type { ReplicaStore } from '../src/stores/replica-store.ts'
import { LOAD_BASE, type DatasetModel } from './dataset-model.ts'
import { rng } from './orders.ts'

/** Revisions the load writes; drift stays below them (drift.ts). */
export const LOAD_REVISION_BASE = 5_000_000
const TICK_MS = 100
const RETRY_MS = 200

export interface LoadStats {
  rowsWritten: number, inserted: number, updated: number, deleted: number
  batches: number, errors: number, lastError?: string
  /** Rows of batches never acknowledged (the load stopped while retrying them). */
  uncertain: number
  startedAt?: number
  endedAt?: number
}

export interface LoadInit {
  model: DatasetModel
  rowsPerSecond: number
  mix: { update: number, insert: number, delete: number }
  seed: number
}

export class LiveLoad {
  /** id → the revision last written, or null when the load deleted it. */
  readonly ledger = new Map<number, number | null>()
  readonly stats: LoadStats = { rowsWritten: 0, inserted: 0, updated: 0, deleted: 0, batches: 0, errors: 0, uncertain: 0 }
  private readonly random: () => number
  private readonly inserted: number[] = []
  private nextRevision = LOAD_REVISION_BASE

  constructor (private readonly init: LoadInit) {
    this.random = rng(init.seed)
  }

  /** A live id: seeded or inserted by the load, not deleted by it. */
  private pickLive (taken: Set<number>): number | undefined {
    const pool = this.init.model.rows + this.inserted.length
    for (let tries = 0; tries < 100; tries++) {
      const i = Math.floor(this.random() * pool)
      const id = i < this.init.model.rows ? i : this.inserted[i - this.init.model.rows]!
      if (this.ledger.get(id) !== null && !taken.has(id)) { taken.add(id); return id }
    }
    return undefined
  }

  private plan (rows: number): { upserts: Uint8Array[], deletes: Uint8Array[], effects: Array<[number, number | null]>, counts: { inserted: number, updated: number, deleted: number } } {
    const { model, mix } = this.init
    const total = mix.update + mix.insert + mix.delete
    const taken = new Set<number>()
    const upserts: Uint8Array[] = []
    const deletes: Uint8Array[] = []
    const effects: Array<[number, number | null]> = []
    const counts = { inserted: 0, updated: 0, deleted: 0 }
    for (let n = 0; n < rows; n++) {
      const r = this.random() * total
      if (r >= mix.update && r < mix.update + mix.insert) {
        const id = LOAD_BASE + this.inserted.length + counts.inserted
        upserts.push(model.encodeRow(id, 0))
        effects.push([id, 0])
        counts.inserted++
        continue
      }
      const id = this.pickLive(taken)
      if (id === undefined) continue
      if (r < mix.update) {
        const revision = this.nextRevision++
        upserts.push(model.encodeRow(id, revision))
        effects.push([id, revision])
        counts.updated++
      } else {
        deletes.push(model.encodeKey(id))
        effects.push([id, null])
        counts.deleted++
      }
    }
    return { upserts, deletes, effects, counts }
  }

  /** Writes at the set rate until the signal aborts; resolves once the last batch is settled. */
  async run (store: ReplicaStore, signal: AbortSignal): Promise<void> {
    const started = Date.now()
    this.stats.startedAt = started
    let planned = 0
    try {
      while (!signal.aborted) {
        const due = Math.floor(this.init.rowsPerSecond * (Date.now() - started) / 1000) - planned
        // behind (a stall): catch up, but no more than half a second's worth at once
        const rows = Math.min(due, Math.max(1, Math.ceil(this.init.rowsPerSecond / 2)))
        if (rows > 0) {
          planned += rows
          await this.write(store, rows, signal)
        }
        await sleep(TICK_MS, signal)
      }
    } finally {
      this.stats.endedAt = Date.now()
    }
  }

  private async write (store: ReplicaStore, rows: number, signal: AbortSignal): Promise<void> {
    const batch = this.plan(rows)
    // inserted ids are handed out in the plan: reserve them now, whether or not the batch lands
    for (const [id, rev] of batch.effects) if (rev === 0 && id >= LOAD_BASE) this.inserted.push(id)
    for (;;) {
      try {
        // not cancelled midway: a batch in flight when the load stops is let finish, so its outcome is known
        await store.apply({ upserts: batch.upserts, deletes: batch.deletes, origin: 'load' })
        break
      } catch (err) {
        this.stats.errors++
        this.stats.lastError = (err as Error).message
        if (signal.aborted) {
          this.stats.uncertain += batch.effects.length
          for (const [id] of batch.effects) this.ledger.delete(id)
          return
        }
        await sleep(RETRY_MS, signal)
      }
    }
    for (const [id, rev] of batch.effects) this.ledger.set(id, rev)
    this.stats.batches++
    this.stats.rowsWritten += batch.effects.length
    this.stats.inserted += batch.counts.inserted
    this.stats.updated += batch.counts.updated
    this.stats.deleted += batch.counts.deleted
  }

  /** Order ids whose row in `store` is not what the load last wrote (or is there though the load deleted it). */
  async lostRows (store: ReplicaStore): Promise<number[]> {
    const { model } = this.init
    const lost: number[] = []
    const ids = [...this.ledger.keys()]
    for (let i = 0; i < ids.length; i += 1000) {
      const chunk = ids.slice(i, i + 1000)
      const rows = await store.get(chunk.map(id => model.encodeKey(id)))
      chunk.forEach((id, j) => {
        const revision = this.ledger.get(id)
        const expected = revision === null || revision === undefined ? undefined : model.encodeRow(id, revision)
        const got = rows[j]
        if (got === undefined ? expected !== undefined : expected === undefined || Buffer.compare(Buffer.from(got), Buffer.from(expected)) !== 0) lost.push(id)
      })
    }
    return lost
  }
}

export async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return
  await new Promise<void>(resolve => {
    const done = (): void => { clearTimeout(t); signal?.removeEventListener('abort', done); resolve() }
    const t = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}
