import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decide } from '../../src/policy/decide.ts'
import type { Decision, DriftRow, PolicyInput } from '../../src/policy/decide.ts'
import { codec, hex, hexFixes, keyOf, NOW, policyInput, row } from './fixtures.ts'

/** One side of a key: a version and an event time drawn from few values, so that ties and the grace window come up often. */
const sideArb = fc.record({
  version: fc.integer({ min: 0, max: 2 }),
  time: fc.constantFrom<number | null>(null, NOW - 10_000, NOW - 3000, NOW - 1000, NOW + 1000)
})
const keyArb = fc.record({
  id: fc.integer({ min: 0, max: 60 }),
  sot: fc.option(sideArb, { nil: undefined }),
  local: fc.option(sideArb, { nil: undefined })
})

interface World {
  sot: Map<string, Uint8Array>
  local: Map<string, Uint8Array>
  /** The exact difference of the two. */
  rows: DriftRow[]
}

const worldArb = fc.array(keyArb, { maxLength: 40 }).map((keys): World => {
  const sot = new Map<string, Uint8Array>(); const local = new Map<string, Uint8Array>(); const rows: DriftRow[] = []
  const seen = new Set<number>()
  for (const k of keys) {
    if (seen.has(k.id)) continue
    seen.add(k.id)
    const key = keyOf(k.id)
    const s = k.sot === undefined ? undefined : row(k.id, k.sot.version, k.sot.time)
    const l = k.local === undefined ? undefined : row(k.id, k.local.version, k.local.time)
    if (s !== undefined) sot.set(hex(key), s)
    if (l !== undefined) local.set(hex(key), l)
    if ((s === undefined && l === undefined) || (s !== undefined && l !== undefined && hex(s) === hex(l))) continue
    rows.push({ key, ...(s === undefined ? {} : { sot: s }), ...(l === undefined ? {} : { local: l }) })
  }
  return { sot, local, rows }
})

/** Settings of every knob, so that the order property covers every path. */
const settingsArb = fc.record({
  rule: fc.constantFrom<PolicyInput['rule']>('restore', 'merge', 'review'),
  tolerance: fc.record({ graceMs: fc.constantFrom(0, 2000, 5000), confirmations: fc.integer({ min: 1, max: 3 }), acceptableRows: fc.integer({ min: 0, max: 3 }) }),
  risk: fc.record({
    maxRows: fc.option(fc.integer({ min: 1, max: 20 }), { nil: undefined }),
    maxShare: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
    reviewDeletes: fc.boolean(),
    growthFactor: fc.option(fc.double({ min: 1, max: 4, noNaN: true }), { nil: undefined }),
    history: fc.integer({ min: 1, max: 4 })
  }),
  totalRows: fc.integer({ min: 0, max: 100 }),
  recentFixRows: fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 6 }),
  held: fc.uniqueArray(fc.integer({ min: 0, max: 60 }), { maxLength: 5 }),
  /** Whether to run one round first, so that sightings carry counts. */
  warm: fc.boolean()
})

/** A Decision as plain data in its own order: Maps as entry lists, bytes as hex. */
const plain = (d: Decision): unknown => ({ ...d, fixes: hexFixes(d.fixes), sightings: [...d.sightings.entries()] })

/** Applies fixes to a replica's rows (key hex -> row). */
function applyFixes (rows: Map<string, Uint8Array>, fixes: Decision['fixes']): Map<string, Uint8Array> {
  const out = new Map(rows)
  for (const fix of fixes) {
    for (const r of fix.upserts) out.set(hex(codec.keyOfEncodedRow(r)), r)
    for (const k of fix.deletes) out.delete(hex(k))
  }
  return out
}

const asHex = (rows: Map<string, Uint8Array>): Record<string, string> => Object.fromEntries([...rows].map(([k, r]) => [k, hex(r)]))

describe('policy properties', () => {
  it('decides the same whatever the order of the rows', () => {
    const arb = fc.tuple(worldArb, settingsArb).chain(([world, settings]) =>
      fc.tuple(fc.constant(world), fc.constant(settings), fc.shuffledSubarray(world.rows, { minLength: world.rows.length, maxLength: world.rows.length })))
    fc.assert(fc.property(arb, ([world, settings, shuffled]) => {
      const { held, warm, ...rest } = settings
      const base = { ...rest, heldKeys: new Set(held.map(id => hex(keyOf(id)))) }
      const sightings = warm ? decide(policyInput(world.rows, base)).sightings : new Map<string, number>()
      const a = decide(policyInput(world.rows, { ...base, sightings }))
      const b = decide(policyInput(shuffled, { ...base, sightings }))
      expect(plain(b)).toEqual(plain(a))
    }), { numRuns: 300 })
  })

  it('accounts for every row: in flight, or drift that is fixed, kept or unconfirmed', () => {
    fc.assert(fc.property(worldArb, settingsArb, (world, settings) => {
      const { held, warm, ...rest } = settings
      const d = decide(policyInput(world.rows, { ...rest, heldKeys: new Set(held.map(id => hex(keyOf(id)))) }))
      expect(d.drift + d.deferred.inFlight).toBe(world.rows.length)
      // counted only where a row needs more than one sighting
      expect(d.sightings.size).toBe(rest.tolerance.confirmations > 1 ? d.drift : 0)
      const fixed = d.fixes.reduce((n, f) => n + f.upserts.length + f.deletes.length, 0)
      if (d.action !== 'none') expect(fixed + d.deferred.unconfirmed + d.deferred.keptLocal).toBe(d.drift)
      else expect(fixed).toBe(0)
    }), { numRuns: 300 })
  })

  it('restore without tolerance or risk turns the local rows into exactly the SoT rows', () => {
    fc.assert(fc.property(worldArb, world => {
      const d = decide(policyInput(world.rows))
      expect(d.action).toBe(world.rows.length === 0 ? 'none' : 'apply')
      expect(d.drift).toBe(world.rows.length)
      expect(asHex(applyFixes(world.local, d.fixes))).toEqual(asHex(world.sot))
    }), { numRuns: 300 })
  })

  it('merge never deletes, and every key ends with the row of the later event time', () => {
    fc.assert(fc.property(worldArb, world => {
      const d = decide(policyInput(world.rows, { rule: 'merge' }))
      expect(d.fixes.every(f => f.deletes.length === 0)).toBe(true)
      const time = (r: Uint8Array): number => codec.eventTime(codec.decodeValues(r)) ?? Number.NEGATIVE_INFINITY
      const expected = new Map(world.local)
      for (const [k, s] of world.sot) {
        const l = world.local.get(k)
        // equal times: the greater canonical bytes win
        if (l === undefined || time(s) > time(l) || (time(s) === time(l) && Buffer.compare(s, l) > 0)) expected.set(k, s)
      }
      expect(asHex(applyFixes(world.local, d.fixes))).toEqual(asHex(expected))
    }), { numRuns: 300 })
  })

  it('is idempotent: after an applied fix nothing is left to do', () => {
    fc.assert(fc.property(worldArb, fc.constantFrom<PolicyInput['rule']>('restore', 'merge'), (world, rule) => {
      const d = decide(policyInput(world.rows, { rule }))
      const local = applyFixes(world.local, d.fixes)
      const rows: DriftRow[] = []
      for (const k of new Set([...world.sot.keys(), ...local.keys()])) {
        const s = world.sot.get(k); const l = local.get(k)
        if (s !== undefined && l !== undefined && hex(s) === hex(l)) continue
        rows.push({ key: Buffer.from(k, 'hex'), ...(s === undefined ? {} : { sot: s }), ...(l === undefined ? {} : { local: l }) })
      }
      const again = decide(policyInput(rows, { rule }))
      expect(again.fixes).toEqual([])
      expect(again.action).toBe('none')
    }), { numRuns: 200 })
  })
})
