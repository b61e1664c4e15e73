/**
 * Which PostgreSQL server processes serve each region's database, so the
 * observer can read their CPU (process-cpu.ts): pg_stat_activity lists the
 * backends by database, looked at again every second (an agent's pool opens
 * connections as it needs them; a store fault terminates them), on each
 * server the regions' databases live on. Only
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
  /** Per server (its admin URL): database name → region, for the postgres regions watched. */
  private readonly regionOf = new Map<string, Map<string, string>>()
  private readonly local = new Map<number, boolean>()

  /** The postgres regions' databases to follow (call before run); a region on a server of its own is looked up there. */
  watch (stores: readonly RegionStore[]): void {
    for (const s of stores) {
      if (s.pg === undefined) continue
      const databases = this.regionOf.get(s.pg.adminUrl) ?? new Map<string, string>()
      databases.set(s.pg.database, s.region)
      this.regionOf.set(s.pg.adminUrl, databases)
    }
  }

  /** The backends serving a region's database as last seen (none for other regions, or before the first look). */
  pidsOf (region: string): readonly number[] { return this.pids.get(region) ?? [] }

  /** Looks every second on every server watched until the signal aborts. */
  async run (signal: AbortSignal): Promise<void> {
    await Promise.all([...this.regionOf].map(async ([adminUrl, databases]) => { await this.follow(adminUrl, databases, signal) }))
  }

  /**
   * One server's backends. A server that cannot be reached (down, crashed by
   * a fault) leaves its regions' lists as they were; the next look connects
   * again.
   */
  private async follow (adminUrl: string, databases: Map<string, string>, signal: AbortSignal): Promise<void> {
    let client: pg.Client | undefined
    try {
      while (!signal.aborted) {
        try {
          if (client === undefined) {
            client = new pg.Client({ connectionString: adminUrl })
            client.on('error', () => undefined) // a lost connection fails the next look
            await client.connect()
          }
          const { rows } = await client.query<{ datname: string, pid: number }>('SELECT datname, pid FROM pg_stat_activity WHERE datname = ANY ($1)', [[...databases.keys()]])
          const next = new Map<string, number[]>()
          for (const r of rows) {
            if (!this.isLocalPostgres(r.pid)) continue
            const region = databases.get(r.datname)!
            next.set(region, [...(next.get(region) ?? []), r.pid])
          }
          for (const region of databases.values()) this.pids.set(region, next.get(region) ?? [])
          // what was learnt of pids no longer listed is dropped: a long run's backends come and go
          const listed = new Set(rows.map(r => r.pid))
          for (const pid of this.local.keys()) if (!listed.has(pid) && !this.listedElsewhere(pid)) this.local.delete(pid)
        } catch {
          await client?.end().catch(() => undefined)
          client = undefined
        }
        await sleep(LOOK_EVERY_MS, signal).catch(() => undefined)
      }
    } finally {
      await client?.end().catch(() => undefined)
    }
  }

  private listedElsewhere (pid: number): boolean {
    for (const pids of this.pids.values()) if (pids.includes(pid)) return true
    return false
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
