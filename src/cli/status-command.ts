import { ConvergeError } from '../errors.ts'

interface StatusReport {
  region: string
  peerId: string | null
  peers: Array<{ region: string, peerId: string, connected: boolean, lagMs: number | null }>
  datasets: Array<{ name: string, state: string, rowsIndexed?: number, sourceOfTruth?: string | null, root?: { count: number, sum: string }, sourceRoot?: { count: number, sum: string } | null, counters?: { fixes: number, rowsUpserted: number, rowsDeleted: number }, lastError?: string | null }>
}

function table (rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map(r => r[i]!.length)))
  return rows.map(r => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}

export async function statusCommand (opts: { url: string, json?: boolean }): Promise<void> {
  let res: Response
  try {
    res = await fetch(new URL('/status', opts.url), { signal: AbortSignal.timeout(5000) })
  } catch (err) {
    throw new ConvergeError('CONVERGE_STATUS_UNREACHABLE', `cannot reach ${opts.url}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`)
  }
  if (!res.ok) throw new ConvergeError('CONVERGE_STATUS_ERROR', `${opts.url} answered ${res.status}`)
  const report = await res.json() as StatusReport
  if (opts.json === true) { process.stdout.write(JSON.stringify(report, null, 2) + '\n'); return }
  const out = [`region ${report.region}  peer ${report.peerId ?? '-'}`, '']
  out.push(table([
    ['DATASET', 'STATE', 'SOURCE', 'ROWS', 'ROOT', 'SOURCE ROOT', 'FIXES', 'REPAIRED', 'ERROR'],
    ...report.datasets.map(d => d.root === undefined || d.counters === undefined
      ? [d.name, d.state, '-', String(d.rowsIndexed ?? '-'), '-', '-', '-', '-', '']
      : [d.name, d.state, d.sourceOfTruth ?? '-', String(d.root.count), d.root.sum, d.sourceRoot?.sum ?? '-', String(d.counters.fixes), String(d.counters.rowsUpserted + d.counters.rowsDeleted), d.lastError ?? ''])
  ]))
  out.push('')
  out.push(table([['PEER', 'REGION', 'CONNECTED', 'LAG'], ...report.peers.map(p => [p.peerId, p.region, p.connected ? 'yes' : 'no', p.lagMs === null ? '-' : `${p.lagMs} ms`])]))
  process.stdout.write(out.join('\n') + '\n')
}
