/**
 * The source-of-truth half of reconciliation: answers one round of a client's
 * narrowing from the local tree, digest index and store. Stateless between
 * rounds: every answer is computed from the replica as it is now.
 *
 * Rows are re-digested as they are read, so a row the index has not caught up
 * with is never sent under a digest it no longer has.
 */
import { MAX_TREE_DEPTH, RESPONSE_CHUNK_BYTES, TREE_FANOUT } from '../constants.ts'
import { ConvergeError, KeysUnreadableError, MalformedMessageError, throwIfAborted } from '../errors.ts'
import { entryHash, u64ToBytes } from '../digest/hash.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import type { KeyedMessage, ParsedKeys, ParsedRound, ReplyMessage } from './messages.ts'
import { checkCanonicalKey } from '../security/canonical-row.ts'
import { sumOfEntries, type IndexEntry, type ReplicaView } from './replica-view.ts'
import { decodeNodeSet, decodeReconcileBlock, encodeChildSums, encodeReconciledBlock, listedHash, type HashWidth, type ListedHash, type ReconciledNode } from './wire.ts'
import { U64Sum } from '../util/u64.ts'

/** Most nodes one request may name, across all its parts. */
const MAX_NODES_PER_ROUND = 1 << 20
/** A row read to be sent, with the entry hash it was listed under (and still has). */
interface VerifiedRow { row: Uint8Array, entry: bigint }

/** Nodes to settle listed and matched at a time; the rows each part sends are read from the store while the next part is matched. */
const RECONCILE_PART = 3000
/** Rows read from the store per call while answering a round. */
const ROW_READ_BATCH = 10_000
/** Most entry hashes one request may carry. */
const MAX_HASHES_PER_ROUND = 1 << 21
/**
 * Below this many (client hash, own entry) pairs a node is matched by
 * scanning (a leaf's couple of dozen each way: no map to build); above it,
 * through a map, so a node with many rows costs time in proportion to them.
 */
const SCAN_MATCH_PAIRS = 1024

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

/** A node as a number, unique across levels: indices stay below 16^MAX_TREE_DEPTH. */
const nodeKey = (level: number, index: number): number => level * TREE_FANOUT ** MAX_TREE_DEPTH + index

/**
 * Matches a node's entries here against the client's hashes for it, each
 * hash used at most once: an entry whose hash is among those still unused
 * uses up the last position holding it; an entry with none is pushed to
 * `toSend`. Returns the positions left unused, ascending.
 */
export function matchListed (hashes: readonly ListedHash[], entries: readonly IndexEntry[], width: HashWidth, toSend: IndexEntry[]): number[] {
  const used = new Uint8Array(hashes.length)
  if (hashes.length * entries.length <= SCAN_MATCH_PAIRS) {
    for (const e of entries) {
      const h = listedHash(e.entry, width)
      let p = hashes.length - 1
      while (p >= 0 && (used[p] === 1 || hashes[p] !== h)) p--
      if (p >= 0) used[p] = 1; else toSend.push(e)
    }
  } else {
    // per hash, its last unused position; per position, the one before it with the same hash (-1: none)
    const last = new Map<ListedHash, number>()
    const previous = new Int32Array(hashes.length)
    hashes.forEach((h, p) => { previous[p] = last.get(h) ?? -1; last.set(h, p) })
    for (const e of entries) {
      const h = listedHash(e.entry, width)
      const p = last.get(h) ?? -1
      if (p >= 0) { used[p] = 1; last.set(h, previous[p]!) } else toSend.push(e)
    }
  }
  const unmatched: number[] = []
  for (let p = 0; p < used.length; p++) if (used[p] === 0) unmatched.push(p)
  return unmatched
}

/**
 * Rows as answer frames of about RESPONSE_CHUNK_BYTES each: the first frame is
 * `first` (with whatever else it carries), the rest come from `next`; every
 * frame but the last is marked `more`.
 */
function * framed<F extends { rows?: Uint8Array[], more?: boolean }> (first: F, rows: Iterable<Uint8Array>, next: () => F): Generator<F> {
  let pending = first
  let pendingBytes = 0
  for (const row of rows) {
    if (pendingBytes + row.length > RESPONSE_CHUNK_BYTES && pendingBytes > 0) {
      yield { ...pending, more: true }
      pending = next()
      pendingBytes = 0
    }
    (pending.rows ??= []).push(row)
    pendingBytes += row.length
  }
  yield pending
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

    // rows to send, read from the store a part at a time while the next nodes are listed and settled
    // (one read per RECONCILE_PART nodes, not per node): the store reads on its own cores meanwhile
    const wanted: IndexEntry[] = []
    const reads: Array<Promise<Array<VerifiedRow | undefined>>> = []
    let readFrom = 0
    const readWanted = (): void => {
      if (wanted.length === readFrom) return
      const read = this.verifiedRows(wanted.slice(readFrom), signal)
      // awaited below, after the listing; a failure meanwhile must not count as unhandled
      read.catch(() => undefined)
      reads.push(read)
      readFrom = wanted.length
    }
    const fetchAllSpans: Array<[number, number]> = []
    if (fetchAll.length > 0) {
      for (const entries of await this.view.listMany(fetchAll, { signal })) {
        fetchAllSpans.push([wanted.length, wanted.length + entries.length])
        wanted.push(...entries)
      }
      readWanted()
    }
    if (round.reconcile.length > 0) {
      const reconciled: ReconciledNode[] = []
      const seen = new Set<number>()
      const asked: Array<{ level: number, index: number, width: HashWidth, hashes: ListedHash[] }> = []
      let hashes = 0
      for (const [level, width, block] of round.reconcile) {
        if (level > tree.depth) throw new MalformedMessageError(`reconcile: level ${level} is deeper than ${tree.depth}`)
        for (const node of decodeReconcileBlock(block, TREE_FANOUT ** level, width, MAX_HASHES_PER_ROUND - hashes)) {
          hashes += node.hashes.length
          if (seen.has(nodeKey(level, node.index))) throw new MalformedMessageError(`reconcile: node ${level}:${node.index} named twice`)
          seen.add(nodeKey(level, node.index))
          asked.push({ level, index: node.index, width, hashes: node.hashes })
        }
      }
      for (let from = 0; from < asked.length; from += RECONCILE_PART) {
        const part = asked.slice(from, from + RECONCILE_PART)
        const lists = await this.view.listMany(part, { signal })
        for (const [i, node] of part.entries()) {
          throwIfAborted(signal)
          const entries = lists[i]!
          const unmatched = matchListed(node.hashes, entries, node.width, wanted)
          reconciled.push({ count: entries.length, sum: sumOfEntries(entries).toBigInt(), unmatched })
        }
        readWanted()
      }
      first.reconciled = encodeReconciledBlock(reconciled)
    }

    const rows = (await Promise.all(reads)).flat()
    if (fetchAll.length > 0) {
      first.nodes = fetchAllSpans.map(([from, to]) => {
        const sent = new U64Sum()
        let count = 0
        for (let i = from; i < to; i++) { const r = rows[i]; if (r !== undefined) { sent.add(r.entry); count++ } }
        return [count, u64ToBytes(sent.toBigInt())]
      })
    }

    yield * framed<ReplyMessage>(first, rows.flatMap(r => r === undefined ? [] : [r.row]), () => ({ t: 'reply' }))
  }

  /**
   * Answers a `keys` request: reads the rows for the keys from the store as
   * they are now (not through the index, which may lag it) and sends those
   * whose entry differs from the client's, or that the client lacks, in the
   * order asked (the client checks the answer in that order); the
   * positions of the held keys it lacks itself go in the last frame.
   */
  async * answerKeys (request: ParsedKeys, options: { signal?: AbortSignal } = {}): AsyncGenerator<KeyedMessage> {
    const { signal } = options
    const keys = [...request.held, ...request.absent]
    for (const key of keys) checkCanonicalKey(this.codec, key)
    const theirs = new DataView(request.entries.buffer, request.entries.byteOffset, request.entries.byteLength)
    const gone: number[] = []
    const send: Uint8Array[] = []
    for (let from = 0; from < keys.length; from += ROW_READ_BATCH) {
      throwIfAborted(signal)
      const part = keys.slice(from, from + ROW_READ_BATCH)
      let rows: Array<Uint8Array | undefined>
      try {
        // packed into frames and sent at once: views into the read's memory, no copy of each row
        rows = await this.view.getRows(part, { signal, shortLived: true })
      } catch (err) {
        // a key this store cannot hold (an integer past its range, a string it cannot store), or the store failing:
        // an error frame the replica answers by narrowing, which never names a key this side does not list
        if (err instanceof ConvergeError || signal?.aborted === true) throw err
        throw new KeysUnreadableError(`the source could not read the keys asked about: ${(err as Error).message}`)
      }
      for (let i = 0; i < part.length; i++) {
        const at = from + i
        const row = rows[i]
        if (row === undefined) {
          if (at < request.held.length) gone.push(at)
          continue
        }
        if (at < request.held.length && entryHash(this.codec.keyHash(part[i]!), this.codec.rowDigest(row)) === theirs.getBigUint64(8 * at)) continue
        send.push(row)
      }
    }
    let last: KeyedMessage = { t: 'keyed' }
    for (const frame of framed<KeyedMessage>({ t: 'keyed' }, send, () => ({ t: 'keyed' }))) {
      if (frame.more === true) yield frame; else last = frame
    }
    if (gone.length > 0) {
      const out = new Uint8Array(4 * gone.length)
      const view = new DataView(out.buffer)
      gone.forEach((p, i) => view.setUint32(4 * i, p))
      last.gone = out
    }
    yield last
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
  private async verifiedRows (entries: IndexEntry[], signal?: AbortSignal): Promise<Array<VerifiedRow | undefined>> {
    const out: Array<VerifiedRow | undefined> = []
    for (let from = 0; from < entries.length; from += ROW_READ_BATCH) {
      throwIfAborted(signal)
      const part = entries.slice(from, from + ROW_READ_BATCH)
      const rows = await this.view.getRows(part.map(e => e.key), { signal, shortLived: true })
      rows.forEach((row, i) => {
        const e = part[i]!
        out.push(row !== undefined && entryHash(e.keyHash, this.codec.rowDigest(row)) === e.entry ? { row, entry: e.entry } : undefined)
      })
    }
    return out
  }
}

