/**
 * Each region's replica of each dataset: provisioned and seeded before the
 * agents start, written behind their backs (drift, live load) through the
 * same store classes the agents use, read directly for the end checks, and
 * dropped afterwards.
 *
 *   level     a directory under the run's; the agent holds it locked while
 *             it runs, so it is written only before start and read only
 *             after stop. Seeded once and copied (with a new store id) to
 *             every other LevelDB region: same rows, a fraction of the time.
 *   postgres  a database per region (created here, dropped at the end), a
 *             table named after the dataset, seeded with one JSON statement
 *             per batch before any capture trigger exists. On the
 *             scenario's server, or on a server of the region's own
 *             (private-postgres.ts: `server: own`, which a crash fault
 *             implies).
 *   sqlite    a file per region; the store creates its table.
 */
import { cp, mkdir } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { Level } from 'level'
import pg from 'pg'
import type { ColumnType } from '../src/digest/schema.ts'
import { createStore, type StoreConfig } from '../src/stores/open-store.ts'
import { LevelStore } from '../src/stores/level-store.ts'
import type { ReplicaStore } from '../src/stores/replica-store.ts'
import type { DatasetModel } from './dataset-model.ts'
import { processAlive, startPrivatePostgres, type PrivatePostgres } from './private-postgres.ts'
import type { StoreKind } from './scenario.ts'

export const DEFAULT_PG_URL = process.env.CONVERGE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres'

const SEED_BATCH = 10_000

const PG_TYPES: Record<ColumnType, string> = {
  integer: 'bigint', float: 'double precision', decimal: 'numeric', string: 'text', boolean: 'boolean', timestamp: 'timestamptz', json: 'jsonb', bytes: 'bytea'
}
const quoteIdent = (n: string): string => `"${n.replace(/"/g, '""')}"`
const quoteLiteral = (text: string): string => `'${text.replace(/'/g, "''")}'`

export interface RegionStore {
  region: string
  dataset: DatasetModel
  kind: StoreKind
  /** The dataset's `store` in the agent's config. */
  config: StoreConfig
  /** The PostgreSQL database's URL and name, and its server's admin URL (postgres regions). */
  pg?: { url: string, database: string, adminUrl: string }
  /** The region's own server (`server: own`), which a crash fault takes down. */
  server?: PrivatePostgres
}

/** Opens the store for reading or writing from this process; `readOnly` for checks that must change nothing (no capture set up, no change log trimmed). */
export async function openStore (s: RegionStore, options: { readOnly?: boolean } = {}): Promise<ReplicaStore> {
  const store = await createStore(s.config, s.dataset.codec)
  await store.open(options)
  return store
}

export async function withStore<T> (s: RegionStore, fn: (store: ReplicaStore) => Promise<T>, options: { readOnly?: boolean } = {}): Promise<T> {
  const store = await openStore(s, options)
  try { return await fn(store) } finally { await store.close() }
}

async function adminQuery (adminUrl: string, text: string): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl })
  await c.connect()
  try { await c.query(text) } finally { await c.end() }
}

/**
 * What a run writes on each database it makes (COMMENT ON DATABASE): the
 * process that owns it and the machine it runs on, so that a later run can
 * tell a database a killed run left behind (removeOrphanedDatabases). A
 * database kept for a person (--keep) says KEPT_NOTE instead.
 */
const OWNER_NOTE = /^converge cluster run: owner (\d+) on (.+)$/
const ownerNote = (): string => `converge cluster run: owner ${process.pid} on ${hostname()}`
const KEPT_NOTE = 'converge cluster run: kept'
const DATABASE_PREFIX = 'converge_cluster_'

/** A fresh database on the server behind `adminUrl`, noted as this process's; its URL. */
async function createDatabase (adminUrl: string, region: string, runId: string): Promise<{ url: string, database: string, adminUrl: string }> {
  const database = `${DATABASE_PREFIX}${runId}_${region.replace(/[^A-Za-z0-9]/g, '_').toLowerCase()}`.slice(0, 63)
  await adminQuery(adminUrl, `CREATE DATABASE ${quoteIdent(database)}`)
  await adminQuery(adminUrl, `COMMENT ON DATABASE ${quoteIdent(database)} IS ${quoteLiteral(ownerNote())}`)
  const url = new URL(adminUrl)
  url.pathname = `/${database}`
  return { url: url.toString(), database, adminUrl }
}

/**
 * Drops the databases on the server behind `adminUrl` that runs killed
 * before they could (SIGKILL, a crash of the machine's Node): each of ours
 * whose note names an owner process of this machine that is gone. A
 * database of a run still going, one kept (--keep), one made on another
 * machine or without a note is left alone. The databases dropped.
 */
export async function removeOrphanedDatabases (adminUrl: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: adminUrl })
  await c.connect()
  try {
    const { rows } = await c.query<{ name: string, note: string | null }>(
      "SELECT datname AS name, shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE starts_with(datname, $1)", [DATABASE_PREFIX])
    const dropped: string[] = []
    for (const { name, note } of rows) {
      const owner = OWNER_NOTE.exec(note ?? '')
      if (owner === null || owner[2] !== hostname() || processAlive(Number(owner[1]))) continue
      await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)
      dropped.push(name)
    }
    return dropped
  } finally {
    await c.end()
  }
}

/** Seeds orders [0, rows) into a fresh PostgreSQL table with plain SQL: no capture trigger exists yet, so no change log fills up. */
async function seedPostgres (url: string, model: DatasetModel, signal: AbortSignal): Promise<void> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    const cols = model.schema.columns.map(col => `${quoteIdent(col.name)} ${PG_TYPES[col.type]}${col.nullable === true ? '' : ' NOT NULL'}`)
    await c.query(`CREATE TABLE public.${quoteIdent(model.name)} (${cols.join(', ')}, PRIMARY KEY (${model.schema.primaryKey.map(quoteIdent).join(', ')}))`)
    const timestamps = model.schema.columns.filter(col => col.type === 'timestamp').map(col => col.name)
    for (let start = 0; start < model.rows; start += SEED_BATCH) {
      signal.throwIfAborted()
      const batch = []
      for (let id = start; id < Math.min(model.rows, start + SEED_BATCH); id++) {
        const row = model.row(id)
        for (const t of timestamps) row[t] = new Date(row[t] as number).toISOString()
        batch.push(row)
      }
      await c.query(`INSERT INTO public.${quoteIdent(model.name)} SELECT * FROM json_populate_recordset(null::public.${quoteIdent(model.name)}, $1::json)`, [JSON.stringify(batch)])
    }
    // a replica as it stands once autovacuum has been by (statistics, visibility map, hint bits), so that
    // autovacuum does not arrive in the middle of a run and the first reads do not write every page
    await c.query(`VACUUM (ANALYZE) public.${quoteIdent(model.name)}`)
  } finally {
    await c.end()
  }
}

async function seedThrough (store: ReplicaStore, model: DatasetModel, signal: AbortSignal): Promise<void> {
  for (let start = 0; start < model.rows; start += SEED_BATCH) {
    signal.throwIfAborted()
    const upserts: Uint8Array[] = []
    for (let id = start; id < Math.min(model.rows, start + SEED_BATCH); id++) upserts.push(model.encodeRow(id))
    await store.apply({ upserts, deletes: [], origin: 'seed' })
  }
}

/** A copied LevelDB store would share its original's id; drop it so the copy gets its own on first open. */
async function renewLevelStoreId (path: string): Promise<void> {
  const db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' })
  await db.open()
  try { await db.sublevel<Uint8Array, Uint8Array>('meta', { keyEncoding: 'view', valueEncoding: 'view' }).del(new TextEncoder().encode('id')) } finally { await db.close() }
}

export interface ProvisionInit {
  dir: string
  regions: Array<{ name: string, store: StoreKind }>
  datasets: DatasetModel[]
  pgAdminUrl: string
  /** Regions whose databases go on a server of their own (`server: own`). */
  privateServers?: ReadonlySet<string>
  /** Where each private server's log is copied when it is removed (`<region>-postgres.log`). */
  logDir?: string
  signal: AbortSignal
  /** Told each step, for the progress view. */
  say?: (line: string) => void
}

/**
 * Creates and seeds every region's store of every dataset. Returns them, and
 * a drop() that removes what was created outside `dir` (PostgreSQL
 * databases, the regions' own servers); call it even when provisioning
 * failed halfway.
 */
export function provisionStores (init: ProvisionInit): { stores: RegionStore[], ready: Promise<void>, drop: (options?: { keep?: boolean }) => Promise<string[]> } {
  const stores: RegionStore[] = []
  const databases: Array<{ adminUrl: string, database: string }> = []
  const servers = new Map<string, PrivatePostgres>()
  const runId = randomBytes(4).toString('hex')
  const serverOf = async (region: string): Promise<{ adminUrl: string, server?: PrivatePostgres }> => {
    if (init.privateServers?.has(region) !== true) return { adminUrl: init.pgAdminUrl }
    let server = servers.get(region)
    if (server === undefined) {
      const t = Date.now()
      server = await startPrivatePostgres(region, { signal: init.signal })
      servers.set(region, server)
      init.say?.(`  ${region}: a PostgreSQL server of its own on port ${server.port}, up in ${((Date.now() - t) / 1000).toFixed(1)} s`)
    }
    return { adminUrl: server.adminUrl, server }
  }
  const ready = (async () => {
    for (const model of init.datasets) {
      let levelSeed: string | undefined
      for (const region of init.regions) {
        init.signal.throwIfAborted()
        const t = Date.now()
        const base = join(init.dir, region.name)
        await mkdir(base, { recursive: true })
        let s: RegionStore
        if (region.store === 'level') {
          const path = join(base, model.name)
          s = { region: region.name, dataset: model, kind: 'level', config: { kind: 'level', path } }
          if (levelSeed === undefined) {
            const store = new LevelStore({ path, codec: model.codec })
            await store.open()
            try { await seedThrough(store, model, init.signal) } finally { await store.close() }
            levelSeed = path
          } else {
            await cp(levelSeed, path, { recursive: true })
            await renewLevelStoreId(path)
          }
        } else if (region.store === 'sqlite') {
          s = { region: region.name, dataset: model, kind: 'sqlite', config: { kind: 'sqlite', path: join(base, `${model.name}.db`), table: model.name, createTable: true } }
          await withStore(s, async store => { await seedThrough(store, model, init.signal) })
        } else {
          const { adminUrl, server } = await serverOf(region.name)
          const db = await createDatabase(adminUrl, region.name, runId)
          databases.push(db)
          s = { region: region.name, dataset: model, kind: 'postgres', config: { kind: 'postgres', connectionString: db.url, table: `public.${model.name}` }, pg: db, ...(server === undefined ? {} : { server }) }
          await seedPostgres(db.url, model, init.signal)
        }
        stores.push(s)
        init.say?.(`  seeded ${region.name}/${model.name} (${region.store}, ${model.rows.toLocaleString('en-US')} rows) in ${((Date.now() - t) / 1000).toFixed(1)} s`)
      }
    }
    // the seeding's WAL (some 1 GiB for 3 x 1,000,000 rows) is checkpointed now rather than in the middle of the
    // timeline, where the checkpointer's writes would slow whatever runs then; a role that may not is told so
    for (const adminUrl of new Set(databases.map(d => d.adminUrl))) {
      await adminQuery(adminUrl, 'CHECKPOINT').catch((err: Error) => init.say?.(`  (no CHECKPOINT after seeding: ${err.message})`))
    }
  })()
  /**
   * Drops what was made outside `dir`: the databases on the scenario's server,
   * and each region's own server (stopped, its log copied to `logDir`). With
   * `keep`, the databases stay and the servers are stopped with their data
   * left in place; the lines returned say what was kept and where.
   */
  const drop = async (options: { keep?: boolean } = {}): Promise<string[]> => {
    await ready.catch(() => undefined)
    const kept: string[] = []
    const shared = databases.splice(0).filter(d => d.adminUrl === init.pgAdminUrl).map(d => d.database)
    if (options.keep === true) {
      // a person's now: no later run's sweep may take them for a killed run's
      for (const database of shared) await adminQuery(init.pgAdminUrl, `COMMENT ON DATABASE ${quoteIdent(database)} IS ${quoteLiteral(KEPT_NOTE)}`).catch(() => undefined)
      if (shared.length > 0) kept.push(`kept PostgreSQL databases (drop them when done): ${[...new Set(shared)].join(', ')}`)
    } else {
      for (const database of shared) await adminQuery(init.pgAdminUrl, `DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`).catch(() => undefined)
    }
    for (const [region, server] of servers) {
      await server.remove({ keepData: options.keep, ...(init.logDir === undefined ? {} : { logTo: join(init.logDir, `${region}-postgres.log`) }) }).catch(() => undefined)
      if (options.keep === true) {
        const as = process.getuid?.() === 0 ? 'runuser -u postgres -- ' : ''
        kept.push(`kept ${region}'s own PostgreSQL server, stopped (port ${server.port}): ${as}pg_ctl start -D ${server.dataDir} -l ${join(server.home, 'server.log')}; remove ${server.home} when done`)
      }
    }
    servers.clear()
    return kept
  }
  return { stores, ready, drop }
}
