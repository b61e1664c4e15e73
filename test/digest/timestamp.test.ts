/**
 * Timestamps to the microsecond (`precision: us`): every spelling of one
 * instant gives one canonical value, that value written as text reads back
 * as itself, and what is not a time, or is beyond the range of dates, fails
 * naming the column.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { schemaFingerprint, type DatasetSchema } from '../../src/digest/schema.ts'
import { MAX_DATE_US, microsToIso, normalizeMicros, parseIsoMicros } from '../../src/digest/timestamp.ts'
import { datasetSchemaSchema } from '../../src/config/schema.ts'
import { RowEncodingError } from '../../src/errors.ts'

const T = Date.UTC(2026, 10, 26, 12, 0, 0) * 1000

describe('microsecond timestamps', () => {
  it('reads every ISO spelling of one instant as the same microseconds', () => {
    const want = T + 123456
    for (const text of [
      '2026-11-26T12:00:00.123456Z', '2026-11-26 12:00:00.123456+00', '2026-11-26 12:00:00.123456', '2026-11-26 13:30:00.123456+01:30',
      '2026-11-26T07:00:00.123456-05', '2026-11-26T12:00:00.1234569Z', '2026-11-26 13:00:00.123456+0100', '2026-11-26T12:00:00.123456z'
    ]) expect([text, parseIsoMicros(text)]).toEqual([text, want])
    expect(parseIsoMicros('2026-11-26 12:00:00.5+00')).toBe(T + 500000)
    expect(parseIsoMicros('2026-11-26')).toBe(T - 12 * 3600 * 1e6)
    expect(parseIsoMicros('2026-11-26 12:00')).toBe(T)
    // before 1970, the fraction still counts forward from the whole second
    expect(parseIsoMicros('1969-12-31 23:59:59.999999+00')).toBe(-1)
    // a year below 100 is that year, not 1900 and more as Date.UTC would have it
    expect(parseIsoMicros('0099-01-01T00:00:00Z')).toBe(BigInt(new Date('0099-01-01T00:00:00Z').getTime()) * 1000n)
  })

  it('takes what is not an ISO date-time for nothing', () => {
    for (const text of ['', 'now', '2026-13-01', '2026-11-26T25:00:00Z', '2026-11-26 12:00:00.123 BC', 'infinity', '2026-11-26T12:00:00+1']) {
      expect([text, parseIsoMicros(text)]).toEqual([text, undefined])
    }
  })

  it('writes ISO text with six fraction digits that reads back as the same value, a bigint beyond 2^53 included', () => {
    expect(microsToIso(T + 123456)).toBe('2026-11-26T12:00:00.123456Z')
    expect(microsToIso(-1)).toBe('1969-12-31T23:59:59.999999Z')
    const far = 253402300799999999n // 9999-12-31T23:59:59.999999Z
    expect(microsToIso(far)).toBe('9999-12-31T23:59:59.999999Z')
    expect(parseIsoMicros('9999-12-31 23:59:59.999999+00')).toBe(far)
    fc.assert(fc.property(fc.bigInt({ min: -62135596800000000n, max: far }), us => {
      const canonical = normalizeMicros(us, 'at')
      expect(parseIsoMicros(microsToIso(canonical))).toBe(canonical)
      // a number exactly when it is safe
      expect(typeof canonical).toBe(us <= BigInt(Number.MAX_SAFE_INTEGER) && us >= -BigInt(Number.MAX_SAFE_INTEGER) ? 'number' : 'bigint')
    }), { numRuns: 2000 })
  })

  it('normalizes Dates, numbers, bigints and text, and names the column when it cannot', () => {
    expect(normalizeMicros(new Date(Date.UTC(2026, 10, 26, 12)), 'at')).toBe(T)
    expect(normalizeMicros(1000.9, 'at')).toBe(1000)
    expect(normalizeMicros(-1000.9, 'at')).toBe(-1000)
    expect(normalizeMicros(BigInt(T), 'at')).toBe(T)
    expect(normalizeMicros(String(T + 7), 'at')).toBe(T + 7)
    expect(normalizeMicros(-0, 'at')).toBe(0)
    expect(Object.is(normalizeMicros(-0, 'at'), -0)).toBe(false)
    expect(() => normalizeMicros('yesterday', 'at')).toThrow(RowEncodingError)
    expect(() => normalizeMicros('yesterday', 'at')).toThrow(/column "at"/)
    expect(() => normalizeMicros(new Date(Number.NaN), 'at')).toThrow(/not a timestamp/)
    expect(() => normalizeMicros(MAX_DATE_US + 1n, 'at')).toThrow(/beyond the range of dates/)
    expect(() => normalizeMicros(Number.POSITIVE_INFINITY, 'at')).toThrow(/not a timestamp/)
  })

  const schema = (precision?: 'us'): DatasetSchema => ({
    version: 1,
    columns: [{ name: 'id', type: 'integer' }, { name: 'at', type: 'timestamp', ...(precision === undefined ? {} : { precision }) }],
    primaryKey: ['id'],
    ignoreColumns: [],
    eventTimeColumn: 'at'
  })

  it('keeps rows that differ below the millisecond apart in a microsecond column, and only there', () => {
    const us = new RowCodec(schema('us'))
    const ms = new RowCodec(schema())
    const a = { id: 1, at: '2026-11-26T12:00:00.123456Z' }
    const b = { id: 1, at: '2026-11-26T12:00:00.123457Z' }
    expect(us.rowDigest(us.encodeRow(a))).not.toBe(us.rowDigest(us.encodeRow(b)))
    expect(ms.rowDigest(ms.encodeRow(a))).toBe(ms.rowDigest(ms.encodeRow(b)))
    expect(us.decodeRow(us.encodeRow(a)).at).toBe('2026-11-26T12:00:00.123456Z')
    expect(us.eventTime(us.decodeValues(us.encodeRow(a)))).toBeCloseTo((T + 123456) / 1000, 6)
    // the precision is part of the fingerprint only when it is us, so millisecond schemas keep theirs
    expect(schemaFingerprint(schema('us'))).not.toBe(schemaFingerprint(schema()))
    expect(schemaFingerprint({ ...schema(), columns: schema().columns.map(c => ({ ...c })) })).toBe(ms.fingerprint)
  })

  it('refuses a precision on a column that is not a timestamp, naming it', () => {
    const bad = datasetSchemaSchema.safeParse({ columns: [{ name: 'id', type: 'integer', precision: 'us' }], primaryKey: ['id'] })
    expect(bad.success).toBe(false)
    expect(JSON.stringify(bad.error?.issues)).toMatch(/only a timestamp column has a precision/)
    expect(datasetSchemaSchema.safeParse({ columns: [{ name: 'id', type: 'integer' }, { name: 'at', type: 'timestamp', precision: 'ns' }], primaryKey: ['id'] }).success).toBe(false)
    expect(datasetSchemaSchema.safeParse({ columns: [{ name: 'id', type: 'integer' }, { name: 'at', type: 'timestamp', precision: 'us' }], primaryKey: ['id'] }).success).toBe(true)
  })
})
