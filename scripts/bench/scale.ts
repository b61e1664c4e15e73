/**
 * Section 3: indexing at scale, and memory per million rows. One LevelStore
 * of sample orders grows to each size in SCALE_SIZES (10,000,000 in the full
 * run); at each size a DigestIndex is rebuilt over it from nothing, in a
 * fresh process each time (scale-child.ts), both ways an agent builds one:
 * store-backed (LevelDB: the store is ordered by key hash) and keeping index
 * entries of its own (PostgreSQL, SQLite). The figure that matters is the
 * process's peak resident memory during the build, against the size.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AGENT_NODE_FLAGS } from '../../src/cli/young-generation.ts'
import type { ScaleBuild } from './scale-child.ts'
import { bytes, fixed, int, passFail, progress, rate, seconds, table } from './report.ts'
import { makeTempDir, removeTempDir } from './temp-dirs.ts'

export const SCALE_SIZES = [1_000_000, 10_000_000] as const
export const QUICK_SCALE_SIZES = [100_000, 1_000_000] as const
/** Target: the process's own (anonymous) memory during a build over the largest size stays under this. */
const PEAK_ANON_TARGET = 512 * 1024 ** 2

const CHILD = fileURLToPath(new URL('./scale-child.ts', import.meta.url))
const TSX = import.meta.resolve('tsx')

export interface ScaleStep { n: number, seedMs: number, builds: ScaleBuild[] }

async function child<T> (args: string[]): Promise<T> {
  // with the young generation an agent has: its size is part of the memory a build takes
  const proc = spawn(process.execPath, [...AGENT_NODE_FLAGS, '--expose-gc', '--import', TSX, CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  const code = await new Promise<number | null>((resolve, reject) => { proc.once('error', reject); proc.once('exit', resolve) })
  if (code !== 0) throw new Error(`scale-child ${args[0]} exited with ${code}`)
  return JSON.parse(out.trim()) as T
}

export async function measureScale (sizes: readonly number[]): Promise<ScaleStep[]> {
  const dir = await makeTempDir('scale')
  const store = join(dir, 'store')
  const steps: ScaleStep[] = []
  try {
    let seeded = 0
    for (const n of sizes) {
      progress(`6: growing the LevelStore from ${int(seeded)} to ${int(n)} rows`)
      const { ms: seedMs } = await child<{ ms: number }>(['seed', store, String(seeded), String(n)])
      seeded = n
      const builds: ScaleBuild[] = []
      for (const mode of ['store-backed', 'own-entries'] as const) {
        progress(`6: n = ${int(n)}: rebuilding the index (${mode}) in a fresh process`)
        const build = await child<ScaleBuild>(['build', store, join(dir, `state-${n}-${mode}`), mode])
        if (build.rows !== n) throw new Error(`the ${mode} index of ${int(n)} rows holds ${int(build.rows)}`)
        builds.push(build)
      }
      steps.push({ n, seedMs, builds })
    }
    return steps
  } finally {
    await removeTempDir(dir)
  }
}

/** Peak RSS growth per million rows between the smallest and the largest size, for one way of building. */
function perMillion (steps: readonly ScaleStep[], mode: ScaleBuild['mode'], pick: (b: ScaleBuild) => number): number {
  const first = steps[0]!; const last = steps[steps.length - 1]!
  const a = first.builds.find(b => b.mode === mode)!; const b = last.builds.find(b2 => b2.mode === mode)!
  return (pick(b) - pick(a)) / ((last.n - first.n) / 1e6)
}

export function scaleReport (steps: readonly ScaleStep[]): string {
  const rows = steps.flatMap(s => s.builds.map(b => [
    int(s.n), b.mode, String(b.depth), seconds(b.ms), rate(s.n, b.ms),
    bytes(b.anonBefore), bytes(b.peakAnon), bytes(b.peakRss), bytes(b.heapAfter), b.stateBytes < 4096 ? '—' : bytes(b.stateBytes)
  ]))
  const largest = steps[steps.length - 1]!
  const peakAnon = Math.max(...largest.builds.map(b => b.peakAnon))
  const exact = steps.every(s => s.builds.every(b => b.peakExact))
  const growth = (mode: ScaleBuild['mode']): string => `${bytes(perMillion(steps, mode, b => b.peakAnon))} own memory, ${bytes(perMillion(steps, mode, b => b.peakRss))} resident`
  return [
    '## 6. Indexing at scale: memory per million rows',
    '',
    `One LevelStore of sample orders grown to ${steps.map(s => int(s.n)).join(', then ')} rows (seeding ${steps.map(s => seconds(s.seedMs)).join(', ')}; ` +
    'change log trimmed and compacted after each), and at each size a DigestIndex rebuilt over it from nothing, each build in a fresh process: ' +
    '**store-backed** (the LevelStore keeps rows in key-hash order and is its own index: the build keeps only the tree) and **own-entries** ' +
    '(the index writes a (key hash → key, digest) entry per row to its own LevelDB, as for PostgreSQL and SQLite stores).',
    '',
    '"Own memory" is the process\'s anonymous resident memory (RssAnon: heap, native buffers, LevelDB\'s caches and write buffers), sampled every 20 ms. ' +
    `"Peak resident" is all of it (${exact ? 'the kernel\'s high-water mark VmHWM, reset just before the build' : 'sampled every 20 ms'}): it also counts the pages of the ` +
    'store\'s table files that LevelDB maps into the process to read them, which grow with the store read and are the kernel\'s page cache, reclaimed under memory pressure.',
    '',
    table(['rows', 'build', 'tree depth', 'time', 'rows/s', 'own memory before', 'peak own memory', 'peak resident', 'heap after (GC)', 'index on disk'], rows),
    '',
    `Memory per million rows indexed (growth between ${int(steps[0]!.n)} and ${int(largest.n)} rows): store-backed ${growth('store-backed')}; own-entries ${growth('own-entries')}.`,
    '',
    table(['target', 'measured', 'result'], [
      [`${int(largest.n)} rows indexed with bounded memory: the process's own memory under ${bytes(PEAK_ANON_TARGET)}`, bytes(peakAnon), passFail(peakAnon < PEAK_ANON_TARGET)]
    ])
  ].join('\n')
}
