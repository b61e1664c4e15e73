/**
 * A PostgreSQL server of a region's own: as each region's replica would have
 * in production (its own shared buffers, its own WAL), and for the one store
 * fault that takes a whole server down: a crash (`pg_ctl stop -m
 * immediate`: every backend killed at once, nothing flushed or
 * checkpointed), then a start that recovers from the WAL. The machine's
 * shared server cannot be crashed without breaking whatever else uses it.
 * `initdb` into a directory of its own, listening on a free port on
 * 127.0.0.1, stopped and removed when the run ends.
 *
 * PostgreSQL refuses to run as root; as root, its programs run as the
 * `postgres` user (runuser) on a directory that user owns.
 *
 * Each server's directory names the process that made it (owner.pid). A run
 * killed with SIGKILL cannot stop its servers; the next run does
 * (removeOrphanedServers): a server whose owner is gone is stopped and its
 * directory removed.
 */
import { execFile } from 'node:child_process'
import { appendFile, chown, copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ConvergeError } from '../src/errors.ts'
import { freePort } from './free-port.ts'

const run = promisify(execFile)

/** Thrown when a region's own PostgreSQL server cannot be made, started or stopped; the message says which step and why. */
export class PrivateServerError extends ConvergeError {
  constructor (message: string, options?: { cause?: unknown }) { super('CONVERGE_CLUSTER_PG_SERVER', message, options) }
}

/** Where initdb and pg_ctl are: CONVERGE_PG_BIN, else `pg_config --bindir`, else the PATH. */
export async function serverBinaries (): Promise<string | undefined> {
  const candidates: string[] = []
  if (process.env.CONVERGE_PG_BIN !== undefined) candidates.push(process.env.CONVERGE_PG_BIN)
  else {
    const bindir = await run('pg_config', ['--bindir']).then(r => r.stdout.trim(), () => undefined)
    if (bindir !== undefined) candidates.push(bindir)
    candidates.push(...(process.env.PATH ?? '').split(':').filter(d => d !== ''))
  }
  return candidates.find(dir => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl')))
}

/** Where each server's directory is made: `<tmpdir>/converge-pg-<region>-XXXXXX`. */
const HOME_PREFIX = 'converge-pg-'
/** The file in a server's directory naming the process that made it. */
const OWNER_FILE = 'owner.pid'

/**
 * Runs one of PostgreSQL's programs from `bin` in `home`, as the postgres
 * user when this process is root; a failure says which program, for which
 * server, and the last lines it printed.
 */
async function pgProgram (bin: string, home: string, what: string, program: string, args: string[], signal?: AbortSignal): Promise<void> {
  const asRoot = process.getuid?.() === 0
  const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, program), ...args]] : [join(bin, program), args]
  try {
    await run(file, argv, { signal, cwd: home })
  } catch (err) {
    const e = err as { stderr?: string, stdout?: string, message: string }
    const said = `${e.stderr ?? ''}${e.stdout ?? ''}`.trim().split('\n').slice(-3).join(' / ')
    throw new PrivateServerError(`${program} ${args[0] ?? ''} for ${what} failed: ${said !== '' ? said : e.message}`, { cause: err })
  }
}

/** Whether a process of this machine is running (one of another user's counts). */
export function processAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as { code?: string }).code === 'EPERM' }
}

/**
 * Stops and removes the servers that runs killed before they could
 * (SIGKILL, a crash of the machine's Node): each directory of ours under
 * the system temp dir whose owner process is gone. A server of a run still
 * going (its owner alive) is left alone. The directories removed.
 */
export async function removeOrphanedServers (options: { signal?: AbortSignal } = {}): Promise<string[]> {
  const bin = await serverBinaries()
  const removed: string[] = []
  const entries = await readdir(tmpdir()).catch(() => [] as string[])
  for (const name of entries.filter(n => n.startsWith(HOME_PREFIX))) {
    const home = join(tmpdir(), name)
    const owner = Number((await readFile(join(home, OWNER_FILE), 'utf8').catch(() => '')).trim())
    // no owner named (not one of ours, or made before owners were), or one still running: not ours to touch
    if (!Number.isSafeInteger(owner) || owner <= 0 || processAlive(owner)) continue
    if (bin !== undefined) await pgProgram(bin, home, `a server left by a killed run (${home})`, 'pg_ctl', ['stop', '-D', join(home, 'data'), '-m', 'immediate', '-w'], options.signal).catch(() => undefined)
    await rm(home, { recursive: true, force: true })
    removed.push(home)
  }
  return removed
}

/** The uid and gid of the `postgres` user, from /etc/passwd. */
async function postgresUser (): Promise<{ uid: number, gid: number } | undefined> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '')
  const fields = passwd.split('\n').map(l => l.split(':')).find(f => f[0] === 'postgres')
  return fields === undefined ? undefined : { uid: Number(fields[2]), gid: Number(fields[3]) }
}

export interface PrivatePostgres {
  /** The server's `postgres` database, as its superuser (trust on loopback). */
  readonly adminUrl: string
  readonly port: number
  /** Crashes the server: an immediate shutdown, as a crash (recovery from the WAL at the next start). */
  crash: (signal?: AbortSignal) => Promise<void>
  /** Starts it again; resolves once it accepts connections (recovery done). */
  start: (signal?: AbortSignal) => Promise<void>
  /** The directory its data lives in (its postgresql.conf names its port and socket directory). */
  readonly dataDir: string
  /** The directory holding the data directory and the server's log. */
  readonly home: string
  /**
   * Stops it (fast), copies its log to `logTo` when given, and removes its
   * directory unless `keepData` (then a person can start it again with
   * `pg_ctl start -D dataDir` and look).
   */
  remove: (options?: { logTo?: string, keepData?: boolean }) => Promise<void>
}

/**
 * Makes and starts a server for `region`. Cancelled through `signal`
 * (the server made so far is removed).
 */
export async function startPrivatePostgres (region: string, options: { signal?: AbortSignal } = {}): Promise<PrivatePostgres> {
  const bin = await serverBinaries()
  if (bin === undefined) {
    throw new PrivateServerError(`a PostgreSQL server of ${region}'s own needs PostgreSQL's initdb and pg_ctl: ` +
      'none found through pg_config --bindir or the PATH; set CONVERGE_PG_BIN to the directory that holds them')
  }
  const asRoot = process.getuid?.() === 0
  const owner = asRoot ? await postgresUser() : undefined
  if (asRoot && owner === undefined) throw new PrivateServerError(`a PostgreSQL server of ${region}'s own cannot run as root, and this machine has no postgres user to run it as`)
  // short: the server's socket file lives in it, and a socket's path is limited to about 100 bytes
  const home = await mkdtemp(join(tmpdir(), `${HOME_PREFIX}${region.replace(/[^\w-]/g, '_').slice(0, 24)}-`))
  const data = join(home, 'data')
  const log = join(home, 'server.log')
  // whose it is: a later run removes it if this process dies without doing so
  await writeFile(join(home, OWNER_FILE), `${process.pid}\n`)
  if (owner !== undefined) await chown(home, owner.uid, owner.gid)
  const exec = async (program: string, args: string[], signal?: AbortSignal): Promise<void> => {
    await pgProgram(bin, home, `${region}'s own PostgreSQL server`, program, args, signal ?? options.signal)
  }
  const port = await freePort()
  const start = async (signal?: AbortSignal): Promise<void> => {
    await exec('pg_ctl', ['start', '-D', data, '-w', '-t', '120', '-l', log], signal)
  }
  /** An immediate shutdown: every backend killed, nothing flushed (a crash, as the next start sees it). */
  const stopNow = async (signal?: AbortSignal): Promise<void> => {
    await exec('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-w'], signal)
  }
  try {
    await exec('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'])
    // in its own configuration, so a plain `pg_ctl start -D` brings it back the same (a kept server): loopback only, its
    // socket file in its own directory; otherwise initdb's defaults (128 MB of shared buffers), as a fresh install
    await appendFile(join(data, 'postgresql.conf'), `\n# converge cluster: ${region}'s own server\nport = ${port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${home}'\n`)
    await start()
  } catch (err) {
    // a start cut short may have left the server running: stopped before its directory goes
    await stopNow(AbortSignal.timeout(30_000)).catch(() => undefined)
    await rm(home, { recursive: true, force: true })
    throw err
  }
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    crash: stopNow,
    dataDir: data,
    home,
    remove: async ({ logTo, keepData = false } = {}) => {
      // a server already down (crashed and never started again) has nothing to stop
      await exec('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w'], AbortSignal.timeout(60_000)).catch(() => undefined)
      if (logTo !== undefined) await copyFile(log, logTo).catch(() => undefined)
      // kept: a person's now, so a later run's sweep (removeOrphanedServers) must not take it for a killed run's
      if (keepData) await rm(join(home, OWNER_FILE), { force: true }); else await rm(home, { recursive: true, force: true })
    }
  }
}
