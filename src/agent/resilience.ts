/**
 * What keeps one agent from hammering a failing peer or store, or from
 * crowding out the replica's own traffic:
 *
 * - a circuit breaker per peer and per store (cockatiel): after
 *   BREAKER_FAILURES failures in a row, calls fail fast for a cool-down,
 *   then one trial call decides whether it closes again;
 * - a bulkhead: at most `concurrency` syncs at once across all datasets,
 *   the rest wait their turn (bounded queue);
 * - a rows-per-second budget per store for repair writes (a token bucket),
 *   so a large repair goes at the pace the operator allows.
 */
import { BrokenCircuitError, bulkhead, circuitBreaker, CircuitState, ConsecutiveBreaker, handleWhen, type BulkheadPolicy, type CircuitBreakerPolicy } from 'cockatiel'
import { ConvergeError } from '../errors.ts'
import { sleep } from '../util/serial.ts'

/** Failures in a row that open a breaker. */
export const BREAKER_FAILURES = 5
/** How long an open breaker refuses calls before it lets one trial through. */
export const BREAKER_COOL_DOWN_MS = 10_000
/** Syncs that may wait for a slot before more are refused (each dataset has at most one worker, so this is generous). */
const SYNC_QUEUE = 1024

/** Thrown when a call is refused because its peer's or store's breaker is open. */
export class CircuitOpenError extends ConvergeError {
  constructor (what: string, reason: string | undefined, options: { failures: number, coolDownMs: number }) {
    super('CONVERGE_CIRCUIT_OPEN', `${what} failed ${options.failures} times in a row${reason === undefined ? '' : ` (last: ${reason})`}; calls are paused for ${options.coolDownMs / 1000} s`)
  }
}

export type BreakerState = 'closed' | 'open' | 'half-open' | 'isolated'

const STATE_NAMES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed', [CircuitState.Open]: 'open', [CircuitState.HalfOpen]: 'half-open', [CircuitState.Isolated]: 'isolated'
}

/**
 * Only failures that say something about the peer or store count: a
 * cancelled call (the agent stopping, a timeout we set) or a refusal of
 * ours (a schema difference) does not.
 */
function countsAgainst (error: unknown): boolean {
  const err = error as Error
  const code = (err as { code?: string }).code
  return code !== 'CONVERGE_ABORTED' && code !== 'CONVERGE_SHAPE_OFFERED' && code !== 'CONVERGE_SCHEMA_INCOMPATIBLE' && code !== 'CONVERGE_SCHEMA_MISMATCH' && err.name !== 'AbortError'
}

export interface BreakerOptions {
  /** Failures in a row that open a breaker. */
  failures: number
  /** How long an open breaker refuses calls. */
  coolDownMs: number
}

export class Breakers {
  private readonly breakers = new Map<string, { policy: CircuitBreakerPolicy, lastError?: string }>()
  private readonly options: BreakerOptions

  constructor (options: Partial<BreakerOptions> = {}) {
    this.options = { failures: options.failures ?? BREAKER_FAILURES, coolDownMs: options.coolDownMs ?? BREAKER_COOL_DOWN_MS }
  }

  /** Runs `task` through the breaker of `name` (e.g. `peer:<id>`, `store:<dataset>`). */
  async run<T> (name: string, task: () => Promise<T>): Promise<T> {
    const entry = this.entry(name)
    try {
      return await entry.policy.execute(task)
    } catch (err) {
      if (err instanceof BrokenCircuitError) throw new CircuitOpenError(name, entry.lastError, this.options)
      if (countsAgainst(err as Error)) entry.lastError = (err as Error).message
      throw err
    }
  }

  state (name: string): BreakerState { return STATE_NAMES[this.breakers.get(name)?.policy.state ?? CircuitState.Closed] }

  /** Every breaker that is not closed, for the status port and metrics. */
  notClosed (): Array<{ name: string, state: BreakerState, lastError: string | null }> {
    return [...this.breakers].filter(([, b]) => b.policy.state !== CircuitState.Closed)
      .map(([name, b]) => ({ name, state: STATE_NAMES[b.policy.state], lastError: b.lastError ?? null }))
  }

  private entry (name: string): { policy: CircuitBreakerPolicy, lastError?: string } {
    let entry = this.breakers.get(name)
    if (entry === undefined) {
      entry = { policy: circuitBreaker(handleWhen(countsAgainst), { halfOpenAfter: this.options.coolDownMs, breaker: new ConsecutiveBreaker(this.options.failures) }) }
      this.breakers.set(name, entry)
    }
    return entry
  }
}

/** At most `concurrency` syncs at once across the agent. */
export function syncBulkhead (concurrency: number): BulkheadPolicy {
  return bulkhead(concurrency, SYNC_QUEUE)
}

/**
 * A token bucket of rows per second, holding at most one second's worth:
 * `take(n)` waits until n rows may be written. n larger than the rate is
 * allowed (it waits for the bucket to fill, then goes into debt), so the
 * long-run pace holds for any fix size.
 */
export interface BudgetClock {
  now: () => number
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>
}

export class RowBudget {
  private tokens: number
  private last: number

  constructor (private readonly rowsPerSecond: number, private readonly clock: BudgetClock = { now: Date.now, sleep }) {
    this.tokens = rowsPerSecond
    this.last = clock.now()
  }

  get limited (): boolean { return this.rowsPerSecond > 0 }

  /** Rows per second; 0 when unlimited. */
  get rate (): number { return this.rowsPerSecond }

  async take (rows: number, signal?: AbortSignal): Promise<void> {
    if (!this.limited || rows === 0) return
    for (;;) {
      const now = this.clock.now()
      this.tokens = Math.min(this.rowsPerSecond, this.tokens + (now - this.last) * this.rowsPerSecond / 1000)
      this.last = now
      const needed = Math.min(rows, this.rowsPerSecond)
      if (this.tokens >= needed) { this.tokens -= rows; return }
      await this.clock.sleep(Math.ceil((needed - this.tokens) * 1000 / this.rowsPerSecond), signal)
    }
  }
}
