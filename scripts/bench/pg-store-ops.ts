/**
 * PgStore's keyed reads and its writes at the simulator's scale: an `orders`
 * table of 1,000,000 rows seeded as the simulator seeds a PostgreSQL region
 * (cluster/region-stores.ts), then, each round:
 *
 *   get        store.get() of 10,000 existing keys at random (readByKeys)
 *   drift      the simulator's drift write (cluster/drift.ts): 10,000 rows in
 *              one apply, 60 % updated, 20 % inserted, 20 % deleted
 *   feed       store.changes() from before the drift until its batch arrives
 *              (readChanges: the change log, then readByKeys of 10,000 keys)
 *   fix        the repair an agent would apply: 8,000 upserts (the updated
 *              and deleted rows as seeded) and 2,000 deletes (the inserted
 *              rows), origin 'converge', with the feed's rows and versions
 *              as what it expects there (ApplyRequest.expected), as an agent
 *              passes them; the table is as seeded again after it
 *   sql update one plain UPDATE of 10,000 rows, with the capture triggers and
 *              with every user trigger disabled: what capture costs a writer
 *
 * Only ReplicaStore's interface is used, so the same script measures any
 * version of pg-store.ts. Each figure is wall time and this process's CPU
 * time (user + system), so the server's share shows as the difference.
 *
 *   npx tsx scripts/bench/pg-store-ops.ts [--rows 1000000] [--keys 10000] [--rounds 5] [--keep] [--reuse URL]
 *
 * The database is dropped at the end (also on failure) unless --keep, which
 * prints its URL for --reuse (a reused table must hold the seeded rows).
 * BENCH_PG_URL (or CONVERGE_TEST_PG) names the admin connection.
 */
import pg from 'pg'
import { DatasetModel } from '../../cluster/dataset-model.ts'
import { DriftInjector, DriftLedger } from '../../cluster/drift.ts'
import { rng } from '../../cluster/orders.ts'
import { provisionStores } from '../../cluster/region-stores.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import type { RowChange } from '../../src/stores/replica-store.ts'
import { fixed, int, progress, table } from './report.ts'
import { makeTempDir, removeTempDir } from './temp-dirs.ts'
import { median } from './timing.ts'

const ADMIN_URL = process.env.BENCH_PG_URL ?? process.env.CONVERGE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const MIX = { update: 0.6, insert: 0.2, delete: 0.2 }

interface Options { rows: number, keys: number, rounds: number, keep: boolean, reuse: string | undefined }

function parseArgs (argv: readonly string[]): Options {
  const options: Options = { rows: 1_000_000, keys: 10_000, rounds: 5, keep: false, reuse: undefined }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const count = (): number => {
      const n = Number((argv[++i] ?? '').replace(/[_,]/g, ''))
      if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${arg}: expects a positive integer`)
      return n
    }
    if (arg === '--rows') options.rows = count()
    else if (arg === '--keys') options.keys = count()
    else if (arg === '--rounds') options.rounds = count()
    else if (arg === '--keep') options.keep = true
    else if (arg === '--reuse') options.reuse = argv[++i]
    else throw new Error(`unknown argument ${arg}`)
  }
  return options
}

interface Sample { ms: number, cpuMs: number }

/** Wall and this process's CPU time of one piece of work. */
async function measure<T> (fn: () => Promise<T>): Promise<{ value: T, sample: Sample }> {
  const cpu = process.cpuUsage()
  const start = process.hrtime.bigint()
  const value = await fn()
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  const used = process.cpuUsage(cpu)
  return { value, sample: { ms, cpuMs: (used.user + used.system) / 1000 } }
}

/** The changes of the first batch of the change feed after `since`. */
async function firstBatchAfter (store: PgStore, since: number): Promise<RowChange[]> {
  const controller = new AbortController()
  try {
    for await (const batch of store.changes({ since, signal: controller.signal })) return batch.changes
    return []
  } finally {
    controller.abort()
  }
}

async function main (): Promise<void> {
  const options = parseArgs(process.argv.slice(2))
  const model = new DatasetModel('orders', options.rows)
  const dir = await makeTempDir('pg-store-ops')
  const provisioned = options.reuse === undefined
    ? provisionStores({ dir, regions: [{ name: 'bench', store: 'postgres' }], datasets: [model], pgAdminUrl: ADMIN_URL, signal: new AbortController().signal, say: progress })
    : undefined
  let store: PgStore | undefined
  let admin: pg.Client | undefined
  try {
    let url = options.reuse
    if (provisioned !== undefined) {
      progress(`seeding ${int(options.rows)} orders`)
      await provisioned.ready
      url = provisioned.stores[0]!.pg!.url
    }
    admin = new pg.Client({ connectionString: url })
    await admin.connect()
    // the same start for every run: statistics and the visibility map as after autovacuum
    await admin.query('VACUUM ANALYZE public.orders')
    store = new PgStore({ connectionString: url!, table: 'public.orders', codec: model.codec })
    await store.open()

    const random = rng(7)
    const samples: Record<string, Sample[]> = { get: [], drift: [], feed: [], fix: [], 'sql update, capture on': [], 'sql update, triggers off': [] }
    const ledger = new DriftLedger()
    for (let round = 0; round < options.rounds; round++) {
      const ids = new Set<number>()
      while (ids.size < options.keys) ids.add(Math.floor(random() * options.rows))
      const keys = [...ids].map(id => model.encodeKey(id))
      const got = await measure(async () => await store!.get(keys))
      if (got.value.some(r => r === undefined)) throw new Error('get: a seeded row is missing')
      samples.get!.push(got.sample)

      const since = await store.lastSeq()
      const injector = new DriftInjector(model, 'bench', 0, { mix: MIX }, 1000 + round, ledger)
      const from = ledger.injections.length
      samples.drift!.push((await measure(async () => await injector.batch(store!, options.keys))).sample)
      const feed = await measure(async () => await firstBatchAfter(store!, since))
      if (feed.value.length !== options.keys) throw new Error(`feed: ${feed.value.length} changes where the drift wrote ${options.keys}`)
      const read = new Map(feed.value.map(c => [Buffer.from(c.key).toString('hex'), c]))
      samples.feed!.push(feed.sample)

      const drifted = ledger.injections.slice(from)
      const upserts = drifted.filter(d => d.op !== 'insert').map(d => model.encodeRow(model.idOfKey(Buffer.from(d.key, 'hex'))))
      const deletes = drifted.filter(d => d.op === 'insert').map(d => Buffer.from(d.key, 'hex'))
      const expected = [...upserts.map(r => model.codec.keyOfEncodedRow(r)), ...deletes].map(k => {
        const c = read.get(Buffer.from(k).toString('hex'))!
        return c.version === undefined ? { row: c.row } : { row: c.row, version: c.version }
      })
      const fix = await measure(async () => await store!.apply({ upserts, deletes, origin: 'converge', expected }))
      // the rows the drift deleted come back (no before-image); every other key has one
      const absent = fix.value.before.filter(b => b === null).length
      if (absent !== drifted.filter(d => d.op === 'delete').length) throw new Error(`fix: ${absent} before-images are null`)
      samples.fix!.push(fix.sample)

      const plain = [...ids].slice(0, options.keys)
      const update = async (): Promise<void> => { await admin!.query('UPDATE public.orders SET items = items WHERE order_id = ANY ($1::bigint[])', [plain]) }
      samples['sql update, capture on']!.push((await measure(update)).sample)
      await admin.query('ALTER TABLE public.orders DISABLE TRIGGER USER')
      try {
        samples['sql update, triggers off']!.push((await measure(update)).sample)
      } finally {
        await admin.query('ALTER TABLE public.orders ENABLE TRIGGER USER')
      }
      await store.trimChanges(await store.lastSeq())
      progress(`round ${round + 1}/${options.rounds}: ${Object.entries(samples).map(([op, s]) => `${op} ${fixed(s.at(-1)!.ms, 0)} ms`).join(', ')}`)
    }
    const count = await store.countRows()
    if (count !== options.rows) throw new Error(`the table holds ${count} rows after the fixes, not ${options.rows}`)
    const { rows: [server] } = await admin.query<{ version: string }>("SELECT current_setting('server_version') AS version")

    const ms = (xs: number[]): string => fixed(median(xs), 1)
    process.stdout.write(`PgStore operations: ${int(options.rows)} orders, ${int(options.keys)} keys, ${options.rounds} rounds, PostgreSQL ${server!.version} (median, min and max wall ms; median client CPU ms)\n\n`)
    process.stdout.write(`${table(['operation', 'median ms', 'min', 'max', 'client CPU ms'], Object.entries(samples).map(([op, s]) => [
      op, ms(s.map(x => x.ms)), fixed(Math.min(...s.map(x => x.ms)), 1), fixed(Math.max(...s.map(x => x.ms)), 1), ms(s.map(x => x.cpuMs))
    ]))}\n`)
    if (options.keep) process.stdout.write(`\nkept: --reuse ${url}\n`)
  } finally {
    await admin?.end()
    await store?.close()
    if (!options.keep) await provisioned?.drop()
    await removeTempDir(dir)
  }
}

await main()
