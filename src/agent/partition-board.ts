/**
 * What a replica knows of its drifted partitions: which ones the last survey
 * found apart from the source of truth, which are being reconciled, and which
 * failed and wait out their own backoff. A partition that fails never delays
 * the others: `survey` hands out only those that are due.
 */
import { retryDelayMs } from '../util/serial.ts'

export type PartitionState = 'drifted' | 'syncing' | 'error'

export interface PartitionStatus {
  /** The partition's node at PARTITION_LEVEL, as 4 hex digits of the key hash. */
  bucket: string
  /** The partition value (a day, a tenant), once a session has seen one of its rows. */
  value: string | null
  state: PartitionState
  failures: number
  lastError: string | null
  /** When a failed partition is tried again (ms since the epoch). */
  retryAt: number | null
  /** When the partition was first seen apart from the SoT, in this stretch. */
  driftSince: number
}

interface Entry extends Omit<PartitionStatus, 'bucket'> {}

export class PartitionBoard {
  private readonly parts = new Map<number, Entry>()
  /** Partition values seen per bucket, kept after the partition is in sync again so a relapse is named at once. */
  private readonly values = new Map<number, string>()

  /**
   * Takes the buckets a survey found drifted; forgets the others (they agree
   * now). Returns the buckets to reconcile now: drifted ones not backing off.
   */
  survey (drifted: readonly number[], now = Date.now()): number[] {
    const seen = new Set(drifted)
    for (const bucket of [...this.parts.keys()]) if (!seen.has(bucket)) this.parts.delete(bucket)
    const due: number[] = []
    for (const bucket of drifted) {
      let entry = this.parts.get(bucket)
      if (entry === undefined) {
        entry = { value: this.values.get(bucket) ?? null, state: 'drifted', failures: 0, lastError: null, retryAt: null, driftSince: now }
        this.parts.set(bucket, entry)
      }
      if (entry.retryAt === null || entry.retryAt <= now) due.push(bucket)
    }
    return due
  }

  /** The roots agree: so does every partition. */
  clear (): void { this.parts.clear() }

  started (bucket: number): void {
    const entry = this.parts.get(bucket)
    if (entry !== undefined) entry.state = 'syncing'
  }

  /** The partition's fix is in; the next survey says whether it agrees now (a hot partition may not). */
  succeeded (bucket: number, value: string | undefined): void {
    const entry = this.named(bucket, value)
    if (entry === undefined) return
    Object.assign(entry, { state: 'drifted', failures: 0, lastError: null, retryAt: null })
  }

  failed (bucket: number, message: string, value?: string, now = Date.now()): void {
    const entry = this.named(bucket, value)
    if (entry === undefined) return
    entry.failures++
    Object.assign(entry, { state: 'error', lastError: message, retryAt: now + retryDelayMs(entry.failures) })
  }

  private named (bucket: number, value: string | undefined): Entry | undefined {
    if (value !== undefined) this.values.set(bucket, value)
    const entry = this.parts.get(bucket)
    if (entry !== undefined && value !== undefined) entry.value = value
    return entry
  }

  /** The earliest time a partition that is backing off may be tried again. */
  nextRetryAt (): number | undefined {
    let next: number | undefined
    for (const e of this.parts.values()) if (e.retryAt !== null && (next === undefined || e.retryAt < next)) next = e.retryAt
    return next
  }

  get failing (): number { let n = 0; for (const e of this.parts.values()) if (e.state === 'error') n++; return n }

  status (): PartitionStatus[] {
    return [...this.parts].sort((a, b) => a[0] - b[0]).map(([bucket, e]) => ({ bucket: bucket.toString(16).padStart(4, '0'), ...e }))
  }
}
