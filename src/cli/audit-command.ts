/**
 * `converge audit`: lists an agent's audit log entries, or walks its hash
 * chain, either
 *
 *   - from a running agent, over its status port (--url, with a viewer token
 *     from --token-file or CONVERGE_TOKEN): GET /audit and GET /audit/verify;
 *   - or from a stopped agent's data directory (--data-dir). LevelDB admits
 *     one process at a time, so against a running agent this refuses.
 *
 *   converge audit verify --url URL | --data-dir DIR      walks the hash chain
 *   converge audit --url URL | --data-dir DIR [filters]   lists entries (a table, or JSON lines)
 *
 * Exactly one of --url and --data-dir (CONVERGE_URL counts only when no
 * --data-dir is given). Both modes print the same table and the same JSON
 * lines.
 *
 * Exit codes: 0 ok; 1 the chain is broken, or --fix found nothing, or the
 * agent is running (offline) or refused or cannot be reached (--url); 2 bad
 * usage (including a data dir that holds no agent).
 */
import { join } from 'node:path'
import { type Command, Option } from 'commander'
import { AUDIT_KINDS, AuditLog, type AuditEntry, type AuditFilter, type AuditKind } from '../audit/audit-log.ts'
import { toJsonLine } from '../audit/json-line.ts'
import { ConfigError, ConvergeError } from '../errors.ts'
import { AgentRefusedError, callAgent, type PortOptions } from './admin-client.ts'
import { portOptions } from './review-commands.ts'
import { openOfflineState } from './offline-state.ts'
import { table } from './table.ts'

/** EXIT.failure in main.ts (not imported: main.ts imports this module). */
const FAILURE = 1

/** The filters and output options of `converge audit`, in either mode. */
export interface AuditListOptions {
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

export interface AuditQueryOptions extends AuditListOptions {
  dataDir: string
}

/**
 * The most entries the status port answers in one request (MAX_AUDIT_LIMIT in
 * src/status/server.ts); it has no paging, so a listing over the port is cut
 * there.
 */
export const MAX_REMOTE_AUDIT_ENTRIES = 10_000
/** Reading a long log, or walking its chain, can take a while on the agent's side. */
const REMOTE_TIMEOUT_MS = 120_000


/** Prints the entries matching the filters; resolves to false when a fix was asked for and the log has none of it. */
export async function auditQueryCommand (opts: AuditQueryOptions, out: NodeJS.WritableStream = process.stdout, signal?: AbortSignal): Promise<boolean> {
  const state = await openOfflineState(opts.dataDir)
  try {
    const audit = new AuditLog(state)
    await audit.open({ signal })
    const filter: AuditFilter = {
      dataset: opts.dataset, since: opts.since, until: opts.until, fixId: opts.fix, correlationId: opts.cid, kind: opts.kind, limit: opts.limit, reverse: opts.reverse
    }
    return await printEntries(audit.query(filter, { signal }), opts, out)
  } finally {
    await state.close()
  }
}

/**
 * The same listing from a running agent, over its status port (GET /audit).
 * The port answers at most MAX_REMOTE_AUDIT_ENTRIES entries, oldest first:
 * a larger --limit is refused; without --limit a listing that reaches it is
 * printed with a warning that it may be cut short; --reverse needs every
 * matching entry, so it fails when more than that many match.
 */
export async function remoteAuditQueryCommand (opts: AuditListOptions & PortOptions, out: NodeJS.WritableStream = process.stdout): Promise<boolean> {
  if (opts.limit !== undefined && opts.limit > MAX_REMOTE_AUDIT_ENTRIES) {
    throw new ConfigError(`--limit ${opts.limit}: the status port answers at most ${MAX_REMOTE_AUDIT_ENTRIES} entries at a time; narrow the listing with --since, --until, --dataset or --kind`)
  }
  const q = new URLSearchParams()
  if (opts.dataset !== undefined) q.set('dataset', opts.dataset)
  if (opts.since !== undefined) q.set('since', String(opts.since))
  if (opts.until !== undefined) q.set('until', String(opts.until))
  if (opts.fix !== undefined) q.set('fix', opts.fix)
  if (opts.cid !== undefined) q.set('cid', opts.cid)
  if (opts.kind !== undefined) q.set('kind', opts.kind)
  // newest first is done here, so it needs every matching entry, not the oldest `limit`
  const asked = opts.reverse === true ? MAX_REMOTE_AUDIT_ENTRIES : opts.limit ?? MAX_REMOTE_AUDIT_ENTRIES
  q.set('limit', String(asked))
  const answer = await callAgent<{ entries?: unknown }>(opts, `/audit?${q.toString()}`, { timeoutMs: REMOTE_TIMEOUT_MS })
  if (!Array.isArray(answer?.entries)) throw new ConvergeError('CONVERGE_STATUS_ERROR', `${opts.url} answered /audit without a list of entries`)
  let entries = answer.entries.map(e => fromWire(e) as AuditEntry)
  const maybeCut = entries.length >= asked && opts.limit === undefined
  if (opts.reverse === true) {
    if (entries.length >= MAX_REMOTE_AUDIT_ENTRIES) {
      throw new ConvergeError('CONVERGE_AUDIT_TOO_MANY', `${MAX_REMOTE_AUDIT_ENTRIES} or more entries match, and the status port lists at most that many, oldest first: narrow the listing with --since, --until, --dataset or --kind to use --reverse`)
    }
    entries = entries.reverse().slice(0, opts.limit ?? Infinity)
  } else if (maybeCut) {
    process.stderr.write(`converge: the status port answers at most ${MAX_REMOTE_AUDIT_ENTRIES} entries at a time: the listing may stop short; narrow it with --since, --until, --dataset or --kind\n`)
  }
  return await printEntries(entries, opts, out)
}

/** Prints entries as a table or JSON lines; false when --fix was given and none came. */
async function printEntries (entries: AsyncIterable<AuditEntry> | Iterable<AuditEntry>, opts: AuditListOptions, out: NodeJS.WritableStream): Promise<boolean> {
  const rows: string[][] = [['SEQ', 'TIME', 'KIND', 'DATASET', 'FIX', 'CID', 'ROWS', 'NOTE']]
  let found = 0
  for await (const entry of entries) {
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
}

/**
 * An entry as the status port sent it, with its bytes as lowercase hex (as
 * toJsonLine writes them). The port hex-encodes bare byte arrays, but a Node
 * Buffer (what the log decodes to) reaches JSON as { type: 'Buffer', data }.
 */
function fromWire (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromWire)
  if (value === null || typeof value !== 'object') return value
  const o = value as Record<string, unknown>
  if (o.type === 'Buffer' && Array.isArray(o.data) && Object.keys(o).length === 2) return Buffer.from(o.data as number[]).toString('hex')
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, fromWire(v)]))
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

/** Asks a running agent to walk its chain (GET /audit/verify). Resolves to whether the chain is intact. */
export async function remoteAuditVerifyCommand (opts: PortOptions, out: NodeJS.WritableStream = process.stdout): Promise<boolean> {
  let answer: { ok?: boolean, entries?: number }
  try {
    answer = await callAgent<{ ok?: boolean, entries?: number }>(opts, '/audit/verify', { timeoutMs: REMOTE_TIMEOUT_MS })
  } catch (err) {
    if (!(err instanceof AgentRefusedError) || err.remoteCode !== 'CONVERGE_AUDIT_CHAIN_BROKEN') throw err
    // the agent's message names the first broken entry; it does not send the entry itself
    const suffix = ` [${err.remoteCode}]`
    out.write(`audit chain broken: ${err.message.endsWith(suffix) ? err.message.slice(0, -suffix.length) : err.message}\n`)
    return false
  }
  if (answer?.ok !== true || typeof answer.entries !== 'number') throw new ConvergeError('CONVERGE_STATUS_ERROR', `${opts.url} answered /audit/verify with ${JSON.stringify(answer)}`)
  out.write(`audit chain intact: ${answer.entries} entries\n`)
  return true
}

function tableRow (e: AuditEntry): string[] {
  const rows = e.upserts !== undefined || e.deletes !== undefined ? (e.upserts?.length ?? 0) + (e.deletes?.length ?? 0) : e.before?.length
  const note = [
    e.rollbackOf === undefined ? undefined : `rolls back ${e.rollbackOf}`,
    e.by === undefined || e.by === 'converge' ? undefined : `by ${e.by}`,
    e.partition === undefined ? undefined : `partition ${e.partition}`,
    e.stored === undefined || e.stored.length === 0 ? undefined : `${e.stored.length} stored otherwise than written`,
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

/** Where the audit is read: a stopped agent's data directory, or a running agent's status port. */
type AuditTarget = { dataDir: string } | { port: PortOptions }

/**
 * --data-dir, --url and --token-file may be given to `audit` or to `audit
 * verify` (then the subcommand's win). Exactly one of --data-dir and --url;
 * a URL from CONVERGE_URL counts only when there is no --data-dir.
 */
function target (command: Command): AuditTarget {
  const given = (key: string): { value: string, source: string | undefined } | undefined => {
    for (const c of [command, command.parent]) {
      const value = c?.getOptionValue(key) as string | undefined
      if (value !== undefined) return { value, source: c!.getOptionValueSource(key) }
    }
    return undefined
  }
  const dataDir = given('dataDir')
  const url = given('url')
  const tokenFile = given('tokenFile')
  if (dataDir !== undefined) {
    if (url !== undefined && url.source !== 'env') throw new ConfigError('give either --url URL (a running agent) or --data-dir DIR (a stopped agent), not both')
    if (tokenFile !== undefined && tokenFile.source !== 'env') throw new ConfigError('--token-file goes with --url: reading a data directory takes no token')
    return { dataDir: dataDir.value }
  }
  if (url !== undefined) return { port: { url: url.value, ...(tokenFile === undefined ? {} : { tokenFile: tokenFile.value }) } }
  throw new ConfigError('give the status port of a running agent with --url URL, or the data directory of a stopped agent with --data-dir DIR')
}

/** Adds `audit` and `audit verify` to the program; failures set context.exitCode. */
export function registerAuditCommand (program: Command, context: { exitCode: number }): void {
  const audit = portOptions(program.command('audit'), { defaultUrl: false })
    .description("list an agent's audit log entries: a running agent's over its status port (--url), a stopped agent's from its data directory (--data-dir); audit verify walks its hash chain")
    .option('--data-dir <dir>', "the stopped agent's data directory (dataDir in its config)")
    .option('--dataset <name>', 'only this dataset')
    .addOption(new Option('--since <iso>', 'entries at or after this time').argParser(isoTime))
    .addOption(new Option('--until <iso>', 'entries before this time').argParser(isoTime))
    .option('--fix <id>', 'only this fix (exit 1 when the log has none of it)')
    .option('--cid <id>', 'only this correlation id (one sync)')
    .addOption(new Option('--kind <kind>', 'only entries of this kind').choices(AUDIT_KINDS))
    .addOption(new Option('--limit <n>', `at most this many entries (over --url: at most ${MAX_REMOTE_AUDIT_ENTRIES})`).argParser(positiveInt))
    .option('--reverse', `newest first (with --limit: the latest entries; over --url: fewer than ${MAX_REMOTE_AUDIT_ENTRIES} may match)`)
    .option('--json', 'print JSON lines (bytes as hex)')
    .addHelpText('after', [
      '',
      'Give exactly one of --url (a running agent: needs a token with the viewer role, from --token-file or CONVERGE_TOKEN)',
      'and --data-dir (a stopped agent: its LevelDB admits one process).',
      'Exit code: 0 ok, 1 nothing found for --fix, or the agent refused or is unreachable, 2 bad usage.',
      '',
      'Examples:',
      '  CONVERGE_TOKEN=… converge audit --url http://127.0.0.1:7600 --dataset orders --kind commit --limit 20',
      '  converge audit --url http://127.0.0.1:7600 --token-file ~/.converge/viewer.token --fix 5b1e… --json',
      '  converge audit --data-dir /var/lib/converge --dataset orders --since 2026-03-01 --limit 20 --reverse',
      '  converge audit --data-dir /var/lib/converge --fix 5b1e… --json',
      '  converge audit verify --url http://127.0.0.1:7600',
      '  converge audit verify --data-dir /var/lib/converge'
    ].join('\n'))
    .action(async (opts: AuditListOptions, command: Command) => {
      const where = target(command)
      const ok = 'dataDir' in where ? await auditQueryCommand({ ...opts, dataDir: where.dataDir }) : await remoteAuditQueryCommand({ ...opts, ...where.port })
      if (!ok) context.exitCode = FAILURE
    })

  portOptions(audit.command('verify'), { defaultUrl: false })
    .description("walk an agent's audit hash chain: a running agent's (--url) or a stopped agent's (--data-dir); print the first broken entry")
    .option('--data-dir <dir>', "the stopped agent's data directory (dataDir in its config)")
    .addHelpText('after', [
      '',
      'Give exactly one of --url (a running agent; a viewer token) and --data-dir (a stopped agent).',
      'Exit code: 0 when the chain is intact, 1 when it is broken (or the agent refused or is unreachable), 2 on bad usage.',
      '',
      'Examples:',
      '  CONVERGE_TOKEN=… converge audit verify --url http://127.0.0.1:7600',
      '  converge audit verify --data-dir /var/lib/converge'
    ].join('\n'))
    .action(async (_opts: unknown, command: Command) => {
      // the options may come before `verify` too (then the parent parsed them)
      const where = target(command)
      const ok = 'dataDir' in where ? await auditVerifyCommand({ dataDir: where.dataDir }) : await remoteAuditVerifyCommand(where.port)
      if (!ok) context.exitCode = FAILURE
    })
}
