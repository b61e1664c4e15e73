import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync, type SQLInputValue } from 'node:sqlite'
import { RowCodec, type Row, type Value } from '../../src/digest/row-codec.ts'
import type { ColumnType, DatasetSchema } from '../../src/digest/schema.ts'
import { SqliteStore } from '../../src/stores/sqlite-store.ts'
import { describeReplicaStoreCompliance, type StoreUnderTest } from './compliance.ts'

/** A value as another application would write it with plain SQL (timestamps as ISO text, booleans as 0/1). */
function plain (type: ColumnType, v: Value): SQLInputValue {
  if (v === null) return null
  switch (type) {
    case 'integer': return BigInt(v as number | bigint)
    case 'boolean': return v === true ? 1 : 0
    case 'timestamp': return new Date(v as number).toISOString()
    case 'float': return Number.isNaN(v) ? 'NaN' : v as number
    default: return v as SQLInputValue
  }
}

async function makeSqliteStore (schema: DatasetSchema): Promise<StoreUnderTest> {
  const dir = await mkdtemp(join(tmpdir(), 'converge-sqlite-compliance-'))
  const path = join(dir, 'replica.db')
  const codec = new RowCodec(schema)
  const store = new SqliteStore({ path, table: 'rows', codec, createTable: true, pollMs: 50 })
  await store.open()
  // a second connection, as another application on the same file
  const other = new DatabaseSync(path, { timeout: 5000 })
  const q = (name: string): string => `"${name.replaceAll('"', '""')}"`
  const keyColumns = schema.primaryKey.map(name => schema.columns.find(c => c.name === name)!)
  const upsert = other.prepare(`INSERT OR REPLACE INTO rows (${schema.columns.map(c => q(c.name)).join(', ')}) VALUES (${schema.columns.map(() => '?').join(', ')})`)
  const remove = other.prepare(`DELETE FROM rows WHERE ${keyColumns.map(c => `${q(c.name)} = ?`).join(' AND ')}`)
  const writeBehind = async (upserts: Row[], deletes: Row[]): Promise<void> => {
    other.exec('BEGIN IMMEDIATE')
    for (const row of upserts) upsert.run(...codec.normalize(row).map((v, i) => plain(schema.columns[i]!.type, v)))
    for (const key of deletes) {
      const values = codec.decodeKey(codec.encodeKey(key))
      remove.run(...keyColumns.map(c => plain(c.type, values[c.name] as Value)))
    }
    other.exec('COMMIT')
  }
  const cleanup = async (): Promise<void> => {
    other.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
  return { store, writeBehind, openAgain: () => new SqliteStore({ path, table: 'rows', codec, pollMs: 50 }), cleanup }
}

describeReplicaStoreCompliance('SQLite', makeSqliteStore)
