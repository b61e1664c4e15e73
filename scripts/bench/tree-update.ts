/**
 * Section 3: cost of one row change in the in-memory Merkle tree, i.e.
 * MerkleTree.remove(old entry) + MerkleTree.add(new entry) at the depth
 * chosen for n rows, as the digest index does for every store change.
 */
import { entryHash, xxh64 } from '../../src/digest/hash.ts'
import { ordersCodec } from '../../cluster/orders.ts'
import { depthFor, MerkleTree } from '../../src/tree/merkle-tree.ts'
import { fixed, int, progress, table } from './report.ts'
import { median, timed } from './timing.ts'

const CHANGES = 1_000_000
/** Timed passes of CHANGES each (after one untimed warm-up pass); the median is reported. */
const PASSES = 3

export interface TreeUpdateResult {
  rows: number
  depth: number
  changes: number
  /** Time of each timed pass of `changes` changes. */
  passMs: number[]
}

/** A tree of n rows (key hashes of orders 0..n-1) and each row's current entry hash. */
function buildTree (n: number): { tree: MerkleTree, keyHashes: bigint[], entries: bigint[] } {
  const tree = new MerkleTree(depthFor(n))
  const keyHashes = new Array<bigint>(n)
  const entries = new Array<bigint>(n)
  for (let id = 0; id < n; id++) {
    const keyHash = ordersCodec.keyHash(ordersCodec.encodeKey({ order_id: id }))
    const entry = entryHash(keyHash, BigInt(id))
    keyHashes[id] = keyHash
    entries[id] = entry
    tree.addLeaf(keyHash, entry)
  }
  tree.rollUp()
  return { tree, keyHashes, entries }
}

/** New entry hashes, computed up front so that the timed loop is tree updates only. */
function newEntries (keyHashes: readonly bigint[], changes: number, pass: number): bigint[] {
  const out = new Array<bigint>(changes)
  for (let j = 0; j < changes; j++) out[j] = entryHash(keyHashes[j % keyHashes.length]!, xxh64(Buffer.from(`${pass}:${j}`)))
  return out
}

/** One pass: change rows 0, 1, 2, … (wrapping at n) to the next entries; returns its time. */
async function changeRows (tree: MerkleTree, keyHashes: readonly bigint[], entries: bigint[], next: readonly bigint[]): Promise<number> {
  const n = keyHashes.length
  const { ms } = await timed(() => {
    for (let j = 0; j < next.length; j++) {
      const row = j % n
      const keyHash = keyHashes[row]!
      tree.remove(keyHash, entries[row]!)
      tree.add(keyHash, next[j]!)
      entries[row] = next[j]!
    }
  })
  return ms
}

/** The tree the changes must leave: built from scratch over the final entries. */
function rebuilt (depth: number, keyHashes: readonly bigint[], entries: readonly bigint[]): MerkleTree {
  const tree = new MerkleTree(depth)
  keyHashes.forEach((k, i) => tree.addLeaf(k, entries[i]!))
  tree.rollUp()
  return tree
}

export async function measureTreeUpdates (n: number): Promise<TreeUpdateResult> {
  progress(`3: ${PASSES} x ${int(CHANGES)} row changes (remove + add) in a tree for ${int(n)} rows`)
  const { tree, keyHashes, entries } = buildTree(n)
  const passMs: number[] = []
  for (let pass = 0; pass <= PASSES; pass++) {
    const ms = await changeRows(tree, keyHashes, entries, newEntries(keyHashes, CHANGES, pass))
    if (pass > 0) passMs.push(ms)
  }
  const expected = rebuilt(tree.depth, keyHashes, entries)
  if (tree.root.sum !== expected.root.sum || tree.root.count !== n) throw new Error('tree after add/remove differs from a tree rebuilt from scratch')
  return { rows: n, depth: tree.depth, changes: CHANGES, passMs }
}

export function treeUpdateReport (r: TreeUpdateResult): string {
  const ns = (ms: number): number => ms * 1e6 / r.changes
  const ms = median(r.passMs)
  return [
    '## 3. Tree update cost',
    '',
    `${r.passMs.length} timed passes (after one warm-up pass) of ${int(r.changes)} row changes, each MerkleTree.remove(old entry) + MerkleTree.add(new entry) on one of the ${int(r.rows)} rows, ` +
    `in a tree of depth ${r.depth} (depthFor(${int(r.rows)})), so ${r.depth + 1} nodes touched per add and per remove. ` +
    'Key and entry hashes are computed before the timed loop; the result is checked against a tree rebuilt from scratch.',
    '',
    table(['depth', 'changes per pass', 'time per pass (median)', 'ns / change (median)', 'ns / change (fastest … slowest pass)', 'changes / s'], [
      [String(r.depth), int(r.changes), `${int(ms)} ms`, `**${fixed(ns(ms), 1)}**`,
        `${fixed(ns(Math.min(...r.passMs)), 1)} … ${fixed(ns(Math.max(...r.passMs)), 1)}`, int(r.changes / (ms / 1000))]
    ])
  ].join('\n')
}
