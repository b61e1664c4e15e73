import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { recoverPendingFixes, type RecoveryInit } from '../../src/audit/recovery.ts'
import { rollbackFix } from '../../src/audit/rollback.ts'
import type { VectorClock } from '../../src/audit/vector-clock.ts'
import { codec, crashAfterIntent, entries, hex, key, openAudit, openStore, plan, row, rowsOf, type AuditKit, type StoreKind, type StoreKit } from './fixtures.ts'

describe.each<StoreKind>(['level', 'postgres'])('recovery of fixes cut short, against a real %s store', kind => {
  let kit: AuditKit
  let s: StoreKit
  let clock: VectorClock
  beforeEach(async () => {
    kit = await openAudit()
    s = await openStore(kind)
    clock = { b: 100 }
  })
  afterEach(async () => {
    await s.cleanup()
    await kit.cleanup()
  })

  const recover = async (over: Partial<RecoveryInit> = {}) => await recoverPendingFixes({
    audit: kit.audit, stores: new Map([['orders', { store: s.store, codec }]]), region: 'b',
    clock: () => clock, setClock: async c => { clock = c }, ...over
  })
  const original = (): Array<string | null> => [hex(row(1)), hex(row(2)), null]

  it('commits a fix found applied, with the intent\'s before-images, and appends nothing the second time', async () => {
    const fix = plan()
    const intent = await crashAfterIntent(kit.audit, s.store, fix)
    await s.store.apply({ upserts: fix.upserts, deletes: fix.deletes, origin: 'converge' })
    const audit = await kit.reopen()

    const [report, ...rest] = await recover({ audit })
    expect(rest).toEqual([])
    expect(report).toMatchObject({ fixId: fix.fixId, dataset: 'orders', outcome: 'committed', rows: 3, found: { applied: 3, notApplied: 0, other: 0 } })
    expect(report!.entry).toMatchObject({ kind: 'commit', fixId: fix.fixId, correlationId: fix.correlationId, reason: 'found applied at restart', clock: fix.clock, rule: 'restore' })
    expect(report!.entry!.before!.map(b => (b === null ? null : hex(b)))).toEqual(intent.before!.map(b => (b === null ? null : hex(b))))
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual([hex(row(1, 1)), null, hex(row(11))])

    const length = audit.length
    expect(await recover({ audit })).toEqual([])
    expect(audit.length).toBe(length)
    expect(await audit.verify()).toBe(length)
  })

  it('aborts a fix found not applied and leaves the rows alone', async () => {
    const fix = plan()
    await crashAfterIntent(kit.audit, s.store, fix)
    const audit = await kit.reopen()
    const seqBefore = await s.store.lastSeq()

    const [report] = await recover({ audit })
    expect(report).toMatchObject({ outcome: 'aborted', found: { applied: 0, notApplied: 3, other: 0 } })
    expect(report!.entry).toMatchObject({ kind: 'abort', fixId: fix.fixId, reason: 'found not applied at restart' })
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual(original())
    expect(await s.store.lastSeq()).toBe(seqBefore)
    expect((await audit.fixOf(fix.fixId))?.abort?.seq).toBe(report!.entry!.seq)

    const length = audit.length
    expect(await recover({ audit })).toEqual([])
    expect(audit.length).toBe(length)
  })

  it('finishes a half-applied fix, commits it, and a rollback of it restores the rows from before the first attempt', async () => {
    const fix = plan()
    await crashAfterIntent(kit.audit, s.store, fix)
    // half of it landed: a store without transactions, or a crash inside one of them
    await s.store.apply({ upserts: [fix.upserts[0]!], deletes: [], origin: 'converge' })
    const audit = await kit.reopen()

    const [report] = await recover({ audit })
    expect(report).toMatchObject({ outcome: 'finished', found: { applied: 1, notApplied: 2, other: 0 } })
    expect(report!.entry).toMatchObject({ kind: 'commit', reason: 'found partly applied at restart; finished' })
    expect(typeof report!.entry!.storeSeq).toBe('number')
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual([hex(row(1, 1)), null, hex(row(11))])
    // row 1 had been written by the first attempt: what the fix replaced there is the row from before it
    expect(report!.entry!.before!.map(b => (b === null ? null : hex(b)))).toEqual([hex(row(1)), null, hex(row(2))])
    expect(await recover({ audit })).toEqual([])

    await rollbackFix({ audit, store: s.store, codec, region: 'b', clock: () => clock, setClock: async c => { clock = c }, fixId: fix.fixId, by: 'ops' })
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual(original())
  })

  it('finishes a fix whose rows were written meanwhile by someone else', async () => {
    const fix = plan()
    await crashAfterIntent(kit.audit, s.store, fix)
    await s.writeBehind([row(2, 7)], [])
    const audit = await kit.reopen()

    const [report] = await recover({ audit })
    expect(report).toMatchObject({ outcome: 'finished', found: { applied: 0, notApplied: 2, other: 1 } })
    expect(await rowsOf(s.store, [1, 2, 11])).toEqual([hex(row(1, 1)), null, hex(row(11))])
    expect(await recover({ audit })).toEqual([])
  })

  it('settles an intent from before before-images were recorded: commit when applied, else finish', async () => {
    const applied = plan({ upserts: [row(3, 1)], deletes: [] })
    await crashAfterIntent(kit.audit, s.store, applied, { withBefore: false })
    await s.store.apply({ upserts: applied.upserts, deletes: [] })
    const notApplied = plan({ upserts: [row(4, 1)], deletes: [key(5)] })
    await crashAfterIntent(kit.audit, s.store, notApplied, { withBefore: false })
    const audit = await kit.reopen()

    const reports = await recover({ audit })
    expect(reports.map(r => [r.fixId, r.outcome])).toEqual([[applied.fixId, 'committed'], [notApplied.fixId, 'finished']])
    expect(reports[0]!.entry!.before).toBeUndefined()
    expect(await rowsOf(s.store, [3, 4, 5])).toEqual([hex(row(3, 1)), hex(row(4, 1)), null])
  })

  it('leaves a fix of a dataset no longer configured in flight, reports it every time, and settles the others oldest first', async () => {
    const gone = plan({ dataset: 'payments' })
    await crashAfterIntent(kit.audit, s.store, gone)
    const first = plan({ upserts: [row(6, 1)], deletes: [] })
    await crashAfterIntent(kit.audit, s.store, first)
    const second = plan({ upserts: [row(7, 1)], deletes: [] })
    await crashAfterIntent(kit.audit, s.store, second)
    await s.store.apply({ upserts: second.upserts, deletes: [] })
    const audit = await kit.reopen()

    const reports = await recover({ audit })
    expect(reports.map(r => [r.fixId, r.dataset, r.outcome])).toEqual([
      [gone.fixId, 'payments', 'unknown-dataset'], [first.fixId, 'orders', 'aborted'], [second.fixId, 'orders', 'committed']
    ])
    expect(reports[0]!.entry).toBeUndefined()
    const length = audit.length
    const again = await recover({ audit })
    expect(again.map(r => [r.fixId, r.outcome])).toEqual([[gone.fixId, 'unknown-dataset']])
    expect(audit.length).toBe(length)
  })

  it('moves a lagging agent clock up to the clock of the fixes it settles', async () => {
    const fix = plan({ clock: { a: 3, b: 250 } })
    await crashAfterIntent(kit.audit, s.store, fix)
    await recover({ audit: await kit.reopen() })
    expect(clock).toEqual({ a: 3, b: 250 })
  })

  it('writes the agent\'s region and keeps the fix\'s other fields on what it appends', async () => {
    const fix = plan({ partition: 'eu', reviewId: 'rev-1', by: 'alice', rule: 'review' })
    await crashAfterIntent(kit.audit, s.store, fix)
    await recover({ audit: await kit.reopen() })
    const last = (await entries(kit.audit)).at(-1)!
    expect(last).toMatchObject({ kind: 'abort', partition: 'eu', reviewId: 'rev-1', by: 'alice', rule: 'review', sourceRegion: 'a', region: 'b' })
  })
})
