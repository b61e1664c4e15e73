import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { applyFixOnce } from '../../src/audit/apply-fix.ts'
import { recoverPendingFixes } from '../../src/audit/recovery.ts'
import { rollbackFix, type RollbackInit } from '../../src/audit/rollback.ts'
import type { VectorClock } from '../../src/audit/vector-clock.ts'
import { codec, crashAfterIntent, entries, hex, key, openAudit, openStore, plan, row, rowsOf, type AuditKit, type StoreKind, type StoreKit } from './fixtures.ts'
import { order } from '../helpers/datasets.ts'
import { sql } from '../helpers/postgres.ts'

describe.each<StoreKind>(['level', 'postgres'])('rolling back a fix, against a real %s store', kind => {
  let kit: AuditKit
  let s: StoreKit
  let clock: VectorClock
  beforeEach(async () => {
    kit = await openAudit()
    s = await openStore(kind)
    clock = { b: 10 }
  })
  afterEach(async () => {
    await s.cleanup()
    await kit.cleanup()
  })

  const rollback = async (fixId: string, over: Partial<RollbackInit> = {}) => await rollbackFix({
    audit: kit.audit, store: s.store, codec, region: 'b', clock: () => clock, setClock: async c => { clock = c }, fixId, by: 'alice', reason: 'wrong snapshot', ...over
  })
  const original = (): Array<string | null> => [hex(row(1)), hex(row(2)), null]
  const fixed = (): Array<string | null> => [hex(row(1, 1)), null, hex(row(11))]

  it('applies a fix once: intent with the rows read before, then commit; a second apply changes and appends nothing', async () => {
    const fix = plan()
    const first = await applyFixOnce({ audit: kit.audit, store: s.store, fix })
    expect(first.applied).toBe(true)
    expect(first.intent).toMatchObject({ kind: 'intent', fixId: fix.fixId, by: 'converge' })
    expect(first.intent.before!.map(b => (b === null ? null : hex(b)))).toEqual([hex(row(1)), null, hex(row(2))])
    expect(first.commit).toMatchObject({ kind: 'commit', fixId: fix.fixId })
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual(fixed())

    const length = kit.audit.length
    const storeSeq = await s.store.lastSeq()
    const again = await applyFixOnce({ audit: kit.audit, store: s.store, fix })
    expect(again).toMatchObject({ applied: false, commit: { seq: first.commit.seq }, intent: { seq: first.intent.seq } })
    expect(kit.audit.length).toBe(length)
    expect(await s.store.lastSeq()).toBe(storeSeq)
  })

  it('writes the intent to disk (a synced LevelDB write) before the store commits the fix; the commit need not be', async () => {
    // the real LevelDB and store, their calls noted in order
    const order: string[] = []
    const realBatch = kit.state.db.batch.bind(kit.state.db) as (ops: unknown, options?: { sync?: boolean }) => Promise<void>
    const realApply = s.store.apply.bind(s.store)
    const batch = vi.spyOn(kit.state.db, 'batch').mockImplementation((async (ops: unknown, options?: { sync?: boolean }) => {
      order.push(`audit sync=${String(options?.sync)}`)
      await realBatch(ops, options)
    }) as never)
    const apply = vi.spyOn(s.store, 'apply').mockImplementation(async (request, options) => { order.push('store apply'); return await realApply(request, options) })
    try {
      await applyFixOnce({ audit: kit.audit, store: s.store, fix: plan() })
    } finally {
      batch.mockRestore()
      apply.mockRestore()
    }
    expect(order).toEqual(['audit sync=true', 'store apply', 'audit sync=false'])
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual(fixed())
  })

  it('records the before-images it is handed in the intent without reading them, and the rows the store replaced in the commit', async () => {
    // handed before-images that are already out of date: the commit still says what the write replaced
    const handed = [row(1, 5), null, row(2, 5)]
    const fix = plan({ before: handed })
    const read = vi.spyOn(s.store, 'get')
    const first = await applyFixOnce({ audit: kit.audit, store: s.store, fix })
    expect(read).not.toHaveBeenCalled()
    read.mockRestore()
    expect(first.intent.before!.map(b => (b === null ? null : hex(b)))).toEqual(handed.map(b => (b === null ? null : hex(b))))
    expect(first.commit.before!.map(b => (b === null ? null : hex(b)))).toEqual([hex(row(1)), null, hex(row(2))])
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual(fixed())
    await expect(applyFixOnce({ audit: kit.audit, store: s.store, fix: plan({ before: [null] }) })).rejects.toThrow(/3 rows came with 1 before-images/)
  })

  it('applies one fix id once even when asked twice at the same time', async () => {
    const fix = plan()
    const both = await Promise.all([applyFixOnce({ audit: kit.audit, store: s.store, fix }), applyFixOnce({ audit: kit.audit, store: s.store, fix })])
    expect(both.map(r => r.applied).sort()).toEqual([false, true])
    expect((await entries(kit.audit)).map(e => e.kind)).toEqual(['intent', 'commit'])
  })

  it('restores the before-images as a new audited fix and reports the keys it wrote', async () => {
    const fix = plan()
    await applyFixOnce({ audit: kit.audit, store: s.store, fix })
    const report = await rollback(fix.fixId)

    expect(await rowsOf(s.store, [1, 2, 11])).toEqual(original())
    expect(report).toMatchObject({ rollbackOf: fix.fixId, dataset: 'orders', upserts: 2, deletes: 1, rows: 3, overwritten: 0, storedOtherwise: 0 })
    expect(report.keys.sort()).toEqual([hex(key(1)), hex(key(2)), hex(key(11))].sort())
    const done = await kit.audit.fixOf(report.fixId)
    expect(done?.intent).toMatchObject({ rule: 'rollback', rollbackOf: fix.fixId, by: 'alice', reason: 'wrong snapshot', region: 'b', correlationId: report.correlationId })
    expect(done?.commit).toMatchObject({ rule: 'rollback', rollbackOf: fix.fixId, storeSeq: report.storeSeq })
    // the rollback's own intent records the fix's after-images as the rows it replaces
    expect(new Set(done!.intent.before!.map(b => (b === null ? null : hex(b))))).toEqual(new Set(fixed()))
    expect(clock).toEqual({ b: 11 })
    expect((await kit.audit.rolledBackBy(fix.fixId))?.fixId).toBe(report.fixId)
    expect(await kit.audit.verify()).toBe(4)
  })

  it('refuses when rows changed since the fix, naming how many and which, and writes nothing', async () => {
    const fix = plan()
    await applyFixOnce({ audit: kit.audit, store: s.store, fix })
    await s.writeBehind([row(1, 9)], [])
    const length = kit.audit.length

    const err = await rollback(fix.fixId).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'CONVERGE_ROLLBACK_CONFLICT', changed: 1, keys: [hex(key(1))] })
    expect((err as Error).message).toContain(`1 of its 3 rows changed since it was applied (keys ${hex(key(1))})`)
    expect(kit.audit.length).toBe(length)
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual([hex(row(1, 9)), null, hex(row(11))])
  })

  it('overwrites rows changed since the fix when forced', async () => {
    const fix = plan()
    await applyFixOnce({ audit: kit.audit, store: s.store, fix })
    await s.writeBehind([row(1, 9)], [key(11)])
    const report = await rollback(fix.fixId, { force: true })
    expect(report.overwritten).toBe(2)
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual(original())
  })

  it('refuses an unknown fix, and a fix that never committed', async () => {
    await expect(rollback('no-such-fix')).rejects.toMatchObject({ code: 'CONVERGE_FIX_NOT_FOUND', message: 'no fix no-such-fix in the audit log' })

    const pending = plan()
    await crashAfterIntent(kit.audit, s.store, pending)
    await expect(rollback(pending.fixId)).rejects.toMatchObject({ code: 'CONVERGE_FIX_NOT_COMMITTED', message: expect.stringContaining('still in flight') })

    const aborted = plan()
    await crashAfterIntent(kit.audit, s.store, aborted)
    await kit.audit.append({ ...aborted, upserts: undefined, deletes: undefined, kind: 'abort', reason: 'found not applied at restart' })
    await expect(rollback(aborted.fixId)).rejects.toMatchObject({ code: 'CONVERGE_FIX_NOT_COMMITTED', message: expect.stringContaining('aborted: found not applied at restart') })
  })

  it('refuses a fix of another dataset than the one named', async () => {
    const fix = plan()
    await applyFixOnce({ audit: kit.audit, store: s.store, fix })
    await expect(rollback(fix.fixId, { dataset: 'payments' })).rejects.toMatchObject({ code: 'CONVERGE_FIX_DATASET_MISMATCH' })
  })

  it('refuses a second rollback of one fix (also two at once); a rollback can itself be rolled back', async () => {
    const fix = plan()
    await applyFixOnce({ audit: kit.audit, store: s.store, fix })
    const results = await Promise.allSettled([rollback(fix.fixId), rollback(fix.fixId)])
    expect(results.map(r => r.status).sort()).toEqual(['fulfilled', 'rejected'])
    const first = (results.find(r => r.status === 'fulfilled') as PromiseFulfilledResult<Awaited<ReturnType<typeof rollback>>>).value
    const refused = (results.find(r => r.status === 'rejected') as PromiseRejectedResult).reason as Error
    expect(refused).toMatchObject({ code: 'CONVERGE_FIX_ALREADY_ROLLED_BACK', rollbackFixId: first.fixId })
    expect(refused.message).toBe(`fix ${fix.fixId} was already rolled back by fix ${first.fixId}; to apply it again, roll back ${first.fixId}`)
    // forcing does not help: force is about rows written since, not about rolling back twice
    await expect(rollback(fix.fixId, { force: true })).rejects.toMatchObject({ code: 'CONVERGE_FIX_ALREADY_ROLLED_BACK' })

    const redo = await rollback(first.fixId)
    expect(redo.rollbackOf).toBe(first.fixId)
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual(fixed())
    await expect(rollback(fix.fixId)).rejects.toMatchObject({ code: 'CONVERGE_FIX_ALREADY_ROLLED_BACK' })
    expect(await kit.audit.verify()).toBe(6)
  })

  it('rolls back a fix committed by recovery after a crash', async () => {
    const fix = plan()
    await crashAfterIntent(kit.audit, s.store, fix)
    await s.store.apply({ upserts: fix.upserts, deletes: fix.deletes, origin: 'converge' })
    await recoverPendingFixes({ audit: await kit.reopen(), stores: new Map([['orders', { store: s.store, codec }]]), region: 'b', clock: () => clock })
    await rollback(fix.fixId)
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual(original())
  })

  it('refuses a fix that recorded no before-images', async () => {
    const fix = plan()
    await crashAfterIntent(kit.audit, s.store, fix, { withBefore: false })
    await s.store.apply({ upserts: fix.upserts, deletes: fix.deletes })
    await kit.audit.append({ ...fix, upserts: undefined, deletes: undefined, kind: 'commit' })
    await expect(rollback(fix.fixId)).rejects.toMatchObject({ code: 'CONVERGE_ROLLBACK_UNAVAILABLE' })
  })
})

describe('a fix whose store write fails', () => {
  let kit: AuditKit
  let s: StoreKit
  beforeEach(async () => { kit = await openAudit(); s = await openStore('level') })
  afterEach(async () => { await s.cleanup(); await kit.cleanup() })

  /** The store fails its next apply: before writing, or after (an acknowledgement lost). */
  const failingOnce = (when: 'before' | 'after'): StoreKit['store'] => {
    let failed = false
    return new Proxy(s.store, {
      get: (target, prop, receiver) => prop !== 'apply'
        ? Reflect.get(target, prop, receiver)
        : async (...args: Parameters<StoreKit['store']['apply']>) => {
          if (failed) return await target.apply(...args)
          failed = true
          if (when === 'after') await target.apply(...args)
          throw new Error('connection reset')
        }
    })
  }

  it('is aborted when nothing landed, and applied in full when tried again with its fix id', async () => {
    const store = failingOnce('before')
    const fix = plan()
    await expect(applyFixOnce({ audit: kit.audit, store, fix })).rejects.toThrow('connection reset')
    expect((await kit.audit.fixOf(fix.fixId))?.abort).toMatchObject({ reason: 'not applied: connection reset' })
    const retry = await applyFixOnce({ audit: kit.audit, store, fix })
    expect(retry.applied).toBe(true)
    expect((await entries(kit.audit)).map(e => e.kind)).toEqual(['intent', 'abort', 'intent', 'commit'])
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual([hex(row(1, 1)), null, hex(row(11))])
  })

  it('is committed when the write landed though the store reported an error', async () => {
    const store = failingOnce('after')
    const fix = plan()
    await expect(applyFixOnce({ audit: kit.audit, store, fix })).rejects.toThrow('connection reset')
    expect((await kit.audit.fixOf(fix.fixId))?.commit).toMatchObject({ reason: 'applied, though the store reported: connection reset' })
    expect((await applyFixOnce({ audit: kit.audit, store, fix })).applied).toBe(false)
  })
})

describe('rolling back a fix whose rows the store keeps otherwise than written (a PostgreSQL trigger)', () => {
  let kit: AuditKit
  let s: StoreKit
  let clock: VectorClock
  beforeEach(async () => {
    kit = await openAudit()
    s = await openStore('postgres')
    clock = { b: 10 }
    // every row written gets its status in capitals: a fix's rows are not stored as written
    await sql(s.url!, `CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.status := upper(NEW.status); RETURN NEW; END $$;
      CREATE TRIGGER shout BEFORE INSERT OR UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION shout()`)
  })
  afterEach(async () => {
    await s.cleanup()
    await kit.cleanup()
  })
  const rollback = async (fixId: string) => await rollbackFix({
    audit: kit.audit, store: s.store, codec, region: 'b', clock: () => clock, setClock: async c => { clock = c }, fixId, by: 'alice'
  })
  const shouted = (id: number, version = 0): string => hex(codec.encodeRow({ ...order(id, version), status: String(order(id, version).status).toUpperCase() }))

  it('records the rows as stored on the commit, and rolls back without force while nothing wrote them since', async () => {
    const fix = plan()
    const done = await applyFixOnce({ audit: kit.audit, store: s.store, fix })
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual([shouted(1, 1), null, shouted(11)])
    expect(done.commit.stored?.map(([index, row]) => [index, hex(row)])).toEqual([[0, shouted(1, 1)], [1, shouted(11)]])
    // before: the rows differed from the fix's upserts, and the rollback took that for a later write (CONVERGE_ROLLBACK_CONFLICT)
    const report = await rollback(fix.fixId)
    // the two before-images it wrote back are stored otherwise too (the trigger again): the report says so
    expect(report).toMatchObject({ rollbackOf: fix.fixId, upserts: 2, deletes: 1, overwritten: 0, storedOtherwise: 2 })
    expect((await kit.audit.fixOf(report.fixId))?.commit?.stored?.map(([index, row]) => [index, hex(row)])).toEqual([[0, shouted(1)], [1, shouted(2)]])
    // the before-images, as the trigger stores them in turn
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual([shouted(1), shouted(2), null])
  })

  it('still refuses a rollback over a row written after the fix', async () => {
    const fix = plan()
    await applyFixOnce({ audit: kit.audit, store: s.store, fix })
    await s.writeBehind([row(1, 5)], [])
    await expect(rollback(fix.fixId)).rejects.toMatchObject({ code: 'CONVERGE_ROLLBACK_CONFLICT' })
  })
})
