/**
 * A one-shot comparison of two stores of one dataset, with the same engine
 * the agents use: each store gets a digest index (in a throwaway state
 * directory), the right side narrows against the left over an in-memory
 * channel, and the differing rows are read from both sides. Only rows are
 * read: the stores may be open read-only (StoreOpenOptions.readOnly).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { RowCodec } from '../digest/row-codec.ts'
import { DigestIndex } from '../index/digest-index.ts'
import { StateDb } from '../index/state-db.ts'
import type { ReplicaStore } from '../stores/replica-store.ts'
import { memoryChannelPair } from './channel.ts'
import { runClientSync, serveSync } from './session.ts'
import { hexOf } from '../util/bytes.ts'

export interface StoreDifference {
  /** Rows only the left store holds. */
  onlyLeft: Uint8Array[]
  /** Rows only the right store holds. */
  onlyRight: Uint8Array[]
  /** Rows both hold under the same key, with different digests. */
  changed: Array<{ left: Uint8Array, right: Uint8Array }>
  /** Exchange cost, as an agent would have paid it. */
  roundTrips: number
  bytes: number
}

const hex = hexOf

export async function compareStores (left: ReplicaStore, right: ReplicaStore, codec: RowCodec, options: { signal?: AbortSignal } = {}): Promise<StoreDifference> {
  const dir = await mkdtemp(join(tmpdir(), 'converge-diff-'))
  const states = [new StateDb(join(dir, 'left')), new StateDb(join(dir, 'right'))]
  const indexes: DigestIndex[] = []
  try {
    for (const [i, store] of [left, right].entries()) {
      await states[i]!.open()
      // a snapshot: the stores' change logs are their agents', not this comparison's to follow or trim
      const index = new DigestIndex({ dataset: 'diff', codec, store, state: states[i]!, snapshot: true })
      await index.start({ signal: options.signal })
      indexes.push(index)
    }
    const [leftIndex, rightIndex] = indexes as [DigestIndex, DigestIndex]
    const [client, server] = memoryChannelPair()
    const served = serveSync(server, { resolve: () => ({ region: 'left', codec, view: leftIndex, clock: () => ({}) }), signal: options.signal })
    const { result, stats } = await runClientSync(client, { dataset: 'diff', region: 'right', codec, view: rightIndex, clock: {}, correlationId: 'diff', signal: options.signal })
    await served
    const leftRows = result.upserts
    const rightNow = await right.get(leftRows.map(r => codec.keyOfEncodedRow(r)), options)
    const onlyLeft: Uint8Array[] = []
    const changed: StoreDifference['changed'] = []
    leftRows.forEach((row, i) => { const mine = rightNow[i]; if (mine === undefined) onlyLeft.push(row); else changed.push({ left: row, right: mine }) })
    const onlyRight = (await right.get(result.deletes, options)).filter((r): r is Uint8Array => r !== undefined)
    const byKey = (a: Uint8Array, b: Uint8Array): number => hex(codec.keyOfEncodedRow(a)).localeCompare(hex(codec.keyOfEncodedRow(b)))
    return {
      onlyLeft: onlyLeft.sort(byKey),
      onlyRight: onlyRight.sort(byKey),
      changed: changed.sort((a, b) => byKey(a.left, b.left)),
      roundTrips: stats.roundTrips,
      bytes: stats.bytesSent + stats.bytesReceived
    }
  } finally {
    for (const index of indexes) await index.stop()
    for (const state of states) await state.close().catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  }
}
