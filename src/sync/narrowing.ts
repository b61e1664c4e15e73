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
 * unresolved with nothing taken from it. The SoT's answers must also agree
 * with each other down the tree: the child sums it sends for a node add up to
 * what it said of that node before (at the width both were sent), a settled
 * node's full sum and row count match what it said of that node while
 * narrowing, a root it says is empty sums to zero, and an exchange that says
 * the whole dataset is empty while the SoT's own latest summary says it is
 * not deletes nothing. A node whose answers disagree is `inconsistent`
 * (counted in `unresolved` too): nothing is taken from it. The price: a node
 * written to between two rounds of one exchange (a hot spot on a busy SoT)
 * is not settled by that exchange; it is once its writes pause between two
 * rounds, while the rest of the tree is settled meanwhile. Every row taken is
 * a canonical row of the schema (security/canonical-row.ts), or the exchange
 * fails. Not guaranteed: the SoT holds still during the exchange; a change
 * made meanwhile is found by the next round (a node that changed between two
 * rounds shows as inconsistent and is settled next time). Nor that a SoT which
 * lies consistently (its tree, summaries and rows all describe the same
 * wrong data) is caught: xxh64 sums detect errors, not forgeries, and the SoT
 * is trusted by configuration.
 */
import { LIST_THRESHOLD, MAX_TREE_DEPTH, TREE_FANOUT } from '../constants.ts'
import { ProtocolViolationError } from '../errors.ts'
import { assertCanonicalRow } from '../security/canonical-row.ts'
import { bytesToU64, entryHash } from '../digest/hash.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { nodeOfHigh32 } from '../tree/merkle-tree.ts'
import type { OpenedMessage, ReplyMessage, RoundMessage } from './messages.ts'
import { sumOfEntries, type IndexEntry, type ReplicaView } from './replica-view.ts'
import { decodeChildSums, decodeReconciledBlock, encodeNodeSet, encodeReconcileBlock, type HashWidth, type SumWidth } from './wire.ts'
import { latin1Of } from '../util/bytes.ts'
import { high32, sameLowBits, U64Sum } from '../util/u64.ts'

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
/** Up to this many (row sent, row here) pairs a settled node's rows are matched by scanning rather than through sets. */
const SCAN_PAIRS = 256

export interface NarrowingResult {
  /** Canonical rows from the SoT for keys missing or changed here. */
  upserts: Uint8Array[]
  /** The canonical key of each of `upserts`, in the same order (known from checking the rows: saves decoding them again). */
  upsertKeys?: Uint8Array[]
  /** Canonical keys held here that the SoT lacks. */
  deletes: Uint8Array[]
  /**
   * This side's row for each of `upserts` and then each of `deletes` (null:
   * none here), when the exchange knew them: the rows the index took in
   * (asking by key, sync/by-keys.ts). The policy weighs these instead of
   * reading them again; they are as current as the difference itself.
   */
  local?: Array<Uint8Array | null>
  /**
   * With `local`: the store's version of each of those rows where it has
   * one (RowChange.version), so a fix of them need not read them again
   * (ApplyRequest.expected).
   */
  localVersions?: Array<string | undefined>
  /**
   * Asking by key: what applying this difference does to this side's root
   * (rows added, entry hashes added mod 2^64). When the root plus this is the
   * SoT's root, the difference is the whole of it.
   */
  rootShift?: { count: number, sum: bigint }
  missing: number
  changed: number
  extra: number
  /** Nodes whose result did not check out against the SoT's sum; nothing was taken from them. */
  unresolved: number
  /** In a survey: the nodes at the survey level whose sums differ, left for sessions of their own. */
  diverged: NodeRef[]
  /** The exchange stopped at `maxRows`: more of the difference is left for the next one. */
  truncated: boolean
  /** Nodes whose answers from the SoT contradicted each other (also in `unresolved`); nothing was taken from them. */
  inconsistent?: number
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
  /**
   * Stop taking rows once this many are taken: the rest of the difference is
   * left for the next exchange (`truncated`), so one sync holds a bounded
   * number of rows however large the drift.
   */
  maxRows?: number
  /**
   * The row count of the SoT's latest gossiped summary of the dataset: an
   * exchange at the root that says the SoT is empty while this says it is not
   * deletes nothing.
   */
  sourceCount?: number
}
interface Reconcile extends NodeRef {
  wide: boolean
  local: IndexEntry[]
  width: HashWidth
  /** The sum of `local`'s entry hashes: what the node sums to here, as sent. */
  localSum: U64Sum
}
/**
 * The rows the SoT sent for one node, their canonical keys (as bytes, and as
 * latin1Of strings for map keys), the high 32 bits of their key hashes (to
 * find rows held here by number before comparing keys), and the sum of their
 * entry hashes.
 */
interface Received { rows: Uint8Array[], rowKeys: Uint8Array[], keys: string[], keyHashHighs: number[], sum: U64Sum }

/** A node as a map key: indices stay below 16^MAX_TREE_DEPTH, so level * that + index is unique and exact. */
const LEVEL_SPAN = TREE_FANOUT ** MAX_TREE_DEPTH
const nodeKey = (level: number, index: number): number => level * LEVEL_SPAN + index
/** Where a node starts in key-hash order, in units of the deepest level's nodes (exact: below 2^24). */
const nodeStart = (n: NodeRef): number => n.index * TREE_FANOUT ** (MAX_TREE_DEPTH - n.level)
const byNode = (a: NodeRef, b: NodeRef): number => a.level - b.level || a.index - b.index

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
  private readonly maxRows: number
  private truncated = false
  private readonly diverged: NodeRef[] = []
  private maxLevel = 0
  private rounds = 0

  private toExpand: NodeRef[] = []
  /** Parents to expand again with full 8-byte child sums. */
  private toExpandWide: NodeRef[] = []
  private toFetchAll: NodeRef[] = []
  private toReconcile: Array<NodeRef & { wide: boolean }> = []
  private deleteAll: NodeRef[] = []

  // what the last request asked, in the order its answer follows
  private sentExpand: NodeRef[] = []
  private sentSumWidth: SumWidth = 3
  private sentFetchAll: NodeRef[] = []
  private sentReconcile: Reconcile[] = []
  private readonly retriedWide = new Set<number>()

  // keyed by latin1Of(canonical key)
  private readonly upserts = new Map<string, { row: Uint8Array, key: Uint8Array }>()
  private readonly deletes = new Map<string, Uint8Array>()
  private readonly counts = { missing: 0, changed: 0, extra: 0, unresolved: 0 }
  private inconsistent = 0
  private readonly sourceCount: number | undefined
  /** What the SoT said of each node still being narrowed: the low `bits` bits of its sum. */
  private readonly claimed = new Map<number, { sum: bigint, bits: number }>()

  constructor (local: ReplicaView, codec: RowCodec, options: NarrowingOptions = {}) {
    this.local = local
    this.codec = codec
    this.at = options.at ?? { level: 0, index: 0 }
    this.surveyLevel = options.surveyLevel
    this.maxRows = options.maxRows ?? Number.POSITIVE_INFINITY
    this.sourceCount = options.sourceCount
  }

  /** Whether `sum` agrees with what the SoT said of the node before, on the low bits both carry. */
  private agrees (node: NodeRef, sum: bigint, bits: number): boolean {
    const said = this.claimed.get(nodeKey(node.level, node.index))
    return said === undefined || sameLowBits(said.sum, sum, Math.min(bits, said.bits))
  }

  /** The SoT's answers about a node contradict each other: nothing is taken from it. */
  private contradicted (): void { this.inconsistent++; this.counts.unresolved++ }

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
    const openedSum = bytesToU64(opened.sum)
    if (opened.count === 0 && openedSum !== 0n) throw new ProtocolViolationError('the source says the node is empty but gives it a non-zero sum')
    if (tree.count(root.level, root.index) === opened.count && tree.sum(root.level, root.index) === openedSum) return undefined
    this.claimed.set(nodeKey(root.level, root.index), { sum: openedSum, bits: 64 })
    if (this.surveyLevel === root.level) { this.diverged.push(root); return undefined }
    if (opened.count === 0 && this.surveyLevel === undefined) {
      // deleting every row takes two statements that agree: this exchange, and the source's own signed summary
      if (root.level === 0 && this.sourceCount !== undefined && this.sourceCount > 0) this.contradicted()
      else this.deleteAll.push(root)
    } else {
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
    const none: Received = { rows: [], rowKeys: [], keys: [], keyHashHighs: [], sum: new U64Sum() }

    this.sentFetchAll.forEach((node, i) => {
      const [count, sum] = nodes[i]!
      const got = received.get(nodeKey(node.level, node.index)) ?? none
      const full = bytesToU64(sum)
      if (got.rows.length !== count || !got.sum.equals(full)) this.counts.unresolved++
      else if (!this.agrees(node, full, 64)) this.contradicted()
      else this.take(got, undefined)
    })

    this.sentReconcile.forEach((node, i) => {
      const { count, sum, unmatched } = reconciled[i]!
      const got = received.get(nodeKey(node.level, node.index)) ?? none
      // the node as it would be here with this side's unmatched rows dropped and the SoT's rows taken
      const expected = node.localSum.copy()
      for (const p of unmatched) expected.subtract(node.local[p]!.entry)
      expected.plus(got.sum)
      if (expected.equals(sum)) {
        // the rows add up to the sum given with them; both must also match the SoT's count and what it said of the node before
        if (count !== node.local.length - unmatched.length + got.rows.length || !this.agrees(node, sum, 64)) { this.contradicted(); return }
        this.settle(node.local, unmatched, got)
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
    const taken = [...this.upserts.values()]
    return { upserts: taken.map(u => u.row), upsertKeys: taken.map(u => u.key), deletes: [...this.deletes.values()], ...this.counts, diverged: this.diverged, truncated: this.truncated, inconsistent: this.inconsistent }
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

  private compareChildren (parent: NodeRef, remoteSums: bigint[], width: SumWidth): void {
    const tree = this.local.tree
    // sums are additive, so their low bytes are too: the children must add up to what the SoT said of the parent
    if (!this.agrees(parent, U64Sum.of(remoteSums).toBigInt(), 8 * width)) { this.contradicted(); return }
    let differing = 0
    const level = parent.level + 1
    for (let j = 0; j < TREE_FANOUT; j++) {
      // a remote sum is the child's low `width` bytes
      if (sameLowBits(tree.sum(level, parent.index * TREE_FANOUT + j), remoteSums[j]!, 8 * width)) continue
      const child = { level, index: parent.index * TREE_FANOUT + j }
      differing++
      this.claimed.set(nodeKey(child.level, child.index), { sum: remoteSums[j]!, bits: 8 * width })
      if (child.level === this.surveyLevel) { this.diverged.push(child); continue }
      const decision = this.decide(child)
      if (decision === 'expand') this.toExpand.push(child)
      else this.schedule(child, decision)
    }
    // the parent differs, yet no child does in the low bytes compared: the difference is in the high bytes only
    // (about 1 in 65,536 for one differing row at 2 bytes), so look at the children again at full width
    if (differing === 0 && width !== 8) this.toExpandWide.push(parent)
  }

  /**
   * Places each row under the node it was asked for; a row outside them is a
   * protocol violation. A node asked for maps to null until a row comes for it.
   */
  private receiveRows (replies: ReplyMessage[]): Map<number, Received | null> {
    const received = new Map<number, Received | null>()
    const levels = new Set<number>()
    for (const n of [...this.sentFetchAll, ...this.sentReconcile]) {
      received.set(nodeKey(n.level, n.index), null)
      levels.add(n.level)
    }
    const seen = new Set<string>()
    for (const reply of replies) {
      for (const row of reply.rows ?? []) {
        // a row that is not canonical under the schema is never taken (InvalidSourceRowError ends the exchange)
        assertCanonicalRow(this.codec, row)
        const key = this.codec.keyOfCanonicalRow(row)
        const keyHash = this.codec.keyHash(key)
        const k = latin1Of(key)
        if (seen.has(k)) throw new ProtocolViolationError('SoT sent the same key twice in one round')
        seen.add(k)
        const hi = high32(keyHash)
        let node: number | undefined
        for (const level of levels) { const at = nodeKey(level, nodeOfHigh32(hi, level)); if (received.has(at)) { node = at; break } }
        if (node === undefined) throw new ProtocolViolationError('SoT sent a row outside every node asked for')
        let target = received.get(node)
        if (target == null) { target = { rows: [], rowKeys: [], keys: [], keyHashHighs: [], sum: new U64Sum() }; received.set(node, target) }
        target.rows.push(row)
        target.rowKeys.push(key)
        target.keys.push(k)
        target.keyHashHighs.push(hi)
        target.sum.add(entryHash(keyHash, this.codec.rowDigest(row)))
      }
    }
    return received
  }

  /**
   * Takes a settled node: every row the SoT sent (a change where this side
   * holds the key, else missing here), and a delete for each of this side's
   * rows that matched none of the SoT's and whose key the SoT did not send.
   */
  private settle (local: readonly IndexEntry[], unmatched: readonly number[], got: Received): void {
    // a node's usual one or two rows are looked for by scanning; sets only where many rows meet many (no quadratic case)
    const scan = got.rows.length * local.length <= SCAN_PAIRS
    const sentKeys = scan ? undefined : new Set(got.keys)
    let heldHere: Set<string> | undefined
    if (got.rows.length > 0) {
      // the keys held here among those sent, found by the high bits of their key hashes first: most local rows need no key string
      const sentHighs = scan ? undefined : new Set(got.keyHashHighs)
      for (const e of local) {
        const hi = high32(e.keyHash)
        if (scan ? !got.keyHashHighs.includes(hi) : !sentHighs!.has(hi)) continue
        const k = latin1Of(e.key)
        if (scan ? got.keys.includes(k) : sentKeys!.has(k)) (heldHere ??= new Set()).add(k)
      }
    }
    this.take(got, heldHere)
    for (const p of unmatched) {
      const e = local[p]!
      const k = latin1Of(e.key)
      if (scan ? !got.keys.includes(k) : !sentKeys!.has(k)) { this.deletes.set(k, e.key); this.counts.extra++ }
    }
  }

  /** Takes the rows sent for a node; `heldHere` holds the keys among them this side has (undefined: none). */
  private take (got: Received, heldHere: ReadonlySet<string> | undefined): void {
    got.rows.forEach((row, i) => {
      const k = got.keys[i]!
      if (!this.upserts.has(k)) { if (heldHere?.has(k) === true) this.counts.changed++; else this.counts.missing++ }
      this.upserts.set(k, { row, key: got.rowKeys[i]! })
    })
  }

  private async nextRequest (): Promise<RoundMessage | undefined> {
    if (this.upserts.size + this.deletes.size >= this.maxRows && this.toExpand.length + this.toExpandWide.length + this.toFetchAll.length + this.toReconcile.length + this.deleteAll.length > 0) {
      // enough for one fix's worth of memory: what is left is found again next time
      this.truncated = true
      this.toExpand = []; this.toExpandWide = []; this.toFetchAll = []; this.toReconcile = []; this.deleteAll = []
      return undefined
    }
    for (const node of this.deleteAll.splice(0)) {
      for (const e of await this.local.list(node.level, node.index)) {
        const k = latin1Of(e.key)
        if (!this.deletes.has(k)) { this.deletes.set(k, e.key); this.counts.extra++ }
      }
    }
    this.sentExpand = this.toExpand.splice(0, MAX_EXPAND_PER_ROUND).sort(byNode)
    const wide = this.toExpandWide.splice(0, MAX_EXPAND_PER_ROUND)
    this.sentFetchAll = this.toFetchAll.splice(0, MAX_FETCH_ALL_PER_ROUND).sort(byNode)
    let taken = 0
    let hashes = 0
    // with a row limit, settle only about as many rows as are still allowed; the rest waits for the next round
    const allowed = Math.min(MAX_RECONCILE_HASHES_PER_ROUND, this.maxRows - this.upserts.size - this.deletes.size)
    while (taken < this.toReconcile.length && (taken === 0 || hashes < allowed)) {
      const node = this.toReconcile[taken++]!
      hashes += this.local.tree.count(node.level, node.index)
    }
    // taken in one splice: shift() per node moves the rest of a long queue each time
    const chosen = this.toReconcile.splice(0, taken)
    // one pass over the index, in key-hash order
    chosen.sort((a, b) => nodeStart(a) - nodeStart(b))
    const lists = await this.local.listMany(chosen)
    const narrowWidth: HashWidth = chosen.filter(n => !n.wide).length <= NARROW_HASHES_UP_TO_NODES ? 2 : 3
    // group by (level, width); the answer follows the groups in order and each group by node index
    const groups = new Map<string, Reconcile[]>()
    chosen.forEach((n, i) => {
      const width: HashWidth = n.wide ? 8 : narrowWidth
      const k = `${n.level}:${width}`
      const g = groups.get(k) ?? []
      g.push({ level: n.level, index: n.index, wide: n.wide, local: lists[i]!, localSum: sumOfEntries(lists[i]!), width })
      groups.set(k, g)
    })
    const ordered = [...groups.values()].map(g => g.sort(byNode)).sort((a, b) => a[0]!.level - b[0]!.level || a[0]!.width - b[0]!.width)
    this.sentReconcile = ordered.flat()
    if (this.sentExpand.length + wide.length + this.sentFetchAll.length + this.sentReconcile.length === 0) return undefined
    this.sentSumWidth = this.sentExpand.length <= NARROW_SUMS_UP_TO_PARENTS ? 2 : 3
    if (wide.length > 0) {
      // rare: the round carries full sums for every parent it expands
      this.sentExpand = [...wide, ...this.sentExpand].sort(byNode)
      this.sentSumWidth = 8
    }
    return {
      t: 'round',
      expand: groupByLevel(this.sentExpand),
      sumBytes: this.sentSumWidth,
      fetchAll: groupByLevel(this.sentFetchAll),
      reconcile: ordered.map(g => [g[0]!.level, g[0]!.width, encodeReconcileBlock(g.map(n => ({ index: n.index, entries: n.local.map(e => e.entry) })), g[0]!.width)])
    }
  }
}
