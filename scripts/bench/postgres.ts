/**
 * Section 4: converge on PostgreSQL, on pgbench's own data (pgbench_accounts),
 * against pg_comparator.
 *
 * Setup: `pgbench -i -s S` into a fresh database ("one", S * 100,000 rows),
 * copied with CREATE DATABASE … TEMPLATE into "two" and "three", each then
 * drifted the same way in one transaction: 1,000 rows updated (abalance,
 * filler) and 200 deleted, aids from a fixed seed.
 *
 * (a) converge's first detect-and-repair from nothing: a PgStore and a fresh
 *     DigestIndex over "one" (the SoT) and "two" (the replica), each in an
 *     agent process of its own (pg-first-pass-side.ts) as on two hosts, both
 *     built at once; one exchange between the two processes over loopback
 *     TCP, planRestore + PgStore.apply in the replica's, its index catching
 *     up on its own fix through the change feed.
 * (b) pg_comparator --synchronize --do-it from "one" to "three", through
 *     byte-counting proxies (one per database).
 * (c) steady state: two Agents in-process over libp2p on loopback, reusing
 *     the indexes built in (a); a drift of 100 rows written to "two" with
 *     plain SQL; time from its commit until the replica's tree root equals
 *     the SoT's again.
 *
 * Every database made here is dropped at the end, also on failure.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { Agent } from '../../src/agent/agent.ts'
import { parseConfig } from '../../src/config/load.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { createLogger, silentLogger } from '../../src/observability/logger.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import type { SyncStats } from '../../src/sync/session.ts'
import { startByteProxy, type ByteCounts, type ByteProxy } from './byte-proxy.ts'
import { memorySnapshot, type MemorySnapshot } from './memory.ts'
import type { FromSide, SideBuild, SideRepair, SideRole, ToSide, ViewTally } from './pg-first-pass-side.ts'
import { BenchDatabases, findTool, libpqEnv, runCommand, sqlOnce } from './pg-databases.ts'
import { DATASET, PGBENCH_ACCOUNTS_SCHEMA, TABLE } from './pgbench-accounts.ts'
import { bytes, fixed, int, passFail, progress, rate, seconds, table } from './report.ts'
import { directoryBytes, makeTempDir, removeTempDir } from './temp-dirs.ts'
import { median, timed } from './timing.ts'

const FIRST_DRIFT = { updates: 1000, deletes: 200, seed: 4242 }
const STEADY_DRIFT = { updates: 60, deletes: 20, inserts: 20 }
const STEADY_REPEATS = 3
const STEADY_TARGET_MS = 1000
/** Longest wait for one steady-state repair before the run fails. */
const STEADY_TIMEOUT_MS = 30_000
const GOSSIP_INTERVAL_MS = 200
/** After a repair, how long to wait for further syncs it set off before counting them. */
const SETTLE_MS = 1500
const ROWS_PER_SCALE = 100_000

export interface PgTools { pgbench: string, pgComparator: string, psql: string }
export type PgAvailability = { ok: true, tools: PgTools, server: string } | { ok: false, why: string }

function redact (url: string): string {
  const u = new URL(url)
  if (u.password !== '') u.password = '***'
  return u.toString()
}

/** Whether this section can run: client tools installed, the server answering, pgcmp available, a superuser. */
/** Whether a PostgreSQL server answers at adminUrl as a superuser, with psql beside it: what sections 4 and 5 both need. */
export async function checkServer (adminUrl: string): Promise<{ ok: true, psql: string, server: string, pgcmp: boolean } | { ok: false, why: string }> {
  const psql = await findTool('psql')
  if (psql === undefined) return { ok: false, why: 'psql is not installed' }
  let info: { version: string, superuser: boolean, pgcmp: boolean, user: string }
  try {
    const { rows } = await sqlOnce<typeof info>(adminUrl,
      `SELECT current_setting('server_version') AS version, current_user AS user,
              (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
              EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgcmp') AS pgcmp`)
    info = rows[0]!
  } catch (err) {
    return { ok: false, why: `PostgreSQL does not answer at ${redact(adminUrl)} (${(err as Error).message})` }
  }
  if (!info.superuser) return { ok: false, why: `role ${info.user} is not a superuser (needed for CREATE DATABASE and CREATE EXTENSION pgcmp)` }
  return { ok: true, psql, server: `PostgreSQL ${info.version}`, pgcmp: info.pgcmp }
}

/** Section 4 needs the server, pgbench and pg_comparator (client and the server's pgcmp extension). */
export async function checkPostgres (adminUrl: string): Promise<PgAvailability> {
  const [pgComparator, pgbench] = await Promise.all([findTool('pg_comparator'), findTool('pgbench')])
  if (pgComparator === undefined) return { ok: false, why: 'pg_comparator is not installed (Debian: apt-get install postgresql-comparator)' }
  if (pgbench === undefined) return { ok: false, why: 'pgbench is not installed' }
  const server = await checkServer(adminUrl)
  if (!server.ok) return server
  if (!server.pgcmp) return { ok: false, why: 'the server lacks the pgcmp extension (pg_comparator\'s checksum functions; Debian: postgresql-comparator on the server host)' }
  return { ok: true, tools: { pgbench, pgComparator, psql: server.psql }, server: server.server }
}

// ---------------------------------------------------------------- data

function seededRandom (seed: number): () => number {
  let s = seed >>> 0
  return () => { s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0; return s / 2 ** 32 }
}

/** `count` distinct aids in [1, n] from a fixed seed. */
function pickAids (n: number, count: number, seed: number): number[] {
  const random = seededRandom(seed)
  const picked = new Set<number>()
  while (picked.size < count) picked.add(1 + Math.floor(random() * n))
  return [...picked]
}

interface Drift { updated: number[], deleted: number[], inserted: number[] }

/** Writes a drift in one transaction with plain SQL; resolves once COMMIT has returned, with that moment. */
async function writeDrift (url: string, drift: Drift, tag: string, beforeCommit?: () => void): Promise<number> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query('BEGIN')
    const u = await client.query(`UPDATE ${TABLE} SET abalance = abalance + 1 + aid % 997, filler = $2 || ' ' || aid WHERE aid = ANY($1::int[])`, [drift.updated, tag])
    const d = await client.query(`DELETE FROM ${TABLE} WHERE aid = ANY($1::int[])`, [drift.deleted])
    const i = await client.query(`INSERT INTO ${TABLE} (aid, bid, abalance, filler) SELECT a, 1, 0, $2 FROM unnest($1::int[]) AS a`, [drift.inserted, tag])
    if (u.rowCount !== drift.updated.length || d.rowCount !== drift.deleted.length || i.rowCount !== drift.inserted.length) {
      throw new Error(`drift ${tag}: wrote ${u.rowCount}/${d.rowCount}/${i.rowCount} rows, expected ${drift.updated.length}/${drift.deleted.length}/${drift.inserted.length}`)
    }
    beforeCommit?.()
    await client.query('COMMIT')
    return performance.now()
  } finally {
    await client.end()
  }
}

interface TableDigest { rows: number, md5: string }

/** Row count and an md5 over every row in aid order: equal digests mean equal tables. */
async function tableDigest (url: string): Promise<TableDigest> {
  const { rows } = await sqlOnce<{ n: number, md5: string }>(url,
    `SELECT count(*)::int AS n, md5(string_agg(md5(ROW(aid, bid, abalance, filler)::text), '' ORDER BY aid)) AS md5 FROM ${TABLE}`)
  return { rows: rows[0]!.n, md5: rows[0]!.md5 }
}

const sameDigest = (a: TableDigest, b: TableDigest): boolean => a.rows === b.rows && a.md5 === b.md5

// ---------------------------------------------------------------- (a) first pass

interface FirstPass {
  /** Each side's index build, timed in its own process while both ran at once. */
  sotIndexMs: number
  replicaIndexMs: number
  /** Wall time of the two builds together, seen from here: from telling both to start to the later one done. */
  indexBuildsMs: number
  exchangeMs: number
  applyMs: number
  catchUpMs: number
  totalMs: number
  stats: SyncStats
  /** Where the exchange spent its time: index reads and store reads on each side. */
  tally: { sot: ViewTally, replica: ViewTally }
  result: SideRepair['result']
  /** Sum of the encoded SoT rows the exchange brought back. */
  payloadBytes: number
  fixes: number
  treeRows: number
  treeDepth: number
  /** Each side's process, sampled during its build. */
  memory: { sot: SideBuild, replica: SideBuild }
  /** The whole machine's CPU (every core, every process) while both builds ran: busy and available, in CPU ms. */
  buildsCpu: { busyMs: number, allMs: number }
  indexBytes: number
  rootsEqual: boolean
  digests: { sot: TableDigest, replica: TableDigest }
}

/** CPU time of the whole machine so far from /proc/stat, in ms: busy (user, nice, system, irq, softirq, steal) and all. */
function machineCpu (): { busyMs: number, allMs: number } {
  try {
    const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number) as number[]
    const tick = 1000 / 100 // USER_HZ is 100 on Linux
    const busy = user! + nice! + system! + irq! + softirq! + steal!
    return { busyMs: busy * tick, allMs: (busy + idle! + iowait!) * tick }
  } catch {
    return { busyMs: Number.NaN, allMs: Number.NaN }
  }
}

const SIDE = fileURLToPath(new URL('./pg-first-pass-side.ts', import.meta.url))
const TSX = import.meta.resolve('tsx')

/** One side's process (pg-first-pass-side.ts) and its messages, in order. */
class Side {
  private readonly proc: ChildProcess
  private readonly inbox: FromSide[] = []
  private waiter: (() => void) | undefined
  private exited: string | undefined

  constructor (readonly role: SideRole, url: string, agentDir: string) {
    this.proc = spawn(process.execPath, ['--import', TSX, SIDE, role, url, agentDir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' })
    this.proc.on('message', (m: FromSide) => { this.inbox.push(m); this.wake() })
    this.proc.on('exit', code => { this.exited = `the ${role} side exited (${code})`; this.wake() })
    this.proc.on('error', err => { this.exited = `the ${role} side failed to start: ${err.message}`; this.wake() })
  }

  send (message: ToSide): void { this.proc.send(message) }

  /** The next message, which must be of type `type`. */
  async next<T extends FromSide['type']> (type: T): Promise<Extract<FromSide, { type: T }>> {
    for (;;) {
      const m = this.inbox.shift()
      if (m !== undefined) {
        if (m.type === 'failed') throw new Error(`the ${this.role} side failed: ${m.message}`)
        if (m.type !== type) throw new Error(`the ${this.role} side said ${m.type}, expected ${type}`)
        return m as Extract<FromSide, { type: T }>
      }
      if (this.exited !== undefined) throw new Error(this.exited)
      await new Promise<void>(resolve => { this.waiter = resolve })
    }
  }

  /** Closes its store and state db and waits for the process to end; kills it when it does not answer. */
  async stop (): Promise<void> {
    if (this.exited !== undefined) return
    const ended = new Promise<void>(resolve => this.proc.once('exit', () => resolve()))
    try { this.send({ type: 'close' }) } catch { /* already gone */ }
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 30_000)
    await ended
    clearTimeout(timer)
  }

  private wake (): void { const w = this.waiter; this.waiter = undefined; w?.() }
}

/**
 * The SoT's agent and the replica's, each in a process of its own (as on
 * their own hosts), build their indexes at the same time; then the replica's
 * runs one exchange against the SoT's over loopback TCP and applies the
 * restore. Both processes share this machine's two cores with each other and
 * with the two PostgreSQL backends their scans keep busy.
 */
async function firstPass (dbs: BenchDatabases, root: string): Promise<FirstPass> {
  const sides: Side[] = []
  try {
    progress('4a: starting the SoT\'s and the replica\'s agent processes')
    const sot = new Side('sot', dbs.url('one'), join(root, 'sot', 'agent'))
    sides.push(sot)
    const replica = new Side('replica', dbs.url('two'), join(root, 'replica', 'agent'))
    sides.push(replica)
    const [{ port }] = await Promise.all([sot.next('ready'), replica.next('ready')])

    progress('4a: index builds over "one" and "two", at the same time, one process each (PgStore.open + DigestIndex.start, a full scan each)')
    const cpuBefore = machineCpu()
    const { value: [sotBuilt, replicaBuilt], ms: indexBuildsMs } = await timed(async () => {
      sot.send({ type: 'build' })
      replica.send({ type: 'build' })
      return await Promise.all([sot.next('built'), replica.next('built')])
    })
    const cpuAfter = machineCpu()
    const buildsCpu = { busyMs: cpuAfter.busyMs - cpuBefore.busyMs, allMs: cpuAfter.allMs - cpuBefore.allMs }

    progress('4a: one exchange, replica against the SoT, then the restore and the replica index\'s catch-up')
    replica.send({ type: 'sync', port, sourceRoot: sotBuilt.build.root })
    const [{ repair }, { tally: sotTally }] = await Promise.all([replica.next('synced'), sot.next('served')])
    progress(`4a: restored ${int(repair.result.upserts)} upserts and ${int(repair.result.deletes)} deletes; closing both sides`)
    await Promise.all(sides.map(async side => await side.stop()))

    progress('4a: checking the tables are equal')
    const digests = { sot: await tableDigest(dbs.url('one')), replica: await tableDigest(dbs.url('two')) }
    return {
      sotIndexMs: sotBuilt.build.ms, replicaIndexMs: replicaBuilt.build.ms, indexBuildsMs,
      exchangeMs: repair.exchangeMs, applyMs: repair.applyMs, catchUpMs: repair.catchUpMs,
      totalMs: indexBuildsMs + repair.exchangeMs + repair.applyMs + repair.catchUpMs,
      stats: repair.stats,
      tally: { sot: sotTally, replica: repair.tally },
      result: repair.result,
      payloadBytes: repair.payloadBytes,
      fixes: repair.fixes,
      treeRows: sotBuilt.build.treeRows,
      treeDepth: sotBuilt.build.treeDepth,
      memory: { sot: sotBuilt.build, replica: replicaBuilt.build },
      buildsCpu,
      indexBytes: await directoryBytes(join(root, 'replica', 'agent', 'state')),
      rootsEqual: repair.rootsEqual,
      digests
    }
  } finally {
    await Promise.all(sides.map(async side => await side.stop().catch(() => undefined)))
  }
}

/** converge's local PostgreSQL traffic for one full index scan: PgStore.scan through a counting proxy (untimed). */
async function scanTraffic (dbs: BenchDatabases, codec: RowCodec, proxy: ByteProxy): Promise<{ rows: number, counts: ByteCounts }> {
  const store = new PgStore({ connectionString: dbs.url('one', proxy.port), table: TABLE, codec })
  await store.open()
  let rows = 0
  try {
    for await (const batch of store.scan()) rows += batch.length
  } finally {
    await store.close()
  }
  return { rows, counts: await proxy.counts() }
}

// ---------------------------------------------------------------- (b) pg_comparator

interface ComparatorRun {
  command: string
  ms: number
  stats: Map<string, string>
  reported: { update: number, insert: number, delete: number }
  toOne: ByteCounts
  toThree: ByteCounts
  digest: TableDigest
}

async function runComparator (dbs: BenchDatabases, tools: PgTools): Promise<ComparatorRun> {
  const admin = new URL(dbs.adminUrl)
  const proxies: ByteProxy[] = []
  try {
    const port = Number(admin.port || '5432')
    const viaOne = await startByteProxy(admin.hostname || '127.0.0.1', port)
    proxies.push(viaOne)
    const viaThree = await startByteProxy(admin.hostname || '127.0.0.1', port)
    proxies.push(viaThree)
    const user = admin.username === '' ? 'postgres' : admin.username
    const url = (label: string, proxyPort: number): string =>
      `pgsql://${user}@127.0.0.1:${proxyPort}/${dbs.name(label)}/${TABLE}?aid:bid,abalance,filler`
    const env = libpqEnv(dbs.adminUrl)
    const args = ['--synchronize', '--do-it', '--stats=txt']
    if (admin.password !== '') { env.PGC_PASS = decodeURIComponent(admin.password); args.push('--env-pass=PGC_PASS') }
    args.push(url('one', viaOne.port), url('three', viaThree.port))
    progress('4b: pg_comparator --synchronize --do-it, "one" → "three"')
    const run = await runCommand(tools.pgComparator, args, env)
    if (run.code !== 0) throw new Error(`pg_comparator exited with ${run.code}: ${run.stderr.trim().slice(0, 2000)}`)
    const stats = new Map<string, string>()
    const reported = { update: 0, insert: 0, delete: 0 }
    for (const line of run.stdout.split('\n')) {
      const diff = /^(UPDATE|INSERT|DELETE) /.exec(line)
      if (diff !== null) { reported[diff[1]!.toLowerCase() as keyof typeof reported]++; continue }
      const stat = /^\s*([a-z][a-z ]*[a-z]):\s+(.*)$/.exec(line)
      if (stat !== null) stats.set(stat[1]!, stat[2]!.trim())
    }
    const command = `pg_comparator ${args.map(a => a.replace(/127\.0\.0\.1:\d+/, '<proxy>').replace(dbs.prefix, '…')).join(' ')}`
    return { command, ms: run.ms, stats, reported, toOne: await viaOne.counts(), toThree: await viaThree.counts(), digest: await tableDigest(dbs.url('three')) }
  } finally {
    for (const p of proxies) await p.stop()
  }
}

// ---------------------------------------------------------------- (c) steady state

/** The replica agent's info logs about its syncs, as they were written. */
interface SyncLogEntry { at: number, msg: string, bytes?: number, roundTrips?: number, dialMs?: number, exchangeMs?: number, upserts?: number, deletes?: number }

function syncLogCollector (): { destination: Writable, entries: SyncLogEntry[] } {
  const entries: SyncLogEntry[] = []
  const destination = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      const at = performance.now()
      for (const line of chunk.toString().split('\n')) {
        if (line.trim() === '') continue
        try {
          const e = JSON.parse(line) as SyncLogEntry
          if (/^sync found|^fix applied/.test(e.msg)) entries.push({ ...e, at })
        } catch { /* not JSON */ }
      }
      callback()
    }
  })
  return { destination, entries }
}

interface SteadyRun {
  drift: Drift
  /** Syncs the replica ran for this drift, in order, timed from the commit. */
  syncLog: Array<SyncLogEntry & { sinceCommitMs: number }>
  /** Commit → the replica's index holds the write (its root differs from the SoT's). */
  detectMs: number
  /** Commit → the roots are equal again. */
  repairMs: number
  syncs: number
  roundTrips: number
  bytes: number
  upserted: number
  deleted: number
  rowsEqual: boolean
}

interface SteadyState {
  sotStartMs: number
  replicaStartMs: number
  indexPhases: { sot: string, replica: string }
  initialMs: number
  runs: SteadyRun[]
  /** Both agents running, after the repeats. */
  memory: MemorySnapshot
}

function agentConfig (root: string, region: string, url: string, peers: Array<{ region: string, address: string }>): ConfigInput {
  return {
    cluster: 'bench-pg',
    region,
    dataDir: join(root, region, 'agent'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    peers,
    gossip: { intervalMs: GOSSIP_INTERVAL_MS },
    validation: { intervalMs: 0 },
    datasets: [{ name: DATASET, schema: PGBENCH_ACCOUNTS_SCHEMA, store: { kind: 'postgres', connectionString: url, table: TABLE }, sourceOfTruth: ['sot'] }]
  }
}

async function waitUntil (what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/**
 * Watches the replica's tree against the SoT's: on every index change and
 * every 5 ms. Resolves when the roots, having differed, are equal again.
 */
function watchRepair (sot: Agent, replica: Agent): { settled: Promise<{ divergedAt: number, equalAt: number }>, cancel: () => void } {
  const sotIndex = sot.datasets.get(DATASET)!.index
  const repIndex = replica.datasets.get(DATASET)!.index
  let divergedAt: number | undefined
  let finish: (v: { divergedAt: number, equalAt: number }) => void = () => undefined
  let fail: (err: Error) => void = () => undefined
  const settled = new Promise<{ divergedAt: number, equalAt: number }>((resolve, reject) => { finish = resolve; fail = reject })
  const check = (): void => {
    const a = repIndex.tree.root
    const b = sotIndex.tree.root
    const now = performance.now()
    if (a.count !== b.count || a.sum !== b.sum) divergedAt ??= now
    else if (divergedAt !== undefined) { cancel(); finish({ divergedAt, equalAt: now }) }
  }
  const poll = setInterval(check, 5)
  const timer = setTimeout(() => { cancel(); fail(new Error(`replica not repaired within ${STEADY_TIMEOUT_MS} ms (diverged: ${divergedAt !== undefined})`)) }, STEADY_TIMEOUT_MS)
  const cancel = (): void => { clearInterval(poll); clearTimeout(timer); repIndex.off('change', check) }
  repIndex.on('change', check)
  return { settled, cancel }
}

async function steadyState (dbs: BenchDatabases, root: string, n: number, sotDigest: TableDigest): Promise<SteadyState> {
  const agents: Agent[] = []
  const phases = { sot: new Set<string>(), replica: new Set<string>() }
  const log = syncLogCollector()
  try {
    progress('4c: starting the SoT agent over "one" (index from 4a)')
    const sot = new Agent({ config: parseConfig(agentConfig(root, 'sot', dbs.url('one'), [])), logger: silentLogger, onIndexProgress: (_, p) => phases.sot.add(p.phase) })
    agents.push(sot)
    const { ms: sotStartMs } = await timed(async () => await sot.start())
    progress('4c: starting the replica agent over "two"')
    const replica = new Agent({
      config: parseConfig(agentConfig(root, 'replica', dbs.url('two'), [{ region: 'sot', address: sot.listenAddresses[0]! }])),
      logger: createLogger({ level: 'info', region: 'replica', destination: log.destination }),
      onIndexProgress: (_, p) => phases.replica.add(p.phase)
    })
    agents.push(replica)
    const { ms: replicaStartMs } = await timed(async () => await replica.start())
    const rep = replica.datasets.get(DATASET)!
    const { ms: initialMs } = await timed(async () => await waitUntil('the replica agent to report in-sync', () => rep.state === 'in-sync' && rep.status().sourceRoot !== null, 60_000))
    // every repeat starts with the replica's sync worker idle (past its sync.minIntervalMs pause)
    await new Promise(resolve => setTimeout(resolve, SETTLE_MS))

    const runs: SteadyRun[] = []
    for (let i = 0; i < STEADY_REPEATS; i++) {
      const picked = pickAids(n, STEADY_DRIFT.updates + STEADY_DRIFT.deletes, 9000 + i)
      const drift: Drift = {
        updated: picked.slice(0, STEADY_DRIFT.updates),
        deleted: picked.slice(STEADY_DRIFT.updates),
        inserted: Array.from({ length: STEADY_DRIFT.inserts }, (_, j) => n + 1000 * (i + 1) + j)
      }
      const before = { ...rep.counters }
      const logFrom = log.entries.length
      let watch: ReturnType<typeof watchRepair> | undefined
      progress(`4c: repeat ${i + 1}: ${STEADY_DRIFT.updates} updates, ${STEADY_DRIFT.deletes} deletes, ${STEADY_DRIFT.inserts} inserts on "two" with plain SQL`)
      const committedAt = await writeDrift(dbs.url('two'), drift, `steady-${i + 1}`, () => { watch = watchRepair(sot, replica) })
      const { divergedAt, equalAt } = await watch!.settled
      const digest = await tableDigest(dbs.url('two'))
      // syncs scheduled while the repair ran come after it (sync.minIntervalMs apart): let them run before counting
      const settle = SETTLE_MS - (performance.now() - equalAt)
      if (settle > 0) await new Promise(resolve => setTimeout(resolve, settle))
      await waitUntil('the replica agent to settle', () => rep.state === 'in-sync', 10_000)
      const after = { ...rep.counters }
      runs.push({
        drift,
        syncLog: log.entries.slice(logFrom).map(e => ({ ...e, sinceCommitMs: e.at - committedAt })),
        detectMs: divergedAt - committedAt,
        repairMs: equalAt - committedAt,
        syncs: after.syncs - before.syncs,
        roundTrips: after.roundTrips - before.roundTrips,
        bytes: after.bytesSent + after.bytesReceived - before.bytesSent - before.bytesReceived,
        upserted: after.rowsUpserted - before.rowsUpserted,
        deleted: after.rowsDeleted - before.rowsDeleted,
        rowsEqual: sameDigest(digest, sotDigest)
      })
    }
    return {
      sotStartMs, replicaStartMs, initialMs, runs,
      indexPhases: { sot: [...phases.sot].join(', ') || 'none', replica: [...phases.replica].join(', ') || 'none' },
      memory: memorySnapshot()
    }
  } finally {
    for (const agent of agents.reverse()) await agent.stop().catch(() => undefined)
  }
}

// ---------------------------------------------------------------- the section

export interface PgResult {
  server: string
  scale: number
  rows: number
  columns: string
  initMs: number
  copyMs: number[]
  driftMs: number[]
  driftedEqual: boolean
  first: FirstPass
  scan: { rows: number, counts: ByteCounts }
  comparator: ComparatorRun
  sotDigest: TableDigest
  steady: SteadyState
}

export async function measurePostgres (adminUrl: string, rowsWanted: number, availability: { tools: PgTools, server: string }): Promise<PgResult> {
  const { tools, server } = availability
  const scale = Math.max(1, Math.round(rowsWanted / ROWS_PER_SCALE))
  const n = scale * ROWS_PER_SCALE
  const codec = new RowCodec(PGBENCH_ACCOUNTS_SCHEMA)
  const root = await makeTempDir('pg') // also hooks SIGINT/SIGTERM, so the databases' exit hook runs on Ctrl-C
  const dbs = new BenchDatabases(adminUrl, tools.psql)
  const proxies: ByteProxy[] = []
  try {
    progress(`4: pgbench -i -s ${scale} into ${dbs.name('one')}`)
    await dbs.create('one')
    const init = await runCommand(tools.pgbench, ['-i', '-s', String(scale), '-q', dbs.name('one')], libpqEnv(adminUrl))
    if (init.code !== 0) throw new Error(`pgbench -i failed (${init.code}): ${init.stderr.trim().slice(0, 2000)}`)
    await sqlOnce(dbs.url('one'), 'CREATE EXTENSION pgcmp')
    const { rows: cols } = await sqlOnce<{ name: string, type: string, not_null: boolean }>(dbs.url('one'),
      `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null FROM pg_attribute
        WHERE attrelid = '${TABLE}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
    const columns = cols.map(c => `${c.name} ${c.type}${c.not_null ? ' not null' : ''}`).join(', ')

    const picked = pickAids(n, FIRST_DRIFT.updates + FIRST_DRIFT.deletes, FIRST_DRIFT.seed)
    const drift: Drift = { updated: picked.slice(0, FIRST_DRIFT.updates), deleted: picked.slice(FIRST_DRIFT.updates), inserted: [] }
    const copyMs: number[] = []
    const driftMs: number[] = []
    for (const label of ['two', 'three']) {
      progress(`4: CREATE DATABASE ${dbs.name(label)} TEMPLATE ${dbs.name('one')}, then the drift`)
      copyMs.push((await timed(async () => await dbs.create(label, 'one'))).ms)
      driftMs.push((await timed(async () => await writeDrift(dbs.url(label), drift, 'drifted'))).ms)
    }
    const sotDigest = await tableDigest(dbs.url('one'))
    const driftedEqual = sameDigest(await tableDigest(dbs.url('two')), await tableDigest(dbs.url('three')))
    if (sotDigest.rows !== n) throw new Error(`pgbench_accounts holds ${sotDigest.rows} rows, expected ${n}`)

    const first = await firstPass(dbs, root)
    if (!sameDigest(first.digests.replica, sotDigest)) throw new Error('after converge\'s first pass the replica table differs from the SoT')

    const comparator = await runComparator(dbs, tools)
    if (!sameDigest(comparator.digest, sotDigest)) throw new Error('after pg_comparator the third table differs from the SoT')

    progress('4: one PgStore scan of "one" through a counting proxy (local PostgreSQL traffic of an index build)')
    const admin = new URL(adminUrl)
    const proxy = await startByteProxy(admin.hostname || '127.0.0.1', Number(admin.port || '5432'))
    proxies.push(proxy)
    const scan = await scanTraffic(dbs, codec, proxy)

    const steady = await steadyState(dbs, root, n, sotDigest)
    return { server, scale, rows: n, columns, initMs: init.ms, copyMs, driftMs, driftedEqual, first, scan, comparator, sotDigest, steady }
  } finally {
    for (const p of proxies) await p.stop().catch(() => undefined)
    progress('4: dropping the databases')
    await dbs.dropAll()
    await removeTempDir(root)
  }
}

// ---------------------------------------------------------------- report

const HEADING = '## 4. PostgreSQL: first repair against pg_comparator, and the steady state (pgbench data)'

export function postgresSkipped (why: string): string {
  return `${HEADING}\n\nskipped: ${why}`
}

const ms = (x: number): string => `${int(x)} ms`
const gcNote = (m: MemorySnapshot): string => m.collected ? ' (after a forced GC)' : ' (no forced GC: heap includes garbage)'

export function postgresReport (r: PgResult): string {
  const f = r.first
  const c = r.comparator
  const s = r.steady
  const exchangeBytes = f.stats.bytesSent + f.stats.bytesReceived
  const cmpBytes = c.toOne.toServer + c.toOne.toClient + c.toThree.toServer + c.toThree.toClient
  const stat = (key: string): string => c.stats.get(key) ?? '?'
  const statSeconds = (key: string): string => { const v = Number(c.stats.get(key)); return Number.isFinite(v) ? seconds(v * 1000) : '?' }
  const digestNote = (d: TableDigest): string => `${int(d.rows)} rows, md5 ${d.md5.slice(0, 12)}…`
  const repairs = s.runs.map(run => run.repairMs)
  const med = median(repairs)

  const phases = table(['phase', 'time', 'notes'], [
    ['index build, SoT ("one"): PgStore.open (capture triggers) + DigestIndex.start() (full COPY scan, index entries written), in the SoT agent\'s process', seconds(f.sotIndexMs), `${rate(r.rows, f.sotIndexMs)}; at the same time as the replica's`],
    ['index build, replica ("two"): the same, in the replica agent\'s process', seconds(f.replicaIndexMs), `${rate(r.rows - FIRST_DRIFT.deletes, f.replicaIndexMs)}; at the same time as the SoT's`],
    ['both index builds, at the same time (wall)', seconds(f.indexBuildsMs), `two processes (one per agent) and both PostgreSQL backends on this machine's two cores; CPU: SoT process ${seconds(f.memory.sot.cpuMs)}, replica process ${seconds(f.memory.replica.cpuMs)}, whole machine ${seconds(f.buildsCpu.busyMs)} busy of ${seconds(f.buildsCpu.allMs)}`],
    ['exchange: runClientSync (replica process) / serveSync (SoT process) over loopback TCP', ms(f.exchangeMs), `${f.stats.roundTrips} round trips, ${int(exchangeBytes)} B; connect included`],
    ['planRestore + PgStore.apply', ms(f.applyMs), `${f.fixes} fix${f.fixes === 1 ? '' : 'es'}: ${int(f.result.upserts)} upserts, ${int(f.result.deletes)} deletes, one transaction each`],
    ['replica index catches up on the fix (change feed)', ms(f.catchUpMs), ''],
    ['**total** (builds wall + the phases after)', `**${seconds(f.totalMs)}**`, `found: ${int(f.result.changed)} changed, ${int(f.result.missing)} missing, ${int(f.result.extra)} extra, ${f.result.unresolved} unresolved`]
  ])

  const versus = table(['', 'converge, first pass from nothing', 'pg_comparator --synchronize --do-it'], [
    ['wall time', `**${seconds(f.totalMs)}** (index builds ${seconds(f.indexBuildsMs)} wall for both at once, exchange + repair ${seconds(f.exchangeMs + f.applyMs + f.catchUpMs)})`,
      `**${seconds(c.ms)}** (spawn to exit; its own total ${statSeconds('total time')}: checksum ${statSeconds('checksum')}, summary ${statSeconds('summary')}, merge ${statSeconds('merge')}, synchro ${statSeconds('synchro')})`],
    ['differences found and repaired', `${int(f.result.changed + f.result.missing + f.result.extra)} (${int(f.result.changed)} changed, ${int(f.result.missing)} missing)`,
      `${stat('diffs found')} (${int(c.reported.update)} UPDATE, ${int(c.reported.insert)} INSERT, ${int(c.reported.delete)} DELETE)`],
    ['bytes between the regions, the tool running beside the replica', `**${int(exchangeBytes)} B** agent to agent (${int(f.stats.bytesSent)} replica→SoT, ${int(f.stats.bytesReceived)} SoT→replica), ${f.stats.roundTrips} round trips; the ${int(f.result.upserts)} rows themselves are ${int(f.payloadBytes)} B encoded`,
      `**${int(c.toOne.toServer + c.toOne.toClient)} B**: its connection to the SoT "one" (${int(c.toOne.toServer)} to / ${int(c.toOne.toClient)} from the server)`],
    ['bytes to the local database', `a full scan per side for the index build, once: ${int(r.scan.counts.toServer + r.scan.counts.toClient)} B for ${int(r.scan.rows)} rows (${fixed((r.scan.counts.toServer + r.scan.counts.toClient) / r.scan.rows, 1)} B a row; measured separately, see below), then the fix`,
      `${int(c.toThree.toServer + c.toThree.toClient)} B: its connection to the target "three" (${int(c.toThree.toServer)} to / ${int(c.toThree.toClient)} from the server), fix included`],
    ['all PostgreSQL traffic', `about ${bytes(2 * (r.scan.counts.toServer + r.scan.counts.toClient))} (two full scans) + the fix`, `${int(cmpBytes)} B (${bytes(cmpBytes)}); checksums are computed in the server (pgcmp), only summaries and checksum rows travel`],
    ['tables equal afterwards', `${passFail(sameDigest(f.digests.replica, r.sotDigest))} (${digestNote(f.digests.replica)}); tree roots equal: ${f.rootsEqual ? 'yes' : '**no**'}`,
      `${passFail(sameDigest(c.digest, r.sotDigest))} (${digestNote(c.digest)})`]
  ])

  const steadyRows = s.runs.map((run, i) => {
    const found = run.syncLog.find(e => e.msg === 'sync found drift')
    const fixLog = run.syncLog.find(e => e.msg === 'fix applied')
    const withDrift = run.syncLog.filter(e => e.msg === 'sync found drift').length
    const without = run.syncLog.filter(e => e.msg === 'sync found no drift').length
    return [
      String(i + 1), `${run.drift.updated.length} / ${run.drift.deleted.length} / ${run.drift.inserted.length}`,
      ms(run.detectMs),
      found === undefined ? '?' : `${ms(found.sinceCommitMs)} (dial ${ms(found.dialMs ?? 0)}, exchange ${ms(found.exchangeMs ?? 0)})`,
      fixLog === undefined ? '?' : ms(fixLog.sinceCommitMs),
      `**${ms(run.repairMs)}**`,
      `${run.syncs} (${withDrift} with drift, ${without} without)`, String(run.roundTrips), int(run.bytes),
      `${int(run.upserted)} / ${int(run.deleted)}`, passFail(run.rowsEqual)
    ]
  })
  const redundant = s.runs.reduce((sum, run) => sum + run.syncLog.filter(e => e.msg === 'sync found no drift').length, 0)
  const redundantBytes = s.runs.flatMap(run => run.syncLog.filter(e => e.msg === 'sync found no drift').map(e => e.bytes ?? 0))
  const tally = (t: ViewTally): string =>
    `index reads (listMany) ${int(t.listMany.calls)} calls for ${int(t.listMany.items)} nodes, ${ms(t.listMany.ms)}; store reads (getRows) ${int(t.getRows.calls)} calls for ${int(t.getRows.items)} rows, ${ms(t.getRows.ms)}`

  const m = f.memory
  const after = (b: SideBuild): string => `${bytes(b.after.rss)} / ${bytes(b.after.heapUsed)} / ${bytes(b.after.external)}${gcNote(b.after)}`
  const memory = table(['memory (each agent process\'s RSS, sampled every 50 ms)', 'value'], [
    ['RSS before the index build: SoT / replica process', `${bytes(m.sot.rssBefore)} / ${bytes(m.replica.rssBefore)}`],
    [`**peak RSS during its ${int(r.rows)}-row index build: SoT / replica process** (${int(m.sot.rssSamples)} / ${int(m.replica.rssSamples)} samples)`, `**${bytes(m.sot.rssPeak)} / ${bytes(m.replica.rssPeak)}**`],
    ['after its build, index open: RSS / V8 heap used / external, SoT process', after(m.sot)],
    ['the same, replica process', after(m.replica)],
    [`one index on disk (LevelDB, tree depth ${f.treeDepth}, ${int(f.treeRows)} rows)`, bytes(f.indexBytes)],
    ['steady state, both agents running, after the repeats: RSS / V8 heap used / external', `${bytes(s.memory.rss)} / ${bytes(s.memory.heapUsed)} / ${bytes(s.memory.external)}${gcNote(s.memory)}`]
  ])

  return [
    HEADING,
    '',
    `${r.server}, on this host over TCP loopback. \`pgbench -i -s ${r.scale}\` filled pgbench_accounts with ${int(r.rows)} rows (${r.columns}) in ${seconds(r.initMs)}; ` +
    `"one" is that database, "two" and "three" copies of it (CREATE DATABASE … TEMPLATE, ${r.copyMs.map(x => seconds(x)).join(' and ')}), each then drifted the same way in one transaction ` +
    `(${r.driftMs.map(x => ms(x)).join(' and ')}): ${int(FIRST_DRIFT.updates)} rows updated (abalance, filler) and ${int(FIRST_DRIFT.deletes)} deleted, aids from a fixed seed ` +
    `(the two drifted tables checked equal: ${r.driftedEqual ? 'yes' : '**no**'}). Dataset schema: aid integer (key), bid integer, abalance integer, filler string. ` +
    'converge repairs "two" from "one", pg_comparator "three" from "one". Equality afterwards: row count and md5 over every row in aid order, per table.',
    '',
    '### First detect-and-repair, from nothing',
    '',
    'A PgStore and a fresh DigestIndex (no prior index, new LevelDB) per database. The two indexes belong to two agents that in a deployment run on their own hosts and build at the same time, ' +
    'so here each agent is a process of its own (scripts/bench/pg-first-pass-side.ts: its own JS thread, heap, LevelDB and libuv threads), both told to build at once; ' +
    'the two processes still share this machine\'s two cores with each other and with both PostgreSQL backends, so each side\'s time is longer than it would be alone. ' +
    'Then one exchange, the replica\'s process narrowing against the SoT\'s over loopback TCP (the sync frames, without libp2p); then the restore, applied by the replica\'s process.',
    '',
    phases,
    '',
    `Inside the exchange's ${ms(f.exchangeMs)}: SoT side ${tally(f.tally.sot)}; replica side ${tally(f.tally.replica)}.`,
    '',
    versus,
    '',
    `pg_comparator: \`${c.command}\` (all three non-key columns compared; key aid). Its bytes are every byte of its two PostgreSQL connections (startup, queries, results, the synchronizing writes), ` +
    'counted by a TCP proxy per database in a child process (scripts/bench/byte-proxy.ts); its time includes going through those proxies. ' +
    `Its --stats: ${stat('query number')} queries, ${stat('fetched sums')} summary and ${stat('fetched chks')} checksum rows fetched, ${stat('levels')} levels, folding factor ${stat('folding factor')}. ` +
    'converge\'s exchange bytes are its sync frames as the channel counts them (msgpack frames and length prefixes); its own index-build reads do not go through a proxy ' +
    '(that would slow them), so the local-database row comes from one extra PgStore scan of "one" through the proxy after the timed runs. ' +
    `The total counts the two builds once, at their concurrent wall time (${seconds(f.indexBuildsMs)}, from telling both processes to build until the later one reported), not as the sum of the two sides; ` +
    'starting the two processes and loading their code comes before that and is not counted.',
    '',
    '### Steady state: a drift behind the agent\'s back',
    '',
    `Two Agents in this process over libp2p on loopback (SoT over "one", replica over "two"; gossip every ${GOSSIP_INTERVAL_MS} ms, sync defaults), each reusing the index built above ` +
    `(index start phase reported: SoT ${s.indexPhases.sot}, replica ${s.indexPhases.replica}; agent start ${seconds(s.sotStartMs)} and ${seconds(s.replicaStartMs)}; ` +
    `replica in-sync ${seconds(s.initialMs)} after its start). Each repeat writes ${STEADY_DRIFT.updates} updates, ${STEADY_DRIFT.deletes} deletes and ${STEADY_DRIFT.inserts} inserts of new aids ` +
    `to "two" in one transaction with plain SQL, ${seconds(SETTLE_MS)} or more after the previous repair (so the replica's sync worker is idle); ` +
    'the clock starts when COMMIT returns and stops when the replica\'s tree root equals the SoT\'s again ' +
    '(checked on every index change event and every 5 ms); "detected" is when the replica\'s root first differed. Rows checked equal afterwards (md5, whole table).',
    '',
    table(['repeat', 'upd / del / ins', 'commit → detected', 'commit → sync found the drift', 'commit → fix committed', 'commit → roots equal', 'syncs', 'round trips', 'exchange B', 'rows upserted / deleted', 'rows equal'], steadyRows),
    '',
    `Median commit → roots equal: **${ms(med)}** (target under ${int(STEADY_TARGET_MS)} ms: ${passFail(med < STEADY_TARGET_MS)}; slowest ${ms(Math.max(...repairs))}). ` +
    'The middle columns come from the replica agent\'s own info logs ("sync found drift" with its dial and exchange times, "fix applied"), stamped as they were written; ' +
    `syncs, round trips and bytes count every sync the drift set off, up to ${seconds(SETTLE_MS)} after the roots were equal` +
    (redundant > 0 ? `; ${redundant} of them found no drift (${redundantBytes.map(b => `${int(b)} B`).join(', ')}).` : '.'),
    '',
    '### Memory',
    '',
    memory,
    '',
    '### Targets',
    '',
    table(['target', 'measured', 'result'], [
      ['PostgreSQL: converge\'s first pass no slower than pg_comparator --synchronize --do-it', `${seconds(f.totalMs)} against ${seconds(c.ms)}`, passFail(f.totalMs <= c.ms)],
      [`PostgreSQL steady state: a new drift of ${STEADY_DRIFT.updates + STEADY_DRIFT.deletes + STEADY_DRIFT.inserts} rows detected and repaired in under ${int(STEADY_TARGET_MS)} ms (median)`, ms(med), passFail(med < STEADY_TARGET_MS)]
    ])
  ].join('\n')
}
