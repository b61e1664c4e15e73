/**
 * A PostgreSQL table as a replica store (`pg`).
 *
 * Rows come out through COPY … TO STDOUT (pg-copy.ts), whose bare lines turn
 * straight into canonical bytes: scans in bounded memory, and reads by key
 * (get, the change feed's rows, a fix's before-images) with the key list
 * written into the statement as array literals (pg-literals.ts). Fixes apply
 * in one transaction: before-images read `FOR UPDATE`, then `INSERT … ON
 * CONFLICT DO UPDATE` and `DELETE`, each as one statement per batch over
 * typed arrays, one per column; or, for rows the feed read with their
 * versions (xmin), written only while still those versions, without the
 * read (writeIfUnchanged).
 *
 * Change capture uses triggers, not logical decoding: logical decoding needs
 * `wal_level = logical` and a server restart, and a replication slot that
 * pins WAL while an agent is down; triggers work on any server the agent can
 * write to. Statement triggers (a row trigger on a partitioned table, see
 * captureSetup) record each changed key in `converge.changes` (a
 * statement's keys as jsonb arrays of up to KEYS_PER_LOG_ROW, a log row
 * each; a row trigger's one key a row) with the writing transaction's id
 * (xid8) and the session's `converge.origin` (the agent's own fixes say
 * 'converge'); another statement trigger sends NOTIFY
 * so the feed wakes at once (it also polls, so a missed notification or a
 * reconnect loses nothing: the log is a table).
 *
 * The feed reads whole transactions in xid order, and only those older than
 * every transaction still running in the database (HORIZON), so a
 * transaction that commits late can never be skipped: a change's position is
 * its transaction id. Rows are re-read when the feed delivers a change, so a
 * batch carries the row as it is now (or null when gone).
 */
import { createHash, randomUUID } from 'node:crypto'
import pg from 'pg'
import { SCAN_BATCH_ROWS } from '../constants.ts'
import { AbortedError, ChangesTrimmedError, ConvergeError, RowEncodingError, StoreNotOpenError, StoreReadOnlyError, StoreSchemaChangedError, StoreSchemaError, StoreSetupError, StoreUnavailableError, throwIfAborted } from '../errors.ts'
import { normalizeValue, packValues, type Row, type RowCodec, type Value } from '../digest/row-codec.ts'
import type { ColumnType, DatasetSchema } from '../digest/schema.ts'
import type { TimePrecision } from '../digest/timestamp.ts'
import { CopyRows, DATE_OID, decodeFields, fieldDecoder, NEWLINE, TAB, TIMESTAMP_OID, TIMESTAMPTZ_OID } from './pg-copy.ts'
import { canonicalLineEncoder } from './pg-copy-canonical.ts'
import { arrayLiteral, dollarQuoted, pgText } from './pg-literals.ts'
import { latin1Of, sameBytes } from '../util/bytes.ts'
import { FIX_ORIGIN, type ApplyRequest, type ApplyResult, type CaptureRemoval, type ChangeBatch, type ChangesOptions, type ExpectedRow, type GetOptions, type ReplicaStore, type RewrittenRow, type StoredRow, type StoreOpenOptions } from './replica-store.ts'

export interface PgStoreInit {
  /** e.g. postgres://postgres@127.0.0.1:5432/shop */
  connectionString: string
  /** Table name, optionally schema-qualified: `public.orders`. */
  table: string
  codec: RowCodec
  /** How often the change feed polls when no NOTIFY arrives. Default 1000 ms. */
  pollMs?: number
}

/**
 * A notified change is read only once its transaction is older than every
 * transaction still running in its database (see HORIZON), which a long
 * write transaction in the same database can delay by seconds; no second
 * notification comes when it ends. So after a notification the feed looks
 * again after this long, doubling up to the poll interval, instead of
 * sleeping a whole poll interval.
 */
const NOTIFIED_RETRY_MS = 25
/** How long the change feed's LISTEN connection may take to connect before the feed goes on polling without it. */
const LISTEN_CONNECT_TIMEOUT_MS = 5000
/** After its LISTEN connection is lost, the feed connects again this soon, then twice as late each time it fails, up to LISTEN_RETRY_MAX_MS. */
const LISTEN_RETRY_MS = 250
const LISTEN_RETRY_MAX_MS = 5000
/**
 * The feed's horizon, as an xid8 expression: every transaction below it has
 * ended, or belongs to another database. It is the oldest transaction of
 * the current snapshot still running, leaving out those that
 * pg_stat_activity shows working in another database (a transaction never
 * changes database, so it cannot write this database's log), and the
 * snapshot's xmax when none is left. pg_snapshot_xmin alone would be
 * server-wide: one long write in another database on the same server (a
 * bulk load, another application's batch job) held every feed here back
 * until it ended, and lastSeq() stayed behind writes that had committed.
 *
 * The activity is read after the snapshot is taken, so a transaction that
 * ended in between is not listed and holds the horizon (for this read
 * only). So do prepared transactions, backends without a database and any
 * transaction whose backend_xid the role cannot see: when in doubt, wait.
 * Both sides are compared on the low 32 bits (backend_xid is a 32-bit xid;
 * running transactions are within 2^31 of each other, so this is exact).
 */
const HORIZON = `(SELECT coalesce(
    (SELECT min(x) FROM pg_snapshot_xip(s) x WHERE (x::text::numeric % 4294967296) NOT IN (
      SELECT a.backend_xid::text::numeric FROM pg_stat_activity a
        WHERE a.backend_xid IS NOT NULL AND a.datid IS NOT NULL AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))),
    pg_snapshot_xmax(s)) FROM pg_current_snapshot() s)`
/**
 * Keys of the change log read per query: whole transactions, the first one
 * whole whatever its size. (The count that picks them reads at most this
 * many log rows, each of one key or up to KEYS_PER_LOG_ROW.)
 */
const CHANGE_READ_LIMIT = 10_000
/**
 * Keys a statement trigger logs in one row of the change log, as one jsonb
 * array: a statement that changes more rows logs more rows. A row per key
 * cost a heap row, a B-tree entry and a WAL record per changed key (see
 * captureSetup). In psql, logging 10,000 keys 64 or 500 to a row cost the
 * same, all 10,000 in one row more (a value that large is stored out of
 * line, in chunks); and a bound keeps a row far below jsonb's size limit
 * however many rows a statement changes.
 */
export const KEYS_PER_LOG_ROW = 500
/** Rows per write statement in apply. */
const WRITE_BATCH = 5000
/** Keys per statement when rows are read by key (the key list travels in the statement's text). */
const KEY_READ_BATCH = 10_000
/**
 * get() splits a large read among this many transactions at once, of at
 * least PARALLEL_READ_MIN_KEYS keys each: the server reads the parts on
 * several cores at once (one backend is one core), and a sync's reads of
 * some 10,000 rows are on its critical path. The pool keeps a connection
 * for the change feed and fixes.
 */
const PARALLEL_READS = 3
const PARALLEL_READ_MIN_KEYS = 2500

/** text: its type parser is the identity, which tells the types read as their text. */
const TEXT_OID = 25
/** SQLSTATE insufficient_privilege: the role may not do what the capture's setup does. */
const INSUFFICIENT_PRIVILEGE = '42501'

/** Type oids of PostgreSQL's times, which a column of `precision: us` reads as text. */
const TIME_OIDS = new Set([TIMESTAMPTZ_OID, TIMESTAMP_OID, DATE_OID])

/** A canonical key as the map key rows are filed under here (latin1Of: no Buffer made, half the length of hex). */
const idOf = latin1Of
const quote = (name: string): string => `"${name.replace(/"/g, '""')}"`
const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`

/**
 * How the store reads a value's text: timestamp without time zone as UTC,
 * not in the host's zone; dates stay text; json and jsonb stay JSON text, so
 * a JSON string or null scalar is not mistaken for text or SQL NULL. (COPY
 * lines go through the same parsers; the tests read the query path with them.)
 */
export const typeParsers = {
  getTypeParser: (oid: number, format?: string): ((value: string) => unknown) => {
    if (oid === 1114) return (value: string) => new Date(`${value.replace(' ', 'T')}Z`)
    if (oid === 1082 || oid === 114 || oid === 3802) return (value: string) => value
    return (pg.types.getTypeParser as (oid: number, format?: string) => (value: string) => unknown)(oid, format)
  }
}

interface ColumnInfo { name: string, type: ColumnType, pgType: string, precision?: TimePrecision }

/**
 * The keys of a transaction as its log rows hold them, oldest row first: a
 * row trigger's row holds one key (an object), a statement trigger's a
 * statement's worth (an array of them; see KEYS_PER_LOG_ROW).
 */
function loggedKeys (rows: ReadonlyArray<Row | Row[]>): Row[] {
  const keys: Row[] = []
  for (const r of rows) {
    if (Array.isArray(r)) { for (const k of r) keys.push(k) } else keys.push(r)
  }
  return keys
}

/**
 * The capture's functions for a table (`schema.name`), schema-qualified:
 * the row trigger's (partitioned tables) and the statement triggers'.
 */
function captureFunctions (tag: string): { row: string, statement: string } {
  const slug = tag.replace(/[^A-Za-z0-9_]/g, '_')
  return { row: `converge.${quote(`capture_${slug}`)}`, statement: `converge.${quote(`capture_statement_${slug}`)}` }
}

/** A connection of its own for one piece of work on `tag`'s database (the caller ends it); StoreUnavailableError when the server cannot be reached. */
async function connectOnce (connectionString: string, tag: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString })
  client.on('error', () => undefined) // a connection lost here fails the query under way, which reports it
  try {
    await client.connect()
  } catch (err) {
    throw new StoreUnavailableError(`cannot reach PostgreSQL for ${tag}: ${(err as Error).message}`, { cause: err })
  }
  return client
}

export function splitTableName (table: string): { schema: string, name: string } {
  const dot = table.indexOf('.')
  return dot < 0 ? { schema: 'public', name: table } : { schema: table.slice(0, dot), name: table.slice(dot + 1) }
}

/** Column types converge reads from PostgreSQL types (format_type spelling, without modifiers). */
const CATALOG_TYPES: Array<[RegExp, ColumnType]> = [
  [/^(smallint|integer|bigint)$/, 'integer'],
  [/^(real|double precision)$/, 'float'],
  [/^numeric/, 'decimal'],
  [/^(text|character varying|character|uuid|citext|name)/, 'string'],
  [/^boolean$/, 'boolean'],
  [/^(timestamp|date)/, 'timestamp'],
  [/^jsonb?$/, 'json'],
  [/^bytea$/, 'bytes']
]

/**
 * The PostgreSQL types (format_type's spelling with the column's modifier)
 * that hold each codec type's values exactly as written: no length that
 * cuts, no scale or precision that rounds. A value these cannot hold fails
 * the write instead (an integer out of range, a NUL in text).
 */
const EXACT_TYPES: Partial<Record<ColumnType, readonly string[]>> = {
  integer: ['smallint', 'integer', 'bigint'],
  string: ['text', 'character varying'],
  decimal: ['numeric'],
  boolean: ['boolean'],
  timestamp: ['timestamp with time zone', 'timestamp without time zone'],
  bytes: ['bytea']
}

/**
 * Reads a dataset schema from the PostgreSQL catalog: columns in table order
 * with mapped types and NOT NULL, the primary key. Ignored columns and the
 * event-time column are the operator's to add.
 */
export async function readCatalogSchema (connectionString: string, table: string): Promise<Pick<DatasetSchema, 'columns' | 'primaryKey'>> {
  const { schema, name } = splitTableName(table)
  const client = await connectOnce(connectionString, `${schema}.${name}`)
  try {
    const { rows } = await client.query<{ name: string, pg_type: string, typmod: number, not_null: boolean, pk: boolean }>(
      `SELECT a.attname AS name, format_type(a.atttypid, NULL) AS pg_type, a.atttypmod AS typmod, a.attnotnull AS not_null,
              coalesce(a.attnum = ANY (i.indkey), false) AS pk
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
        WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum`, [schema, name])
    if (rows.length === 0) throw new StoreSchemaError(`table ${schema}.${name} does not exist`)
    const columns = rows.map(r => {
      const type = CATALOG_TYPES.find(([pattern]) => pattern.test(r.pg_type))?.[1]
      if (type === undefined) throw new StoreSchemaError(`table ${schema}.${name}: column "${r.name}" has type ${r.pg_type}, which converge does not compare; leave it out with a hand-written schema`)
      // a timestamp holds microseconds unless declared with at most 3 fraction digits (its typmod; -1: the default 6)
      const micros = /^timestamp/.test(r.pg_type) && (r.typmod < 0 || r.typmod > 3)
      // a numeric without a declared scale (typmod -1) keeps each value's own: 10.50 stays 10.50 (not on a key: 5.0 and 5 are one key)
      const scaled = r.pg_type === 'numeric' && r.typmod < 0 && !r.pk
      // json (not jsonb) holds its text as written: key order and spacing are the application's, and a repair keeps them
      const text = r.pg_type === 'json'
      return { name: r.name, type, nullable: !r.not_null, ...(micros ? { precision: 'us' as const } : {}), ...(scaled ? { keepScale: true } : {}), ...(text ? { keepText: true } : {}) }
    })
    const { rows: keyRows } = await client.query<{ name: string }>(
      `SELECT a.attname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary ORDER BY k.ord`, [schema, name])
    if (keyRows.length === 0) throw new StoreSchemaError(`table ${schema}.${name} has no primary key`)
    return { columns, primaryKey: keyRows.map(r => r.name) }
  } finally {
    await client.end().catch(() => undefined)
  }
}

export class PgStore implements ReplicaStore {
  readonly kind = 'postgres'
  readonly codec: RowCodec
  readonly supports = { changeFeed: true, durableChangeFeed: true, transactions: true, feedRowsAtDelivery: true }
  private readonly init: PgStoreInit
  private readonly table: { schema: string, name: string, sql: string, tag: string }
  private pool: pg.Pool | undefined
  private columns: ColumnInfo[] = []
  private keyColumns: ColumnInfo[] = []
  /** The query that tells whether the table stores upserts exactly as written (storesAsWritten); none when a codec type has no exact PostgreSQL type. */
  private asWrittenCheck: string | undefined
  /** Per schema column, whether it may be NULL: RowCodec.normalize's rule (declared, else every non-key column). */
  private readonly nullable: readonly boolean[]
  private storeId: string | undefined
  /** Opened read-only (StoreOpenOptions.readOnly): no capture installed, every session's transactions read-only. */
  private readOnly = false
  private readonly closing = new AbortController()

  constructor (init: PgStoreInit) {
    this.init = init
    this.codec = init.codec
    this.nullable = init.codec.columns.map((c, i) => c.nullable ?? !init.codec.keyPositions.includes(i))
    const { schema, name } = splitTableName(init.table)
    this.table = { schema, name, sql: `${quote(schema)}.${quote(name)}`, tag: `${schema}.${name}` }
  }

  get id (): string {
    this.writable('its store id')
    if (this.storeId === undefined) throw new StoreNotOpenError(`PostgreSQL store ${this.table.tag}`)
    return this.storeId
  }

  /** Throws StoreReadOnlyError when opened read-only: `operation` would write, or needs the change capture a read-only open does not set up. */
  private writable (operation: string): void {
    if (this.readOnly) throw new StoreReadOnlyError(`PostgreSQL store ${this.table.tag}`, operation)
  }

  async open (options: StoreOpenOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    this.readOnly = options.readOnly === true
    this.pool = new pg.Pool({
      connectionString: this.init.connectionString,
      // idle connections are kept (at most 4): a sync after a quiet hour should not wait for new backends
      max: 4,
      idleTimeoutMillis: 0,
      types: typeParsers,
      // read-only: the server itself refuses any write of this pool's sessions, whatever a caller tries
      ...(this.readOnly ? { options: '-c default_transaction_read_only=on' } : {})
    })
    this.pool.on('error', () => undefined) // an idle client's error: the next query reconnects
    // a client's connection can fail while no one listens: between statements of a checked-out client, or
    // while a new one is handed out (a termination in the same packet as its ready-for-query). Unheard, that
    // 'error' would end the process; the query under way, or the next one, reports it instead.
    // (pg-pool itself drops a client whose connection is gone when it comes back; see releaseClient)
    this.pool.on('connect', client => { client.on('error', () => undefined) })
    try {
      await this.readColumns()
      if (!this.readOnly) await this.installCapture()
    } catch (err) {
      // an open that failed leaves no connection behind (idle ones are kept forever, and would keep a CLI running)
      await this.pool.end().catch(() => undefined)
      this.pool = undefined
      throw err
    }
  }

  /** The table's columns as the catalog gives them, each checked against the schema. */
  private async readColumns (): Promise<void> {
    let catalog
    try {
      catalog = await this.db().query<{ name: string, pg_type: string, plain: boolean }>(
        `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS pg_type, c.relkind = 'r' AS plain
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, [this.table.schema, this.table.name])
    } catch (err) {
      throw new StoreUnavailableError(`cannot reach PostgreSQL for ${this.table.tag}: ${(err as Error).message}`, { cause: err })
    }
    if (catalog.rows.length === 0) throw new StoreSchemaError(`table ${this.table.tag} does not exist`)
    const pgTypes = new Map(catalog.rows.map(r => [r.name, r.pg_type]))
    this.columns = this.codec.columns.map(c => {
      const pgType = pgTypes.get(c.name)
      if (pgType === undefined) throw new StoreSchemaError(`table ${this.table.tag} has no column "${c.name}"`)
      return { name: c.name, type: c.type, pgType, ...(c.precision === undefined ? {} : { precision: c.precision }) }
    })
    this.keyColumns = this.codec.keyPositions.map(i => this.columns[i]!)
    // a partitioned table's partitions may have triggers of their own: its fixes always read their rows back
    this.asWrittenCheck = catalog.rows[0]!.plain ? this.asWrittenSql() : undefined
  }

  /**
   * For a plain table (readColumns): no BEFORE row trigger on insert or
   * update that fires (disabled ones aside), no rule, and every column of a
   * type in EXACT_TYPES for its codec type, modifier and all, as the catalog
   * says now.
   */
  private asWrittenSql (): string | undefined {
    const exact = this.codec.columns.map(c => EXACT_TYPES[c.type])
    if (exact.some(types => types === undefined)) return undefined
    const expected = this.codec.columns.map((c, i) => `(${literal(c.name)}, ARRAY[${exact[i]!.map(literal).join(', ')}])`).join(', ')
    return `SELECT NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D' AND (t.tgtype & 3) = 3 AND (t.tgtype & 20) <> 0)
        AND NOT EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN')
        AND (SELECT count(*) FROM pg_attribute a JOIN (VALUES ${expected}) AS e(name, types) ON e.name = a.attname
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND format_type(a.atttypid, a.atttypmod) = ANY (e.types)) = ${exact.length} AS exact
      FROM pg_class c WHERE c.oid = ${literal(this.table.sql)}::regclass`
  }

  /**
   * Whether every upsert of this fix will be stored exactly as written (see
   * asWrittenSql), so that the fix need not read each back to compare
   * (RETURNING): asked in the fix's transaction once it holds the lock every
   * writer holds, which a new trigger, rule or column type waits for, so
   * none can land before the fix commits.
   */
  private async storesAsWritten (client: pg.PoolClient): Promise<boolean> {
    if (this.asWrittenCheck === undefined) return false
    // two statements in one round trip: the lock, then the catalog as it is under it
    const results = await client.query(`LOCK TABLE ${this.table.sql} IN ROW EXCLUSIVE MODE; ${this.asWrittenCheck}`) as unknown as Array<pg.QueryResult<{ exact: boolean }>>
    return results[1]?.rows[0]?.exact === true
  }

  async close (): Promise<void> {
    this.closing.abort()
    await this.pool?.end()
    this.pool = undefined
  }

  /**
   * Every row, through COPY (see pg-copy.ts) in one transaction: a first
   * statement reads the select list's types (COPY sends none) and holds the
   * table's lock, so the types cannot change before the COPY runs. A scan left
   * before its end drops its connection: mid-COPY it cannot take another
   * statement, and its transaction must not go back to the pool open.
   */
  async * scan (options: { signal?: AbortSignal, batchSize?: number } = {}): AsyncGenerator<StoredRow[]> {
    const { signal } = options
    throwIfAborted(signal)
    const client = await this.connect()
    const select = `SELECT ${this.selectList()} FROM ${this.table.sql}`
    let copy: CopyRows<StoredRow> | undefined
    let committed = false
    let failure: unknown
    const onAbort = (): void => copy?.stop(new AbortedError())
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await client.query('BEGIN')
      const decode = await this.lineDecoder(client)
      throwIfAborted(signal)
      copy = new CopyRows({ text: `COPY (${select}) TO STDOUT`, decode, batchSize: options.batchSize ?? SCAN_BATCH_ROWS })
      // a connection that fails mid-COPY fails the COPY (pg hands the error to the active query)
      client.query(copy)
      for (;;) {
        throwIfAborted(signal)
        const rows = await copy.next()
        if (rows === undefined) break
        yield rows
      }
      await client.query('COMMIT')
      committed = true
    } catch (err) {
      failure = err
      throw storeError(this.table.tag, err)
    } finally {
      signal?.removeEventListener('abort', onAbort)
      if (!committed) {
        // a COPY still sending ends only with its connection
        if (copy !== undefined && !copy.ended) client.connection.stream.destroy()
        failure ??= new StoreUnavailableError(`scan of ${this.table.tag} left before its end`)
      }
      releaseClient(client, failure)
    }
  }

  /** Each row as it is now; rows of a large read may come from different transactions (no caller compares one row with another). */
  async get (keys: Uint8Array[], options: GetOptions = {}): Promise<Array<Uint8Array | undefined>> {
    if (keys.length === 0) return []
    const found = await this.readNowRows(keys.map(k => this.codec.decodeKey(k)), options.signal, options.shortLived !== true)
    return keys.map(k => found.get(idOf(k)))
  }

  /**
   * Current rows by canonical key (idOf) for keys given as key objects
   * (decodeKey's form), a large read split among PARALLEL_READS transactions
   * side by side; each row's version into `versions` when given; `copy` as
   * readByKeys takes it (`ownCopies`).
   */
  private async readNowRows (rows: Row[], signal: AbortSignal | undefined, copy: boolean, versions?: Map<string, string>): Promise<Map<string, Uint8Array>> {
    const per = Math.max(PARALLEL_READ_MIN_KEYS, Math.ceil(rows.length / PARALLEL_READS))
    const parts: Row[][] = []
    for (let i = 0; i < rows.length; i += per) parts.push(rows.slice(i, i + per))
    const found = await Promise.all(parts.map(async part => await this.inTransaction(async client => await this.readByKeys(client, part, false, copy, versions), signal)))
    if (found.length === 1) return found[0]!
    const all = new Map<string, Uint8Array>()
    for (const part of found) for (const [k, row] of part) all.set(k, row)
    return all
  }

  /**
   * One transaction: the before-images read `FOR UPDATE` (readByKeys), then
   * the upserts as `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE` and
   * the deletes as one DELETE per batch, each column's values one array
   * literal (pg-literals.ts): no JSON document to build and for the server
   * to parse and pick apart. With the rows' versions (request.expected) on a
   * table that stores rows as written, first without the read
   * (writeIfUnchanged).
   */
  async apply (request: ApplyRequest, options: { signal?: AbortSignal } = {}): Promise<ApplyResult> {
    const { signal } = options
    this.writable('apply')
    const upserts = request.upserts.map(r => this.codec.decodeValues(r))
    const keyPositions = this.codec.keyPositions
    const keys = [...upserts.map(values => this.keyRow(keyPositions.map(p => values[p]!))), ...request.deletes.map(k => this.codec.decodeKey(k))]
    throwIfAborted(signal)
    const expected = this.usableExpected(request, upserts.length)
    return await this.inTransaction(async client => {
      const { rows: [tx] } = await client.query<{ xid: string }>("SELECT set_config('converge.origin', $1, true), pg_current_xact_id()::text AS xid", [request.origin ?? ''])
      const asWritten = upserts.length > 0 && await this.storesAsWritten(client)
      // rows the caller read with their versions, in a table that needs no read back: written without reading them first
      if (expected !== undefined && (upserts.length === 0 || asWritten) && await this.writeIfUnchanged(client, upserts, keys.slice(upserts.length), expected, signal)) {
        throwIfAborted(signal)
        request.beforeCommit?.(Number(tx!.xid))
        return { seq: Number(tx!.xid), before: expected.map(e => e.row) }
      }
      // read to be written into the audit at once: no copy of each row of its own (see readByKeys)
      const current = await this.readByKeys(client, keys, true, false)
      // the keys' bytes as rows are filed under them: an upsert's from its values as decoded above, a delete's as given
      const ids = [...upserts.map(values => idOf(this.codec.keyOfValues(values))), ...request.deletes.map(idOf)]
      const before = ids.map(id => current.get(id) ?? null)
      // unless the table stores rows as written, each row as stored comes back (RETURNING, read as a scan reads
      // rows: through COPY), so one that a trigger or the column's type changed is told apart from what was written
      const position = new Map<string, number>()
      if (!asWritten) for (let i = 0; i < upserts.length; i++) position.set(ids[i]!, i)
      const rewritten: RewrittenRow[] = []
      let decode: ((line: Buffer) => StoredRow) | undefined
      for (let i = 0; i < upserts.length; i += WRITE_BATCH) {
        throwIfAborted(signal)
        const batch = upserts.slice(i, i + WRITE_BATCH)
        const lists = this.columnLists(batch)
        if (asWritten) {
          await client.query(this.upsertSql(lists, false))
          continue
        }
        decode ??= await this.lineDecoder(client)
        const copy = new CopyRows({ text: `COPY (${this.upsertSql(lists, true)}) TO STDOUT`, decode, batchSize: WRITE_BATCH })
        client.query(copy)
        for (let rows = await copy.next(); rows !== undefined; rows = await copy.next()) {
          for (const { key, row } of rows) {
            const index = position.get(idOf(key))
            // a copy of its own: the row sits in the decoder's slab
            if (index !== undefined && !sameBytes(row, request.upserts[index]!)) rewritten.push({ index, row: row.slice() })
          }
        }
      }
      const deletes = keys.slice(upserts.length)
      for (let i = 0; i < deletes.length; i += WRITE_BATCH) {
        throwIfAborted(signal)
        const batch = deletes.slice(i, i + WRITE_BATCH)
        const match = this.keyMatch(this.keyLists(batch))
        await client.query(`DELETE FROM ${this.table.sql} t${match.keys === undefined ? '' : ` USING ${match.keys}`} WHERE ${match.where}`)
      }
      // the last chance to leave: after COMMIT the fix has landed
      throwIfAborted(signal)
      request.beforeCommit?.(Number(tx!.xid))
      return { seq: Number(tx!.xid), before, ...(rewritten.length === 0 ? {} : { rewritten }) }
    }, signal)
  }

  /**
   * ApplyRequest.expected where writeIfUnchanged can use it: one per key,
   * each upsert's a version or no row, each delete's a version. (A table of
   * key columns only has nothing to update; its upserts are read first.)
   */
  private usableExpected (request: ApplyRequest, upserts: number): readonly ExpectedRow[] | undefined {
    const expected = request.expected
    if (expected?.length !== upserts + request.deletes.length) return undefined
    const nothingToSet = this.columns.length === this.keyColumns.length
    for (let i = 0; i < expected.length; i++) {
      const e = expected[i]!
      // (a version goes into the statement's text: only the digits of an xid)
      if (e.row === null ? i >= upserts : e.version === undefined || !XID.test(e.version) || nothingToSet) return undefined
    }
    return expected
  }

  /**
   * apply()'s write without reading its rows first, for a caller that read
   * them with their versions (ApplyRequest.expected): each statement writes
   * a key only while its row is still the version read (its xmin, which
   * every write of the row changes; for a key that had no row, while it
   * has none), and the row locks the statement takes hold it so until the
   * commit: the rows read are then the before-images. If any key is not
   * written so (its row moved on since it was read), all this did is undone
   * to a savepoint and false returned, and apply() reads and writes as
   * without versions. (A version serves a fix planned seconds after its
   * read: a transaction id comes round again only some four billion
   * transactions later. Saves the read of every row under lock: a fix of
   * 5,000 rows of the orders table took 68-76 ms of the server's time
   * so, against 28 ms for the read and 60-68 ms for the upsert.)
   */
  private async writeIfUnchanged (client: pg.PoolClient, upserts: Value[][], deletes: Row[], expected: readonly ExpectedRow[], signal?: AbortSignal): Promise<boolean> {
    const updates: number[] = []
    const inserts: number[] = []
    upserts.forEach((_, i) => (expected[i]!.row === null ? inserts : updates).push(i))
    await client.query('SAVEPOINT converge_expected')
    const wroteAll = async (): Promise<boolean> => {
      for (let i = 0; i < updates.length; i += WRITE_BATCH) {
        throwIfAborted(signal)
        const batch = updates.slice(i, i + WRITE_BATCH)
        const lists = this.columnLists(batch.map(j => upserts[j]!))
        const done = await client.query(this.updateIfUnchangedSql(lists, versionList(batch.map(j => expected[j]!.version!))))
        if (done.rowCount !== batch.length) return false
      }
      for (let i = 0; i < inserts.length; i += WRITE_BATCH) {
        throwIfAborted(signal)
        const batch = inserts.slice(i, i + WRITE_BATCH)
        const done = await client.query(this.upsertSql(this.columnLists(batch.map(j => upserts[j]!)), false, 'nothing'))
        if (done.rowCount !== batch.length) return false
      }
      for (let i = 0; i < deletes.length; i += WRITE_BATCH) {
        throwIfAborted(signal)
        const batch = deletes.slice(i, i + WRITE_BATCH)
        const versions = versionList(batch.map((_, j) => expected[upserts.length + i + j]!.version!))
        const done = await client.query(this.deleteIfUnchangedSql(this.keyLists(batch), versions))
        if (done.rowCount !== batch.length) return false
      }
      return true
    }
    if (await wroteAll()) return true
    await client.query('ROLLBACK TO SAVEPOINT converge_expected')
    return false
  }

  async lastSeq (): Promise<number> {
    this.writable('its change log')
    const { rows } = await this.query<{ seq: string }>(
      `SELECT greatest(
          (SELECT max(xid) FROM converge.changes WHERE tbl = $1 AND xid < ${HORIZON}),
          (SELECT trimmed FROM converge.stores WHERE tbl = $1))::text AS seq`, [this.table.tag])
    return Number(rows[0]?.seq ?? 0)
  }

  async * changes (options: ChangesOptions): AsyncGenerator<ChangeBatch> {
    this.writable('its change feed')
    const signal = AbortSignal.any([options.signal, this.closing.signal])
    let since = options.since
    const { rows: [store] } = await this.query<{ trimmed: string }>('SELECT trimmed::text AS trimmed FROM converge.stores WHERE tbl = $1', [this.table.tag])
    if (since < Number(store?.trimmed ?? 0)) throw new ChangesTrimmedError(since, await this.lastSeq())
    const wake = new Wakeup(this.init.connectionString, signal)
    const pollMs = this.init.pollMs ?? 1000
    // after a notification that found nothing to read: look again soon, then less often (see NOTIFIED_RETRY_MS)
    let retryMs: number | undefined
    try {
      while (!signal.aborted) {
        const batches = await this.readChanges(since, options.taken, signal)
        for (const batch of batches) {
          since = batch.seq
          yield batch
        }
        if (batches.length > 0) { retryMs = undefined; continue }
        options.caughtUp?.()
        const notified = await wake.wait(retryMs ?? pollMs)
        retryMs = notified ? NOTIFIED_RETRY_MS : retryMs === undefined || retryMs * 2 >= pollMs ? undefined : retryMs * 2
      }
    } finally {
      await wake.close()
    }
  }

  async trimChanges (seq: number): Promise<void> {
    this.writable('trimming its change log')
    await this.query('DELETE FROM converge.changes WHERE tbl = $1 AND xid <= $2::text::xid8', [this.table.tag, String(seq)])
    await this.query('UPDATE converge.stores SET trimmed = greatest(trimmed, $2::text::xid8) WHERE tbl = $1', [this.table.tag, String(seq)])
  }

  async countRows (): Promise<number> {
    const { rows } = await this.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${this.table.sql}`)
    return Number(rows[0]?.n ?? 0)
  }

  /** A pooled connection; StoreUnavailableError when the server cannot be reached. */
  private async connect (): Promise<pg.PoolClient> {
    try { return await this.db().connect() } catch (err) { throw storeError(this.table.tag, err) }
  }

  /** One statement on a pooled connection, its failure as storeError reports it. */
  private async query<R extends pg.QueryResultRow> (text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    try { return await this.db().query<R>(text, values) } catch (err) { throw storeError(this.table.tag, err) }
  }

  private db (): pg.Pool {
    if (this.pool === undefined) throw new StoreNotOpenError(`PostgreSQL store ${this.table.tag}`)
    return this.pool
  }

  /** Creates the change log, the capture triggers and this store's identity, once per table (idempotent). */
  private async installCapture (): Promise<void> {
    try {
      this.storeId = await this.setUpCapture()
    } catch (err) {
      if ((err as { code?: string }).code !== INSUFFICIENT_PRIVILEGE) throw err
      throw new StoreSetupError(`cannot set up change capture for ${this.table.tag}: ${(err as Error).message}. ` +
        `The agent's role must be allowed to create the schema converge (CREATE on the database; the schema holds the change log) ` +
        `and TRIGGER on ${this.table.tag} (owning it gives that) to create its capture triggers. A role that may only read can still run converge diff.`, { cause: err })
    }
  }

  private async setUpCapture (): Promise<string> {
    return await this.inTransaction(async client => {
      // agents opening stores at once must not race on the DDL
      await client.query("SELECT pg_advisory_xact_lock(hashtext('converge-capture-setup'))")
      await client.query('CREATE SCHEMA IF NOT EXISTS converge')
      await client.query(`CREATE TABLE IF NOT EXISTS converge.changes (
        tbl text NOT NULL, xid xid8 NOT NULL DEFAULT pg_current_xact_id(), seq bigserial, key jsonb NOT NULL, origin text, n integer,
        PRIMARY KEY (tbl, xid, seq))`)
      // a log from before keys were logged a statement's worth a row: `n` added once. Checked first: ALTER TABLE waits for
      // every open transaction that has written the log, so an application's, and it is not run when there is nothing to add
      const { rows: [counted] } = await client.query("SELECT 1 AS found FROM pg_attribute WHERE attrelid = 'converge.changes'::regclass AND attname = 'n' AND NOT attisdropped")
      if (counted === undefined) await client.query('ALTER TABLE converge.changes ADD COLUMN n integer')
      await client.query(`CREATE TABLE IF NOT EXISTS converge.stores (tbl text PRIMARY KEY, id text NOT NULL, trimmed xid8 NOT NULL DEFAULT '0')`)
      await client.query('ALTER TABLE converge.stores ADD COLUMN IF NOT EXISTS setup text')
      const { rows: [table] } = await client.query<{ partitioned: boolean }>("SELECT relkind = 'p' AS partitioned FROM pg_class WHERE oid = $1::regclass", [this.table.sql])
      const capture = this.captureSetup(table!.partitioned)
      // (re)creating a trigger locks the table against writes and waits for every open write transaction on it:
      // skip it when the same setup is already in place, so an agent restart does not stall the application
      const setup = createHash('sha256').update(capture.ddl.join('\n')).digest('hex')
      const { rows: [state] } = await client.query<{ setup: string | null, enabled: string[], triggers: number }>(
        `SELECT (SELECT setup FROM converge.stores WHERE tbl = $1) AS setup,
                (SELECT coalesce(array_agg(tgname::text ORDER BY tgname) FILTER (WHERE tgenabled <> 'D'), '{}') FROM pg_trigger WHERE tgrelid = $2::regclass AND starts_with(tgname, 'converge_')) AS enabled,
                (SELECT count(*)::int FROM pg_trigger WHERE tgrelid = $2::regclass AND starts_with(tgname, 'converge_')) AS triggers`,
        [this.table.tag, this.table.sql])
      if (state?.setup !== setup || state.triggers !== capture.triggers.length || state.enabled.join() !== capture.triggers.join()) {
        for (const ddl of capture.ddl) await client.query(ddl)
        await this.dropUnusedCaptureFunction(client, table!.partitioned)
      }
      await client.query('INSERT INTO converge.stores (tbl, id, setup) VALUES ($1, $2, $3) ON CONFLICT (tbl) DO UPDATE SET setup = EXCLUDED.setup', [this.table.tag, randomUUID(), setup])
      const { rows: [row] } = await client.query<{ id: string }>('SELECT id FROM converge.stores WHERE tbl = $1', [this.table.tag])
      return row!.id
    })
  }

  /**
   * The capture's DDL and the names of its triggers (sorted). Every changed
   * key goes into converge.changes with the transaction's xid and the
   * session's converge.origin: the old key of a deleted row and of a row whose
   * update changed its key, the new key of an inserted or updated row.
   *
   * A table gets statement triggers over transition tables: one INSERT …
   * SELECT per statement instead of a plpgsql call and an INSERT per row (a
   * plain UPDATE of 10,000 rows of a million took 250 ms with the row
   * trigger, 120 ms with these, 80 ms with none), which logs the statement's
   * keys as jsonb arrays of up to KEYS_PER_LOG_ROW keys, a log row each,
   * rather than a log row per key (a heap row, a B-tree entry and a WAL
   * record each: what capture added to an UPDATE of 10,000 rows went from
   * 25-28 ms to 9-12 ms, scripts/bench/pg-store-ops.ts). PostgreSQL allows transition
   * tables only on a trigger of one event, hence one per event. A partitioned
   * table keeps the row trigger: it is cloned to every partition, also to
   * those attached later, so a write that names a partition is captured too,
   * while a statement trigger fires only for the table a statement names.
   *
   * The statement triggers log the same keys for each statement; they differ
   * only in order within a transaction (a statement's moved-away keys, then
   * its new keys, rather than row by row) and in one multiplicity: a key that
   * one row leaves and another takes in the same statement is logged once,
   * not twice. The feed reads each key of a transaction once, so neither
   * changes what it delivers.
   */
  private captureSetup (partitioned: boolean): { ddl: string[], triggers: string[] } {
    const fns = captureFunctions(this.table.tag)
    const tag = literal(this.table.tag)
    const keyObject = (rec: string): string => `jsonb_build_object(${this.keyColumns.map(c => `${literal(c.name)}, ${keyJsonExpr(`${rec}.${quote(c.name)}`, c.pgType)}`).join(', ')})`
    const origin = "nullif(current_setting('converge.origin', true), '')"
    const notifyFn = `CREATE OR REPLACE FUNCTION converge.notify_changes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('converge_changes', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME); RETURN NULL; END $$`
    const notify = `CREATE OR REPLACE TRIGGER converge_notify AFTER INSERT OR UPDATE OR DELETE ON ${this.table.sql}
        FOR EACH STATEMENT EXECUTE FUNCTION converge.notify_changes()`
    const events = ['INSERT', 'UPDATE', 'DELETE'] as const
    const statementTrigger = (event: string): string => `converge_capture_${event.toLowerCase()}`
    if (partitioned) {
      const keyChanged = this.keyColumns.map(c => `OLD.${quote(c.name)} IS DISTINCT FROM NEW.${quote(c.name)}`).join(' OR ')
      const rowFn = `CREATE OR REPLACE FUNCTION ${fns.row}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (${keyChanged})) THEN
            INSERT INTO converge.changes (tbl, key, origin) VALUES (${tag}, ${keyObject('OLD')}, ${origin});
          END IF;
          IF TG_OP <> 'DELETE' THEN
            INSERT INTO converge.changes (tbl, key, origin) VALUES (${tag}, ${keyObject('NEW')}, ${origin});
          END IF;
          RETURN NULL;
        END $$`
      return {
        ddl: [notifyFn, rowFn, ...events.map(e => `DROP TRIGGER IF EXISTS ${statementTrigger(e)} ON ${this.table.sql}`),
          `CREATE OR REPLACE TRIGGER converge_capture AFTER INSERT OR UPDATE OR DELETE ON ${this.table.sql}
        FOR EACH ROW EXECUTE FUNCTION ${fns.row}()`, notify],
        triggers: ['converge_capture', 'converge_notify']
      }
    }
    const sameKey = this.keyColumns.map(c => `n.${quote(c.name)} = o.${quote(c.name)}`).join(' AND ')
    // a statement's keys as log rows of at most KEYS_PER_LOG_ROW keys each, one jsonb array a row (none when it changed no row)
    const logKeys = (rec: 'n' | 'o', table: string, where = ''): string =>
      `INSERT INTO converge.changes (tbl, key, origin, n) SELECT ${tag}, jsonb_agg(k.key), origin, count(*) FROM (
              SELECT ${keyObject(rec)} AS key, row_number() OVER () - 1 AS i FROM ${table} ${rec}${where}) k GROUP BY k.i / ${KEYS_PER_LOG_ROW};`
    const logNew = logKeys('n', 'converge_new')
    // each statement names only the transition tables its event has: plpgsql plans a statement when it first runs
    const statementFn = `CREATE OR REPLACE FUNCTION ${fns.statement}() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE origin text := ${origin};
        BEGIN
          IF TG_OP = 'INSERT' THEN
            ${logNew}
          ELSIF TG_OP = 'UPDATE' THEN
            -- an old key no row has after the statement: an update moved the row to another key
            ${logKeys('o', 'converge_old', ` WHERE NOT EXISTS (SELECT FROM converge_new n WHERE ${sameKey})`)}
            ${logNew}
          ELSE
            ${logKeys('o', 'converge_old')}
          END IF;
          RETURN NULL;
        END $$`
    const references: Record<typeof events[number], string> = { INSERT: 'NEW TABLE AS converge_new', UPDATE: 'OLD TABLE AS converge_old NEW TABLE AS converge_new', DELETE: 'OLD TABLE AS converge_old' }
    return {
      ddl: [notifyFn, statementFn, `DROP TRIGGER IF EXISTS converge_capture ON ${this.table.sql}`,
        ...events.map(e => `CREATE OR REPLACE TRIGGER ${statementTrigger(e)} AFTER ${e} ON ${this.table.sql} REFERENCING ${references[e]}
        FOR EACH STATEMENT EXECUTE FUNCTION ${fns.statement}()`), notify],
      triggers: [...events.map(statementTrigger), 'converge_notify'].sort()
    }
  }

  /**
   * The other kind of capture's function (the row trigger's, once a table has statement triggers, or the
   * other way round), unless another table's trigger still calls it (table names that make the same slug).
   */
  private async dropUnusedCaptureFunction (client: pg.PoolClient, partitioned: boolean): Promise<void> {
    const fns = captureFunctions(this.table.tag)
    const fn = `${partitioned ? fns.statement : fns.row}()`
    const { rows: [use] } = await client.query<{ triggers: number }>('SELECT count(*)::int AS triggers FROM pg_trigger WHERE tgfoid = to_regprocedure($1)', [fn])
    if (use?.triggers === 0) await client.query(`DROP FUNCTION IF EXISTS ${fn}`)
  }

  /**
   * Whole transactions from the change log after `since`, oldest first, each
   * with its rows as they are now. The log is read per transaction: first
   * how many keys each has and who wrote it (one protocol row each), then the
   * keys of those whose rows are wanted, as one JSON array per transaction
   * rather than a protocol row per key. The agent's own fixes its index
   * already took in are delivered without reading their keys or rows.
   */
  private async readChanges (since: number, taken?: (seq: number) => boolean, signal?: AbortSignal): Promise<ChangeBatch[]> {
    // the log first, then the rows as they are now (after it: every change it lists is in them)
    const logged = await this.inTransaction(async client => {
      const { rows } = await client.query<{ xid: string, n: number, lo: string | null, hi: string | null, unnamed: boolean }>(
        // (ordered by the column, not by the text it is sent as: '100000' sorts before '99999'). Only the transactions
        // of the first CHANGE_READ_LIMIT log rows are counted (a row holds one key or a statement's, `n`): aggregating
        // all of a long backlog on every read made catching up on it quadratic (163 ms a read for a backlog of a
        // million keys; 6 ms bounded)
        `SELECT c.xid::text AS xid, sum(coalesce(c.n, 1))::int AS n, min(c.origin) AS lo, max(c.origin) AS hi, bool_or(c.origin IS NULL) AS unnamed FROM converge.changes c
          WHERE c.tbl = $1 AND c.xid > $2::text::xid8 AND c.xid < ${HORIZON}
            AND c.xid <= (SELECT max(h.xid) FROM (SELECT x.xid FROM converge.changes x
              WHERE x.tbl = $1 AND x.xid > $2::text::xid8 AND x.xid < ${HORIZON} ORDER BY x.xid LIMIT $3) h)
          GROUP BY c.xid ORDER BY c.xid`, [this.table.tag, String(since), CHANGE_READ_LIMIT])
      // whole transactions up to CHANGE_READ_LIMIT keys; the first one whole whatever its size
      const picked: Array<{ seq: number, origin: string | undefined, skip: boolean }> = []
      let keys = 0
      for (const r of rows) {
        if (picked.length > 0 && keys + r.n > CHANGE_READ_LIMIT) break
        keys += r.n
        // one writer named throughout, or none (a transaction that changed its origin midway is nobody's own)
        const origin = !r.unnamed && r.lo === r.hi && r.lo !== null ? r.lo : undefined
        const seq = Number(r.xid)
        picked.push({ seq, origin, skip: origin === FIX_ORIGIN && taken !== undefined && taken(seq) })
      }
      const wanted = picked.filter(t => !t.skip).map(t => String(t.seq))
      const keysOf = new Map<number, Row[]>()
      if (wanted.length > 0) {
        // jsonb arrives as text (see typeParsers)
        const { rows: lists } = await client.query<{ xid: string, keys: string }>(
          `SELECT c.xid::text AS xid, json_agg(c.key ORDER BY c.seq)::text AS keys FROM converge.changes c
            WHERE c.tbl = $1 AND c.xid = ANY ($2::text[]::xid8[]) GROUP BY c.xid`, [this.table.tag, wanted])
        for (const l of lists) keysOf.set(Number(l.xid), loggedKeys(JSON.parse(l.keys) as Array<Row | Row[]>))
      }
      // (a skipped transaction's keys were not read)
      return picked.map(t => ({ ...t, keys: keysOf.get(t.seq) ?? [] }))
    }, signal)
    if (logged.length === 0) return []
    // each key of a transaction once, by its id (also what readNow files rows under); the rows are read by the
    // key values as normalized here, not decoded again from the key's bytes
    const wanted: Row[] = []
    const batches = logged.map(t => {
      const seen = new Set<string>()
      const ids: string[] = []
      const keys: Uint8Array[] = []
      for (const k of t.keys) {
        const values = this.codec.keyValues(this.keyFromLog(k))
        const key = packValues(values)
        const id = idOf(key)
        if (seen.has(id)) continue
        seen.add(id)
        ids.push(id)
        keys.push(key)
        wanted.push(this.keyRow(values))
      }
      return { seq: t.seq, origin: t.origin, ids, keys }
    })
    // with each row's version, so that a fix planned on it need not read it again (ApplyRequest.expected)
    const versions = new Map<string, string>()
    const current = await this.readNowRows(wanted, signal, true, versions)
    return batches.map(b => ({
      seq: b.seq,
      changes: b.keys.map((key, i) => {
        const row = current.get(b.ids[i]!)
        return row === undefined ? { key, row: null } : { key, row, version: versions.get(b.ids[i]!)! }
      }),
      ...(b.origin === undefined ? {} : { origin: b.origin })
    }))
  }

  /**
   * A key as the capture logged it, as encodeKey takes it: JSON has no bytes,
   * so bytea key columns are logged as '\x…' hex text (keyJsonExpr) and
   * turned back into bytes here.
   */
  private keyFromLog (logged: Row): Row {
    for (const c of this.keyColumns) {
      const v = logged[c.name]
      if (c.type === 'bytes' && typeof v === 'string' && v.startsWith('\\x')) logged[c.name] = new Uint8Array(Buffer.from(v.slice(2), 'hex'))
    }
    return logged
  }

  /**
   * Current rows for keys (as decodeKey gives them), by canonical key (idOf),
   * in the caller's transaction (see lineDecoder): `COPY (SELECT …) TO
   * STDOUT` with the key list written into the statement as array literals
   * (pg-literals.ts), so each row arrives as a bare line that pg-copy turns
   * into canonical bytes, with no JSON document of the keys to build and parse,
   * no protocol row, string per field or row object. `forUpdate` locks them;
   * `ownCopies` false leaves each row a view into its batch's buffer, for rows
   * the caller is done with at once. Arguments, not an options object: its
   * callers' objects of different shapes deoptimized it once per shape met
   * (V8's `--trace-deopt`, in a repair's rounds 3 and 6), and each time
   * TurboFan compiled it again (28-74 ms of a core).
   */
  private async readByKeys (client: pg.PoolClient, keys: Row[], forUpdate: boolean, ownCopies: boolean, versions?: Map<string, string>): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>()
    if (keys.length === 0) return out
    const decode = await this.lineDecoder(client)
    const read = versions === undefined ? decode : withVersion(decode)
    for (let i = 0; i < keys.length; i += KEY_READ_BATCH) {
      const copy = new CopyRows({ text: `COPY (${this.keyedSelect(keys.slice(i, i + KEY_READ_BATCH), forUpdate, versions !== undefined)}) TO STDOUT`, decode: read, batchSize: KEY_READ_BATCH })
      // (a connection that fails mid-COPY fails the COPY; a line that does not decode fails it once the server is done)
      client.query(copy)
      for (let rows = await copy.next(); rows !== undefined; rows = await copy.next()) {
        // a copy of its own: a row written straight into a CanonicalWriter's slab would keep the whole slab alive
        // (not for rows the caller is done with at once: a fix's before-images go into its audit entry)
        for (const r of rows) {
          const id = idOf(r.key)
          out.set(id, ownCopies ? r.row.slice() : r.row)
          if (versions !== undefined) versions.set(id, (r as VersionedRow).version)
        }
      }
    }
    return out
  }

  /** SELECT of the rows whose keys are in `keys`, the key list written in as an array literal per key column. */
  private keyedSelect (keys: Row[], forUpdate: boolean, version = false): string {
    const match = this.keyMatch(this.keyLists(keys))
    return `SELECT ${this.selectList('t')}${version ? ', t.xmin' : ''} FROM ${this.table.sql} t${match.keys === undefined ? '' : `, ${match.keys}`} WHERE ${match.where}${forUpdate ? ' FOR UPDATE OF t' : ''}`
  }

  /**
   * How rows of the table (alias t) are matched to a key list given as one
   * array expression per key column: a relation to add (`keys`) and the
   * condition. One key column: `= ANY`, always an index scan over the sorted
   * list (a join of 10,000 keys to the unnested list was planned as a merge
   * join over the whole index, eight times slower). More: the unnested lists,
   * which the planner joins by an index probe per key (or, for a large share
   * of the table, by a hash join over one scan of it).
   */
  private keyMatch (lists: string[]): { keys?: string, where: string } {
    if (lists.length === 1) return { where: `t.${quote(this.keyColumns[0]!.name)} = ANY (${lists[0]})` }
    return { keys: `unnest(${lists.join(', ')}) AS k(${this.keyColumns.map(c => quote(c.name)).join(', ')})`, where: this.keyJoin('t', 'k') }
  }

  /**
   * INSERT … ON CONFLICT DO UPDATE (or DO NOTHING: `onConflict`) of rows
   * given as one array expression per column (columnLists), returning each
   * row as stored when `returning`.
   */
  private upsertSql (lists: readonly string[], returning: boolean, onConflict: 'update' | 'nothing' = 'update'): string {
    const names = this.columns.map(c => quote(c.name))
    const values = this.columns.map((c, i) => this.fromList('x', c, names[i]!))
    const updates = this.columns.flatMap((c, i) => (this.keyColumns.includes(c) ? [] : [`${names[i]!} = EXCLUDED.${names[i]!}`]))
    return `INSERT INTO ${this.table.sql} (${names.join(', ')}) SELECT ${values.join(', ')} FROM unnest(${lists.join(', ')}) AS x(${names.join(', ')})
      ON CONFLICT (${this.keyColumns.map(c => quote(c.name)).join(', ')}) DO ${updates.length === 0 || onConflict === 'nothing' ? 'NOTHING' : `UPDATE SET ${updates.join(', ')}`}${returning ? `
      RETURNING ${this.selectList()}` : ''}`
  }

  /**
   * UPDATE of existing rows given as columnLists, each only while its row's
   * xmin is the one in `versions` (versionList, in the same order). One key
   * column: matched through `= ANY` as well, which keeps the plan to an
   * index scan of those keys hashed against the list.
   */
  private updateIfUnchangedSql (lists: readonly string[], versions: string): string {
    const names = this.columns.map(c => quote(c.name))
    const sets = this.columns.flatMap((c, i) => (this.keyColumns.includes(c) ? [] : [`${names[i]!} = ${this.fromList('n', c, names[i]!)}`]))
    const version = this.versionName()
    return `UPDATE ${this.table.sql} t SET ${sets.join(', ')} FROM unnest(${lists.join(', ')}, ${versions}) AS n(${names.join(', ')}, ${version})
      WHERE ${this.keyJoin('t', 'n')} AND t.xmin = n.${version}${this.keyIndexCondition(lists[this.codec.keyPositions[0]!]!)}`
  }

  /** DELETE of the rows of the keys given as keyLists, each only while its row's xmin is the one in `versions`. */
  private deleteIfUnchangedSql (lists: readonly string[], versions: string): string {
    const version = this.versionName()
    return `DELETE FROM ${this.table.sql} t USING unnest(${lists.join(', ')}, ${versions}) AS n(${this.keyColumns.map(c => quote(c.name)).join(', ')}, ${version})
      WHERE ${this.keyJoin('t', 'n')} AND t.xmin = n.${version}${this.keyIndexCondition(lists[0]!)}`
  }

  /** ` AND t.<key> = ANY (<keys>)` for a table of one key column (`keys`: the statement's list of that column). */
  private keyIndexCondition (keys: string): string {
    return this.keyColumns.length === 1 ? ` AND t.${quote(this.keyColumns[0]!.name)} = ANY (${keys})` : ''
  }

  /** The unnested versions' column name: one the table's columns do not use. */
  private versionName (): string {
    let name = 'converge_version'
    while (this.columns.some(c => c.name === name)) name += '_'
    return quote(name)
  }

  /**
   * A column's value from an unnested list (alias `from`): a json column's
   * list is text, cast here, so a JSON null stays a JSON null, not SQL NULL.
   */
  private fromList (from: string, c: ColumnInfo, name: string): string {
    return isJsonColumn(c) ? `${from}.${name}::${c.pgType}` : `${from}.${name}`
  }

  /** Rows' values (schema order) as one array literal per column, cast to its type (pg-literals.ts). */
  private columnLists (rows: readonly Value[][]): string[] {
    return this.columns.map((c, j) => `${dollarQuoted(arrayLiteral(rows.map(values => pgText(values[j]!, c.type, c.precision))))}::${isJsonColumn(c) ? 'text' : c.pgType}[]`)
  }

  /** Keys (decodeKey's form) as one array literal per key column, cast to its type. */
  private keyLists (keys: readonly Row[]): string[] {
    return this.keyColumns.map(c => `${dollarQuoted(arrayLiteral(keys.map(k => pgText(k[c.name] as Value, c.type, c.precision))))}::${c.pgType}[]`)
  }

  /** A key as decodeKey gives it, from its canonical values in key order. */
  private keyRow (values: readonly Value[]): Row {
    const key: Row = {}
    this.keyColumns.forEach((c, i) => { key[c.name] = values[i] })
    return key
  }

  /**
   * The select list's COPY line decoder, from its types: read by a first
   * statement of the client's transaction (COPY sends no types), which also
   * holds the table's lock, so the types cannot change before the COPY runs.
   */
  private async lineDecoder (client: pg.PoolClient): Promise<(line: Buffer) => StoredRow> {
    const { fields } = await client.query({ text: `SELECT ${this.selectList()} FROM ${this.table.sql} LIMIT 0`, rowMode: 'array' })
    return this.copyLineDecoder(fields.map(f => f.dataTypeID))
  }

  /**
   * Runs `work` in a transaction of its own; the client goes back to the pool
   * after it (dropped when it failed or was aborted). An abort while a
   * statement runs (a lock waited on behind another session, a long read)
   * cancels that statement on the server (pg_cancel_backend from a
   * connection of its own): the transaction rolls back and the caller gets
   * AbortedError, instead of waiting for as long as the lock is held. A
   * COMMIT under way is not cut short by it: a fix that committed has landed.
   */
  private async inTransaction<T> (work: (client: pg.PoolClient) => Promise<T>, signal?: AbortSignal): Promise<T> {
    throwIfAborted(signal)
    const client = await this.connect()
    const onAbort = (): void => { void this.cancelStatement(client) }
    signal?.addEventListener('abort', onAbort, { once: true })
    let failure: unknown
    try {
      await client.query('BEGIN')
      const result = await work(client)
      await client.query('COMMIT')
      return result
    } catch (err) {
      failure = err
      await client.query('ROLLBACK').catch(() => undefined)
      if (signal?.aborted === true) throw new AbortedError(`work on ${this.table.tag} aborted: ${(err as Error).message}`)
      throw storeError(this.table.tag, err)
    } finally {
      signal?.removeEventListener('abort', onAbort)
      // a cancel may still be on its way to this backend: it must not meet another caller's statement there
      releaseClient(client, failure ?? (signal?.aborted === true ? new AbortedError() : undefined))
    }
  }

  /** Cancels the statement `client` runs now, if any; best effort (a server that cannot be reached has nothing running for us). */
  private async cancelStatement (client: pg.PoolClient): Promise<void> {
    const pid = (client as unknown as { processID: number | null }).processID
    if (pid === null) return
    const admin = await connectOnce(this.init.connectionString, this.table.tag).catch(() => undefined)
    try { await admin?.query('SELECT pg_cancel_backend($1)', [pid]) } catch { /* gone already */ } finally { await admin?.end().catch(() => undefined) }
  }

  /**
   * A COPY line (select list in schema column order, types `oids`) to its
   * stored row: straight to canonical bytes where pg-copy-canonical.ts can,
   * else decoded as a query would return it, then by storedFromArray().
   */
  private copyLineDecoder (oids: number[]): (line: Buffer) => StoredRow {
    const identity = typeParsers.getTypeParser(TEXT_OID, 'text')
    // a column of `precision: us` is read as its text, to the microsecond (RowCodec), not through a Date
    const parsers = oids.map((oid, i) => this.codec.columns[i]!.precision === 'us' && TIME_OIDS.has(oid) ? identity : typeParsers.getTypeParser(oid, 'text'))
    const fields = oids.map((oid, i) => fieldDecoder(oid, parsers[i]!, identity))
    const general = (line: Buffer): StoredRow => this.storedFromArray(decodeFields(line, fields))
    const direct = canonicalLineEncoder({ codec: this.codec, nullable: this.nullable, oids, readAsText: parsers.map(p => p === identity) })
    return direct === undefined ? general : line => direct(line) ?? general(line)
  }

  /**
   * A row read as an array in schema column order (the select list's order)
   * to its stored row: RowCodec.normalize by position; keep the two alike.
   */
  private storedFromArray (raw: unknown[]): StoredRow {
    const columns = this.codec.columns
    const values = new Array<Value>(columns.length)
    for (let i = 0; i < columns.length; i++) {
      const v = raw[i]
      const column = columns[i]!
      if (v === null || v === undefined) {
        if (!this.nullable[i]) throw new RowEncodingError(`column "${column.name}" is not nullable`)
        values[i] = null
      } else {
        values[i] = normalizeValue(column.type, v, column.name, column)
      }
    }
    return { key: this.codec.keyOfValues(values), row: packValues(values) }
  }

  private selectList (alias?: string): string {
    return this.columns.map(c => `${alias === undefined ? '' : `${alias}.`}${quote(c.name)}`).join(', ')
  }

  private keyJoin (t: string, k: string): string {
    return this.keyColumns.map(c => `${t}.${quote(c.name)} = ${k}.${quote(c.name)}`).join(' AND ')
  }
}

/**
 * Takes converge's change capture off a PostgreSQL table: its triggers, its
 * functions, its entries in the change log and its store record, and the
 * schema `converge` itself once no table is captured any more. The table's
 * rows are not touched. For a dataset that no longer has an agent: an agent
 * started on the table again installs the capture anew under a new store
 * id, so its index is rebuilt from a scan. Needs only the table's name: it
 * works on a table whose columns changed, or that is gone.
 */
export async function removePgCapture (connectionString: string, table: string): Promise<CaptureRemoval> {
  const { schema, name } = splitTableName(table)
  const sql = `${quote(schema)}.${quote(name)}`
  const tag = `${schema}.${name}`
  const client = await connectOnce(connectionString, tag)
  const dropped: string[] = []
  try {
    await client.query('BEGIN')
    // not while an agent's open() sets the capture up
    await client.query("SELECT pg_advisory_xact_lock(hashtext('converge-capture-setup'))")
    const { rows: [found] } = await client.query<{ captured: boolean, table: boolean }>(
      "SELECT to_regclass('converge.stores') IS NOT NULL AS captured, to_regclass($1) IS NOT NULL AS table", [sql])
    if (found?.table === true) {
      const { rows: triggers } = await client.query<{ name: string }>("SELECT tgname::text AS name FROM pg_trigger WHERE tgrelid = $1::regclass AND starts_with(tgname, 'converge_') ORDER BY tgname", [sql])
      for (const t of triggers) {
        await client.query(`DROP TRIGGER ${quote(t.name)} ON ${sql}`)
        dropped.push(`trigger ${t.name} on ${tag}`)
      }
    }
    let pendingChanges = 0
    if (found?.captured === true) {
      // keys, not log rows (a row holds one key, or a statement's; a log from before `n` has no such column: read through to_jsonb)
      const { rows: [removed] } = await client.query<{ keys: number }>(
        "WITH d AS (DELETE FROM converge.changes c WHERE c.tbl = $1 RETURNING c) SELECT coalesce(sum(coalesce((to_jsonb(d.c)->>'n')::int, 1)), 0)::int AS keys FROM d", [tag])
      pendingChanges = removed?.keys ?? 0
      await client.query('DELETE FROM converge.stores WHERE tbl = $1', [tag])
      const fns = captureFunctions(tag)
      for (const fn of [fns.statement, fns.row]) {
        // (another table whose name makes the same function name may still call it)
        const { rows: [use] } = await client.query<{ exists: boolean, triggers: number }>(
          'SELECT to_regprocedure($1) IS NOT NULL AS exists, (SELECT count(*)::int FROM pg_trigger WHERE tgfoid = to_regprocedure($1)) AS triggers', [`${fn}()`])
        if (use?.exists === true && use.triggers === 0) {
          await client.query(`DROP FUNCTION ${fn}()`)
          dropped.push(`function ${fn}`)
        }
      }
      const { rows: [left] } = await client.query<{ stores: number, triggers: number }>(
        `SELECT (SELECT count(*)::int FROM converge.stores) AS stores,
                (SELECT count(*)::int FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE p.pronamespace = 'converge'::regnamespace) AS triggers`)
      if (left?.stores === 0 && left.triggers === 0) {
        await client.query('DROP SCHEMA converge CASCADE')
        dropped.push('schema converge')
      }
    }
    await client.query('COMMIT')
    return { dropped, pendingChanges }
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined)
    if ((err as { code?: string }).code === INSUFFICIENT_PRIVILEGE) {
      throw new StoreSetupError(`cannot remove the change capture of ${tag}: ${(err as Error).message}. The role must own ${tag} (to drop its triggers) and the schema converge`, { cause: err })
    }
    throw err
  } finally {
    await client.end().catch(() => undefined)
  }
}

/**
 * SQLSTATEs of a statement over columns or a table that are not what they
 * were: undefined_column, undefined_table, datatype_mismatch.
 */
const SCHEMA_CHANGED = new Set(['42703', '42P01', '42804'])

/**
 * SQLSTATEs of a server that went away or is not taking work: admin_shutdown,
 * crash_shutdown, cannot_connect_now (starting up or recovering); class 08
 * is every connection exception, class 53 the server's resources running
 * out (connections, disk, memory).
 */
const SERVER_GONE = new Set(['57P01', '57P02', '57P03'])
const SERVER_GONE_CLASSES = ['08', '53']
/** The socket's own errors, and the driver's for a connection it lost (it gives those no code). */
const SOCKET_GONE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EPIPE', 'EAI_AGAIN'])
const DRIVER_LOST = /^Connection terminated|^Client has encountered a connection error|^Connection ended unexpectedly/

/**
 * A failure of work on `table` as the agent reports it: the table's schema
 * changed under the agent (a column dropped or renamed, a type changed),
 * which it reads at start, as StoreSchemaChangedError with what to do; the
 * server unreachable, shut down, crashed or still recovering as
 * StoreUnavailableError naming the table; any other error as it is.
 */
function storeError (table: string, err: unknown): unknown {
  if (err instanceof ConvergeError) return err
  const code = (err as { code?: unknown } | undefined)?.code
  const message = (err as Error | undefined)?.message ?? String(err)
  if (typeof code === 'string' && SCHEMA_CHANGED.has(code)) return new StoreSchemaChangedError(`table ${table}`, message, { cause: err })
  const gone = typeof code === 'string' ? SERVER_GONE.has(code) || SERVER_GONE_CLASSES.includes(code.slice(0, 2)) || SOCKET_GONE.has(code) : DRIVER_LOST.test(message)
  return gone ? new StoreUnavailableError(`PostgreSQL is unavailable for ${table}: ${message}`, { cause: err }) : err
}

/** Back to the pool; dropped instead when the work on it failed (its session may be in any state). */
function releaseClient (client: pg.PoolClient, failure: unknown): void {
  client.release(failure === undefined ? undefined : failure instanceof Error ? failure : new Error(String(failure)))
}

/** A transaction id as PostgreSQL writes it: what a row's version is. */
const XID = /^\d{1,10}$/

/** A row read with its version (readByKeys with versions). */
interface VersionedRow extends StoredRow { version: string }

/**
 * A COPY line decoder for lines that carry one more field after the row's
 * columns, the row's xmin (digits): it is taken off, and the line, ended
 * where that field began, goes to `decode`. (A tab inside a value is sent
 * escaped, so the line's last tab is the one before the xmin.)
 */
function withVersion (decode: (line: Buffer) => StoredRow): (line: Buffer) => VersionedRow {
  return line => {
    const tab = line.lastIndexOf(TAB)
    const version = line.toString('latin1', tab + 1, line.length - 1)
    // the line is this decoder's alone while it runs (see CopyRows' decode): its end moves up to the tab
    line[tab] = NEWLINE
    const row = decode(line.subarray(0, tab + 1))
    return { key: row.key, row: row.row, version }
  }
}

/** Versions (xmin values as read) as an xid array literal. */
function versionList (versions: readonly string[]): string {
  return `'{${versions.join(',')}}'::xid[]`
}

function isJsonColumn (c: ColumnInfo): boolean { return /^jsonb?$/.test(c.pgType) }

/** How a key column is written into the change log's jsonb: exact text for 64-bit and numeric values, hex for bytes. */
function keyJsonExpr (expr: string, pgType: string): string {
  if (/^(bigint|numeric|decimal)/.test(pgType)) return `${expr}::text`
  if (pgType === 'bytea') return `'\\x' || encode(${expr}, 'hex')`
  return expr
}

/**
 * A LISTEN connection that wakes the change feed; polling covers for a lost
 * connection while it connects again in the background (a server that
 * restarted, or a connection an idle timeout cut, would otherwise leave the
 * feed polling for good), first after LISTEN_RETRY_MS, then less often. Once
 * it listens again the feed reads at once: a change may have committed
 * while no one listened. A notification that arrives while the feed is
 * reading (no one waits yet) is kept, so the next wait returns at once
 * instead of sleeping a whole poll interval over a change already committed.
 */
class Wakeup {
  private client: pg.Client | undefined
  private waiter: (() => void) | undefined
  private pending = false
  private connecting: Promise<void> | undefined
  private retry: NodeJS.Timeout | undefined
  private retryMs = LISTEN_RETRY_MS
  /** The first connection, which the first wait waits for; undefined once it has. */
  private first: Promise<void> | undefined
  private attempts = 0
  private closed = false

  constructor (private readonly connectionString: string, private readonly signal: AbortSignal) {
    this.listen()
    this.first = this.connecting
  }

  private listen (): void {
    this.retry = undefined
    if (this.closed || this.signal.aborted) return
    // a connection made again (not the first): a change may have committed while no one listened
    const again = this.attempts++ > 0
    this.connecting = (async () => {
      const client = new pg.Client({ connectionString: this.connectionString, connectionTimeoutMillis: LISTEN_CONNECT_TIMEOUT_MS })
      const lost = (): void => {
        if (this.client !== client) return
        this.client = undefined
        client.end().catch(() => undefined)
        this.listenLater()
      }
      client.on('error', lost)
      client.on('end', lost)
      client.on('notification', () => { this.notify() })
      try {
        await client.connect()
        await client.query('LISTEN converge_changes')
      } catch {
        await client.end().catch(() => undefined) // no LISTEN for now: the feed polls
        this.listenLater()
        return
      } finally {
        this.connecting = undefined
      }
      if (this.closed || this.signal.aborted) { await client.end().catch(() => undefined); return }
      this.client = client
      this.retryMs = LISTEN_RETRY_MS
      if (again) this.notify()
    })()
  }

  private listenLater (): void {
    if (this.closed || this.signal.aborted || this.retry !== undefined) return
    this.retry = setTimeout(() => { this.listen() }, this.retryMs)
    this.retryMs = Math.min(this.retryMs * 2, LISTEN_RETRY_MAX_MS)
  }

  private notify (): void {
    if (this.waiter !== undefined) this.waiter(); else this.pending = true
  }

  /** Waits for a notification or `ms`; true when notified. */
  async wait (ms: number): Promise<boolean> {
    // the first connection is waited for; one made again later wakes a wait itself
    if (this.first !== undefined) { await this.first; this.first = undefined }
    if (this.pending) { this.pending = false; return true }
    return await new Promise<boolean>(resolve => {
      const done = (notified: boolean): void => { clearTimeout(timer); this.signal.removeEventListener('abort', aborted); this.waiter = undefined; resolve(notified) }
      const aborted = (): void => { done(false) }
      const timer = setTimeout(() => { done(false) }, ms)
      this.waiter = () => { done(true) }
      this.signal.addEventListener('abort', aborted, { once: true })
    })
  }

  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.retry)
    await this.connecting
    const client = this.client
    this.client = undefined
    await client?.end().catch(() => undefined)
  }
}
