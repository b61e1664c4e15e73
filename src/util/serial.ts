import { setTimeout as wait } from 'node:timers/promises'

/** Runs async tasks one at a time, in call order; a failed task does not block the next. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve()

  run<T> (task: () => Promise<T>): Promise<T> {
    const next = this.tail.then(task, task)
    this.tail = next.catch(() => undefined)
    return next
  }
}

/** Resolves after `ms`, or rejects when the signal aborts. */
export async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await wait(ms, undefined, { signal })
}

/** Longest pause between two retries of one failing thing. */
export const MAX_RETRY_DELAY_MS = 30_000

/** Exponential backoff with full jitter in its upper half: 0.5-1 s after the first failure, doubling, capped. */
export function retryDelayMs (failures: number, random = Math.random): number {
  const ceiling = Math.min(MAX_RETRY_DELAY_MS, 500 * 2 ** Math.min(failures, 10))
  return ceiling / 2 + random() * ceiling / 2
}
