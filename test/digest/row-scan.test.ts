/**
 * Reading only part of a row gives what decoding all of it gives:
 * decodeKeyAndTime fails exactly where decodeValues fails (same error) and
 * otherwise gives the same key and event-time values; keyOfCanonicalRow
 * gives keyOfEncodedRow's bytes for every canonical row.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { unpackValues, type RowCodec } from '../../src/digest/row-codec.ts'
import { isCanonicalNumeric, readNumeric, scalarOffsets, UNREAD } from '../../src/digest/row-scan.ts'
import { checkCanonicalRow } from '../../src/security/canonical-row.ts'
import { allTypesCodec, canonicalRowBytes, intKeyCodec, packRaw, rowBytes, wideCodec } from '../helpers/row-bytes.ts'

function outcome<T> (fn: () => T): { value: T } | { error: string, message: string } {
  try {
    return { value: fn() }
  } catch (err) {
    return { error: (err as Error).constructor.name, message: (err as Error).message }
  }
}

const codecs = [['every column type', allTypesCodec], ['an integer key', intKeyCodec], ['17 columns', wideCodec]] as const

function keyAndTimePositions (codec: RowCodec): number[] {
  return codec.eventTimePosition === undefined ? [...codec.keyPositions] : [...codec.keyPositions, codec.eventTimePosition]
}

describe('reading part of a row', () => {
  for (const [name, codec] of codecs) {
    it(`decodeKeyAndTime fails and answers as decodeValues does, ${name} (property)`, () => {
      fc.assert(fc.property(rowBytes(codec), bytes => {
        const whole = outcome(() => codec.decodeValues(bytes))
        const part = outcome(() => codec.decodeKeyAndTime(bytes))
        if ('error' in whole) { expect(part).toEqual(whole); return }
        expect('value' in part).toBe(true)
        const values = (part as { value: unknown[] }).value
        for (const p of keyAndTimePositions(codec)) expect(values[p]).toEqual(whole.value[p])
      }), { numRuns: 2000 })
    })

    it(`keyOfCanonicalRow gives keyOfEncodedRow's bytes for every canonical row, ${name} (property)`, () => {
      fc.assert(fc.property(fc.oneof(canonicalRowBytes(codec), rowBytes(codec)), bytes => {
        try { checkCanonicalRow(codec, bytes) } catch { return }
        expect([...codec.keyOfCanonicalRow(bytes)]).toEqual([...codec.keyOfEncodedRow(bytes)])
      }), { numRuns: 1500 })
    })
  }

  it('reads every numeric form as the decoder does, and leaves strings and binaries unread (property)', () => {
    const scalar = fc.oneof(fc.integer(), fc.double(), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }), fc.constantFrom(null, true, false, -0, Number.NaN, 2 ** 32, -(2 ** 31) - 1), fc.string({ maxLength: 40 }), fc.uint8Array({ maxLength: 300 }), fc.float().map(f => new Float32Array([f])[0]!))
    fc.assert(fc.property(fc.array(scalar, { minLength: 1, maxLength: 20 }), values => {
      const bytes = packRaw(values)
      const offsets = scalarOffsets(bytes, values.length)
      expect(offsets).toBeDefined()
      const decoded = unpackValues(bytes)
      values.forEach((v, i) => {
        const read = readNumeric(bytes, offsets![i]!)
        if (typeof v === 'string' || v instanceof Uint8Array) expect(read).toBe(UNREAD)
        else expect(Object.is(read, decoded[i]), `${String(read)} against ${String(decoded[i])}`).toBe(true)
      })
    }), { numRuns: 2000 })
  })

  it('reads every fixed-size numeric header with any payload as the decoder does (property)', () => {
    const sizes: Record<number, number> = { 0xca: 4, 0xcb: 8, 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8 }
    const form = fc.constantFrom(...Object.keys(sizes).map(Number)).chain(h => fc.uint8Array({ minLength: sizes[h]!, maxLength: sizes[h]! }).map(p => [h, ...p]))
    fc.assert(fc.property(fc.array(fc.oneof(form, fc.integer({ min: 0, max: 0x7f }).map(b => [b]), fc.integer({ min: 0xe0, max: 0xff }).map(b => [b]), fc.constantFrom([0xc0], [0xc2], [0xc3])), { minLength: 1, maxLength: 8 }), parts => {
      const bytes = Uint8Array.from([0x90 | parts.length, ...parts.flat()])
      const offsets = scalarOffsets(bytes, parts.length)
      expect(offsets).toBeDefined()
      const decoded = unpackValues(bytes)
      parts.forEach((_, i) => { const read = readNumeric(bytes, offsets![i]!); expect(Object.is(read, decoded[i]) || (Number.isNaN(read) && Number.isNaN(decoded[i])), `${String(read)} against ${String(decoded[i])}`).toBe(true) })
    }), { numRuns: 2000 })
  })

  it('calls a numeric value canonical only where the encoder writes it so, and wherever it does but for NaN (property)', () => {
    const sizes: Record<number, number> = { 0xca: 4, 0xcb: 8, 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8 }
    const element = fc.oneof(
      fc.constantFrom(...Object.keys(sizes).map(Number)).chain(h => fc.uint8Array({ minLength: sizes[h]!, maxLength: sizes[h]! }).map(p => Uint8Array.from([h, ...p]))),
      fc.oneof(fc.integer(), fc.double(), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }), fc.constantFrom(0, -0, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 32 - 1, 2 ** 32, -0x20, -0x21, -0x80, -0x81, -0x8000, -0x8001, -(2 ** 31), -(2 ** 31) - 1, 2n ** 63n - 1n, 2n ** 63n, 5n, -5n)).map(v => packRaw(v)),
      fc.integer({ min: 0, max: 255 }).map(b => Uint8Array.from([b]))
    )
    fc.assert(fc.property(element, bytes => {
      const offsets = scalarOffsets(Uint8Array.from([0x91, ...bytes]), 1)
      if (offsets === undefined) return
      const row = Uint8Array.from([0x91, ...bytes])
      const v = readNumeric(row, 1)
      if (v === UNREAD) { expect(isCanonicalNumeric(row, 1)).toBe(false); return }
      const asEncoded = Buffer.compare(packRaw(v), bytes) === 0
      if (isCanonicalNumeric(row, 1)) expect(asEncoded).toBe(true)
      else if (!(typeof v === 'number' && Number.isNaN(v))) expect(asEncoded).toBe(false)
    }), { numRuns: 5000 })
  })

  it('knows a row is filed under a key only when it is, and knows it for every canonical row with an integer key (property)', () => {
    for (const codec of [intKeyCodec, allTypesCodec, wideCodec]) {
      fc.assert(fc.property(rowBytes(codec), fc.oneof(fc.constant(undefined), fc.integer({ min: -300, max: 300 }).map(id => packRaw([id]))), (bytes, other) => {
        let key: Uint8Array
        try { key = other ?? codec.keyOfEncodedRow(bytes) } catch { return }
        if (codec.isFiledUnder(bytes, key)) expect(Buffer.compare(codec.keyOfValues(codec.decodeValues(bytes)), key)).toBe(0)
        let canonical = true
        try { checkCanonicalRow(codec, bytes) } catch { canonical = false }
        if (canonical && codec === intKeyCodec && other === undefined) expect(codec.isFiledUnder(bytes, key)).toBe(true)
      }), { numRuns: 1500 })
    }
  })

  it('finds no offsets in anything but a flat array of plain values of the given length', () => {
    expect(scalarOffsets(packRaw([1, 2]), 3)).toBeUndefined()
    expect(scalarOffsets(packRaw([1, [2]]), 2)).toBeUndefined()
    expect(scalarOffsets(packRaw([1, { a: 2 }]), 2)).toBeUndefined()
    expect(scalarOffsets(packRaw([1, 2]).subarray(0, 2), 2)).toBeUndefined()
    expect(scalarOffsets(Uint8Array.from([...packRaw([1, 2]), 0]), 2)).toBeUndefined()
    expect(scalarOffsets(Uint8Array.from([0x92, 0x01, 0xc1]), 2)).toBeUndefined()
    expect(scalarOffsets(Uint8Array.from([0x92, 0x01, 0xd4, 0x01, 0x00]), 2)).toBeUndefined()
    expect(scalarOffsets(Uint8Array.from([0x92, 0x01, 0xd9, 0x05, 0x61]), 2)).toBeUndefined()
  })
})
