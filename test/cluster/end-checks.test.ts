/**
 * The end checks of a scenario run, each shown to fail when what it guards
 * is broken: stores that differ, a fix committed twice or never settled, a
 * load row gone missing. (The scenario tests show them passing on real runs.)
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { reviewAudit } from '../../cluster/audit-review.ts'
import { DatasetModel } from '../../cluster/dataset-model.ts'
import { DriftInjector, DriftLedger } from '../../cluster/drift.ts'
import { measure, percentiles } from '../../cluster/latency.ts'
import { LiveLoad } from '../../cluster/live-load.ts'
import { COUNTER_NAMES, type DatasetCounters, type Sample } from '../../cluster/observer.ts'
import { converged, raiseToHeads, roundsOf, type Landing } from '../../cluster/convergence.ts'
import { compareStores, fingerprint } from '../../cluster/store-compare.ts'
import { AuditLog } from '../../src/audit/audit-log.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { tempDir } from '../helpers/agents.ts'

const model = new DatasetModel('orders', 2000)
const zeroCounters = (): DatasetCounters => Object.fromEntries(COUNTER_NAMES.map(n => [n, 0])) as unknown as DatasetCounters

describe('end checks', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const open: Array<{ close: () => Promise<void> }> = []
  beforeEach(async () => { dir = await tempDir() })
  afterEach(async () => { for (const o of open.splice(0)) await o.close(); await dir.remove() })

  async function seeded (name: string, m = model): Promise<LevelStore> {
    const store = new LevelStore({ path: join(dir.path, name), codec: m.codec })
    await store.open()
    open.push(store)
    const upserts = []
    for (let id = 0; id < m.rows; id++) upserts.push(m.encodeRow(id))
    await store.apply({ upserts, deletes: [], origin: 'seed' })
    return store
  }

  it('compares two stores row for row and names the rows that differ', async () => {
    const a = await seeded('a')
    const b = await seeded('b')
    const print = async (s: LevelStore): Promise<BigUint64Array> => await fingerprint(s)
    expect(await compareStores({ store: a, print: await print(a) }, { store: b, print: await print(b) }, model)).toBeUndefined()
    // one row changed in one column, one deleted, one added
    await b.apply({ upserts: [model.encodeRow(7, 3), model.encodeRow(5000)], deletes: [model.encodeKey(11)] })
    const diff = await compareStores({ store: a, print: await print(a) }, { store: b, print: await print(b) }, model)
    expect(diff).toMatchObject({ onlyInSource: 2, onlyInReplica: 2 })
    expect(diff!.examples.map(e => `${e.side}:${e.orderId}`).sort()).toEqual(['replica:5000', 'replica:7', 'source:11', 'source:7'])
  })

  it('finds a fix committed twice and an intent never settled, and a broken chain', async () => {
    const dataDir = join(dir.path, 'agent')
    await mkdir(dataDir, { recursive: true })
    const state = new StateDb(join(dataDir, 'state'))
    await state.open()
    const audit = new AuditLog(state)
    await audit.open()
    const fix = (fixId: string, kind: 'intent' | 'commit' | 'abort'): Parameters<AuditLog['append']>[0] => ({
      kind, fixId, correlationId: `cid-${fixId}`, dataset: 'orders', region: 'r', clock: { r: 1 }, sourceRegion: 's',
      upserts: [model.encodeRow(1, 2)], deletes: [model.encodeKey(3)]
    })
    for (const e of [fix('ok', 'intent'), fix('ok', 'commit'), fix('aborted', 'intent'), fix('aborted', 'abort'), fix('twice', 'intent'), fix('twice', 'commit'), fix('twice', 'commit'), fix('lost', 'intent')]) await audit.append(e)
    await state.close()

    const review = await reviewAudit(dataDir, new Map([['orders', model.codec]]))
    expect(review).toMatchObject({ entries: 8, chainIntact: true, intents: 4, commits: 3, aborts: 1, appliedTwice: ['twice'], unsettled: ['lost'] })
    const ok = review.fixes.find(f => f.fixId === 'ok')!
    expect(ok).toMatchObject({ correlationId: 'cid-ok', upserted: 1, deleted: 1 })
    expect(ok.keys).toEqual([Buffer.from(model.encodeKey(1)).toString('hex'), Buffer.from(model.encodeKey(3)).toString('hex')])

    // an entry edited behind the log's back breaks the chain
    const raw = new StateDb(join(dataDir, 'state'))
    await raw.open()
    const entries = raw.sublevel('audit')
    const keys = await entries.keys().all()
    if (keys.length > 0) await entries.put(keys[0]!, new Uint8Array([1, 2, 3]))
    await raw.close()
    const tampered = await reviewAudit(dataDir, new Map([['orders', model.codec]]))
    expect(tampered.chainIntact).toBe(false)
    expect(tampered.chainProblem).toMatch(/^entry 1: /)
  })

  it('the live load keeps a ledger that finds a lost or stale row', async () => {
    const store = await seeded('sot')
    const load = new LiveLoad({ model, rowsPerSecond: 2000, mix: { update: 0.5, insert: 0.3, delete: 0.2 }, seed: 3 })
    await load.run(store, AbortSignal.timeout(600))
    expect(load.stats.rowsWritten).toBeGreaterThan(500)
    expect(load.stats.inserted + load.stats.updated + load.stats.deleted).toBe(load.stats.rowsWritten)
    expect(await load.lostRows(store)).toEqual([])
    const [updated] = [...load.ledger].find(([, rev]) => rev !== null && rev > 0)!
    const [deleted] = [...load.ledger].find(([, rev]) => rev === null)!
    await store.apply({ upserts: [model.encodeRow(updated, 1), model.encodeRow(deleted)], deletes: [] })
    expect((await load.lostRows(store)).sort()).toEqual([updated, deleted].sort())
  })

  it('drift lands in the store as recorded, and whole partitions can be lost', async () => {
    const store = await seeded('replica')
    const ledger = new DriftLedger()
    const inj = new DriftInjector(model, 'r', 1, { mix: { update: 1, insert: 1, delete: 1 }, hotKeys: { keys: 3, share: 1 } }, 9, ledger)
    const counts = await inj.batch(store, 30)
    expect(counts.updated + counts.inserted + counts.deleted).toBe(30)
    expect(ledger.counts('r')).toEqual(counts)
    expect(await store.countRows()).toBe(model.rows + counts.inserted - counts.deleted)
    // every pick hot (and batches no larger than the hot set): updates fall on the same 3 keys again and again
    const hot = new DriftInjector(model, 'h', 2, { mix: { update: 1, insert: 0, delete: 0 }, hotKeys: { keys: 3, share: 1 } }, 5, ledger)
    for (let i = 0; i < 10; i++) await hot.batch(store, 2)
    expect(new Set(ledger.injections.filter(i => i.region === 'h').map(i => i.key)).size).toBe(3)

    const partitioned = new DatasetModel('orders', 1600, 8)
    const ps = await seeded('partitioned', partitioned)
    const lost = await new DriftInjector(partitioned, 'r', 1, { mix: { update: 1, insert: 0, delete: 0 } }, 1, ledger).losePartitions(ps, 2)
    expect(lost).toHaveLength(2)
    expect(await ps.countRows()).toBe(1600 - 400)
  })

  it('measures detect and remediate row by row, from when the drift could be seen', () => {
    const key = (id: number): string => Buffer.from(model.encodeKey(id)).toString('hex')
    const t0 = 10_000
    const result = measure({
      injections: [
        { region: 'r', dataset: 'orders', key: key(1), at: 9000, op: 'update' }, // before the agents were ready: counts from ready
        { region: 'r', dataset: 'orders', key: key(2), at: 12_000, op: 'delete' },
        { region: 'r', dataset: 'orders', key: key(3), at: 12_000, op: 'update' } // never fixed
      ],
      fixes: new Map([['r', [
        { fixId: 'f1', correlationId: 'c1', dataset: 'orders', intentAt: 10_600, commitAt: 10_700, upserted: 1, deleted: 0, keys: [key(1)] },
        { fixId: 'f2', correlationId: 'c2', dataset: 'orders', intentAt: 12_500, commitAt: 12_900, upserted: 0, deleted: 1, keys: [key(2)] }
      ]]]),
      foundAt: new Map([['r', new Map([['c2', 12_300]])]]),
      readyAt: new Map([['r', 10_000], ['s', 9500]]),
      sourceOf: () => 's',
      skewAt: () => 0,
      t0,
      seriesFrom: 9000
    }).get('r')!
    expect(result.detect).toEqual({ n: 2, p50: 300, p95: 600, max: 600 })
    expect(result.remediate).toEqual({ n: 2, p50: 700, p95: 900, max: 900 })
    expect(result.unmatched).toBe(1)
    expect(result.outstanding).toEqual([[-1000, 1], [700, 0], [2000, 2], [2900, 1]])
    expect(percentiles([5, 1, 3, 2, 4])).toEqual({ n: 5, p50: 3, p95: 5, max: 5 })
    expect(percentiles([])).toBeUndefined()
  })
})

describe('convergence as the runner sees it', () => {
  const sample = (replica: { sum: string, indexSeq?: number }): Sample => ({
    at: 0,
    regions: {
      a: { up: true, connected: ['b'], datasets: { orders: { state: 'source', source: 'a', count: 10, sum: 'ff', counters: zeroCounters() } } },
      b: { up: true, connected: ['a'], datasets: { orders: { state: 'in-sync', source: 'a', count: 10, sum: replica.sum, ...(replica.indexSeq === undefined ? {} : { indexSeq: replica.indexSeq }), counters: zeroCounters() } } }
    }
  })

  it('level roots count only once the replica\'s index has taken in the drift written to it', () => {
    const written = new Map([['b/orders', 41]])
    expect(converged(sample({ sum: 'ff', indexSeq: 40 }), 'a', ['orders'], written)).toBe(false) // the drift is not seen yet: roots from before it
    expect(converged(sample({ sum: 'ff' }), 'a', ['orders'], written)).toBe(false)
    expect(converged(sample({ sum: 'ff', indexSeq: 41 }), 'a', ['orders'], written)).toBe(true)
    expect(converged(sample({ sum: 'ee', indexSeq: 50 }), 'a', ['orders'], written)).toBe(false)
    expect(converged(sample({ sum: 'ff' }), 'a', ['orders'])).toBe(true) // no drift during the run: the roots say it all
  })

  it('waits for each written store\'s own head, which counts a write whose acknowledgement was lost, and reads a store that is down again later', async () => {
    const dir = await tempDir()
    const store = new LevelStore({ path: join(dir.path, 'b'), codec: model.codec })
    try {
      await store.open()
      const { seq: acknowledged } = await store.apply({ upserts: [model.encodeRow(3)], deletes: [], origin: 'load' })
      // committed, though its writer never heard so (the store crashed as it answered): past the last seq acknowledged
      await store.apply({ upserts: [model.encodeRow(4)], deletes: [], origin: 'load' })
      const head = await store.lastSeq()
      expect(head).toBeGreaterThan(acknowledged)
      const written = new Map([['b/orders', acknowledged]])
      let down = true
      const headOf = async (place: string): Promise<number> => {
        if (place === 'c/orders' && down) throw new Error('connect ECONNREFUSED 127.0.0.1:5432')
        return place === 'b/orders' ? await store.lastSeq() : 7
      }
      expect(await raiseToHeads(written, ['b/orders', 'c/orders'], headOf)).toEqual(['c/orders'])
      expect(written.get('b/orders')).toBe(head)
      // level roots over an index that took in only the acknowledged write are not the store's level
      expect(converged(sample({ sum: 'ff', indexSeq: acknowledged }), 'a', ['orders'], written)).toBe(false)
      expect(converged(sample({ sum: 'ff', indexSeq: head }), 'a', ['orders'], written)).toBe(true)
      down = false
      expect(await raiseToHeads(written, ['c/orders'], headOf)).toEqual([])
      expect(written.get('c/orders')).toBe(7)
      // a head never lowers what was already known
      expect(await raiseToHeads(written, ['b/orders'], async () => 1)).toEqual([])
      expect(written.get('b/orders')).toBe(head)
    } finally {
      await store.close()
      await dir.remove()
    }
  })

  it('times each drift batch from its last commit to the first of two level samples that have taken it in, before the next batch', () => {
    const at = (ms: number, replica: { sum: string, indexSeq?: number }): Sample => ({ ...sample(replica), at: 10_000 + ms })
    const landings: Landing[] = [
      { atMs: 0, region: 'b', dataset: 'orders', startedAt: 10_000, landedAt: 10_300, seq: 5 },
      { atMs: 2000, region: 'b', dataset: 'orders', startedAt: 12_000, landedAt: 12_200, seq: 9 },
      { atMs: 4000, region: 'b', dataset: 'orders', startedAt: 14_000, landedAt: 14_100, seq: 12 }
    ]
    const samples = [
      at(200, { sum: 'ff', indexSeq: 1 }), // before the first batch landed: level, but not its doing
      at(400, { sum: 'ee', indexSeq: 5 }),
      at(500, { sum: 'ff', indexSeq: 5 }), // a single level sample is not enough
      at(600, { sum: 'ee', indexSeq: 5 }),
      at(700, { sum: 'ff', indexSeq: 5 }),
      at(800, { sum: 'ff', indexSeq: 5 }), // level from 700 on: 400 ms after the landing at 300
      at(2300, { sum: 'ff', indexSeq: 8 }), // level roots from before the second batch reached the index
      at(2400, { sum: 'ff', indexSeq: 8 }),
      at(2500, { sum: 'ff', indexSeq: 9 }),
      at(2600, { sum: 'ff', indexSeq: 9 }), // 300 ms after the landing at 2200
      at(4200, { sum: 'ee', indexSeq: 12 }),
      at(4300, { sum: 'ff', indexSeq: 12 }) // never a second level sample: not level
    ]
    expect(roundsOf(landings, samples, 'a', ['orders'], 10_000)).toEqual([
      { atMs: 0, landedAtMs: 300, convergenceMs: 400 },
      { atMs: 2000, landedAtMs: 2200, convergenceMs: 300 },
      { atMs: 4000, landedAtMs: 4100, convergenceMs: null }
    ])
    // a batch still not level when the next began writing has no time of its own
    expect(roundsOf(landings.slice(0, 2), samples.slice(0, 4).concat(at(2500, { sum: 'ff', indexSeq: 9 }), at(2600, { sum: 'ff', indexSeq: 9 })), 'a', ['orders'], 10_000))
      .toEqual([{ atMs: 0, landedAtMs: 300, convergenceMs: null }, { atMs: 2000, landedAtMs: 2200, convergenceMs: 300 }])
  })

  it('times a round to the moment the last replica says it became level, when that falls between the polls around it; else to the poll', () => {
    // replica b's state as polled, with when its agent says it entered it
    const at = (ms: number, replica: { sum: string, indexSeq: number, state?: string, since?: number }): Sample => {
      const s = { ...sample(replica), at: 10_000 + ms }
      const b = s.regions.b!
      return { ...s, regions: { ...s.regions, b: { ...b, datasets: { orders: { ...b.datasets.orders!, state: replica.state ?? 'in-sync', ...(replica.since === undefined ? {} : { stateSince: 10_000 + replica.since }) } } } } }
    }
    const landings: Landing[] = [{ atMs: 0, region: 'b', dataset: 'orders', startedAt: 10_000, landedAt: 10_300, seq: 5 }]
    const round = (since: number | undefined): Array<number | null> => roundsOf(landings, [
      at(250, { sum: 'ff', indexSeq: 1, since: 0 }),
      at(400, { sum: 'ee', indexSeq: 5, state: 'syncing', since: 350 }),
      at(500, { sum: 'ff', indexSeq: 5, since }), // level from here, by the poll
      at(600, { sum: 'ff', indexSeq: 5, since })
    ], 'a', ['orders'], 10_000).map(r => r.convergenceMs)
    expect(round(460)).toEqual([160]) // became level at 460, between the polls at 400 and 500
    expect(round(undefined)).toEqual([200]) // an agent that does not say: the poll's time
    expect(round(380)).toEqual([200]) // before the poll that still saw it syncing: a clock that is off, the poll's time
    expect(round(290)).toEqual([200]) // before the drift landed, likewise
    expect(round(650)).toEqual([200]) // after the next poll, likewise
    expect(round(520)).toEqual([220]) // between the poll's start and its answer
  })

  it('gives each timed round the CPU spent from the last sample before its commit to its converged sample, per region', () => {
    // CPU so far per sample: the agents' and b's PostgreSQL backends' (a has none: another store)
    const at = (ms: number, replica: { sum: string, indexSeq?: number }, cpu: { a: number, b: number, bPg: number }): Sample => {
      const s = { ...sample(replica), at: 10_000 + ms }
      return { ...s, regions: { a: { ...s.regions.a!, cpuMs: cpu.a }, b: { ...s.regions.b!, cpuMs: cpu.b, postgresCpuMs: cpu.bPg } } }
    }
    const landings: Landing[] = [{ atMs: 0, region: 'b', dataset: 'orders', startedAt: 10_000, landedAt: 10_300, seq: 5 }]
    const samples = [
      at(100, { sum: 'ff', indexSeq: 1 }, { a: 50, b: 100, bPg: 10 }),
      at(250, { sum: 'ff', indexSeq: 1 }, { a: 60, b: 120, bPg: 30 }), // the last before the commit at 300
      at(400, { sum: 'ee', indexSeq: 5 }, { a: 90, b: 300, bPg: 90 }),
      at(500, { sum: 'ff', indexSeq: 5 }, { a: 100, b: 420, bPg: 130 }), // converged from here
      at(600, { sum: 'ff', indexSeq: 5 }, { a: 500, b: 900, bPg: 500 })
    ]
    expect(roundsOf(landings, samples, 'a', ['orders'], 10_000)).toEqual([
      { atMs: 0, landedAtMs: 300, convergenceMs: 200, cpu: { a: { agentMs: 40 }, b: { agentMs: 300, postgresMs: 100 } } }
    ])
    // samples without CPU (no /proc): no figures rather than zeros
    const bare = samples.map(s => ({ ...s, regions: Object.fromEntries(Object.entries(s.regions).map(([r, x]) => [r, { ...x, cpuMs: undefined, postgresCpuMs: undefined }])) }))
    expect(roundsOf(landings, bare, 'a', ['orders'], 10_000)).toEqual([{ atMs: 0, landedAtMs: 300, convergenceMs: 200 }])
  })
})
