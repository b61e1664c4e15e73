/**
 * An audit entry is stored as it always was: the bytes written are
 * pack(entry) and its hash is the SHA-256 of pack(body), though the body is
 * encoded once and the entry's bytes built from it (a fix's rows are not
 * packed twice). So logs written before and after verify alike.
 */
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { pack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { encodeEntry, type AuditEntry } from '../../src/audit/audit-log.ts'

type Body = Omit<AuditEntry, 'hash'>

const rows = fc.array(fc.uint8Array({ maxLength: 120 }), { maxLength: 40 })
const body: fc.Arbitrary<Body> = fc.record({
  kind: fc.constantFrom('intent', 'commit', 'abort', 'review'),
  fixId: fc.uuid(),
  correlationId: fc.string({ maxLength: 20 }),
  dataset: fc.string({ minLength: 1, maxLength: 20 }),
  region: fc.string({ minLength: 1, maxLength: 20 }),
  clock: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.nat()),
  sourceRegion: fc.string({ maxLength: 8 }),
  detected: fc.record({ missing: fc.nat(), changed: fc.nat(), extra: fc.nat() }),
  upserts: rows,
  deletes: rows,
  before: fc.array(fc.option(fc.uint8Array({ maxLength: 120 }), { nil: null }), { maxLength: 40 }),
  reason: fc.string({ maxLength: 300 }),
  seq: fc.integer({ min: 1, max: 2 ** 40 }),
  at: fc.integer({ min: 0, max: 2 ** 45 }),
  prevHash: fc.stringMatching(/^[0-9a-f]{64}$/)
}, { requiredKeys: ['kind', 'fixId', 'correlationId', 'dataset', 'region', 'clock', 'seq', 'at', 'prevHash'] }) as fc.Arbitrary<Body>

describe('audit entry encoding', () => {
  it('writes pack(entry), hashed as SHA-256 of pack(body) (property)', () => {
    fc.assert(fc.property(body, b => {
      const { entry, bytes } = encodeEntry(b)
      const hash = createHash('sha256').update(pack(b)).digest('hex')
      expect(entry).toEqual({ ...b, hash })
      expect(Buffer.compare(bytes, pack({ ...b, hash }))).toBe(0)
    }), { numRuns: 300 })
  })

  it('a fix of ten thousand rows, and a body that already names a hash, come out the same way', () => {
    const big: Body = { kind: 'intent', fixId: 'f', correlationId: 'c', dataset: 'd', region: 'r', clock: { r: 1 }, upserts: Array.from({ length: 10_000 }, (_, i) => new Uint8Array(100).fill(i % 256)), seq: 7, at: 1, prevHash: '0'.repeat(64) }
    const { entry, bytes } = encodeEntry(big)
    expect(Buffer.compare(bytes, pack(entry))).toBe(0)
    const odd = { ...big, upserts: [], hash: 'x' } as unknown as Body
    const encoded = encodeEntry(odd)
    expect(Buffer.compare(encoded.bytes, pack({ ...odd, hash: encoded.entry.hash }))).toBe(0)
  })
})
