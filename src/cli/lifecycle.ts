/**
 * How a running agent process stops. On SIGTERM or SIGINT (or when the
 * supervisor that started it over IPC goes away):
 *
 *   1. the agent drains at once: /readyz answers 503, actions are refused,
 *      no new sync or fix starts, and a fix in flight is carried through (its
 *      intent is written) or not begun;
 *   2. after `drainDelayMs` (0 by default; a load balancer or a readiness
 *      probe may want to see the 503 before the port goes away), the agent
 *      stops: libp2p, stores, the state database (which flushes the audit),
 *      then the status port;
 *   3. if all that takes longer than `stopTimeoutMs`, the process exits with
 *      code 1 anyway; a second signal exits with code 1 at once.
 *
 * A signal during start aborts the start (a long first index build) and is a
 * clean stop, exit code 0.
 */
import type { Agent } from '../agent/agent.ts'

export interface StopPolicy {
  /** How long /readyz answers 503 before the agent stops its work and its port. */
  drainDelayMs: number
  /** The most a stop may take before the process exits regardless. */
  stopTimeoutMs: number
}

export const STOP_DEFAULTS: StopPolicy = { drainDelayMs: 0, stopTimeoutMs: 30_000 }

/** After a clean stop, handles something left open (a socket in its close handshake) may not hold the process longer than this. */
const LINGER_MS = 2000

export interface Signals {
  once: (event: 'SIGTERM' | 'SIGINT' | 'disconnect', listener: () => void) => void
  on: (event: 'SIGTERM' | 'SIGINT', listener: () => void) => void
  exit: (code: number) => never
  /** True when started by a supervisor over IPC. */
  readonly supervised: boolean
  readonly connected: boolean
}

const processSignals: Signals = {
  once: (event, listener) => { process.once(event, listener) },
  on: (event, listener) => { process.on(event, listener) },
  exit: (code) => process.exit(code),
  get supervised () { return process.send !== undefined },
  get connected () { return process.connected }
}

/**
 * Starts the agent and runs it until asked to stop; resolves once it has
 * stopped cleanly. Rejects with the start's error when the start fails for
 * another reason than a stop request.
 */
export async function runAgent (agent: Agent, policy: StopPolicy & { onStarted?: () => void }, signals: Signals = processSignals): Promise<void> {
  const starting = new AbortController()
  let reason: string | undefined
  let stopped: Promise<void> | undefined
  let ask = (): void => {}
  const asked = new Promise<void>(resolve => { ask = resolve })
  // whether start() went through; a failed start has closed what it opened already
  let startSettled = (_ok: boolean): void => {}
  const started = new Promise<boolean>(resolve => { startSettled = resolve })

  const request = (why: string, bySignal: boolean): void => {
    if (reason !== undefined) {
      // a second signal: the operator does not want to wait (the IPC channel closing, ours included, is no such request)
      if (!bySignal) return
      agent.log.warn({ reason: why }, 'second stop request; exiting now')
      signals.exit(1)
      return
    }
    reason = why
    agent.log.info({ reason: why, drainDelayMs: policy.drainDelayMs, stopTimeoutMs: policy.stopTimeoutMs }, 'stopping: draining')
    agent.draining = true
    starting.abort(new Error(`stop requested (${why})`))
    const bound = setTimeout(() => {
      agent.log.error({ stopTimeoutMs: policy.stopTimeoutMs }, 'stop took longer than its bound; exiting')
      signals.exit(1)
    }, policy.stopTimeoutMs)
    stopped = (async () => {
      try {
        if (!await started) return
        await agent.drain()
        if (policy.drainDelayMs > 0) await new Promise(resolve => setTimeout(resolve, policy.drainDelayMs))
        await agent.stop()
      } finally {
        clearTimeout(bound)
        // nothing should be left holding the process: if something is, it goes after a short linger
        setTimeout(() => signals.exit(process.exitCode === undefined ? 0 : Number(process.exitCode)), LINGER_MS).unref()
      }
    })()
    ask()
  }
  signals.on('SIGTERM', () => request('SIGTERM', true))
  signals.on('SIGINT', () => request('SIGINT', true))
  if (signals.supervised) signals.once('disconnect', () => request('supervisor exited', false))

  try {
    await agent.start({ signal: starting.signal })
    startSettled(true)
    policy.onStarted?.()
  } catch (err) {
    startSettled(false)
    // a start aborted by a stop request is a clean stop
    if (reason !== undefined) { await stopped; return }
    throw err
  }
  if (signals.supervised && !signals.connected) request('supervisor exited', false)
  await asked
  await stopped
}
