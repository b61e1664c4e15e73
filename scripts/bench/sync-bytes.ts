/**
 * Section 2: bytes and round trips of one sync exchange between a source of
 * truth holding n orders and a replica that differs from it in d rows, for
 * n in SYNC_SIZES and d in DRIFT_SIZES. Both sides are CompactReplicas
 * (typed arrays, rows encoded on demand: 10,000,000 rows fit) over
 * memoryChannelPair, the real client and server of the sync protocol.
 */
import { ordersCodec as codec, orderRow } from '../../cluster/orders.ts'
import { memoryChannelPair } from '../../src/sync/channel.ts'
import type { NarrowingResult } from '../../src/sync/narrowing.ts'
import type { ReplicaView } from '../../src/sync/replica-view.ts'
import { runClientSync, serveSync, type SyncStats } from '../../src/sync/session.ts'
import { CompactReplica, type OrdersDrift } from './compact-replica.ts'
import { fixed, int, passFail, progress, seconds, table } from './report.ts'
import { timed } from './timing.ts'

/** n for the full run; --quick runs the first only. */
export const SYNC_SIZES = [100_000, 1_000_000, 10_000_000] as const
export const DRIFT_SIZES = [1, 100, 10_000] as const
/** Share of the d changed rows that are updated, deleted and inserted on the replica. */
export const DRIFT_MIX = { update: 0.6, delete: 0.2, insert: 0.2 } as const
/** Target: total bytes of an exchange for a single changed row. */
const SINGLE_ROW_BYTES_TARGET = 2000
/** Target: total bytes within this factor of the lower bound, for 100 <= d <= n/100. */
const LOWER_BOUND_FACTOR_TARGET = 3

/** The replica's drift from the SoT: updated rows are orderRow(id, 1), inserted ids are >= n. */
type Drift = OrdersDrift

export interface SyncCase {
  n: number
  d: number
  drift: Drift
  stats: SyncStats
  ms: number
  lowerBound: number
  naive: number
  roundTripBound: number
}

function seededRandom (seed: number): () => number {
  let s = seed >>> 0
  return () => { s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0; return s / 2 ** 32 }
}

/** d changes in the DRIFT_MIX proportions, on distinct ids chosen by a fixed seed. */
function chooseDrift (n: number, d: number, seed: number): Drift {
  const updates = Math.round(d * DRIFT_MIX.update)
  const deletes = Math.round(d * DRIFT_MIX.delete)
  const inserts = d - updates - deletes
  const random = seededRandom(seed)
  const picked = new Set<number>()
  const pick = (): number => { for (;;) { const id = Math.floor(random() * n); if (!picked.has(id)) { picked.add(id); return id } } }
  return {
    updated: Array.from({ length: updates }, pick),
    deleted: Array.from({ length: deletes }, pick),
    inserted: Array.from({ length: inserts }, (_, i) => n + i)
  }
}

/** One exchange, client against server, exactly as test/sync/narrowing.test.ts runs it. */
export async function exchange (sot: ReplicaView, local: ReplicaView): Promise<{ result: NarrowingResult, stats: SyncStats }> {
  const [client, server] = memoryChannelPair()
  const served = serveSync(server, { resolve: () => ({ region: 'sot', codec, view: sot, clock: () => ({ sot: 1 }) }) })
  const outcome = await runClientSync(client, { dataset: 'orders', region: 'local', codec, view: local, clock: {}, correlationId: 'bench' })
  await served
  return { result: outcome.result, stats: outcome.stats }
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
const sotRow = (id: number): Uint8Array => codec.encodeRow(orderRow(id))

/** Throws unless the exchange found exactly the injected drift, row for row. */
function assertExact (d: number, result: NarrowingResult, drift: Drift): void {
  const got = { changed: result.changed, missing: result.missing, extra: result.extra, upserts: result.upserts.length, deletes: result.deletes.length, unresolved: result.unresolved }
  const want = { changed: drift.updated.length, missing: drift.deleted.length, extra: drift.inserted.length, upserts: drift.updated.length + drift.deleted.length, deletes: drift.inserted.length, unresolved: 0 }
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`sync with d = ${d} is not exact: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
  const wantUpserts = new Set([...drift.updated, ...drift.deleted].map(id => hex(sotRow(id))))
  const wrongRow = result.upserts.find(row => !wantUpserts.has(hex(row)))
  if (wrongRow !== undefined) throw new Error(`sync with d = ${d} returned a row the SoT did not change: ${hex(wrongRow)}`)
  const wantDeletes = new Set(drift.inserted.map(id => hex(codec.encodeKey({ order_id: id }))))
  const wrongKey = result.deletes.find(key => !wantDeletes.has(hex(key)))
  if (wrongKey !== undefined) throw new Error(`sync with d = ${d} deletes a key that is not extra: ${hex(wrongKey)}`)
}

/** What any exchange must carry: the SoT's rows the replica lacks or holds otherwise, and the keys of rows the SoT lacks. */
function lowerBoundBytes (drift: Drift): number {
  let total = 0
  for (const id of [...drift.updated, ...drift.deleted]) total += sotRow(id).length
  for (const id of drift.inserted) total += codec.encodeKey({ order_id: id }).length
  return total
}

export function roundTripBound (n: number): number {
  return Math.floor(Math.log(n / 32) / Math.log(16)) + 3
}

export interface SyncSize { n: number, buildSotMs: number, naive: number, cases: SyncCase[] }

export async function measureSync (sizes: readonly number[]): Promise<SyncSize[]> {
  const out: SyncSize[] = []
  for (const n of sizes) {
    progress(`2: n = ${int(n)}: building the SoT's compact replica`)
    const { value: sot, ms: buildSotMs } = await timed(() => CompactReplica.source(n))
    const naive = sot.naiveBytes()
    const cases: SyncCase[] = []
    for (const d of DRIFT_SIZES) {
      if (d > n / 2) { progress(`2: skipping d = ${d} (more than half of n)`); continue }
      const drift = chooseDrift(n, d, d)
      progress(`2: n = ${int(n)}, d = ${int(d)}: deriving the replica and running one exchange`)
      const local = sot.drifted(drift)
      const { value: { result, stats }, ms } = await timed(async () => await exchange(sot, local))
      assertExact(d, result, drift)
      cases.push({ n, d, drift, stats, ms, lowerBound: lowerBoundBytes(drift), naive, roundTripBound: roundTripBound(n) })
    }
    out.push({ n, buildSotMs, naive, cases })
  }
  return out
}

export function syncReport (sizes: readonly SyncSize[]): string {
  const cases = sizes.flatMap(size => size.cases)
  const rows = cases.map(c => {
    const total = c.stats.bytesSent + c.stats.bytesReceived
    return [
      int(c.n), int(c.d),
      `${c.drift.updated.length} / ${c.drift.deleted.length} / ${c.drift.inserted.length}`,
      `${c.stats.roundTrips} (≤ ${c.roundTripBound}) ${passFail(c.stats.roundTrips <= c.roundTripBound)}`,
      int(c.stats.bytesSent), int(c.stats.bytesReceived), int(total),
      int(c.lowerBound), `${fixed(total / c.lowerBound, 2)}x`,
      int(c.naive), `${fixed(c.naive / total, 0)}x`,
      `${int(c.ms)} ms`
    ]
  })
  const targets = cases.flatMap(c => {
    const total = c.stats.bytesSent + c.stats.bytesReceived
    const out: string[][] = []
    if (c.d === 1) out.push([`n = ${int(c.n)}, d = 1: total under 2 KB (${int(SINGLE_ROW_BYTES_TARGET)} B)`, `${int(total)} B`, passFail(total < SINGLE_ROW_BYTES_TARGET)])
    if (c.d >= 100 && c.d <= c.n / 100) {
      out.push([`n = ${int(c.n)}, d = ${int(c.d)}: total within ${LOWER_BOUND_FACTOR_TARGET}x of the lower bound`, `${fixed(total / c.lowerBound, 2)}x`, passFail(total <= LOWER_BOUND_FACTOR_TARGET * c.lowerBound)])
    }
    return out
  })
  return [
    '## 2. Sync bytes and round trips',
    '',
    `For each n, the SoT holds orders [0, n) (built as a compact replica: ${sizes.map(s => `n = ${int(s.n)} in ${seconds(s.buildSotMs)}`).join(', ')}); ` +
    `for each d the replica is the SoT's rows with d changes: ${DRIFT_MIX.update * 100} % updated (orderRow(id, 1)), ${DRIFT_MIX.delete * 100} % deleted, ` +
    `${DRIFT_MIX.insert * 100} % inserted with new ids >= n (rounded; d = 1 is one update), on distinct ids from a fixed seed. ` +
    'One exchange over memoryChannelPair (runClientSync / serveSync, the real protocol); every result was checked exact ' +
    '(upserts and deletes equal to the injected changes, row for row; unresolved 0). Bytes are as the channel counts them: msgpack frames plus their varint length prefixes, open/opened included.',
    '',
    'Lower bound = the SoT\'s encoded row size for every row changed or missing on the replica + the encoded key size for every row the SoT lacks. ' +
    'Naive = every (key, 8-byte digest) pair of the SoT sent to the replica. Round-trip bound = floor(log16(n/32)) + 3.',
    '',
    table(['n', 'd', 'upd / del / ins', 'round trips', 'client→SoT B', 'SoT→client B', 'total B', 'lower bound B', 'total / lower', 'naive B', 'naive / total', 'exchange time'], rows),
    '',
    'Targets (the lower-bound target applies for 100 <= d <= n/100):',
    '',
    table(['target', 'measured', 'result'], targets)
  ].join('\n')
}
