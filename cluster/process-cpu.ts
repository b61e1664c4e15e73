/**
 * CPU time of processes on this machine, from /proc/<pid>/stat (Linux): the
 * runner reads it for each agent and for each PostgreSQL region's server
 * backends every poll, so a run says where its CPU went (the agents or the
 * databases), not only how long it took. Elsewhere (no /proc) nothing is
 * read and the figures are absent.
 *
 * The files are read synchronously: /proc makes them up in memory, so a read
 * takes microseconds and never waits on a disk, while fs/promises sends its
 * open, fstat, read and close each through the thread pool. Reading a
 * score of them every 100 ms that way cost the runner about 7 % of a core
 * (profiled), taken from the agents it measures on a small machine.
 */
import { readFileSync } from 'node:fs'

/** /proc gives times in USER_HZ ticks, which Linux fixes at 100 a second for user space whatever the kernel's own HZ. */
const TICKS_PER_SECOND = 100

/**
 * User + system CPU in ms from a /proc/<pid>/stat line: fields 14 and 15.
 * Field 2, the command name in parentheses, may itself hold spaces and
 * parentheses, so the fields are counted from after its last `)`.
 */
export function cpuMsOfStat (stat: string): number | undefined {
  const close = stat.lastIndexOf(')')
  if (close < 0) return undefined
  // from field 3 (the state) on
  const fields = stat.slice(close + 2).split(' ')
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  return Number.isInteger(utime) && Number.isInteger(stime) ? (utime + stime) * 1000 / TICKS_PER_SECOND : undefined
}

/** A process's CPU so far in ms; undefined when it is gone or there is no /proc. */
export function processCpuMs (pid: number): number | undefined {
  try {
    return cpuMsOfStat(readFileSync(`/proc/${pid}/stat`, 'latin1'))
  } catch {
    return undefined
  }
}

/** The name a process runs under (/proc/<pid>/comm); undefined when it is gone or there is no /proc. */
export function processName (pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  } catch {
    return undefined
  }
}

/**
 * CPU spent by a changing set of processes since the first reading of each:
 * every reading adds what each pid spent since the one before. A pid counts
 * from when it is first read (what it did before, a database's seeding, an
 * agent's start, is not what is being measured); one that ends keeps what
 * was read of it. So the total never goes down, and two readings' difference
 * is the set's CPU between them, less what processes started or ended in
 * between spent unread. Undefined until some process has been read (none
 * yet, or no /proc): no figure rather than a zero.
 */
export class CpuTotal {
  private readonly last = new Map<number, number>()
  private total: number | undefined

  read (pids: Iterable<number>): number | undefined {
    const now = new Set(pids)
    for (const pid of now) {
      const ms = processCpuMs(pid)
      if (ms === undefined) continue
      this.total ??= 0
      const before = this.last.get(pid)
      if (before !== undefined && ms > before) this.total += ms - before
      this.last.set(pid, ms)
    }
    for (const pid of this.last.keys()) if (!now.has(pid)) this.last.delete(pid)
    return this.total
  }
}
