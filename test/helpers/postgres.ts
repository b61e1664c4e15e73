import { randomBytes } from 'node:crypto'
import pg from 'pg'

export const PG_ADMIN_URL = process.env.CONVERGE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres'

/** Creates a fresh database for a test; drop() removes it (and any connection still open to it). */
export async function createDatabase (prefix = 'converge_test'): Promise<{ url: string, name: string, drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL })
  await admin.connect()
  try { await admin.query(`CREATE DATABASE ${name}`) } finally { await admin.end() }
  const url = new URL(PG_ADMIN_URL)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    name,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL })
      await c.connect()
      try { await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) } finally { await c.end() }
    }
  }
}

/** Runs SQL on a database with a short-lived connection. */
export async function sql (url: string, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try { return await c.query(text, params) } finally { await c.end() }
}

/**
 * The change log one key a row, as a subquery (tbl, xid, seq, key, origin):
 * a statement trigger's log row holds a statement's keys as a jsonb array, a
 * row trigger's (or an earlier version's) one key.
 */
export const LOGGED_KEYS = `(SELECT c.tbl, c.xid, c.seq, e.key, c.origin FROM converge.changes c,
  LATERAL jsonb_array_elements(CASE jsonb_typeof(c.key) WHEN 'array' THEN c.key ELSE jsonb_build_array(c.key) END) AS e(key))`

export const ORDERS_DDL = `CREATE TABLE public.orders (
  order_id bigint PRIMARY KEY, customer text NOT NULL, region text NOT NULL, status text NOT NULL,
  amount numeric(12,2) NOT NULL, currency text NOT NULL, items integer NOT NULL, note text, updated_at timestamptz NOT NULL)`

const PG_TYPES: Record<string, string> = {
  integer: 'bigint', float: 'double precision', decimal: 'numeric', string: 'text', boolean: 'boolean', timestamp: 'timestamptz', json: 'jsonb', bytes: 'bytea'
}

/** DDL for a table holding a dataset schema, as an operator would write it. */
export function createTableSql (table: string, schema: { columns: Array<{ name: string, type: string, nullable?: boolean }>, primaryKey: string[] }): string {
  const q = (n: string): string => `"${n.replace(/"/g, '""')}"`
  const cols = schema.columns.map(c => `${q(c.name)} ${PG_TYPES[c.type]}${c.nullable === false || schema.primaryKey.includes(c.name) ? ' NOT NULL' : ''}`)
  return `CREATE TABLE ${table} (${cols.join(', ')}, PRIMARY KEY (${schema.primaryKey.map(q).join(', ')}))`
}
