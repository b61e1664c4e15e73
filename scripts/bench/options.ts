/**
 * Benchmark options from argv and the environment.
 *
 *   --rows N   (or BENCH_ROWS=N)   rows in the dataset; default 1,000,000
 *   --quick    (or BENCH_QUICK=1)  smoke run with 100,000 rows; --rows wins when both are given
 *
 * N may be written with _ or , separators (1_000_000, 1,000,000).
 */
export interface BenchOptions {
  rows: number
  quick: boolean
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
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--quick') quick = true
    else if (arg === '--rows') {
      const value = argv[++i]
      if (value === undefined) throw new Error('--rows needs a value')
      rows = parseRows(value, '--rows')
    } else if (arg.startsWith('--rows=')) rows = parseRows(arg.slice('--rows='.length), '--rows')
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: tsx scripts/bench.ts [--rows N] [--quick]\n')
      process.exit(0)
    } else throw new Error(`unknown option ${arg} (expected --rows N or --quick)`)
  }
  return { rows: rows ?? (quick ? QUICK_ROWS : DEFAULT_ROWS), quick }
}
