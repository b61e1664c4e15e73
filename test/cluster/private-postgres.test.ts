/**
 * A region's own PostgreSQL server (cluster/private-postgres.ts): made, and
 * removed by the next run when the run that made it was killed before it
 * could. Needs PostgreSQL's initdb and pg_ctl: skipped without them outside
 * CI (CI=true), where it must run.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { removeOrphanedServers, serverBinaries, startPrivatePostgres } from '../../cluster/private-postgres.ts'

const canMakeServers = await serverBinaries() !== undefined || process.env.CI === 'true'

async function answers (url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  c.on('error', () => undefined)
  try { await c.connect(); await c.query('SELECT 1'); return true } catch { return false } finally { await c.end().catch(() => undefined) }
}

describe.skipIf(!canMakeServers)('a region\'s own PostgreSQL server', () => {
  it('is stopped and removed by a later sweep once the process that made it is gone, and left alone while it lives', async () => {
    const orphan = await startPrivatePostgres('sweep-orphan')
    const kept = await startPrivatePostgres('sweep-kept')
    try {
      const home = dirname(orphan.dataDir)
      // the run that made it is killed: its owner file names a process that has exited
      const gone = spawnSync(process.execPath, ['-e', '0']).pid!
      await writeFile(join(home, 'owner.pid'), `${gone}\n`)
      expect(await answers(orphan.adminUrl)).toBe(true)

      const removed = await removeOrphanedServers()
      expect(removed).toContain(home)
      expect(existsSync(home)).toBe(false)
      expect(await answers(orphan.adminUrl)).toBe(false)
      // this process's own server is not an orphan
      expect(await answers(kept.adminUrl)).toBe(true)
      expect(existsSync(kept.dataDir)).toBe(true)
      // nor, ever, is a server kept for a person to look at (--keep): it names no owner once stopped, so no later
      // run, whatever becomes of this process, takes it for a killed run's
      await kept.remove({ keepData: true })
      expect(existsSync(join(kept.home, 'owner.pid'))).toBe(false)
      expect(await removeOrphanedServers()).not.toContain(kept.home)
      expect(existsSync(kept.dataDir)).toBe(true)
    } finally {
      await orphan.remove()
      await kept.remove()
    }
  }, 60_000)
})
