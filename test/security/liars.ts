/**
 * Ways for a source of truth to lie, shared by the narrowing-level tests and
 * the end-to-end tests with a lying agent.
 *
 * - forgingView: serves a real tree (so its `opened` root and its gossiped
 *   summaries stay honest) but forged rows under it, with index entries that
 *   match the forged rows: each node's rows add up to the sum sent with them,
 *   only not to what the tree said of the node.
 * - garbledView: serves real rows under entry hashes that are wrong.
 * - rewritingChannel: rewrites every message the source sends (a forged
 *   region name, a forged count).
 */
import { pack } from 'msgpackr'
import { entryHash } from '../../src/digest/hash.ts'
import type { RowCodec } from '../../src/digest/row-codec.ts'
import type { FrameChannel } from '../../src/sync/channel.ts'
import { decodeFrame } from '../../src/sync/messages.ts'
import type { IndexEntry, ReplicaView } from '../../src/sync/replica-view.ts'

export function forgingView (view: ReplicaView, codec: RowCodec, forge: (row: Uint8Array) => Uint8Array): ReplicaView {
  const forged = new Map<string, Uint8Array>()
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
  const forgeEntries = async (entries: IndexEntry[]): Promise<IndexEntry[]> => {
    const rows = await view.getRows(entries.map(e => e.key))
    return entries.map((e, i) => {
      const row = rows[i]
      if (row === undefined) return e
      const fake = forge(row)
      forged.set(hex(e.key), fake)
      return { ...e, entry: entryHash(e.keyHash, codec.rowDigest(fake)) }
    })
  }
  return {
    tree: view.tree,
    list: async (level, index, options) => await forgeEntries(await view.list(level, index, options)),
    listMany: async (nodes, options) => await Promise.all((await view.listMany(nodes, options)).map(forgeEntries)),
    getRows: async (keys, options) => {
      const real = await view.getRows(keys, options)
      return keys.map((k, i) => forged.get(hex(k)) ?? real[i])
    }
  }
}

export function garbledView (view: ReplicaView): ReplicaView {
  const garble = (entries: IndexEntry[]): IndexEntry[] => entries.map(e => ({ ...e, entry: e.entry ^ 0x5a5a5a5a5a5a5a5an }))
  return {
    tree: view.tree,
    list: async (level, index, options) => garble(await view.list(level, index, options)),
    listMany: async (nodes, options) => (await view.listMany(nodes, options)).map(garble),
    getRows: async (keys, options) => await view.getRows(keys, options)
  }
}

/** A channel that rewrites each message sent through it. */
export function rewritingChannel (channel: FrameChannel, rewrite: (message: Record<string, unknown>) => Record<string, unknown>): FrameChannel {
  return {
    get bytesSent () { return channel.bytesSent },
    get bytesReceived () { return channel.bytesReceived },
    send: async (frame, options) => { await channel.send(pack(rewrite(decodeFrame(frame, 'sent') as Record<string, unknown>)), options) },
    receive: async (options) => await channel.receive(options),
    close: async (options) => { await channel.close(options) },
    abort: (err) => { channel.abort(err) }
  }
}
