/**
 * Benchmark options from argv and the environment.
 *
 *   --rows N   (or BENCH_ROWS=N)   rows in the dataset; default 1,000,000
 *   --quick    (or BENCH_QUICK=1)  smoke run with 100,000 rows; --rows wins when both are given
 *   --pg       (or BENCH_PG=1)     run the PostgreSQL section (4), failing when it cannot run;
 *                                  by default it runs when PostgreSQL answers and pg_comparator is
 *                                  installed, and reports "skipped: <why>" otherwise
 *   --no-pg    (or BENCH_PG=0)     leave it out
 *   --pg-only                      run the PostgreSQL section (4) only (implies --pg)
 *   --sections 1,2,…               run only these sections (1 indexing, 2 sync bytes, 3 tree update,
 *                                  4 PostgreSQL vs pg_comparator, 5 convergence vs full copy, 6 scale)
 *   --servers own|shared (or BENCH_SERVERS)  section 5: each region's database on a PostgreSQL server of
 *                                  its own (initdb, as regions are; the default where initdb is found) or
 *                                  all three on the BENCH_PG_URL server (the default where it is not)
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
  /** Admin connection URL for the PostgreSQL sections. */
  pgUrl: string
  /** The sections to run (1 to 6). */
  sections: ReadonlySet<number>
  /** Section 5's PostgreSQL servers: one per region, one shared, or own where initdb is found ('auto'). */
  servers: 'own' | 'shared' | 'auto'
}

function parseServers (text: string, from: string): 'own' | 'shared' {
  if (text === 'own' || text === 'shared') return text
  throw new Error(`${from}: "${text}" is not own or shared`)
}

export const ALL_SECTIONS = [1, 2, 3, 4, 5, 6] as const

function parseSections (text: string): Set<number> {
  const picked = text.split(',').map(s => Number(s.trim()))
  const bad = picked.filter(n => !(ALL_SECTIONS as readonly number[]).includes(n))
  if (bad.length > 0 || picked.length === 0) throw new Error(`--sections: "${text}" is not a list of sections 1 to 6 (e.g. 1,2,5)`)
  return new Set(picked)
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
  let sections: Set<number> | undefined
  let servers: BenchOptions['servers'] = env.BENCH_SERVERS !== undefined && env.BENCH_SERVERS !== '' ? parseServers(env.BENCH_SERVERS, 'BENCH_SERVERS') : 'auto'
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--quick') quick = true
    else if (arg === '--pg') pg = 'on'
    else if (arg === '--no-pg') pg = 'off'
    else if (arg === '--pg-only') { pg = 'on'; pgOnly = true }
    else if (arg === '--sections') {
      const value = argv[++i]
      if (value === undefined) throw new Error('--sections needs a value')
      sections = parseSections(value)
    } else if (arg.startsWith('--sections=')) sections = parseSections(arg.slice('--sections='.length))
    else if (arg === '--servers') {
      const value = argv[++i]
      if (value === undefined) throw new Error('--servers needs a value (own or shared)')
      servers = parseServers(value, '--servers')
    } else if (arg.startsWith('--servers=')) servers = parseServers(arg.slice('--servers='.length), '--servers')
    else if (arg === '--rows') {
      const value = argv[++i]
      if (value === undefined) throw new Error('--rows needs a value')
      rows = parseRows(value, '--rows')
    } else if (arg.startsWith('--rows=')) rows = parseRows(arg.slice('--rows='.length), '--rows')
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: tsx scripts/bench.ts [--rows N] [--quick] [--pg | --no-pg | --pg-only] [--sections 1,2,…] [--servers own|shared]\n')
      process.exit(0)
    } else throw new Error(`unknown option ${arg} (expected --rows N, --quick, --pg, --no-pg, --pg-only, --sections LIST or --servers own|shared)`)
  }
  if (pgOnly && pg === 'off') throw new Error('--pg-only and --no-pg contradict each other')
  if (pgOnly && sections !== undefined) throw new Error('--pg-only and --sections contradict each other (--pg-only is --sections 4)')
  if (pgOnly) sections = new Set([4])
  const pgUrl = env.BENCH_PG_URL ?? env.CONVERGE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  return { rows: rows ?? (quick ? QUICK_ROWS : DEFAULT_ROWS), quick, pg, pgOnly, pgUrl, sections: sections ?? new Set(ALL_SECTIONS), servers }
}
