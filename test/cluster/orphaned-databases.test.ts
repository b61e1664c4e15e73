/**
 * Databases a run makes on the shared PostgreSQL server carry a note of
 * whose they are, so that the next run drops the ones a killed run left
 * behind, and nothing else.
 */
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { DatasetModel } from '../../cluster/dataset-model.ts'
import { provisionStores, removeOrphanedDatabases } from '../../cluster/region-stores.ts'
import { PG_ADMIN_URL, sql } from '../helpers/postgres.ts'

const made: string[] = []
afterEach(async () => {
  for (const name of made.splice(0)) await sql(PG_ADMIN_URL, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
})

async function databaseNoted (label: string, note: string | null): Promise<string> {
  const name = `converge_cluster_${randomBytes(4).toString('hex')}_${label}`
  made.push(name)
  await sql(PG_ADMIN_URL, `CREATE DATABASE "${name}"`)
  if (note !== null) await sql(PG_ADMIN_URL, `COMMENT ON DATABASE "${name}" IS '${note.replace(/'/g, "''")}'`)
  return name
}

async function exists (name: string): Promise<boolean> {
  const { rows } = await sql(PG_ADMIN_URL, 'SELECT 1 FROM pg_database WHERE datname = $1', [name])
  return rows.length === 1
}

async function noteOf (name: string): Promise<string | null> {
  const { rows: [row] } = await sql(PG_ADMIN_URL, "SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = $1", [name])
  return (row as { note: string | null } | undefined)?.note ?? null
}

describe('databases a killed run left on the shared server', () => {
  it('are dropped by the next sweep; those of a live run, kept ones, another machine\'s and unnoted ones stay', async () => {
    // a process that has exited: the owner of a run killed with SIGKILL
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!
    const orphan = await databaseNoted('orphan', `converge cluster run: owner ${gone} on ${hostname()}`)
    const live = await databaseNoted('live', `converge cluster run: owner ${process.pid} on ${hostname()}`)
    const elsewhere = await databaseNoted('elsewhere', `converge cluster run: owner ${gone} on not-${hostname()}`)
    const kept = await databaseNoted('kept', 'converge cluster run: kept')
    const unnoted = await databaseNoted('unnoted', null)

    const dropped = await removeOrphanedDatabases(PG_ADMIN_URL)
    expect(dropped).toContain(orphan)
    expect(dropped.filter(name => [live, elsewhere, kept, unnoted].includes(name))).toEqual([])
    expect(await exists(orphan)).toBe(false)
    for (const name of [live, elsewhere, kept, unnoted]) expect(await exists(name)).toBe(true)
  })

  it('a run notes its databases as its own, and as kept when it keeps them (--keep)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'converge-sweep-'))
    const provisioned = provisionStores({ dir, regions: [{ name: 'eu-west', store: 'postgres' }], datasets: [new DatasetModel('orders', 10)], pgAdminUrl: PG_ADMIN_URL, signal: AbortSignal.timeout(60_000) })
    try {
      await provisioned.ready
      const name = provisioned.stores[0]!.pg!.database
      made.push(name)
      expect(await noteOf(name)).toBe(`converge cluster run: owner ${process.pid} on ${hostname()}`)
      expect(await removeOrphanedDatabases(PG_ADMIN_URL)).not.toContain(name)
      await provisioned.drop({ keep: true })
      expect(await exists(name)).toBe(true)
      expect(await noteOf(name)).toBe('converge cluster run: kept')
    } finally {
      await provisioned.drop()
      await rm(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
