/**
 * A failure that a loop meets again on every retry (a change feed whose
 * store is down retries every few seconds for as long as the outage lasts),
 * logged so that the log says what happened without a line per try: the
 * first failure at `level`, the same failure again at most once per `everyMs`
 * at `level` with the tries since (debug in between), a different failure at
 * once, and, when the loop works again, one line that says so, with how
 * many tries failed and for how long.
 */
import type { Logger } from './logger.ts'

/** How often, at most, the same repeated failure is logged at its level. */
export const REPEATED_FAILURE_LOG_MS = 60_000

export interface RepeatedFailureInit {
  log: Logger
  /** The error line's message, e.g. 'change feed failed; following again after a pause'. */
  message: string
  /** The line logged when the loop works again after failures. */
  recoveredMessage: string
  /** The failure lines' level. Default 'error'. */
  level?: 'warn' | 'error'
  /** Fields on every line (the dataset, say). */
  fields?: Record<string, unknown>
  everyMs?: number
  now?: () => number
}

export class RepeatedFailure {
  private failures = 0
  private since = 0
  private lastLoggedAt = 0
  private lastLoggedError: string | undefined
  private unlogged = 0

  constructor (private readonly init: RepeatedFailureInit) {}

  /** The loop failed (again): logged at its level unless the same failure was logged less than `everyMs` ago. */
  failed (err: unknown, fields: Record<string, unknown> = {}): void {
    const now = (this.init.now ?? Date.now)()
    const message = err instanceof Error ? err.message : String(err)
    const code = (err as { code?: unknown } | undefined)?.code
    if (this.failures === 0) this.since = now
    this.failures++
    const line = { ...this.init.fields, ...fields, ...(typeof code === 'string' ? { code } : {}), err: message, failures: this.failures, failingForMs: now - this.since }
    // (none was logged before the first failure, nor since a recovery: lastLoggedError is then unset)
    const repeat = message === this.lastLoggedError && now - this.lastLoggedAt < (this.init.everyMs ?? REPEATED_FAILURE_LOG_MS)
    if (repeat) {
      this.unlogged++
      this.init.log.debug(line, this.init.message)
      return
    }
    this.init.log[this.init.level ?? 'error'](this.unlogged > 0 ? { ...line, notLoggedSince: this.unlogged } : line, this.init.message)
    this.lastLoggedAt = now
    this.lastLoggedError = message
    this.unlogged = 0
  }

  /** The loop works again: one line, if it had failed. */
  recovered (fields: Record<string, unknown> = {}): void {
    if (this.failures === 0) return
    const now = (this.init.now ?? Date.now)()
    this.init.log.info({ ...this.init.fields, ...fields, failures: this.failures, failedForMs: now - this.since }, this.init.recoveredMessage)
    this.failures = 0
    this.unlogged = 0
    this.lastLoggedError = undefined
  }
}
