import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RowCodec } from '../../src/digest/row-codec.ts'
import type { DatasetSchema } from '../../src/digest/schema.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import type { ReplicaStore } from '../../src/stores/replica-store.ts'
import { SqliteStore } from '../../src/stores/sqlite-store.ts'
import { createDatabase, sql } from '../helpers/postgres.ts'

/** One logical row, written by each database's own SQL (not through converge), must digest the same everywhere. */
const schema: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'big', type: 'integer' },
    { name: 'price', type: 'decimal' },
    { name: 'ratio', type: 'float' },
    { name: 'flag', type: 'boolean' },
    { name: 'at_utc', type: 'timestamp' },
    { name: 'at_local', type: 'timestamp' },
    { name: 'doc', type: 'json' },
    { name: 'blob', type: 'bytes' },
    { name: 'label', type: 'string' },
    { name: 'missing', type: 'string', nullable: true }
  ],
  primaryKey: ['id'],
  ignoreColumns: []
}
const codec = new RowCodec(schema)

async function onlyRow (store: ReplicaStore): Promise<Uint8Array> {
  const rows: Uint8Array[] = []
  for await (const batch of store.scan()) for (const r of batch) rows.push(r.row)
  expect(rows).toHaveLength(1)
  return rows[0]!
}

describe('the same logical row in PostgreSQL, SQLite and LevelDB', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>
  let dir: string
  beforeAll(async () => {
    db = await createDatabase()
    dir = await mkdtemp(join(tmpdir(), 'converge-cross-'))
  })
  afterAll(async () => {
    await db.drop()
    await rm(dir, { recursive: true, force: true })
  })

  it('gives the same canonical bytes and row digest', async () => {
    await sql(db.url, `CREATE TABLE t (id int PRIMARY KEY, big bigint, price numeric(10,3), ratio double precision, flag boolean,
      at_utc timestamptz, at_local timestamp, doc jsonb, blob bytea, label varchar(40), missing text)`)
    await sql(db.url, `INSERT INTO t VALUES (1, 9007199254740993, 12.500, 0.25, true,
      '2026-03-01 12:30:00.123+02', '2026-03-01 10:30:00.123', '{"b": [1, 2], "a": "x"}', '\\x00ff10', 'naïve 東京 🚀', NULL)`)
    const pg = new PgStore({ connectionString: db.url, table: 't', codec })
    await pg.open()
    const fromPg = await onlyRow(pg)
    await pg.close()

    const file = join(dir, 'lite.db')
    const lite = new DatabaseSync(file)
    lite.exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, big INTEGER, price TEXT, ratio REAL, flag INTEGER, at_utc TEXT, at_local TEXT, doc TEXT, blob BLOB, label TEXT, missing TEXT)`)
    lite.prepare('INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
      1, 9007199254740993n, '12.5', 0.25, 1, '2026-03-01T10:30:00.123Z', '2026-03-01 10:30:00.123', '{"a":"x","b":[1,2]}', new Uint8Array([0, 255, 16]), 'naïve 東京 🚀', null)
    lite.close()
    const sqlite = new SqliteStore({ path: file, table: 't', codec })
    await sqlite.open()
    const fromSqlite = await onlyRow(sqlite)
    await sqlite.close()

    const level = new LevelStore({ path: join(dir, 'level'), codec })
    await level.open()
    await level.apply({
      upserts: [codec.encodeRow({
        id: 1, big: 9007199254740993n, price: '12.50', ratio: 0.25, flag: true, at_utc: new Date('2026-03-01T10:30:00.123Z'),
        at_local: Date.UTC(2026, 2, 1, 10, 30, 0, 123), doc: { b: [1, 2], a: 'x' }, blob: Buffer.from([0, 255, 16]), label: 'naïve 東京 🚀', missing: null
      })],
      deletes: []
    })
    const fromLevel = await onlyRow(level)
    await level.close()

    const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
    expect(hex(fromPg)).toBe(hex(fromLevel))
    expect(hex(fromSqlite)).toBe(hex(fromLevel))
    expect(codec.rowDigest(fromPg)).toBe(codec.rowDigest(fromSqlite))
    expect(codec.decodeRow(fromPg)).toMatchObject({ big: 9007199254740993n, price: '12.5', doc: '{"a":"x","b":[1,2]}', missing: null })
  })
})
