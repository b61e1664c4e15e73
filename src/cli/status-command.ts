import { callAgent } from './admin-client.ts'
import { table } from './table.ts'

interface StatusReport {
  region: string
  peerId: string | null
  peers: Array<{ region: string, peerId: string, connected: boolean, lagMs: number | null }>
  datasets: Array<{ name: string, state: string, rowsIndexed?: number, sourceOfTruth?: string | null, root?: { count: number, sum: string }, sourceRoot?: { count: number, sum: string } | null, counters?: { fixes: number, rowsUpserted: number, rowsDeleted: number }, lastError?: string | null }>
}

export async function statusCommand (opts: { url: string, json?: boolean }): Promise<void> {
  const report = await callAgent<StatusReport>({ url: opts.url }, '/status', { timeoutMs: 5000 })
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
