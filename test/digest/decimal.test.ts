import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalDecimal, isCanonicalDecimal } from '../../src/digest/decimal.ts'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { schemaFingerprint, type DatasetSchema } from '../../src/digest/schema.ts'

describe('canonical decimals', () => {
  it('drop trailing fraction zeros by default, keep them with keepScale; both drop leading zeros, a plus and the minus of zero', () => {
    const cases: Array<[string, string, string]> = [
      ['10.50', '10.5', '10.50'], ['5.000', '5', '5.000'], ['0.00', '0', '0.00'], ['-0.00', '0', '0.00'], ['-0.10', '-0.1', '-0.10'],
      ['+007.250', '7.25', '7.250'], ['5.', '5', '5'], ['.5', '0.5', '0.5'], ['-0', '0', '0'], [' 42 ', '42', '42'], ['100', '100', '100']
    ]
    for (const [text, normal, kept] of cases) {
      expect(canonicalDecimal(text, 'c'), text).toBe(normal)
      expect(canonicalDecimal(text, 'c', true), `${text} keeping its scale`).toBe(kept)
    }
    expect(() => canonicalDecimal('1e5', 'price', true)).toThrow(/column "price": "1e5" is not a decimal/)
  })

  it('are told canonical exactly when canonicalDecimal gives them back unchanged', () => {
    const text = fc.tuple(fc.constantFrom('', '-', '+'), fc.stringMatching(/^[0-9]{0,4}$/), fc.option(fc.stringMatching(/^[0-9]{0,4}$/), { nil: undefined }))
      .map(([sign, int, frac]) => `${sign}${int}${frac === undefined ? '' : `.${frac}`}`)
    fc.assert(fc.property(text, fc.boolean(), (t, keepScale) => {
      let same: boolean
      try { same = canonicalDecimal(t, 'c', keepScale) === t } catch { same = false }
      expect(isCanonicalDecimal(t, keepScale), JSON.stringify(t)).toBe(same)
    }), { numRuns: 5000 })
  })

  it('digest 10.50 and 10.5 apart only in a column that keeps its scale, whose schema fingerprint differs', () => {
    const schema: DatasetSchema = { version: 1, columns: [{ name: 'sku', type: 'integer' }, { name: 'price', type: 'decimal' }], primaryKey: ['sku'], ignoreColumns: [] }
    const kept: DatasetSchema = { ...schema, columns: [schema.columns[0]!, { name: 'price', type: 'decimal', keepScale: true }] }
    const digest = (s: DatasetSchema, price: string): bigint => { const codec = new RowCodec(s); return codec.rowDigest(codec.encodeRow({ sku: 1, price })) }
    expect(digest(schema, '10.50')).toBe(digest(schema, '10.5'))
    expect(digest(kept, '10.50')).not.toBe(digest(kept, '10.5'))
    expect(digest(kept, '-0.00')).toBe(digest(kept, '0.00'))
    expect(schemaFingerprint(kept)).not.toBe(schemaFingerprint(schema))
    // a schema without keepScale keeps the fingerprint it always had
    expect(schemaFingerprint({ ...schema, columns: [schema.columns[0]!, { name: 'price', type: 'decimal', keepScale: false }] })).toBe(schemaFingerprint(schema))
  })
})
