/**
 * One agent's side of section 4's first pass, in a process of its own.
 *
 * In a deployment the source of truth's agent and the replica's run on hosts
 * of their own, so their index builds do not share a JS thread, a heap or a
 * LevelDB background thread. postgres.ts starts one of these processes per
 * side; they still share this machine's cores with each other and with both
 * PostgreSQL backends. The exchange goes over loopback TCP between the two
 * (socket-channel.ts), as it would between hosts, without libp2p.
 *
 *   tsx scripts/bench/pg-first-pass-side.ts sot|replica DATABASE_URL AGENT_DIR
 *
 * Driven over IPC (advanced serialization) by the parent:
 *   ← ready { port }            state db open; the SoT side listens for the exchange on `port`
 *   → build                     PgStore.open (capture triggers) + DigestIndex.start (full scan), timed here
 *   ← built { build }
 *   → sync { port, sourceRoot } the replica: one exchange against the SoT side, planRestore + PgStore.apply,
 *                               then its index catches up on its own fix through the change feed
 *   ← synced { repair }         (the SoT side answers served { tally } once the exchange is over)
 *   → close                     index stopped, store and state db closed
 *   ← closed
 * Any failure: ← failed { message }, exit code 1.
 */
import { mkdir } from 'node:fs/promises'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { DigestIndex } from '../../src/index/digest-index.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { planRestore } from '../../src/policy/restore.ts'
import { PgStore } from '../../src/stores/pg-store.ts'
import type { ReplicaView } from '../../src/sync/replica-view.ts'
import { runClientSync, serveSync, type SyncStats } from '../../src/sync/session.ts'
import { memorySnapshot, type MemorySnapshot } from './memory.ts'
import { DATASET, PGBENCH_ACCOUNTS_SCHEMA, TABLE } from './pgbench-accounts.ts'
import { socketChannel } from './socket-channel.ts'
import { timed } from './timing.ts'

export type SideRole = 'sot' | 'replica'
export interface TreeRoot { count: number, sum: bigint }

export interface CallTally { calls: number, items: number, ms: number }
export type ViewTally = Record<'listMany' | 'getRows', CallTally>

export interface SideBuild {
  /** PgStore.open + DigestIndex.start, in this process. */
  ms: number
  /** CPU time this process spent on it, all its threads (JS, libuv, LevelDB). */
  cpuMs: number
  rssBefore: number
  rssPeak: number
  rssSamples: number
  /** Right after the build, index open. */
  after: MemorySnapshot
  treeRows: number
  treeDepth: number
  root: TreeRoot
}

export interface SideRepair {
  /** Connect + runClientSync until its outcome. */
  exchangeMs: number
  applyMs: number
  catchUpMs: number
  stats: SyncStats
  tally: ViewTally
  result: { changed: number, missing: number, extra: number, unresolved: number, upserts: number, deletes: number }
  /** Sum of the encoded SoT rows the exchange brought back. */
  payloadBytes: number
  fixes: number
  /** After the catch-up, this replica's root equals the SoT's. */
  rootsEqual: boolean
}

export type ToSide =
  | { type: 'build' }
  | { type: 'sync', port: number, sourceRoot: TreeRoot }
  | { type: 'close' }

export type FromSide =
  | { type: 'ready', port: number }
  | { type: 'built', build: SideBuild }
  | { type: 'served', tally: ViewTally }
  | { type: 'synced', repair: SideRepair }
  | { type: 'closed' }
  | { type: 'failed', message: string }

const RSS_SAMPLE_MS = 50

class RssSampler {
  peak = 0
  samples = 0
  private readonly timer: NodeJS.Timeout
  constructor (everyMs: number) {
    this.sample()
    this.timer = setInterval(() => this.sample(), everyMs)
  }

  sample (): void {
    const rss = process.memoryUsage().rss
    this.samples++
    if (rss > this.peak) this.peak = rss
  }

  stop (): void { this.sample(); clearInterval(this.timer) }
}

/** The index as a ReplicaView that tallies its index reads (listMany) and store reads (getRows). */
function tallied (index: DigestIndex): { view: ReplicaView, tally: ViewTally } {
  const tally: ViewTally = { listMany: { calls: 0, items: 0, ms: 0 }, getRows: { calls: 0, items: 0, ms: 0 } }
  const count = async <T>(t: CallTally, items: number, fn: () => Promise<T>): Promise<T> => {
    const start = performance.now()
    try { return await fn() } finally { t.calls++; t.items += items; t.ms += performance.now() - start }
  }
  const view: ReplicaView = {
    get tree () { return index.tree },
    list: async (level, i, options) => (await count(tally.listMany, 1, async () => await index.listMany([{ level, index: i }], options)))[0]!,
    listMany: async (nodes, options) => await count(tally.listMany, nodes.length, async () => await index.listMany(nodes, options)),
    getRows: async (keys, options) => await count(tally.getRows, keys.length, async () => await index.getRows(keys, options))
  }
  return { view, tally }
}

function send (message: FromSide): void { process.send!(message) }

async function main (): Promise<void> {
  const [role, url, agentDir] = process.argv.slice(2) as [SideRole, string, string]
  if ((role !== 'sot' && role !== 'replica') || url === undefined || agentDir === undefined) throw new Error('usage: pg-first-pass-side.ts sot|replica DATABASE_URL AGENT_DIR')
  const codec = new RowCodec(PGBENCH_ACCOUNTS_SCHEMA)
  await mkdir(agentDir, { recursive: true })
  const store = new PgStore({ connectionString: url, table: TABLE, codec })
  const state = new StateDb(join(agentDir, 'state'))
  await state.open()
  const index = new DigestIndex({ dataset: DATASET, codec, store, state })
  const served = tallied(index)
  let server: Server | undefined
  let port = 0
  if (role === 'sot') {
    server = createServer((socket: Socket) => {
      serveSync(socketChannel(socket), { resolve: () => ({ region: 'sot', codec, view: served.view, clock: () => ({}) }) })
        .then(() => send({ type: 'served', tally: served.tally }), (err: unknown) => send({ type: 'failed', message: `serving the exchange: ${String(err)}` }))
    })
    await new Promise<void>(resolve => server!.listen(0, '127.0.0.1', resolve))
    port = (server.address() as { port: number }).port
  }

  const close = async (): Promise<void> => {
    server?.close()
    await index.stop().catch(() => undefined)
    await store.close().catch(() => undefined)
    await state.close().catch(() => undefined)
  }

  process.on('message', (message: ToSide) => {
    const handle = async (): Promise<void> => {
      if (message.type === 'build') {
        const sampler = new RssSampler(RSS_SAMPLE_MS)
        const rssBefore = sampler.peak
        const cpuBefore = process.cpuUsage()
        const { ms } = await timed(async () => { await store.open(); await index.start() })
        const cpu = process.cpuUsage(cpuBefore)
        sampler.stop()
        const { root } = index.tree
        send({
          type: 'built',
          build: { ms, cpuMs: (cpu.user + cpu.system) / 1000, rssBefore, rssPeak: sampler.peak, rssSamples: sampler.samples, after: memorySnapshot(), treeRows: index.tree.rowCount, treeDepth: index.tree.depth, root: { count: root.count, sum: root.sum } }
        })
      } else if (message.type === 'sync') {
        send({ type: 'synced', repair: await repair(message.port, message.sourceRoot) })
      } else {
        await close()
        send({ type: 'closed' })
        process.disconnect()
      }
    }
    handle().catch((err: unknown) => { send({ type: 'failed', message: (err as Error).stack ?? String(err) }); process.exitCode = 1; void close().then(() => process.disconnect()) })
  })

  /** The replica's part: one exchange against the SoT side, the restore, the catch-up. */
  const repair = async (sotPort: number, sourceRoot: TreeRoot): Promise<SideRepair> => {
    const { view, tally } = tallied(index)
    const { value: outcome, ms: exchangeMs } = await timed(async () => {
      const socket = createConnection({ host: '127.0.0.1', port: sotPort })
      await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
      return await runClientSync(socketChannel(socket), { dataset: DATASET, region: 'replica', codec, view, clock: {}, correlationId: 'bench-pg-first-pass' })
    })
    const { result, stats } = outcome
    const { value: fixes, ms: applyMs } = await timed(async () => {
      const planned = planRestore(result, codec)
      for (const fix of planned) await store.apply({ upserts: fix.upserts, deletes: fix.deletes, origin: 'converge' })
      return planned.length
    })
    const { ms: catchUpMs } = await timed(async () => await index.catchUp())
    const { root } = index.tree
    return {
      exchangeMs, applyMs, catchUpMs, stats, tally, fixes,
      result: { changed: result.changed, missing: result.missing, extra: result.extra, unresolved: result.unresolved, upserts: result.upserts.length, deletes: result.deletes.length },
      payloadBytes: result.upserts.reduce((sum, row) => sum + row.length, 0),
      rootsEqual: root.count === sourceRoot.count && root.sum === sourceRoot.sum
    }
  }

  send({ type: 'ready', port })
}

main().catch((err: unknown) => {
  process.send?.({ type: 'failed', message: (err as Error).stack ?? String(err) } satisfies FromSide)
  process.exitCode = 1
  process.disconnect?.()
})
