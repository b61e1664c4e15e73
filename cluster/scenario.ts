/**
 * Scenario files: what `converge cluster run FILE` plays on this machine.
 * YAML (or JSON), validated once here with errors that name the field and its
 * line (`partition.yaml:14: faults.0.duration: …`).
 *
 * A scenario names its regions (and which are sources of truth, in order),
 * its datasets and row counts, the drift injected behind the agents' backs,
 * faults on a timeline, a live write load on the source of truth, agent
 * tuning passed through to every agent's config, and what must hold at the
 * end. `quick` holds overrides (dotted paths) that make the same scenario
 * small enough for the test suite; `--quick` and `--set path=value` apply
 * them before validation, so an override is checked like anything else.
 *
 * Times on the timeline (`at`, `from`, `until`) count from t0, the moment
 * every agent has built its index and is ready. Drift without `at` is
 * written into the stores before the agents start.
 */
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LineCounter, parseDocument } from 'yaml'
import { yamlProblems, yamlValue } from '../src/config/yaml.ts'
import { z } from 'zod'
import { configSchema } from '../src/config/schema.ts'
import { ConfigError } from '../src/errors.ts'

const MAX_SCENARIO_BYTES = 256 * 1024

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 letters, digits, dot, dash or underscore, starting with a letter or digit')

const DURATION = /^(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Milliseconds from `250`, `"250ms"`, `"2s"`, `"1.5m"`; undefined when it is none of those. */
export function parseDuration (value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? Math.round(value) : undefined
  if (typeof value !== 'string') return undefined
  const m = DURATION.exec(value.trim())
  if (m === null) return undefined
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 'ms']!)
}

/** A duration: a number of milliseconds or a string like 500ms, 2s, 1.5m. */
function duration (opts: { min?: number, max?: number } = {}) {
  const min = opts.min ?? 0
  return z.union([z.number(), z.string()]).transform((v, ctx) => {
    const ms = parseDuration(v)
    if (ms === undefined) { ctx.addIssue({ code: 'custom', message: `"${String(v)}" is not a duration (500ms, 2s, 1.5m, or a number of ms)` }); return z.NEVER }
    if (ms < min) { ctx.addIssue({ code: 'custom', message: `must be at least ${min} ms` }); return z.NEVER }
    if (opts.max !== undefined && ms > opts.max) { ctx.addIssue({ code: 'custom', message: `must be at most ${opts.max} ms` }); return z.NEVER }
    return ms
  })
}

export const STORE_KINDS = ['level', 'postgres', 'sqlite'] as const
export type StoreKind = typeof STORE_KINDS[number]
const storeKind = z.enum(STORE_KINDS)
const serverKind = z.enum(['shared', 'own'])

const regionEntry = z.object({
  name,
  /** Where this region keeps its replica: level (embedded LevelDB, the default), postgres or sqlite. */
  store: storeKind.default('level'),
  /**
   * postgres: on the scenario's server (shared, the default) or on one of the
   * region's own, made for the run (own: as each region's would be; a crash
   * fault on the region implies it).
   */
  server: serverKind.default('shared')
}).strict()

/** `regions: { count: 5, store: level, stores: { r3: postgres } }`: names default to r1..rN. */
const regionsShorthand = z.object({
  count: z.number().int().min(1).max(16),
  names: z.array(name).optional(),
  store: storeKind.default('level'),
  stores: z.record(z.string(), storeKind).default({}),
  /** For every postgres region: see a region's own `server`. */
  server: serverKind.default('shared')
}).strict()

const mix = z.object({
  update: z.number().min(0).default(0),
  insert: z.number().min(0).default(0),
  delete: z.number().min(0).default(0)
}).strict().refine(m => m.update + m.insert + m.delete > 0, { message: 'give at least one of update, insert, delete a share above 0' })

const DEFAULT_DRIFT_MIX = { update: 0.6, insert: 0.2, delete: 0.2 }
const DEFAULT_LOAD_MIX = { update: 0.6, insert: 0.3, delete: 0.1 }

const dataset = z.object({
  name: name.default('orders'),
  /** Rows seeded into every region's store (the sample orders of cluster/orders.ts). */
  rows: z.number().int().min(1).max(50_000_000),
  /** Split the orders into this many partitions (a `shard` key column), reconciled independently. */
  partitions: z.number().int().min(2).max(4096).optional(),
  /** Passed into every agent's dataset config as is (rule, tolerance, risk, review): checked by the agent's own config schema. */
  policy: z.record(z.string(), z.unknown()).default({})
}).strict()

const drift = z.object({
  /** The dataset drifted; default: the scenario's only dataset. */
  dataset: name.optional(),
  /** Regions drifted; default: every region that is not a source of truth. */
  regions: z.array(name).min(1).optional(),
  /** When (from t0) a one-time batch lands; leave out to write it before the agents start. */
  at: duration().optional(),
  /** One batch of this many rows… */
  rows: z.number().int().min(1).optional(),
  /** …or of this share (0-1) of the dataset's rows… */
  share: z.number().gt(0).max(1).optional(),
  /** …or a steady stream of this many rows per second between `from` and `until`… */
  rowsPerSecond: z.number().gt(0).max(100_000).optional(),
  from: duration().optional(),
  until: duration().optional(),
  /** …or whole partitions lost (every row of them deleted); needs the dataset's `partitions`. */
  partitionLoss: z.number().int().min(1).optional(),
  mix: mix.default(DEFAULT_DRIFT_MIX),
  /** A share of the drift goes to a small set of keys, drifted again and again. */
  hotKeys: z.object({ keys: z.number().int().min(1).max(100_000), share: z.number().min(0).max(1) }).strict().optional(),
  /** Seed for the choice of rows (default: the scenario's seed and this entry's position). */
  seed: z.number().int().min(0).optional()
}).strict().superRefine((d, ctx) => {
  const kinds = ['rows', 'share', 'rowsPerSecond', 'partitionLoss'].filter(k => d[k as keyof typeof d] !== undefined)
  if (kinds.length !== 1) ctx.addIssue({ code: 'custom', path: [], message: `give exactly one of rows, share, rowsPerSecond or partitionLoss${kinds.length > 1 ? ` (found ${kinds.join(', ')})` : ''}` })
  if (d.rowsPerSecond !== undefined) {
    if (d.until === undefined) ctx.addIssue({ code: 'custom', path: ['until'], message: 'a drift rate needs `until` (when it stops, from t0)' })
    if (d.at !== undefined) ctx.addIssue({ code: 'custom', path: ['at'], message: 'a drift rate runs from `from` to `until`; `at` is for one-time batches' })
    if (d.until !== undefined && d.until <= (d.from ?? 0)) ctx.addIssue({ code: 'custom', path: ['until'], message: 'must be after `from`' })
  } else if (d.from !== undefined || d.until !== undefined) {
    ctx.addIssue({ code: 'custom', path: [d.from !== undefined ? 'from' : 'until'], message: '`from`/`until` go with rowsPerSecond; a one-time batch takes `at`' })
  }
})

/** When a fault starts: at a time from t0, or once a region has repaired this many rows (mid-repair; watched from the agents' launch). */
const trigger = {
  at: duration().optional(),
  when: z.object({
    region: name,
    rowsRepaired: z.number().int().min(1),
    /** Give up waiting after this long (from the agents' launch): the fault is then reported as not fired, and the run fails. */
    within: duration({ min: 100 }).default(60_000)
  }).strict().optional()
}

const killFault = z.object({
  kind: z.literal('kill'),
  region: name,
  ...trigger,
  /** SIGKILL (kill -9, the default): no drain, no flush. SIGTERM: a clean stop. */
  signal: z.enum(['SIGKILL', 'SIGTERM']).default('SIGKILL'),
  /** Restart the agent this long after it died; leave out to keep it down until the end checks. */
  restartAfter: duration().optional()
}).strict()

const cutFault = z.object({
  kind: z.literal('cut'),
  /** This region is cut off from every other (or from `from` only). */
  region: name,
  from: z.array(name).min(1).optional(),
  ...trigger,
  duration: duration({ min: 1 }),
  /** silent: packets vanish (connections hang, dials time out), as in a real partition; reset: every connection is refused and reset. */
  mode: z.enum(['silent', 'reset']).default('silent')
}).strict()

const linkFault = z.object({
  kind: z.literal('link'),
  /** Both directions between two regions; or `region`: every link of that region. */
  between: z.tuple([name, name]).optional(),
  region: name.optional(),
  ...trigger,
  /** Leave out to keep the link this way to the end of the run. */
  duration: duration({ min: 1 }).optional(),
  /* without `at` or `when`, the link is shaped from the agents' launch */
  /** Round-trip time added (half each way). */
  rttMs: z.number().min(0).max(60_000).default(0),
  /** Up to this much more, at random, per chunk (order kept: TCP delivers in order). */
  jitterMs: z.number().min(0).max(10_000).default(0),
  /** Bandwidth cap per direction in megabits per second. */
  bandwidthMbps: z.number().gt(0).max(100_000).optional(),
  /** Packet loss as TCP shows it above the socket: this share of chunks waits a retransmission timeout (200 ms) first. */
  loss: z.number().min(0).max(0.5).default(0),
  /** Reset every open connection of the link this often (RST, as a flaky middlebox does). */
  resetEvery: duration({ min: 50 }).optional(),
  /** Half-open: the far side forgets each connection; this side's stays open, its bytes go nowhere, until the fault ends and it is reset. */
  halfOpen: z.boolean().default(false)
}).strict().superRefine((f, ctx) => {
  if ((f.between === undefined) === (f.region === undefined)) ctx.addIssue({ code: 'custom', path: ['between'], message: 'give exactly one of `between: [a, b]` or `region`' })
  if (f.between !== undefined && f.between[0] === f.between[1]) ctx.addIssue({ code: 'custom', path: ['between'], message: 'a link joins two different regions' })
  if (f.halfOpen && f.duration === undefined) ctx.addIssue({ code: 'custom', path: ['duration'], message: 'a half-open fault needs a duration' })
})

const sotOutageFault = z.object({
  kind: z.literal('sot-outage'),
  /** The source of truth that goes down; default: the first of sourceOfTruth. */
  region: name.optional(),
  ...trigger,
  duration: duration({ min: 1 }),
  /** SIGKILL (default) or SIGTERM. */
  signal: z.enum(['SIGKILL', 'SIGTERM']).default('SIGKILL'),
  /** Check that the replicas served from the next source of truth meanwhile, and from this one again after. */
  expectFailover: z.boolean().default(true)
}).strict()

const storeFault = z.object({
  kind: z.literal('store'),
  region: name,
  ...trigger,
  duration: duration({ min: 1 }),
  /**
   * errors (postgres): the agent's backends are terminated (pg_terminate_backend) every 200 ms;
   * stall: its table is locked (postgres: LOCK TABLE … ACCESS EXCLUSIVE; sqlite: BEGIN EXCLUSIVE on the file) so its queries wait;
   * crash (postgres): the region's database server crashes (an immediate shutdown: every backend gone, nothing flushed)
   * and starts again after `duration`, recovering from its WAL; the region's databases then live on a server of their own.
   */
  mode: z.enum(['errors', 'stall', 'crash'])
}).strict()

const clockFault = z.object({
  kind: z.literal('clock-skew'),
  region: name,
  /** When (from t0) the clock goes off; leave out to start the agent with it off. */
  at: duration().optional(),
  /** The agent's wall clock runs this far off: "-90s", "2m". */
  skew: z.union([z.number(), z.string()]).transform((v, ctx) => {
    const ms = parseDuration(v)
    if (ms === undefined) { ctx.addIssue({ code: 'custom', message: `"${String(v)}" is not a duration (-90s, 2m, or a number of ms)` }); return z.NEVER }
    return ms
  }),
  duration: duration({ min: 1 }).optional()
}).strict()

const fault = z.discriminatedUnion('kind', [killFault, cutFault, linkFault, sotOutageFault, storeFault, clockFault]).superRefine((f, ctx) => {
  if (f.kind === 'clock-skew') return
  const t = f as { at?: number, when?: unknown }
  if (t.at !== undefined && t.when !== undefined) ctx.addIssue({ code: 'custom', path: ['when'], message: 'give `at` or `when`, not both' })
})

const load = z.object({
  /** The region written to; default: the first source of truth. Its store must be postgres or sqlite (an agent holds a LevelDB store locked). */
  region: name.optional(),
  dataset: name.optional(),
  rowsPerSecond: z.number().gt(0).max(100_000),
  from: duration().default(0),
  until: duration({ min: 1 }),
  mix: mix.default(DEFAULT_LOAD_MIX)
}).strict().refine(l => l.until > l.from, { path: ['until'], message: 'must be after `from`' })

const expectations = z.object({
  /** The replicas must equal the source of truth this long after the last drift, fault or load ended. */
  convergeWithin: duration({ min: 100 }).default(60_000),
  /** No agent's resident memory may exceed this (MiB), sampled every poll. */
  maxRssMiB: z.number().int().min(16).default(1024)
}).strict()

export const scenarioSchema = z.object({
  name,
  description: z.string().max(2000).optional(),
  /** Seeds every random choice (drift rows, load keys, jitter), so a run can be repeated. */
  seed: z.number().int().min(0).default(1),
  regions: z.union([z.array(regionEntry).min(1).max(16), regionsShorthand]),
  /** Ordered: the first reachable one serves. Default: the first region. */
  sourceOfTruth: z.array(name).min(1).optional(),
  datasets: z.array(dataset).min(1).default([{ name: 'orders', rows: 10_000, policy: {} }]),
  /** Passed into every agent's config (gossip, sync, validation, security): checked by the agent's own config schema. */
  agent: z.record(z.string(), z.unknown()).default({}),
  drift: z.array(drift).default([]),
  faults: z.array(fault).default([]),
  load: load.optional(),
  expect: expectations.default({ convergeWithin: 60_000, maxRssMiB: 1024 }),
  /** How often each agent's /status is read (the time series and the progress view). */
  pollEvery: duration({ min: 50, max: 10_000 }).default(250),
  /** The whole run (seeding, start, timeline, convergence, checks) must end within this. */
  timeout: duration({ min: 1000 }).default(600_000),
  /** PostgreSQL server for postgres regions (a database per region is created and dropped). Default: CONVERGE_TEST_PG or postgres://postgres@127.0.0.1:5432/postgres. */
  postgres: z.string().optional(),
  /** Overrides (dotted path → value) for a small, fast version of the same scenario: `--quick`, and the test suite. */
  quick: z.record(z.string(), z.unknown()).optional()
}).strict()

type Parsed = z.output<typeof scenarioSchema>
export type DriftSpec = z.output<typeof drift>
export type FaultSpec = z.output<typeof fault>
export type LoadSpec = z.output<typeof load>
export type DatasetSpec = z.output<typeof dataset>
export interface RegionSpec { name: string, store: StoreKind, server: 'shared' | 'own' }

/** A validated scenario with every default filled in and every name resolved. */
export interface Scenario extends Omit<Parsed, 'regions' | 'sourceOfTruth' | 'drift' | 'load'> {
  regions: RegionSpec[]
  sourceOfTruth: string[]
  drift: Array<DriftSpec & { dataset: string, regions: string[], seed: number }>
  load?: LoadSpec & { region: string, dataset: string }
  /** Where it was read from, for messages and the report. */
  source: string
  /** Fields set over the file's (`--quick`, `--set`), in the order applied: the description speaks of the file as written. */
  overrides: Array<{ path: string, value: unknown, by: 'quick' | 'set' }>
}

/** The agent config keys a scenario may not set through `agent` (the runner owns them). */
const RUNNER_OWNED = ['cluster', 'region', 'dataDir', 'keyFile', 'listen', 'peers', 'status', 'datasets']

function formatIssues (issues: readonly z.core.$ZodIssue[], where: (path: PropertyKey[]) => string, prefix: PropertyKey[] = []): string[] {
  const lines: string[] = []
  for (const issue of issues) {
    const path = [...prefix, ...issue.path]
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // report the branch that got furthest (fewest issues, then deepest), not "invalid input"
      const branches = issue.errors.filter(b => b.length > 0)
      const best = branches.sort((a, b) => a.length - b.length || Math.max(...b.map(i => i.path.length)) - Math.max(...a.map(i => i.path.length)))[0]
      if (best !== undefined && !(best.length === 1 && best[0]!.code === 'invalid_type' && best[0]!.path.length === 0)) { lines.push(...formatIssues(best, where, path)); continue }
    }
    lines.push(`  ${where(path)}${path.length === 0 ? '(top level)' : path.join('.')}: ${issue.message}`)
  }
  return lines
}

/** Sets `value` at a dotted path (numbers index arrays), creating objects on the way. */
export function setPath (target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.')
  if (parts.some(p => p === '' || p === '__proto__' || p === 'constructor' || p === 'prototype')) throw new ConfigError(`override "${path}": not a field path`)
  let node: Record<string, unknown> | unknown[] = target
  for (const [i, part] of parts.entries()) {
    const last = i === parts.length - 1
    const key: string | number = Array.isArray(node) ? Number(part) : part
    if (Array.isArray(node) && (!Number.isInteger(key) || (key as number) < 0)) throw new ConfigError(`override "${path}": "${part}" indexes a list, so it must be a number`)
    const holder = node as Record<string | number, unknown>
    if (last) { holder[key] = value; return }
    if (holder[key] === undefined || holder[key] === null || typeof holder[key] !== 'object') holder[key] = /^\d+$/.test(parts[i + 1]!) ? [] : {}
    node = holder[key] as Record<string, unknown> | unknown[]
  }
}

export interface LoadOptions {
  /** Apply the scenario's own `quick` overrides. */
  quick?: boolean
  /** More overrides, `path=value` (the value parsed as YAML), applied after `quick`. */
  set?: string[]
}

/** Where the scenarios that come with converge live. */
export const BUILTIN_SCENARIOS = fileURLToPath(new URL('./scenarios/', import.meta.url))

/**
 * Reads, overrides and validates a scenario file. A bare name with no such
 * file (`store-faults`) is one of the scenarios in cluster/scenarios. Throws
 * ConfigError naming each bad field and its line.
 */
export async function loadScenario (path: string, options: LoadOptions = {}): Promise<Scenario> {
  let text: string
  let file = path
  if (/^[\w-]+$/.test(path) && !existsSync(path)) file = join(BUILTIN_SCENARIOS, `${path}.yaml`)
  try { text = await readFile(file, 'utf8') } catch (err) {
    const builtin = (await readdir(BUILTIN_SCENARIOS).catch(() => [])).filter(f => f.endsWith('.yaml')).map(f => f.slice(0, -5))
    throw new ConfigError(`cannot read scenario ${path}: ${(err as Error).message} (the built-in ones: ${builtin.join(', ')})`, { cause: err })
  }
  return parseScenario(text, basename(file), options)
}

export function parseScenario (text: string, source = 'scenario', options: LoadOptions = {}): Scenario {
  if (text.length > MAX_SCENARIO_BYTES) throw new ConfigError(`${source} is larger than ${MAX_SCENARIO_BYTES} bytes`)
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, logLevel: 'silent' })
  const unreadable = yamlProblems(doc)
  if (unreadable.length > 0) throw new ConfigError(`${source} does not parse:\n${unreadable.map(p => `  ${p}`).join('\n')}`)
  const raw = yamlValue(doc, source)
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${source}: a scenario is a mapping (name:, regions:, …)`)
  const value = raw as Record<string, unknown>
  const overrides: Scenario['overrides'] = []
  if (options.quick === true) {
    const quick = value.quick
    if (quick === undefined) throw new ConfigError(`${source} has no \`quick\` overrides; run it without --quick`)
    if (quick === null || typeof quick !== 'object' || Array.isArray(quick)) throw new ConfigError(`${source}: quick: a mapping of field paths to values`)
    for (const [p, v] of Object.entries(quick)) { setPath(value, p, v); overrides.push({ path: p, value: v, by: 'quick' }) }
  }
  for (const s of options.set ?? []) {
    const eq = s.indexOf('=')
    if (eq <= 0) throw new ConfigError(`--set "${s}": write path=value, e.g. datasets.0.rows=5000`)
    const p = s.slice(0, eq).trim()
    const valueDoc = parseDocument(s.slice(eq + 1), { logLevel: 'silent' })
    const bad = yamlProblems(valueDoc)
    if (bad.length > 0) throw new ConfigError(`--set "${s}": the value does not parse: ${bad.join('; ')}`)
    const v = yamlValue(valueDoc, `--set "${s}": the value`)
    setPath(value, p, v)
    overrides.push({ path: p, value: v, by: 'set' })
  }

  // the line of a field (or of the nearest enclosing one that exists), unless an override put it there
  const where = (path: PropertyKey[]): string => {
    const dotted = path.join('.')
    if (overrides.some(({ path: o }) => dotted === o || dotted.startsWith(`${o}.`))) return '(override) '
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n) as Array<string | number>, true) as { range?: [number, number, number] } | undefined
      if (node?.range !== undefined) return `${source}:${lineCounter.linePos(node.range[0]).line}: `
    }
    return `${source}: `
  }
  const parsed = scenarioSchema.safeParse(value)
  if (!parsed.success) throw new ConfigError(`${source} is invalid:\n${formatIssues(parsed.error.issues, where).join('\n')}`)
  const problems: string[] = []
  const problem: Problem = (path, message) => { problems.push(`  ${where(path)}${path.join('.')}: ${message}`) }
  const scenario = resolve(parsed.data, source, overrides, problem)
  // names must resolve before the agent settings can be checked against a config built from them
  if (problems.length === 0) checkAgentConfig(scenario, problem)
  if (problems.length > 0) throw new ConfigError(`${source} is invalid:\n${problems.join('\n')}`)
  return scenario
}

type Problem = (path: PropertyKey[], message: string) => void

/** Fills defaults that depend on other fields, and checks what refers to what. */
function resolve (s: Parsed, source: string, overrides: Scenario['overrides'], problem: Problem): Scenario {
  let regions: RegionSpec[]
  if (Array.isArray(s.regions)) {
    regions = s.regions
  } else {
    const short = s.regions
    regions = Array.from({ length: short.count }, (_, i) => {
      const regionName = short.names?.[i] ?? `r${i + 1}`
      const store = short.stores[regionName] ?? short.store
      return { name: regionName, store, server: store === 'postgres' ? short.server : 'shared' }
    })
    if (short.names !== undefined && short.names.length !== short.count) problem(['regions', 'names'], `${short.names.length} names for ${short.count} regions`)
    for (const r of Object.keys(short.stores)) if (!regions.some(x => x.name === r)) problem(['regions', 'stores', r], `no region "${r}"`)
  }
  const regionNames = new Set<string>()
  regions.forEach((r, i) => { if (regionNames.has(r.name)) problem(['regions', i, 'name'], `duplicate region "${r.name}"`); regionNames.add(r.name) })
  if (Array.isArray(s.regions)) regions.forEach((r, i) => { if (r.server === 'own' && r.store !== 'postgres') problem(['regions', i, 'server'], `a server of its own is for a postgres region; ${r.name} keeps its rows in ${r.store}`) })
  // a crash takes the whole server down: the region's databases go on a server of their own
  regions = regions.map(r => s.faults.some(f => f.kind === 'store' && f.mode === 'crash' && f.region === r.name && r.store === 'postgres') ? { ...r, server: 'own' } : r)
  const known = (path: PropertyKey[], region: string | undefined): void => { if (region !== undefined && !regionNames.has(region)) problem(path, `no region "${region}" (regions: ${[...regionNames].join(', ')})`) }
  const storeOf = (region: string): StoreKind | undefined => regions.find(r => r.name === region)?.store

  const sourceOfTruth = s.sourceOfTruth ?? [regions[0]!.name]
  sourceOfTruth.forEach((r, i) => known(['sourceOfTruth', i], r))
  if (new Set(sourceOfTruth).size !== sourceOfTruth.length) problem(['sourceOfTruth'], 'names a region twice')
  const primary = sourceOfTruth[0]!

  const datasetNames = new Set<string>()
  s.datasets.forEach((d, i) => { if (datasetNames.has(d.name)) problem(['datasets', i, 'name'], `duplicate dataset "${d.name}"`); datasetNames.add(d.name) })
  const onlyDataset = s.datasets.length === 1 ? s.datasets[0]!.name : undefined
  const datasetOf = (path: PropertyKey[], given: string | undefined): string => {
    if (given !== undefined) { if (!datasetNames.has(given)) problem(path, `no dataset "${given}"`); return given }
    if (onlyDataset === undefined) problem(path, 'the scenario has several datasets: name one')
    return onlyDataset ?? ''
  }

  const drift = s.drift.map((d, i) => {
    const ds = datasetOf(['drift', i, 'dataset'], d.dataset)
    const driftRegions = d.regions ?? regions.map(r => r.name).filter(r => !sourceOfTruth.includes(r))
    if (driftRegions.length === 0) problem(['drift', i, 'regions'], 'every region is a source of truth: name the regions to drift')
    driftRegions.forEach((r, j) => {
      known(['drift', i, 'regions', j], r)
      if (r === primary) problem(['drift', i, 'regions', j], `${r} is the source of truth: a write there is not drift (use \`load\`)`)
      // LevelDB admits one process: while the agent runs, nothing else can write its store
      const live = d.at !== undefined || d.rowsPerSecond !== undefined
      if (live && storeOf(r) === 'level') problem(['drift', i, 'regions', j], `${r} keeps its rows in LevelDB, which its agent holds locked while it runs: drift it before start (leave out \`at\`), or give it a postgres or sqlite store`)
    })
    const spec = s.datasets.find(x => x.name === ds)
    if (d.partitionLoss !== undefined && spec !== undefined) {
      if (spec.partitions === undefined) problem(['drift', i, 'partitionLoss'], `dataset "${ds}" has no partitions (set datasets.N.partitions)`)
      else if (d.partitionLoss >= spec.partitions) problem(['drift', i, 'partitionLoss'], `must be less than the dataset's ${spec.partitions} partitions`)
    }
    if (d.rows !== undefined && spec !== undefined && d.rows > spec.rows) problem(['drift', i, 'rows'], `more than the dataset's ${spec.rows} rows`)
    return { ...d, dataset: ds, regions: driftRegions, seed: d.seed ?? s.seed * 1000 + i }
  })

  s.faults.forEach((f, i) => {
    const at = ['faults', i]
    if ('region' in f) known([...at, 'region'], f.region)
    if (f.kind === 'cut') f.from?.forEach((r, j) => { known([...at, 'from', j], r); if (r === f.region) problem([...at, 'from', j], 'a region cannot be cut off from itself') })
    if (f.kind === 'link') f.between?.forEach((r, j) => known([...at, 'between', j], r))
    if (f.kind !== 'clock-skew') {
      known([...at, 'when', 'region'], f.when?.region)
      // a link shape or clock skew without a time holds from the agents' launch: the repairs that start as they come up see it too
      if (f.kind !== 'link' && f.at === undefined && f.when === undefined) problem([...at, 'at'], 'give `at` (from t0) or `when` (a region has repaired rows)')
    }
    if (f.kind === 'sot-outage') {
      const region = f.region ?? primary
      if (!sourceOfTruth.includes(region)) problem([...at, 'region'], `${region} is not a source of truth`)
      if (f.expectFailover && sourceOfTruth.indexOf(region) === sourceOfTruth.length - 1) problem([...at, 'expectFailover'], `no source of truth after ${region} to fail over to: add one to sourceOfTruth, or set expectFailover: false`)
    }
    if (f.kind === 'store') {
      const kind = storeOf(f.region)
      if (kind === 'level') problem([...at, 'region'], `${f.region} has a LevelDB store, which runs inside its agent: store faults need postgres or sqlite`)
      if (kind === 'sqlite' && f.mode === 'errors') problem([...at, 'mode'], 'errors is for postgres (terminated backends); a sqlite store takes stall')
      if (kind === 'sqlite' && f.mode === 'crash') problem([...at, 'mode'], 'crash is for postgres (its server crashes and restarts); a sqlite store takes stall')
      // node:sqlite waits for a lock synchronously: a writer in the runner would freeze its proxies and polling for the stall
      if (kind === 'sqlite' && ((s.load !== undefined && (s.load.region ?? primary) === f.region) || drift.some(d => (d.at !== undefined || d.rowsPerSecond !== undefined) && d.regions.includes(f.region)))) problem([...at, 'region'], `${f.region} is written during the run (load or drift): a sqlite stall there would block the runner itself; stall a region nothing else writes, or use postgres`)
    }
  })

  let load: Scenario['load']
  if (s.load !== undefined) {
    const region = s.load.region ?? primary
    known(['load', 'region'], region)
    if (!sourceOfTruth.includes(region)) problem(['load', 'region'], `${region} is not a source of truth: writes there would be repaired away`)
    if (storeOf(region) === 'level') problem(['load', 'region'], `${region} keeps its rows in LevelDB, which its agent holds locked: a live load needs a postgres or sqlite store there`)
    load = { ...s.load, region, dataset: datasetOf(['load', 'dataset'], s.load.dataset) }
  }

  for (const key of Object.keys(s.agent)) if (RUNNER_OWNED.includes(key)) problem(['agent', key], `set by the runner for each region (${RUNNER_OWNED.join(', ')} are)`)
  return { ...s, regions, sourceOfTruth, drift, load, source, overrides }
}

/**
 * Agent settings and dataset policies pass through to the agents: check them
 * against the agent's own config schema now, so a typo fails at load with
 * its scenario path, not later in an agent's log.
 */
function checkAgentConfig (s: Scenario, problem: Problem): void {
  const peers = s.regions.slice(1).map(r => ({ region: r.name, address: '/ip4/127.0.0.1/tcp/1' }))
  const config = {
    ...s.agent,
    cluster: 'check',
    region: s.regions[0]!.name,
    dataDir: '/nonexistent',
    peers,
    datasets: s.datasets.map(d => ({ ...d.policy, name: d.name, schema: { columns: [{ name: 'id', type: 'integer' }], primaryKey: ['id'] }, store: { kind: 'level', path: '/nonexistent' }, sourceOfTruth: s.sourceOfTruth }))
  }
  const parsed = configSchema.safeParse(config)
  if (parsed.success) return
  for (const issue of parsed.error.issues) {
    const [first, index, ...rest] = issue.path
    if (first === 'datasets' && typeof index === 'number') problem(['datasets', index, 'policy', ...rest], issue.message)
    else problem(['agent', ...issue.path], issue.message)
  }
}
