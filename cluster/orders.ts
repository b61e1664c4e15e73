/**
 * The simulator's sample dataset: orders of about 100 bytes each, with a
 * deterministic generator and a drift injector (updates, inserts, deletes),
 * so demos, tests and benchmarks all see the same shapes of data.
 */
import { RowCodec, type Row } from '../src/digest/row-codec.ts'
import type { DatasetSchema } from '../src/digest/schema.ts'
import type { ReplicaStore } from '../src/stores/replica-store.ts'

export const ORDERS_SCHEMA: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'order_id', type: 'integer' },
    { name: 'customer', type: 'string' },
    { name: 'region', type: 'string' },
    { name: 'status', type: 'string' },
    { name: 'amount', type: 'decimal' },
    { name: 'currency', type: 'string' },
    { name: 'items', type: 'integer' },
    { name: 'note', type: 'string', nullable: true },
    { name: 'updated_at', type: 'timestamp' }
  ],
  primaryKey: ['order_id'],
  ignoreColumns: [],
  eventTimeColumn: 'updated_at'
}

export const ordersCodec = new RowCodec(ORDERS_SCHEMA)

const STATUSES = ['placed', 'paid', 'packed', 'shipped', 'delivered', 'returned']
const REGIONS = ['us-east', 'us-west', 'eu-west', 'ap-south']
const BASE_TIME = Date.UTC(2026, 0, 1)

/** A deterministic order; `revision` > 0 gives a changed version of the same order. */
export function orderRow (id: number, revision = 0): Row {
  const h = Math.imul(id ^ 0x9e3779b9, 0x85ebca6b) >>> 0
  return {
    order_id: id,
    customer: `cust-${(h % 50_000).toString().padStart(5, '0')}`,
    region: REGIONS[h % REGIONS.length],
    status: STATUSES[(h + revision) % STATUSES.length],
    amount: `${(h % 100_000) / 100 + revision}`,
    currency: 'USD',
    items: 1 + (h % 9),
    note: h % 3 === 0 ? null : `gift wrap ${h % 7 === 0 ? 'requested' : 'declined'}, leave at door`,
    updated_at: BASE_TIME + id * 1000 + revision * 60_000
  }
}

/** Writes orders [from, to) into a store in batches. */
export async function seedOrders (store: ReplicaStore, from: number, to: number, batch = 10_000): Promise<void> {
  for (let start = from; start < to; start += batch) {
    const upserts: Uint8Array[] = []
    for (let id = start; id < Math.min(to, start + batch); id++) upserts.push(ordersCodec.encodeRow(orderRow(id)))
    await store.apply({ upserts, deletes: [], origin: 'seed' })
  }
}

export interface DriftSpec {
  /** Total rows to drift. */
  rows: number
  /** Share of updates, inserts and deletes (default 0.6 / 0.2 / 0.2). */
  mix?: { update: number, insert: number, delete: number }
  /** Seed for the choice of rows, so a scenario is repeatable. */
  seed: number
}

export interface InjectedDrift { updated: number, inserted: number, deleted: number }

/** A small seeded generator (uniform in [0, 1)): the same seed, the same drift. */
export function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => { s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0; return s / 2 ** 32 }
}

/** Drifts a replica holding orders [0, rowCount): changes, adds and removes rows behind the agent's back. */
export async function injectDrift (store: ReplicaStore, rowCount: number, spec: DriftSpec): Promise<InjectedDrift> {
  const mix = spec.mix ?? { update: 0.6, insert: 0.2, delete: 0.2 }
  const random = rng(spec.seed)
  const updated = Math.round(spec.rows * mix.update)
  const deleted = Math.round(spec.rows * mix.delete)
  const inserted = spec.rows - updated - deleted
  const picked = new Set<number>()
  const pick = (): number => { for (;;) { const id = Math.floor(random() * rowCount); if (!picked.has(id)) { picked.add(id); return id } } }
  const upserts: Uint8Array[] = []
  const deletes: Uint8Array[] = []
  for (let i = 0; i < updated; i++) upserts.push(ordersCodec.encodeRow(orderRow(pick(), 1 + (spec.seed % 5))))
  for (let i = 0; i < deleted; i++) deletes.push(ordersCodec.encodeKey({ order_id: pick() }))
  for (let i = 0; i < inserted; i++) upserts.push(ordersCodec.encodeRow(orderRow(rowCount + spec.seed * 1_000_000 + i)))
  await store.apply({ upserts, deletes, origin: 'drift' })
  return { updated, inserted, deleted }
}
