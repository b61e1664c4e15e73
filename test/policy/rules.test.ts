import { describe, expect, it } from 'vitest'
import { MAX_FIX_ROWS } from '../../src/constants.ts'
import { decide, PolicyConfigError, sightingKeyHex } from '../../src/policy/decide.ts'
import { planRestore, splitFix } from '../../src/policy/restore.ts'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { order, ordersSchema } from '../helpers/datasets.ts'
import { changed, codec, extra, fixKeys, hex, hexFixes, keyOf, missing, plainCodec, policyInput, row } from './fixtures.ts'

const sortedHex = (ids: number[]): string[] => ids.map(id => hex(keyOf(id))).sort()

describe('rule restore', () => {
  it('upserts the SoT row for missing and changed keys and deletes local extras', () => {
    const d = decide(policyInput([extra(3), changed(2), missing(1)]))
    expect(d.action).toBe('apply')
    expect(d.reasons).toEqual([])
    expect(d.drift).toBe(3)
    expect(d.deferred).toEqual({ inFlight: 0, unconfirmed: 0, keptLocal: 0 })
    expect(d.fixes).toHaveLength(1)
    expect(d.fixes[0]!.upserts.map(hex).sort()).toEqual([hex(row(1)), hex(row(2, 1))].sort())
    expect(d.fixes[0]!.deletes.map(hex)).toEqual([hex(keyOf(3))])
  })

  it('sorts the fix by key whatever order the difference came in', () => {
    const ids = [9, 4, 7, 1, 12, 5]
    const d = decide(policyInput(ids.map(id => missing(id))))
    expect(fixKeys(d.fixes).upserts).toEqual(sortedHex(ids))
  })

  it('decides nothing, with no reasons, when nothing differs', () => {
    expect(decide(policyInput([]))).toEqual({ action: 'none', fixes: [], reasons: [], drift: 0, deferred: { inFlight: 0, unconfirmed: 0, keptLocal: 0 }, sightings: new Map() })
  })

  it('leaves out a key whose two sides have the same digest (the replica caught up)', () => {
    const d = decide(policyInput([{ key: keyOf(1), sot: row(1), local: row(1) }, missing(2)]))
    expect(d.drift).toBe(1)
    expect(fixKeys(d.fixes).upserts).toEqual([hex(keyOf(2))])
    const counted = decide(policyInput([{ key: keyOf(1), sot: row(1), local: row(1) }, missing(2)], { tolerance: { graceMs: 0, confirmations: 2, acceptableRows: 0 } }))
    expect([...counted.sightings.keys()].map(sightingKeyHex)).toEqual([hex(keyOf(2))])
  })

  it('splits a fix larger than MAX_FIX_ROWS, upserts first, each part sorted by key', () => {
    const rows = Array.from({ length: MAX_FIX_ROWS }, (_, i) => missing(i))
    rows.push(extra(MAX_FIX_ROWS + 1), extra(MAX_FIX_ROWS + 2))
    const d = decide(policyInput(rows, { totalRows: 10 }))
    expect(d.action).toBe('apply')
    expect(d.fixes.map(f => [f.upserts.length, f.deletes.length])).toEqual([[MAX_FIX_ROWS, 0], [0, 2]])
    const { upserts } = fixKeys(d.fixes)
    expect(upserts).toEqual([...upserts].sort())
  }, 60_000)
})

describe('rule review', () => {
  it('proposes the restore fix and always asks for review', () => {
    const rows = [missing(1), changed(2), extra(3)]
    const restore = decide(policyInput(rows))
    const review = decide(policyInput(rows, { rule: 'review' }))
    expect(review.action).toBe('review')
    expect(review.reasons).toEqual(['rule is review: every fix waits for a person'])
    expect(hexFixes(review.fixes)).toEqual(hexFixes(restore.fixes))
  })

  it('decides nothing when nothing is to be fixed', () => {
    expect(decide(policyInput([], { rule: 'review' })).action).toBe('none')
  })

  it('lists tripped risk checks after the rule', () => {
    const d = decide(policyInput([extra(1)], { rule: 'review', risk: { reviewDeletes: true, history: 10 } }))
    expect(d.reasons).toEqual(['rule is review: every fix waits for a person', 'fix deletes 1 row and reviewDeletes is set'])
  })
})

describe('rule merge', () => {
  const merge = { rule: 'merge' as const }

  it('takes the SoT row when its event time is later', () => {
    const d = decide(policyInput([changed(1, row(1, 0, 2000), row(1, 1, 1000))], merge))
    expect(d.action).toBe('apply')
    expect(d.fixes[0]!.upserts.map(hex)).toEqual([hex(row(1, 0, 2000))])
  })

  it('keeps the local row when its event time is later, and counts it', () => {
    const d = decide(policyInput([changed(1, row(1, 1, 1000), row(1, 0, 2000))], merge))
    expect(d.action).toBe('none')
    expect(d.fixes).toEqual([])
    expect(d.drift).toBe(1)
    expect(d.deferred.keptLocal).toBe(1)
    expect(d.reasons).toEqual(['1 row kept: the local version is the last write (merge)'])
  })

  it('never deletes a local extra row and inserts missing rows', () => {
    const d = decide(policyInput([extra(1), extra(2), missing(3)], { ...merge, risk: { reviewDeletes: true, history: 10 } }))
    expect(d.action).toBe('apply')
    expect(hexFixes(d.fixes)).toEqual([{ upserts: [hex(row(3))], deletes: [] }])
    expect(d.deferred.keptLocal).toBe(2)
    expect(d.drift).toBe(3)
  })

  it('breaks a tie of event times by the greater canonical row bytes, from either side', () => {
    const a = row(1, 1, 5000); const b = row(1, 2, 5000)
    const greater = Buffer.compare(a, b) > 0 ? a : b
    const lesser = greater === a ? b : a
    const sotGreater = decide(policyInput([changed(1, greater, lesser)], merge))
    expect(sotGreater.fixes[0]!.upserts.map(hex)).toEqual([hex(greater)])
    const localGreater = decide(policyInput([changed(1, lesser, greater)], merge))
    expect(localGreater.fixes).toEqual([])
    expect(localGreater.deferred.keptLocal).toBe(1)
  })

  it('counts a null event time as the oldest', () => {
    expect(decide(policyInput([changed(1, row(1, 1, 0), row(1, 0, null))], merge)).fixes[0]!.upserts.map(hex)).toEqual([hex(row(1, 1, 0))])
    expect(decide(policyInput([changed(1, row(1, 1, null), row(1, 0, 0))], merge)).deferred.keptLocal).toBe(1)
    // both null: the tie-break decides, as for equal times
    const a = row(1, 1, null); const b = row(1, 2, null)
    const greater = Buffer.compare(a, b) > 0 ? a : b
    expect(decide(policyInput([changed(1, greater, greater === a ? b : a)], merge)).fixes[0]!.upserts.map(hex)).toEqual([hex(greater)])
  })

  it('orders event times to the microsecond in a microsecond column, and holds a grace window in milliseconds', () => {
    const usCodec = new RowCodec({ ...ordersSchema, columns: ordersSchema.columns.map(c => c.name === 'updated_at' ? { ...c, precision: 'us' as const } : c) })
    const at = (id: number, version: number, iso: string): Uint8Array => usCodec.encodeRow({ ...order(id, version), updated_at: iso })
    const key = usCodec.encodeKey({ id: 1 })
    const later = at(1, 1, '2026-11-26T12:00:00.000002Z')
    const earlier = at(1, 2, '2026-11-26T12:00:00.000001Z')
    const sotLater = decide(policyInput([{ key, sot: later, local: earlier }], { ...merge, codec: usCodec }))
    expect(sotLater.fixes[0]!.upserts.map(hex)).toEqual([hex(later)])
    expect(decide(policyInput([{ key, sot: earlier, local: later }], { ...merge, codec: usCodec })).deferred.keptLocal).toBe(1)
    // the event time 1.5 ms before now is inside a 2 ms grace window, 2.5 ms before it is not
    const now = Date.parse('2026-11-26T12:00:00.003Z')
    const grace = { graceMs: 2, confirmations: 1, acceptableRows: 0 }
    const young = decide(policyInput([{ key, sot: at(1, 1, '2026-11-26T12:00:00.0015Z'), local: earlier }], { codec: usCodec, now, tolerance: grace }))
    expect(young.fixes).toEqual([])
    const old = decide(policyInput([{ key, sot: at(1, 1, '2026-11-26T12:00:00.0005Z'), local: earlier }], { codec: usCodec, now, tolerance: grace }))
    expect(old.fixes).toHaveLength(1)
  })

  it('refuses a schema without an event-time column', () => {
    const key = plainCodec.encodeKey({ id: 1 })
    const input = policyInput([{ key, sot: plainCodec.encodeRow({ id: 1, value: 'a' }) }], { ...merge, codec: plainCodec })
    expect(() => decide(input)).toThrow(PolicyConfigError)
    try { decide(input) } catch (err) { expect((err as PolicyConfigError).code).toBe('CONVERGE_POLICY_CONFIG') }
  })
})

describe('splitting fixes (restore.ts)', () => {
  it('cuts at maxRows, upserts first, then deletes, each sorted by key', () => {
    const up = [5, 1].map(id => ({ key: keyOf(id), row: row(id) }))
    const del = [9, 3].map(keyOf)
    const fixes = splitFix(up, del, 3)
    expect(fixes.map(f => [f.upserts.map(r => hex(codec.keyOfEncodedRow(r))), f.deletes.map(hex)])).toEqual([
      [sortedHex([1, 5]), sortedHex([3, 9]).slice(0, 1)],
      [[], sortedHex([3, 9]).slice(1)]
    ])
  })

  it('planRestore still plans a narrowing result the same way', () => {
    const fixes = planRestore({ upserts: [row(2), row(1)], deletes: [keyOf(3)], missing: 2, changed: 0, extra: 1, unresolved: 0, diverged: [], truncated: false }, codec, 2)
    expect(fixes.map(f => [f.upserts.length, f.deletes.length])).toEqual([[2, 0], [0, 1]])
    expect(fixKeys(fixes).upserts).toEqual(sortedHex([1, 2]))
  })

  it('plans nothing for an empty difference', () => {
    expect(splitFix([], [])).toEqual([])
  })
})
