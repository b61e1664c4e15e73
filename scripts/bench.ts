/**
 * converge benchmark, one command, a markdown report out:
 *   1. indexing throughput against raw xxh64 in the same run
 *   2. sync bytes and round trips against the lower bound and the naive
 *      (key, digest) exchange, n in {100k, 1M, 10M}, d in {1, 100, 10k}
 *   3. tree update time per row change
 *   4. PostgreSQL: first repair against pg_comparator, the steady state
 *   5. 3 regions x 1,000,000 rows at 1 % drift: converge against a full copy
 *   6. indexing 1,000,000 and 10,000,000 rows: memory per million rows
 * Sections 4 and 5 need PostgreSQL (4 also pg_comparator); without them they
 * say why they were skipped. Progress goes to stderr; the report goes to
 * stdout and to bench-results/latest.md (latest-pg.md for --pg-only), with a
 * summary of every target first.
 *
 *   npm run bench                       the full run (n = 1,000,000 for 1 and 3; several minutes)
 *   npm run bench -- --quick            a smoke run: n = 100,000, smaller sizes throughout
 *   npm run bench -- --sections 2,6     only those sections
 *   NODE_OPTIONS=--expose-gc npm run bench   memory deltas after a forced GC
 *   npm run bench -- --pg-only          section 4 only (--pg / --no-pg: require PostgreSQL / leave it out)
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
import { checkPostgres, checkServer, measurePostgres, postgresReport, postgresSkipped } from './bench/postgres.ts'
import { CONVERGE_ROWS, convergenceReport, measureConvergence, QUICK_CONVERGE_ROWS } from './bench/convergence.ts'
import { serverBinaries } from '../cluster/private-postgres.ts'
import { int, progress, seconds, table } from './bench/report.ts'
import { measureScale, QUICK_SCALE_SIZES, SCALE_SIZES, scaleReport } from './bench/scale.ts'
import { measureSync, SYNC_SIZES, syncReport } from './bench/sync-bytes.ts'
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
    `- rows: n = ${int(options.rows)} for sections 1 and 3${options.quick ? ' (--quick)' : ''}; sections run: ${[...options.sections].sort().join(', ')}; GC exposed: ${gcAvailable() ? 'yes' : 'no'}`,
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

async function convergenceSection (options: BenchOptions): Promise<string> {
  const heading = '## 5. Converging 3 regions at 1 % drift, against a full copy'
  if (options.pg === 'off') return `${heading}\n\nSkipped: left out (--no-pg or BENCH_PG=0).`
  const availability = await checkServer(options.pgUrl)
  if (!availability.ok) {
    if (options.pg === 'on') throw new Error(`the convergence section cannot run: ${availability.why}`)
    progress(`5: skipped: ${availability.why}`)
    return `${heading}\n\nSkipped: ${availability.why}.`
  }
  // a server per region where initdb is found, as regions are; else the three on the one server there is
  const servers = options.servers !== 'auto' ? options.servers : await serverBinaries() !== undefined ? 'own' : 'shared'
  if (options.servers === 'auto' && servers === 'shared') progress('5: no initdb or pg_ctl here (CONVERGE_PG_BIN): the three regions share the server at BENCH_PG_URL')
  const { value, ms } = await timed(async () => await measureConvergence(options.pgUrl, options.quick ? QUICK_CONVERGE_ROWS : CONVERGE_ROWS, availability.psql, servers))
  return `${convergenceReport(value)}\n\nSection wall time: ${seconds(ms)}.`
}

/** Every row of every "target | measured | result" table in the sections, for the summary at the top. */
function targetSummary (sections: readonly string[]): string {
  const rows: string[][] = []
  for (const section of sections) {
    const lines = section.split('\n')
    for (let i = 0; i < lines.length; i++) {
      if (!/^\| target \| measured \| result \|$/.test(lines[i]!)) continue
      for (let j = i + 2; j < lines.length && lines[j]!.startsWith('|'); j++) rows.push(lines[j]!.slice(2, -2).split(' | '))
    }
  }
  if (rows.length === 0) return '## Targets\n\nNo section with targets ran.'
  return `## Targets\n\nEvery target of the sections below, as measured in this run:\n\n${table(['target', 'measured', 'result'], rows)}`
}

async function runBenchmarks (options: BenchOptions): Promise<string> {
  const run = options.sections
  const sections: string[] = []
  let rows: Uint8Array[] | undefined
  const encoded = (): Uint8Array[] => {
    if (rows === undefined) { progress(`encoding ${int(options.rows)} orders`); rows = encodeOrders(options.rows) }
    return rows
  }
  if (run.has(1)) sections.push(indexingReport(await measureIndexing(encoded())))
  rows = undefined
  if (run.has(2)) sections.push(syncReport(await measureSync(options.quick ? SYNC_SIZES.slice(0, 1) : SYNC_SIZES)))
  if (run.has(3)) sections.push(treeUpdateReport(await measureTreeUpdates(options.rows)))
  if (run.has(4)) sections.push(await postgresSection(options))
  if (run.has(5)) sections.push(await convergenceSection(options))
  if (run.has(6)) sections.push(scaleReport(await measureScale(options.quick ? QUICK_SCALE_SIZES : SCALE_SIZES)))
  return [machineHeader(options), targetSummary(sections), ...sections].join('\n\n')
}

async function main (): Promise<void> {
  let options: BenchOptions
  try {
    options = parseOptions(process.argv.slice(2), process.env)
  } catch (err) {
    // a bad option is the caller's to fix: its message, not a stack
    process.stderr.write(`bench: ${(err as Error).message}\n`)
    process.exitCode = 2
    return
  }
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
