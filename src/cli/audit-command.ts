/**
 * `converge audit`: reads a stopped agent's audit log straight from its data
 * directory. LevelDB admits one process at a time, so against a running agent
 * this refuses (ask the agent over its status port instead).
 *
 *   converge audit verify --data-dir DIR      walks the hash chain
 *   converge audit --data-dir DIR [filters]   lists entries (a table, or JSON lines)
 *
 * Exit codes: 0 ok; 1 the chain is broken, or --fix found nothing, or the
 * agent is running; 2 bad usage (including a data dir that holds no agent).
 */
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { type Command, Option } from 'commander'
import { AUDIT_KINDS, AuditLog, type AuditEntry, type AuditFilter, type AuditKind } from '../audit/audit-log.ts'
import { toJsonLine } from '../audit/json-line.ts'
import { AgentRunningError, ConfigError } from '../errors.ts'
import { StateDb } from '../index/state-db.ts'
import { table } from './table.ts'

/** EXIT.failure in main.ts (not imported: main.ts imports this module). */
const FAILURE = 1

export interface AuditQueryOptions {
  dataDir: string
  dataset?: string
  since?: number
  until?: number
  fix?: string
  cid?: string
  kind?: AuditKind
  limit?: number
  reverse?: boolean
  json?: boolean
}

/** Opens the agent's LevelDB (at DIR/state, as the agent does) without creating anything. */
export async function openOfflineState (dataDir: string): Promise<StateDb> {
  const dir = await stat(dataDir).catch(() => undefined)
  if (dir?.isDirectory() !== true) throw new ConfigError(`no data directory ${dataDir}`)
  const path = join(dataDir, 'state')
  // a LevelDB directory always has a CURRENT file; without one, opening would only say it failed
  if ((await stat(join(path, 'CURRENT')).catch(() => undefined))?.isFile() !== true) throw new ConfigError(`${dataDir} holds no agent state (no LevelDB at ${path})`)
  const state = new StateDb(path)
  try {
    await state.db.open({ createIfMissing: false })
  } catch (err) {
    if ((err as { cause?: { code?: string } }).cause?.code === 'LEVEL_LOCKED') throw new AgentRunningError(dataDir, { cause: err })
    throw err
  }
  return state
}

/** Prints the entries matching the filters; resolves to false when a fix was asked for and the log has none of it. */
export async function auditQueryCommand (opts: AuditQueryOptions, out: NodeJS.WritableStream = process.stdout, signal?: AbortSignal): Promise<boolean> {
  const state = await openOfflineState(opts.dataDir)
  try {
    const audit = new AuditLog(state)
    await audit.open({ signal })
    const filter: AuditFilter = {
      dataset: opts.dataset, since: opts.since, until: opts.until, fixId: opts.fix, correlationId: opts.cid, kind: opts.kind, limit: opts.limit, reverse: opts.reverse
    }
    const rows: string[][] = [['SEQ', 'TIME', 'KIND', 'DATASET', 'FIX', 'CID', 'ROWS', 'NOTE']]
    let found = 0
    for await (const entry of audit.query(filter, { signal })) {
      found++
      if (opts.json === true) out.write(toJsonLine(entry) + '\n')
      else rows.push(tableRow(entry))
    }
    if (opts.json !== true) out.write(found === 0 ? 'no matching audit entries\n' : table(rows) + '\n')
    if (found === 0 && opts.fix !== undefined) {
      process.stderr.write(`converge: no audit entries for fix ${opts.fix}\n`)
      return false
    }
    return true
  } finally {
    await state.close()
  }
}

/** Walks the chain; prints the count, or the first broken entry. Resolves to whether the chain is intact. */
export async function auditVerifyCommand (opts: { dataDir: string }, out: NodeJS.WritableStream = process.stdout, signal?: AbortSignal): Promise<boolean> {
  const state = await openOfflineState(opts.dataDir)
  try {
    // not open(): that decodes the last entry, which may be the broken one
    const result = await new AuditLog(state).check({ signal })
    if (result.intact) {
      out.write(`audit chain intact: ${result.entries} entries\n`)
      return true
    }
    out.write(`audit chain broken: ${result.problem} (the ${result.entries} entries before it verify)\n`)
    if (result.entry !== undefined) out.write(toJsonLine(result.entry) + '\n')
    return false
  } finally {
    await state.close()
  }
}

function tableRow (e: AuditEntry): string[] {
  const rows = e.upserts !== undefined || e.deletes !== undefined ? (e.upserts?.length ?? 0) + (e.deletes?.length ?? 0) : e.before?.length
  const note = [
    e.rollbackOf === undefined ? undefined : `rolls back ${e.rollbackOf}`,
    e.by === undefined || e.by === 'converge' ? undefined : `by ${e.by}`,
    e.partition === undefined ? undefined : `partition ${e.partition}`,
    e.reason
  ].filter(s => s !== undefined).join('; ')
  return [String(e.seq), new Date(e.at).toISOString(), e.kind, e.dataset, e.fixId, e.correlationId, rows === undefined ? '-' : String(rows), note]
}

function isoTime (value: string): number {
  const ms = Date.parse(value)
  if (Number.isNaN(ms)) throw new ConfigError(`"${value}" is not an ISO date or time (e.g. 2026-03-01 or 2026-03-01T12:00:00Z)`)
  return ms
}

function positiveInt (value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`"${value}" is not a positive whole number`)
  return n
}

/** Adds `audit` and `audit verify` to the program; failures set context.exitCode. */
export function registerAuditCommand (program: Command, context: { exitCode: number }): void {
  const audit = program.command('audit')
    .description("list a stopped agent's audit log entries (or verify its hash chain: audit verify)")
    .option('--data-dir <dir>', "the agent's data directory (dataDir in its config)")
    .option('--dataset <name>', 'only this dataset')
    .addOption(new Option('--since <iso>', 'entries at or after this time').argParser(isoTime))
    .addOption(new Option('--until <iso>', 'entries before this time').argParser(isoTime))
    .option('--fix <id>', 'only this fix (exit 1 when the log has none of it)')
    .option('--cid <id>', 'only this correlation id (one sync)')
    .addOption(new Option('--kind <kind>', 'only entries of this kind').choices(AUDIT_KINDS))
    .addOption(new Option('--limit <n>', 'at most this many entries').argParser(positiveInt))
    .option('--reverse', 'newest first (with --limit: the latest entries)')
    .option('--json', 'print JSON lines (bytes as hex)')
    .addHelpText('after', '\nThe agent must be stopped: its LevelDB admits one process. Exit code: 0 ok, 1 nothing found for --fix, 2 bad usage.\n\nExamples:\n  converge audit --data-dir /var/lib/converge --dataset orders --since 2026-03-01 --limit 20 --reverse\n  converge audit --data-dir /var/lib/converge --fix 5b1e… --json\n  converge audit verify --data-dir /var/lib/converge')
    .action(async (opts: Omit<AuditQueryOptions, 'dataDir'> & { dataDir?: string }) => {
      if (!await auditQueryCommand({ ...opts, dataDir: requireDataDir(opts.dataDir) })) context.exitCode = FAILURE
    })

  audit.command('verify')
    .description("walk a stopped agent's audit hash chain; print the first broken entry")
    .option('--data-dir <dir>', "the agent's data directory (dataDir in its config)")
    .addHelpText('after', '\nExit code: 0 when the chain is intact, 1 when it is broken, 2 on bad usage.\n\nExample:\n  converge audit verify --data-dir /var/lib/converge')
    .action(async (_opts: unknown, command: Command) => {
      // --data-dir may come before `verify` too (then the parent parsed it)
      const { dataDir } = command.optsWithGlobals<{ dataDir?: string }>()
      if (!await auditVerifyCommand({ dataDir: requireDataDir(dataDir) })) context.exitCode = FAILURE
    })
}

function requireDataDir (dir: string | undefined): string {
  if (dir === undefined) throw new ConfigError('give the agent\'s data directory with --data-dir DIR')
  return dir
}
