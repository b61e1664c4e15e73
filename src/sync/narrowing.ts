/**
 * The client half of reconciliation: a state machine that turns the source
 * of truth's answers into the next request, and finally into the exact
 * difference (rows to upsert from the SoT, local keys to delete).
 *
 * One round trip per tree level: every mismatched node of a level is expanded
 * at once, comparing truncated child sums. A node holding few rows here (or
 * at the deepest common level) is settled row by row: this side sends its
 * truncated entry hashes, the SoT answers with its rows that match none of
 * them and the positions of ours that match none of its rows. A node empty
 * here is fetched whole. So bytes on the wire stay close to the differing
 * rows themselves, and there is no separate fetch round.
 *
 * Guaranteed: a node's rows and deletes are taken only when the result checks
 * out against the SoT's full 64-bit node sum sent in the same exchange; a node
 * that does not is retried once with full-width hashes, then reported as
 * unresolved with nothing taken from it. Not guaranteed: the SoT holds still
 * during the exchange; a change made meanwhile is found by the next round.
 */
import { LIST_THRESHOLD, TREE_FANOUT } from '../constants.ts'
import { ProtocolViolationError } from '../errors.ts'
import { bytesToU64, entryHash } from '../digest/hash.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { nodeOf, nodeRange } from '../tree/merkle-tree.ts'
import type { OpenedMessage, ReplyMessage, RoundMessage } from './messages.ts'
import type { IndexEntry, ReplicaView } from './replica-view.ts'
import { decodeChildSums, decodeReconciledBlock, encodeNodeSet, encodeReconcileBlock, shortSum, type HashWidth, type SumWidth } from './wire.ts'
import { hexOf } from '../util/bytes.ts'

/** Bounds on one request, so that each answer fits its frames. */
const MAX_EXPAND_PER_ROUND = 16_384
/**
 * Truncation widths are chosen per round from how many comparisons it makes:
 * 2-byte sums and hashes while they are few (a false match then costs a
 * deferral to the next round, about 1 in 65,536 per differing node, or a
 * full-width retry of one node), 3 bytes when many.
 */
const NARROW_SUMS_UP_TO_PARENTS = 256
const NARROW_HASHES_UP_TO_NODES = 128
/** Width of the root's child sums in `opened`. */
const OPENED_SUM_WIDTH: SumWidth = 3
const MAX_RECONCILE_HASHES_PER_ROUND = 200_000
const MAX_FETCH_ALL_PER_ROUND = 4096

export interface NarrowingResult {
  /** Canonical rows from the SoT for keys missing or changed here. */
  upserts: Uint8Array[]
  /** Canonical keys held here that the SoT lacks. */
  deletes: Uint8Array[]
  missing: number
  changed: number
  extra: number
  /** Nodes whose result did not check out against the SoT's sum; nothing was taken from them. */
  unresolved: number
  /** In a survey: the nodes at the survey level whose sums differ, left for sessions of their own. */
  diverged: NodeRef[]
}

export interface NodeRef { level: number, index: number }

export interface NarrowingOptions {
  /** Narrow only under this node instead of the root (the SoT's `opened` describes it). */
  at?: NodeRef
  /**
   * Expand every mismatched node down to this level and report the mismatched
   * nodes there instead of settling them: how a partitioned dataset finds its
   * drifted partitions, each then reconciled on its own.
   */
  surveyLevel?: number
}
interface Reconcile extends NodeRef { wide: boolean, local: IndexEntry[], width: HashWidth }
interface Received { rows: Uint8Array[], entries: bigint[], keys: string[] }

const nodeKey = (level: number, index: number): string => `${level}:${index}`
const hex = hexOf
const byNode = (a: NodeRef, b: NodeRef): number => a.level - b.level || a.index - b.index
const sumOf = (xs: Iterable<bigint>): bigint => { let s = 0n; for (const x of xs) s += x; return BigInt.asUintN(64, s) }

function groupByLevel (nodes: NodeRef[]): Array<[number, Uint8Array]> {
  const levels = new Map<number, number[]>()
  for (const n of nodes) { const l = levels.get(n.level) ?? []; l.push(n.index); levels.set(n.level, l) }
  return [...levels.entries()].sort((a, b) => a[0] - b[0]).map(([level, idx]) => [level, encodeNodeSet(idx)])
}

export class Narrowing {
  private readonly local: ReplicaView
  private readonly codec: RowCodec
  private readonly at: NodeRef
  private readonly surveyLevel: number | undefined
  private readonly diverged: NodeRef[] = []
  private maxLevel = 0
  private rounds = 0

  private toExpand: NodeRef[] = []
  private toFetchAll: NodeRef[] = []
  private toReconcile: Array<NodeRef & { wide: boolean }> = []
  private deleteAll: NodeRef[] = []

  // what the last request asked, in the order its answer follows
  private sentExpand: NodeRef[] = []
  private sentSumWidth: SumWidth = 3
  private sentFetchAll: NodeRef[] = []
  private sentReconcile: Reconcile[] = []
  private readonly retriedWide = new Set<string>()

  private readonly upserts = new Map<string, Uint8Array>()
  private readonly deletes = new Map<string, Uint8Array>()
  private readonly counts = { missing: 0, changed: 0, extra: 0, unresolved: 0 }

  constructor (local: ReplicaView, codec: RowCodec, options: NarrowingOptions = {}) {
    this.local = local
    this.codec = codec
    this.at = options.at ?? { level: 0, index: 0 }
    this.surveyLevel = options.surveyLevel
  }

  get roundTrips (): number { return this.rounds }

  /** Takes the SoT's `opened` answer; returns the first request, or undefined when the roots agree. */
  async start (opened: OpenedMessage): Promise<RoundMessage | undefined> {
    this.rounds = 1
    const tree = this.local.tree
    this.maxLevel = Math.min(tree.depth, opened.depth)
    const root = this.at
    if (root.level > this.maxLevel || (this.surveyLevel !== undefined && this.surveyLevel > this.maxLevel)) {
      throw new ProtocolViolationError(`node level ${Math.max(root.level, this.surveyLevel ?? 0)} is deeper than the common tree depth ${this.maxLevel}`)
    }
    if (tree.count(root.level, root.index) === opened.count && tree.sum(root.level, root.index) === bytesToU64(opened.sum)) return undefined
    if (this.surveyLevel === root.level) { this.diverged.push(root); return undefined }
    if (opened.count === 0 && this.surveyLevel === undefined) this.deleteAll.push(root)
    else {
      const decision = this.decide(root)
      if (decision === 'expand') this.compareChildren(root, decodeChildSums(opened.children, TREE_FANOUT, OPENED_SUM_WIDTH), OPENED_SUM_WIDTH)
      else this.schedule(root, decision)
    }
    return await this.nextRequest()
  }

  /** Takes every reply frame of the last request; returns the next request, or undefined when done. */
  async accept (replies: ReplyMessage[]): Promise<RoundMessage | undefined> {
    this.rounds++
    const first = replies[0]
    if (first === undefined) throw new ProtocolViolationError('empty reply')

    if (this.sentExpand.length > 0) {
      const sums = decodeChildSums(first.children ?? new Uint8Array(), this.sentExpand.length * TREE_FANOUT, this.sentSumWidth)
      this.sentExpand.forEach((parent, p) => this.compareChildren(parent, sums.slice(p * TREE_FANOUT, (p + 1) * TREE_FANOUT), this.sentSumWidth))
    } else if ((first.children?.length ?? 0) > 0) {
      throw new ProtocolViolationError('children sent that were not asked for')
    }
    const nodes = first.nodes ?? []
    if (nodes.length !== this.sentFetchAll.length) throw new ProtocolViolationError(`asked for ${this.sentFetchAll.length} whole nodes, got ${nodes.length}`)
    const reconciled = this.sentReconcile.length === 0 ? [] : decodeReconciledBlock(first.reconciled ?? new Uint8Array(), this.sentReconcile.map(n => n.local.length))

    const received = this.receiveRows(replies)
    const none: Received = { rows: [], entries: [], keys: [] }

    this.sentFetchAll.forEach((node, i) => {
      const [count, sum] = nodes[i]!
      const got = received.get(nodeKey(node.level, node.index)) ?? none
      if (got.rows.length === count && sumOf(got.entries) === bytesToU64(sum)) this.take(got, new Set())
      else this.counts.unresolved++
    })

    this.sentReconcile.forEach((node, i) => {
      const { sum, unmatched: positions } = reconciled[i]!
      const unmatched = positions.map(p => node.local[p]!)
      const got = received.get(nodeKey(node.level, node.index)) ?? none
      let expected = sumOf(node.local.map(e => e.entry))
      for (const e of unmatched) expected -= e.entry
      for (const e of got.entries) expected += e
      if (BigInt.asUintN(64, expected) === sum) {
        const localKeys = new Set(node.local.map(e => hex(e.key)))
        this.take(got, localKeys)
        const receivedKeys = new Set(got.keys)
        for (const e of unmatched) {
          const k = hex(e.key)
          if (!receivedKeys.has(k)) { this.deletes.set(k, e.key); this.counts.extra++ }
        }
        return
      }
      const k = nodeKey(node.level, node.index)
      if (!node.wide && !this.retriedWide.has(k)) {
        // a truncated-hash collision, or a change on either side meanwhile: settle again at full width
        this.retriedWide.add(k)
        this.toReconcile.push({ level: node.level, index: node.index, wide: true })
      } else {
        this.counts.unresolved++
      }
    })
    return await this.nextRequest()
  }

  result (): NarrowingResult {
    return { upserts: [...this.upserts.values()], deletes: [...this.deletes.values()], ...this.counts, diverged: this.diverged }
  }

  private decide (node: NodeRef): 'expand' | 'reconcile' | 'fetchAll' {
    if (this.surveyLevel !== undefined) return 'expand'
    const localCount = this.local.tree.count(node.level, node.index)
    if (localCount === 0) return 'fetchAll'
    if (node.level >= this.maxLevel || localCount <= LIST_THRESHOLD) return 'reconcile'
    return 'expand'
  }

  private schedule (node: NodeRef, decision: 'reconcile' | 'fetchAll'): void {
    if (decision === 'reconcile') this.toReconcile.push({ ...node, wide: false })
    else this.toFetchAll.push(node)
  }

  private compareChildren (parent: NodeRef, remoteSums: number[], width: SumWidth): void {
    const tree = this.local.tree
    for (let j = 0; j < TREE_FANOUT; j++) {
      const child = { level: parent.level + 1, index: parent.index * TREE_FANOUT + j }
      if (shortSum(tree.sum(child.level, child.index), width) === remoteSums[j]) continue
      if (child.level === this.surveyLevel) { this.diverged.push(child); continue }
      const decision = this.decide(child)
      if (decision === 'expand') this.toExpand.push(child)
      else this.schedule(child, decision)
    }
  }

  /** Places each row under the node it was asked for; a row outside them is a protocol violation. */
  private receiveRows (replies: ReplyMessage[]): Map<string, Received> {
    const byNode = new Map<string, Received>()
    for (const n of [...this.sentFetchAll, ...this.sentReconcile]) byNode.set(nodeKey(n.level, n.index), { rows: [], entries: [], keys: [] })
    const levels = [...new Set([...this.sentFetchAll, ...this.sentReconcile].map(n => n.level))]
    const seen = new Set<string>()
    for (const reply of replies) {
      for (const row of reply.rows ?? []) {
        let key: Uint8Array
        try { key = this.codec.keyOfEncodedRow(row) } catch (err) {
          throw new ProtocolViolationError(`SoT sent a row that does not decode under the dataset schema: ${(err as Error).message}`)
        }
        const keyHash = this.codec.keyHash(key)
        const k = hex(key)
        if (seen.has(k)) throw new ProtocolViolationError('SoT sent the same key twice in one round')
        seen.add(k)
        let target: Received | undefined
        for (const level of levels) { target = byNode.get(nodeKey(level, nodeOf(keyHash, level))); if (target !== undefined) break }
        if (target === undefined) throw new ProtocolViolationError('SoT sent a row outside every node asked for')
        target.rows.push(row)
        target.entries.push(entryHash(keyHash, this.codec.rowDigest(row)))
        target.keys.push(k)
      }
    }
    return byNode
  }

  private take (got: Received, localKeys: Set<string>): void {
    got.rows.forEach((row, i) => {
      const k = got.keys[i]!
      if (!this.upserts.has(k)) { if (localKeys.has(k)) this.counts.changed++; else this.counts.missing++ }
      this.upserts.set(k, row)
    })
  }

  private async nextRequest (): Promise<RoundMessage | undefined> {
    for (const node of this.deleteAll.splice(0)) {
      for (const e of await this.local.list(node.level, node.index)) {
        const k = hex(e.key)
        if (!this.deletes.has(k)) { this.deletes.set(k, e.key); this.counts.extra++ }
      }
    }
    this.sentExpand = this.toExpand.splice(0, MAX_EXPAND_PER_ROUND).sort(byNode)
    this.sentFetchAll = this.toFetchAll.splice(0, MAX_FETCH_ALL_PER_ROUND).sort(byNode)
    const chosen: Array<NodeRef & { wide: boolean }> = []
    let hashes = 0
    while (this.toReconcile.length > 0 && (chosen.length === 0 || hashes < MAX_RECONCILE_HASHES_PER_ROUND)) {
      const node = this.toReconcile.shift()!
      hashes += this.local.tree.count(node.level, node.index)
      chosen.push(node)
    }
    // one pass over the index, in key-hash order
    chosen.sort((a, b) => { const x = nodeRange(a.level, a.index).start; const y = nodeRange(b.level, b.index).start; return x < y ? -1 : x > y ? 1 : 0 })
    const lists = await this.local.listMany(chosen)
    const picked = chosen.map((n, i) => ({ ...n, local: lists[i]! }))
    const narrowWidth: HashWidth = picked.filter(n => !n.wide).length <= NARROW_HASHES_UP_TO_NODES ? 2 : 3
    // group by (level, width); the answer follows the groups in order and each group by node index
    const groups = new Map<string, Reconcile[]>()
    for (const n of picked) {
      const width: HashWidth = n.wide ? 8 : narrowWidth
      const k = `${n.level}:${width}`
      const g = groups.get(k) ?? []
      g.push({ ...n, width })
      groups.set(k, g)
    }
    const ordered = [...groups.values()].map(g => g.sort(byNode)).sort((a, b) => a[0]!.level - b[0]!.level || a[0]!.width - b[0]!.width)
    this.sentReconcile = ordered.flat()
    if (this.sentExpand.length + this.sentFetchAll.length + this.sentReconcile.length === 0) return undefined
    this.sentSumWidth = this.sentExpand.length <= NARROW_SUMS_UP_TO_PARENTS ? 2 : 3
    return {
      t: 'round',
      expand: groupByLevel(this.sentExpand),
      sumBytes: this.sentSumWidth,
      fetchAll: groupByLevel(this.sentFetchAll),
      reconcile: ordered.map(g => [g[0]!.level, g[0]!.width, encodeReconcileBlock(g.map(n => ({ index: n.index, entries: n.local.map(e => e.entry) })), g[0]!.width)])
    }
  }
}
