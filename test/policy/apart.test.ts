/**
 * The policy's reading of a difference (sorting by key, checking each side
 * decodes, is filed under its key and has a time, without decoding whole
 * rows where the key and the time can be read directly) gives exactly the
 * rows and the errors it gave before (test/helpers/reference.ts), and each
 * planned fix carries the keys of its upserts.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { u64Hex } from '../../src/digest/hash.ts'
import type { RowCodec } from '../../src/digest/row-codec.ts'
import { apartRows } from '../../src/policy/apart.ts'
import { decide, type DriftRow } from '../../src/policy/decide.ts'
import { allTypesCodec, canonicalRowBytes, intKeyCodec, packRaw, rowBytes } from '../helpers/row-bytes.ts'
import { oldApartRows } from '../helpers/reference.ts'
import { NOW } from './fixtures.ts'

function outcome (fn: () => unknown): unknown {
  try {
    return { value: fn() }
  } catch (err) {
    return { error: (err as Error).constructor.name, message: (err as Error).message }
  }
}

const hexOrNone = (digest: bigint | undefined): string | undefined => digest === undefined ? undefined : u64Hex(digest)

/** Differences whose rows are mostly canonical and filed under their keys, sometimes not: another key, bytes that do not decode, a key twice. */
function driftRows (codec: RowCodec): fc.Arbitrary<DriftRow[]> {
  const side = fc.oneof({ weight: 6, arbitrary: canonicalRowBytes(codec) }, { weight: 1, arbitrary: rowBytes(codec) })
  // the other side of a key: mostly the same row with another note (or as it is), sometimes any row at all
  const otherSide = (a: Uint8Array): fc.Arbitrary<Uint8Array | undefined> => fc.oneof(
    { weight: 4, arbitrary: fc.string({ maxLength: 8 }).map(note => { try { return codec.encodeRow({ ...codec.decodeRow(a), note }) } catch { return a } }) },
    { weight: 1, arbitrary: fc.constant(a) },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: side }
  )
  const keyed = side.chain(a => fc.tuple(fc.constant(a), otherSide(a), fc.boolean(), fc.integer({ min: 0, max: 20 }))).map(([a, other, sotFirst, wrongKey]) => {
    let key: Uint8Array
    try { key = codec.keyOfEncodedRow(a) } catch { key = packRaw([wrongKey]) }
    if (wrongKey === 0) key = packRaw([wrongKey, 'x'])
    return sotFirst ? { key, sot: a, local: other } : { key, local: a, sot: other }
  })
  return fc.array(keyed, { maxLength: 25 }).chain(rows => fc.constantFrom(rows, rows.length > 0 ? [...rows, rows[0]!] : rows))
}

describe('reading a difference', () => {
  for (const [name, codec] of [['every column type', allTypesCodec], ['an integer key', intKeyCodec]] as const) {
    it(`gives the rows and errors it gave before, ${name} (property)`, () => {
      fc.assert(fc.property(driftRows(codec), rows => {
        // (the digests, hex before, are numbers now)
        expect(outcome(() => apartRows(codec, rows).map(r => ({ ...r, sotDigest: hexOrNone(r.sotDigest), localDigest: hexOrNone(r.localDigest) })))).toEqual(outcome(() => oldApartRows(codec, rows)))
      }), { numRuns: 1500 })
    })
  }

  it('plans fixes that carry the key of each upsert', () => {
    const codec = intKeyCodec
    const rows: DriftRow[] = []
    for (let id = 40; id > 0; id--) {
      const sot = codec.encodeRow({ id, name: `n${id}`, amount: '1.5', at: NOW - 60_000, note: null })
      rows.push(id % 3 === 0 ? { key: codec.encodeKey({ id }), local: sot } : { key: codec.encodeKey({ id }), sot })
    }
    const d = decide({ codec, rule: 'restore', tolerance: { graceMs: 0, confirmations: 1, acceptableRows: 0 }, risk: { reviewDeletes: false, history: 10 }, rows, now: NOW, totalRows: 100, recentFixRows: [], sightings: new Map() })
    for (const fix of d.fixes) expect(fix.upsertKeys?.map(k => [...k])).toEqual(fix.upserts.map(r => [...codec.keyOfEncodedRow(r)]))
  })
})
