/**
 * A fix whose write fails while its store is gone (a lost connection, a lost
 * acknowledgement) leaves its intent without an outcome: nothing can be read
 * to tell. The repairer settles it as soon as the store answers, before its
 * next write, without waiting for a restart.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Repairer, type RepairView } from '../../src/agent/repairer.ts'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { RowBudget } from '../../src/agent/resilience.ts'
import { parseConfig } from '../../src/config/load.ts'
import { silentLogger } from '../../src/observability/logger.ts'
import { ReviewQueue } from '../../src/review/review-queue.ts'
import type { ReplicaStore } from '../../src/stores/replica-store.ts'
import type { NarrowingResult } from '../../src/sync/narrowing.ts'
import { ORDERS_SCHEMA } from '../../cluster/orders.ts'
import { codec, entries, hex, key, openAudit, openStore, row, rowsOf, type AuditKit, type StoreKit } from '../audit/fixtures.ts'

interface Faults {
  /** The next write lands but reports failure, and the store stops answering. */
  lostAck: boolean
  /** The next write fails without landing, and the store stops answering. */
  refuse: boolean
  /** Reads fail. */
  readsFail: boolean
}

/** The store, with faults switched on and off by the test. */
function faulty (store: ReplicaStore): { store: ReplicaStore, faults: Faults } {
  const faults: Faults = { lostAck: false, refuse: false, readsFail: false }
  const wrapped = new Proxy(store, {
    get (target, prop, receiver) {
      if (prop === 'apply') {
        return async (...args: Parameters<ReplicaStore['apply']>) => {
          if (faults.refuse) { faults.readsFail = true; throw new Error('backend terminated') }
          const result = await target.apply(...args)
          if (faults.lostAck) { faults.readsFail = true; throw new Error('connection lost before the commit was acknowledged') }
          return result
        }
      }
      if (prop === 'get') {
        return async (...args: Parameters<ReplicaStore['get']>) => {
          if (faults.readsFail) throw new Error('store unreachable')
          return await target.get(...args)
        }
      }
      const value = Reflect.get(target, prop, receiver) as unknown
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
    }
  })
  return { store: wrapped, faults }
}

const diff = (upserts: Uint8Array[], deletes: Uint8Array[] = []): NarrowingResult => ({
  upserts, deletes, missing: 0, changed: upserts.length, extra: deletes.length, unresolved: 0, diverged: [], truncated: false
})

describe('fixes left in flight by a failed write', () => {
  let kit: AuditKit
  let s: StoreKit
  let repairer: Repairer
  let faults: Faults
  /** The view the repairer writes through now (the agreement on schemas may change it). */
  let current: RepairView
  beforeEach(async () => {
    kit = await openAudit()
    s = await openStore('level')
    const wrapped = faulty(s.store)
    faults = wrapped.faults
    current = { codec, store: wrapped.store }
    const config = parseConfig({
      cluster: 't', region: 'b', dataDir: kit.dir, peers: [{ region: 'a', address: '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN' }], datasets: [{ name: 'orders', schema: ORDERS_SCHEMA, store: { kind: 'level', path: kit.dir }, sourceOfTruth: ['a'] }]
    }).datasets[0]!
    const reviews = new ReviewQueue(kit.state)
    await reviews.open()
    let clock = {}
    repairer = new Repairer({
      config, view: () => current, budget: new RowBudget(0), state: kit.state, audit: kit.audit, reviews,
      region: 'b', clock: () => clock, setClock: async c => { clock = c }
    })
    await repairer.open()
  })
  afterEach(async () => {
    await s.cleanup()
    await kit.cleanup()
  })

  const ctx = { correlationId: 'cid', sourceRegion: 'a', totalRows: 10, log: silentLogger }

  it('are settled once the store answers: a write that landed is committed, and the next fix goes on', async () => {
    faults.lostAck = true
    await expect(repairer.handle(diff([row(1, 1)]), ctx)).rejects.toThrow(/commit was acknowledged/)
    faults.lostAck = false
    expect(repairer.leftoverCount).toBe(1)
    const [intent, ...others] = await entries(kit.audit)
    expect(intent).toMatchObject({ kind: 'intent' })
    expect(others).toEqual([])

    // still unreachable: the fix stays in flight, nothing is claimed
    await expect(repairer.settleLeftovers()).rejects.toThrow(/unreachable/)
    expect(repairer.leftoverCount).toBe(1)
    expect(await entries(kit.audit)).toHaveLength(1)

    faults.readsFail = false
    expect(await repairer.settleLeftovers()).toBe(1)
    expect(repairer.leftoverCount).toBe(0)
    const settled = (await entries(kit.audit))[1]
    expect(settled).toMatchObject({ kind: 'commit', fixId: intent!.fixId, reason: 'found applied when its store answered again' })
    expect(await rowsOf(s.store, [1])).toEqual([hex(row(1, 1))])
    expect(await kit.audit.verify()).toBe(2)
  })

  it('are settled before the dataset\'s next fix writes anything', async () => {
    faults.lostAck = true
    await expect(repairer.handle(diff([row(2, 1)]), ctx)).rejects.toThrow()
    faults.lostAck = false
    faults.readsFail = false
    // the same keys again, newer: the older fix is settled first, so its rows cannot land over these
    const outcome = await repairer.handle(diff([row(2, 2)], [key(3)]), ctx)
    expect(outcome.fixIds).toHaveLength(1)
    const kinds = (await entries(kit.audit)).map(e => `${e.kind}:${e.fixId === outcome.fixIds[0] ? 'new' : 'old'}`)
    expect(kinds).toEqual(['intent:old', 'commit:old', 'intent:new', 'commit:new'])
    expect(await rowsOf(s.store, [2, 3])).toEqual([hex(row(2, 2)), null])
    expect(repairer.leftoverCount).toBe(0)
  })

  it('are settled through the view they were written through, even once another one is current', async () => {
    faults.lostAck = true
    await expect(repairer.handle(diff([row(5, 1)]), ctx)).rejects.toThrow(/commit was acknowledged/)
    faults.lostAck = false
    faults.readsFail = false
    // the agreement on schemas changed meanwhile: rows of this view would not even decode under the one now current
    const wider = new RowCodec({ ...ORDERS_SCHEMA, columns: [...ORDERS_SCHEMA.columns, { name: 'local_tag', type: 'string', nullable: true }] })
    current = { codec: wider, store: s.store }
    expect(await repairer.settleLeftovers()).toBe(1)
    expect((await entries(kit.audit)).map(e => e.kind)).toEqual(['intent', 'commit'])
    expect(await rowsOf(s.store, [5])).toEqual([hex(row(5, 1))])
  })

  it('a write that did not land is aborted, so the next sync redoes it from fresh rows', async () => {
    faults.refuse = true
    await expect(repairer.handle(diff([row(4, 1)]), ctx)).rejects.toThrow(/terminated/)
    faults.refuse = false
    faults.readsFail = false
    expect(await repairer.settleLeftovers()).toBe(1)
    expect((await entries(kit.audit)).map(e => e.kind)).toEqual(['intent', 'abort'])
    expect(await rowsOf(s.store, [4])).toEqual([hex(row(4))])
  })
})
