/**
 * A run's report: report.json (everything, machine-readable), report.html
 * (the chart, the per-region figures, the checks; one file, no scripts) and
 * drift.svg (the chart alone), plus a text summary for the terminal.
 *
 * Figures and where they come from:
 *   convergence       from the time series (/status every poll)
 *   detect/remediate  row by row: drift ledger × audit (latency.ts)
 *   rows repaired     the audits' commits (exact, across restarts)
 *   bytes, round trips, syncs  the agents' counters, summed over restarts
 *   memory            peak RSS of each agent process (/proc)
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AuditReview } from './audit-review.ts'
import { renderChart, renderHtml } from './chart.ts'
import type { DriftCounts } from './drift.ts'
import type { Round } from './convergence.ts'
import type { FaultRecord } from './faults.ts'
import type { Percentiles, RegionLatency } from './latency.ts'
import type { LoadStats } from './live-load.ts'
import type { LinkStats } from './link-proxy.ts'
import type { Sample } from './observer.ts'
import type { Scenario } from './scenario.ts'

export interface Check { name: string, passed: boolean, detail: string, data?: unknown }

export interface RegionReport {
  store: string
  role: 'source' | 'standby source' | 'replica'
  /** Agent processes this region ran (1 + restarts). */
  processes: number
  injected: DriftCounts
  detectMs?: Percentiles
  remediateMs?: Percentiles
  /** Drifted rows no later fix touched (undone by another write meanwhile). */
  unmatchedDrift: number
  fixes: number
  rowsRepaired: { upserted: number, deleted: number, total: number }
  syncs: number
  syncErrors: number
  bytesSent: number
  bytesReceived: number
  roundTrips: number
  peakRssMiB: number | null
}

export interface RunReport {
  scenario: { name: string, description?: string, source: string, seed: number, regions: Scenario['regions'], sourceOfTruth: string[], datasets: Array<{ name: string, rows: number, partitions?: number }>, overrides: Scenario['overrides'] }
  passed: boolean
  startedAt: string
  durationMs: number
  /** When every agent was ready (ISO time): the origin of every `…Ms` figure below that is "from t0", and what agent logs' times are read against. */
  t0: string
  /** Agent launch to every index built (t0). */
  startupMs: number
  /** quietAtMs/convergedAtMs: from t0; convergenceMs: from quiet to converged; fromLaunchMs: from the agents' launch, index builds included. */
  convergence: {
    quietAtMs: number
    convergedAtMs: number | null
    convergenceMs: number | null
    fromLaunchMs: number | null
    /** Each one-shot drift batch (entries with `at`) on its own: from its last commit to converged, before the next batch began. */
    rounds: Round[]
  }
  checks: Check[]
  regions: Record<string, RegionReport>
  /** startMs/endMs: from t0 (negative: before it, from the launch). */
  faults: Array<FaultRecord & { startMs?: number, endMs?: number }>
  /** windowMs: when it wrote, ms since t0. */
  load?: LoadStats & { achievedRowsPerSecond: number, windowMs?: [number, number] }
  links: Array<{ link: string } & LinkStats>
  /** Time series, ms since t0. */
  series: {
    t: number[]
    /** Per region and dataset: state at each sample; rows more (+) or fewer (-) than the source. */
    regions: Record<string, { states: Record<string, string[]>, countDelta: Record<string, Array<number | null>>, outstanding: Array<[number, number]> }>
  }
}

export interface ReportInput {
  scenario: Scenario
  startedAt: number
  t0: number
  startupMs: number
  quietAt: number
  convergedAt: number | undefined
  rounds: Round[]
  samples: Sample[]
  last: Sample | undefined
  checks: Check[]
  faults: FaultRecord[]
  latency: Map<string, RegionLatency>
  audits: Map<string, AuditReview>
  injected: Map<string, DriftCounts>
  load: LoadStats | undefined
  links: Array<{ link: string } & LinkStats>
  peakRss: Map<string, number>
  incarnations: Map<string, number>
}

export function buildReport (input: ReportInput): RunReport {
  const { scenario, t0 } = input
  const primary = scenario.sourceOfTruth[0]!
  const regions: Record<string, RegionReport> = {}
  for (const r of scenario.regions) {
    const counters = Object.values(input.last?.regions[r.name]?.datasets ?? {}).map(d => d.counters)
    const sum = (k: keyof (typeof counters)[number]): number => counters.reduce((n, c) => n + c[k], 0)
    const fixes = input.audits.get(r.name)?.fixes ?? []
    const upserted = fixes.reduce((n, f) => n + f.upserted, 0)
    const deleted = fixes.reduce((n, f) => n + f.deleted, 0)
    const lat = input.latency.get(r.name)
    const peak = input.peakRss.get(r.name)
    regions[r.name] = {
      store: r.store,
      role: r.name === primary ? 'source' : scenario.sourceOfTruth.includes(r.name) ? 'standby source' : 'replica',
      processes: input.incarnations.get(r.name) ?? 1,
      injected: input.injected.get(r.name) ?? { updated: 0, inserted: 0, deleted: 0 },
      ...(lat?.detect === undefined ? {} : { detectMs: lat.detect }),
      ...(lat?.remediate === undefined ? {} : { remediateMs: lat.remediate }),
      unmatchedDrift: lat?.unmatched ?? 0,
      fixes: fixes.length,
      rowsRepaired: { upserted, deleted, total: upserted + deleted },
      syncs: sum('syncs'), syncErrors: sum('syncErrors'), bytesSent: sum('bytesSent'), bytesReceived: sum('bytesReceived'), roundTrips: sum('roundTrips'),
      peakRssMiB: peak === undefined ? null : Math.round(peak / 1048576)
    }
  }
  const series: RunReport['series'] = { t: input.samples.map(s => s.at - t0), regions: {} }
  for (const r of scenario.regions) {
    const states: Record<string, string[]> = {}
    const countDelta: Record<string, Array<number | null>> = {}
    for (const d of scenario.datasets) {
      states[d.name] = input.samples.map(s => s.regions[r.name]?.datasets[d.name]?.state ?? 'down')
      countDelta[d.name] = input.samples.map(s => {
        const mine = s.regions[r.name]?.datasets[d.name]?.count
        const sot = s.regions[primary]?.datasets[d.name]?.count
        return mine === undefined || sot === undefined ? null : mine - sot
      })
    }
    series.regions[r.name] = { states, countDelta, outstanding: input.latency.get(r.name)?.outstanding ?? [] }
  }
  const load = input.load
  return {
    scenario: {
      name: scenario.name, ...(scenario.description === undefined ? {} : { description: scenario.description }), source: scenario.source, seed: scenario.seed,
      regions: scenario.regions, sourceOfTruth: scenario.sourceOfTruth, datasets: scenario.datasets.map(d => ({ name: d.name, rows: d.rows, ...(d.partitions === undefined ? {} : { partitions: d.partitions }) })),
      overrides: scenario.overrides
    },
    passed: input.checks.every(c => c.passed),
    startedAt: new Date(input.startedAt).toISOString(),
    durationMs: Date.now() - input.startedAt,
    t0: new Date(t0).toISOString(),
    startupMs: input.startupMs,
    convergence: {
      quietAtMs: input.quietAt - t0,
      convergedAtMs: input.convergedAt === undefined ? null : input.convergedAt - t0,
      convergenceMs: input.convergedAt === undefined ? null : input.convergedAt - input.quietAt,
      fromLaunchMs: input.convergedAt === undefined ? null : input.convergedAt - t0 + input.startupMs,
      rounds: input.rounds
    },
    checks: input.checks,
    regions,
    faults: input.faults.map(f => ({ ...f, ...(f.startAt === undefined ? {} : { startMs: f.startAt - t0 }), ...(f.endAt === undefined ? {} : { endMs: f.endAt - t0 }) })),
    ...(load === undefined
      ? {}
      : {
          load: {
            ...load,
            achievedRowsPerSecond: load.startedAt === undefined || load.endedAt === undefined || load.endedAt === load.startedAt ? 0 : Math.round(load.rowsWritten * 1000 / (load.endedAt - load.startedAt)),
            ...(load.startedAt === undefined || load.endedAt === undefined ? {} : { windowMs: [load.startedAt - t0, load.endedAt - t0] as [number, number] })
          }
        }),
    links: input.links,
    series
  }
}

export async function writeReport (report: RunReport, dir: string): Promise<{ json: string, html: string, svg: string }> {
  await mkdir(dir, { recursive: true })
  const files = { json: join(dir, 'report.json'), html: join(dir, 'report.html'), svg: join(dir, 'drift.svg') }
  await writeFile(files.json, JSON.stringify(report, null, 2))
  const svg = renderChart(report)
  await writeFile(files.svg, svg)
  await writeFile(files.html, renderHtml(report, svg))
  return files
}

/** "1.0-6.3 s", "from launch to the end", "not fired". */
export function faultWindow (f: { fired: boolean, startMs?: number, endMs?: number }): string {
  if (!f.fired || f.startMs === undefined) return 'not fired'
  const from = f.startMs < 0 ? 'launch' : `${(f.startMs / 1000).toFixed(1)} s`
  return f.endMs === undefined ? `${from} to the end` : `${from}-${(f.endMs / 1000).toFixed(1)} s`
}

const ms = (p: Percentiles | undefined): string => (p === undefined ? '-' : `${p.p50} / ${p.p95} / ${p.max}`)
const n = (v: number): string => v.toLocaleString('en-US')

/** "at 0.0 s: level 1.45 s after it landed; at 6.0 s: 0.93 s; …" */
export function roundsText (rounds: readonly Round[]): string {
  return rounds.map((r, i) => `at ${(r.atMs / 1000).toFixed(1)} s: ${r.convergenceMs === null ? 'not level before the next' : `level ${(r.convergenceMs / 1000).toFixed(2)} s${i === 0 ? ' after it landed' : ''}${cpuText(r)}`}`).join('; ')
}

/** A round's CPU, all regions together: ` (CPU: agents 1.20 s, PostgreSQL 0.40 s)`; empty when not measured. */
function cpuText (r: Round): string {
  if (r.cpu === undefined) return ''
  const sum = (pick: (c: NonNullable<Round['cpu']>[string]) => number | undefined): number | undefined => {
    const parts = Object.values(r.cpu!).map(pick).filter((v): v is number => v !== undefined)
    return parts.length === 0 ? undefined : parts.reduce((a, b) => a + b, 0)
  }
  const agents = sum(c => c.agentMs)
  const postgres = sum(c => c.postgresMs)
  const parts = [agents === undefined ? undefined : `agents ${(agents / 1000).toFixed(2)} s`, postgres === undefined ? undefined : `PostgreSQL ${(postgres / 1000).toFixed(2)} s`].filter(p => p !== undefined)
  return parts.length === 0 ? '' : ` (CPU: ${parts.join(', ')})`
}

/** The report as a person reads it in a terminal. */
export function formatSummary (report: RunReport): string {
  const lines: string[] = []
  const c = report.convergence
  lines.push('')
  lines.push(`scenario ${report.scenario.name}: ${report.passed ? 'PASSED' : 'FAILED'} in ${(report.durationMs / 1000).toFixed(1)} s (agents ready after ${(report.startupMs / 1000).toFixed(1)} s)`)
  if (report.scenario.overrides.length > 0) lines.push(`run with ${overridesText(report.scenario.overrides)}`)
  lines.push(c.convergenceMs === null ? 'did not converge' : `converged ${(c.convergenceMs / 1000).toFixed(2)} s after the timeline went quiet (${(c.quietAtMs / 1000).toFixed(1)} s after t0; ${((c.fromLaunchMs ?? 0) / 1000).toFixed(1)} s after the agents' launch, index builds included)`)
  if (c.rounds.length > 1) lines.push(`drift batches: ${roundsText(c.rounds)}`)
  lines.push('')
  lines.push(`${'region'.padEnd(12)} ${'role'.padEnd(15)} ${'store'.padEnd(9)} ${'drift u/i/d'.padEnd(14)} ${'detect ms p50/p95/max'.padEnd(22)} ${'remediate ms p50/p95/max'.padEnd(25)} ${'repaired'.padStart(9)} ${'fixes'.padStart(6)} ${'round trips'.padStart(11)} ${'bytes sent / received'.padStart(24)} ${'peak rss'.padStart(9)}`)
  for (const [name, r] of Object.entries(report.regions)) {
    lines.push(`${name.padEnd(12)} ${r.role.padEnd(15)} ${r.store.padEnd(9)} ${`${r.injected.updated}/${r.injected.inserted}/${r.injected.deleted}`.padEnd(14)} ${ms(r.detectMs).padEnd(22)} ${ms(r.remediateMs).padEnd(25)} ${n(r.rowsRepaired.total).padStart(9)} ${n(r.fixes).padStart(6)} ${n(r.roundTrips).padStart(11)} ${`${n(r.bytesSent)} / ${n(r.bytesReceived)}`.padStart(24)} ${(r.peakRssMiB === null ? '-' : `${r.peakRssMiB} MiB`).padStart(9)}`)
  }
  if (report.load !== undefined) lines.push('', `live load: ${n(report.load.rowsWritten)} rows (${report.load.inserted} inserted, ${report.load.updated} updated, ${report.load.deleted} deleted) at ${n(report.load.achievedRowsPerSecond)} rows/s, ${report.load.errors} write errors retried`)
  if (report.faults.length > 0) {
    lines.push('', 'faults:')
    for (const f of report.faults) lines.push(`  ${f.kind.padEnd(10)} ${f.target.padEnd(18)} ${faultWindow(f).padEnd(16)} ${JSON.stringify(f.observed)}`)
  }
  lines.push('', 'checks:')
  for (const check of report.checks) lines.push(`  ${check.passed ? 'ok  ' : 'FAIL'} ${check.name}: ${check.detail}`)
  return lines.join('\n')
}

/** The overrides a run applied, as one might type them again: `--quick (datasets.0.rows=5000, …), --set faults.0.duration=2s`. */
export function overridesText (overrides: Scenario['overrides']): string {
  const item = (o: Scenario['overrides'][number]): string => `${o.path}=${typeof o.value === 'string' ? o.value : JSON.stringify(o.value)}`
  const quick = overrides.filter(o => o.by === 'quick')
  return [
    ...(quick.length === 0 ? [] : [`--quick (${quick.map(item).join(', ')})`]),
    ...overrides.filter(o => o.by === 'set').map(o => `--set ${item(o)}`)
  ].join(', ')
}
