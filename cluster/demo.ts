/**
 * `converge cluster demo`: three regions as three agent processes on
 * loopback, each with its own LevelDB store seeded with the same orders. Two
 * replicas are drifted (updates, inserts, deletes) behind their agents'
 * backs; the demo shows them converge on the source of truth, then checks
 * every row by reading the stores directly.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPeerKeyFile, peerIdOf } from '../src/net/peer-key.ts'
import { LevelStore } from '../src/stores/level-store.ts'
import { freePorts } from './free-port.ts'
import { fetchStatus, launchAgent, stopAgent, type AgentProcess } from './launcher.ts'
import { injectDrift, ORDERS_SCHEMA, ordersCodec, seedOrders, type InjectedDrift } from './orders.ts'

export interface DemoOptions {
  rows: number
  /** Percent of rows drifted in each non-SoT replica. */
  drift: number
  dir?: string
  out?: NodeJS.WritableStream
  /** Give up after this long. */
  timeoutMs?: number
}

interface DatasetStatus {
  state: string
  rowsIndexed?: number
  root: { count: number, sum: string }
  counters: { syncs: number, fixes: number, rowsUpserted: number, rowsDeleted: number, missing: number, changed: number, extra: number, roundTrips: number, bytesSent: number, bytesReceived: number }
}
interface Status { region: string, datasets: DatasetStatus[] }

const REGIONS = ['us-east', 'eu-west', 'ap-south'] as const
const SOT = 'us-east'

export interface DemoResult {
  converged: boolean
  ms: number
  rowsVerified: number
  perRegion: Record<string, { injected?: InjectedDrift, found: DatasetStatus['counters'] }>
}

export async function runDemo (options: DemoOptions): Promise<DemoResult> {
  const out = options.out ?? process.stdout
  // a reader that goes away (| head) must not kill the demo before it stops its agents and cleans up
  out.on('error', () => undefined)
  const say = (line = ''): void => { out.write(line + '\n') }
  const dir = options.dir ?? await mkdtemp(join(tmpdir(), 'converge-demo-'))
  await mkdir(dir, { recursive: true })
  const agents: AgentProcess[] = []
  try {
    say(`converge demo: 3 regions (${REGIONS.join(', ')}), source of truth ${SOT}, ${options.rows.toLocaleString('en-US')} orders each`)
    say(`working directory ${dir}`)

    // identities and ports first: every agent's config names its peers' addresses
    const nodes = []
    const ports = await freePorts(2 * REGIONS.length)
    for (const [i, region] of REGIONS.entries()) {
      const key = await createPeerKeyFile(join(dir, region, 'agent', 'peer.key'))
      nodes.push({ region, peerId: peerIdOf(key), p2pPort: ports[2 * i]!, statusPort: ports[2 * i + 1]! })
    }

    const t0 = Date.now()
    const injected: Record<string, InjectedDrift> = {}
    const driftRows = Math.max(1, Math.round(options.rows * options.drift / 100))
    for (const [i, n] of nodes.entries()) {
      const store = new LevelStore({ path: join(dir, n.region, 'orders'), codec: ordersCodec })
      await store.open()
      await seedOrders(store, 0, options.rows)
      if (n.region !== SOT) injected[n.region] = await injectDrift(store, options.rows, { rows: driftRows, seed: i })
      await store.close()
    }
    say(`seeded ${REGIONS.length} stores in ${((Date.now() - t0) / 1000).toFixed(1)} s; drifted ${driftRows.toLocaleString('en-US')} rows in each of ${REGIONS.filter(r => r !== SOT).join(' and ')}:`)
    for (const [region, d] of Object.entries(injected)) say(`  ${region.padEnd(9)} ${d.updated} updated, ${d.inserted} inserted, ${d.deleted} deleted`)

    for (const n of nodes) {
      agents.push(await launchAgent(dir, {
        cluster: 'demo',
        region: n.region,
        dataDir: join(dir, n.region, 'agent'),
        listen: [`/ip4/127.0.0.1/tcp/${n.p2pPort}`],
        peers: nodes.filter(p => p !== n).map(p => ({ region: p.region, address: `/ip4/127.0.0.1/tcp/${p.p2pPort}/p2p/${p.peerId}` })),
        status: { host: '127.0.0.1', port: n.statusPort },
        gossip: { intervalMs: 1000 },
        datasets: [{ name: 'orders', schema: ORDERS_SCHEMA, store: { kind: 'level', path: join(dir, n.region, 'orders') }, sourceOfTruth: [SOT] }]
      }))
    }
    const started = Date.now()
    say(`started ${agents.length} agent processes (logs: ${dir}/<region>.log); watching them converge…`)

    const deadline = started + (options.timeoutMs ?? 180_000)
    let converged = false
    let last: Record<string, DatasetStatus | undefined> = {}
    let lastPrint = 0
    while (Date.now() < deadline) {
      const statuses = await Promise.all(agents.map(async a => await fetchStatus<Status>(a)))
      last = Object.fromEntries(agents.map((a, i) => [a.region, statuses[i]?.datasets[0]]))
      const sot = last[SOT]
      converged = sot?.root !== undefined && REGIONS.every(r => {
        const d = last[r]
        return d?.root !== undefined && d.root.sum === sot.root.sum && d.root.count === sot.root.count && (r === SOT || d.state === 'in-sync')
      })
      if (Date.now() - lastPrint >= 1000 || converged) {
        lastPrint = Date.now()
        const parts = REGIONS.map(r => {
          const d = last[r]
          if (d === undefined) return `${r}: starting`
          if (d.state === 'indexing') return `${r}: indexing (${(d.rowsIndexed ?? 0).toLocaleString('en-US')} rows)`
          const repaired = d.counters.rowsUpserted + d.counters.rowsDeleted
          return `${r}: ${d.state}${r === SOT ? '' : `, ${repaired} rows repaired`}`
        })
        say(`  [${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${parts.join(' | ')}`)
      }
      if (converged) break
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    const ms = Date.now() - started

    for (const a of agents) await stopAgent(a)
    agents.length = 0

    // the proof: read every store directly and compare row by row
    const rowsOf = async (region: string): Promise<Map<string, string>> => {
      const store = new LevelStore({ path: join(dir, region, 'orders'), codec: ordersCodec })
      await store.open()
      const rows = new Map<string, string>()
      for await (const batch of store.scan()) for (const r of batch) rows.set(Buffer.from(r.key).toString('hex'), Buffer.from(r.row).toString('hex'))
      await store.close()
      return rows
    }
    const want = await rowsOf(SOT)
    let identical = true
    for (const region of REGIONS.filter(r => r !== SOT)) {
      const got = await rowsOf(region)
      let differing = got.size === want.size ? 0 : Math.abs(got.size - want.size)
      for (const [k, v] of want) if (got.get(k) !== v) differing++
      if (differing > 0) { identical = false; say(`  ${region}: ${differing} rows still differ from ${SOT}`) }
    }

    say()
    say(converged ? `converged in ${(ms / 1000).toFixed(2)} s (from agent start, including index builds)` : `did not converge within ${(ms / 1000).toFixed(0)} s`)
    say()
    say('region     injected (upd/ins/del)   found (changed/missing/extra)   rows fixed   syncs   round trips   bytes sent / received')
    for (const region of REGIONS.filter(r => r !== SOT)) {
      const d = last[region]
      const inj = injected[region]!
      const c = d?.counters
      if (c === undefined) continue
      say(`${region.padEnd(10)} ${`${inj.updated}/${inj.inserted}/${inj.deleted}`.padEnd(24)} ${`${c.changed}/${c.missing}/${c.extra}`.padEnd(31)} ${String(c.rowsUpserted + c.rowsDeleted).padEnd(12)} ${String(c.syncs).padEnd(7)} ${String(c.roundTrips).padEnd(13)} ${c.bytesSent.toLocaleString('en-US')} / ${c.bytesReceived.toLocaleString('en-US')}`)
    }
    say()
    say(identical ? `verified: all ${REGIONS.length} stores hold the same ${want.size.toLocaleString('en-US')} rows, row for row` : 'verification FAILED: stores differ')
    return {
      converged: converged && identical,
      ms,
      rowsVerified: want.size,
      perRegion: Object.fromEntries(REGIONS.map(r => [r, { injected: injected[r], found: last[r]?.counters ?? ({} as DatasetStatus['counters']) }]))
    }
  } finally {
    for (const a of agents) await stopAgent(a)
    if (options.dir === undefined) await rm(dir, { recursive: true, force: true })
  }
}
