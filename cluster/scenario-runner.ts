/**
 * Plays a scenario on this machine and reports:
 *
 *   1. provision: every region's store of every dataset, seeded; drift that
 *      lands before start; a peer key, ports and, when a fault is to cut
 *      or shape the links, the link proxies (every agent then dials its
 *      peers through them, mesh.ts);
 *   2. start an agent process per region; t0 is when all are ready;
 *   3. play the timeline: faults, drift over time, the live load; the
 *      progress view follows every agent's /status;
 *   4. once the timeline is quiet, wait for the replicas to be level with
 *      the source of truth (at most expect.convergeWithin);
 *   5. stop the agents (SIGTERM), then check outside them: stores row for
 *      row, audits, the load's rows, memory, clean exits, the faults'
 *      expectations;
 *   6. write report.json, report.html and drift.svg.
 *
 * Everything started is stopped and everything created outside the run's
 * directory (PostgreSQL databases) dropped, however the run ends: error,
 * timeout, or the caller's signal.
 */
import { cp, mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { ConfigInput } from '../src/config/schema.ts'
import { ConvergeError } from '../src/errors.ts'
import { createPeerKeyFile, peerIdOf } from '../src/net/peer-key.ts'
import { AgentSet } from './agent-set.ts'
import { converged, firstConverged, raiseToHeads, roundsOf, type Landing } from './convergence.ts'
import { reviewAudit, type AuditReview } from './audit-review.ts'
import { DatasetModel } from './dataset-model.ts'
import { DriftInjector, DriftLedger } from './drift.ts'
import { fromLaunch, playFault, type FaultContext, type FaultRecord } from './faults.ts'
import { freePorts } from './free-port.ts'
import { measure } from './latency.ts'
import { LiveLoad, sleep } from './live-load.ts'
import { PostgresBackends } from './postgres-backends.ts'
import { removeOrphanedServers } from './private-postgres.ts'
import { Mesh } from './mesh.ts'
import { Observer, type Sample } from './observer.ts'
import { rng } from './orders.ts'
import { ProgressView, type ProgressOut } from './progress-view.ts'
import { DEFAULT_PG_URL, openStore, provisionStores, removeOrphanedDatabases, withStore, type RegionStore } from './region-stores.ts'
import { buildReport, writeReport, type Check, type RunReport } from './report.ts'
import type { Scenario } from './scenario.ts'
import { compareStores, fingerprint } from './store-compare.ts'

export interface RunOptions {
  /** Where the report (and, with keep, the stores, agent data and logs) go. */
  outDir: string
  /** Keep the stores and agent data under outDir/work, and PostgreSQL databases (logs are always kept, under outDir/logs). */
  keep?: boolean
  out?: ProgressOut
  signal?: AbortSignal
  /**
   * Work of the caller's on the stores once the report is written, with the
   * agents stopped and every store still there (a benchmark's own
   * measurement on the same databases); they are dropped after it. Its
   * failure is the run's.
   */
  afterRun?: (stores: readonly RegionStore[], report: RunReport) => Promise<void>
}

/** Agent settings the runner uses unless the scenario's `agent` says otherwise: snappy on one machine. */
const AGENT_DEFAULTS = { gossip: { intervalMs: 500 }, sync: { minIntervalMs: 100 } }

function deepMerge (base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) {
    const b = out[k]
    out[k] = v !== null && typeof v === 'object' && !Array.isArray(v) && b !== null && typeof b === 'object' && !Array.isArray(b)
      ? deepMerge(b as Record<string, unknown>, v as Record<string, unknown>)
      : v
  }
  return out
}

const ready = (s: Sample | undefined): boolean =>
  s !== undefined && Object.values(s.regions).every(r => r.up && Object.values(r.datasets).every(d => !['starting', 'indexing', 'down'].includes(d.state)))

export async function runScenario (scenario: Scenario, options: RunOptions): Promise<RunReport> {
  const out = options.out ?? process.stdout
  const controller = new AbortController()
  const stop = (): void => { controller.abort(options.signal?.reason ?? new ConvergeError('CONVERGE_SCENARIO_TIMEOUT', `scenario ${scenario.name} did not finish within its timeout (${scenario.timeout} ms)`)) }
  options.signal?.addEventListener('abort', stop, { once: true })
  const deadline = setTimeout(stop, scenario.timeout)
  const signal = controller.signal

  const work = join(options.outDir, 'work')
  await rm(work, { recursive: true, force: true })
  await mkdir(work, { recursive: true })
  const primary = scenario.sourceOfTruth[0]!
  const models = scenario.datasets.map(d => new DatasetModel(d.name, d.rows, d.partitions))
  const modelOf = (name: string): DatasetModel => models.find(m => m.name === name)!
  let t0: number | undefined
  const view = new ProgressView(out, () => t0, primary)
  const say = (line: string): void => { view.event(line) }
  const random = rng(scenario.seed)

  const agents = new AgentSet(work)
  const pgAdminUrl = scenario.postgres ?? DEFAULT_PG_URL
  const backends = new PostgresBackends()
  const observer = new Observer(agents, models.map(m => m.name), scenario.pollEvery, scenario.faults.some(f => (f as { when?: unknown }).when !== undefined), region => backends.pidsOf(region))
  observer.onSample(s => { view.sample(s) })
  let mesh: Mesh | undefined
  let provisioned: ReturnType<typeof provisionStores> | undefined
  const background: Array<Promise<unknown>> = []
  const timeline = new AbortController()
  const skews = new Map<string, Array<[number, number]>>()
  const startedAt = Date.now()

  try {
    say(`scenario ${scenario.name}: ${scenario.regions.length} regions (${scenario.regions.map(r => `${r.name}:${r.store}${r.server === 'own' ? ' (own server)' : ''}`).join(', ')}), source of truth ${scenario.sourceOfTruth.join(' → ')}`)
    // 1. stores, keys, ports, links
    // regions with a server of their own (`server: own`, or a crash fault: scenario.ts); the shared one serves everything else here
    const privateServers = new Set(scenario.regions.filter(r => r.server === 'own').map(r => r.name))
    // servers an earlier run could not stop (it was killed) would run on for good: this run stops them first
    if (privateServers.size > 0) for (const home of await removeOrphanedServers({ signal })) say(`  removed a PostgreSQL server a killed run left behind: ${home}`)
    // and the databases they left on the shared server (housekeeping: a server that does not answer is reported by the seeding below)
    if (scenario.regions.some(r => r.store === 'postgres' && !privateServers.has(r.name))) {
      for (const database of await removeOrphanedDatabases(pgAdminUrl).catch(() => [])) say(`  dropped a database a killed run left behind: ${database}`)
    }
    await mkdir(join(options.outDir, 'logs'), { recursive: true })
    provisioned = provisionStores({ dir: work, regions: scenario.regions, datasets: models, pgAdminUrl, privateServers, logDir: join(options.outDir, 'logs'), signal, say })
    await provisioned.ready
    const stores = provisioned.stores
    backends.watch(stores)
    background.push(backends.run(signal))
    const storeOf = (region: string, dataset: string): RegionStore => stores.find(s => s.region === region && s.dataset.name === dataset)!
    const regionIndex = (region: string): number => scenario.regions.findIndex(r => r.name === region)

    const ledger = new DriftLedger()
    const injectors = scenario.drift.map((d, i) => new Map(d.regions.map(r => [r, new DriftInjector(modelOf(d.dataset), r, regionIndex(r), d, d.seed + i, ledger)])))
    for (const [i, d] of scenario.drift.entries()) {
      if (d.at !== undefined || d.rowsPerSecond !== undefined) continue
      for (const region of d.regions) {
        say(`  ${region}/${d.dataset}: ${await withStore(storeOf(region, d.dataset), async store => await injectors[i]!.get(region)!.land(store, d))}`)
      }
    }

    // the proxies first: the agents' ports are then picked among those still free. Only a fault on the links needs
    // them; without one the agents dial each other directly, as they would in production (no extra hop, no relay's CPU)
    mesh = new Mesh(scenario.regions.map(r => r.name), random)
    const proxied = scenario.faults.some(f => f.kind === 'cut' || f.kind === 'link')
    if (proxied) await mesh.start()
    const ports = await freePorts(2 * scenario.regions.length)
    const nodes = []
    for (const [i, r] of scenario.regions.entries()) {
      const dataDir = join(work, r.name, 'agent')
      const key = await createPeerKeyFile(join(dataDir, 'peer.key'))
      nodes.push({ region: r.name, peerId: peerIdOf(key), dataDir, p2pPort: ports[2 * i]!, statusPort: ports[2 * i + 1]! })
    }
    if (proxied) mesh.setTargets(new Map(nodes.map(n => [n.region, n.p2pPort])))
    const clockRegions = new Set(scenario.faults.filter(f => f.kind === 'clock-skew').map(f => f.region))
    for (const n of nodes) {
      const base: Record<string, unknown> = {
        cluster: `scenario-${scenario.name}`.slice(0, 128),
        region: n.region,
        dataDir: n.dataDir,
        listen: [`/ip4/127.0.0.1/tcp/${n.p2pPort}`],
        peers: nodes.filter(p => p !== n).map(p => ({ region: p.region, address: `/ip4/127.0.0.1/tcp/${proxied ? mesh!.portFor(n.region, p.region) : p.p2pPort}/p2p/${p.peerId}` })),
        status: { host: '127.0.0.1', port: n.statusPort },
        datasets: scenario.datasets.map(d => ({ ...d.policy, name: d.name, schema: modelOf(d.name).schema, store: storeOf(n.region, d.name).config, sourceOfTruth: scenario.sourceOfTruth }))
      }
      agents.add(deepMerge(deepMerge(AGENT_DEFAULTS, scenario.agent), base) as unknown as ConfigInput & { status: { port: number } }, clockRegions.has(n.region))
    }

    // 2. agents, with the faults that hold from their launch (a slow link, a clock set off) already in place
    const ctx: FaultContext = {
      agents, mesh, observer, stores, sourceOfTruth: scenario.sourceOfTruth, datasets: models.map(m => m.name), t0: Date.now(), settleMs: scenario.expect.convergeWithin, say, signal: AbortSignal.any([signal, timeline.signal])
    }
    for (const f of scenario.faults) if (f.kind === 'clock-skew') skews.set(f.region, [])
    const faultRun = async (f: Scenario['faults'][number], i: number): Promise<FaultRecord> => {
      if (f.kind === 'clock-skew' && f.at === undefined) agents.setClockSkew(f.region, f.skew) // the agent starts with it
      const record = await playFault(f, i, ctx)
      if (f.kind === 'clock-skew' && record.startAt !== undefined) {
        // a skew the agent starts with holds from before its first log line
        skews.get(f.region)!.push([f.at === undefined ? 0 : record.startAt, f.skew])
        if (f.duration !== undefined) skews.get(f.region)!.push([record.startAt + f.duration, 0])
      }
      return record
    }
    const launchFaults = scenario.faults.map((f, i) => [f, i] as const).filter(([f]) => fromLaunch(f)).map(async ([f, i]) => await faultRun(f, i))
    const launchedAt = Date.now()
    await agents.startAll()
    background.push(observer.run(signal))
    say(`started ${nodes.length} agent processes; waiting for their indexes`)
    let lastLook = 0
    while (!ready(observer.latest)) {
      if (signal.aborted) throw signal.reason
      const crashed = agents.regions.find(r => !agents.isRunning(r))
      if (crashed !== undefined) throw new ConvergeError('CONVERGE_AGENT_START_FAILED', `the agent of ${crashed} exited while starting (see ${join(options.outDir, 'logs', `${crashed}.log`)})`)
      if (Date.now() - lastLook > 1000) {
        lastLook = Date.now()
        // an agent whose start failed may linger (its IPC channel holds the process): its log says why
        for (const region of agents.regions.filter(r => observer.latest?.regions[r]?.up !== true)) {
          const failure = await agents.startFailure(region)
          if (failure !== undefined) throw new ConvergeError('CONVERGE_AGENT_START_FAILED', `the agent of ${region} failed to start: ${failure}`)
        }
      }
      await sleep(50, signal)
    }
    t0 = Date.now()
    const startupMs = t0 - launchedAt
    say(`all agents ready after ${(startupMs / 1000).toFixed(1)} s: t0`)

    // 3. the timeline
    const tl = ctx.signal
    ctx.t0 = t0
    const faultRuns = [...launchFaults, ...scenario.faults.map((f, i) => [f, i] as const).filter(([f]) => !fromLaunch(f)).map(async ([f, i]) => await faultRun(f, i))]
    const landings: Landing[] = []
    const driftRuns = scenario.drift.flatMap((d, i) => {
      if (d.at === undefined && d.rowsPerSecond === undefined) return []
      return d.regions.map(async region => {
        const inj = injectors[i]!.get(region)!
        const store = await openStore(storeOf(region, d.dataset))
        try {
          await sleep(t0! + (d.at ?? d.from ?? 0) - Date.now(), tl)
          if (tl.aborted) return
          if (d.rowsPerSecond === undefined) {
            const startedAt = Date.now()
            say(`${region}/${d.dataset}: ${await inj.land(store, d)}`)
            landings.push({ atMs: d.at!, region, dataset: d.dataset, startedAt, landedAt: Date.now(), seq: inj.lastSeq })
            return
          }
          say(`${region}/${d.dataset}: drifting ${d.rowsPerSecond} rows/s until ${(d.until! / 1000).toFixed(1)} s`)
          const written = await inj.stream(store, d.rowsPerSecond, t0! + d.until!, tl)
          say(`${region}/${d.dataset}: drift stream ended (${written} rows)`)
        } finally {
          await store.close()
        }
      })
    })
    let load: LiveLoad | undefined
    const loadRuns: Array<Promise<void>> = []
    if (scenario.load !== undefined) {
      const spec = scenario.load
      load = new LiveLoad({ model: modelOf(spec.dataset), rowsPerSecond: spec.rowsPerSecond, mix: spec.mix, seed: scenario.seed + 77 })
      loadRuns.push((async () => {
        const store = await openStore(storeOf(spec.region, spec.dataset))
        try {
          await sleep(t0! + spec.from - Date.now(), tl)
          if (tl.aborted) return
          say(`live load on ${spec.region}/${spec.dataset}: ${spec.rowsPerSecond} rows/s until ${(spec.until / 1000).toFixed(1)} s`)
          const loadStop = AbortSignal.any([tl, AbortSignal.timeout(spec.until - spec.from)])
          await load!.run(store, loadStop)
          say(`live load ended: ${load!.stats.rowsWritten} rows written (${load!.stats.errors} write errors retried)`)
        } finally {
          await store.close()
        }
      })())
    }
    const faults = (await Promise.all(faultRuns)).sort((a, b) => a.index - b.index)
    await Promise.all([...driftRuns, ...loadRuns])
    if (signal.aborted) throw signal.reason
    const quietAt = Date.now()
    if (launchFaults.length > 0 && scenario.faults.some(f => fromLaunch(f) && (f as { duration?: number }).duration === undefined)) say('(link shapes and clocks without a duration stay as they are to the end)')

    // 4. convergence
    say(`timeline done; waiting for every replica to be level with ${primary} (at most ${scenario.expect.convergeWithin} ms)`)
    let convergedAt: number | undefined
    const datasetNames = models.map(m => m.name)
    // every store the timeline wrote, up to its own head, read now that the writes are over: until the agent's index
    // has taken in what was written there, the agent shows the roots from before it, which may well agree; and a
    // write whose acknowledgement a fault swallowed may have committed all the same
    const written = new Map<string, number>()
    let unread = [...new Set([
      ...scenario.drift.filter(d => d.at !== undefined || d.rowsPerSecond !== undefined).flatMap(d => d.regions.map(r => `${r}/${d.dataset}`)),
      ...(scenario.load === undefined ? [] : [`${scenario.load.region}/${scenario.load.dataset}`])
    ])]
    const headOf = async (place: string): Promise<number> => {
      const [region, dataset] = place.split('/') as [string, string]
      return await withStore(storeOf(region, dataset), async store => await store.lastSeq())
    }
    while (Date.now() - quietAt < scenario.expect.convergeWithin && !signal.aborted) {
      await sleep(scenario.pollEvery, signal)
      if (unread.length > 0) unread = await raiseToHeads(written, unread, headOf)
      convergedAt = unread.length > 0 ? undefined : firstConverged(observer.samples, quietAt, Number.POSITIVE_INFINITY, s => converged(s, primary, datasetNames, written))
      if (convergedAt !== undefined) break
    }
    say(convergedAt === undefined ? 'NOT converged' : `converged ${((convergedAt - quietAt) / 1000).toFixed(2)} s after the timeline went quiet`)
    const last = observer.latest

    // 5. stop, then check from outside (the series ends here: a stopping agent's status says nothing)
    timeline.abort()
    controller.abort(new Error('run finished'))
    await Promise.allSettled(background)
    view.done()
    const exits = await agents.stopAll()
    say('agents stopped; checking the stores, audits and load directly')
    const checks: Check[] = []
    const codecs = new Map(models.map(m => [m.name, m.codec]))

    const rowsChecks: Record<string, unknown> = {}
    for (const model of models) {
      const source = storeOf(primary, model.name)
      // the end checks only read: they see the stores as the agents left them and change nothing
      const sourceStore = await openStore(source, { readOnly: true })
      try {
        const sourcePrint = await fingerprint(sourceStore)
        rowsChecks[model.name] = { sourceRows: sourcePrint.length }
        for (const r of scenario.regions.filter(x => x.name !== primary)) {
          const replica = await openStore(storeOf(r.name, model.name), { readOnly: true })
          try {
            const diff = await compareStores({ store: sourceStore, print: sourcePrint }, { store: replica, print: await fingerprint(replica) }, model)
            checks.push({
              name: `rows equal: ${r.name}/${model.name} = ${primary}`,
              passed: diff === undefined,
              detail: diff === undefined ? `${sourcePrint.length} rows, row for row` : `${diff.onlyInSource} rows only (or otherwise) in ${primary}, ${diff.onlyInReplica} only (or otherwise) in ${r.name}; e.g. ${diff.examples.slice(0, 3).map(e => `order ${e.orderId} (${e.side})`).join(', ')}`,
              ...(diff === undefined ? {} : { data: diff })
            })
          } finally { await replica.close() }
        }
      } finally { await sourceStore.close() }
    }

    const audits = new Map<string, AuditReview>()
    for (const n of nodes) {
      const review = await reviewAudit(n.dataDir, codecs)
      audits.set(n.region, review)
      checks.push({ name: `audit chain intact: ${n.region}`, passed: review.chainIntact, detail: review.chainIntact ? `${review.entries} entries` : review.chainProblem ?? 'broken' })
      checks.push({ name: `no fix applied twice: ${n.region}`, passed: review.appliedTwice.length === 0, detail: review.appliedTwice.length === 0 ? `${review.commits} commits, each fix id once` : `fix ids with two commits: ${review.appliedTwice.slice(0, 5).join(', ')}` })
      checks.push({ name: `no fix lost from the audit: ${n.region}`, passed: review.unsettled.length === 0, detail: review.unsettled.length === 0 ? `${review.intents} intents: ${review.commits} committed, ${review.aborts} aborted` : `intents with neither commit nor abort: ${review.unsettled.slice(0, 5).join(', ')}` })
    }

    if (load !== undefined && scenario.load !== undefined) {
      const model = modelOf(scenario.load.dataset)
      const lost = await withStore(storeOf(scenario.load.region, model.name), async store => await load!.lostRows(store), { readOnly: true })
      checks.push({
        name: `no live-load rows lost: ${scenario.load.region}/${model.name}`,
        passed: lost.length === 0 && load.stats.rowsWritten > 0,
        detail: lost.length === 0 ? `${load.ledger.size} keys as the load last wrote them (${load.stats.rowsWritten} writes; ${load.stats.uncertain} unacknowledged left out)` : `${lost.length} keys not as last written, e.g. orders ${lost.slice(0, 5).join(', ')}`
      })
    }

    for (const region of agents.regions) {
      const peak = observer.peakRss.get(region)
      checks.push({ name: `memory bounded: ${region}`, passed: peak !== undefined && peak <= scenario.expect.maxRssMiB * 1048576, detail: peak === undefined ? 'never measured' : `peak RSS ${Math.round(peak / 1048576)} MiB (bound ${scenario.expect.maxRssMiB} MiB)` })
      const code = exits.get(region)
      checks.push({ name: `stopped cleanly: ${region}`, passed: code === 0, detail: `exit code ${String(code)} on SIGTERM` })
    }
    for (const f of faults) {
      checks.push({ name: `fault ${f.index} (${f.kind} ${f.target})`, passed: f.fired && f.problems.length === 0, detail: f.problems.length > 0 ? f.problems.join('; ') : `fired at ${(((f.startAt ?? t0) - t0) / 1000).toFixed(1)} s` })
    }
    checks.unshift({ name: 'converged', passed: convergedAt !== undefined, detail: convergedAt === undefined ? `not level with ${primary} within ${scenario.expect.convergeWithin} ms of the timeline going quiet` : `${convergedAt - quietAt} ms after the timeline went quiet (bound ${scenario.expect.convergeWithin} ms)` })

    // 6. report
    for (const list of skews.values()) list.sort((a, b) => a[0] - b[0])
    // an agent-clock time read as real time: the skew in effect is the one set before (agent time - that skew)
    const skewAt = (region: string, agentAt: number): number => { let skew = 0; for (const [when, ms] of skews.get(region) ?? []) if (agentAt - ms >= when) skew = ms; return skew }
    const readyAt = new Map<string, number>()
    const foundAt = new Map<string, Map<string, number>>()
    for (const region of agents.regions) {
      const log = await readLog(join(work, `${region}.log`))
      foundAt.set(region, log.foundAt)
      // from when its agent had its index (its own log says, to the ms; a poll could be late): from then on it could see drift
      const started = log.firstStart
      const polled = observer.samples.find(s => Object.values(s.regions[region]?.datasets ?? {}).every(d => !['starting', 'indexing', 'down'].includes(d.state)))?.at
      readyAt.set(region, started === undefined ? polled ?? t0 : started - skewAt(region, started))
    }
    const latency = measure({
      injections: ledger.injections,
      fixes: new Map([...audits].map(([r, a]) => [r, a.fixes])),
      foundAt,
      readyAt,
      sourceOf: () => primary,
      skewAt,
      t0,
      seriesFrom: launchedAt
    })
    const report = buildReport({
      scenario, startedAt, t0, startupMs, quietAt, convergedAt, rounds: roundsOf(landings, observer.samples, primary, datasetNames, t0), samples: observer.samples, last, checks, faults, latency, audits,
      injected: new Map(scenario.regions.map(r => [r.name, ledger.counts(r.name)])), load: load?.stats, links: mesh.stats(), peakRss: observer.peakRss,
      incarnations: new Map(agents.regions.map(r => [r, agents.incarnations(r).length]))
    })
    await writeReport(report, options.outDir)
    await options.afterRun?.(stores, report)
    return report
  } finally {
    clearTimeout(deadline)
    options.signal?.removeEventListener('abort', stop)
    timeline.abort()
    controller.abort(new Error('run finished'))
    await agents.stopAll().catch(() => undefined)
    await Promise.allSettled(background)
    await mesh?.close().catch(() => undefined)
    // the logs outlive the run: they are what explains a failure
    await mkdir(join(options.outDir, 'logs'), { recursive: true })
    for (const line of await provisioned?.drop({ keep: options.keep }).catch(() => []) ?? []) out.write(`${line}\n`)
    for (const region of agents.regions) await cp(join(work, `${region}.log`), join(options.outDir, 'logs', `${region}.log`)).catch(() => undefined)
    if (options.keep !== true) await rm(work, { recursive: true, force: true }).catch(() => undefined)
  }
}

/**
 * What an agent's log (JSON lines) tells the report: when it first said it
 * had started (index built, node up), and when each sync found drift (by
 * correlation id). Times are the agent's clock.
 */
async function readLog (logPath: string): Promise<{ firstStart?: number, foundAt: Map<string, number> }> {
  const text = await readFile(logPath, 'utf8').catch(() => '')
  const foundAt = new Map<string, number>()
  let firstStart: number | undefined
  for (const line of text.split('\n')) {
    const started = firstStart === undefined && line.includes('"agent started"')
    if (!started && !line.includes('"sync found drift"')) continue
    let entry: { time?: number, cid?: string }
    try { entry = JSON.parse(line) as typeof entry } catch { continue } // a line cut short by a kill
    if (typeof entry.time !== 'number') continue
    if (started) firstStart = entry.time
    else if (typeof entry.cid === 'string') foundAt.set(entry.cid, entry.time)
  }
  return { ...(firstStart === undefined ? {} : { firstStart }), foundAt }
}
