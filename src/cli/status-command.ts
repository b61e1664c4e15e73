/**
 * `converge status`: what one agent sees (its datasets, roots, drift and
 * peers) as a table, or the whole cluster's view through that one agent
 * (--cluster: it asks its peers over libp2p; needs an admin token).
 *
 * Which agent: --url (or --peer) wins over CONVERGE_URL, which wins over the
 * status block of an agent config file (--config), then 127.0.0.1:7600.
 *
 * Exit codes: 0 the agent answered; 1 it could not be reached or refused;
 * 2 bad usage; 3 with --check, it answered but is not ready or a dataset is
 * not level with its source (in-sync, or the source itself).
 */
import { Option, type Command } from 'commander'
import { callAgent, DEFAULT_STATUS_URL } from './admin-client.ts'
import { parseUrl, resolveSetting, type Resolved } from './settings.ts'
import { table } from './table.ts'

interface DatasetStatus {
  name: string
  state: string
  rowsIndexed?: number
  sourceOfTruth?: string | null
  root?: { count: number, sum: string }
  sourceRoot?: { count: number, sum: string } | null
  counters?: { fixes: number, rowsUpserted: number, rowsDeleted: number }
  lastSyncAt?: number | null
  driftSince?: number | null
  lastError?: string | null
}

interface StatusReport {
  region: string
  cluster?: string
  peerId: string | null
  ready?: boolean
  draining?: boolean
  peers: Array<{ region: string, peerId: string, connected: boolean, lagMs: number | null }>
  datasets: DatasetStatus[]
}

interface ClusterAnswer {
  members: Array<{ peerId: string | null, region: string | null, self: boolean, ok: boolean, ms?: number, report?: StatusReport, error?: { code: string, message: string } }>
}

export interface StatusOptions {
  url?: string
  peer?: string
  config?: string
  tokenFile?: string
  cluster?: boolean
  check?: boolean
  json?: boolean
}

/** States in which a dataset is level with its source. */
const LEVEL = new Set(['in-sync', 'source'])

const ago = (at: number | null | undefined, now: number): string => (at === null || at === undefined ? '-' : `${Math.max(0, Math.round((now - at) / 1000))}s ago`)

/** The status URL, by flag, then CONVERGE_URL, then the config file, then the default. */
export async function statusUrl (opts: StatusOptions, env: NodeJS.ProcessEnv = process.env): Promise<Resolved<string>> {
  let fromConfig: string | undefined
  if (opts.config !== undefined) {
    // the config's loader (zod, yaml) only when a config is named: `converge status` is typed often
    const { loadConfig } = await import('../config/load.ts')
    const status = (await loadConfig(opts.config)).status
    if (status !== undefined && status.port !== 0) {
      const host = status.host === '0.0.0.0' || status.host === '::' ? '127.0.0.1' : status.host
      fromConfig = `http://${host.includes(':') ? `[${host}]` : host}:${status.port}`
    }
  }
  return resolveSetting('url', { flag: opts.url ?? opts.peer, env: 'CONVERGE_URL', config: fromConfig, default: DEFAULT_STATUS_URL, parse: parseUrl }, env)
}

function datasetRows (d: DatasetStatus[], now: number): string[][] {
  return d.map(x => x.root === undefined || x.counters === undefined
    ? [x.name, x.state, '-', String(x.rowsIndexed ?? '-'), '-', '-', '-', '-', '-', '']
    : [x.name, x.state, x.sourceOfTruth ?? '-', String(x.root.count), x.root.sum, x.sourceRoot?.sum ?? '-', String(x.counters.fixes), String(x.counters.rowsUpserted + x.counters.rowsDeleted), ago(x.lastSyncAt, now), x.lastError ?? ''])
}

const DATASET_HEAD = ['DATASET', 'STATE', 'SOURCE', 'ROWS', 'ROOT', 'SOURCE ROOT', 'FIXES', 'REPAIRED', 'LAST SYNC', 'ERROR']

export function renderStatus (report: StatusReport, now = Date.now()): string {
  const health = report.draining === true ? 'draining' : report.ready === false ? 'not ready' : 'ready'
  const out = [`region ${report.region}  peer ${report.peerId ?? '-'}  ${health}`, '']
  out.push(table([DATASET_HEAD, ...datasetRows(report.datasets, now)]))
  out.push('')
  out.push(report.peers.length === 0 ? 'no peers' : table([['PEER', 'REGION', 'CONNECTED', 'LAST SUMMARY'], ...report.peers.map(p => [p.peerId, p.region, p.connected ? 'yes' : 'no', p.lagMs === null ? 'never' : `${Math.round(p.lagMs / 1000)}s ago`])]))
  return out.join('\n')
}

export function renderCluster (view: ClusterAnswer, now = Date.now()): string {
  const rows: string[][] = [['REGION', 'ANSWERED', 'READY', ...DATASET_HEAD]]
  for (const m of view.members) {
    const region = `${m.region ?? '?'}${m.self ? '*' : ''}`
    if (!m.ok || m.report === undefined) { rows.push([region, `no: ${m.error?.code ?? 'unknown'}`, '-', '-', '-']); continue }
    const ready = m.report.draining === true ? 'draining' : m.report.ready === false ? 'no' : 'yes'
    const ds = datasetRows(m.report.datasets, now)
    if (ds.length === 0) rows.push([region, `${m.ms ?? 0} ms`, ready])
    ds.forEach((d, i) => rows.push(i === 0 ? [region, `${m.ms ?? 0} ms`, ready, ...d] : ['', '', '', ...d]))
  }
  return `${table(rows)}\n\n* the agent asked; the others answered over libp2p`
}

/** Whether every agent shown is ready and every dataset level with its source; the reasons when not. */
function unhealthy (reports: StatusReport[]): string[] {
  const why: string[] = []
  for (const r of reports) {
    if (r.ready === false || r.draining === true) why.push(`${r.region}: not ready`)
    for (const d of r.datasets) if (!LEVEL.has(d.state)) why.push(`${r.region}/${d.name}: ${d.state}`)
  }
  return why
}

/** Prints the status; resolves to the exit code. */
export async function statusCommand (opts: StatusOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const url = (await statusUrl(opts)).value
  const port = { url, ...(opts.tokenFile === undefined ? {} : { tokenFile: opts.tokenFile }) }
  let reports: StatusReport[]
  if (opts.cluster === true) {
    const view = await callAgent<ClusterAnswer>(port, '/cluster', { timeoutMs: 15_000 })
    out.write(opts.json === true ? JSON.stringify(view, null, 2) + '\n' : renderCluster(view) + '\n')
    reports = view.members.flatMap(m => (m.report === undefined ? [] : [m.report]))
    if (view.members.some(m => !m.ok)) reports.push({ region: 'cluster', ready: false, peerId: null, peers: [], datasets: [] })
  } else {
    const report = await callAgent<StatusReport>(port, '/status', { timeoutMs: 5000 })
    out.write(opts.json === true ? JSON.stringify(report, null, 2) + '\n' : renderStatus(report) + '\n')
    reports = [report]
  }
  if (opts.check !== true) return 0
  const why = unhealthy(reports)
  if (why.length > 0) process.stderr.write(`converge: not healthy: ${why.join('; ')}\n`)
  return why.length > 0 ? 3 : 0
}

export function registerStatusCommand (program: Command, context: { exitCode: number }): void {
  program.command('status')
    .description('show what an agent sees: its datasets, roots, drift and peers (--cluster: every agent, through this one)')
    .addOption(new Option('-u, --url <url>', `status port of the agent [env CONVERGE_URL; default ${DEFAULT_STATUS_URL}]`))
    .addOption(new Option('--peer <url>', 'the same as --url: the agent to ask').conflicts('url'))
    .option('-c, --config <file>', "take the status port from this agent config file (after --url and CONVERGE_URL)")
    .addOption(new Option('--token-file <file>', 'file holding a bearer token, for --cluster (default: the CONVERGE_TOKEN variable)').env('CONVERGE_TOKEN_FILE'))
    .option('--cluster', 'every agent: the one asked gathers its peers\' status over libp2p (admin token)')
    .option('--check', 'exit 3 unless every agent shown is ready and every dataset is in sync (or the source)')
    .option('--json', 'print the raw JSON')
    .addHelpText('after', [
      '',
      'Exit code: 0 the agent answered, 1 it could not be reached or refused, 2 bad usage,',
      '3 (with --check) it answered but is not ready or a dataset is not in sync.',
      '',
      'Examples:',
      '  converge status --url http://127.0.0.1:7601',
      '  converge status --config /etc/converge/eu-west.yaml --json',
      '  CONVERGE_TOKEN=… converge status --peer http://10.0.0.1:7600 --cluster',
      '  converge status --check || alert "converge is not in sync"'
    ].join('\n'))
    .action(async (opts: StatusOptions) => { context.exitCode = await statusCommand(opts) })
}
