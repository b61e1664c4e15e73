/**
 * Starts agents as separate OS processes on loopback, each from its own
 * config file, with its log in a file; stops them with SIGTERM (SIGKILL after
 * a grace period).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
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

export async function launchAgent (dir: string, config: ConfigInput & { status: { port: number } }): Promise<AgentProcess> {
  const configPath = join(dir, `${config.region}.json`)
  const logPath = join(dir, `${config.region}.log`)
  await writeFile(configPath, JSON.stringify(config, null, 2))
  const log = createWriteStream(logPath)
  // the IPC channel closes when this process dies, however it dies: the agent then stops itself
  const child = spawn(process.execPath, ['--import', TSX, CLI, 'agent', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  child.stdout?.pipe(log)
  child.stderr?.pipe(log)
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  return { region: config.region, statusUrl: `http://127.0.0.1:${config.status.port}`, configPath, logPath, child, exited }
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
