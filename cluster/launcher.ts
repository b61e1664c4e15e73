/**
 * Starts agents as separate OS processes on loopback, each from its own
 * config file, with its log in a file (appended to, so a restarted agent's
 * log follows its predecessor's); stops them with SIGTERM (SIGKILL after a
 * grace period), or kills them outright.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AGENT_NODE_FLAGS } from '../src/cli/young-generation.ts'
import type { ConfigInput } from '../src/config/schema.ts'

const CLI = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url))
const TSX = import.meta.resolve('tsx')

export interface AgentProcess {
  region: string
  statusUrl: string
  configPath: string
  logPath: string
  child: ChildProcess
  exited: Promise<number | null>
}

export interface LaunchOptions {
  /** Added to the agent's environment. */
  env?: Record<string, string>
  /** Modules loaded before the agent (after tsx), e.g. the clock skew shim. */
  preload?: string[]
}

export async function launchAgent (dir: string, config: ConfigInput & { status: { port: number } }, options: LaunchOptions = {}): Promise<AgentProcess> {
  const configPath = join(dir, `${config.region}.json`)
  const logPath = join(dir, `${config.region}.log`)
  await writeFile(configPath, JSON.stringify(config, null, 2))
  const log = createWriteStream(logPath, { flags: 'a' })
  const preload = (options.preload ?? []).flatMap(p => ['--import', p])
  // the IPC channel closes when this process dies, however it dies: the agent then stops itself; the agent's
  // young generation as `converge agent` gives itself (young-generation.ts)
  const child = spawn(process.execPath, [...AGENT_NODE_FLAGS, '--import', TSX, ...preload, CLI, 'agent', '--config', configPath], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    ...(options.env === undefined ? {} : { env: { ...process.env, ...options.env } })
  })
  child.stdout?.pipe(log)
  child.stderr?.pipe(log)
  // 'close' (not 'exit'): the log has every line the agent wrote before its exit is reported
  const exited = new Promise<number | null>(resolve => child.once('close', code => { log.end(); resolve(code) }))
  return { region: config.region, statusUrl: `http://127.0.0.1:${config.status.port}`, configPath, logPath, child, exited }
}

/** Kills an agent with a signal (SIGKILL: kill -9, nothing flushed) and waits until it is gone. */
export async function killAgent (agent: AgentProcess, signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 10_000): Promise<number | null> {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) return agent.child.exitCode
  agent.child.kill(signal)
  const timer = setTimeout(() => agent.child.kill('SIGKILL'), timeoutMs)
  try { return await agent.exited } finally { clearTimeout(timer) }
}

/** Resident memory of the agent process now and at its peak, in bytes (Linux /proc); undefined where unreadable. */
export async function agentMemory (agent: AgentProcess): Promise<{ rss: number, peak: number } | undefined> {
  const pid = agent.child.pid
  if (pid === undefined || agent.child.exitCode !== null) return undefined
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8')
    const kb = (field: string): number | undefined => { const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text); return m === null ? undefined : Number(m[1]) * 1024 }
    const rss = kb('VmRSS')
    return rss === undefined ? undefined : { rss, peak: kb('VmHWM') ?? rss }
  } catch {
    return undefined // gone meanwhile, or not Linux
  }
}

export async function stopAgent (agent: AgentProcess, graceMs = 10_000): Promise<number | null> {
  if (agent.child.exitCode !== null) return agent.child.exitCode
  agent.child.kill('SIGTERM')
  const timer = setTimeout(() => agent.child.kill('SIGKILL'), graceMs)
  try { return await agent.exited } finally { clearTimeout(timer) }
}

/** GETs an agent's /status; undefined while it is not answering yet. */
export async function fetchStatus<T> (agent: AgentProcess): Promise<T | undefined> {
  try {
    const res = await fetch(`${agent.statusUrl}/status`, { signal: AbortSignal.timeout(2000) })
    return res.ok ? await res.json() as T : undefined
  } catch {
    return undefined // not listening yet, or restarting
  }
}
