/**
 * A replica of the sample orders held in typed arrays, for sync benchmarks at
 * sizes where MemoryReplica's object per row does not fit (10,000,000 rows):
 * key hashes, row digests and order ids sorted by key hash, 20 bytes a row.
 * Rows and keys are not kept; they are encoded again from the order id when
 * the exchange asks for them (orderRow is deterministic), so what the sync
 * engine sees (tree, index entries under a node, canonical rows) is exactly
 * what MemoryReplica would give for the same rows (test/bench checks it).
 *
 * A replica that differs from a source by a drift is derived from the
 * source's arrays (updated digests recomputed, deleted rows left out,
 * inserted rows merged in), not recomputed for every row.
 */
import { ordersCodec as codec, orderRow } from '../../cluster/orders.ts'
import { entryHash } from '../../src/digest/hash.ts'
import { depthFor, MerkleTree, nodeRange } from '../../src/tree/merkle-tree.ts'
import type { IndexEntry, ReplicaView } from '../../src/sync/replica-view.ts'

/** How a replica differs from the source, by order id (orderRow(id, 1) for updated; ids >= n inserted). */
export interface OrdersDrift {
  updated: readonly number[]
  deleted: readonly number[]
  inserted: readonly number[]
}

/** Ids fit in 24 bits beside the 40 high bits of the key hash in one sortable 64-bit word. */
const MAX_ROWS = 2 ** 24 - 1
const ID_BITS = 24n
const ID_MASK = (1n << ID_BITS) - 1n

interface Entries { keyHash: BigUint64Array, digest: BigUint64Array, id: Uint32Array }

const encodeRow = (id: number, version: number): Uint8Array => codec.encodeRow(orderRow(id, version))
const encodeKey = (id: number): Uint8Array => codec.encodeKey({ order_id: id })

/** Entries for rows given by id and version, sorted by key hash. */
function sortedEntries (ids: ArrayLike<number>, version: (id: number) => number): Entries {
  const n = ids.length
  if (n > MAX_ROWS) throw new Error(`a compact replica holds at most ${MAX_ROWS} rows, not ${n}`)
  const keyHash = new BigUint64Array(n)
  const digest = new BigUint64Array(n)
  const words = new BigUint64Array(n)
  for (let i = 0; i < n; i++) {
    const id = ids[i]!
    keyHash[i] = codec.keyHash(encodeKey(id))
    digest[i] = codec.rowDigest(encodeRow(id, version(id)))
    // native typed-array sort on (high 40 bits of the key hash, position): no comparator call per pair
    words[i] = (keyHash[i]! & ~ID_MASK) | BigInt(i)
  }
  words.sort()
  const out: Entries = { keyHash: new BigUint64Array(n), digest: new BigUint64Array(n), id: new Uint32Array(n) }
  for (let j = 0; j < n; j++) {
    const i = Number(words[j]! & ID_MASK)
    out.keyHash[j] = keyHash[i]!
    out.digest[j] = digest[i]!
    out.id[j] = ids[i]!
  }
  fixOrder(out)
  return out
}

/** Insertion sort by the full key hash: the array is already ordered by its high 40 bits, so only ties move. */
function fixOrder (e: Entries): void {
  for (let j = 1; j < e.keyHash.length; j++) {
    const h = e.keyHash[j]!
    if (e.keyHash[j - 1]! <= h) continue
    const d = e.digest[j]!; const id = e.id[j]!
    let k = j - 1
    while (k >= 0 && e.keyHash[k]! > h) { e.keyHash[k + 1] = e.keyHash[k]!; e.digest[k + 1] = e.digest[k]!; e.id[k + 1] = e.id[k]!; k-- }
    e.keyHash[k + 1] = h; e.digest[k + 1] = d; e.id[k + 1] = id
  }
}

export class CompactReplica implements ReplicaView {
  readonly tree: MerkleTree
  readonly rows: number
  private readonly e: Entries
  /** Version of each present id below `n` (255: absent); ids from n up are the inserted ones. */
  private readonly versions: Uint8Array
  private readonly inserted: ReadonlySet<number>

  private constructor (entries: Entries, versions: Uint8Array, inserted: ReadonlySet<number>) {
    this.e = entries
    this.versions = versions
    this.inserted = inserted
    this.rows = entries.keyHash.length
    this.tree = new MerkleTree(depthFor(this.rows, codec.minTreeDepth))
    for (let i = 0; i < this.rows; i++) this.tree.addLeaf(entries.keyHash[i]!, entryHash(entries.keyHash[i]!, entries.digest[i]!))
    this.tree.rollUp()
  }

  /** Orders [0, n), each orderRow(id, 0). */
  static source (n: number): CompactReplica {
    const ids = new Uint32Array(n)
    for (let i = 0; i < n; i++) ids[i] = i
    return new CompactReplica(sortedEntries(ids, () => 0), new Uint8Array(n), new Set())
  }

  /** This replica's rows with a drift applied (see OrdersDrift). */
  drifted (drift: OrdersDrift): CompactReplica {
    const versions = this.versions.slice()
    for (const id of drift.updated) versions[id] = 1
    for (const id of drift.deleted) versions[id] = 255
    const updated = new Set(drift.updated)
    const added = sortedEntries(drift.inserted, () => 0)
    const kept = this.rows - drift.deleted.length
    const total = kept + added.keyHash.length
    const out: Entries = { keyHash: new BigUint64Array(total), digest: new BigUint64Array(total), id: new Uint32Array(total) }
    // merge the source's entries (less the deleted, updated ones re-digested) with the inserted ones, both in key-hash order
    let a = 0; let b = 0; let o = 0
    const take = (from: Entries, i: number, digest: bigint): void => { out.keyHash[o] = from.keyHash[i]!; out.digest[o] = digest; out.id[o] = from.id[i]!; o++ }
    while (a < this.rows || b < added.keyHash.length) {
      if (a < this.rows && versions[this.e.id[a]!] === 255) { a++; continue }
      if (b >= added.keyHash.length || (a < this.rows && this.e.keyHash[a]! <= added.keyHash[b]!)) {
        const id = this.e.id[a]!
        take(this.e, a, updated.has(id) ? codec.rowDigest(encodeRow(id, 1)) : this.e.digest[a]!)
        a++
      } else {
        take(added, b, added.digest[b]!); b++
      }
    }
    if (o !== total) throw new Error(`drift does not fit the replica: ${o} rows merged, ${total} expected`)
    return new CompactReplica(out, versions, new Set([...this.inserted, ...drift.inserted]))
  }

  /** Every (key, 8-byte digest) pair of this replica: what the naive exchange sends. */
  naiveBytes (): number {
    let total = 0
    for (let i = 0; i < this.rows; i++) total += encodeKey(this.e.id[i]!).length + 8
    return total
  }

  async list (level: number, index: number): Promise<IndexEntry[]> {
    const { start, end } = nodeRange(level, index)
    const hashes = this.e.keyHash
    let lo = 0; let hi = hashes.length
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (hashes[mid]! < start) lo = mid + 1; else hi = mid }
    const out: IndexEntry[] = []
    for (let i = lo; i < hashes.length && hashes[i]! < end; i++) {
      const keyHash = hashes[i]!
      out.push({ keyHash, key: encodeKey(this.e.id[i]!), entry: entryHash(keyHash, this.e.digest[i]!) })
    }
    return out
  }

  async listMany (nodes: ReadonlyArray<{ level: number, index: number }>): Promise<IndexEntry[][]> {
    return await Promise.all(nodes.map(async n => await this.list(n.level, n.index)))
  }

  async getRows (keys: Uint8Array[]): Promise<Array<Uint8Array | undefined>> {
    return keys.map(k => {
      const id = Number(codec.decodeKey(k).order_id)
      if (id < this.versions.length) return this.versions[id] === 255 ? undefined : encodeRow(id, this.versions[id]!)
      return this.inserted.has(id) ? encodeRow(id, 0) : undefined
    })
  }
}
