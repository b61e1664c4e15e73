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

  constructor (depth: number) {
    if (!Number.isInteger(depth) || depth < 1 || depth > MAX_TREE_DEPTH) throw new RangeError(`tree depth ${depth} is outside 1..${MAX_TREE_DEPTH}`)
    this.depth = depth
    this.counts = []
    this.sums = []
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

/**
 * Collects (key hash, entry hash) pairs in typed arrays (12 bytes a row)
 * while the row count is still unknown, then builds a tree of the right depth.
 */
export class LeafBuffer {
  private hi = new Uint32Array(4096)
  private entries = new BigUint64Array(4096)
  length = 0

  push (keyHash: bigint, entry: bigint): void {
    if (this.length === this.hi.length) {
      const hi = new Uint32Array(this.hi.length * 2); hi.set(this.hi); this.hi = hi
      const entries = new BigUint64Array(this.entries.length * 2); entries.set(this.entries); this.entries = entries
    }
    this.hi[this.length] = Number(keyHash >> 32n)
    this.entries[this.length] = entry
    this.length++
  }

  build (minDepth = 1): MerkleTree {
    const tree = new MerkleTree(depthFor(this.length, minDepth))
    for (let i = 0; i < this.length; i++) tree.addLeafAt(this.hi[i]!, this.entries[i]!)
    tree.rollUp()
    return tree
  }

  /** Lets go of the entries (12 bytes a row): a build that goes on after its tree is built need not hold them. */
  release (): void {
    this.hi = new Uint32Array(0)
    this.entries = new BigUint64Array(0)
    this.length = 0
  }
}
