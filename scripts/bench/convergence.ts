/**
 * Section 5: converging 3 regions of 1,000,000 orders at 1 % drift, against
 * a full copy of the source of truth to each replica, in the same run.
 *
 * (a) converge: the cluster simulator (cluster/scenario-runner.ts) starts
 *     three agents as OS processes on loopback, each beside its own
 *     PostgreSQL database of the same orders, each database on a server of
 *     its own as regions are (--servers own, where initdb is found) or the
 *     three on one server (--servers shared); once every index is built
 *     (t0), 1 % of the rows of each replica is drifted behind its agent's
 *     back (60 % updated, 20 % inserted, 20 % deleted), and again every
 *     ROUND_EVERY_S seconds, ROUNDS times in all. Timed, each round: from
 *     its drift's commit until every replica is level with the source by
 *     its status (polled every POLL_EVERY_MS; timed to when the last
 *     replica's agent says it became level, cluster/convergence.ts, so the
 *     poll sets only how soon the runner notices, not the figure). The first round is the agents'
 *     first repair since their start (cold: V8 has not compiled the repair
 *     path yet); the later ones are what a sidecar that has been running
 *     meets (steady), and their median is the figure held against the
 *     target, next to the first. Then the runner checks every replica row
 *     for row against the source, reading the databases directly.
 * (b) the full copy: what an operator does instead, into the same replica
 *     databases right after: `COPY … TO STDOUT (FORMAT binary)` from the
 *     source piped into `TRUNCATE` + `COPY … FROM STDIN` on each replica in
 *     one transaction (psql on both ends, both replicas at once, capture
 *     triggers off with session_replication_role = replica, which only helps
 *     the copy). Timed from the first psql's start to the last one's exit;
 *     done COPY_RUNS times, the median taken (a copy's time varies with the
 *     server's checkpoints and the page cache by half from run to run here),
 *     each after a CHECKPOINT, as the scenario's rounds start after one
 *     (cluster/region-stores.ts): neither is timed while the server writes
 *     out the WAL of what came before it.
 */
import { spawn } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { parseScenario } from '../../cluster/scenario.ts'
import { runScenario } from '../../cluster/scenario-runner.ts'
import type { RunReport } from '../../cluster/report.ts'
import { libpqEnv, sqlOnce } from './pg-databases.ts'
import { bytes, fixed, int, passFail, progress, seconds, table } from './report.ts'
import { medianRatioInterval } from './resample.ts'
import { makeTempDir, removeTempDir } from './temp-dirs.ts'
import { median } from './timing.ts'

export const CONVERGE_ROWS = 1_000_000
export const QUICK_CONVERGE_ROWS = 100_000
const DRIFT_SHARE = 0.01
/** Target: converge at least this many times faster than the full copy. */
const SPEEDUP_TARGET = 5
/**
 * Drift rounds, ROUND_EVERY_S apart: the first is cold, the median of the
 * rest is the steady figure. Ten, not the six of earlier runs: one round's
 * time swings by a third with what else the two cores meet in it (a full
 * collection, a compaction, the compiler), and the median of nine swings
 * less than that of five. (Sixteen-round runs on 2026-11-27 gave medians of
 * rounds 2-10 equal to or above those of rounds 2-6: 900/813, 984/984,
 * 922/894 ms; more rounds is not a way to a smaller figure.)
 */
const ROUNDS = 10
/** The rounds the figure was the median of until ROUNDS became ten; still printed, so runs before and after compare. */
const EARLIER_STEADY_ROUNDS = 5
const ROUND_EVERY_S = 8
/**
 * How often the runner polls each agent's status. The figure does not hang
 * on it (the agents say when they became level); each poll costs an agent
 * and the runner CPU that the round's work on two cores then lacks (at
 * 100 ms, the runner alone took a tenth of a core).
 */
const POLL_EVERY_MS = 250
const SOURCE = 'us-east'
const REPLICAS = ['eu-west', 'ap-south'] as const

function scenarioText (rows: number, servers: 'own' | 'shared'): string {
  return `name: bench-converge-vs-copy
description: 3 PostgreSQL regions, ${rows} orders, ${DRIFT_SHARE * 100} % drift on each replica once every index is built, ${ROUNDS} times ${ROUND_EVERY_S} s apart
regions:
${[SOURCE, ...REPLICAS].map(r => `  - { name: ${r}, store: postgres, server: ${servers} }`).join('\n')}
sourceOfTruth: [${SOURCE}]
datasets:
  - { name: orders, rows: ${rows} }
drift:
${Array.from({ length: ROUNDS }, (_, i) => `  - { at: ${i * ROUND_EVERY_S}s, share: ${DRIFT_SHARE} }`).join('\n')}
expect:
  convergeWithin: 120s
  maxRssMiB: 1024
pollEvery: ${POLL_EVERY_MS}ms
timeout: 20m
`
}

export interface CopyRun { ms: number, bytes: number, perReplicaMs: Record<string, number> }
/** Full copies timed; the median is the baseline (five: a copy's time swings by a quarter from one to the next here). */
const COPY_RUNS = 5

export interface ConvergenceResult {
  rows: number
  report: RunReport
  /** Each drift round's convergence (ms); the first is cold. */
  roundsMs: number[]
  /** The median of the rounds after the first. */
  steadyMs: number
  /** The median of rounds 2-6 alone (the figure of runs with six rounds). */
  earlierSteadyMs: number
  /** The median of the copies (by time). */
  copy: CopyRun
  copies: CopyRun[]
  /** Whether each region had a PostgreSQL server of its own, or all three shared one. */
  servers: 'own' | 'shared'
  /** Each region's server's shared buffers and its database's size (read after the copies). */
  databases: Array<{ region: string, sharedBuffers: string, bytes: number }>
}

/** psql's stdout piped into another psql's stdin, counting the bytes; resolves when both have exited 0. */
async function pipeCopy (psql: string, from: string, to: string): Promise<{ ms: number, bytes: number }> {
  const t = performance.now()
  const source = spawn(psql, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', new URL(from).pathname.slice(1), '-c', 'COPY public.orders TO STDOUT (FORMAT binary)'],
    { env: libpqEnv(from), stdio: ['ignore', 'pipe', 'pipe'] })
  const target = spawn(psql, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-1', '-d', new URL(to).pathname.slice(1),
    '-c', 'SET session_replication_role = replica', '-c', 'TRUNCATE public.orders', '-c', 'COPY public.orders FROM STDIN (FORMAT binary)'],
  { env: libpqEnv(to), stdio: ['pipe', 'ignore', 'pipe'] })
  let moved = 0
  let errors = ''
  source.stderr.on('data', (b: Buffer) => { errors += b.toString() })
  target.stderr.on('data', (b: Buffer) => { errors += b.toString() })
  source.stdout.on('data', (b: Buffer) => { moved += b.length })
  source.stdout.pipe(target.stdin)
  const exit = async (p: ReturnType<typeof spawn>): Promise<number | null> => await new Promise((resolve, reject) => { p.once('error', reject); p.once('exit', resolve) })
  const [a, b] = await Promise.all([exit(source), exit(target)])
  if (a !== 0 || b !== 0) throw new Error(`full copy into ${to} failed (psql exit codes ${a}, ${b}): ${errors.trim()}`)
  return { ms: performance.now() - t, bytes: moved }
}

async function tableFingerprint (url: string): Promise<{ rows: number, md5: string }> {
  const { rows } = await sqlOnce<{ n: string, md5: string }>(url, 'SELECT count(*)::text AS n, md5(string_agg(o::text, \'\n\' ORDER BY order_id)) AS md5 FROM public.orders o')
  return { rows: Number(rows[0]!.n), md5: rows[0]!.md5 }
}

/**
 * `psql`: the client that runs the full copy (checkServer found it).
 * `servers`: own puts each region's database on a PostgreSQL server of its
 * own (cluster/private-postgres.ts), as regions are, each with its own
 * shared buffers; shared puts all three on the `adminUrl` server, where their
 * pages compete for its buffers.
 */
export async function measureConvergence (adminUrl: string, rows: number, psql: string, servers: 'own' | 'shared'): Promise<ConvergenceResult> {
  const scenario = parseScenario(scenarioText(rows, servers), 'bench-converge-vs-copy', { set: [`postgres=${adminUrl}`] })
  const outDir = await makeTempDir('converge')
  let measured: Pick<ConvergenceResult, 'copy' | 'copies' | 'databases'> | undefined
  try {
    progress(`5: the cluster simulator: 3 PostgreSQL regions x ${int(rows)} orders (${servers === 'own' ? 'a server each' : 'one server'}), ${DRIFT_SHARE * 100} % drift on each replica at t0`)
    const report = await runScenario(scenario, {
      outDir,
      out: { write: (text: string) => { for (const line of text.split('\n')) if (line.trim() !== '') progress(`5: ${line.trim()}`); return true } },
      // the copies run on the same databases, once the agents are stopped and before the runner drops them
      afterRun: async (stores, report) => {
        if (!report.passed) return
        const urls = new Map(stores.flatMap(s => s.pg === undefined ? [] : [[s.region, s.pg.url] as const]))
        measured = await measureCopies(psql, urls)
      }
    })
    if (!report.passed) throw new Error(`the convergence run failed its checks: ${report.checks.filter(c => !c.passed).map(c => `${c.name}: ${c.detail}`).join('; ')}`)
    const rounds = report.convergence.rounds
    if (rounds.length !== ROUNDS || rounds.some(r => r.convergenceMs === null)) {
      throw new Error(`not every drift round converged before the next began: ${rounds.map(r => `${r.atMs} ms: ${r.convergenceMs ?? 'not level'}`).join(', ')}`)
    }
    if (measured === undefined) throw new Error('the full copies did not run')
    const roundsMs = rounds.map(r => r.convergenceMs!)
    return { rows, report, roundsMs, steadyMs: median(roundsMs.slice(1)), earlierSteadyMs: median(roundsMs.slice(1, 1 + EARLIER_STEADY_ROUNDS)), servers, ...measured }
  } finally {
    await removeTempDir(outDir)
  }
}

/** The full copy, COPY_RUNS times, each checked; then each region's server's buffers and its database's size. */
async function measureCopies (psql: string, urls: ReadonlyMap<string, string>): Promise<Pick<ConvergenceResult, 'copy' | 'copies' | 'databases'>> {
  const urlOf = (region: string): string => {
    const url = urls.get(region)
    if (url === undefined) throw new Error(`no database found for ${region}`)
    return url
  }
  const sourceUrl = urlOf(SOURCE)
  const want = await tableFingerprint(sourceUrl)
  const copies: CopyRun[] = []
  for (let run = 1; run <= COPY_RUNS; run++) {
    progress(`5: the full copy (${run} of ${COPY_RUNS}): COPY from the source into both replicas at once`)
    // from a clean checkpoint on every server, as the scenario's rounds began (cluster/region-stores.ts): the last copy's WAL is not checkpointed during this one
    for (const url of new Set([SOURCE, ...REPLICAS].map(urlOf))) await sqlOnce(url, 'CHECKPOINT')
    const t = performance.now()
    const perReplica = await Promise.all(REPLICAS.map(async r => ({ region: r, ...(await pipeCopy(psql, sourceUrl, urlOf(r))) })))
    copies.push({ ms: performance.now() - t, bytes: perReplica.reduce((s, p) => s + p.bytes, 0), perReplicaMs: Object.fromEntries(perReplica.map(p => [p.region, p.ms])) })
    // the copy is only a baseline if it really copied: every replica equal to the source again
    for (const r of REPLICAS) {
      const got = await tableFingerprint(urlOf(r))
      if (got.rows !== want.rows || got.md5 !== want.md5) throw new Error(`after the full copy ${r} holds ${got.rows} rows (${got.md5}), the source ${want.rows} (${want.md5})`)
    }
  }
  const copy = [...copies].sort((a, b) => a.ms - b.ms)[Math.floor(copies.length / 2)]!
  // whether a read by key finds its pages in the server's buffers or goes to the OS for them sets much of PostgreSQL's part of a round
  const databases = []
  for (const region of [SOURCE, ...REPLICAS]) {
    const { rows: [row] } = await sqlOnce<{ shared_buffers: string, bytes: string }>(urlOf(region), "SELECT current_setting('shared_buffers') AS shared_buffers, pg_database_size(current_database())::text AS bytes")
    databases.push({ region, sharedBuffers: row?.shared_buffers ?? '?', bytes: Number(row?.bytes ?? 0) })
  }
  return { copy, copies, databases }
}

/**
 * Where a steady round's CPU went: each agent's process and each region's
 * PostgreSQL backends, as the runner read them from /proc every poll
 * (Round.cpu), medians over the steady rounds; none when not measured.
 */
function cpuSection (r: ConvergenceResult): string[] {
  const steadyRounds = r.report.convergence.rounds.slice(1).filter(round => round.cpu !== undefined)
  if (steadyRounds.length === 0) return []
  const regions = [SOURCE, ...REPLICAS]
  const agent = (region: string): number => median(steadyRounds.map(round => round.cpu![region]?.agentMs ?? 0))
  const postgres = median(steadyRounds.map(round => regions.reduce((n, region) => n + (round.cpu![region]?.postgresMs ?? 0), 0)))
  const agents = regions.reduce((n, region) => n + agent(region), 0)
  const round = median(steadyRounds.map(x => x.convergenceMs!))
  return [
    '',
    `CPU in a steady round (medians of rounds 2 to ${ROUNDS}; each agent's process and each region's PostgreSQL backends, read from /proc by the runner ` +
    `every poll, so each figure spans up to a poll more than the round; ${availableParallelism()} cores): the agents ${fixed(100 * agents / (agents + postgres), 0)} % of it.`,
    '',
    table(['', ...regions.map(region => `${region} agent${region === SOURCE ? ' (source)' : ''}`), `PostgreSQL, all three ${r.servers === 'own' ? 'servers' : 'databases'}`, 'together', 'the round'], [
      ['CPU', ...regions.map(region => seconds(agent(region))), seconds(postgres), seconds(agents + postgres), seconds(round)]
    ])
  ]
}

export function convergenceReport (r: ConvergenceResult): string {
  const coldMs = r.roundsMs[0]!
  const steadyMs = r.steadyMs
  const regions = REPLICAS.map(name => {
    const g = r.report.regions[name]!
    return [name, int(g.rowsRepaired.total), String(g.fixes), String(g.roundTrips), bytes(g.bytesSent + g.bytesReceived), g.remediateMs === undefined ? '—' : `${int(g.remediateMs.max)} ms`, seconds(r.copy.perReplicaMs[name] ?? Number.NaN)]
  })
  const convergeBytes = REPLICAS.reduce((s, name) => s + r.report.regions[name]!.bytesSent + r.report.regions[name]!.bytesReceived, 0)
  const steady = r.copy.ms / steadyMs
  const cold = r.copy.ms / coldMs
  const spread = medianRatioInterval(r.copies.map(c => c.ms), r.roundsMs.slice(1))
  return [
    `## 5. Converging 3 regions x ${int(r.rows)} rows at ${DRIFT_SHARE * 100} % drift, against a full copy`,
    '',
    `converge: the cluster simulator with three agent processes on loopback, each beside its own PostgreSQL database of the same orders${r.servers === 'own' ? ' on a server of its own' : ', the three on one server'} ` +
    `(seeded, then every index built from nothing in ${seconds(r.report.startupMs)} from the agents' launch). At t0, ${DRIFT_SHARE * 100} % of each replica's rows ` +
    'drifted behind its agent\'s back (60 % updated, 20 % inserted, 20 % deleted, in one transaction per replica), and again every ' +
    `${ROUND_EVERY_S} s, ${ROUNDS} rounds in all. Each round timed from its drift's last commit until both replicas report ` +
    `level with the source (status polled every ${POLL_EVERY_MS} ms, the round timed to when the last replica's agent says it became level; the next round began only after). The first round is the agents' first repair since they started (cold: ` +
    'V8 compiles the repair path while it runs); the later rounds are what a sidecar that has been running meets (steady), and their median is held against the target. ' +
    `Rounds: ${r.roundsMs.map(ms => seconds(ms)).join(', ')}. The runner then stopped the agents and checked each replica row for row against the source, reading the databases ` +
    `directly: ${r.report.checks.filter(ch => ch.name.startsWith('rows equal')).map(ch => `${ch.name}: ${ch.passed ? 'equal' : 'NOT equal'}`).join('; ')}.`,
    '',
    'Full copy: right after, into the same replica databases: psql `COPY public.orders TO STDOUT (FORMAT binary)` on the source piped into psql `TRUNCATE` + ' +
    '`COPY … FROM STDIN` on each replica in one transaction, both replicas at once, capture triggers off (session_replication_role = replica). ' +
    `Each replica was then checked equal to the source (row count and md5 of every row in key order). Done ${r.copies.length} times, each after a CHECKPOINT (as the rounds above began after one): ` +
    `${r.copies.map(c => seconds(c.ms)).join(', ')}; the median is the baseline.`,
    '',
    table([`replica (all ${ROUNDS} rounds)`, 'rows repaired', 'fixes', 'round trips', 'converge bytes', 'slowest fix', 'full copy (the median run)'], regions),
    '',
    table(['', `converge, steady (median of rounds 2 to ${ROUNDS})`, 'converge, cold (round 1)', 'full copy of the source to each replica'], [
      ['time', seconds(steadyMs), seconds(coldMs), `${seconds(r.copy.ms)} (median of ${r.copies.length})`],
      ['bytes moved', `${bytes(convergeBytes / ROUNDS)} a round (mean)`, '', bytes(r.copy.bytes)]
    ]),
    '',
    table(['target', 'measured', 'result'], [
      [`convergence at ${DRIFT_SHARE * 100} % drift at least ${SPEEDUP_TARGET}x faster than the full copy (steady)`, `${fixed(steady, 1)}x (cold: ${fixed(cold, 1)}x)`, passFail(steady >= SPEEDUP_TARGET)]
    ]),
    '',
    `How far that figure could move on another run of this machine, from this run's own samples: resampling the ${r.roundsMs.length - 1} steady rounds and the ` +
    `${r.copies.length} copies (each with replacement, ${int(spread.resamples)} times) puts ${fixed(spread.level * 100, 0)} % of the ratios of their medians between ` +
    `${fixed(spread.low, 1)}x and ${fixed(spread.high, 1)}x.`,
    '',
    `Rounds 2 to ${1 + EARLIER_STEADY_ROUNDS} alone (the steady figure of earlier six-round runs): ${seconds(r.earlierSteadyMs)}, ${fixed(r.copy.ms / r.earlierSteadyMs, 1)}x.`,
    ...cpuSection(r),
    '',
    r.servers === 'own'
      ? `Each region's database on a PostgreSQL server of its own, as regions are (initdb's defaults, on this machine's two cores): shared_buffers ${r.databases.map(d => d.sharedBuffers).join(', ')}; ` +
        `the databases ${r.databases.map(d => bytes(d.bytes)).join(', ')}.`
      : `The three databases shared one PostgreSQL server (--servers shared): shared_buffers ${r.databases[0]?.sharedBuffers ?? '?'}, the databases ${bytes(r.databases.reduce((n, d) => n + d.bytes, 0))} together; ` +
        'reads by key of pages not in those buffers come from the OS at several times the cost (docs/convergence-vs-copy.md).',
    '',
    `From nothing (the agents' launch, both index builds included, then the first drift) to converged took ${seconds(r.report.startupMs + coldMs)}: ` +
    'the index is built once per agent and kept by change capture after that; every later drift costs only the convergence above.'
  ].join('\n')
}
