/**
 * A replica held in memory: sorted index entries, a tree and a row map.
 * Backs property tests, benchmarks and the simulator's pure runs of the sync
 * engine; the agent uses the LevelDB-backed view.
 */
import { entryHash } from '../digest/hash.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { depthFor, MerkleTree, nodeRange } from '../tree/merkle-tree.ts'
import type { IndexEntry, ReplicaView } from './replica-view.ts'
import { hexOf } from '../util/bytes.ts'

const hex = hexOf

export class MemoryReplica implements ReplicaView {
  readonly tree: MerkleTree
  readonly entries: IndexEntry[]
  private readonly rows = new Map<string, Uint8Array>()

  constructor (codec: RowCodec, encodedRows: Iterable<Uint8Array>, depth?: number) {
    const entries: IndexEntry[] = []
    for (const row of encodedRows) {
      const key = codec.keyOfEncodedRow(row)
      const keyHash = codec.keyHash(key)
      entries.push({ keyHash, key, entry: entryHash(keyHash, codec.rowDigest(row)) })
      this.rows.set(hex(key), row)
    }
    entries.sort((a, b) => (a.keyHash < b.keyHash ? -1 : a.keyHash > b.keyHash ? 1 : 0))
    this.entries = entries
    this.tree = new MerkleTree(depth ?? depthFor(entries.length, codec.minTreeDepth))
    for (const e of entries) this.tree.addLeaf(e.keyHash, e.entry)
    this.tree.rollUp()
  }

  async list (level: number, index: number): Promise<IndexEntry[]> {
    const { start, end } = nodeRange(level, index)
    let lo = 0; let hi = this.entries.length
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (this.entries[mid]!.keyHash < start) lo = mid + 1; else hi = mid }
    const out: IndexEntry[] = []
    for (let i = lo; i < this.entries.length && this.entries[i]!.keyHash < end; i++) out.push(this.entries[i]!)
    return out
  }

  async listMany (nodes: ReadonlyArray<{ level: number, index: number }>): Promise<IndexEntry[][]> {
    return await Promise.all(nodes.map(async n => await this.list(n.level, n.index)))
  }

  async getRows (keys: Uint8Array[]): Promise<Array<Uint8Array | undefined>> {
    return keys.map(k => this.rows.get(hex(k)))
  }

  /** The encoded rows, by key in hex. */
  rowMap (): Map<string, Uint8Array> { return new Map(this.rows) }
}
