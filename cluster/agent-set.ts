/**
 * The scenario's agents, one OS process per region, each with its own
 * config, data directory, store(s), status port and log. Kills, restarts and
 * clock changes go through here, so every incarnation of a region is known
 * (its pid for memory, its exit for the end checks).
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { ConfigInput } from '../src/config/schema.ts'
import { killAgent, launchAgent, stopAgent, type AgentProcess } from './launcher.ts'

const CLOCK_SKEW = fileURLToPath(new URL('./clock-skew.ts', import.meta.url))

export interface Incarnation {
  pid: number | undefined
  startedAt: number
  endedAt?: number
  /** How it ended: the exit code of a clean stop, or the signal that killed it. */
  exit?: { code: number | null, signal: NodeJS.Signals | null, by: 'stop' | 'kill' | 'crash' }
}

interface Slot {
  config: ConfigInput & { status: { port: number } }
  agent?: AgentProcess
  incarnations: Incarnation[]
  clockSkewMs: number
  clockShim: boolean
  /** Set while the runner itself brings the agent down, so its exit is not taken for a crash. */
  stopping?: 'stop' | 'kill'
}

export class AgentSet {
  private readonly slots = new Map<string, Slot>()

  constructor (private readonly dir: string) {}

  /** Registers a region's config; `clockShim` loads the clock skew shim into its process (needed for any clock fault). */
  add (config: ConfigInput & { status: { port: number } }, clockShim = false): void {
    this.slots.set(config.region, { config, incarnations: [], clockSkewMs: 0, clockShim })
  }

  get regions (): string[] { return [...this.slots.keys()] }

  private slot (region: string): Slot {
    const s = this.slots.get(region)
    if (s === undefined) throw new Error(`no agent for region ${region}`)
    return s
  }

  agent (region: string): AgentProcess | undefined { return this.slot(region).agent }
  isRunning (region: string): boolean { const a = this.slot(region).agent; return a !== undefined && a.child.exitCode === null && a.child.signalCode === null }
  incarnations (region: string): readonly Incarnation[] { return this.slot(region).incarnations }
  statusUrl (region: string): string { return `http://127.0.0.1:${this.slot(region).config.status.port}` }

  async start (region: string): Promise<AgentProcess> {
    const s = this.slot(region)
    if (this.isRunning(region)) return s.agent!
    const agent = await launchAgent(this.dir, s.config, s.clockShim ? { preload: [CLOCK_SKEW], env: { CONVERGE_CLUSTER_CLOCK_SKEW_MS: String(s.clockSkewMs) } } : {})
    const life: Incarnation = { pid: agent.child.pid, startedAt: Date.now() }
    s.incarnations.push(life)
    s.agent = agent
    s.stopping = undefined
    void agent.exited.then(code => {
      life.endedAt = Date.now()
      life.exit = { code, signal: agent.child.signalCode, by: s.stopping ?? 'crash' }
    })
    return agent
  }

  async startAll (): Promise<void> {
    for (const region of this.slots.keys()) await this.start(region)
  }

  /** kill -9 (or another signal): the agent gets no chance to drain or flush. */
  async kill (region: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const s = this.slot(region)
    if (s.agent === undefined || !this.isRunning(region)) return
    s.stopping = 'kill'
    await killAgent(s.agent, signal)
  }

  /** A clean stop (SIGTERM, SIGKILL after the grace period); resolves to the exit code. */
  async stop (region: string): Promise<number | null> {
    const s = this.slot(region)
    if (s.agent === undefined) return null
    if (!this.isRunning(region)) return s.agent.child.exitCode
    s.stopping = 'stop'
    return await stopAgent(s.agent)
  }

  async stopAll (): Promise<Map<string, number | null>> {
    const codes = await Promise.all(this.regions.map(async r => [r, await this.stop(r)] as const))
    return new Map(codes)
  }

  /**
   * The error a region's current agent gave up starting with, if any: the
   * command prints "converge: …" when it fails; a supervised agent's process
   * may stay alive after that, so its exit cannot be waited for.
   */
  async startFailure (region: string): Promise<string | undefined> {
    const agent = this.slot(region).agent
    if (agent === undefined) return undefined
    const text = await readFile(agent.logPath, 'utf8').catch(() => '')
    const since = text.lastIndexOf('"msg":"agent started"')
    const line = text.slice(Math.max(0, since)).split('\n').find(l => l.startsWith('converge: '))
    return line?.slice('converge: '.length)
  }

  /** Sets a region's clock offset: now over IPC when it runs, and for every later start. */
  setClockSkew (region: string, ms: number): void {
    const s = this.slot(region)
    if (!s.clockShim) throw new Error(`region ${region} was started without the clock shim`)
    s.clockSkewMs = ms
    if (this.isRunning(region) && s.agent?.child.connected === true) s.agent.child.send({ type: 'converge-cluster/clock-skew', ms })
  }

  clockSkew (region: string): number { return this.slot(region).clockSkewMs }
}
