/**
 * The faults of a scenario's timeline, each an honest fault on this machine:
 *
 *   kill        kill -9 (or SIGTERM) an agent's process, restart it later
 *   cut         a region cut off from the others: its links go silent (a
 *               partition) or refuse (reset), then heal
 *   link        a slow, capped, lossy, resetting or half-open link
 *               (link-proxy.ts), for a while or to the end
 *   sot-outage  a source of truth's agent dies; the replicas must serve from
 *               the next source of truth, and from this one once it is back
 *   store       a region's database errs (PostgreSQL backends terminated),
 *               stalls (its table locked: LOCK TABLE, BEGIN EXCLUSIVE) or
 *               crashes (its own PostgreSQL server shut down immediately,
 *               then started again: recovery from the WAL)
 *   clock-skew  an agent's wall clock set off (clock-skew.ts)
 *
 * Each fault waits for its trigger, does its harm, undoes it, and says what
 * it saw the agents do (observed) and what of its expectations failed
 * (problems: the run fails on any).
 */
import type { DatabaseSync } from 'node:sqlite'
import pg from 'pg'
import type { AgentSet } from './agent-set.ts'
import { CLEAR_SHAPE } from './link-proxy.ts'
import { sleep } from './live-load.ts'
import type { Mesh } from './mesh.ts'
import type { Observer, Sample } from './observer.ts'
import type { RegionStore } from './region-stores.ts'
import type { FaultSpec } from './scenario.ts'

/**
 * Faults that start with the agents' launch rather than at a time from t0:
 * a link shape or clock without a time (it holds from the start), and one
 * waiting on `when` (the repair it waits for may begin as the agents come up).
 */
export function fromLaunch (spec: FaultSpec): boolean {
  if ((spec as { when?: unknown }).when !== undefined) return true
  return (spec.kind === 'link' || spec.kind === 'clock-skew') && spec.at === undefined
}

export interface FaultContext {
  agents: AgentSet
  mesh: Mesh
  observer: Observer
  stores: RegionStore[]
  sourceOfTruth: string[]
  datasets: string[]
  /** Epoch ms of t0 (before the agents are ready: their launch). */
  t0: number
  /** How long the replicas may take to settle after a fault (the scenario's convergeWithin). */
  settleMs: number
  say: (line: string) => void
  signal: AbortSignal
}

export interface FaultRecord {
  index: number
  kind: FaultSpec['kind']
  /** What it hit: a region, a link "a↔b", … */
  target: string
  fired: boolean
  /** When it started and ended (epoch ms; the report gives them from t0). */
  startAt?: number
  endAt?: number
  observed: Record<string, unknown>
  problems: string[]
}

/** Rows a region's fixes wrote so far: per fix where /metrics is watched, else per finished sync (/status). */
const rowsRepaired = (s: Sample | undefined, region: string): number => Math.max(
  s?.regions[region]?.rowsFixed ?? 0,
  Object.values(s?.regions[region]?.datasets ?? {}).reduce((n, d) => n + d.counters.rowsUpserted + d.counters.rowsDeleted, 0))

/** Whether every dataset of a region says it is level with its source (or is the source). */
const isLevel = (s: Sample, region: string): boolean =>
  Object.values(s.regions[region]?.datasets ?? {}).every(d => d.state === 'in-sync' || d.state === 'source')

/** Waits for the fault's trigger; false when it never came (a `when` past its `within`) or the run was stopped. */
async function triggered (t: { at?: number, when?: { region: string, rowsRepaired: number, within: number } }, ctx: FaultContext, record: FaultRecord): Promise<boolean> {
  // no time at all: from the launch (a link shape, a clock): now
  if (t.at === undefined && t.when === undefined) return !ctx.signal.aborted
  if (t.when === undefined) {
    await sleep(ctx.t0 + (t.at ?? 0) - Date.now(), ctx.signal)
    return !ctx.signal.aborted
  }
  const { region, rowsRepaired: want, within } = t.when
  const start = Date.now()
  while (!ctx.signal.aborted && Date.now() < start + within) {
    if (rowsRepaired(ctx.observer.latest, region) >= want) return true
    await sleep(20, ctx.signal)
  }
  record.problems.push(`never fired: ${region} did not repair ${want} rows within ${within} ms of the launch (it repaired ${rowsRepaired(ctx.observer.latest, region)})`)
  return false
}

/** Samples taken between two times (epoch ms). */
function samplesBetween (ctx: FaultContext, from: number, to: number): Sample[] {
  return ctx.observer.samples.filter(s => s.at >= from && s.at <= to)
}

/** Waits until `check` holds on a sample taken after `from` (epoch ms), up to `timeoutMs`; how long after `from` it held, or undefined. */
async function until (ctx: FaultContext, from: number, check: (s: Sample) => boolean, timeoutMs: number): Promise<number | undefined> {
  const start = Date.now()
  while (!ctx.signal.aborted && Date.now() - start < timeoutMs) {
    const s = ctx.observer.latest
    if (s !== undefined && s.at > from && check(s)) return s.at - from
    await sleep(50, ctx.signal)
  }
  return undefined
}

export async function playFault (spec: FaultSpec, index: number, ctx: FaultContext): Promise<FaultRecord> {
  const target = spec.kind === 'link'
    ? (spec.between !== undefined ? `${spec.between[0]}↔${spec.between[1]}` : `${spec.region!}↔*`)
    : spec.kind === 'sot-outage' ? (spec.region ?? ctx.sourceOfTruth[0]!) : spec.region
  const record: FaultRecord = { index, kind: spec.kind, target, fired: false, observed: {}, problems: [] }
  if (!(await triggered(spec, ctx, record))) return record
  record.fired = true
  record.startAt = Date.now()
  try {
    switch (spec.kind) {
      case 'kill': await kill(spec, ctx, record); break
      case 'cut': await cut(spec, ctx, record); break
      case 'link': await link(spec, ctx, record); break
      case 'sot-outage': await sotOutage(spec, ctx, record); break
      case 'store': await storeFault(spec, ctx, record); break
      case 'clock-skew': await clockSkew(spec, ctx, record); break
    }
  } catch (err) {
    if (!ctx.signal.aborted) record.problems.push(`the fault itself failed: ${(err as Error).message}`)
  }
  // a link shape or clock without a duration holds to the end of the run: no end
  if (!((spec.kind === 'link' || spec.kind === 'clock-skew') && spec.duration === undefined)) record.endAt = Date.now()
  return record
}

async function kill (spec: Extract<FaultSpec, { kind: 'kill' }>, ctx: FaultContext, record: FaultRecord): Promise<void> {
  const before = ctx.observer.latest?.regions[spec.region]
  record.observed.stateAtKill = Object.fromEntries(Object.entries(before?.datasets ?? {}).map(([d, s]) => [d, s.state]))
  record.observed.rowsRepairedAtKill = rowsRepaired(ctx.observer.latest, spec.region)
  ctx.say(`${spec.signal === 'SIGKILL' ? 'kill -9' : 'SIGTERM'} ${spec.region} (state ${Object.values(record.observed.stateAtKill as Record<string, string>).join('/') || 'unknown'}, ${String(record.observed.rowsRepairedAtKill)} rows repaired so far)`)
  await ctx.agents.kill(spec.region, spec.signal)
  await sleep(spec.restartAfter ?? 1000, ctx.signal)
  if (ctx.signal.aborted) return
  ctx.say(`restart ${spec.region}`)
  await ctx.agents.start(spec.region)
}

async function cut (spec: Extract<FaultSpec, { kind: 'cut' }>, ctx: FaultContext, record: FaultRecord): Promise<void> {
  const links = ctx.mesh.of(spec.region, spec.from)
  const delivered = (): number => links.reduce((n, l) => n + l.stats.bytesForward + l.stats.bytesBack, 0)
  ctx.say(`cut ${spec.region} off from ${spec.from?.join(', ') ?? 'every other region'} (${spec.mode}) for ${spec.duration} ms`)
  const start = Date.now()
  ctx.mesh.setState(links, spec.mode)
  const bytesAtCut = delivered()
  await sleep(spec.duration, ctx.signal)
  record.observed.bytesAcrossCut = delivered() - bytesAtCut
  ctx.mesh.setState(links, 'up')
  const healed = Date.now()
  ctx.say(`heal ${spec.region}`)
  const during = samplesBetween(ctx, start, healed)
  record.observed.statesDuringCut = [...new Set(during.flatMap(s => Object.values(s.regions[spec.region]?.datasets ?? {}).map(d => d.state)))]
  if (record.observed.bytesAcrossCut !== 0) record.problems.push(`${String(record.observed.bytesAcrossCut)} bytes crossed the cut`)
  // how long the cut-off region took to be level with its source again after the heal
  const level = await until(ctx, healed, s => isLevel(s, spec.region), ctx.settleMs)
  record.observed.inSyncAfterHealMs = level ?? null
}

async function link (spec: Extract<FaultSpec, { kind: 'link' }>, ctx: FaultContext, record: FaultRecord): Promise<void> {
  const links = spec.between !== undefined ? ctx.mesh.between(spec.between[0], spec.between[1]) : ctx.mesh.of(spec.region!)
  const shape = { rttMs: spec.rttMs, jitterMs: spec.jitterMs, loss: spec.loss, ...(spec.bandwidthMbps === undefined ? {} : { bandwidth: spec.bandwidthMbps * 125_000 }) }
  const what = [
    spec.rttMs > 0 ? `rtt ${spec.rttMs} ms` : '', spec.jitterMs > 0 ? `jitter ${spec.jitterMs} ms` : '',
    spec.bandwidthMbps !== undefined ? `${spec.bandwidthMbps} Mbit/s` : '', spec.loss > 0 ? `loss ${spec.loss * 100}%` : '',
    spec.resetEvery !== undefined ? `reset every ${spec.resetEvery} ms` : '', spec.halfOpen ? 'half-open' : ''
  ].filter(s => s !== '').join(', ')
  ctx.say(`link ${record.target}: ${what || 'clear'}${spec.duration === undefined ? ' (to the end)' : ` for ${spec.duration} ms`}`)
  ctx.mesh.setShape(links, shape)
  if (spec.resetEvery !== undefined) for (const l of links) l.resetEvery(spec.resetEvery)
  if (spec.halfOpen) ctx.mesh.setState(links, 'half-open')
  record.observed.links = links.map(l => l.name)
  if (spec.duration === undefined) return // the shape stays; the timeline is quiet from here on
  await sleep(spec.duration, ctx.signal)
  ctx.mesh.setShape(links, CLEAR_SHAPE)
  for (const l of links) l.resetEvery(undefined)
  ctx.mesh.setState(links, 'up')
  record.observed.resets = links.reduce((n, l) => n + l.stats.resets, 0)
  ctx.say(`link ${record.target}: clear`)
}

async function sotOutage (spec: Extract<FaultSpec, { kind: 'sot-outage' }>, ctx: FaultContext, record: FaultRecord): Promise<void> {
  const region = spec.region ?? ctx.sourceOfTruth[0]!
  const next = ctx.sourceOfTruth[ctx.sourceOfTruth.indexOf(region) + 1]
  const others = ctx.agents.regions.filter(r => r !== region)
  const servedBy = (s: Sample, source: string): boolean => others.every(r => Object.values(s.regions[r]?.datasets ?? {}).every(d => d.source === source))
  ctx.say(`source of truth ${region} goes down (${spec.signal}) for ${spec.duration} ms${next === undefined ? '' : `; ${next} is next`}`)
  const down = Date.now()
  await ctx.agents.kill(region, spec.signal)
  if (next !== undefined) {
    const failover = await until(ctx, down, s => servedBy(s, next), spec.duration)
    record.observed.failoverMs = failover ?? null
    if (failover !== undefined) ctx.say(`every region now takes its rows from ${next} (${failover} ms after ${region} went down)`)
  }
  await sleep(down + spec.duration - Date.now(), ctx.signal)
  if (ctx.signal.aborted) return
  ctx.say(`${region} comes back`)
  const restarted = Date.now()
  await ctx.agents.start(region)
  const failback = await until(ctx, restarted, s => servedBy(s, region), ctx.settleMs)
  record.observed.failbackMs = failback ?? null
  if (failback !== undefined) ctx.say(`every region takes its rows from ${region} again (${failback} ms after its restart)`)
  if (spec.expectFailover) {
    if (next !== undefined && record.observed.failoverMs === null) record.problems.push(`the regions did not all fail over to ${next ?? '(none)'} within the ${spec.duration} ms outage`)
    if (failback === undefined) record.problems.push(`the regions did not all return to ${region} within ${ctx.settleMs} ms of its restart`)
  }
}

const STORE_HARM = { errors: 'backends terminated every 200 ms', stall: 'table locked', crash: 'its PostgreSQL server crashed (immediate shutdown)' } as const

async function storeFault (spec: Extract<FaultSpec, { kind: 'store' }>, ctx: FaultContext, record: FaultRecord): Promise<void> {
  const stores = ctx.stores.filter(s => s.region === spec.region)
  ctx.say(`store of ${spec.region}: ${STORE_HARM[spec.mode]} for ${spec.duration} ms`)
  const end = Date.now() + spec.duration
  if (spec.mode === 'crash') {
    // it says what the agents said while the server was down (errorsWhileDown): once level again they say nothing
    await serverCrash(spec, stores, ctx, record)
    return
  }
  if (stores[0]?.kind === 'postgres') {
    const admin = new pg.Client({ connectionString: stores[0].pg!.url })
    admin.on('error', () => undefined)
    await admin.connect()
    try {
      if (spec.mode === 'errors') {
        let terminated = 0
        while (Date.now() < end && !ctx.signal.aborted) {
          const r = await admin.query<{ n: string }>('SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')
          terminated += Number(r.rows[0]?.n ?? 0)
          await sleep(200, ctx.signal)
        }
        record.observed.backendsTerminated = terminated
      } else {
        await admin.query('BEGIN')
        for (const s of stores) await admin.query(`LOCK TABLE ${(s.config as { table: string }).table} IN ACCESS EXCLUSIVE MODE`)
        await sleep(end - Date.now(), ctx.signal)
        await admin.query('ROLLBACK')
      }
    } finally {
      await admin.end().catch(() => undefined)
    }
  } else {
    // a writer holding the file: in WAL mode readers go on, every other writer waits (and its busy timeout runs out)
    const { DatabaseSync } = await import('node:sqlite')
    const held: DatabaseSync[] = []
    try {
      for (const s of stores) {
        const db = new DatabaseSync((s.config as { path: string }).path, { timeout: 0 })
        held.push(db)
        // never block this process's event loop on the lock: try, and try again shortly
        for (;;) {
          try { db.exec('BEGIN EXCLUSIVE'); break } catch { if (Date.now() > end || ctx.signal.aborted) throw new Error('could not take the lock'); await sleep(20, ctx.signal) }
        }
      }
      await sleep(end - Date.now(), ctx.signal)
    } finally {
      for (const db of held) { try { db.exec('ROLLBACK') } catch { /* not in a transaction: nothing to undo */ } db.close() }
    }
  }
  ctx.say(`store of ${spec.region}: back`)
  record.observed.lastErrors = Object.fromEntries(Object.entries(ctx.observer.latest?.regions[spec.region]?.datasets ?? {}).map(([d, s]) => [d, s.lastError ?? null]))
}

/**
 * The region's own server crashes and stays down for the fault's duration,
 * then starts (recovering from its WAL): a fix in flight is lost with its
 * transaction, and the agent's connections all fail at once. Observed: how
 * long the start's recovery took, and how long after it the region was
 * level with its source again.
 */
async function serverCrash (spec: Extract<FaultSpec, { kind: 'store' }>, stores: RegionStore[], ctx: FaultContext, record: FaultRecord): Promise<void> {
  const server = stores[0]?.server
  if (server === undefined) throw new Error(`${spec.region} has no PostgreSQL server of its own to crash`)
  record.observed.rowsRepairedAtCrash = rowsRepaired(ctx.observer.latest, spec.region)
  await server.crash(ctx.signal)
  // down for the duration whatever happens to the run: the server is started again before the fault ends
  await sleep(spec.duration, ctx.signal).catch(() => undefined)
  // what the agents said while it was down: the region's own, and its replicas' when it is a source
  record.observed.errorsWhileDown = Object.fromEntries(Object.entries(ctx.observer.latest?.regions ?? {}).flatMap(([region, r]) =>
    Object.entries(r.datasets).filter(([, d]) => d.lastError !== undefined && d.lastError !== null).map(([dataset, d]) => [`${region}/${dataset}`, d.lastError])))
  const starting = Date.now()
  await server.start()
  record.observed.recoveryMs = Date.now() - starting
  ctx.say(`store of ${spec.region}: its server is back (recovery took ${Date.now() - starting} ms)`)
  const level = await until(ctx, Date.now(), s => isLevel(s, spec.region), ctx.settleMs)
  record.observed.levelAfterMs = level ?? null
  if (level === undefined) record.problems.push(`${spec.region} was not level with its source within ${ctx.settleMs} ms of its server's return`)
}

async function clockSkew (spec: Extract<FaultSpec, { kind: 'clock-skew' }>, ctx: FaultContext, record: FaultRecord): Promise<void> {
  ctx.say(`clock of ${spec.region} set ${spec.skew >= 0 ? '+' : ''}${spec.skew} ms off${spec.duration === undefined ? '' : ` for ${spec.duration} ms`}`)
  ctx.agents.setClockSkew(spec.region, spec.skew)
  record.observed.skewMs = spec.skew
  if (spec.duration === undefined) return
  await sleep(spec.duration, ctx.signal)
  ctx.agents.setClockSkew(spec.region, 0)
  ctx.say(`clock of ${spec.region} right again`)
}
