/**
 * The source-of-truth half of reconciliation: answers one round of a client's
 * narrowing from the local tree, digest index and store. Stateless between
 * rounds: every answer is computed from the replica as it is now.
 *
 * Rows are re-digested as they are read, so a row the index has not caught up
 * with is never sent under a digest it no longer has.
 */
import { RESPONSE_CHUNK_BYTES, TREE_FANOUT } from '../constants.ts'
import { MalformedMessageError, throwIfAborted } from '../errors.ts'
import { entryHash, u64ToBytes } from '../digest/hash.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import type { ParsedRound, ReplyMessage } from './messages.ts'
import type { IndexEntry, ReplicaView } from './replica-view.ts'
import { decodeNodeSet, decodeReconcileBlock, encodeChildSums, encodeReconciledBlock, listedHash, type HashWidth, type ListedHash, type ReconciledNode } from './wire.ts'

/** Most nodes one request may name, across all its parts. */
const MAX_NODES_PER_ROUND = 1 << 20
/** Rows read from the store per call while answering a round. */
const ROW_READ_BATCH = 10_000
/** Most entry hashes one request may carry. */
const MAX_HASHES_PER_ROUND = 1 << 21

interface NodeRef { level: number, index: number }

function nodesOf (sets: Array<[number, Uint8Array]>, maxLevel: number, what: string): NodeRef[] {
  const out: NodeRef[] = []
  let lastLevel = -1
  for (const [level, bytes] of sets) {
    if (level > maxLevel) throw new MalformedMessageError(`${what}: level ${level} is deeper than ${maxLevel}`)
    if (level <= lastLevel) throw new MalformedMessageError(`${what}: levels out of order`)
    lastLevel = level
    for (const index of decodeNodeSet(bytes, TREE_FANOUT ** level, MAX_NODES_PER_ROUND)) out.push({ level, index })
    if (out.length > MAX_NODES_PER_ROUND) throw new MalformedMessageError(`${what}: too many nodes`)
  }
  return out
}

function sumOf (entries: Iterable<bigint>): bigint {
  let s = 0n
  for (const e of entries) s += e
  return BigInt.asUintN(64, s)
}

export class Responder {
  constructor (private readonly view: ReplicaView, private readonly codec: RowCodec) {}

  /** Sums of a node's children (the root's by default), as sent in `opened`. */
  childrenOf (node: NodeRef = { level: 0, index: 0 }): Uint8Array {
    const depth = this.view.tree.depth
    if (node.level > depth) throw new MalformedMessageError(`open: level ${node.level} is deeper than this tree (depth ${depth})`)
    // a leaf has no children; the client settles it row by row
    if (node.level === depth) return new Uint8Array()
    return encodeChildSums(this.childSums(node), 3)
  }

  /** Answers one round; yields one or more reply frames, all but the last marked `more`. */
  async * answer (round: ParsedRound, options: { signal?: AbortSignal } = {}): AsyncGenerator<ReplyMessage> {
    const { signal } = options
    const tree = this.view.tree
    const expand = nodesOf(round.expand, tree.depth - 1, 'expand')
    const fetchAll = nodesOf(round.fetchAll, tree.depth, 'fetchAll')

    const first: ReplyMessage = { t: 'reply' }
    if (expand.length > 0) first.children = encodeChildSums(expand.flatMap(n => this.childSums(n)), round.sumBytes)

    // rows to send, read from the store in one go after every node is settled (one query per round, not per node)
    const wanted: IndexEntry[] = []
    const fetchAllSpans: Array<[number, number]> = []
    if (fetchAll.length > 0) {
      for (const entries of await this.view.listMany(fetchAll, { signal })) {
        fetchAllSpans.push([wanted.length, wanted.length + entries.length])
        wanted.push(...entries)
      }
    }
    if (round.reconcile.length > 0) {
      const reconciled: ReconciledNode[] = []
      const seen = new Set<string>()
      const asked: Array<{ level: number, index: number, width: HashWidth, hashes: ListedHash[] }> = []
      let hashes = 0
      for (const [level, width, block] of round.reconcile) {
        if (level > tree.depth) throw new MalformedMessageError(`reconcile: level ${level} is deeper than ${tree.depth}`)
        for (const node of decodeReconcileBlock(block, TREE_FANOUT ** level, width, MAX_HASHES_PER_ROUND - hashes)) {
          hashes += node.hashes.length
          if (seen.has(`${level}:${node.index}`)) throw new MalformedMessageError(`reconcile: node ${level}:${node.index} named twice`)
          seen.add(`${level}:${node.index}`)
          asked.push({ level, index: node.index, width, hashes: node.hashes })
        }
      }
      const lists = await this.view.listMany(asked, { signal })
      for (const [i, node] of asked.entries()) {
        throwIfAborted(signal)
        const positions = new Map<ListedHash, number[]>()
        node.hashes.forEach((h, p) => { const at = positions.get(h); if (at === undefined) positions.set(h, [p]); else at.push(p) })
        const entries = lists[i]!
        const toSend: IndexEntry[] = []
        for (const e of entries) {
          const at = positions.get(listedHash(e.entry, node.width))
          if (at !== undefined && at.length > 0) at.pop(); else toSend.push(e)
        }
        const unmatched: number[] = []
        for (const at of positions.values()) unmatched.push(...at)
        reconciled.push({ count: entries.length, sum: sumOf(entries.map(e => e.entry)), unmatched })
        wanted.push(...toSend)
      }
      first.reconciled = encodeReconciledBlock(reconciled)
    }

    const rows = await this.verifiedRows(wanted, signal)
    if (fetchAll.length > 0) {
      first.nodes = fetchAllSpans.map(([from, to]) => {
        const sent = rows.slice(from, to).filter(r => r !== undefined)
        return [sent.length, u64ToBytes(sumOf(sent.map(r => r.entry)))]
      })
    }

    let pending: ReplyMessage = first
    let pendingBytes = 0
    for (const r of rows) {
      if (r === undefined) continue
      if (pendingBytes + r.row.length > RESPONSE_CHUNK_BYTES && pendingBytes > 0) {
        yield { ...pending, more: true }
        pending = { t: 'reply' }
        pendingBytes = 0
      }
      (pending.rows ??= []).push(r.row)
      pendingBytes += r.row.length
    }
    yield pending
  }

  private childSums (n: NodeRef): bigint[] {
    const tree = this.view.tree
    const out: bigint[] = []
    for (let j = 0; j < TREE_FANOUT; j++) out.push(tree.sum(n.level + 1, n.index * TREE_FANOUT + j))
    return out
  }

  /**
   * Reads the rows for the entries, in batches, and keeps each only if its
   * current digest is still the one the index listed (undefined otherwise).
   */
  private async verifiedRows (entries: IndexEntry[], signal?: AbortSignal): Promise<Array<{ row: Uint8Array, entry: bigint } | undefined>> {
    const out: Array<{ row: Uint8Array, entry: bigint } | undefined> = []
    for (let from = 0; from < entries.length; from += ROW_READ_BATCH) {
      throwIfAborted(signal)
      const part = entries.slice(from, from + ROW_READ_BATCH)
      const rows = await this.view.getRows(part.map(e => e.key), { signal })
      rows.forEach((row, i) => {
        const e = part[i]!
        out.push(row !== undefined && entryHash(e.keyHash, this.codec.rowDigest(row)) === e.entry ? { row, entry: e.entry } : undefined)
      })
    }
    return out
  }
}

