import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BUILDER_FINE_DEPTH, BUILDER_PAIR_LIMIT, depthFor, isUnder, MerkleTree, nodeOf, nodeRange, TreeBuilder, type TreeBuilderOptions } from '../../src/tree/merkle-tree.ts'

const U64 = 2n ** 64n
const MASK = U64 - 1n

type Entry = [keyHash: bigint, entryHash: bigint]

/** Node index from the key hash's hex digits: an oracle independent of nodeOf's shifts. */
function prefixIndex (keyHash: bigint, level: number): number {
  return level === 0 ? 0 : Number.parseInt(keyHash.toString(16).padStart(16, '0').slice(0, level), 16)
}

function fromScratch (depth: number, entries: readonly Entry[]): MerkleTree {
  const tree = new MerkleTree(depth)
  for (const [k, e] of entries) tree.addLeaf(k, e)
  tree.rollUp()
  return tree
}

/** Every node of every level, as comparable strings. */
function snapshot (tree: MerkleTree, maxLevel = tree.depth): string[][] {
  const out: string[][] = []
  for (let level = 0; level <= maxLevel; level++) {
    const nodes: string[] = []
    for (let i = 0; i < 16 ** level; i++) {
      const { count, sum } = tree.node(level, i)
      nodes.push(`${count}:${sum}`)
    }
    out.push(nodes)
  }
  return out
}

/** Key hashes spread over the whole space plus a few crowded prefixes and the extremes. */
const keyHashArb = fc.oneof(
  { arbitrary: fc.bigInt({ min: 0n, max: MASK }), weight: 4 },
  { arbitrary: fc.constantFrom(0n, MASK, 1n << 60n, (1n << 60n) - 1n, 0xabcdef0000000000n, 0xabcdef0000000001n), weight: 1 },
  { arbitrary: fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }).map(low => 0x5a5a5an << 40n | low), weight: 1 }
)
const entryHashArb = fc.oneof(fc.bigInt({ min: 0n, max: MASK }), fc.constantFrom(0n, 1n, MASK))
const entryArb: fc.Arbitrary<Entry> = fc.tuple(keyHashArb, entryHashArb)
const depthArb = fc.integer({ min: 1, max: 3 })

describe('depthFor', () => {
  it('keeps leaves at or under 32 rows on average, up to depth 6', () => {
    const cases: Array<[number, number]> = [
      [0, 1], [1, 1], [512, 1],
      [513, 2], [8192, 2],
      [8193, 3], [131_072, 3],
      [131_073, 4], [2_097_152, 4],
      [2_097_153, 5], [33_554_432, 5],
      [33_554_433, 6], [536_870_912, 6], [10 ** 12, 6]
    ]
    for (const [rows, depth] of cases) expect(depthFor(rows), `${rows} rows`).toBe(depth)
  })

  it('never decreases as rows grow', () => {
    fc.assert(fc.property(fc.nat(1e9), fc.nat(1e9), (a, b) => {
      const [lo, hi] = a <= b ? [a, b] : [b, a]
      expect(depthFor(lo)).toBeLessThanOrEqual(depthFor(hi))
    }))
  })
})

describe('node addressing', () => {
  it('nodeOf, nodeRange and isUnder agree for any key hash and level', () => {
    fc.assert(fc.property(keyHashArb, fc.integer({ min: 0, max: 6 }), (keyHash, level) => {
      const index = nodeOf(keyHash, level)
      expect(index).toBe(prefixIndex(keyHash, level))
      const { start, end } = nodeRange(level, index)
      expect(start <= keyHash && keyHash < end).toBe(true)
      expect(end - start).toBe(1n << BigInt(64 - 4 * level))
      expect(isUnder(keyHash, level, index)).toBe(true)
      if (index > 0) expect(isUnder(keyHash, level, index - 1)).toBe(false)
      if (index < 16 ** level - 1) expect(isUnder(keyHash, level, index + 1)).toBe(false)
      // the range's own edges map back to the node
      expect(nodeOf(start, level)).toBe(index)
      expect(nodeOf(end - 1n, level)).toBe(index)
      // the child holding the key hash lies inside the parent
      if (level < 6) {
        const child = nodeOf(keyHash, level + 1)
        expect(Math.floor(child / 16)).toBe(index)
        const c = nodeRange(level + 1, child)
        expect(c.start >= start && c.end <= end).toBe(true)
      }
    }), { numRuns: 500 })
  })

  it('tiles each level with ranges and splits each node into its 16 children', () => {
    expect(nodeRange(0, 0)).toEqual({ start: 0n, end: U64 })
    for (let level = 1; level <= 3; level++) {
      const n = 16 ** level
      expect(nodeRange(level, 0).start).toBe(0n)
      expect(nodeRange(level, n - 1).end).toBe(U64)
      for (let i = 0; i < n - 1; i++) expect(nodeRange(level, i).end).toBe(nodeRange(level, i + 1).start)
      for (let i = 0; i < 16 ** (level - 1); i++) {
        const parent = nodeRange(level - 1, i)
        expect(nodeRange(level, i * 16).start).toBe(parent.start)
        expect(nodeRange(level, i * 16 + 15).end).toBe(parent.end)
      }
    }
    expect(nodeOf(MASK, 6)).toBe(16 ** 6 - 1)
    expect(nodeOf(0n, 6)).toBe(0)
    expect(isUnder(MASK, 0, 0)).toBe(true)
    expect(nodeOf(0xf123456789abcdefn, 1)).toBe(15)
    expect(nodeOf(0xf123456789abcdefn, 4)).toBe(0xf123)
  })
})

describe('MerkleTree', () => {
  it('rejects depths outside 1..6 and levels outside 0..depth', () => {
    for (const d of [0, 7, 1.5, -1]) expect(() => new MerkleTree(d)).toThrow(RangeError)
    const tree = new MerkleTree(2)
    expect(() => tree.node(3, 0)).toThrow(RangeError)
    expect(() => tree.node(-1, 0)).toThrow(RangeError)
    expect(tree.node(2, 255)).toEqual({ count: 0, sum: 0n })
  })

  it('places a row on the node of its key-hash prefix at every level', () => {
    const tree = new MerkleTree(3)
    tree.add(0xabc0000000000000n, 7n)
    tree.add(0xabd0000000000000n, 5n)
    expect(tree.root).toEqual({ count: 2, sum: 12n })
    expect(tree.rowCount).toBe(2)
    expect(tree.node(1, 0xa)).toEqual({ count: 2, sum: 12n })
    expect(tree.node(2, 0xab)).toEqual({ count: 2, sum: 12n })
    expect(tree.node(3, 0xabc)).toEqual({ count: 1, sum: 7n })
    expect(tree.node(3, 0xabd)).toEqual({ count: 1, sum: 5n })
    expect(tree.count(1, 0xb)).toBe(0)
    expect(tree.sum(3, 0xabd)).toBe(5n)
    // sums wrap mod 2^64
    tree.add(0xabc0000000000001n, MASK)
    expect(tree.node(3, 0xabc)).toEqual({ count: 2, sum: 6n })
  })

  it('after any add/remove sequence, every node equals a from-scratch build (property)', () => {
    const opsArb = fc.array(fc.record({ remove: fc.boolean(), entry: entryArb, pick: fc.nat() }), { maxLength: 300 })
    fc.assert(fc.property(depthArb, opsArb, (depth, ops) => {
      const tree = new MerkleTree(depth)
      const present: Entry[] = []
      for (const op of ops) {
        if (op.remove && present.length > 0) {
          const [victim] = present.splice(op.pick % present.length, 1)
          tree.remove(victim![0], victim![1])
        } else {
          tree.add(op.entry[0], op.entry[1])
          present.push(op.entry)
        }
      }
      expect(snapshot(tree)).toEqual(snapshot(fromScratch(depth, present)))
      expect(tree.rowCount).toBe(present.length)
      expect(tree.root.sum).toBe(present.reduce((s, [, e]) => (s + e) & MASK, 0n))
      // and the from-scratch build matches the hex-prefix oracle at the leaves
      const leaves = new Map<number, { count: number, sum: bigint }>()
      for (const [k, e] of present) {
        const i = prefixIndex(k, depth)
        const v = leaves.get(i) ?? { count: 0, sum: 0n }
        leaves.set(i, { count: v.count + 1, sum: (v.sum + e) & MASK })
      }
      for (const [i, v] of leaves) expect(tree.node(depth, i)).toEqual(v)
    }), { numRuns: 150 })
  })

  it('is additive: the tree of A ∪ B is the per-node sum of the trees of A and B (property)', () => {
    const setArb = fc.array(entryArb, { maxLength: 200 })
    fc.assert(fc.property(depthArb, setArb, setArb, (depth, a, b) => {
      const ta = fromScratch(depth, a)
      const tb = fromScratch(depth, b)
      const incremental = new MerkleTree(depth)
      for (const [k, e] of [...a, ...b]) incremental.add(k, e)
      const union = fromScratch(depth, [...a, ...b])
      expect(snapshot(incremental)).toEqual(snapshot(union))
      const added: string[][] = []
      for (let level = 0; level <= depth; level++) {
        const nodes: string[] = []
        for (let i = 0; i < 16 ** level; i++) nodes.push(`${ta.count(level, i) + tb.count(level, i)}:${(ta.sum(level, i) + tb.sum(level, i)) % U64}`)
        added.push(nodes)
      }
      expect(snapshot(union)).toEqual(added)
    }), { numRuns: 100 })
  })

  it('returns every node to zero when every added entry is removed (property)', () => {
    fc.assert(fc.property(depthArb, fc.array(entryArb, { minLength: 1, maxLength: 200 }), fc.nat(), (depth, entries, seed) => {
      const tree = new MerkleTree(depth)
      for (const [k, e] of entries) tree.add(k, e)
      expect(tree.rowCount).toBe(entries.length)
      // remove in another order than added
      const order = entries.map((e, i) => ({ e, r: (i * 2654435761 + seed) % 1_000_003 })).sort((x, y) => x.r - y.r)
      for (const { e: [k, e] } of order) tree.remove(k, e)
      expect(snapshot(tree).flat().filter(node => node !== '0:0')).toEqual([])
    }), { numRuns: 100 })
  })

  const built = (entries: readonly Entry[], options?: TreeBuilderOptions): TreeBuilder => {
    const builder = new TreeBuilder(options)
    for (const [k, e] of entries) builder.push(k, e)
    return builder
  }
  const spread = (n: number, salt = 0n): Entry[] => Array.from({ length: n }, (_, i) => [(BigInt(i) * 0x9e3779b97f4a7c15n + salt) & MASK, (BigInt(i) * 1_000_003n + salt) & MASK])

  it('TreeBuilder builds the from-scratch tree at depthFor(rows), from its pairs and past its initial capacity', () => {
    fc.assert(fc.property(fc.array(entryArb, { maxLength: 300 }), entries => {
      const tree = built(entries).build()
      expect(tree.depth).toBe(depthFor(entries.length))
      expect(snapshot(tree)).toEqual(snapshot(fromScratch(tree.depth, entries)))
    }), { numRuns: 50 })
    const many = spread(9000)
    const builder = built(many)
    expect(builder.length).toBe(9000)
    expect(builder.gathering).toBe(false)
    const tree = builder.build()
    expect(tree.depth).toBe(3)
    expect(snapshot(tree)).toEqual(snapshot(fromScratch(3, many)))
  })

  it('TreeBuilder past its pairs gathers into a deeper tree and builds the same tree as from scratch, at any count (property)', () => {
    // small limits stand for BUILDER_PAIR_LIMIT and BUILDER_FINE_DEPTH: 40 pairs, then a tree of depth 3
    fc.assert(fc.property(fc.array(entryArb, { maxLength: 400 }), fc.integer({ min: 1, max: 4 }), (entries, minDepth) => {
      const builder = built(entries, { pairLimit: 40, fineDepth: 3, minDepth })
      expect(builder.gathering).toBe(entries.length > 40)
      const tree = builder.build()
      const want = depthFor(entries.length, minDepth)
      expect(tree.depth).toBe(want)
      expect(snapshot(tree)).toEqual(snapshot(fromScratch(want, entries)))
    }), { numRuns: 100 })
    // 20,000 rows call for depth 3 (leaves of 32 rows or fewer): gathered at depth 4, built at 3
    const rows = spread(20_000, 7n)
    const gathered = built(rows, { pairLimit: 64, fineDepth: 4 })
    expect(gathered.gathering).toBe(true)
    const tree = gathered.build()
    expect(tree.depth).toBe(3)
    expect(snapshot(tree)).toEqual(snapshot(fromScratch(3, rows)))
    // the tree built can be changed as any other
    tree.remove(rows[0]![0], rows[0]![1])
    expect(snapshot(tree)).toEqual(snapshot(fromScratch(3, rows.slice(1))))
  })

  it('TreeBuilder: rows past what its gathering tree holds give that tree, every node exact; expecting them gives the ideal depth', () => {
    // 20,000 rows gathered at depth 2 (fineDepth 2): ideal is 3, the tree is 2, one level shallow
    const rows = spread(20_000, 3n)
    const shallow = built(rows, { pairLimit: 64, fineDepth: 2 }).build()
    expect(shallow.depth).toBe(2)
    expect(snapshot(shallow)).toEqual(snapshot(fromScratch(2, rows)))
    // a rebuild expecting them (the index passes the rows of the tree it replaces) gathers deep enough
    const ideal = built(rows, { pairLimit: 64, fineDepth: 2, expectedRows: 20_000 }).build()
    expect(ideal.depth).toBe(3)
    expect(snapshot(ideal)).toEqual(snapshot(fromScratch(3, rows)))
  })

  it('TreeBuilder with its defaults keeps pairs up to BUILDER_PAIR_LIMIT rows, gathers past them, and builds the same tree either way', () => {
    const rows = spread(BUILDER_PAIR_LIMIT + 1, 11n)
    const builder = new TreeBuilder()
    for (let i = 0; i < BUILDER_PAIR_LIMIT; i++) builder.push(rows[i]![0], rows[i]![1])
    expect(builder.gathering).toBe(false)
    builder.push(rows[BUILDER_PAIR_LIMIT]![0], rows[BUILDER_PAIR_LIMIT]![1])
    expect(builder.gathering).toBe(true)
    const tree = builder.build()
    expect(tree.depth).toBe(depthFor(rows.length))
    expect(snapshot(tree)).toEqual(snapshot(fromScratch(tree.depth, rows)))
    // the gathering tree serves every count whose ideal depth is at most BUILDER_FINE_DEPTH: up to 32 rows a leaf of it
    expect(depthFor(32 * 16 ** BUILDER_FINE_DEPTH)).toBe(BUILDER_FINE_DEPTH)
    expect(depthFor(32 * 16 ** BUILDER_FINE_DEPTH + 1)).toBe(BUILDER_FINE_DEPTH + 1)
  })
})
