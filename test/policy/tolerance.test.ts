import { describe, expect, it } from 'vitest'
import { decide, sightingKeyHex } from '../../src/policy/decide.ts'
import type { PolicyInput } from '../../src/policy/decide.ts'
import { changed, extra, fixKeys, hex, keyOf, missing, NOW, plainCodec, policyInput, row } from './fixtures.ts'

const tolerance = (t: Partial<PolicyInput['tolerance']>): PolicyInput['tolerance'] => ({ graceMs: 0, confirmations: 1, acceptableRows: 0, ...t })

describe('tolerance.graceMs', () => {
  const grace = tolerance({ graceMs: 5000 })

  it('defers a row written within the window, and one written in the future', () => {
    const d = decide(policyInput([missing(1, row(1, 0, NOW - 4999)), missing(2, row(2, 0, NOW)), missing(3, row(3, 0, NOW + 60_000)), missing(4)], { tolerance: grace }))
    expect(d.deferred.inFlight).toBe(3)
    expect(d.drift).toBe(1)
    expect(fixKeys(d.fixes).upserts).toEqual([hex(keyOf(4))])
    expect(d.action).toBe('apply')
  })

  it('fixes a row exactly graceMs old: the window is open at that end', () => {
    const d = decide(policyInput([missing(1, row(1, 0, NOW - 5000))], { tolerance: grace }))
    expect(d.deferred.inFlight).toBe(0)
    expect(d.action).toBe('apply')
  })

  it('goes by the later of the two event times', () => {
    // an old SoT row against a fresh local write: replication may be on its way
    expect(decide(policyInput([changed(1, row(1, 1, 1000), row(1, 0, NOW - 1))], { tolerance: grace })).deferred.inFlight).toBe(1)
    expect(decide(policyInput([changed(1, row(1, 1, NOW - 1), row(1, 0, 1000))], { tolerance: grace })).deferred.inFlight).toBe(1)
    expect(decide(policyInput([extra(1, row(1, 0, NOW - 1))], { tolerance: grace })).deferred.inFlight).toBe(1)
  })

  it('never defers a row with no event time on either side', () => {
    expect(decide(policyInput([changed(1, row(1, 1, null), row(1, 0, null))], { tolerance: grace })).action).toBe('apply')
  })

  it('explains why nothing is applied, and keeps in-flight rows out of drift and sightings', () => {
    const d = decide(policyInput([missing(1, row(1, 0, NOW - 10)), missing(2, row(2, 0, NOW - 20))], { tolerance: grace }))
    expect(d).toMatchObject({ action: 'none', fixes: [], drift: 0, deferred: { inFlight: 2, unconfirmed: 0, keptLocal: 0 } })
    expect(d.reasons).toEqual(['2 rows in flight: event time within the 5000 ms grace window'])
    expect(d.sightings.size).toBe(0)
  })

  it('is off at 0, even for rows from the future', () => {
    expect(decide(policyInput([missing(1, row(1, 0, NOW + 60_000))])).action).toBe('apply')
  })

  it('is ignored without an event-time column', () => {
    const key = plainCodec.encodeKey({ id: 1 })
    const d = decide(policyInput([{ key, sot: plainCodec.encodeRow({ id: 1, value: 'a' }) }], { codec: plainCodec, tolerance: tolerance({ graceMs: 1e12 }) }))
    expect(d.action).toBe('apply')
    expect(d.deferred.inFlight).toBe(0)
  })
})

describe('tolerance.confirmations', () => {
  const twice = tolerance({ confirmations: 2 })

  it('fixes a key once seen apart in N consecutive calls', () => {
    const rows = [changed(1)]
    const first = decide(policyInput(rows, { tolerance: twice }))
    expect(first).toMatchObject({ action: 'none', fixes: [], drift: 1, deferred: { unconfirmed: 1 } })
    expect(first.reasons).toEqual(['1 row not yet confirmed: a row is fixed once seen apart in 2 consecutive rounds'])
    expect([...first.sightings.values()]).toEqual([1])
    const second = decide(policyInput(rows, { tolerance: twice, sightings: first.sightings }))
    expect(second.action).toBe('apply')
    expect(second.deferred.unconfirmed).toBe(0)
    expect([...second.sightings.values()]).toEqual([2])
  })

  it('needs every one of N rounds', () => {
    const input = (sightings: Map<string, number>): PolicyInput => policyInput([missing(1)], { tolerance: tolerance({ confirmations: 3 }), sightings })
    const a = decide(input(new Map()))
    const b = decide(input(a.sightings))
    const c = decide(input(b.sightings))
    expect([a.action, b.action, c.action]).toEqual(['none', 'none', 'apply'])
  })

  it('restarts the count when the local row changes', () => {
    const first = decide(policyInput([changed(1, row(1, 5), row(1, 1))], { tolerance: twice }))
    const second = decide(policyInput([changed(1, row(1, 5), row(1, 2))], { tolerance: twice, sightings: first.sightings }))
    expect(second.action).toBe('none')
    expect(second.deferred.unconfirmed).toBe(1)
    expect([...second.sightings.values()]).toEqual([1])
  })

  it('restarts the count when the SoT row changes', () => {
    const first = decide(policyInput([changed(1, row(1, 5), row(1, 1))], { tolerance: twice }))
    const second = decide(policyInput([changed(1, row(1, 6), row(1, 1))], { tolerance: twice, sightings: first.sightings }))
    expect(second.action).toBe('none')
    const third = decide(policyInput([changed(1, row(1, 6), row(1, 1))], { tolerance: twice, sightings: second.sightings }))
    expect(third.action).toBe('apply')
  })

  it('restarts the count when a side appears or disappears', () => {
    const first = decide(policyInput([missing(1)], { tolerance: twice }))
    const second = decide(policyInput([changed(1, row(1), row(1, 3))], { tolerance: twice, sightings: first.sightings }))
    expect(second.action).toBe('none')
  })

  it('returns sightings of keys still apart only, keyed by the key', () => {
    const first = decide(policyInput([missing(1), missing(2), extra(3)], { tolerance: twice }))
    expect([...first.sightings.keys()].map(sightingKeyHex)).toEqual([1, 2, 3].map(id => hex(keyOf(id))).sort())
    const second = decide(policyInput([missing(2)], { tolerance: twice, sightings: first.sightings }))
    expect([...second.sightings.keys()].map(sightingKeyHex)).toEqual([hex(keyOf(2))])
    expect(second.action).toBe('apply')
  })

  it('fixes the confirmed keys and defers the rest in the same call', () => {
    const first = decide(policyInput([missing(1)], { tolerance: twice }))
    const second = decide(policyInput([missing(1), missing(2)], { tolerance: twice, sightings: first.sightings }))
    expect(second.action).toBe('apply')
    expect(fixKeys(second.fixes).upserts).toEqual([hex(keyOf(1))])
    expect(second.deferred.unconfirmed).toBe(1)
    expect(second.drift).toBe(2)
  })

  it('keeps counting while a fix waits in review', () => {
    const risk = { reviewDeletes: true, history: 10 }
    const first = decide(policyInput([extra(1)], { tolerance: twice, risk }))
    const second = decide(policyInput([extra(1)], { tolerance: twice, risk, sightings: first.sightings }))
    const third = decide(policyInput([extra(1)], { tolerance: twice, risk, sightings: second.sightings }))
    expect([first.action, second.action, third.action]).toEqual(['none', 'review', 'review'])
    expect([...third.sightings.values()]).toEqual([3])
  })
})

describe('tolerance.acceptableRows', () => {
  const rows = [missing(1), changed(2), extra(3)]

  it('leaves a fix of exactly acceptableRows alone, and reports the drift', () => {
    const d = decide(policyInput(rows, { tolerance: tolerance({ acceptableRows: 3 }) }))
    expect(d).toMatchObject({ action: 'none', fixes: [], drift: 3 })
    expect(d.reasons).toEqual(['drift of 3 rows is within the acceptable 3'])
  })

  it('applies a fix of one row more', () => {
    expect(decide(policyInput(rows, { tolerance: tolerance({ acceptableRows: 2 }) })).action).toBe('apply')
  })

  it('counts the rows that would be fixed, not those kept or deferred', () => {
    const d = decide(policyInput([missing(1), extra(2), extra(3), changed(4, row(4, 1, 0), row(4, 0, 10))], { rule: 'merge', tolerance: tolerance({ acceptableRows: 1 }) }))
    expect(d.action).toBe('none')
    expect(d.drift).toBe(4)
    expect(d.reasons).toEqual(['drift of 1 row is within the acceptable 1', '3 rows kept: the local version is the last write (merge)'])
  })

  it('comes before the review rule and risk checks', () => {
    const d = decide(policyInput([extra(1)], { rule: 'review', tolerance: tolerance({ acceptableRows: 1 }), risk: { reviewDeletes: true, maxRows: 1, history: 10 } }))
    expect(d.action).toBe('none')
    expect(d.reasons).toEqual(['drift of 1 row is within the acceptable 1'])
  })
})
