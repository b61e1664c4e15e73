/**
 * `converge cluster run SCENARIO`: plays a scenario file (cluster/scenarios/)
 * on this machine, with every region an agent process of its own, and
 * writes its report. Exit code 0 when every end check held, 1 when one did
 * not (or the run failed), 2 for a scenario file that does not validate.
 *
 * The simulator lives beside the agent, not inside it: it is loaded only for
 * this command.
 */
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Option, type Command } from 'commander'
import { ConvergeError } from '../errors.ts'

export interface ClusterRunOptions {
  quick?: boolean
  set?: string[]
  out?: string
  keep?: boolean
  validate?: boolean
  json?: boolean
}

export async function clusterRunCommand (file: string, opts: ClusterRunOptions, stdout: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout): Promise<boolean> {
  const { loadScenario } = await import('../../cluster/scenario.ts')
  const scenario = await loadScenario(file, { quick: opts.quick ?? false, set: opts.set ?? [] })
  // a reader that goes away (| head) must not stop the run before it cleans up
  stdout.on('error', () => undefined)
  if (opts.validate === true) {
    stdout.write(`${file}: valid (${scenario.regions.length} regions, ${scenario.datasets.length} dataset${scenario.datasets.length === 1 ? '' : 's'}, ${scenario.drift.length} drift, ${scenario.faults.length} faults${scenario.load === undefined ? '' : ', live load'})\n`)
    return true
  }
  const { runScenario } = await import('../../cluster/scenario-runner.ts')
  const { formatSummary } = await import('../../cluster/report.ts')
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')
  const outDir = resolve(opts.out ?? join(tmpdir(), 'converge-cluster', `${scenario.name}-${stamp}`))
  // Ctrl-C stops the run cleanly: agents stopped, databases dropped; a second one is left to the default (exit)
  const controller = new AbortController()
  const onSignal = (): void => { controller.abort(new ConvergeError('CONVERGE_INTERRUPTED', 'interrupted')) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const progress = opts.json === true ? { write: () => true } : stdout
    const report = await runScenario(scenario, { outDir, keep: opts.keep ?? false, out: progress, signal: controller.signal })
    if (opts.json === true) stdout.write(`${JSON.stringify(report)}\n`)
    else {
      stdout.write(`${formatSummary(report)}\n\n`)
      stdout.write(`report: ${join(outDir, 'report.html')} (chart: drift.svg, figures: report.json, agent logs: logs/)\n`)
    }
    return report.passed
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

export function registerClusterRunCommand (cluster: Command, context: { exitCode: number }): void {
  cluster.command('run')
    .description('play a scenario file: regions as processes on loopback, drift, faults, live load; then check and report')
    .argument('<scenario>', 'scenario file (YAML or JSON), e.g. cluster/scenarios/partition-heal.yaml')
    .option('--quick', 'apply the scenario\'s own `quick` overrides: the same scenario, small and fast')
    .addOption(new Option('--set <path=value...>', 'override a field, e.g. --set datasets.0.rows=5000 --set faults.0.duration=2s'))
    .option('--out <dir>', 'where the report, chart and agent logs go (default: a new directory under the system temp dir)')
    .option('--keep', 'keep the stores and agent data (under <out>/work) and the PostgreSQL databases')
    .option('--validate', 'only check the scenario file')
    .option('--json', 'print the report as JSON instead of the summary and progress')
    .addHelpText('after', [
      '',
      'Exit code: 0 when every end check held, 1 when one failed, 2 for a scenario that does not validate.',
      '',
      'Examples:',
      '  converge cluster run cluster/scenarios/partition-heal.yaml',
      '  converge cluster run cluster/scenarios/five-regions-1m.yaml --set datasets.0.rows=200000',
      '  converge cluster run cluster/scenarios/kill-mid-repair.yaml --quick --out /tmp/kill'
    ].join('\n'))
    .action(async (file: string, opts: ClusterRunOptions) => {
      if (!await clusterRunCommand(file, opts)) context.exitCode = 1
    })
}
