/**
 * `converge capture remove --config FILE [--dataset NAME]`: takes converge's
 * change capture off the PostgreSQL and SQLite tables of an agent's
 * datasets (triggers, change log, and PostgreSQL's schema `converge` once
 * no table uses it), for a dataset leaving converge or an agent gone for
 * good: the change log grows by a row per changed key for as long as no
 * agent reads it. The tables' rows are not touched; an agent started again
 * sets the capture up anew and rebuilds its index from a scan.
 *
 * Refuses while the agent runs on its data directory (CONVERGE_AGENT_RUNNING):
 * a running agent would miss the changes made meanwhile.
 */
import type { Command } from 'commander'
import { ConfigError } from '../errors.ts'
import { ensureAgentStopped } from './offline-state.ts'

export interface CaptureRemoveOptions { config: string, dataset?: string }

/** One line per dataset, as removed; datasets on LevelDB have nothing to remove. */
export async function captureRemoveCommand (opts: CaptureRemoveOptions, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const { loadConfig } = await import('../config/load.ts')
  const config = await loadConfig(opts.config)
  const datasets = config.datasets.filter(d => opts.dataset === undefined || d.name === opts.dataset)
  if (datasets.length === 0) throw new ConfigError(`${opts.config} has no dataset "${opts.dataset}" (it has ${config.datasets.map(d => d.name).join(', ')})`)
  await ensureAgentStopped(config.dataDir)
  for (const d of datasets) {
    const store = d.store
    if (store.kind === 'level') {
      out.write(`${d.name}: a LevelDB store (${store.path}) has no change capture to remove\n`)
      continue
    }
    const removal = store.kind === 'postgres'
      ? await (await import('../stores/pg-store.ts')).removePgCapture(store.connectionString, store.table)
      : (await import('../stores/sqlite-store.ts')).removeSqliteCapture(store.path, store.table)
    const where = store.kind === 'postgres' ? store.table : `${store.path}#${store.table}`
    out.write(removal.dropped.length === 0
      ? `${d.name}: ${where} had no change capture\n`
      : `${d.name}: removed from ${where}: ${removal.dropped.join(', ')}; ${removal.pendingChanges} logged changes dropped with the log\n`)
  }
}

export function registerCaptureCommand (program: Command): void {
  const capture = program.command('capture').description('the change capture converge installs in PostgreSQL and SQLite tables')
  capture.command('remove')
    .description('take the change capture (triggers, change log) off the tables of an agent\'s datasets; their rows are left as they are')
    .requiredOption('-c, --config <file>', 'the agent\'s config file (its datasets\' stores and data directory)')
    .option('--dataset <name>', 'only this dataset')
    .addHelpText('after', [
      '',
      'For a dataset leaving converge, or an agent gone for good: its change log grows by a row per',
      'changed key for as long as no agent reads it. Stop the agent first (refused while it runs on',
      'its data directory). An agent started again sets the capture up anew and rebuilds its index.',
      '',
      'Example:',
      '  converge capture remove --config /etc/converge/eu-west.yaml --dataset orders'
    ].join('\n'))
    .action(async (opts: CaptureRemoveOptions) => { await captureRemoveCommand(opts) })
}
