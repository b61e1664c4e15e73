/**
 * PostgreSQL plumbing for the benchmark: finding the client tools, checking
 * the server, and databases that are dropped at the end of the run, also when
 * it fails or is interrupted (an exit hook drops what is left with psql).
 */
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { access, constants, readdir } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import pg from 'pg'

/** Where a PostgreSQL client tool may be: PATH, then the Debian layout. */
export async function findTool (name: string): Promise<string | undefined> {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(d => d !== '')
  try {
    const versions = (await readdir('/usr/lib/postgresql')).sort((a, b) => Number(b) - Number(a))
    for (const v of versions) dirs.push(join('/usr/lib/postgresql', v, 'bin'))
  } catch { /* no Debian layout */ }
  for (const dir of dirs) {
    const path = join(dir, name)
    try { await access(path, constants.X_OK); return path } catch { /* next */ }
  }
  return undefined
}

/** libpq environment for a postgres:// URL (host, port, user, password), for pgbench and psql. */
export function libpqEnv (url: string): NodeJS.ProcessEnv {
  const u = new URL(url)
  const env: NodeJS.ProcessEnv = { ...process.env, PGHOST: u.hostname || '127.0.0.1', PGPORT: u.port || '5432' }
  if (u.username !== '') env.PGUSER = decodeURIComponent(u.username)
  if (u.password !== '') env.PGPASSWORD = decodeURIComponent(u.password)
  return env
}

/** The same server, another database (and optionally another port, e.g. a proxy's). */
export function databaseUrl (adminUrl: string, database: string, port?: number): string {
  const u = new URL(adminUrl)
  u.pathname = `/${database}`
  if (port !== undefined) { u.hostname = '127.0.0.1'; u.port = String(port) }
  return u.toString()
}

/** Runs one statement on a short-lived connection. */
export async function sqlOnce<R extends pg.QueryResultRow = pg.QueryResultRow> (url: string, text: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
  await client.connect()
  try { return await client.query<R>(text, params) } finally { await client.end() }
}

export interface CommandResult { code: number, stdout: string, stderr: string, ms: number }

/** Runs a command to completion, capturing its output, timed from spawn to exit. */
export async function runCommand (command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<CommandResult> {
  const start = process.hrtime.bigint()
  return await new Promise<CommandResult>((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.on('error', reject)
    child.on('close', code => resolve({
      code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ms: Number(process.hrtime.bigint() - start) / 1e6
    }))
  })
}

/** Databases made for one run, all named `<prefix>_<name>`, dropped by dropAll() or at exit. */
export class BenchDatabases {
  readonly prefix: string
  private readonly created = new Set<string>()
  private hooked = false

  constructor (readonly adminUrl: string, private readonly psql = 'psql') {
    this.prefix = `converge_bench_${randomBytes(4).toString('hex')}`
  }

  name (label: string): string { return `${this.prefix}_${label}` }

  url (label: string, port?: number): string { return databaseUrl(this.adminUrl, this.name(label), port) }

  /** Creates `<prefix>_<label>`, empty or as a copy of another of this run's databases. */
  async create (label: string, template?: string): Promise<string> {
    this.hook()
    const name = this.name(label)
    this.created.add(name)
    await sqlOnce(this.adminUrl, `CREATE DATABASE ${name}${template === undefined ? '' : ` TEMPLATE ${this.name(template)}`}`)
    return this.url(label)
  }

  async drop (label: string): Promise<void> {
    const name = this.name(label)
    await sqlOnce(this.adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    this.created.delete(name)
  }

  async dropAll (): Promise<void> {
    for (const name of [...this.created]) {
      await sqlOnce(this.adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      this.created.delete(name)
    }
  }

  /** For the exit hook: drops what is left with psql, synchronously. */
  private dropAllSync (): void {
    for (const name of this.created) {
      spawnSync(this.psql, ['-X', '-q', '-d', this.adminUrl, '-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'ignore', env: libpqEnv(this.adminUrl) })
    }
    this.created.clear()
  }

  private hook (): void {
    if (this.hooked) return
    this.hooked = true
    // SIGINT/SIGTERM go through process.exit (see temp-dirs.ts), which runs this
    process.once('exit', () => this.dropAllSync())
  }
}
