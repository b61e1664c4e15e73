import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import { AuditLog, type AuditEntry } from '../../src/audit/audit-log.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { compareBytes } from '../../src/policy/restore.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { freePort } from '../../cluster/free-port.ts'
import { fetchStatus, launchAgent, stopAgent, type AgentProcess } from '../../cluster/launcher.ts'
import { injectDrift, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, logTail, tempDir, waitFor } from '../helpers/agents.ts'
import { createDatabase, ORDERS_DDL, sql } from '../helpers/postgres.ts'

const ROWS = 40_000
const DRIFT = 20_000
const VIEWER = 'recovery-viewer-token-000001'

type Db = Awaited<ReturnType<typeof createDatabase>>
interface Status { datasets: Array<{ name: string, state: string, root?: { count: number, sum: string } }> }

/** Every row of the orders table, hashed in key order: equal digests, equal tables. */
async function tableDigest (url: string): Promise<{ rows: number, md5: string }> {
  const { rows: [r] } = await sql(url, "SELECT count(*)::int AS rows, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.order_id), '')) AS md5 FROM public.orders t")
  return { rows: r.rows as number, md5: r.md5 as string }
}

/** Each row's hash by order id. */
async function rowHashes (url: string): Promise<Map<number, string>> {
  const { rows } = await sql(url, 'SELECT order_id::int AS id, md5(t::text) AS h FROM public.orders t')
  return new Map(rows.map(r => [r.id as number, r.h as string]))
}

async function seed (db: Db, drift?: { rows: number, seed: number }): Promise<void> {
  await sql(db.url, ORDERS_DDL)
  const store = new PgStore({ connectionString: db.url, table: 'public.orders', codec })
  await store.open()
  try {
    await seedOrders(store, 0, ROWS, 5000)
    if (drift !== undefined) await injectDrift(store, ROWS, drift)
  } finally {
    await store.close()
  }
}

async function withTimeout<T> (what: string, promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/** GET on an agent's status port with the viewer token; undefined while it does not answer 200 (starting, recovering). */
async function viewerGet<T> (agent: AgentProcess, path: string): Promise<T | undefined> {
  try {
    const res = await fetch(`${agent.statusUrl}${path}`, { headers: { authorization: `Bearer ${VIEWER}` }, signal: AbortSignal.timeout(10_000) })
    return res.ok ? await res.json() as T : undefined
  } catch {
    return undefined
  }
}

/**
 * Where the agent's fix is held inside its store transaction when it is
 * killed, by sessions of the test's own on the replica database:
 *
 * - `before its writes`: a row the fix changes is locked (SELECT … FOR
 *   UPDATE) before the agent starts; the agent's apply waits in its
 *   transaction while it reads its before-images FOR UPDATE.
 * - `mid-write`: as above, then, while the agent waits, a second session
 *   inserts (and does not commit) the row the fix inserts last (its rows are
 *   sorted by key), and the first lets go: the agent's transaction locks its
 *   rows, writes every earlier batch and waits in its COPY (INSERT … ON
 *   CONFLICT … RETURNING) on that key. (That insert cannot be made before
 *   the agent starts: opening a PostgreSQL store re-creates its capture
 *   triggers, which waits for every open write transaction on the table.)
 */
type HeldAt = 'before its writes' | 'mid-write'

interface Holder { pid: number, release: () => Promise<void> }

/** A session of its own on `url` in an open transaction; release() rolls it back. */
async function holdSession (url: string, cleanups: Array<() => Promise<unknown>>): Promise<Holder & { client: pg.Client }> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  let open = false
  const release = async (): Promise<void> => { if (open) { open = false; await client.query('ROLLBACK') } }
  cleanups.push(async () => { await release().catch(() => undefined); await client.end() })
  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
  await client.query('BEGIN')
  open = true
  return { client, pid, release }
}

interface Waiter { pid: number, query: string, wait_event_type: string }

/** The session waiting on `holder` (the agent's, here), once there is one. */
async function waiterOn (url: string, holder: Holder, what: string): Promise<Waiter> {
  let waiter: Waiter | undefined
  await waitFor(what, async () => {
    waiter = (await sql(url, 'SELECT pid, query, wait_event_type FROM pg_stat_activity WHERE datname = current_database() AND $1 = ANY(pg_blocking_pids(pid))', [holder.pid])).rows[0]
    return waiter !== undefined
  }, 30_000, 100)
  return waiter!
}

const heapBytes = async (url: string): Promise<number> => Number((await sql(url, "SELECT pg_relation_size('public.orders') AS n")).rows[0].n)

describe('recovery: an agent killed with SIGKILL in the middle of a large PostgreSQL fix', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let sotDb: Db | undefined
  let sot: AgentProcess | undefined
  let sotP2p: number
  let tokenFile: string
  let sotRows: Map<number, string>
  const cleanups: Array<() => Promise<unknown>> = []

  beforeAll(async () => {
    dir = await tempDir('converge-recovery-')
    tokenFile = join(dir.path, 'viewer.token')
    await writeFile(tokenFile, VIEWER)
    await chmod(tokenFile, 0o600)
    sotDb = await createDatabase()
    await seed(sotDb)
    sotRows = await rowHashes(sotDb.url)
    sotP2p = await freePort()
    const base = agentConfig(dir.path, 'sot', [], ['sot'])
    sot = await launchAgent(dir.path, {
      ...base, listen: [`/ip4/127.0.0.1/tcp/${sotP2p}`], status: { host: '127.0.0.1', port: await freePort() },
      datasets: [{ ...base.datasets[0]!, store: { kind: 'postgres', connectionString: sotDb.url, table: 'public.orders' } }]
    })
    await waitFor('the source of truth to index its table', async () => (await fetchStatus<Status>(sot!))?.datasets[0]?.root?.count === ROWS, 40_000, 100)
  }, 90_000)

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch((err: Error) => { console.error('cleanup failed:', err.message) })
  })

  afterAll(async () => {
    if (sot !== undefined) await stopAgent(sot, 5000)
    await sotDb?.drop()
    await dir?.remove()
  })

  it.each<[HeldAt, number]>([['before its writes', 31], ['mid-write', 32]])('killed %s: the fix is found not applied and aborted at restart, nothing is half-applied, and the replica converges', async (heldAt, driftSeed) => {
    const root = join(dir.path, heldAt.replace(/\W/g, '-'))
    await mkdir(root, { recursive: true })
    const replicaDb = await createDatabase()
    cleanups.push(async () => await replicaDb.drop())
    await seed(replicaDb, { rows: DRIFT, seed: driftSeed })

    // the fix the agent will make: SoT rows missing or changed here (upserts), rows only here (deletes)
    const here = await rowHashes(replicaDb.url)
    const missing = [...sotRows.keys()].filter(id => !here.has(id))
    const changed = [...sotRows.keys()].filter(id => here.has(id) && here.get(id) !== sotRows.get(id))
    const extra = [...here.keys()].filter(id => !sotRows.has(id))
    expect(missing.length + changed.length + extra.length).toBe(DRIFT)
    const before = await tableDigest(replicaDb.url)

    // a row of the fix locked before the agent starts
    const rowLock = await holdSession(replicaDb.url, cleanups)
    expect((await rowLock.client.query('SELECT order_id FROM public.orders WHERE order_id = $1 FOR UPDATE', [changed[Math.floor(changed.length / 2)]])).rowCount).toBe(1)

    // a region of its own per case: the source of truth binds a region to the first peer (key) that claims it
    const region = `b${driftSeed}`
    const config: ConfigInput & { status: { port: number } } = {
      ...agentConfig(root, region, [{ region: 'sot', address: `/ip4/127.0.0.1/tcp/${sotP2p}` }], ['sot']),
      status: { host: '127.0.0.1', port: await freePort(), tokens: [{ name: 'victor', role: 'viewer', tokenFile }] }
    }
    config.datasets = [{ ...config.datasets[0]!, store: { kind: 'postgres', connectionString: replicaDb.url, table: 'public.orders' } }]
    let replica = await launchAgent(root, config)
    cleanups.push(async () => await stopAgent(replica, 5000))
    // on failure, the agents' last words
    onTestFailed(async () => {
      for (const a of [sot!, replica]) console.error(`--- ${a.logPath}\n${logTail(a.logPath, 12).join('\n')}`)
    })

    // the intent is in the audit, and the agent's session waits on the lock inside its transaction
    let intent: AuditEntry | undefined
    await waitFor('the intent of the fix in the replica\'s audit', async () => {
      intent = (await viewerGet<{ entries: AuditEntry[] }>(replica, '/audit?kind=intent&limit=1'))?.entries[0]
      return intent !== undefined
    }, 45_000, 200)
    expect(intent!.upserts).toHaveLength(missing.length + changed.length)
    expect(intent!.deletes).toHaveLength(extra.length)
    const fixId = intent!.fixId
    let waiter = await waiterOn(replicaDb.url, rowLock, 'the agent\'s session to wait on the locked row')
    expect(waiter.wait_event_type).toBe('Lock')
    // the read of the before-images (pg_stat_activity keeps only the start of its text, the key list being in it)
    expect(waiter.query).toMatch(/^COPY \(SELECT t\."order_id", .* FROM "public"\."orders" t WHERE t\."order_id" = ANY \(\$k\$\{/s)
    let holder: Holder = rowLock

    if (heldAt === 'mid-write') {
      // the row the fix inserts last, inserted and not committed; then the row lock lets go
      const inserted = await holdSession(replicaDb.url, cleanups)
      const last = missing.map(id => ({ id, key: codec.encodeKey({ order_id: id }) })).sort((a, b) => compareBytes(a.key, b.key)).at(-1)!.id
      const { rows: [row] } = await sql(sotDb!.url, 'SELECT * FROM public.orders WHERE order_id = $1', [last])
      await inserted.client.query('INSERT INTO public.orders SELECT * FROM json_populate_record(NULL::public.orders, $1::json)', [JSON.stringify(row)])
      const heapBefore = await heapBytes(replicaDb.url)
      await rowLock.release()
      waiter = await waiterOn(replicaDb.url, inserted, 'the agent\'s session to wait on the uncommitted row, in its last write')
      // (the upsert runs inside a COPY, which sends back each row as stored)
      expect(waiter.query).toMatch(/^\s*COPY \(INSERT INTO \S*orders/)
      // its earlier batches are written, as new row versions in the table's heap, and not committed
      expect(await heapBytes(replicaDb.url)).toBeGreaterThan(heapBefore + 1024 * 1024)
      holder = inserted
    }
    // still in flight: no commit, no abort
    expect((await viewerGet<{ entries: AuditEntry[] }>(replica, `/audit?fix=${fixId}`))!.entries.map(e => e.kind)).toEqual(['intent'])

    replica.child.kill('SIGKILL')
    expect(await withTimeout('the agent to die', replica.exited, 10_000)).toBeNull()
    expect(replica.child.signalCode).toBe('SIGKILL')
    expect(await tableDigest(replicaDb.url)).toEqual(before)

    // let go: the orphaned session runs on, finds its client gone, and PostgreSQL rolls its transaction back
    await holder.release()
    await waitFor('the killed agent\'s session to end', async () => (await sql(replicaDb.url, 'SELECT 1 FROM pg_stat_activity WHERE pid = $1', [waiter.pid])).rowCount === 0, 15_000, 100)
    expect(await tableDigest(replicaDb.url)).toEqual(before)

    // the same agent, the same config: recovery settles the fix before anything else runs
    replica = await launchAgent(root, config)
    let settled: AuditEntry[] = []
    await waitFor('the fix to be settled at restart', async () => {
      settled = (await viewerGet<{ entries: AuditEntry[] }>(replica, `/audit?fix=${fixId}`))?.entries ?? []
      return settled.length > 1
    }, 40_000, 200)
    expect(settled.map(e => e.kind)).toEqual(['intent', 'abort'])
    expect(settled[1]).toMatchObject({ fixId, reason: 'found not applied at restart', region })

    await waitFor('the replica to converge', async () => {
      const [s, r] = [await fetchStatus<Status>(sot!), await fetchStatus<Status>(replica)]
      return r?.datasets[0]?.state === 'in-sync' && r.datasets[0].root !== undefined && r.datasets[0].root.sum === s?.datasets[0]?.root?.sum
    }, 60_000, 200)
    expect(await tableDigest(replicaDb.url)).toEqual(await tableDigest(sotDb!.url))
    expect(await viewerGet(replica, '/audit/verify')).toMatchObject({ ok: true })

    // stopped by SIGTERM (not killed after the grace period) before its LevelDB is read here
    expect(await stopAgent(replica, 15_000)).not.toBeNull()
    const state = new StateDb(join(root, region, 'agent', 'state'))
    await state.open()
    try {
      const audit = new AuditLog(state)
      await audit.open()
      const entries: AuditEntry[] = []
      for await (const e of audit.read()) entries.push(e)
      expect(await audit.verify()).toBe(entries.length)
      const outcomes = new Map<string, string[]>()
      for (const e of entries) if (e.kind === 'intent' || e.kind === 'commit' || e.kind === 'abort') outcomes.set(e.fixId, [...(outcomes.get(e.fixId) ?? []), e.kind])
      // every intent is followed by exactly one commit or abort (before any later attempt of the same fix id); no fix id commits twice
      const malformed = [...outcomes].filter(([, kinds]) => kinds.length % 2 !== 0 || kinds.some((k, i) => (i % 2 === 0) !== (k === 'intent')) || kinds.filter(k => k === 'commit').length > 1)
      expect(malformed).toEqual([])
      expect(outcomes.get(fixId)).toEqual(['intent', 'abort'])
      const committed = [...outcomes].filter(([, kinds]) => kinds.includes('commit')).map(([id]) => id)
      expect(committed.length).toBeGreaterThanOrEqual(1)
      expect(committed).not.toContain(fixId)
      const redone = entries.filter(e => e.kind === 'intent' && committed.includes(e.fixId)).reduce((n, e) => n + (e.upserts?.length ?? 0) + (e.deletes?.length ?? 0), 0)
      expect(redone).toBe(DRIFT)
    } finally {
      await state.close()
    }
  }, 150_000)
})
