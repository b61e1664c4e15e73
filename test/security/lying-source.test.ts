/**
 * A source of truth that lies, met by the client half of a sync: whatever it
 * sends that does not check out changes nothing. In memory (the frames are
 * the real ones, over a memory channel); the same lies between real agents
 * over TCP are in test/e2e/security-lying-source.test.ts.
 */
import { pack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { packValues } from '../../src/digest/row-codec.ts'
import { memoryChannelPair, type FrameChannel } from '../../src/sync/channel.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import { checkMessage, decodeFrame, roundSchema } from '../../src/sync/messages.ts'
import type { ReplicaView } from '../../src/sync/replica-view.ts'
import { runClientSync, serveSync } from '../../src/sync/session.ts'
import { decodeReconciledBlock, decodeReconcileBlock, encodeReconciledBlock } from '../../src/sync/wire.ts'
import { ordersCodec as codec, order } from '../helpers/datasets.ts'
import { forgingView, garbledView, rewritingChannel } from './liars.ts'

const SOT_ROWS = Array.from({ length: 3000 }, (_, i) => codec.encodeRow(order(i)))
const sotReplica = new MemoryReplica(codec, SOT_ROWS)

/** The local replica: 40 rows changed, 5 missing, 5 extra. */
function driftedLocal (): MemoryReplica {
  const rows = new Map(Array.from({ length: 3000 }, (_, i) => [i, order(i)]))
  for (let i = 0; i < 40; i++) rows.set(i * 71, order(i * 71, 1))
  for (let i = 0; i < 5; i++) rows.delete(2000 + i * 13)
  for (let i = 0; i < 5; i++) rows.set(5000 + i, order(5000 + i))
  return new MemoryReplica(codec, [...rows.values()].map(r => codec.encodeRow(r)))
}

interface Liar { view?: ReplicaView, channel?: (c: FrameChannel) => FrameChannel, region?: string }

async function syncAgainst (liar: Liar, local: ReplicaView, extra: { sourceRegion?: string, sourceCount?: number, maxReplyBytes?: number } = {}) {
  const [client, server] = memoryChannelPair()
  const served = serveSync(liar.channel?.(server) ?? server, { resolve: () => ({ region: liar.region ?? 'sot', codec, view: liar.view ?? sotReplica, clock: () => ({}) }) }).catch(() => undefined)
  try {
    return await runClientSync(client, { dataset: 'orders', region: 'local', codec, view: local, clock: {}, correlationId: 't', ...extra })
  } finally {
    await served
  }
}

const forgeStatus = (row: Uint8Array): Uint8Array => codec.encodeRow({ ...codec.decodeRow(row), status: 'forged' })

describe('a lying source of truth, at the client half of a sync', () => {
  it('an honest source yields the exact difference (the baseline the lies are measured against)', async () => {
    const { result } = await syncAgainst({}, driftedLocal(), { sourceRegion: 'sot', sourceCount: 3000 })
    expect({ missing: result.missing, changed: result.changed, extra: result.extra, unresolved: result.unresolved, inconsistent: result.inconsistent })
      .toEqual({ missing: 5, changed: 40, extra: 5, unresolved: 0, inconsistent: 0 })
  })

  it('forged rows whose sums agree with each other but not with the source\'s tree: nothing taken, all reported inconsistent', async () => {
    const { result } = await syncAgainst({ view: forgingView(sotReplica, codec, forgeStatus) }, driftedLocal())
    expect(result.upserts).toEqual([])
    expect(result.deletes).toEqual([])
    expect(result.inconsistent).toBeGreaterThan(0)
    expect(result.unresolved).toBe(result.inconsistent)
  })

  it('wrong entry hashes: nothing taken, reported unresolved', async () => {
    const { result } = await syncAgainst({ view: garbledView(sotReplica) }, driftedLocal())
    expect(result.upserts.length + result.deletes.length).toBe(0)
    expect(result.unresolved).toBeGreaterThan(0)
  })

  it('a forged region name in `opened` ends the exchange before any round', async () => {
    const err = await syncAgainst({ region: 'eu-west' }, driftedLocal(), { sourceRegion: 'sot' }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'CONVERGE_SOURCE_REGION_MISMATCH' })
  })

  it('an exchange that says "empty" while the source\'s own summary says 3000 rows deletes nothing', async () => {
    const empty = (m: Record<string, unknown>): Record<string, unknown> => (m.t === 'opened' ? { ...m, count: 0, sum: new Uint8Array(8), children: new Uint8Array(48) } : m)
    const { result } = await syncAgainst({ channel: c => rewritingChannel(c, empty) }, driftedLocal(), { sourceCount: 3000 })
    expect(result.deletes).toEqual([])
    expect(result.inconsistent).toBe(1)
    // a source that really emptied says so in its summary too: then the deletes go ahead
    const agreed = await syncAgainst({ view: new MemoryReplica(codec, []) }, driftedLocal(), { sourceCount: 0 })
    expect(agreed.result.deletes.length).toBe(3000)
  })

  it('an empty root with a non-zero sum is a protocol violation', async () => {
    const lie = (m: Record<string, unknown>): Record<string, unknown> => (m.t === 'opened' ? { ...m, count: 0 } : m)
    const err = await syncAgainst({ channel: c => rewritingChannel(c, lie) }, driftedLocal()).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'CONVERGE_PROTOCOL_VIOLATION' })
  })

  it('wrong row counts for settled nodes: nothing taken from them', async () => {
    // the liar reads each round to learn how many hashes each node carried, then adds one to every count it answers
    const lyingCounts = (c: FrameChannel): FrameChannel => {
      let sizes: number[] = []
      return {
        ...rewritingChannel(c, m => {
          if (m.t !== 'reply' || !(m.reconciled instanceof Uint8Array)) return m
          const nodes = decodeReconciledBlock(m.reconciled, sizes)
          return { ...m, reconciled: encodeReconciledBlock(nodes.map(n => ({ ...n, count: n.count + 1 }))) }
        }),
        receive: async (options) => {
          const frame = await c.receive(options)
          const message = decodeFrame(frame, 'frame') as { t?: string }
          if (message.t === 'round') {
            const round = checkMessage(roundSchema, message, 'round')
            sizes = round.reconcile.flatMap(([level, width, block]) => decodeReconcileBlock(block, 16 ** level, width, 1 << 21).map(n => n.hashes.length))
          }
          return frame
        }
      }
    }
    const { result } = await syncAgainst({ channel: lyingCounts }, driftedLocal())
    expect(result.upserts.length + result.deletes.length).toBe(0)
    expect(result.inconsistent).toBeGreaterThan(0)
  })

  it('child sums that do not add up to their parent: nothing taken under it', async () => {
    const flip = (m: Record<string, unknown>): Record<string, unknown> => {
      if (m.t !== 'opened' || !(m.children instanceof Uint8Array)) return m
      const children = m.children.slice()
      children[0]! ^= 0xff
      return { ...m, children }
    }
    const { result } = await syncAgainst({ channel: c => rewritingChannel(c, flip) }, driftedLocal())
    expect(result.upserts.length + result.deletes.length).toBe(0)
    expect(result.inconsistent).toBe(1)
  })

  it('wrong counts for whole nodes fetched into an empty replica: nothing taken', async () => {
    const lie = (m: Record<string, unknown>): Record<string, unknown> => (m.t === 'reply' && Array.isArray(m.nodes) ? { ...m, nodes: m.nodes.map(([n, s]: [number, Uint8Array]) => [n + 1, s]) } : m)
    const { result } = await syncAgainst({ channel: c => rewritingChannel(c, lie) }, new MemoryReplica(codec, []))
    expect(result.upserts).toEqual([])
    expect(result.unresolved).toBeGreaterThan(0)
  })

  it('rows that break the schema, even with sums that agree everywhere, end the exchange: a wrong type, a null key, a nested value, another encoding', async () => {
    const good = (id: number): unknown[] => codec.normalize(order(id))
    const bad: Array<[string, Uint8Array]> = [
      ['amount as a string', packValues(Object.assign(good(1), { 2: '12.5' }) as never)],
      ['a null key', (() => { const v = good(2); v[0] = null; return packValues(v as never) })()],
      ['a nested value', pack([...good(3).slice(0, 3), [[['deep']]], ...good(3).slice(4)])],
      ['a timestamp as text', packValues(Object.assign(good(4), { 4: '2026-01-01' }) as never)],
      // the same values, but the key encoded as a float64 where the codec writes an integer
      ['another encoding', new Uint8Array([0x95, ...pack(1.5).subarray(0, 1), ...new Uint8Array(new Float64Array([5]).buffer).reverse(), ...good(5).slice(1).flatMap(v => [...pack(v)])])]
    ]
    for (const [what, row] of bad) {
      // a source whose tree is built from the bad row itself: every sum agrees, only the row is wrong
      const liar = new MemoryReplica(codec, [...SOT_ROWS.slice(10), row])
      const local = new MemoryReplica(codec, SOT_ROWS.slice(10))
      const err = await syncAgainst({ view: liar }, local).catch((e: unknown) => e)
      expect(err, what).toMatchObject({ code: 'CONVERGE_INVALID_SOURCE_ROW' })
    }
  })

  it('replies that never stop coming are cut off at the round\'s byte ceiling', async () => {
    const [client, server] = memoryChannelPair()
    const flood = (async () => {
      await server.receive()
      await server.send(pack({ t: 'opened', v: 1, region: 'sot', fp: codec.fingerprint, clock: {}, depth: sotReplica.tree.depth, count: 1, sum: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 1]), children: new Uint8Array(48) }))
      await server.receive()
      const junk = pack({ t: 'reply', rows: [new Uint8Array(100_000)], more: true })
      for (let i = 0; i < 100; i++) await server.send(junk)
    })().catch(() => undefined)
    const err = await runClientSync(client, { dataset: 'orders', region: 'local', codec, view: new MemoryReplica(codec, []), clock: {}, correlationId: 't', maxReplyBytes: 1024 * 1024 }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'CONVERGE_REPLY_TOO_LARGE' })
    await flood
  })
})
