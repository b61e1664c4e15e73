/**
 * converge benchmark: indexing throughput, sync bytes and round trips, tree
 * update cost, and PostgreSQL (first repair against pg_comparator, steady
 * state with two agents) when a server answers. Prints a markdown report to
 * stdout (progress goes to stderr) and writes it to bench-results/latest.md
 * (latest-pg.md for --pg-only).
 *
 *   npm run bench                       n = 1,000,000 rows
 *   npm run bench -- --rows 250000      another n
 *   npm run bench -- --quick            n = 100,000, a smoke run
 *   NODE_OPTIONS=--expose-gc npm run bench   memory deltas after a forced GC
 *   npm run bench -- --pg-only          the PostgreSQL section only (--pg / --no-pg: require it / leave it out)
 *
 * Temporary LevelDB directories are made under os.tmpdir() and removed at
 * the end, also on failure or Ctrl-C; so are the PostgreSQL databases.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { encodeOrders, indexingReport, measureIndexing } from './bench/indexing.ts'
import { gcAvailable } from './bench/memory.ts'
import { parseOptions, type BenchOptions } from './bench/options.ts'
import { checkPostgres, measurePostgres, postgresReport, postgresSkipped } from './bench/postgres.ts'
import { int, progress, seconds } from './bench/report.ts'
import { measureSync, syncReport } from './bench/sync-bytes.ts'
import { removeAllTempDirs } from './bench/temp-dirs.ts'
import { measureTreeUpdates, treeUpdateReport } from './bench/tree-update.ts'
import { timed } from './bench/timing.ts'

const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..')
/** A --pg-only run writes beside the full report instead of over it. */
const resultFile = (options: BenchOptions): string => join(projectRoot, 'bench-results', options.pgOnly ? 'latest-pg.md' : 'latest.md')

function machineHeader (options: BenchOptions): string {
  const cpu = cpus()
  return [
    '# converge benchmark',
    '',
    `- machine: ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} cores, Node ${process.version} (${process.platform} ${process.arch})`,
    `- rows: n = ${int(options.rows)}${options.quick ? ' (--quick)' : ''}${options.pgOnly ? '; PostgreSQL section only (--pg-only)' : ''}; GC exposed: ${gcAvailable() ? 'yes' : 'no'}`,
    `- run: ${new Date().toISOString()}`
  ].join('\n')
}

async function postgresSection (options: BenchOptions): Promise<string> {
  if (options.pg === 'off') return postgresSkipped('left out (--no-pg or BENCH_PG=0)')
  const availability = await checkPostgres(options.pgUrl)
  if (!availability.ok) {
    if (options.pg === 'on') throw new Error(`the PostgreSQL section cannot run: ${availability.why}`)
    progress(`4: skipped: ${availability.why}`)
    return postgresSkipped(availability.why)
  }
  const { value, ms } = await timed(async () => await measurePostgres(options.pgUrl, options.rows, availability))
  return `${postgresReport(value)}\n\nSection wall time: ${seconds(ms)}.`
}

async function runBenchmarks (options: BenchOptions): Promise<string> {
  const sections = [machineHeader(options)]
  if (!options.pgOnly) {
    progress(`encoding ${int(options.rows)} orders`)
    const rows = encodeOrders(options.rows)
    sections.push(indexingReport(await measureIndexing(rows)))
    sections.push(syncReport(await measureSync(rows)))
    sections.push(treeUpdateReport(await measureTreeUpdates(options.rows)))
  }
  sections.push(await postgresSection(options))
  return sections.join('\n\n')
}

async function main (): Promise<void> {
  const options = parseOptions(process.argv.slice(2), process.env)
  try {
    const { value: body, ms } = await timed(async () => await runBenchmarks(options))
    const report = `${body}\n\n---\nWhole run: ${seconds(ms)}.\n`
    process.stdout.write(report)
    const file = resultFile(options)
    await mkdir(dirname(file), { recursive: true })
    await writeFile(file, report)
    progress(`report written to ${relative(process.cwd(), file) || file}`)
  } finally {
    await removeAllTempDirs()
  }
}

main().catch(err => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
