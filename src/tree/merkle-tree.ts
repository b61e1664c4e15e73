/**
 * The hash-space Merkle tree of one dataset replica.
 *
 * Rows are placed by key hash, never by store key order, so trees built from
 * any two stores compare directly. A node at depth d is a prefix of d hex
 * digits of the key hash; its value is (count, sum of entry hashes mod 2^64).
 * Sums are additive: a row change updates depth+1 nodes in O(depth), no
 * rebuild is needed, and trees of partitions can be added together.
 *
 * Guaranteed: node(l, i) equals the sum over the rows whose key hash starts
 * with i at level l, after every add/remove. Not guaranteed: thread safety
 * (one owner mutates it).
 */
import { MAX_TREE_DEPTH, TARGET_LEAF_ROWS, TREE_FANOUT } from '../constants.ts'

export interface NodeValue {
  count: number
  sum: bigint
}

/** Node index of a key hash at a level: its first `level` hex digits. */
export function nodeOf (keyHash: bigint, level: number): number {
  if (level === 0) return 0
  return Number(keyHash >> BigInt(64 - 4 * level))
}

/** nodeOf from the key hash's high 32 bits (levels up to 8), when they are at hand: no bigint arithmetic. */
export function nodeOfHigh32 (keyHashHi: number, level: number): number {
  // `>>> 32` would shift by 0: level 0 is the root
  return level === 0 ? 0 : keyHashHi >>> (32 - 4 * level)
}

/** The key-hash range [start, end) a node covers. */
export function nodeRange (level: number, index: number): { start: bigint, end: bigint } {
  const shift = BigInt(64 - 4 * level)
  const start = BigInt(index) << shift
  return { start, end: start + (1n << shift) }
}

/** Whether a key hash lies under a node. */
export function isUnder (keyHash: bigint, level: number, index: number): boolean {
  return nodeOf(keyHash, level) === index
}

/** Tree depth for a row count: the shallowest that keeps leaves at or under the target size. */
export function depthFor (rows: number, minDepth = 1): number {
  let depth = minDepth
  while (depth < MAX_TREE_DEPTH && rows / TREE_FANOUT ** depth > TARGET_LEAF_ROWS) depth++
  return depth
}

export class MerkleTree {
  readonly depth: number
  private readonly counts: Uint32Array[]
  private readonly sums: BigUint64Array[]

  /** `levels`: the arrays of a deeper tree's upper levels, taken as they are (truncated()). */
  constructor (depth: number, levels?: { counts: Uint32Array[], sums: BigUint64Array[] }) {
    if (!Number.isInteger(depth) || depth < 1 || depth > MAX_TREE_DEPTH) throw new RangeError(`tree depth ${depth} is outside 1..${MAX_TREE_DEPTH}`)
    this.depth = depth
    this.counts = levels?.counts.slice(0, depth + 1) ?? []
    this.sums = levels?.sums.slice(0, depth + 1) ?? []
    if (levels !== undefined) return
    for (let level = 0; level <= depth; level++) {
      this.counts.push(new Uint32Array(TREE_FANOUT ** level))
      this.sums.push(new BigUint64Array(TREE_FANOUT ** level))
    }
  }

  get rowCount (): number { return this.counts[0]![0]! }

  get root (): NodeValue { return this.node(0, 0) }

  node (level: number, index: number): NodeValue {
    this.checkLevel(level)
    return { count: this.counts[level]![index] ?? 0, sum: this.sums[level]![index] ?? 0n }
  }

  count (level: number, index: number): number { return this.counts[level]?.[index] ?? 0 }

  sum (level: number, index: number): bigint { return this.sums[level]?.[index] ?? 0n }

  /** Adds one row's entry hash on every level: O(depth). */
  add (keyHash: bigint, entryHash: bigint): void { this.update(keyHash, entryHash, 1) }

  /** Removes one row's entry hash on every level: O(depth). */
  remove (keyHash: bigint, entryHash: bigint): void { this.update(keyHash, -entryHash, -1) }

  /** Bulk build: add to the leaf level only, then call rollUp() once. */
  addLeaf (keyHash: bigint, entryHash: bigint): void {
    const i = nodeOf(keyHash, this.depth)
    this.counts[this.depth]![i]! += 1
    this.sums[this.depth]![i]! += entryHash
  }

  /** addLeaf with the key hash's high 32 bits already taken. */
  addLeafAt (keyHashHi: number, entryHash: bigint): void {
    const i = keyHashHi >>> (32 - 4 * this.depth)
    this.counts[this.depth]![i]! += 1
    this.sums[this.depth]![i]! += entryHash
  }

  /** Recomputes every inner level from the leaves. */
  rollUp (): void {
    for (let level = this.depth - 1; level >= 0; level--) {
      const counts = this.counts[level]!; const sums = this.sums[level]!
      const childCounts = this.counts[level + 1]!; const childSums = this.sums[level + 1]!
      for (let i = 0; i < counts.length; i++) {
        let c = 0; let s = 0n
        const base = i * TREE_FANOUT
        for (let j = 0; j < TREE_FANOUT; j++) { c += childCounts[base + j]!; s += childSums[base + j]! }
        counts[i] = c
        sums[i] = s // BigUint64Array stores mod 2^64
      }
    }
  }

  /**
   * The tree of the same rows at a depth no deeper than this one's: this
   * tree's upper levels (rolled up), their arrays shared, not copied.
   */
  truncated (depth: number): MerkleTree {
    if (depth === this.depth) return this
    if (!Number.isInteger(depth) || depth < 1 || depth > this.depth) throw new RangeError(`depth ${depth} is outside 1..${this.depth}`)
    return new MerkleTree(depth, { counts: this.counts, sums: this.sums })
  }

  private update (keyHash: bigint, delta: bigint, countDelta: number): void {
    const hi = Number(keyHash >> 32n)
    for (let level = 0; level <= this.depth; level++) {
      const i = level === 0 ? 0 : hi >>> (32 - 4 * level)
      this.counts[level]![i]! += countDelta
      this.sums[level]![i]! += delta
    }
  }

  private checkLevel (level: number): void {
    if (!Number.isInteger(level) || level < 0 || level > this.depth) throw new RangeError(`level ${level} is outside 0..${this.depth}`)
  }
}

/** Pairs a TreeBuilder holds as they come (12 bytes each, up to 12 MiB): a table of up to a million rows is built from them, as ever. */
export const BUILDER_PAIR_LIMIT = 1 << 20
/**
 * The depth a TreeBuilder gathers into once its pairs are full (the tree's
 * levels take 12.8 MiB): the tree of any count up to 33,554,432 rows is
 * that tree's upper levels.
 */
export const BUILDER_FINE_DEPTH = 5

export interface TreeBuilderOptions {
  /** The shallowest depth the tree may have (a partitioned dataset's). */
  minDepth?: number
  /** Rows the build is likely to see (the tree it replaces): past its pairs it gathers at least as deep as their depth. */
  expectedRows?: number
  /** For tests: BUILDER_PAIR_LIMIT and BUILDER_FINE_DEPTH. */
  pairLimit?: number
  fineDepth?: number
}

/**
 * Builds the tree of a full scan, whose row count, and so whose depth, is
 * known only at its end, in memory bounded whatever the count. Up to
 * BUILDER_PAIR_LIMIT rows it keeps each (key hash, entry hash) pair (12
 * bytes a row) and builds the tree of their depth. Past that it adds every
 * row to a tree deeper than the count calls for (BUILDER_FINE_DEPTH, or the
 * expected count's depth if deeper), and the tree built is that tree's upper
 * levels: a node's value is the same at every depth, since a node is a
 * prefix of the key hash. Before, every pair was kept to the end: at
 * 10,000,000 rows, 192 MiB of arrays and 288 MiB while they doubled, where
 * the tree itself takes 12 MiB.
 *
 * A count past what the fine tree can hold at the target leaf size (over
 * 33,554,432 rows unless more were expected) gives that tree, one level
 * shallower than ideal: every node is still exact, and the index's resize
 * check (twice the rows of a level) builds it again with the count expected.
 */
export class TreeBuilder {
  private hi: Uint32Array
  private entries: BigUint64Array
  private pairs = 0
  private fine: MerkleTree | undefined
  private readonly minDepth: number
  private readonly pairLimit: number
  /** Rows pushed. */
  length = 0

  constructor (private readonly options: TreeBuilderOptions = {}) {
    this.minDepth = options.minDepth ?? 1
    this.pairLimit = options.pairLimit ?? BUILDER_PAIR_LIMIT
    this.hi = new Uint32Array(Math.min(4096, this.pairLimit))
    this.entries = new BigUint64Array(this.hi.length)
  }

  /** Whether it gathers into a tree (it has seen more than its pairs hold) rather than keeping pairs. */
  get gathering (): boolean { return this.fine !== undefined }

  push (keyHash: bigint, entry: bigint): void { this.pushAt(Number(keyHash >> 32n), entry) }

  /** push() with the key hash's high 32 bits already taken. */
  pushAt (keyHashHi: number, entry: bigint): void {
    this.length++
    if (this.fine === undefined && this.pairs === this.hi.length) {
      if (this.pairs >= this.pairLimit) this.gather()
      else this.grow()
    }
    if (this.fine !== undefined) { this.fine.addLeafAt(keyHashHi, entry); return }
    this.hi[this.pairs] = keyHashHi
    this.entries[this.pairs] = entry
    this.pairs++
  }

  /** The tree of every row pushed, at depthFor(rows) (see the class comment for the one exception). */
  build (): MerkleTree {
    const depth = depthFor(this.length, this.minDepth)
    if (this.fine !== undefined) {
      this.fine.rollUp()
      return this.fine.truncated(Math.min(depth, this.fine.depth))
    }
    const tree = new MerkleTree(depth)
    for (let i = 0; i < this.pairs; i++) tree.addLeafAt(this.hi[i]!, this.entries[i]!)
    tree.rollUp()
    return tree
  }

  /** Lets go of what it holds: a build that goes on after its tree is built need not keep it. */
  release (): void {
    this.hi = new Uint32Array(0)
    this.entries = new BigUint64Array(0)
    this.pairs = 0
    this.fine = undefined
    this.length = 0
  }

  private grow (): void {
    const size = Math.min(this.hi.length * 2, this.pairLimit)
    const hi = new Uint32Array(size); hi.set(this.hi); this.hi = hi
    const entries = new BigUint64Array(size); entries.set(this.entries); this.entries = entries
  }

  /** Moves the pairs into the fine tree, and lets go of them. */
  private gather (): void {
    const expected = this.options.expectedRows === undefined ? 1 : depthFor(this.options.expectedRows, this.minDepth)
    const fine = new MerkleTree(Math.min(MAX_TREE_DEPTH, Math.max(this.minDepth, this.options.fineDepth ?? BUILDER_FINE_DEPTH, expected)))
    for (let i = 0; i < this.pairs; i++) fine.addLeafAt(this.hi[i]!, this.entries[i]!)
    this.fine = fine
    this.hi = new Uint32Array(0)
    this.entries = new BigUint64Array(0)
    this.pairs = 0
  }
}
