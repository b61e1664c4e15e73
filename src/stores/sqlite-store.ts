/**
 * A replica store over a table in a SQLite file (node:sqlite, no native
 * package). The table is the application's own: other connections and
 * processes write it with plain SQL, and converge sees those writes.
 *
 *   <table>                    the rows, one SQL column per schema column
 *   converge_changes_<table>   change log: seq (AUTOINCREMENT), op, origin, tx, k0…kn (raw key values)
 *   converge_meta_<table>      name → value: 'id' (this store's identity), 'layout',
 *                              and 'origin' / 'tx', which apply() sets inside its
 *                              transaction for the triggers to read
 *
 * Change capture is by AFTER INSERT/UPDATE/DELETE triggers on the table, so
 * every committed write from any connection lands in the log in the same
 * transaction. apply() writes 'origin' and 'tx' to the meta table after
 * BEGIN IMMEDIATE and clears them before COMMIT: other connections never see
 * them set, so their writes are logged with no origin; 'tx' keeps one
 * apply's entries in one batch. The log keeps the raw key values only; the
 * feed reads each entry joined with its row as it is now (one query), so a
 * batch carries the row as it is now, never older than the change.
 *
 * Values are mapped both ways so that a logical row gives the same canonical
 * bytes as the other stores: reads go through RowCodec.normalize (64-bit
 * integers are read as bigint, never rounded); writes store integer → INTEGER,
 * float → REAL (NaN as the text 'NaN', which SQLite would otherwise turn into
 * NULL), decimal, string and json → TEXT, boolean → INTEGER 0/1, timestamp →
 * ISO-8601 UTC text with milliseconds (integer ms when the column's declared
 * type has INTEGER affinity; microseconds, six fraction digits or integer µs,
 * for a column of `precision: us`), bytes → BLOB. Text holding a NUL character is
 * read as bytes and decoded here, since node:sqlite would cut it short.
 *
 * Guaranteed: apply() is one transaction; the change log holds every
 * committed write made while the triggers exist; seq increases with every
 * apply. Not guaranteed: get() finds a row whose timestamp key column holds
 * another spelling of the instant than the one this store writes.
 */
import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { EventEmitter } from 'node:events'
import { TextDecoder } from 'node:util'
import { DatabaseSync, type SQLInputValue, type SQLOutputValue, type StatementSync } from 'node:sqlite'
import { SCAN_BATCH_ROWS } from '../constants.ts'
import { AbortedError, ChangesTrimmedError, RowEncodingError, StoreNotOpenError, StoreReadOnlyError, StoreSchemaChangedError, StoreSchemaError, StoreUnavailableError, throwIfAborted } from '../errors.ts'
import { packValues, type Row, type RowCodec, type Value } from '../digest/row-codec.ts'
import type { ColumnSpec } from '../digest/schema.ts'
import { microsToIso } from '../digest/timestamp.ts'
import { sameBytes } from '../util/bytes.ts'
import type { ApplyRequest, ApplyResult, CaptureRemoval, ChangeBatch, ChangesOptions, ReplicaStore, RewrittenRow, RowChange, StoredRow, StoreOpenOptions } from './replica-store.ts'

export interface SqliteStoreInit {
  /** Path of the SQLite file (created if missing). */
  path: string
  /** The table holding the rows. */
  table: string
  codec: RowCodec
  /** Create the table from the schema when it does not exist. Default false: the table must exist with every schema column. */
  createTable?: boolean
  /** How often a waiting change feed looks for writes by other connections. Default 250 ms. */
  pollMs?: number
  /** How long a statement waits for another connection's lock before failing. Default 5000 ms. */
  busyTimeoutMs?: number
}

/** Version of the triggers and change log layout; a change drops and recreates them (and renews the store id). */
const LAYOUT_VERSION = 1
/** Change log entries read per feed read; a transaction larger than this is split over several batches. */
const FEED_READ_ENTRIES = 5000
const INT64_MAX = 2n ** 63n - 1n
const INT64_MIN = -(2n ** 63n)
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER)

/** The table's name and its capture's: the change log and meta tables (quoted) and the triggers (bare). */
function captureNames (table: string): { table: string, log: string, meta: string, triggers: [string, string, string] } {
  return {
    table: quoteIdent(table),
    log: quoteIdent(`converge_changes_${table}`),
    meta: quoteIdent(`converge_meta_${table}`),
    triggers: [`converge_${table}_insert`, `converge_${table}_update`, `converge_${table}_delete`]
  }
}

/**
 * Takes converge's change capture off a SQLite table: its triggers, its
 * change log (with the changes it still held) and its meta table. The
 * table's rows are not touched; an agent started on it again sets the
 * capture up anew under a new store id. See removePgCapture in pg-store.ts.
 */
export function removeSqliteCapture (path: string, table: string): CaptureRemoval {
  if (!existsSync(path)) throw new StoreUnavailableError(`no SQLite database ${path}`)
  let db: DatabaseSync
  try {
    db = new DatabaseSync(path, { timeout: 5000 })
  } catch (err) {
    throw new StoreUnavailableError(`cannot open SQLite database ${path}: ${(err as Error).message}`, { cause: err })
  }
  try {
    const names = captureNames(table)
    const dropped: string[] = []
    db.exec('BEGIN IMMEDIATE')
    try {
      // read under the write lock: an agent's open() cannot set the capture up meanwhile
      const present = new Set((db.prepare("SELECT name FROM sqlite_master WHERE type IN ('trigger', 'table')").all() as Array<{ name: string }>).map(r => r.name))
      let pendingChanges = 0
      if (present.has(`converge_changes_${table}`)) pendingChanges = Number((db.prepare(`SELECT count(*) AS n FROM ${names.log}`).get() as { n: number | bigint }).n)
      for (const t of names.triggers) if (present.has(t)) { db.exec(`DROP TRIGGER ${quoteIdent(t)}`); dropped.push(`trigger ${t}`) }
      for (const [bare, quoted] of [[`converge_changes_${table}`, names.log], [`converge_meta_${table}`, names.meta]] as const) {
        if (present.has(bare)) { db.exec(`DROP TABLE ${quoted}`); dropped.push(`table ${bare}`) }
      }
      db.exec('COMMIT')
      return { dropped, pendingChanges }
    } catch (err) {
      db.exec('ROLLBACK')
      throw err
    }
  } finally {
    db.close()
  }
}

function quoteIdent (name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/** The SQLite column type a schema column is created with. */
const SQL_TYPES: Record<ColumnSpec['type'], string> = {
  integer: 'INTEGER',
  float: 'REAL',
  decimal: 'TEXT',
  string: 'TEXT',
  boolean: 'INTEGER',
  timestamp: 'TEXT',
  json: 'TEXT',
  bytes: 'BLOB'
}

/** Column types held as SQLite TEXT. */
const TEXT_TYPES = new Set<ColumnSpec['type']>(['string', 'decimal', 'json'])

/**
 * The expression a column is read with. node:sqlite cuts text at its first
 * NUL character, so text holding one is read as its bytes (decoded again in
 * fromSql); other text is read as text, which costs nothing extra.
 */
function readExpr (column: string, type: ColumnSpec['type']): string {
  if (!TEXT_TYPES.has(type)) return column
  return `CASE WHEN typeof(${column}) = 'text' AND instr(${column}, char(0)) > 0 THEN CAST(${column} AS BLOB) ELSE ${column} END`
}

/** A value as SQLite returned it, made into what RowCodec.normalize expects for the column type. */
function fromSql (type: ColumnSpec['type'], raw: SQLOutputValue, text: TextDecoder): unknown {
  if (raw === null) return null
  // 64-bit integers are read as bigint; those a number holds exactly become numbers (booleans want 0/1)
  const v = typeof raw === 'bigint' && raw >= MIN_SAFE && raw <= MAX_SAFE ? Number(raw) : raw
  // text with a NUL in it, read as bytes by readExpr
  if (TEXT_TYPES.has(type) && v instanceof Uint8Array) return text.decode(v)
  switch (type) {
    // a column with numeric affinity turns numeric-looking text into a number: give the text back
    case 'string': return typeof v === 'number' || typeof v === 'bigint' ? String(v) : v
    case 'bytes': return typeof v === 'string' ? new TextEncoder().encode(v) : v
    // integer ms (or µs) written into a column with TEXT affinity comes back as digits: read exactly
    case 'timestamp': return typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v) ? BigInt(v.trim()) : v
    default: return v
  }
}

/** SQLite's column affinity for a declared type (its rules, in their order: https://sqlite.org/datatype3.html#determination_of_column_affinity). */
function affinityOf (declared: string): 'INTEGER' | 'TEXT' | 'BLOB' | 'REAL' | 'NUMERIC' {
  const t = declared.toUpperCase()
  if (t.includes('INT')) return 'INTEGER'
  if (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT')) return 'TEXT'
  if (t.includes('BLOB') || t === '') return 'BLOB'
  if (t.includes('REAL') || t.includes('FLOA') || t.includes('DOUB')) return 'REAL'
  return 'NUMERIC'
}

/** Whether a column of this declared type stores text as written (TEXT or BLOB affinity: no conversion to a number). */
function keepsText (declared: string): boolean {
  const affinity = affinityOf(declared)
  return affinity === 'TEXT' || affinity === 'BLOB'
}

interface ColumnBinding {
  spec: ColumnSpec
  /** Timestamps go in as integer ms, or µs for `precision: us` (declared type with INTEGER affinity), instead of ISO text. */
  timestampAsInteger: boolean
}

/** A canonical value made into what this store writes for the column. */
function toSql (column: ColumnBinding, v: Value): SQLInputValue {
  if (v === null) return null
  const { spec } = column
  const wrong = (): never => { throw new RowEncodingError(`column "${spec.name}": ${typeof v} ${String(v)} is not a canonical ${spec.type}`) }
  switch (spec.type) {
    case 'integer': {
      // numbers are bound as doubles by node:sqlite; a bigint is bound as a 64-bit integer
      const big = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : wrong()
      if (big > INT64_MAX || big < INT64_MIN) throw new RowEncodingError(`column "${spec.name}": ${big} does not fit SQLite's signed 64-bit INTEGER`)
      return big
    }
    case 'float': {
      const n = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : wrong()
      return Number.isNaN(n) ? 'NaN' : n
    }
    case 'decimal':
    case 'string':
    case 'json':
      return typeof v === 'string' ? v : wrong()
    case 'boolean':
      return typeof v === 'boolean' ? (v ? 1n : 0n) : wrong()
    case 'timestamp': {
      if (spec.precision === 'us') {
        // microseconds: as an integer count, or ISO text with six fraction digits
        const us = typeof v === 'number' || typeof v === 'bigint' ? v : wrong()
        return column.timestampAsInteger ? BigInt(us) : microsToIso(us)
      }
      const ms = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : wrong()
      if (column.timestampAsInteger || Math.abs(ms) > 8.64e15) return BigInt(Math.trunc(ms))
      return new Date(ms).toISOString()
    }
    case 'bytes':
      return v instanceof Uint8Array ? v : wrong()
  }
}

/** What a read-only open prepares: reads of the table alone. */
interface ReadStatements {
  selectByKey: StatementSync
  scanFirst: StatementSync
  scanAfter: StatementSync
  count: StatementSync
}

/** Writes, and the change log's statements (a read-only open has no log to read: it creates none). */
interface Statements extends ReadStatements {
  upsert: StatementSync
  deleteByKey: StatementSync
  lastSeq: StatementSync
  firstSeqAfter: StatementSync
  readLog: StatementSync
  trim: StatementSync
  setControl: StatementSync
  marker: StatementSync
}

interface LogEntry { seq: bigint | number, origin: string | null, tx: bigint | number | null, raw: Record<string, SQLOutputValue> }

export class SqliteStore implements ReplicaStore {
  readonly kind = 'sqlite'
  readonly codec: RowCodec
  /** feedRowsAtDelivery: the feed joins each logged key with its row as it is when the feed reads it. */
  readonly supports = { changeFeed: true, durableChangeFeed: true, transactions: true, feedRowsAtDelivery: true }
  private readonly path: string
  private readonly table: string
  private readonly createTable: boolean
  private readonly pollMs: number
  private readonly busyTimeoutMs: number
  private readonly names: { table: string, log: string, meta: string, triggers: [string, string, string] }
  private readonly bindings: ColumnBinding[]
  private readonly keyBindings: ColumnBinding[]
  private readonly committed = new EventEmitter()
  private db: DatabaseSync | undefined
  private stmts: ReadStatements | undefined
  /** The statements that write or read the change log; undefined while open read-only. */
  private writeStmts: Statements | undefined
  private storeId: string | undefined
  /** Decodes text read as bytes, in the database's text encoding. */
  private text = new TextDecoder('utf-8', { ignoreBOM: true })

  constructor (init: SqliteStoreInit) {
    this.codec = init.codec
    this.path = init.path
    this.table = init.table
    this.createTable = init.createTable === true
    this.pollMs = init.pollMs ?? 250
    this.busyTimeoutMs = init.busyTimeoutMs ?? 5000
    this.names = captureNames(init.table)
    this.bindings = this.codec.columns.map(spec => ({ spec, timestampAsInteger: false }))
    this.keyBindings = this.codec.keyPositions.map(i => this.bindings[i]!)
    this.committed.setMaxListeners(0)
  }

  get id (): string {
    if (this.db !== undefined && this.writeStmts === undefined) throw new StoreReadOnlyError(`SQLite store ${this.table}`, 'its store id')
    if (this.storeId === undefined) throw new StoreNotOpenError(`SQLite store ${this.table}`)
    return this.storeId
  }

  async open (options: StoreOpenOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    if (this.db !== undefined) return
    const readOnly = options.readOnly === true
    let db: DatabaseSync
    try {
      // read-only: SQLite itself refuses writes, and a missing file is an error instead of a new empty database
      db = new DatabaseSync(this.path, { timeout: this.busyTimeoutMs, readBigInts: true, readOnly })
    } catch (err) {
      throw new StoreUnavailableError(`cannot open SQLite database ${this.path}${readOnly ? ' read-only' : ''}: ${(err as Error).message}`, { cause: err })
    }
    try {
      let id: string | undefined
      if (readOnly) {
        this.checkTable(db, this.codec.keyPositions.map(i => this.codec.columns[i]!.name))
      } else {
        // WAL lets other processes read while one writes; the busy timeout makes writers queue instead of failing
        db.exec('PRAGMA journal_mode = WAL')
        id = this.transaction(db, () => this.setUp(db))
      }
      const encoding = (db.prepare('PRAGMA encoding').get() as { encoding: string }).encoding
      this.text = new TextDecoder(encoding.toLowerCase(), { ignoreBOM: true })
      const prepared = this.prepare(db, readOnly)
      this.stmts = prepared.read
      this.writeStmts = prepared.write
      this.storeId = id
      this.db = db
    } catch (err) {
      db.close()
      throw err
    }
  }

  async close (): Promise<void> {
    const db = this.db
    this.db = undefined
    this.stmts = undefined
    this.writeStmts = undefined
    // wakes change feeds waiting for a commit; they see the store closed and end
    this.committed.emit('wake')
    db?.close()
  }

  /** Runs `fn` in BEGIN IMMEDIATE … COMMIT on `db`, rolling back when it throws. `fn` must not await. */
  private transaction<T> (db: DatabaseSync, fn: () => T): T {
    db.exec('BEGIN IMMEDIATE')
    try {
      const out = fn()
      db.exec('COMMIT')
      return out
    } catch (err) {
      try { db.exec('ROLLBACK') } catch { /* no transaction left to roll back */ }
      throw err
    }
  }

  /** Creates or checks the table, the change log, the meta table and the triggers; returns the store id. */
  private setUp (db: DatabaseSync): string {
    const { table, log, meta, triggers } = this.names
    const columns = this.codec.columns
    const keyNames = this.codec.keyPositions.map(i => columns[i]!.name)
    if (this.createTable) {
      const defs = columns.map(c => {
        const notNull = keyNames.includes(c.name) || c.nullable === false ? ' NOT NULL' : ''
        return `${quoteIdent(c.name)} ${SQL_TYPES[c.type]}${notNull}`
      })
      db.exec(`CREATE TABLE IF NOT EXISTS ${table} (${defs.join(', ')}, PRIMARY KEY (${keyNames.map(quoteIdent).join(', ')}))`)
    }
    this.checkTable(db, keyNames)

    db.exec(`CREATE TABLE IF NOT EXISTS ${meta} (name TEXT PRIMARY KEY, value)`)
    const getMeta = db.prepare(`SELECT value FROM ${meta} WHERE name = ?`)
    const setMeta = db.prepare(`INSERT INTO ${meta} (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`)
    const metaValue = (name: string): SQLOutputValue | undefined => (getMeta.get(name) as { value: SQLOutputValue } | undefined)?.value

    const layout = JSON.stringify({ v: LAYOUT_VERSION, key: keyNames })
    const storedLayout = metaValue('layout')
    const existing = new Set((db.prepare("SELECT name FROM sqlite_master WHERE type IN ('trigger', 'table') AND name IN (?, ?, ?, ?)")
      .all(...triggers, `converge_changes_${this.table}`) as Array<{ name: string }>).map(r => r.name))
    let renewId = false
    if (storedLayout !== undefined && storedLayout !== layout) {
      // another key or trigger version: the old log cannot be read with the new layout
      for (const t of triggers) db.exec(`DROP TRIGGER IF EXISTS ${quoteIdent(t)}`)
      db.exec(`DROP TABLE IF EXISTS ${log}`)
      renewId = true
    } else if (storedLayout !== undefined && existing.size < 4) {
      // the triggers or the log were dropped (the table recreated?): writes went unrecorded, so consumers must rescan
      renewId = true
    }

    const k = keyNames.map((_, i) => `k${i}`)
    db.exec(`CREATE TABLE IF NOT EXISTS ${log} (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, origin TEXT, tx INTEGER${k.map(c => `, ${c}`).join('')})`)
    const control = `(SELECT value FROM ${meta} WHERE name = 'origin'), (SELECT value FROM ${meta} WHERE name = 'tx')`
    const logCols = `op, origin, tx${k.map(c => `, ${c}`).join('')}`
    const keysOf = (row: 'NEW' | 'OLD'): string => keyNames.map(n => `${row}.${quoteIdent(n)}`).join(', ')
    const keyChanged = keyNames.map(n => `OLD.${quoteIdent(n)} IS NOT NEW.${quoteIdent(n)}`).join(' OR ')
    db.exec(`CREATE TRIGGER IF NOT EXISTS ${quoteIdent(triggers[0])} AFTER INSERT ON ${table} BEGIN
      INSERT INTO ${log} (${logCols}) VALUES ('I', ${control}, ${keysOf('NEW')});
    END`)
    db.exec(`CREATE TRIGGER IF NOT EXISTS ${quoteIdent(triggers[1])} AFTER UPDATE ON ${table} BEGIN
      INSERT INTO ${log} (${logCols}) SELECT 'D', ${control}, ${keysOf('OLD')} WHERE ${keyChanged};
      INSERT INTO ${log} (${logCols}) VALUES ('U', ${control}, ${keysOf('NEW')});
    END`)
    db.exec(`CREATE TRIGGER IF NOT EXISTS ${quoteIdent(triggers[2])} AFTER DELETE ON ${table} BEGIN
      INSERT INTO ${log} (${logCols}) VALUES ('D', ${control}, ${keysOf('OLD')});
    END`)

    setMeta.run('layout', layout)
    setMeta.run('origin', null)
    setMeta.run('tx', null)
    const id = metaValue('id')
    if (typeof id === 'string' && !renewId) return id
    const fresh = randomUUID()
    setMeta.run('id', fresh)
    return fresh
  }

  /** Checks that the table exists, has every schema column and a primary key or unique index on the key columns. */
  private checkTable (db: DatabaseSync, keyNames: string[]): void {
    const info = db.prepare('SELECT name, type, pk FROM pragma_table_info(?)').all(this.table) as Array<{ name: string, type: string, pk: bigint | number }>
    if (info.length === 0) throw new StoreSchemaError(`SQLite table "${this.table}" does not exist in ${this.path}`)
    const byName = new Map(info.map(c => [c.name.toLowerCase(), c]))
    for (const binding of this.bindings) {
      const found = byName.get(binding.spec.name.toLowerCase())
      if (found === undefined) throw new StoreSchemaError(`SQLite table "${this.table}" has no column "${binding.spec.name}" (schema type ${binding.spec.type})`)
      binding.timestampAsInteger = binding.spec.type === 'timestamp' && affinityOf(found.type) === 'INTEGER'
      // a column whose text is its value must not be one SQLite turns into a number
      const asText = binding.spec.keepScale === true ? { what: 'keeps its decimals\' scale (keepScale)', example: '10.50 as the number 10.5' } : binding.spec.keepText === true ? { what: 'keeps its JSON text (keepText)', example: 'the JSON 1.50 as the number 1.5' } : undefined
      if (asText !== undefined && !keepsText(found.type)) {
        throw new StoreSchemaError(`SQLite table "${this.table}": column "${binding.spec.name}" ${asText.what}, but its declared type ${found.type === '' ? '(none)' : found.type} has ${affinityOf(found.type)} affinity, which stores ${asText.example}: declare it TEXT`)
      }
    }
    const wanted = [...keyNames].map(n => n.toLowerCase()).sort().join('\0')
    const pk = info.filter(c => Number(c.pk) > 0).map(c => c.name.toLowerCase()).sort().join('\0')
    if (pk === wanted) return
    const indexes = db.prepare('SELECT name FROM pragma_index_list(?) WHERE "unique" = 1 AND partial = 0').all(this.table) as Array<{ name: string }>
    for (const { name } of indexes) {
      const cols = (db.prepare('SELECT name FROM pragma_index_info(?)').all(name) as Array<{ name: string | null }>)
      if (cols.map(c => (c.name ?? '').toLowerCase()).sort().join('\0') === wanted) return
    }
    throw new StoreSchemaError(`SQLite table "${this.table}" has no PRIMARY KEY or UNIQUE index on (${keyNames.join(', ')})`)
  }

  private prepare (db: DatabaseSync, readOnly: boolean): { read: ReadStatements, write?: Statements } {
    const { table, log, meta } = this.names
    const columns = this.codec.columns
    const keyNames = this.codec.keyPositions.map(i => columns[i]!.name)
    const select = (prefix: string): string => columns.map((c, i) => `${readExpr(prefix + quoteIdent(c.name), c.type)} AS c${i}`).join(', ')
    const keyMatch = keyNames.map(n => `${quoteIdent(n)} = ?`).join(' AND ')
    const order = keyNames.map(quoteIdent).join(', ')
    // the scan cursor: each key value with its SQLite type, so that text read as bytes is compared as the text it is
    const keyTypes = keyNames.map((n, i) => `typeof(${quoteIdent(n)}) AS y${i}`).join(', ')
    const cursor = keyNames.map((_, i) => `CASE ?${2 * i + 2} WHEN 'text' THEN CAST(?${2 * i + 1} AS TEXT) ELSE ?${2 * i + 1} END`)
    const after = keyNames.length === 1 ? `${order} > ${cursor[0]!}` : `(${order}) > (${cursor.join(', ')})`
    const nonKey = columns.filter(c => !keyNames.includes(c.name))
    const onConflict = nonKey.length === 0
      ? 'DO NOTHING'
      : `DO UPDATE SET ${nonKey.map(c => `${quoteIdent(c.name)} = excluded.${quoteIdent(c.name)}`).join(', ')}`
    const k = keyNames.map((_, i) => `k${i}`)
    const read: ReadStatements = {
      selectByKey: db.prepare(`SELECT ${select('')} FROM ${table} WHERE ${keyMatch}`),
      scanFirst: db.prepare(`SELECT ${select('')}, ${keyTypes} FROM ${table} ORDER BY ${order} LIMIT ?`),
      scanAfter: db.prepare(`SELECT ${select('')}, ${keyTypes} FROM ${table} WHERE ${after} ORDER BY ${order} LIMIT ?${2 * keyNames.length + 1}`),
      count: db.prepare(`SELECT count(*) AS n FROM ${table}`)
    }
    for (const s of Object.values(read)) s.setReadBigInts(true)
    if (readOnly) return { read }
    const write: Statements = {
      ...read,
      upsert: db.prepare(`INSERT INTO ${table} (${columns.map(c => quoteIdent(c.name)).join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) ON CONFLICT (${order}) ${onConflict}`),
      deleteByKey: db.prepare(`DELETE FROM ${table} WHERE ${keyMatch}`),
      lastSeq: db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?'),
      firstSeqAfter: db.prepare(`SELECT min(seq) AS seq FROM ${log} WHERE seq > ?`),
      // each entry with its row as it is now (NULLs when gone): the join matches the raw key values the trigger copied
      readLog: db.prepare(`SELECT l.seq AS seq, l.op AS op, l.origin AS origin, l.tx AS tx, t.${quoteIdent(keyNames[0]!)} IS NOT NULL AS present, ` +
        `${this.keyBindings.map((b, i) => `${readExpr(`l.${k[i]!}`, b.spec.type)} AS k${i}`).join(', ')}, ${select('t.')} ` +
        `FROM ${log} AS l LEFT JOIN ${table} AS t ON ${keyNames.map((n, i) => `t.${quoteIdent(n)} = l.${k[i]!}`).join(' AND ')} ` +
        'WHERE l.seq > ? ORDER BY l.seq LIMIT ?'),
      trim: db.prepare(`DELETE FROM ${log} WHERE seq <= ?`),
      setControl: db.prepare(`UPDATE ${meta} SET value = CASE name WHEN 'origin' THEN ? ELSE ? END WHERE name IN ('origin', 'tx')`),
      marker: db.prepare(`INSERT INTO ${log} (op, origin, tx) VALUES ('N', ?, ?)`)
    }
    for (const s of Object.values(write)) s.setReadBigInts(true)
    return { read, write }
  }

  private handles (): { db: DatabaseSync, stmts: ReadStatements } {
    if (this.db === undefined || this.stmts === undefined) throw new StoreNotOpenError(`SQLite store ${this.table}`)
    return { db: this.db, stmts: this.stmts }
  }

  /** The handles for `operation`, which writes or needs the change log: refused when opened read-only. */
  private writeHandles (operation: string): { db: DatabaseSync, stmts: Statements } {
    const { db } = this.handles()
    if (this.writeStmts === undefined) throw new StoreReadOnlyError(`SQLite store ${this.table}`, operation)
    return { db, stmts: this.writeStmts }
  }

  /** A result row (columns aliased c0…cn in schema order) as canonical values. */
  private canonical (raw: Record<string, SQLOutputValue>): Value[] {
    const row: Row = {}
    this.codec.columns.forEach((c, i) => { row[c.name] = fromSql(c.type, raw[`c${i}`] ?? null, this.text) })
    return this.codec.normalize(row)
  }

  /** The canonical key of a change log entry (key values aliased k0…kn). */
  private keyOfLogEntry (raw: Record<string, SQLOutputValue>): Uint8Array {
    const key: Row = {}
    this.keyBindings.forEach((b, i) => { key[b.spec.name] = fromSql(b.spec.type, raw[`k${i}`] ?? null, this.text) })
    return this.codec.encodeKey(key)
  }

  /** The bind values of a canonical key. */
  private keyParams (key: Uint8Array): SQLInputValue[] {
    const decoded = this.codec.decodeKey(key)
    return this.keyBindings.map(b => toSql(b, (decoded[b.spec.name] ?? null) as Value))
  }

  private readRow (stmts: ReadStatements, params: SQLInputValue[]): Uint8Array | undefined {
    const raw = stmts.selectByKey.get(...params) as Record<string, SQLOutputValue> | undefined
    return raw === undefined ? undefined : packValues(this.canonical(raw))
  }

  /** Every row in batches, in primary key order; each batch is one query after the last key seen (keyset pagination). */
  async * scan (options: { signal?: AbortSignal, batchSize?: number } = {}): AsyncGenerator<StoredRow[]> {
    const limit = Math.max(1, options.batchSize ?? SCAN_BATCH_ROWS)
    let cursor: SQLInputValue[] | undefined
    for (;;) {
      throwIfAborted(options.signal)
      const { stmts } = this.handles()
      const raws = this.schemaChecked(() => (cursor === undefined ? stmts.scanFirst.all(limit) : stmts.scanAfter.all(...cursor, limit)) as Array<Record<string, SQLOutputValue>>)
      if (raws.length === 0) return
      const last = raws[raws.length - 1]!
      cursor = this.codec.keyPositions.flatMap((p, i) => [last[`c${p}`] ?? null, last[`y${i}`] ?? null]) as SQLInputValue[]
      yield raws.map(raw => {
        const values = this.canonical(raw)
        return { key: this.codec.keyOfValues(values), row: packValues(values) }
      })
      if (raws.length < limit) return
    }
  }

  async get (keys: Uint8Array[], options: { signal?: AbortSignal } = {}): Promise<Array<Uint8Array | undefined>> {
    throwIfAborted(options.signal)
    const { stmts } = this.handles()
    return this.schemaChecked(() => keys.map(k => this.readRow(stmts, this.keyParams(k))))
  }

  async apply (request: ApplyRequest, options: { signal?: AbortSignal } = {}): Promise<ApplyResult> {
    throwIfAborted(options.signal)
    const { db, stmts } = this.writeHandles('apply')
    // decode and map everything before the transaction: a bad row fails the apply without touching the file
    const upsertValues = request.upserts.map(r => this.codec.decodeValues(r))
    const upsertParams = upsertValues.map(values => this.bindings.map((b, i) => toSql(b, values[i] ?? null)))
    const upsertKeyParams = upsertParams.map(params => this.codec.keyPositions.map(p => params[p] ?? null))
    const deleteParams = request.deletes.map(k => this.keyParams(k))
    const result = this.schemaChecked(() => this.transaction(db, () => {
      const tx = this.lastSeqOf(stmts) + 1
      // the triggers tag this transaction's log entries; no other connection sees these values
      stmts.setControl.run(request.origin ?? null, tx)
      const before = [...upsertKeyParams, ...deleteParams].map(params => this.readRow(stmts, params) ?? null)
      for (const params of upsertParams) stmts.upsert.run(...params)
      // each row as stored: one a trigger changed (or the column's affinity made another value of) is told apart from what was written
      const rewritten: RewrittenRow[] = []
      upsertKeyParams.forEach((params, index) => {
        const row = this.readRow(stmts, params)
        if (row !== undefined && !sameBytes(row, request.upserts[index]!)) rewritten.push({ index, row })
      })
      for (const params of deleteParams) stmts.deleteByKey.run(...params)
      // an apply that changed nothing still gets its own seq, as in the other stores
      if (this.lastSeqOf(stmts) < tx) stmts.marker.run(request.origin ?? null, tx)
      const seq = this.lastSeqOf(stmts)
      stmts.setControl.run(null, null)
      return { seq, before, ...(rewritten.length === 0 ? {} : { rewritten }) }
    }))
    this.committed.emit('wake')
    return result
  }

  private lastSeqOf (stmts: Statements): number {
    const row = stmts.lastSeq.get(`converge_changes_${this.table}`) as { seq: bigint | number } | undefined
    return row === undefined ? 0 : Number(row.seq)
  }

  async lastSeq (): Promise<number> {
    return this.lastSeqOf(this.writeHandles('its change log').stmts)
  }

  async * changes (options: ChangesOptions): AsyncGenerator<ChangeBatch> {
    const { signal } = options
    let since = options.since
    {
      const { stmts } = this.writeHandles('its change feed')
      const last = this.lastSeqOf(stmts)
      if (since < last) {
        const first = (stmts.firstSeqAfter.get(since) as { seq: bigint | number | null } | undefined)?.seq ?? null
        if (first === null || Number(first) > since + 1) throw new ChangesTrimmedError(since, last)
      }
    }
    for (;;) {
      if (signal.aborted) throw new AbortedError()
      if (this.db === undefined) return
      const batches = this.schemaChecked(() => this.readChanges(since))
      for (const batch of batches) {
        since = batch.seq
        yield batch
      }
      if (batches.length === 0) {
        options.caughtUp?.()
        await this.waitForWrite(signal)
      }
    }
  }

  /**
   * The next change log entries after `since` as batches: one per apply()
   * transaction (split only past FEED_READ_ENTRIES), one per run of writes by
   * other connections. Each entry comes with its row as it is now, from the
   * same read.
   */
  private readChanges (since: number): ChangeBatch[] {
    const { stmts } = this.writeHandles('its change feed')
    const entries: LogEntry[] = (stmts.readLog.all(since, FEED_READ_ENTRIES) as Array<Record<string, SQLOutputValue>>)
      .map(raw => ({ seq: raw.seq as bigint, origin: raw.origin as string | null, tx: raw.tx as bigint | null, raw }))
    const groups: LogEntry[][] = []
    for (const entry of entries) {
      const group = groups[groups.length - 1]
      const prev = group?.[group.length - 1]
      const same = prev !== undefined && (prev.tx !== null ? prev.tx === entry.tx : entry.tx === null && prev.origin === entry.origin)
      if (same) group!.push(entry); else groups.push([entry])
    }
    // a full read may have cut the last transaction short: it is read whole next time
    if (entries.length === FEED_READ_ENTRIES && groups.length > 1) groups.pop()
    return groups.map(group => {
      const changes = new Map<string, RowChange>()
      for (const { raw } of group) {
        // apply()'s marker for a transaction that changed no row
        if (raw.op === 'N') continue
        const key = this.keyOfLogEntry(raw)
        const id = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1')
        if (changes.has(id)) continue
        changes.set(id, { key, row: Number(raw.present) === 1 ? packValues(this.canonical(raw)) : null })
      }
      const last = group[group.length - 1]!
      return { seq: Number(last.seq), changes: [...changes.values()], origin: last.origin ?? undefined }
    })
  }

  /** Resolves on this store's next commit or close, or after pollMs (writes by other connections); rejects when the signal aborts. */
  private async waitForWrite (signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer)
        this.committed.off('wake', done)
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = (): void => {
        clearTimeout(timer)
        this.committed.off('wake', done)
        reject(new AbortedError())
      }
      const timer = setTimeout(done, this.pollMs)
      this.committed.on('wake', done)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /**
   * Runs statements over the table, its failures as the agent reports them:
   * a column or the table gone from under the running agent (SQLite re-reads
   * the schema for a statement prepared before the change) as
   * StoreSchemaChangedError, with what to do; the file held by another
   * writer past the busy timeout, or a disk that is full or failing, as
   * StoreUnavailableError naming the file.
   */
  private schemaChecked<T> (work: () => T): T {
    try {
      return work()
    } catch (err) {
      const message = (err as Error).message ?? ''
      if ((err as { code?: unknown }).code !== 'ERR_SQLITE_ERROR') throw err
      if (/^no such (column|table)/.test(message)) {
        throw new StoreSchemaChangedError(`SQLite table "${this.table}" in ${this.path}`, message.replace(/ - should this be a string literal.*$/, ''), { cause: err })
      }
      // primary result codes: SQLITE_BUSY, SQLITE_LOCKED; SQLITE_IOERR, SQLITE_FULL
      const primary = Number((err as { errcode?: unknown }).errcode) & 0xff
      if (primary === 5 || primary === 6) throw new StoreUnavailableError(`SQLite database ${this.path} is held by another writer (waited ${this.busyTimeoutMs} ms): ${message}`, { cause: err })
      if (primary === 10 || primary === 13) throw new StoreUnavailableError(`SQLite database ${this.path} cannot be written: ${message}`, { cause: err })
      throw err
    }
  }

  async trimChanges (seq: number): Promise<void> {
    this.writeHandles('trimming its change log').stmts.trim.run(seq)
  }

  async countRows (options: { signal?: AbortSignal } = {}): Promise<number> {
    throwIfAborted(options.signal)
    const row = this.schemaChecked(() => this.handles().stmts.count.get() as { n: bigint | number })
    return Number(row.n)
  }
}
