/**
 * Microsecond timestamps (`precision: us`) through the real stores: a
 * PostgreSQL row read by scan, by key and by the change feed gives its
 * microseconds, by the direct COPY encoder and by the general way alike; a
 * fix writes them back exactly, a timestamptz key included; SQLite keeps
 * them as text or as an integer count. A millisecond column reads and writes
 * as before.
 */
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { RowCodec } from '../../src/digest/row-codec.ts'
import type { DatasetSchema } from '../../src/digest/schema.ts'
import { PgStore, readCatalogSchema } from '../../src/stores/pg-store.ts'
import { SqliteStore } from '../../src/stores/sqlite-store.ts'
import type { ChangeBatch } from '../../src/stores/replica-store.ts'
import { tempDir } from '../helpers/agents.ts'
import { createDatabase, sql } from '../helpers/postgres.ts'

const DDL = `CREATE TABLE public.events (
  at timestamptz NOT NULL, id integer NOT NULL, seen timestamp, noted timestamptz(3), label text NOT NULL, PRIMARY KEY (at, id))`

const micros = (iso: string): number => {
  const [whole, fraction] = iso.replace('Z', '').split('.')
  return Date.parse(`${whole!}Z`) * 1000 + Number((fraction ?? '').padEnd(6, '0'))
}

describe('microsecond timestamps in the stores', () => {
  let db: Awaited<ReturnType<typeof createDatabase>>
  let schema: DatasetSchema
  let codec: RowCodec
  let store: PgStore

  beforeEach(async () => {
    db = await createDatabase()
    await sql(db.url, DDL)
    await sql(db.url, `INSERT INTO public.events VALUES
      ('2026-11-26 12:00:00.123456+00', 1, '2026-11-26 12:00:00.000001', '2026-11-26 12:00:00.123+00', 'plain'),
      ('2026-11-26 12:00:00.123457+00', 1, NULL, NULL, 'café'),
      ('1969-12-31 23:59:59.999999+00', 2, '9999-12-31 23:59:59.999999', NULL, 'plain')`)
    schema = { ...await readCatalogSchema(db.url, 'public.events'), version: 1, ignoreColumns: [] }
    codec = new RowCodec(schema)
    store = new PgStore({ connectionString: db.url, table: 'public.events', codec, pollMs: 200 })
    await store.open()
  })
  afterEach(async () => {
    await store.close()
    await db.drop()
  })

  const values = (row: Uint8Array): unknown[] => codec.decodeValues(row)

  it('reads microseconds by scan (direct and general way), by key and from the change feed', async () => {
    expect(schema.columns.map(c => c.precision)).toEqual(['us', undefined, 'us', undefined, undefined])
    const scanned: unknown[][] = []
    for await (const batch of store.scan()) for (const r of batch) scanned.push(values(r.row))
    scanned.sort((a, b) => Number(a[0]) - Number(b[0]) || Number(a[1]) - Number(b[1]))
    expect(scanned).toEqual([
      // before 1970; a timestamp past 2255 is a bigint of microseconds
      [-1, 2, 253402300799999999n, null, 'plain'],
      // the direct COPY encoder's row; the millisecond column as before
      [micros('2026-11-26T12:00:00.123456Z'), 1, micros('2026-11-26T12:00:00.000001Z'), Date.parse('2026-11-26T12:00:00.123Z'), 'plain'],
      // a non-ASCII label sends this line the general way
      [micros('2026-11-26T12:00:00.123457Z'), 1, null, null, 'café']
    ])
    // two rows one microsecond apart in the key are two keys
    const [got] = await store.get([codec.encodeKey({ at: '2026-11-26T12:00:00.123457Z', id: 1 })])
    expect(values(got!)[4]).toBe('café')
    expect(await store.get([codec.encodeKey({ at: '2026-11-26T12:00:00.123458Z', id: 1 })])).toEqual([undefined])

    // the feed takes the key from the change log's JSON, to the microsecond
    const since = await store.lastSeq()
    await sql(db.url, "UPDATE public.events SET label = 'moved' WHERE at = '2026-11-26 12:00:00.123457+00'")
    const seen: ChangeBatch[] = []
    for await (const batch of store.changes({ since, signal: AbortSignal.timeout(10_000) })) { seen.push(batch); break }
    expect(seen[0]!.changes.map(c => codec.decodeKey(c.key))).toEqual([{ at: micros('2026-11-26T12:00:00.123457Z'), id: 1 }])
    expect(values(seen[0]!.changes[0]!.row!)[4]).toBe('moved')
  })

  it('writes microseconds back exactly, keys and values, and deletes by a microsecond key', async () => {
    const row = codec.encodeRow({ at: '2030-01-02T03:04:05.678901Z', id: 9, seen: '2030-01-02T03:04:05.000009Z', noted: '2030-01-02T03:04:05.678Z', label: 'fixed' })
    await store.apply({ upserts: [row], deletes: [codec.encodeKey({ at: '2026-11-26T12:00:00.123456Z', id: 1 })] })
    const { rows } = await sql(db.url, "SET TIME ZONE 'UTC'; SELECT at::text, seen::text, noted::text FROM public.events ORDER BY at, id")
      .then(r => Array.isArray(r) ? r[1]! : r)
    expect(rows).toEqual([
      { at: '1969-12-31 23:59:59.999999+00', seen: '9999-12-31 23:59:59.999999', noted: null },
      { at: '2026-11-26 12:00:00.123457+00', seen: null, noted: null },
      { at: '2030-01-02 03:04:05.678901+00', seen: '2030-01-02 03:04:05.000009', noted: '2030-01-02 03:04:05.678+00' }
    ])
    const [back] = await store.get([codec.encodeKey({ at: '2030-01-02T03:04:05.678901Z', id: 9 })])
    expect(Buffer.from(back!).equals(Buffer.from(row))).toBe(true)
  })

  it('keeps microseconds in SQLite, as ISO text or as an integer count', async () => {
    const dir = await tempDir()
    try {
      const lite = new SqliteStore({ path: join(dir.path, 'events.db'), table: 'events', codec, createTable: true })
      await lite.open()
      const rows: Uint8Array[] = []
      for await (const batch of store.scan()) for (const r of batch) rows.push(r.row)
      await lite.apply({ upserts: rows, deletes: [] })
      const got: Uint8Array[] = []
      for await (const batch of lite.scan()) for (const r of batch) got.push(r.row)
      const hex = (list: Uint8Array[]): string[] => list.map(r => Buffer.from(r).toString('hex')).sort()
      expect(hex(got)).toEqual(hex(rows))
      await lite.close()

      // a column declared INTEGER holds the microsecond count
      const { DatabaseSync } = await import('node:sqlite')
      const file = new DatabaseSync(join(dir.path, 'ints.db'))
      file.exec('CREATE TABLE events (at INTEGER NOT NULL, id INTEGER NOT NULL, seen INTEGER, noted INTEGER, label TEXT NOT NULL, PRIMARY KEY (at, id))')
      file.close()
      const ints = new SqliteStore({ path: join(dir.path, 'ints.db'), table: 'events', codec })
      await ints.open()
      await ints.apply({ upserts: rows, deletes: [] })
      const back: Uint8Array[] = []
      for await (const batch of ints.scan()) for (const r of batch) back.push(r.row)
      expect(hex(back)).toEqual(hex(rows))
      await ints.close()
      const check = new DatabaseSync(join(dir.path, 'ints.db'), { readBigInts: true })
      expect(check.prepare('SELECT at FROM events WHERE id = 2').get()).toEqual({ at: -1n })
      check.close()
    } finally {
      await dir.remove()
    }
  })
})
