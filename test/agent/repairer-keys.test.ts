/**
 * The keys a difference carries (the narrowing's, from checking each row)
 * are what a fix reads its before-images by and what the policy planned
 * with; the audit records the same intent and commit as when every key was
 * decoded from its row, and none of the keys the plan carried.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Repairer } from '../../src/agent/repairer.ts'
import { RowBudget } from '../../src/agent/resilience.ts'
import { parseConfig } from '../../src/config/load.ts'
import { silentLogger } from '../../src/observability/logger.ts'
import { ReviewQueue } from '../../src/review/review-queue.ts'
import type { NarrowingResult } from '../../src/sync/narrowing.ts'
import { ORDERS_SCHEMA } from '../../cluster/orders.ts'
import { codec, entries, hex, key, openAudit, openStore, row, rowsOf, type AuditKit, type StoreKit } from '../audit/fixtures.ts'

describe('keys carried from the narrowing to the fix', () => {
  let kit: AuditKit
  let s: StoreKit
  let repairer: Repairer
  beforeEach(async () => {
    kit = await openAudit()
    s = await openStore('level')
    const config = parseConfig({
      cluster: 't', region: 'b', dataDir: kit.dir, peers: [{ region: 'a', address: '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN' }], datasets: [{ name: 'orders', schema: ORDERS_SCHEMA, store: { kind: 'level', path: kit.dir }, sourceOfTruth: ['a'] }]
    }).datasets[0]!
    const reviews = new ReviewQueue(kit.state)
    await reviews.open()
    let clock = {}
    repairer = new Repairer({ config, view: () => ({ codec, store: s.store }), budget: new RowBudget(0), state: kit.state, audit: kit.audit, reviews, region: 'b', clock: () => clock, setClock: async c => { clock = c } })
    await repairer.open()
  })
  afterEach(async () => {
    await s.cleanup()
    await kit.cleanup()
  })

  const ctx = { correlationId: 'cid', sourceRegion: 'a', totalRows: 10, log: silentLogger }

  for (const carried of [true, false]) {
    it(`reads the before-images by the rows' keys, and records only what it always did (${carried ? 'keys carried' : 'keys decoded'})`, async () => {
      // a change, a row missing here (12) and a row the source lacks (3)
      const upserts = [row(5, 1), row(12)]
      const diff: NarrowingResult = {
        upserts, deletes: [key(3)], missing: 1, changed: 1, extra: 1, unresolved: 0, diverged: [], truncated: false,
        ...(carried ? { upsertKeys: upserts.map(r => codec.keyOfEncodedRow(r)) } : {})
      }
      const outcome = await repairer.handle(diff, ctx)
      expect(outcome.decision.action).toBe('apply')
      const [intent, commit] = await entries(kit.audit)
      // upserts in key order, then deletes; before-images per key as the store held them
      expect(intent!.upserts!.map(hex)).toEqual([...upserts].sort((a, b) => Buffer.compare(codec.keyOfEncodedRow(a), codec.keyOfEncodedRow(b))).map(hex))
      const keys = [...intent!.upserts!.map(r => codec.keyOfEncodedRow(r)), ...intent!.deletes!]
      const heldBefore = new Map([[hex(key(5)), hex(row(5))], [hex(key(3)), hex(row(3))]])
      expect(intent!.before!.map(b => (b === null ? null : hex(b)))).toEqual(keys.map(k => heldBefore.get(hex(k)) ?? null))
      expect(commit!.before!.map(b => (b === null ? null : hex(b)))).toEqual(keys.map(k => heldBefore.get(hex(k)) ?? null))
      for (const e of [intent!, commit!]) expect(Object.keys(e)).not.toContain('upsertKeys')
      expect(await rowsOf(s.store, [3, 5, 12])).toEqual([null, hex(row(5, 1)), hex(row(12))])
      expect(await kit.audit.verify()).toBe(2)
    })
  }

  it("passes the versions of the rows the index took in to the store with the fix, each with its key's row, and records none", async () => {
    // the difference as asking by key gives it: this side's rows and their versions, in the order asked (not key order)
    const upserts = [row(12), row(5, 1)]
    const diff: NarrowingResult = {
      upserts, upsertKeys: upserts.map(r => codec.keyOfEncodedRow(r)), deletes: [key(3)], missing: 1, changed: 1, extra: 1, unresolved: 0, diverged: [], truncated: false,
      local: [null, row(5), row(3)], localVersions: [undefined, '705', '703']
    }
    const requests: Array<Parameters<typeof s.store.apply>[0]> = []
    const apply = s.store.apply.bind(s.store)
    s.store.apply = async (request, options) => { requests.push(request); return await apply(request, options) }
    const outcome = await repairer.handle(diff, ctx)
    expect(outcome.decision.action).toBe('apply')
    const [request] = requests
    const keys = [...request!.upserts.map(r => codec.keyOfEncodedRow(r)), ...request!.deletes]
    const byKey = new Map([[hex(key(12)), { row: null }], [hex(key(5)), { row: hex(row(5)), version: '705' }], [hex(key(3)), { row: hex(row(3)), version: '703' }]])
    expect(request!.expected!.map(e => ({ row: e.row === null ? null : hex(e.row), ...(e.version === undefined ? {} : { version: e.version }) }))).toEqual(keys.map(k => byKey.get(hex(k))))
    for (const e of await entries(kit.audit)) expect(JSON.stringify(Object.keys(e))).not.toMatch(/ersion/)
    expect(await rowsOf(s.store, [3, 5, 12])).toEqual([null, hex(row(5, 1)), hex(row(12))])
  })

  it('passes no versions when a row the index took in has none: the store reads the rows', async () => {
    const upserts = [row(5, 1)]
    const diff: NarrowingResult = {
      upserts, upsertKeys: upserts.map(r => codec.keyOfEncodedRow(r)), deletes: [key(3)], missing: 0, changed: 1, extra: 1, unresolved: 0, diverged: [], truncated: false,
      local: [row(5), row(3)], localVersions: ['705', undefined]
    }
    const requests: Array<Parameters<typeof s.store.apply>[0]> = []
    const apply = s.store.apply.bind(s.store)
    s.store.apply = async (request, options) => { requests.push(request); return await apply(request, options) }
    await repairer.handle(diff, ctx)
    expect(requests).toHaveLength(1)
    expect(requests[0]!.expected).toBeUndefined()
  })
})
