/**
 * Reads every agent's GET /status (and its process's memory and CPU, and
 * the CPU of its region's PostgreSQL backends) every poll:
 * the time series behind the report and chart, the progress view, fault
 * triggers ("once eu-west has repaired 500 rows") and the convergence test.
 *
 * An agent's counters start from zero in each process; a restart is seen as
 * a new pid, and the counters of the one before are carried, so the totals
 * span every incarnation (less whatever a killed one did after its last poll).
 */
import { Agent as HttpAgent, get as httpGet } from 'node:http'
import { agentMemory } from './launcher.ts'
import { CpuTotal } from './process-cpu.ts'
import type { AgentSet } from './agent-set.ts'

export interface DatasetCounters {
  syncs: number, fixes: number, rowsUpserted: number, rowsDeleted: number, missing: number, changed: number, extra: number
  roundTrips: number, bytesSent: number, bytesReceived: number, syncErrors: number
}
export const COUNTER_NAMES: Array<keyof DatasetCounters> = ['syncs', 'fixes', 'rowsUpserted', 'rowsDeleted', 'missing', 'changed', 'extra', 'roundTrips', 'bytesSent', 'bytesReceived', 'syncErrors']
const zero = (): DatasetCounters => Object.fromEntries(COUNTER_NAMES.map(n => [n, 0])) as unknown as DatasetCounters

interface StatusDataset {
  name: string
  state: string
  stateSince?: number
  sourceOfTruth?: string | null
  rowsIndexed?: number
  root?: { count: number, sum: string }
  indexSeq?: number
  counters?: Partial<DatasetCounters>
  lastError?: string | null
}
export interface AgentStatus {
  region: string
  ready: boolean
  uptimeMs: number
  peers: Array<{ region: string, connected: boolean, lastSummaryAt: number | null }>
  datasets: StatusDataset[]
}

export interface DatasetSample {
  state: string
  /** When the agent says it entered that state (its clock, epoch ms). */
  stateSince?: number
  /** The region this one takes its rows from now (null: none reachable; itself when it serves). */
  source: string | null
  count?: number
  sum?: string
  rowsIndexed?: number
  /** The store change seq the agent's index reflects. */
  indexSeq?: number
  /** Counters summed over every incarnation. */
  counters: DatasetCounters
  lastError?: string
}

export interface RegionSample {
  up: boolean
  /** Rows written or deleted by fixes, counted per fix (/metrics), summed over incarnations; only when watched. */
  rowsFixed?: number
  pid?: number
  rssBytes?: number
  /** CPU (ms) the region's agent processes spent since the observer first saw each (see CpuTotal); every incarnation counts. */
  cpuMs?: number
  /** CPU (ms) the backends serving the region's PostgreSQL database spent, likewise (postgres regions on this machine). */
  postgresCpuMs?: number
  /** Peers this agent holds a connection to. */
  connected: string[]
  datasets: Record<string, DatasetSample>
}

export interface Sample { at: number, regions: Record<string, RegionSample> }

/**
 * GET over a kept-alive connection: the body as text when the answer is 200,
 * else undefined (not listening yet, killed, restarting, or silent for
 * `timeoutMs`). Plain node:http, not fetch: polling every agent every 100 ms
 * through fetch's web streams, each on a new connection, was a large part of
 * the runner's CPU, which the agents it times then lacked on a small
 * machine. A kept-alive connection the agent closed just
 * as it was reused is tried once more on a new one, so such a race never
 * shows as an agent that did not answer.
 */
async function getText (url: string, timeoutMs: number, agent: HttpAgent, retry = true): Promise<string | undefined> {
  return await new Promise(resolve => {
    const req = httpGet(url, { agent, timeout: timeoutMs }, res => {
      if (res.statusCode !== 200) { res.resume(); resolve(undefined); return }
      res.setEncoding('utf8')
      let body = ''
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve(body))
      res.on('error', () => resolve(undefined))
    })
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)))
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (retry && req.reusedSocket && err.code === 'ECONNRESET') getText(url, timeoutMs, agent, false).then(resolve, () => resolve(undefined))
      else resolve(undefined)
    })
  })
}

async function getJson<T> (url: string, timeoutMs: number, agent: HttpAgent): Promise<T | undefined> {
  const text = await getText(url, timeoutMs, agent)
  if (text === undefined) return undefined
  try {
    return JSON.parse(text) as T
  } catch {
    return undefined
  }
}

/** The sum of converge_repaired_rows_total over its labels, from Prometheus text. */
export function repairedRows (metrics: string): number {
  let rows = 0
  for (const line of metrics.split('\n')) {
    const m = /^converge_repaired_rows_total(?:\{[^}]*\})?\s+([0-9.eE+-]+)$/.exec(line.trim())
    if (m !== null) rows += Number(m[1])
  }
  return rows
}

/** How often an agent's memory is read (see Observer.memoryOf). */
const MEMORY_EVERY_MS = 500

export class Observer {
  readonly samples: Sample[] = []
  private readonly carried = new Map<string, DatasetCounters>()
  private readonly lastSeen = new Map<string, { pid: number | undefined, counters: DatasetCounters }>()
  /** Highest RSS seen per region, in bytes, over every incarnation. */
  readonly peakRss = new Map<string, number>()
  private readonly listeners: Array<(s: Sample) => void> = []
  /** Each region's memory as last read, with its pid and when. */
  private readonly memorySeen = new Map<string, { pid: number | undefined, at: number, value: { rss: number, peak: number } | undefined }>()

  /** Rows fixed per region as of each pid's last /metrics read, and what earlier pids fixed. */
  private readonly fixedSeen = new Map<string, { pid: number | undefined, rows: number, carried: number }>()

  /** Connections to the agents' status ports, kept open from poll to poll. */
  private readonly http = new HttpAgent({ keepAlive: true })

  /** CPU so far per region: its agents', its database backends'. */
  private readonly cpu = new Map<string, { agent: CpuTotal, postgres: CpuTotal }>()

  /**
   * @param watchFixes also read /metrics each poll: /status counts a sync's
   * rows once all its fixes are done, /metrics after each fix (what a
   * "mid-repair" trigger needs).
   * @param postgresPids the pids of the backends serving a region's database
   * now (PostgreSQL regions), whose CPU each sample then carries
   */
  constructor (private readonly agents: AgentSet, private readonly datasets: string[], private readonly everyMs: number, private readonly watchFixes = false,
    private readonly postgresPids?: (region: string) => readonly number[]) {}

  onSample (fn: (s: Sample) => void): void { this.listeners.push(fn) }

  get latest (): Sample | undefined { return this.samples.at(-1) }

  /** Polls until the signal aborts. */
  async run (signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        const started = Date.now()
        await this.poll()
        const wait = this.everyMs - (Date.now() - started)
        if (wait > 0) await new Promise<void>(resolve => { const t = setTimeout(resolve, wait); signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true }) })
      }
    } finally {
      // the kept-alive connections to the agents
      this.http.destroy()
    }
  }

  async poll (): Promise<Sample> {
    const at = Date.now()
    const entries = await Promise.all(this.agents.regions.map(async region => [region, await this.sampleRegion(region)] as const))
    const sample: Sample = { at, regions: Object.fromEntries(entries) }
    this.samples.push(sample)
    for (const fn of this.listeners) fn(sample)
    return sample
  }

  private async sampleRegion (region: string): Promise<RegionSample> {
    const agent = this.agents.agent(region)
    const running = this.agents.isRunning(region)
    const pid = agent?.child.pid
    const timeoutMs = Math.max(1000, this.everyMs * 4)
    const [status, memory, metrics] = running && agent !== undefined
      ? await Promise.all([getJson<AgentStatus>(`${agent.statusUrl}/status`, timeoutMs, this.http), this.memoryOf(region, agent), this.watchFixes ? getText(`${agent.statusUrl}/metrics`, timeoutMs, this.http) : undefined])
      : [undefined, undefined, undefined]
    let rowsFixed: number | undefined
    if (this.watchFixes) {
      const seen = this.fixedSeen.get(region) ?? { pid, rows: 0, carried: 0 }
      if (seen.pid !== pid) { seen.carried += seen.rows; seen.rows = 0; seen.pid = pid }
      if (metrics !== undefined) seen.rows = repairedRows(metrics)
      this.fixedSeen.set(region, seen)
      rowsFixed = seen.carried + seen.rows
    }
    if (memory !== undefined) this.peakRss.set(region, Math.max(this.peakRss.get(region) ?? 0, memory.peak))
    const cpu = this.cpuOf(region, pid)
    const datasets: Record<string, DatasetSample> = {}
    for (const name of this.datasets) {
      const d = status?.datasets.find(x => x.name === name)
      datasets[name] = {
        state: d?.state ?? (running ? 'starting' : 'down'),
        ...(typeof d?.stateSince === 'number' ? { stateSince: d.stateSince } : {}),
        source: d?.sourceOfTruth ?? (d?.state === 'source' ? region : null),
        ...(d?.root === undefined ? {} : { count: d.root.count, sum: d.root.sum }),
        ...(d?.rowsIndexed === undefined ? {} : { rowsIndexed: d.rowsIndexed }),
        ...(d?.indexSeq === undefined ? {} : { indexSeq: d.indexSeq }),
        ...(d?.lastError === undefined || d.lastError === null ? {} : { lastError: d.lastError }),
        counters: this.total(`${region}/${name}`, pid, d?.counters)
      }
    }
    return {
      up: status !== undefined,
      ...(rowsFixed === undefined ? {} : { rowsFixed }),
      ...(pid === undefined ? {} : { pid }),
      ...(memory === undefined ? {} : { rssBytes: memory.rss }),
      ...cpu,
      connected: (status?.peers ?? []).filter(p => p.connected).map(p => p.region),
      datasets
    }
  }

  /**
   * The agent's memory, read from /proc at most every MEMORY_EVERY_MS (and
   * at once for a new pid): the peak is the kernel's own high-water mark, so
   * reading it less often misses nothing of it, and a read per poll costs
   * the machine the agents run on more than the poll itself.
   */
  private async memoryOf (region: string, agent: Parameters<typeof agentMemory>[0]): Promise<{ rss: number, peak: number } | undefined> {
    const seen = this.memorySeen.get(region)
    const now = Date.now()
    if (seen !== undefined && seen.pid === agent.child.pid && now - seen.at < MEMORY_EVERY_MS) return seen.value
    const value = await agentMemory(agent)
    this.memorySeen.set(region, { pid: agent.child.pid, at: now, value })
    return value
  }

  /** The region's CPU so far: its agents' (this incarnation and those before it, as far as read) and its database backends'. */
  private cpuOf (region: string, pid: number | undefined): { cpuMs?: number, postgresCpuMs?: number } {
    let c = this.cpu.get(region)
    if (c === undefined) { c = { agent: new CpuTotal(), postgres: new CpuTotal() }; this.cpu.set(region, c) }
    // (what a killed agent did after its last poll is lost, as with its counters)
    const agentMs = c.agent.read(pid === undefined ? [] : [pid])
    const postgresMs = this.postgresPids === undefined ? undefined : c.postgres.read(this.postgresPids(region))
    return { ...(agentMs === undefined ? {} : { cpuMs: agentMs }), ...(postgresMs === undefined ? {} : { postgresCpuMs: postgresMs }) }
  }

  /** The counters over every incarnation: those of earlier pids carried, plus this one's. */
  private total (key: string, pid: number | undefined, now: Partial<DatasetCounters> | undefined): DatasetCounters {
    const seen = this.lastSeen.get(key)
    let carried = this.carried.get(key) ?? zero()
    if (seen !== undefined && seen.pid !== pid) {
      carried = add(carried, seen.counters)
      this.carried.set(key, carried)
      this.lastSeen.delete(key)
    }
    if (now === undefined) return add(carried, this.lastSeen.get(key)?.counters ?? zero())
    const current = { ...zero(), ...now }
    this.lastSeen.set(key, { pid, counters: current })
    return add(carried, current)
  }
}

function add (a: DatasetCounters, b: DatasetCounters): DatasetCounters {
  return Object.fromEntries(COUNTER_NAMES.map(n => [n, a[n] + b[n]])) as unknown as DatasetCounters
}
