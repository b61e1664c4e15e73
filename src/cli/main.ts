/**
 * The `converge` command line. `run(argv)` returns the exit code so tests can
 * call it in-process; bin/converge.js and `npm run converge` call it for real.
 *
 * Exit codes: 0 success, 1 failure at run time, 2 bad usage or bad config.
 */
import { Command, CommanderError, Option } from 'commander'
import { ConfigError, ConvergeError } from '../errors.ts'
import { registerAgentCommand } from './agent-command.ts'
import { registerStatusCommand } from './status-command.ts'
import { demoCommand } from './demo-command.ts'
import type { DiffOptions } from './diff-command.ts'
import { registerReviewCommands } from './review-commands.ts'
import { registerAuditCommand } from './audit-command.ts'
import { registerClusterRunCommand } from './cluster-run-command.ts'
import { registerCaptureCommand } from './capture-command.ts'
import { quietSqliteNotice } from '../util/sqlite-notice.ts'

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const

/**
 * The command line. Each command's work is imported when it runs (the
 * agent's libp2p, the stores' drivers): the command line itself loads in a
 * fraction of the time, which `converge --help` and the admin commands
 * (status, reviews) feel (test/cli/lazy-commands.test.ts).
 */
export function buildProgram (context: { exitCode: number } = { exitCode: 0 }): Command {
  const program = new Command()
    .name('converge')
    .description('Anti-entropy agent: finds drift between regional replicas and repairs it from the source of truth.')
    .exitOverride()
    .showHelpAfterError()

  registerAgentCommand(program)

  program.command('keygen')
    .description('create a peer key file (mode 600) and print its peer id')
    .requiredOption('-o, --out <file>', 'where to write the key')
    .addHelpText('after', '\nExample:\n  converge keygen --out /var/lib/converge/peer.key')
    .action(async (opts: { out: string }) => { const { keygenCommand } = await import('./keygen-command.ts'); await keygenCommand(opts) })

  registerStatusCommand(program, context)

  program.command('diff')
    .description('compare two stores of one dataset once and print the rows that differ (+ left, - right)')
    .requiredOption('--left <store>', 'level:PATH, sqlite:PATH#TABLE or postgres://…#TABLE')
    .requiredOption('--right <store>', 'the store to compare against the left one')
    .option('--schema <file>', 'the dataset schema (YAML or JSON, as under datasets[].schema in a config)')
    .option('--config <file>', 'take the schema from an agent config instead')
    .option('--dataset <name>', 'which dataset of --config')
    .option('--json', 'print JSON')
    .addOption(new Option('--limit <n>', 'most rows to print').default(1000).argParser(positiveInt))
    .addHelpText('after', '\nExit code: 0 when the stores agree, 1 when rows differ, 2 on bad usage.\n\nExample:\n  converge diff --schema orders.yaml --left postgres://db/shop#public.orders --right sqlite:./edge.db#orders')
    .action(async (opts: DiffOptions) => { const { diffCommand } = await import('./diff-command.ts'); if (await diffCommand(opts)) context.exitCode = EXIT.failure })

  registerReviewCommands(program)
  registerAuditCommand(program, context)
  registerCaptureCommand(program)

  const cluster = program.command('cluster').description('the local cluster simulator')
  cluster.command('demo')
    .description('start three regions as separate processes on loopback, drift two, and watch them converge')
    .addOption(new Option('--rows <n>', 'rows per replica').default(100_000).argParser(positiveInt))
    .addOption(new Option('--drift <percent>', 'share of rows drifted in each non-SoT replica').default(1).argParser(Number))
    .option('--dir <dir>', 'keep the cluster in this directory (default: a temporary one, removed afterwards)')
    .addHelpText('after', '\nExample:\n  converge cluster demo --rows 200000 --drift 0.5')
    .action(async (opts: { rows: number, drift: number, dir?: string }) => { await demoCommand(opts) })
  registerClusterRunCommand(cluster, context)

  return program
}

function positiveInt (value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`"${value}" is not a positive whole number`)
  return n
}

export async function run (argv: string[]): Promise<number> {
  quietSqliteNotice()
  const context = { exitCode: EXIT.ok as number }
  const program = buildProgram(context)
  try {
    await program.parseAsync(argv, { from: 'user' })
    return context.exitCode
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage
    if (err instanceof ConfigError) { process.stderr.write(`converge: ${err.message}\n`); return EXIT.usage }
    if (err instanceof ConvergeError) { process.stderr.write(`converge: ${err.message} [${err.code}]\n`); return EXIT.failure }
    process.stderr.write(`converge: ${(err as Error).stack ?? String(err)}\n`)
    return EXIT.failure
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await run(process.argv.slice(2))
}
