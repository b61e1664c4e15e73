/**
 * Dataset summaries gossiped on the cluster topic: the tree root and the sums
 * of its children, with the schema fingerprint. Small (under 300 bytes), so
 * the heavy traffic stays on point-to-point sync streams.
 */
import { pack } from 'msgpackr'
import { z } from 'zod'
import { MAX_SUMMARY_BYTES, MAX_TREE_DEPTH, TREE_FANOUT } from '../constants.ts'
import { MalformedMessageError } from '../errors.ts'
import { bytesToU64, u64ToBytes } from '../digest/hash.ts'
import type { MerkleTree } from '../tree/merkle-tree.ts'
import { checkMessage, decodeFrame } from '../sync/messages.ts'

const bytes = z.custom<Uint8Array>(v => v instanceof Uint8Array, { message: 'expected bytes' })

const summarySchema = z.object({
  v: z.literal(1),
  region: z.string().min(1).max(128),
  dataset: z.string().min(1).max(128),
  fp: z.string().max(64),
  depth: z.number().int().min(1).max(MAX_TREE_DEPTH),
  count: z.number().int().min(0),
  sum: bytes.refine(b => b.length === 8, { message: 'expected 8 bytes' }),
  children: bytes.refine(b => b.length === TREE_FANOUT * 8, { message: `expected ${TREE_FANOUT * 8} bytes` }),
  /** Sender's wall clock (ms) when published. */
  at: z.number().int().min(0)
})

export interface DatasetSummary {
  region: string
  dataset: string
  fp: string
  depth: number
  count: number
  sum: bigint
  children: bigint[]
  at: number
}

export function summarize (region: string, dataset: string, fp: string, tree: MerkleTree, at = Date.now()): DatasetSummary {
  const children: bigint[] = []
  for (let j = 0; j < TREE_FANOUT; j++) children.push(tree.sum(1, j))
  return { region, dataset, fp, depth: tree.depth, count: tree.rowCount, sum: tree.root.sum, children, at }
}

export function encodeSummary (s: DatasetSummary): Uint8Array {
  const children = new Uint8Array(TREE_FANOUT * 8)
  s.children.forEach((c, i) => children.set(u64ToBytes(c), i * 8))
  return pack({ v: 1, region: s.region, dataset: s.dataset, fp: s.fp, depth: s.depth, count: s.count, sum: u64ToBytes(s.sum), children, at: s.at })
}

/**
 * Size-bounded, shape-checked before decoding (decodeFrame), schema-checked
 * after, then checked for consistency: a root's sum is the sum of its
 * children's (mod 2^64), and an empty tree sums to zero. Throws
 * MalformedMessageError naming the problem.
 */
export function decodeSummary (data: Uint8Array): DatasetSummary {
  if (data.length > MAX_SUMMARY_BYTES) throw new MalformedMessageError(`summary of ${data.length} bytes exceeds ${MAX_SUMMARY_BYTES}`)
  const m = checkMessage(summarySchema, decodeFrame(data, 'summary'), 'summary')
  const children: bigint[] = []
  for (let j = 0; j < TREE_FANOUT; j++) children.push(bytesToU64(m.children, j * 8))
  const sum = bytesToU64(m.sum)
  // a summary that contradicts itself cannot describe any tree: believing its root would start syncs against nothing
  let total = 0n
  for (const c of children) total += c
  if (BigInt.asUintN(64, total) !== sum) throw new MalformedMessageError('summary: root sum is not the sum of its children')
  if (m.count === 0 && sum !== 0n) throw new MalformedMessageError('summary: an empty tree with a non-zero sum')
  return { region: m.region, dataset: m.dataset, fp: m.fp, depth: m.depth, count: m.count, sum, children, at: m.at }
}
