/**
 * The sync engine's arithmetic without a bigint per operation gives what the
 * bigint arithmetic it replaced gave: 64-bit sums, truncated hashes, node
 * indices, the blocks on the wire, and the source's matching of a node's
 * rows against the client's hashes (test/helpers/reference.ts).
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compareBytes } from '../../src/policy/restore.ts'
import type { IndexEntry } from '../../src/sync/replica-view.ts'
import { matchListed } from '../../src/sync/responder.ts'
import { encodeChildSums, encodeReconcileBlock, listedHash, type HashWidth, type ListedHash } from '../../src/sync/wire.ts'
import { nodeOf, nodeOfHigh32 } from '../../src/tree/merkle-tree.ts'
import { bytesOfLatin1, hexOf, latin1Of } from '../../src/util/bytes.ts'
import { high32, low32, sameLowBits, U64Sum } from '../../src/util/u64.ts'
import { oldEncodeChildSums, oldEncodeReconcileBlock, oldListedHash, oldMatch } from '../helpers/reference.ts'

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })
const width = fc.constantFrom<HashWidth>(2, 3, 8)
const sign = (n: number): number => Math.sign(n)

describe('sync arithmetic without bigints', () => {
  it('U64Sum adds and subtracts mod 2^64 as bigints do (property)', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), u64), { maxLength: 60 }), ops => {
      const sum = new U64Sum()
      let want = 0n
      for (const [add, x] of ops) { if (add) { sum.add(x); want += x } else { sum.subtract(x); want -= x } }
      want = BigInt.asUintN(64, want)
      expect(sum.toBigInt()).toBe(want)
      expect(sum.equals(want)).toBe(true)
      expect(sum.equals(BigInt.asUintN(64, want + 1n))).toBe(false)
      const copy = sum.copy(); copy.plus(U64Sum.of(ops.map(([, x]) => x)))
      expect(copy.toBigInt()).toBe(BigInt.asUintN(64, want + ops.reduce((n, [, x]) => n + x, 0n)))
    }))
  })

  it('halves, low bits and node indices agree with bigint shifts and masks (property)', () => {
    fc.assert(fc.property(u64, u64, fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 6 }), (a, b, bits, level) => {
      expect(high32(a)).toBe(Number(a >> 32n))
      expect(low32(a)).toBe(Number(a & 0xffffffffn))
      const mask = (1n << BigInt(bits)) - 1n
      expect(sameLowBits(a, b, bits)).toBe((a & mask) === (b & mask))
      expect(sameLowBits(a, a ^ (1n << BigInt(bits - 1)), bits)).toBe(false)
      expect(sameLowBits(a + (2n ** 64n), a, 64)).toBe(true)
      expect(nodeOfHigh32(high32(a), level)).toBe(nodeOf(a, level))
    }), { numRuns: 2000 })
  })

  it('truncated hashes and the blocks carrying them are byte for byte what they were (property)', () => {
    const nodes = fc.uniqueArray(fc.record({ index: fc.integer({ min: 0, max: 65_535 }), entries: fc.array(u64, { maxLength: 30 }) }), { selector: n => n.index, maxLength: 20 })
    fc.assert(fc.property(nodes, width, (ns, w) => {
      for (const n of ns) for (const e of n.entries) expect(listedHash(e, w)).toBe(oldListedHash(e, w))
      expect([...encodeReconcileBlock(ns, w)]).toEqual([...oldEncodeReconcileBlock(ns, w)])
    }))
    fc.assert(fc.property(fc.array(fc.bigInt({ min: 0n, max: 2n ** 68n }), { maxLength: 48 }), fc.constantFrom<2 | 3 | 8>(2, 3, 8), (sums, w) => {
      expect([...encodeChildSums(sums, w)]).toEqual([...oldEncodeChildSums(sums, w)])
    }))
  })

  it('the source matches a node\'s rows against the client\'s hashes as it did, duplicates and all, small nodes and large (property)', () => {
    // few distinct high bytes, so hashes repeat on both sides
    const entry = fc.tuple(fc.integer({ min: 0, max: 5 }), fc.bigInt({ min: 0n, max: 2n ** 40n - 1n })).map(([hi, lo]) => (BigInt(hi) << 56n) | lo)
    const sizes = fc.constantFrom(0, 1, 3, 20, 40, 90)
    fc.assert(fc.property(width, sizes, sizes, fc.array(entry, { maxLength: 90 }), fc.array(entry, { maxLength: 90 }), (w, nHere, nThere, mine, theirs) => {
      const entries: IndexEntry[] = mine.slice(0, nHere).map(e => ({ entry: w === 8 ? e & 0xff000000000000ffn : e, keyHash: 0n, key: new Uint8Array(), rowDigest: 0n }))
      const hashes: ListedHash[] = theirs.slice(0, nThere).map(e => oldListedHash(w === 8 ? e & 0xff000000000000ffn : e, w))
      const toSend: IndexEntry[] = []
      const unmatched = matchListed(hashes, entries, w, toSend)
      const want = oldMatch(hashes, entries, w)
      expect(unmatched).toEqual(want.unmatched)
      expect(toSend.map(e => entries.indexOf(e))).toEqual(want.toSend.map(e => entries.indexOf(e)))
    }), { numRuns: 1500 })
  })
})

describe('bytes as strings and in order', () => {
  const bytes = fc.oneof(fc.uint8Array({ maxLength: 80 }), fc.uint8Array({ minLength: 8190, maxLength: 8200 }), fc.constantFrom(new Uint8Array(), Uint8Array.from([0]), Uint8Array.from([0, 0])))
  it('latin1Of is one char per byte: equal exactly for equal bytes, in compareBytes order (property)', () => {
    fc.assert(fc.property(bytes, bytes, (a, b) => {
      const x = latin1Of(a); const y = latin1Of(b)
      expect(x.length).toBe(a.length)
      expect(x === y).toBe(Buffer.compare(a, b) === 0)
      expect(sign(x < y ? -1 : x > y ? 1 : 0)).toBe(Buffer.compare(a, b))
      // and the bytes come back from it (the index keeps keys waiting for their pages as these strings)
      expect(Buffer.compare(bytesOfLatin1(x), a)).toBe(0)
    }), { numRuns: 500 })
    const every = Uint8Array.from({ length: 256 }, (_, i) => i)
    expect(Buffer.compare(bytesOfLatin1(latin1Of(every)), every)).toBe(0)
  })

  it('compareBytes orders as Buffer.compare, and hexOf writes what Buffer writes (property)', () => {
    const prefixed = fc.tuple(fc.uint8Array({ maxLength: 70 }), fc.uint8Array({ maxLength: 5 }), fc.uint8Array({ maxLength: 5 })).map(([p, a, b]) => [Uint8Array.from([...p, ...a]), Uint8Array.from([...p, ...b])] as const)
    fc.assert(fc.property(fc.oneof(fc.tuple(bytes, bytes), prefixed), ([a, b]) => {
      expect(compareBytes(a, b)).toBe(Buffer.compare(a, b))
      expect(hexOf(a)).toBe(Buffer.from(a).toString('hex'))
      expect(hexOf(b.subarray(1))).toBe(Buffer.from(b.subarray(1)).toString('hex'))
    }), { numRuns: 1000 })
  })
})
