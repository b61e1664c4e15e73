/**
 * The end check that matters most: every replica holds exactly the source of
 * truth's rows, read from the stores themselves (not asked of the agents).
 *
 * Each row is reduced to the first 8 bytes of SHA-256 over its key and its
 * canonical row bytes (a different hash from the agents' xxh64, so a fault
 * in their digests cannot hide itself); the sorted arrays are compared
 * element by element. Two stores agree when the arrays are equal (a false
 * agreement needs a 64-bit collision). 8 bytes a row: a million rows take
 * 8 MB, not the gigabyte full rows would. Where they differ, a second pass
 * names the rows.
 */
import { createHash } from 'node:crypto'
import type { ReplicaStore } from '../src/stores/replica-store.ts'
import type { DatasetModel } from './dataset-model.ts'

function entryHash (key: Uint8Array, row: Uint8Array): bigint {
  const h = createHash('sha256')
  const len = Buffer.allocUnsafe(4)
  len.writeUInt32BE(key.length)
  return h.update(len).update(key).update(row).digest().readBigUInt64BE(0)
}

/** Every row of a store as sorted entry hashes. */
export async function fingerprint (store: ReplicaStore, signal?: AbortSignal): Promise<BigUint64Array> {
  let out = new BigUint64Array(1024)
  let n = 0
  for await (const batch of store.scan({ signal })) {
    for (const { key, row } of batch) {
      if (n === out.length) { const grown = new BigUint64Array(out.length * 2); grown.set(out); out = grown }
      out[n++] = entryHash(key, row)
    }
  }
  return out.slice(0, n).sort()
}

export interface Difference {
  /** Rows only the source of truth has (as it has them), and only the replica has. */
  onlyInSource: number
  onlyInReplica: number
  /** A few of them, for the report: the order id and which side. */
  examples: Array<{ orderId: number, side: 'source' | 'replica', row: Record<string, unknown> }>
}

/** Walks two sorted fingerprints; the hashes found on one side only. */
function diffSorted (a: BigUint64Array, b: BigUint64Array): { onlyA: bigint[], onlyB: bigint[] } {
  const onlyA: bigint[] = []
  const onlyB: bigint[] = []
  let i = 0; let j = 0
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && a[i]! < b[j]!)) { onlyA.push(a[i++]!) } else if (i >= a.length || b[j]! < a[i]!) { onlyB.push(b[j++]!) } else { i++; j++ }
  }
  return { onlyA, onlyB }
}

const EXAMPLES = 10

/** undefined when equal; else how they differ, with a few rows named. */
export async function compareStores (source: { store: ReplicaStore, print: BigUint64Array }, replica: { store: ReplicaStore, print: BigUint64Array }, model: DatasetModel): Promise<Difference | undefined> {
  const { onlyA, onlyB } = diffSorted(source.print, replica.print)
  if (onlyA.length === 0 && onlyB.length === 0) return undefined
  const examples: Difference['examples'] = []
  const collect = async (store: ReplicaStore, wanted: Set<bigint>, side: 'source' | 'replica'): Promise<void> => {
    for await (const batch of store.scan()) {
      for (const { key, row } of batch) {
        if (examples.length >= EXAMPLES) return
        if (wanted.has(entryHash(key, row))) examples.push({ orderId: model.idOfKey(key), side, row: model.codec.decodeRow(row) })
      }
    }
  }
  await collect(source.store, new Set(onlyA.slice(0, EXAMPLES)), 'source')
  await collect(replica.store, new Set(onlyB.slice(0, EXAMPLES)), 'replica')
  return { onlyInSource: onlyA.length, onlyInReplica: onlyB.length, examples }
}
