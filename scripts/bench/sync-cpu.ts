/**
 * CPU spent per differing row: one exchange of the real client (Narrowing)
 * against the real Responder in this process, then the policy's decide() on
 * the difference, then the audit appends of the resulting fix into a real
 * LevelDB AuditLog in a temporary directory. Both replicas hold `--rows`
 * orders (cluster/orders.ts) as CompactReplicas (typed arrays, rows encoded
 * when asked for: a heap of a few objects, as an agent's is, where a
 * MemoryReplica's object per row would make every major GC cost hundreds of
 * milliseconds and blur the figures); the replica differs from the source in
 * `--drift` rows, 60 % changed, 20 % extra here, 20 % missing here.
 *
 * Every message goes through what the wire does to it (msgpack pack, the
 * shape check, unpack, the zod check), timed apart as "framing", so the
 * client and the responder see what they would see from a socket. Time spent
 * inside the replica views (listing the index, reading rows) is measured and
 * taken out of the client's and the responder's figures: those belong to the
 * index and the stores, not to the sync engine. Each part is reported as
 * the best and the median wall time of `--runs` runs, and as the mean CPU
 * time of this process's main thread over them (/proc/thread-self/schedstat,
 * which the kernel advances in scheduler ticks: one reading is off by up to
 * a tick, a mean over many is not) with, in brackets, the mean time of GC
 * pauses within the part (a PerformanceObserver's; a pause is paid by
 * whoever allocates when the young generation is full, so it also measures
 * how much garbage and how many live objects are about). On a machine busy
 * with other work the best wall time is the cleanest single figure, the CPU
 * mean the steadiest. The audit appends' wall time includes LevelDB's write
 * on its own thread.
 *
 *   npx tsx scripts/bench/sync-cpu.ts [--rows 1000000] [--drift 10000] [--runs 10] [--profile out.cpuprofile]
 *
 * --profile writes a V8 CPU profile (sampled every 250 µs) of the measured
 * runs only, not of building the replicas, for chrome://inspect or speedscope.
 */
import { openSync, readSync } from 'node:fs'
import { PerformanceObserver, performance } from 'node:perf_hooks'
import { writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { join } from 'node:path'
import { pack } from 'msgpackr'
import { ordersCodec as codec, orderRow } from '../../cluster/orders.ts'
import { AuditLog } from '../../src/audit/audit-log.ts'
import { afterImages, fixKeys } from '../../src/audit/fix-rows.ts'
import { PROTOCOL_VERSION } from '../../src/constants.ts'
import { u64ToBytes } from '../../src/digest/hash.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { decide, type Decision, type DriftRow } from '../../src/policy/decide.ts'
import { checkMessage, decodeFrame, openedSchema, replySchema, roundSchema, type ReplyMessage, type RoundMessage } from '../../src/sync/messages.ts'
import { Narrowing, type NarrowingResult } from '../../src/sync/narrowing.ts'
import type { IndexEntry, ReplicaView } from '../../src/sync/replica-view.ts'
import { Responder } from '../../src/sync/responder.ts'
import { hexOf } from '../../src/util/bytes.ts'
import { CompactReplica, type OrdersDrift } from './compact-replica.ts'
import { fixed, int, progress, table } from './report.ts'
import { makeTempDir, removeAllTempDirs } from './temp-dirs.ts'
import { median } from './timing.ts'

interface Options { rows: number, drift: number, runs: number, profile: string | undefined }

function parseArgs (argv: readonly string[]): Options {
  const out: Options = { rows: 1_000_000, drift: 10_000, runs: 10, profile: undefined }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const value = (): string => { const v = argv[++i]; if (v === undefined) throw new Error(`${arg} needs a value`); return v }
    const count = (): number => { const n = Number(value().replace(/[_,]/g, '')); if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${arg}: not a whole number of 1 or more`); return n }
    if (arg === '--rows') out.rows = count()
    else if (arg === '--drift') out.drift = count()
    else if (arg === '--runs') out.runs = count()
    else if (arg === '--profile') out.profile = value()
    else throw new Error(`unknown option ${arg} (--rows N, --drift D, --runs R, --profile FILE)`)
  }
  if (out.drift > out.rows / 2) throw new Error('--drift may be at most half of --rows')
  return out
}

/**
 * Wall time and this thread's CPU time, in ms, and the windows of wall time
 * they cover: [from, to, +1] counted in, [from, to, -1] taken out (time in a
 * view), so the GC pauses within them can be added up once reported.
 */
interface Span { wall: number, cpu: number, windows: Array<[number, number, number]> }

const wallNow = (): number => performance.now()

/** GC pauses on this thread, [start, end] in performance.now() time, as the observer reports them (a little after). */
const gcPauses: Array<[number, number]> = []
const gcObserver = new PerformanceObserver(list => { for (const e of list.getEntries()) gcPauses.push([e.startTime, e.startTime + e.duration]) })
gcObserver.observe({ entryTypes: ['gc'] })

/** Time in GC pauses within a span's windows. */
function gcOf (span: Span): number {
  let total = 0
  for (const [from, to, sign] of span.windows) {
    for (const [start, end] of gcPauses) total += sign * Math.max(0, Math.min(to, end) - Math.max(from, start))
  }
  return total
}

/** The main thread's schedstat, opened once; its first field is the thread's time on a CPU so far, in ns. */
const schedstat = ((): number | undefined => { try { return openSync('/proc/thread-self/schedstat', 'r') } catch { return undefined } })()
const schedstatBuffer = Buffer.alloc(128)

/** CPU time of this (the main) thread, in ms; wall time where /proc is missing. */
function cpuNow (): number {
  if (schedstat === undefined) return wallNow()
  const n = readSync(schedstat, schedstatBuffer, 0, schedstatBuffer.length, 0)
  return Number(schedstatBuffer.toString('latin1', 0, n).split(' ')[0]) / 1e6
}

/** Starts timing; the function returned gives the span since, less `minus` (time spent elsewhere meanwhile). */
function stopwatch (): (minus?: Span) => Span {
  const wall = wallNow(); const cpu = cpuNow()
  return (minus = ZERO) => {
    const end = wallNow()
    return { wall: end - wall - minus.wall, cpu: cpuNow() - cpu - minus.cpu, windows: [[wall, end, 1], ...minus.windows.map(([a, b, sign]): [number, number, number] => [a, b, -sign])] }
  }
}

const ZERO: Span = { wall: 0, cpu: 0, windows: [] }
const plus = (a: Span, b: Span): Span => ({ wall: a.wall + b.wall, cpu: a.cpu + b.cpu, windows: [...a.windows, ...b.windows] })

/** A replica view that adds up the time spent inside it, so callers' figures can leave it out. */
class TimedView implements ReplicaView {
  spent: Span = ZERO
  constructor (private readonly inner: ReplicaView) {}
  get tree (): ReplicaView['tree'] { return this.inner.tree }
  private async timed<T> (work: () => Promise<T>): Promise<T> {
    const stop = stopwatch()
    try { return await work() } finally { this.spent = plus(this.spent, stop()) }
  }

  async list (level: number, index: number): Promise<IndexEntry[]> { return await this.timed(async () => await this.inner.list(level, index)) }
  async listMany (nodes: ReadonlyArray<{ level: number, index: number }>): Promise<IndexEntry[][]> { return await this.timed(async () => await this.inner.listMany(nodes)) }
  async getRows (keys: Uint8Array[]): Promise<Array<Uint8Array | undefined>> { return await this.timed(async () => await this.inner.getRows(keys)) }
}

/** The replica's drift from the source, by order id: updated here to orderRow(id, 1), deleted here, inserted here (ids >= n). */
type Drift = OrdersDrift

/**
 * Distinct ids from a fixed seed. A truncated child sum that happens to agree
 * defers a row to the next exchange (by design; at 1,000,000 rows and 10,000
 * differing about one exchange in 16): this seed's exchange is exact, so
 * every run does the same work and checkExact can hold it to the drift.
 */
function chooseDrift (n: number, d: number): Drift {
  let s = 1
  const random = (): number => { s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0; return s / 2 ** 32 }
  const updates = Math.round(d * 0.6)
  const deletes = Math.round(d * 0.2)
  const picked = new Set<number>()
  const pick = (): number => { for (;;) { const id = Math.floor(random() * n); if (!picked.has(id)) { picked.add(id); return id } } }
  return {
    updated: Array.from({ length: updates }, pick),
    deleted: Array.from({ length: deletes }, pick),
    inserted: Array.from({ length: d - updates - deletes }, (_, i) => n + i)
  }
}

/** What the wire does to a message: pack, then the receiver's shape check, unpack and schema check. */
function overTheWire<T> (message: unknown, schema: import('zod').ZodType<T>, what: string): T {
  return checkMessage(schema, decodeFrame(pack(message), what), what)
}

interface RoundTiming {
  /** Rows the source sent in this round. */
  rows: number
  /** Responder.answer, less the time in the source's view. */
  responder: Span
  /** Narrowing.accept (or start for round 0), less the time in the replica's view. */
  client: Span
  /** Packing and checking the round and its replies. */
  framing: Span
  /** Inside the views (index listings, row reads), both sides. */
  views: Span
}

async function exchange (sot: CompactReplica, local: CompactReplica): Promise<{ result: NarrowingResult, rounds: RoundTiming[] }> {
  const sotView = new TimedView(sot)
  const localView = new TimedView(local)
  const responder = new Responder(sotView, codec)
  const tree = sot.tree
  let stop = stopwatch()
  const opened = overTheWire({
    t: 'opened', v: PROTOCOL_VERSION, region: 'sot', fp: codec.fingerprint, clock: { sot: 1 },
    depth: tree.depth, count: tree.count(0, 0), sum: u64ToBytes(tree.sum(0, 0)), children: responder.childrenOf()
  }, openedSchema, 'opened')
  const openedFraming = stop()
  const narrowing = new Narrowing(localView, codec)
  stop = stopwatch()
  let request: RoundMessage | undefined = await narrowing.start(opened)
  const rounds: RoundTiming[] = [{ rows: 0, responder: ZERO, client: stop(localView.spent), framing: openedFraming, views: localView.spent }]
  while (request !== undefined) {
    sotView.spent = ZERO; localView.spent = ZERO
    stop = stopwatch()
    const round = overTheWire(request, roundSchema, 'round')
    let framing = stop()
    stop = stopwatch()
    const replies: ReplyMessage[] = []
    for await (const reply of responder.answer(round)) replies.push(reply)
    const answered = stop(sotView.spent)
    stop = stopwatch()
    const received = replies.map(r => overTheWire(r, replySchema, 'reply'))
    framing = plus(framing, stop())
    stop = stopwatch()
    request = await narrowing.accept(received)
    const client = stop(localView.spent)
    rounds.push({ rows: replies.reduce((n, r) => n + (r.rows?.length ?? 0), 0), responder: answered, client, framing, views: plus(sotView.spent, localView.spent) })
  }
  return { result: narrowing.result(), rounds }
}

/** Throws unless the exchange found exactly the drift, row for row. */
function checkExact (result: NarrowingResult, drift: Drift): void {
  const got = { changed: result.changed, missing: result.missing, extra: result.extra, upserts: result.upserts.length, deletes: result.deletes.length, unresolved: result.unresolved }
  const want = { changed: drift.updated.length, missing: drift.deleted.length, extra: drift.inserted.length, upserts: drift.updated.length + drift.deleted.length, deletes: drift.inserted.length, unresolved: 0 }
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`the exchange is not exact: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
  const wantRows = new Set([...drift.updated, ...drift.deleted].map(id => hexOf(codec.encodeRow(orderRow(id)))))
  if (result.upserts.some(row => !wantRows.has(hexOf(row)))) throw new Error('the exchange returned a row the source did not change')
  const wantKeys = new Set(drift.inserted.map(id => hexOf(codec.encodeKey({ order_id: id }))))
  if (result.deletes.some(key => !wantKeys.has(hexOf(key)))) throw new Error('the exchange deletes a key that is not extra')
}

/** The difference as Repairer.driftRows builds it: each key with the source's row and this replica's. */
async function driftRows (result: NarrowingResult, upsertKeys: Uint8Array[], local: ReplicaView): Promise<DriftRow[]> {
  const mine = await local.getRows([...upsertKeys, ...result.deletes])
  const rows: DriftRow[] = result.upserts.map((sot, i) => ({ key: upsertKeys[i]!, sot, local: mine[i] }))
  result.deletes.forEach((key, i) => rows.push({ key, local: mine[upsertKeys.length + i] }))
  return rows
}

const RESTORE = { rule: 'restore' as const, risk: { reviewDeletes: false, history: 10 }, recentFixRows: [] }

interface RunTiming {
  rounds: RoundTiming[]
  /** Keys of the upserts (what Repairer.driftRows computes besides reading the local rows). */
  driftKeys: Span
  /** decide() with the default tolerance (no grace window, one confirmation). */
  decide: Span
  /** decide() with a grace window and two confirmations, on the round that confirms (every row seen before). */
  decideConfirm: Span
  /** fixKeys and afterImages of the fix, as applyFixOnce computes them. */
  fixRows: Span
  intent: Span
  commit: Span
}

async function run (sot: CompactReplica, local: CompactReplica, drift: Drift, audit: AuditLog): Promise<RunTiming> {
  const { result, rounds } = await exchange(sot, local)
  checkExact(result, drift)

  let stop = stopwatch()
  // as Repairer.driftRows: the keys the narrowing found, else each row's decoded
  const upsertKeys = result.upsertKeys?.length === result.upserts.length ? result.upsertKeys : result.upserts.map(r => codec.keyOfEncodedRow(r))
  const driftKeys = stop()
  const rows = await driftRows(result, upsertKeys, local)
  const at = Date.UTC(2027, 0, 1)

  stop = stopwatch()
  const decision: Decision = decide({ ...RESTORE, codec, tolerance: { graceMs: 0, confirmations: 1, acceptableRows: 0 }, rows, now: at, totalRows: local.rows, sightings: new Map() })
  const decided = stop()
  if (decision.action !== 'apply' || decision.fixes.length !== 1) throw new Error(`expected one fix to apply, got ${decision.action} with ${decision.fixes.length} fixes`)
  const tolerance = { graceMs: 30_000, confirmations: 2, acceptableRows: 0 }
  const first = decide({ ...RESTORE, codec, tolerance, rows, now: at, totalRows: local.rows, sightings: new Map() })
  stop = stopwatch()
  const confirmed = decide({ ...RESTORE, codec, tolerance, rows, now: at, totalRows: local.rows, sightings: first.sightings })
  const decideConfirm = stop()
  if (confirmed.action !== 'apply' || confirmed.fixes[0]!.upserts.length + confirmed.fixes[0]!.deletes.length !== drift.updated.length + drift.deleted.length + drift.inserted.length) throw new Error('the confirming round did not fix every row')

  const fix = decision.fixes[0]!
  stop = stopwatch()
  // as applyFixOnce: the keys the fix carries, else each row's decoded
  const keys = fix.upsertKeys?.length === fix.upserts.length ? [...fix.upsertKeys, ...fix.deletes] : fixKeys(fix, codec)
  afterImages(fix)
  const fixRows = stop()
  const before = (await local.getRows(keys)).map(row => row ?? null)
  const common = { fixId: `bench-${audit.length}`, correlationId: 'bench', dataset: 'orders', region: 'local', clock: { local: audit.length + 1, sot: 1 }, sourceRegion: 'sot', rule: 'restore', by: 'converge' }
  stop = stopwatch()
  await audit.append({ ...common, kind: 'intent', detected: { missing: result.missing, changed: result.changed, extra: result.extra }, upserts: fix.upserts, deletes: fix.deletes, before })
  const intent = stop()
  stop = stopwatch()
  await audit.append({ ...common, kind: 'commit', before, storeSeq: 1 })
  const commit = stop()
  return { rounds, driftKeys, decide: decided, decideConfirm, fixRows, intent, commit }
}

function report (options: Options, runs: RunTiming[]): string {
  /** Best and median wall time, mean CPU time and, in brackets, the mean time of GC pauses within it. */
  const stat = (pick: (r: RunTiming) => Span): [string, string, string] => {
    const spans = runs.map(pick)
    const walls = spans.map(s => s.wall)
    const mean = (f: (s: Span) => number): number => spans.reduce((n, s) => n + f(s), 0) / spans.length
    return [fixed(Math.min(...walls), 1), fixed(median(walls), 1), `${fixed(mean(s => s.cpu), 1)} (${fixed(mean(gcOf), 1)})`]
  }
  const roundRows = runs[0]!.rounds.map((r, i) => [
    i === 0 ? 'open' : String(i), int(r.rows),
    ...stat(x => x.rounds[i]!.client), ...stat(x => x.rounds[i]!.responder), stat(x => x.rounds[i]!.framing)[0], stat(x => x.rounds[i]!.views)[0]
  ])
  const sum = (pick: (r: RoundTiming) => Span) => (x: RunTiming): Span => x.rounds.reduce((n, r) => plus(n, pick(r)), ZERO)
  roundRows.push(['all', int(runs[0]!.rounds.reduce((n, r) => n + r.rows, 0)), ...stat(sum(r => r.client)), ...stat(sum(r => r.responder)), stat(sum(r => r.framing))[0], stat(sum(r => r.views))[0]])
  const parts: Array<[string, (r: RunTiming) => Span]> = [
    ['keys of the upserts (Repairer.driftRows, besides reading local rows)', r => r.driftKeys],
    ['decide(), restore, default tolerance', r => r.decide],
    ['decide(), restore, grace 30 s and 2 confirmations, the confirming round', r => r.decideConfirm],
    ['keys + after-images of the fix (applyFixOnce)', r => r.fixRows],
    ['audit append: intent (after-images, before-images)', r => r.intent],
    ['audit append: commit (before-images)', r => r.commit],
    ['audit appends together', r => plus(r.intent, r.commit)]
  ]
  return [
    `sync CPU: ${int(options.rows)} orders rows, ${int(options.drift)} differing (60 % changed, 20 % missing here, 20 % extra here), ${runs.length} runs; ms: best and median wall time, mean CPU time of the main thread (of which GC pauses)`,
    '',
    'One exchange, per round (client = Narrowing.start/accept less its view; responder = Responder.answer less its view):',
    '',
    table(['round', 'rows sent', 'client best', 'client median', 'client CPU (GC)', 'responder best', 'responder median', 'responder CPU (GC)', 'framing best', 'views best'], roundRows),
    '',
    'The difference, the policy and the audit (one fix of every differing row; the appends\' wall time includes the LevelDB write):',
    '',
    table(['part', 'best', 'median', 'CPU (GC)'], parts.map(([name, pick]) => [name, ...stat(pick)]))
  ].join('\n')
}

async function main (): Promise<void> {
  const options = parseArgs(process.argv.slice(2))
  progress(`sync-cpu: building two replicas of ${int(options.rows)} rows`)
  const drift = chooseDrift(options.rows, options.drift)
  const sot = CompactReplica.source(options.rows)
  const local = sot.drifted(drift)
  const dir = await makeTempDir('sync-cpu')
  const state = new StateDb(join(dir, 'state'))
  await state.open()
  const audit = new AuditLog(state)
  await audit.open()
  try {
    progress('sync-cpu: warming up')
    await run(sot, local, drift, audit)
    const session = options.profile === undefined ? undefined : new Session()
    if (session !== undefined) { session.connect(); await session.post('Profiler.enable'); await session.post('Profiler.setSamplingInterval', { interval: 250 }); await session.post('Profiler.start') }
    const runs: RunTiming[] = []
    for (let i = 0; i < options.runs; i++) {
      progress(`sync-cpu: run ${i + 1} of ${options.runs}`)
      runs.push(await run(sot, local, drift, audit))
    }
    if (session !== undefined) {
      const { profile } = await session.post('Profiler.stop')
      await writeFile(options.profile!, JSON.stringify(profile))
      session.disconnect()
      progress(`sync-cpu: profile of the measured runs written to ${options.profile!}`)
    }
    await audit.verify()
    // the observer reports pauses after they happen: let it catch up before the spans are reported
    await new Promise(resolve => setTimeout(resolve, 50))
    gcObserver.disconnect()
    process.stdout.write(report(options, runs) + '\n')
  } finally {
    await state.close()
    await removeAllTempDirs()
  }
}

await main()
