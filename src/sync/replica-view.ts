/**
 * What the sync engine needs of a replica: its tree, the rows under a node as
 * listed by the digest index, and canonical rows by key. The agent backs it
 * with LevelDB; tests back it with arrays.
 */
import type { GetOptions } from '../stores/replica-store.ts'
import type { MerkleTree } from '../tree/merkle-tree.ts'
import { U64Sum } from '../util/u64.ts'

export interface IndexEntry {
  keyHash: bigint
  /** Canonical key bytes. */
  key: Uint8Array
  /** xxh64(keyHash ‖ rowDigest): what the row adds to its tree nodes, and what syncs compare. */
  entry: bigint
}

export interface ReplicaView {
  readonly tree: MerkleTree
  /** Index entries under a node, in key-hash order. */
  list: (level: number, index: number, options?: { signal?: AbortSignal }) => Promise<IndexEntry[]>
  /** Index entries under each of several nodes (best given in key-hash order), in one pass. */
  listMany: (nodes: ReadonlyArray<{ level: number, index: number }>, options?: { signal?: AbortSignal }) => Promise<IndexEntry[][]>
  /** Canonical row bytes for each key, undefined where the store lacks it (shortLived: see GetOptions). */
  getRows: (keys: Uint8Array[], options?: GetOptions) => Promise<Array<Uint8Array | undefined>>
}

/** The sum of the entries' hashes mod 2^64: what they add to their node. */
export function sumOfEntries (entries: readonly IndexEntry[]): U64Sum {
  const sum = new U64Sum()
  for (const e of entries) sum.add(e.entry)
  return sum
}
