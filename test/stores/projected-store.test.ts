import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Projection } from '../../src/digest/schema-compat.ts'
import type { DatasetSchema } from '../../src/digest/schema.ts'
import { ProjectedStore } from '../../src/stores/projected-store.ts'
import { SqliteStore } from '../../src/stores/sqlite-store.ts'
import { RowCodec } from '../../src/digest/row-codec.ts'

/** The store's own schema: `note` is a local column the comparison schema lacks. */
const own: DatasetSchema = { version: 1, columns: [{ name: 'id', type: 'integer' }, { name: 'body', type: 'string' }, { name: 'note', type: 'string', nullable: true }], primaryKey: ['id'], ignoreColumns: [] }
const shape: DatasetSchema = { version: 1, columns: [{ name: 'id', type: 'integer' }, { name: 'body', type: 'string' }], primaryKey: ['id'], ignoreColumns: [] }

describe('a store seen through a comparison schema (SQLite)', () => {
  let dir: string
  let base: SqliteStore
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'converge-projected-'))
    const db = new DatabaseSync(join(dir, 'r.db'))
    db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, note TEXT)')
    // id 1: the trigger sets a column the comparison does not look at; id 2: one it does
    db.exec("CREATE TRIGGER stamp AFTER INSERT ON notes WHEN NEW.id = 1 BEGIN UPDATE notes SET note = 'stamped' WHERE id = 1; END")
    db.exec('CREATE TRIGGER shout AFTER INSERT ON notes WHEN NEW.id = 2 BEGIN UPDATE notes SET body = upper(body) WHERE id = 2; END')
    db.close()
    base = new SqliteStore({ path: join(dir, 'r.db'), table: 'notes', codec: new RowCodec(own) })
    await base.open()
  })
  afterEach(async () => { await base.close(); await rm(dir, { recursive: true, force: true }) })

  it('reports a row the store changed as written only where the comparison sees the change, as the comparison sees the row', async () => {
    const view = new ProjectedStore(base, new Projection(own, shape))
    const codec = view.codec
    const result = await view.apply({ upserts: [1, 2, 3].map(id => codec.encodeRow({ id, body: `note ${id}` })), deletes: [] })
    expect((result.rewritten ?? []).map(r => ({ index: r.index, row: codec.decodeRow(r.row) }))).toEqual([{ index: 1, row: { id: 2, body: 'NOTE 2' } }])
  })

  it('does not pass on the rows a caller expects: they are in the comparison schema, and the store reads its own', async () => {
    const view = new ProjectedStore(base, new Projection(own, shape))
    const codec = view.codec
    await view.apply({ upserts: [codec.encodeRow({ id: 3, body: 'first' })], deletes: [] })
    const seen: Array<Parameters<SqliteStore['apply']>[0]> = []
    const apply = base.apply.bind(base)
    base.apply = async (request, options) => { seen.push(request); return await apply(request, options) }
    const expected = [{ row: codec.encodeRow({ id: 3, body: 'first' }), version: '7' }]
    const result = await view.apply({ upserts: [codec.encodeRow({ id: 3, body: 'second' })], deletes: [], expected })
    expect(seen).toHaveLength(1)
    expect('expected' in seen[0]!).toBe(false)
    expect(result.before.map(r => (r === null ? null : codec.decodeRow(r)))).toEqual([{ id: 3, body: 'first' }])
  })
})
