/**
 * Shared setup for the audit tests: an audit log in a temporary agent state
 * dir, and an orders store of either backend (a real LevelStore or a real
 * PgStore on a fresh database) holding rows 1..ROWS.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AuditLog, type AuditEntry } from '../../src/audit/audit-log.ts'
import type { FixPlan } from '../../src/audit/apply-fix.ts'
import { fixKeys } from '../../src/audit/fix-rows.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import type { ReplicaStore } from '../../src/stores/replica-store.ts'
import { order, ordersCodec, ordersSchema } from '../helpers/datasets.ts'
import { createDatabase, createTableSql, sql } from '../helpers/postgres.ts'

export const codec = ordersCodec
export const ROWS = 10

export const row = (id: number, version = 0): Uint8Array => codec.encodeRow(order(id, version))
export const key = (id: number): Uint8Array => codec.encodeKey(order(id))
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

export interface StoreKit {
  store: ReplicaStore
  /** A write by another application, not through converge. */
  writeBehind: (upserts: Uint8Array[], deletes: Uint8Array[]) => Promise<void>
  /** The PostgreSQL database's connection string (postgres only). */
  url?: string
  cleanup: () => Promise<void>
}

export type StoreKind = 'level' | 'postgres'

export async function openStore (kind: StoreKind): Promise<StoreKit> {
  let kit: StoreKit
  if (kind === 'level') {
    const dir = await mkdtemp(join(tmpdir(), 'converge-audit-store-'))
    const store = new LevelStore({ path: join(dir, 'orders'), codec })
    await store.open()
    kit = {
      store,
      writeBehind: async (upserts, deletes) => { await store.apply({ upserts, deletes }) },
      cleanup: async () => { await store.close(); await rm(dir, { recursive: true, force: true }) }
    }
  } else {
    const db = await createDatabase('converge_audit')
    await sql(db.url, createTableSql('public.orders', ordersSchema))
    const store = new PgStore({ connectionString: db.url, table: 'public.orders', codec })
    await store.open()
    const other = new PgStore({ connectionString: db.url, table: 'public.orders', codec })
    await other.open()
    kit = {
      store,
      writeBehind: async (upserts, deletes) => { await other.apply({ upserts, deletes }) },
      url: db.url,
      cleanup: async () => { await other.close(); await store.close(); await db.drop() }
    }
  }
  await kit.store.apply({ upserts: Array.from({ length: ROWS }, (_, i) => row(i + 1)), deletes: [] })
  return kit
}

export interface AuditKit {
  dir: string
  state: StateDb
  audit: AuditLog
  /** A new AuditLog on the same state, as after a restart. */
  reopen: () => Promise<AuditLog>
  cleanup: () => Promise<void>
}

export async function openAudit (): Promise<AuditKit> {
  const dir = await mkdtemp(join(tmpdir(), 'converge-audit-'))
  const state = new StateDb(join(dir, 'state'))
  await state.open()
  const kit: AuditKit = {
    dir,
    state,
    audit: new AuditLog(state),
    reopen: async () => { kit.audit = new AuditLog(state); await kit.audit.open(); return kit.audit },
    cleanup: async () => { await state.close(); await rm(dir, { recursive: true, force: true }) }
  }
  await kit.audit.open()
  return kit
}

let fixes = 0

/** A restore-like fix: row 1 changed, row 11 added, row 2 deleted (unless told otherwise). */
export function plan (over: Partial<FixPlan> = {}): FixPlan {
  fixes++
  return {
    fixId: `fix-${fixes}`,
    correlationId: `cid-${fixes}`,
    dataset: 'orders',
    region: 'b',
    clock: { a: 1, b: fixes },
    sourceRegion: 'a',
    rule: 'restore',
    by: 'converge',
    upserts: [row(1, 1), row(11)],
    deletes: [key(2)],
    ...over
  }
}

/** What a crash right after the intent leaves: the intent (with the rows read just before), and nothing else. */
export async function crashAfterIntent (audit: AuditLog, store: ReplicaStore, fix: FixPlan, options: { withBefore?: boolean } = {}): Promise<AuditEntry> {
  const before = (await store.get(fixKeys(fix, codec))).map(r => r ?? null)
  return await audit.append({ ...fix, kind: 'intent', ...(options.withBefore === false ? {} : { before }) })
}

/** The store's rows for ids, as hex (null where absent). */
export async function rowsOf (store: ReplicaStore, ids: number[]): Promise<Array<string | null>> {
  return (await store.get(ids.map(key))).map(r => (r === undefined ? null : hex(r)))
}

export async function entries (audit: AuditLog): Promise<AuditEntry[]> {
  const out: AuditEntry[] = []
  for await (const e of audit.read()) out.push(e)
  return out
}
