import { RowCodec } from '../../src/digest/row-codec.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import { createDatabase, createTableSql, sql } from '../helpers/postgres.ts'
import { describeReplicaStoreCompliance } from './compliance.ts'

describeReplicaStoreCompliance('PostgreSQL', async schema => {
  const db = await createDatabase()
  await sql(db.url, createTableSql('public.rows', schema))
  const codec = new RowCodec(schema)
  const store = new PgStore({ connectionString: db.url, table: 'public.rows', codec, pollMs: 50 })
  await store.open()
  // another writer: its own pool and connection, no origin, as an application beside the agent
  const other = new PgStore({ connectionString: db.url, table: 'public.rows', codec })
  await other.open()
  return {
    store,
    openAgain: () => new PgStore({ connectionString: db.url, table: 'public.rows', codec, pollMs: 50 }),
    writeBehind: async (upserts, deletes) => { await other.apply({ upserts: upserts.map(r => codec.encodeRow(r)), deletes: deletes.map(k => codec.encodeKey(k)) }) },
    cleanup: async () => { await other.close(); await store.close(); await db.drop() }
  }
})
