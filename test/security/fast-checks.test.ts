/**
 * The faster checks on bytes from outside give exactly the answers of the
 * ones they replaced (test/helpers/reference.ts): the msgpack shape walk
 * (no closures made per call) and the canonical-row check (values already
 * normal are not normalized again) accept the same bytes, return the same
 * values and refuse the rest with the same error, code and message.
 */
import fc from 'fast-check'
import { pack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { normalizeValue, type Value } from '../../src/digest/row-codec.ts'
import { COLUMN_TYPES } from '../../src/digest/schema.ts'
import { alreadyNormal, assertCanonicalRow, checkCanonicalKey, checkCanonicalRow, plainlyCanonical, plainlyCanonicalKey } from '../../src/security/canonical-row.ts'
import { checkMsgpackShape } from '../../src/security/msgpack-shape.ts'
import { oldCheckCanonicalKey, oldCheckCanonicalRow, oldCheckMsgpackShape } from '../helpers/reference.ts'
import { allTypesCodec, canonicalRowBytes, intKeyCodec, keyBytes, microsCodec, packRaw, rowBytes, wideCodec } from '../helpers/row-bytes.ts'

/** What a call gives: its value, or its error's class, code and message. */
function outcome (fn: () => unknown): unknown {
  try {
    return { value: fn() }
  } catch (err) {
    return { error: (err as Error).constructor.name, code: (err as { code?: string }).code, message: (err as Error).message }
  }
}

const mutatedBytes = fc.tuple(fc.anything().map(v => pack(v)), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'cut', 'append', 'none')).map(([b, at, v, how]) => {
  if (how === 'none' || b.length === 0) return b
  const i = at % b.length
  if (how === 'cut') return b.slice(0, i)
  if (how === 'append') return Uint8Array.from([...b, v])
  const out = Uint8Array.from(b)
  out[i] = v
  return out
})

describe('faster checks, the same answers', () => {
  it('the msgpack shape walk accepts and refuses exactly as before, with the same messages (property)', () => {
    const input = fc.oneof(mutatedBytes, fc.uint8Array({ maxLength: 48 }), fc.array(fc.integer({ min: 0x80, max: 0xff }), { maxLength: 24 }).map(b => Uint8Array.from(b)))
    const limits = fc.record({ maxDepth: fc.integer({ min: 1, max: 10 }), maxKeyBytes: fc.option(fc.integer({ min: 0, max: 300 }), { nil: undefined }) })
    fc.assert(fc.property(input, limits, (bytes, lim) => {
      expect(outcome(() => checkMsgpackShape(bytes, 'x', lim))).toEqual(outcome(() => oldCheckMsgpackShape(bytes, 'x', lim)))
    }), { numRuns: 3000 })
  })

  it('the shape walk reads at an offset into a larger buffer as the old one did', () => {
    const inner = pack({ a: [1, 2, { b: 'c' }], d: new Uint8Array(300) })
    const outer = new Uint8Array(inner.length + 7)
    outer.set(inner, 5)
    for (const [from, to] of [[5, 5 + inner.length], [5, 4 + inner.length], [4, 5 + inner.length]] as const) {
      const bytes = outer.subarray(from, to)
      expect(outcome(() => checkMsgpackShape(bytes, 'x', { maxDepth: 4 }))).toEqual(outcome(() => oldCheckMsgpackShape(bytes, 'x', { maxDepth: 4 })))
    }
  })

  for (const [name, codec] of [['every column type', allTypesCodec], ['an integer key', intKeyCodec], ['17 columns', wideCodec], ['microsecond timestamps', microsCodec]] as const) {
    it(`the canonical-row check takes and refuses exactly the rows it did, ${name} (property)`, () => {
      fc.assert(fc.property(rowBytes(codec), bytes => {
        expect(outcome(() => checkCanonicalRow(codec, bytes))).toEqual(outcome(() => oldCheckCanonicalRow(codec, bytes)))
      }), { numRuns: 1500 })
    })
  }

  for (const [name, codec] of [['every column type', allTypesCodec], ['an integer key', intKeyCodec], ['17 columns', wideCodec], ['microsecond timestamps', microsCodec]] as const) {
    it(`a row told canonical from its bytes alone is one the full check takes; any other is refused as before, ${name} (property)`, () => {
      fc.assert(fc.property(rowBytes(codec), bytes => {
        const old = outcome(() => oldCheckCanonicalRow(codec, bytes))
        if (plainlyCanonical(codec, bytes)) expect('value' in (old as object)).toBe(true)
        const now = outcome(() => assertCanonicalRow(codec, bytes))
        if ('error' in (old as object)) expect(now).toEqual(old)
        else expect(now).toEqual({ value: undefined })
      }), { numRuns: 2000 })
    })
  }

  for (const [name, codec] of [['a string and an integer', allTypesCodec], ['an integer', intKeyCodec], ['an integer and a string, of 17 columns', wideCodec], ['a microsecond timestamp and an integer', microsCodec]] as const) {
    it(`a key told canonical from its bytes alone is one the full check takes; the key check answers as before, key of ${name} (property)`, () => {
      fc.assert(fc.property(keyBytes(codec), bytes => {
        const old = outcome(() => oldCheckCanonicalKey(codec, bytes))
        if (plainlyCanonicalKey(codec, bytes)) expect(old).toEqual({ value: undefined })
        expect(outcome(() => checkCanonicalKey(codec, bytes))).toEqual(old)
      }), { numRuns: 2000 })
    })
  }

  it('tells the keys of plain values from their bytes alone, and no other encoding of them', () => {
    expect(plainlyCanonicalKey(intKeyCodec, intKeyCodec.encodeKey({ id: 5 }))).toBe(true)
    expect(plainlyCanonicalKey(intKeyCodec, intKeyCodec.encodeKey({ id: 2n ** 60n }))).toBe(true)
    expect(plainlyCanonicalKey(allTypesCodec, allTypesCodec.encodeKey({ region: 'eu', id: -7 }))).toBe(true)
    for (const [codec, values] of [[intKeyCodec, [5n]], [intKeyCodec, [5.5]], [intKeyCodec, [null]], [intKeyCodec, [5, 6]], [intKeyCodec, ['5']], [allTypesCodec, ['ünï', 1]], [allTypesCodec, [1, 'eu']]] as const) {
      expect(plainlyCanonicalKey(codec, packRaw(values))).toBe(false)
    }
    expect(() => checkCanonicalKey(intKeyCodec, packRaw([5n]))).toThrow('not in the canonical encoding')
  })

  it('tells every canonical row of plain values from its bytes alone (ASCII text, numbers, nulls) (property)', () => {
    const ascii = fc.string({ maxLength: 300, unit: fc.integer({ min: 0, max: 0x7f }).map(c => String.fromCharCode(c)) })
    const plain = fc.record({
      id: fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n })),
      name: ascii,
      amount: fc.oneof(fc.integer().map(String), fc.integer().map(n => String(n / 100))),
      at: fc.integer({ min: -8.64e15, max: 8.64e15 }),
      note: fc.option(ascii, { nil: null })
    })
    fc.assert(fc.property(plain, r => { expect(plainlyCanonical(intKeyCodec, intKeyCodec.encodeRow(r))).toBe(true) }), { numRuns: 1000 })
    for (const row of [[5, 'ånn', '12.5', 1, null], [5, 'ann', '12.50', 1, null], [5n, 'ann', '1', 1, null], [5, 'ann', '1', 1.5, null], [null, 'ann', '1', 1, null]]) {
      expect(plainlyCanonical(intKeyCodec, packRaw(row))).toBe(false)
    }
  })

  it('still refuses every other encoding of a canonical row\'s values', () => {
    const codec = intKeyCodec
    const row = [5, 'ann', '12.5', 1_700_000_000_000, null]
    expect(checkCanonicalRow(codec, packRaw(row))).toEqual(row)
    const others: unknown[][] = [
      [5n, 'ann', '12.5', 1_700_000_000_000, null], // a small integer as a 64-bit one
      [5.5, 'ann', '12.5', 1_700_000_000_000, null],
      [5, 'ann', '12.50', 1_700_000_000_000, null],
      [5, 'ann', '-0', 1_700_000_000_000, null],
      [5, 'ann', '+12.5', 1_700_000_000_000, null],
      [5, 'ann', 12.5, 1_700_000_000_000, null],
      [5, 'ann', '12.5', 1_700_000_000_000.5, null],
      [5, 'ann', '12.5', 8.64e15 + 1, null],
      [5, 'ann', '12.5', '2026-01-01', null],
      [5, 7, '12.5', 1_700_000_000_000, null],
      [null, 'ann', '12.5', 1_700_000_000_000, null]
    ]
    for (const values of others) {
      const bytes = packRaw(values)
      const now = outcome(() => checkCanonicalRow(codec, bytes))
      expect(now).toEqual(outcome(() => oldCheckCanonicalRow(codec, bytes)))
      expect((now as { code?: string }).code, JSON.stringify(values, (_, v: unknown) => typeof v === 'bigint' ? `${v}n` : v)).toBe('CONVERGE_INVALID_SOURCE_ROW')
    }
  })

  it('a value counts as already normal only where normalizing gives that very value back (property)', () => {
    const anyValue = fc.oneof(fc.double(), fc.integer(), fc.bigInt(), fc.string({ maxLength: 12 }), fc.stringMatching(/^[+-]?\d{0,3}(\.\d{0,3})?$/), fc.boolean(), fc.constant(null), fc.constant(-0), fc.uint8Array({ maxLength: 4 }), fc.uint8Array({ maxLength: 4 }).map(b => Buffer.from(b)))
    fc.assert(fc.property(fc.constantFrom(...COLUMN_TYPES), anyValue, (type, v) => {
      if (!alreadyNormal(type, v as Value)) return
      expect(Object.is(normalizeValue(type, v, 'c'), v)).toBe(true)
    }), { numRuns: 5000 })
  })

  it('a decimal is already normal exactly when normalizing leaves it as it is (property)', () => {
    const text = fc.oneof(fc.stringMatching(/^-?\d{0,4}(\.\d{0,4})?$/), fc.string({ maxLength: 6, unit: fc.constantFrom('0', '1', '9', '.', '-', '+', ' ', 'e') }))
    fc.assert(fc.property(text, s => {
      let normal: boolean
      try { normal = normalizeValue('decimal', s, 'c') === s } catch { normal = false }
      expect(alreadyNormal('decimal', s)).toBe(normal)
    }), { numRuns: 5000 })
  })
})
