import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CanonicalWriter } from '../../src/digest/canonical-writer.ts'
import { packValues, type Value } from '../../src/digest/row-codec.ts'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** Writes `values` (safe integers, ASCII strings, null) as one array with the writer. */
function written (values: Array<number | string | null>): Uint8Array {
  const w = new CanonicalWriter()
  const start = w.begin(5 + values.reduce<number>((n, v) => n + 9 + (typeof v === 'string' ? v.length : 0), 0))
  w.arrayHeader(values.length)
  for (const v of values) {
    if (v === null) w.nil()
    else if (typeof v === 'number') w.integer(v)
    else { const bytes = Buffer.from(v, 'latin1'); w.asciiString(bytes, 0, bytes.length) }
  }
  return w.buffer.subarray(start, w.offset)
}

const boundaries = [0, 1, 0x1f, 0x20, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1,
  -1, -0x20, -0x21, -0x80, -0x81, -0x8000, -0x8001, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53) + 1]

describe('CanonicalWriter', () => {
  it('writes integers at every width boundary as packValues does', () => {
    for (const v of boundaries) expect(hex(written([v])), String(v)).toBe(hex(packValues([v])))
  })

  it('writes strings at every header boundary, null and array headers as packValues does', () => {
    for (const length of [0, 1, 31, 32, 255, 256, 65535, 65536]) {
      const s = 'x'.repeat(length)
      expect(hex(written([s])), `string of ${length}`).toBe(hex(packValues([s])))
    }
    for (const length of [0, 1, 15, 16, 17, 300]) {
      const values = Array.from({ length }, (_, i) => (i % 3 === 0 ? null : i % 3 === 1 ? i : `v${i}`))
      expect(hex(written(values)), `array of ${length}`).toBe(hex(packValues(values as Value[])))
    }
  })

  it('writes any row of safe integers, ASCII strings and nulls as packValues does', () => {
    const value = fc.oneof(fc.maxSafeInteger(), fc.integer(), fc.integer({ min: -200, max: 70000 }), fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map(c => String.fromCharCode(c)), maxLength: 300 }), fc.constant(null))
    fc.assert(fc.property(fc.array(value, { maxLength: 20 }), values => {
      expect(hex(written(values))).toBe(hex(packValues(values.map(v => (Object.is(v, -0) ? 0 : v)))))
    }), { numRuns: 500 })
  })

  it('keeps rows written before valid when it moves to a new slab, and drops an abandoned row', () => {
    const w = new CanonicalWriter()
    const rows: Uint8Array[] = []
    for (let i = 0; i < 5000; i++) {
      const start = w.begin(200)
      w.arrayHeader(2); w.integer(i)
      if (i % 10 === 0) { w.abandon(start); continue }
      const s = Buffer.from(`row ${i} `.repeat(10), 'latin1')
      w.asciiString(s, 0, s.length)
      rows.push(w.buffer.subarray(start, w.offset))
    }
    expect(rows.map(hex)).toEqual(Array.from({ length: 5000 }, (_, i) => i).filter(i => i % 10 !== 0).map(i => hex(packValues([i, `row ${i} `.repeat(10)]))))
  })
})
