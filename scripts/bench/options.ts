/**
 * Benchmark options from argv and the environment.
 *
 *   --rows N   (or BENCH_ROWS=N)   rows in the dataset; default 1,000,000
 *   --quick    (or BENCH_QUICK=1)  smoke run with 100,000 rows; --rows wins when both are given
 *   --pg       (or BENCH_PG=1)     run the PostgreSQL section (4), failing when it cannot run;
 *                                  by default it runs when PostgreSQL answers and pg_comparator is
 *                                  installed, and reports "skipped: <why>" otherwise
 *   --no-pg    (or BENCH_PG=0)     leave it out
 *   --pg-only                      run the PostgreSQL section only (implies --pg)
 *   BENCH_PG_URL                   admin connection, default postgres://postgres@127.0.0.1:5432/postgres
 *                                  (or CONVERGE_TEST_PG, as the tests use)
 *
 * The PostgreSQL section uses pgbench's data at scale round(N / 100,000), at least 1.
 *
 * N may be written with _ or , separators (1_000_000, 1,000,000).
 */
export interface BenchOptions {
  rows: number
  quick: boolean
  /** The PostgreSQL section: 'auto' runs it when it can, 'on' requires it, 'off' leaves it out. */
  pg: 'auto' | 'on' | 'off'
  /** Only the PostgreSQL section. */
  pgOnly: boolean
  /** Admin connection URL for the PostgreSQL section. */
  pgUrl: string
}

const DEFAULT_ROWS = 1_000_000
const QUICK_ROWS = 100_000

function parseRows (text: string, from: string): number {
  const n = Number(text.replace(/[_,]/g, ''))
  if (!Number.isSafeInteger(n) || n < 1000) throw new Error(`${from}: "${text}" is not a row count (an integer >= 1000)`)
  return n
}

export function parseOptions (argv: readonly string[], env: NodeJS.ProcessEnv): BenchOptions {
  let rows: number | undefined = env.BENCH_ROWS !== undefined && env.BENCH_ROWS !== '' ? parseRows(env.BENCH_ROWS, 'BENCH_ROWS') : undefined
  let quick = env.BENCH_QUICK === '1' || env.BENCH_QUICK === 'true'
  let pg: BenchOptions['pg'] = env.BENCH_PG === '1' || env.BENCH_PG === 'true' ? 'on' : env.BENCH_PG === '0' || env.BENCH_PG === 'false' ? 'off' : 'auto'
  let pgOnly = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--quick') quick = true
    else if (arg === '--pg') pg = 'on'
    else if (arg === '--no-pg') pg = 'off'
    else if (arg === '--pg-only') { pg = 'on'; pgOnly = true }
    else if (arg === '--rows') {
      const value = argv[++i]
      if (value === undefined) throw new Error('--rows needs a value')
      rows = parseRows(value, '--rows')
    } else if (arg.startsWith('--rows=')) rows = parseRows(arg.slice('--rows='.length), '--rows')
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: tsx scripts/bench.ts [--rows N] [--quick] [--pg | --no-pg | --pg-only]\n')
      process.exit(0)
    } else throw new Error(`unknown option ${arg} (expected --rows N, --quick, --pg, --no-pg or --pg-only)`)
  }
  if (pgOnly && pg === 'off') throw new Error('--pg-only and --no-pg contradict each other')
  const pgUrl = env.BENCH_PG_URL ?? env.CONVERGE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  return { rows: rows ?? (quick ? QUICK_ROWS : DEFAULT_ROWS), quick, pg, pgOnly, pgUrl }
}
