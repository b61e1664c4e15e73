/**
 * Which PostgreSQL server processes serve each region's database, so the
 * observer can read their CPU (process-cpu.ts): pg_stat_activity lists the
 * backends by database, looked at again every second (an agent's pool opens
 * connections as it needs them; a store fault terminates them). Only
 * processes of this machine named `postgres` are taken: against a server
 * elsewhere (or in a container) a pid here would be another process, and
 * the figures are then absent rather than wrong.
 */
import pg from 'pg'
import { sleep } from '../src/util/serial.ts'
import { processName } from './process-cpu.ts'
import type { RegionStore } from './region-stores.ts'

const LOOK_EVERY_MS = 1000

export class PostgresBackends {
  private pids = new Map<string, number[]>()
  /** Database name → region, for the postgres regions watched. */
  private readonly regionOf = new Map<string, string>()
  private readonly local = new Map<number, boolean>()

  constructor (private readonly adminUrl: string) {}

  /** The postgres regions' databases to follow (call before run). */
  watch (stores: readonly RegionStore[]): void {
    for (const s of stores) if (s.pg !== undefined) this.regionOf.set(s.pg.database, s.region)
  }

  /** The backends serving a region's database as last seen (none for other regions, or before the first look). */
  pidsOf (region: string): readonly number[] { return this.pids.get(region) ?? [] }

  /** Looks every second until the signal aborts; a server that cannot be reached leaves the lists as they were. */
  async run (signal: AbortSignal): Promise<void> {
    if (this.regionOf.size === 0) return
    const client = new pg.Client({ connectionString: this.adminUrl })
    client.on('error', () => undefined) // a lost connection fails the next look, which keeps the last lists
    try {
      await client.connect()
    } catch {
      return // no figures for PostgreSQL in this run
    }
    try {
      while (!signal.aborted) {
        try {
          const { rows } = await client.query<{ datname: string, pid: number }>('SELECT datname, pid FROM pg_stat_activity WHERE datname = ANY ($1)', [[...this.regionOf.keys()]])
          const next = new Map<string, number[]>()
          for (const r of rows) {
            if (!this.isLocalPostgres(r.pid)) continue
            const region = this.regionOf.get(r.datname)!
            next.set(region, [...(next.get(region) ?? []), r.pid])
          }
          this.pids = next
          // what was learnt of pids no longer listed is dropped: a long run's backends come and go
          const listed = new Set(rows.map(r => r.pid))
          for (const pid of this.local.keys()) if (!listed.has(pid)) this.local.delete(pid)
        } catch {
          // the server going away (a fault) or the connection lost: keep the last lists
        }
        await sleep(LOOK_EVERY_MS, signal).catch(() => undefined)
      }
    } finally {
      await client.end().catch(() => undefined)
    }
  }

  private isLocalPostgres (pid: number): boolean {
    let local = this.local.get(pid)
    if (local === undefined) {
      local = processName(pid) === 'postgres'
      this.local.set(pid, local)
    }
    return local
  }
}
