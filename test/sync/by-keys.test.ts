/**
 * Asking the source by key (sync/by-keys.ts, Responder.answerKeys): over a
 * memory channel pair, with serveSync on one side and runClientSync({
 * suspects }) on the other, both holding in-memory replicas. The result is
 * exactly the difference on the keys asked about; the source refuses bad
 * requests with a stable code and goes on serving; a client refuses answers
 * that do not add up and takes nothing from them.
 */
import fc from 'fast-check'
import { pack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { entryHash } from '../../src/digest/hash.ts'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { InvalidSourceRowError, ProtocolViolationError, RemoteError } from '../../src/errors.ts'
import { MAX_FRAME_BYTES } from '../../src/constants.ts'
import { memoryChannelPair, type FrameChannel } from '../../src/sync/channel.ts'
import { keyRequests, keysMessage, type Suspect } from '../../src/sync/by-keys.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import { decodeFrame, MAX_KEYS_PER_REQUEST } from '../../src/sync/messages.ts'
import type { NarrowingResult } from '../../src/sync/narrowing.ts'
import { runClientSync, serveSync, type ClientSyncOutcome } from '../../src/sync/session.ts'
import { ordersCodec as codec, order } from '../helpers/datasets.ts'

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
const row = (id: number, version = 0): Uint8Array => codec.encodeRow(order(id, version))
const key = (id: number): Uint8Array => codec.encodeKey({ id })
const entryOf = (c: RowCodec, r: Uint8Array): bigint => entryHash(c.keyHash(c.keyOfEncodedRow(r)), c.rowDigest(r))

/** Rows by id, with a version each: the replica's content. */
type Rows = Map<number, number>
const replicaOf = (rows: Rows): MemoryReplica => new MemoryReplica(codec, [...rows].map(([id, v]) => row(id, v)))

/** This side's suspects for those keys, as the index notes them: entry and (unless `keep` says no) row. */
function suspectsOf (local: MemoryReplica, keys: readonly Uint8Array[], keep: (i: number) => boolean = () => true, c: RowCodec = codec): Suspect[] {
  const rows = local.rowMap()
  return keys.map((k, i) => {
    const r = rows.get(hex(k))
    const s: Suspect = { key: k, entry: r === undefined ? undefined : entryHash(c.keyHash(k), c.rowDigest(r)) }
    if (keep(i)) s.row = r ?? null
    return s
  })
}

/** A channel whose outgoing frames go through `rewrite` (undefined: sent as they are); a rewrite may send several frames, or raw bytes. */
function tampered (channel: FrameChannel, rewrite: (message: Record<string, unknown>) => Array<Record<string, unknown> | Uint8Array> | undefined): FrameChannel {
  return {
    get bytesSent () { return channel.bytesSent },
    get bytesReceived () { return channel.bytesReceived },
    async send (frame, options) {
      const out = rewrite(decodeFrame(frame, 'test') as Record<string, unknown>)
      if (out === undefined) { await channel.send(frame, options); return }
      for (const m of out) await channel.send(m instanceof Uint8Array ? m : pack(m), options)
    },
    receive: async options => await channel.receive(options),
    close: async options => { await channel.close(options) },
    abort: err => { channel.abort(err) }
  }
}

interface AskOptions {
  c?: RowCodec
  /** Rewrites the client's outgoing frames. */
  request?: Parameters<typeof tampered>[1]
  /** Rewrites the server's outgoing frames. */
  answer?: Parameters<typeof tampered>[1]
}

/** One exchange by key; returns the client's outcome and the server's end. */
function ask (sot: MemoryReplica, local: MemoryReplica, suspects: readonly Suspect[], options: AskOptions = {}): { client: Promise<ClientSyncOutcome>, served: Promise<unknown> } {
  const c = options.c ?? codec
  const [clientEnd, serverEnd] = memoryChannelPair()
  const server = options.answer === undefined ? serverEnd : tampered(serverEnd, options.answer)
  const client = options.request === undefined ? clientEnd : tampered(clientEnd, options.request)
  const served = serveSync(server, { resolve: () => ({ region: 'sot', codec: c, view: sot, clock: () => ({ sot: 1 }) }) })
  // either side failing is looked at by the test; keep an unobserved rejection from failing the run
  served.catch(() => undefined)
  const outcome = runClientSync(client, { dataset: 'orders', region: 'local', codec: c, view: local, clock: {}, correlationId: 'by-key', suspects })
  outcome.catch(() => undefined)
  return { client: outcome, served }
}

async function askByKey (sot: MemoryReplica, local: MemoryReplica, suspects: readonly Suspect[], c: RowCodec = codec): Promise<ClientSyncOutcome> {
  const { client, served } = ask(sot, local, suspects, { c })
  const outcome = await client
  await served
  return outcome
}

/** The difference on `keys`, computed row by row from the two row maps. */
function reference (sot: MemoryReplica, local: MemoryReplica, keys: readonly Uint8Array[]): { upserts: Set<string>, deletes: Set<string>, missing: number, changed: number, extra: number } {
  const s = sot.rowMap(); const l = local.rowMap()
  const upserts = new Set<string>(); const deletes = new Set<string>()
  let missing = 0; let changed = 0
  for (const k of keys) {
    const theirs = s.get(hex(k)); const mine = l.get(hex(k))
    if (theirs !== undefined && mine === undefined) { missing++; upserts.add(hex(theirs)) }
    if (theirs !== undefined && mine !== undefined && hex(theirs) !== hex(mine)) { changed++; upserts.add(hex(theirs)) }
    if (theirs === undefined && mine !== undefined) deletes.add(hex(k))
  }
  return { upserts, deletes, missing, changed, extra: deletes.size }
}

/** The result is exactly the reference difference on `keys`, with its keys and (when given) this side's rows aligned. */
function expectExact (result: NarrowingResult, sot: MemoryReplica, local: MemoryReplica, keys: readonly Uint8Array[], c: RowCodec = codec): void {
  const want = reference(sot, local, keys)
  expect(result.upserts.map(hex).sort()).toEqual([...want.upserts].sort())
  expect(result.deletes.map(hex).sort()).toEqual([...want.deletes].sort())
  expect({ missing: result.missing, changed: result.changed, extra: result.extra, unresolved: result.unresolved, truncated: result.truncated })
    .toEqual({ missing: want.missing, changed: want.changed, extra: want.extra, unresolved: 0, truncated: false })
  expect(result.upsertKeys?.map(hex)).toEqual(result.upserts.map(r => hex(c.keyOfEncodedRow(r))))
  if (result.local !== undefined) {
    const mine = local.rowMap()
    const expected = [...result.upsertKeys!, ...result.deletes].map(k => { const r = mine.get(hex(k)); return r === undefined ? null : hex(r) })
    expect(result.local.map(r => r === null ? null : hex(r))).toEqual(expected)
  }
}

/** `local`'s rows with the result applied. */
function applied (local: MemoryReplica, result: NarrowingResult, c: RowCodec = codec): MemoryReplica {
  const rows = local.rowMap()
  for (const r of result.upserts) rows.set(hex(c.keyOfEncodedRow(r)), r)
  for (const k of result.deletes) rows.delete(hex(k))
  return new MemoryReplica(c, rows.values())
}

/**
 * The fixture most tests share: the SoT holds orders 0..99 and 200..204; the
 * replica changed 5..9, inserted 10_000..10_004 (the SoT lacks them) and
 * deleted 200..204. `same` are keys equal on both sides, `nowhere` keys on neither.
 */
function drifted (): { sot: MemoryReplica, local: MemoryReplica, drifted: Uint8Array[], same: Uint8Array[], nowhere: Uint8Array[] } {
  const sotRows: Rows = new Map()
  for (let id = 0; id < 100; id++) sotRows.set(id, 0)
  for (let id = 200; id < 205; id++) sotRows.set(id, 0)
  const localRows: Rows = new Map(sotRows)
  for (let id = 5; id < 10; id++) localRows.set(id, 1)
  for (let id = 200; id < 205; id++) localRows.delete(id)
  for (let id = 10_000; id < 10_005; id++) localRows.set(id, 0)
  const ids = (from: number, to: number): Uint8Array[] => Array.from({ length: to - from }, (_, i) => key(from + i))
  return {
    sot: replicaOf(sotRows),
    local: replicaOf(localRows),
    drifted: [...ids(5, 10), ...ids(200, 205), ...ids(10_000, 10_005)],
    same: ids(0, 5),
    nowhere: ids(50_000, 50_003)
  }
}

describe('asking the source by key', () => {
  it('yields exactly the difference on the drifted keys, and applying it makes the roots equal', async () => {
    const { sot, local, drifted: keys } = drifted()
    expect(local.tree.root).not.toEqual(sot.tree.root)
    const { result, stats, opened } = await askByKey(sot, local, suspectsOf(local, keys))
    expectExact(result, sot, local, keys)
    expect({ missing: result.missing, changed: result.changed, extra: result.extra }).toEqual({ missing: 5, changed: 5, extra: 5 })
    // the SoT's rows for the changed and missing keys, the keys it lacks to delete
    expect(new Set(result.upserts.map(hex))).toEqual(new Set([5, 6, 7, 8, 9, 200, 201, 202, 203, 204].map(id => hex(row(id)))))
    expect(new Set(result.deletes.map(hex))).toEqual(new Set([10_000, 10_001, 10_002, 10_003, 10_004].map(id => hex(key(id)))))
    expect(stats.roundTrips).toBe(1)
    expect(opened.count).toBe(sot.tree.root.count)
    expect(applied(local, result).tree.root).toEqual(sot.tree.root)
    // what applying it does to this side's root, told before applying: here the root becomes the SoT's
    expect(local.tree.root.count + result.rootShift!.count).toBe(sot.tree.root.count)
    expect((local.tree.root.sum + result.rootShift!.sum) & ((1n << 64n) - 1n)).toBe(sot.tree.root.sum)
  })

  it('tells a root shift that falls short of the SoT\'s root when the suspects are not all the drift', async () => {
    const { sot, local, drifted: keys } = drifted()
    const { result } = await askByKey(sot, local, suspectsOf(local, keys.slice(0, keys.length - 3)))
    const shifted = applied(local, result).tree.root
    expect(shifted).not.toEqual(sot.tree.root)
    expect(local.tree.root.count + result.rootShift!.count).toBe(shifted.count)
    expect((local.tree.root.sum + result.rootShift!.sum) & ((1n << 64n) - 1n)).toBe(shifted.sum)
  })

  it('sends nothing for a suspect whose row is the same at the source, nor for a key neither side has', async () => {
    const { sot, local, drifted: keys, same, nowhere } = drifted()
    const all = [...same, ...keys, ...nowhere]
    const { result } = await askByKey(sot, local, suspectsOf(local, all))
    expectExact(result, sot, local, all)
    expect(result.upserts.length + result.deletes.length).toBe(15)
    const sent = new Set([...result.upsertKeys!, ...result.deletes].map(hex))
    for (const k of [...same, ...nowhere]) expect(sent.has(hex(k))).toBe(false)
    // only those: nothing at all
    const nothing = await askByKey(sot, local, suspectsOf(local, [...same, ...nowhere]))
    expect(nothing.result).toMatchObject({ upserts: [], upsertKeys: [], deletes: [], missing: 0, changed: 0, extra: 0 })
    expect(applied(local, result).tree.root).toEqual(sot.tree.root)
  })

  it('hands on this side\'s rows (`local`, upserts then deletes) when every suspect kept its row, and none when a drifted one did not', async () => {
    const { sot, local, drifted: keys, same } = drifted()
    const mine = local.rowMap()
    const all = [...same, ...keys]
    const withRows = await askByKey(sot, local, suspectsOf(local, all))
    expect(withRows.result.local).toBeDefined()
    expect(withRows.result.local).toHaveLength(withRows.result.upserts.length + withRows.result.deletes.length)
    const want = [...withRows.result.upsertKeys!, ...withRows.result.deletes].map(k => mine.get(hex(k)) ?? null)
    expect(withRows.result.local!.map(r => r === null ? null : hex(r))).toEqual(want.map(r => r === null ? null : hex(r)))
    // a key deleted here (missing) is null; a changed one and an extra one are the rows here
    const at = (id: number): number => [...withRows.result.upsertKeys!, ...withRows.result.deletes].findIndex(k => hex(k) === hex(key(id)))
    expect(withRows.result.local![at(200)]).toBeNull()
    expect(hex(withRows.result.local![at(5)]!)).toBe(hex(row(5, 1)))
    expect(hex(withRows.result.local![at(10_000)]!)).toBe(hex(row(10_000)))
    expectExact(withRows.result, sot, local, all)

    // one drifted suspect of each kind without its row: no `local` at all (the policy reads the rows itself)
    for (const id of [7, 202, 10_003]) {
      const without = await askByKey(sot, local, suspectsOf(local, all, i => hex(all[i]!) !== hex(key(id))))
      expect(without.result.local).toBeUndefined()
      expectExact(without.result, sot, local, all)
    }
    // a suspect without its row that turns out the same at the source is not part of the difference: the rows are still all known
    const rowless = await askByKey(sot, local, suspectsOf(local, all, i => i >= same.length))
    expect(rowless.result.local).toHaveLength(15)
    expectExact(rowless.result, sot, local, all)
  })

  it('splits more than MAX_KEYS_PER_REQUEST suspects into several requests, with the same exact result', async () => {
    const n = 2 * MAX_KEYS_PER_REQUEST + 232
    const sotRows: Rows = new Map(); const localRows: Rows = new Map()
    for (let id = 0; id < n; id++) {
      if (id % 2 === 0) sotRows.set(id, 0)
      if (id % 3 === 0) localRows.set(id, id % 5 === 0 ? 1 : 0)
    }
    const sot = replicaOf(sotRows); const local = replicaOf(localRows)
    const keys = Array.from({ length: n }, (_, id) => key(id))
    const suspects = suspectsOf(local, keys)
    expect(keyRequests(suspects).map(p => p.length)).toEqual([MAX_KEYS_PER_REQUEST, MAX_KEYS_PER_REQUEST, 232])
    const { result, stats } = await askByKey(sot, local, suspects)
    expect(stats.roundTrips).toBe(3)
    expectExact(result, sot, local, keys)
    expect(result.local).toHaveLength(result.upserts.length + result.deletes.length)
    // every key is a suspect: the fix levels the whole replica
    expect(applied(local, result).tree.root).toEqual(sot.tree.root)
  })

  it('cuts requests by key bytes too, and takes answers that span several frames', async () => {
    // long string keys: about 1,150 fit the key bytes of one request; every row differs, so each answer is over a megabyte
    const wide = new RowCodec({ version: 1, columns: [{ name: 'k', type: 'string' }, { name: 'v', type: 'integer' }], primaryKey: ['k'], ignoreColumns: [] })
    const n = 2500
    const name = (i: number): string => `${'k'.repeat(900)}-${i}`
    const sot = new MemoryReplica(wide, Array.from({ length: n }, (_, i) => wide.encodeRow({ k: name(i), v: 1 })))
    const local = new MemoryReplica(wide, Array.from({ length: n }, (_, i) => wide.encodeRow({ k: name(i), v: i % 10 === 0 ? 1 : 0 })))
    const keys = Array.from({ length: n }, (_, i) => wide.encodeKey({ k: name(i) }))
    const suspects = suspectsOf(local, keys, () => true, wide)
    const parts = keyRequests(suspects)
    expect(parts.length).toBe(3)
    for (const part of parts) expect(part.reduce((s, p) => s + p.key.length, 0)).toBeLessThanOrEqual(MAX_FRAME_BYTES / 4)
    expect(parts.flat()).toEqual(suspects)
    const { result, stats } = await askByKey(sot, local, suspects, wide)
    expect(stats.roundTrips).toBe(3)
    expectExact(result, sot, local, keys, wide)
    expect(result.changed).toBe(n - n / 10)
    expect(applied(local, result, wide).tree.root).toEqual(sot.tree.root)
  })

  it('puts held keys first, with their entries in order, then the keys absent here', () => {
    const suspects: Suspect[] = [
      { key: key(1), entry: undefined },
      { key: key(2), entry: 0x0102030405060708n },
      { key: key(3), entry: undefined },
      { key: key(4), entry: 0xfffffffffffffffen }
    ]
    const { message, asked } = keysMessage(suspects)
    expect(asked.map(s => hex(s.key))).toEqual([2, 4, 1, 3].map(id => hex(key(id))))
    expect(message.held?.map(hex)).toEqual([2, 4].map(id => hex(key(id))))
    expect(message.absent?.map(hex)).toEqual([1, 3].map(id => hex(key(id))))
    expect(hex(message.entries!)).toBe('0102030405060708fffffffffffffffe')
  })

  it('yields exactly the reference difference restricted to the suspects, for any drift (property)', async () => {
    const rowSet = fc.dictionary(fc.integer({ min: 0, max: 400 }).map(String), fc.integer({ min: 0, max: 2 }), { maxKeys: 250 })
    const pick = fc.uniqueArray(fc.record({ id: fc.integer({ min: 0, max: 450 }), keep: fc.boolean() }), { selector: s => s.id, maxLength: 200 })
    await fc.assert(fc.asyncProperty(rowSet, rowSet, pick, fc.boolean(), async (a, b, picked, coverAll) => {
      const sotRows: Rows = new Map(Object.entries(a).map(([id, v]) => [Number(id), v]))
      const localRows: Rows = new Map(Object.entries(b).map(([id, v]) => [Number(id), v]))
      const sot = replicaOf(sotRows); const local = replicaOf(localRows)
      // the suspects: the picked keys, and (sometimes) every key of either side as well
      const chosen = new Map(picked.map(p => [p.id, p.keep]))
      if (coverAll) for (const id of [...sotRows.keys(), ...localRows.keys()]) if (!chosen.has(id)) chosen.set(id, true)
      const ids = [...chosen.keys()]
      const keys = ids.map(key)
      const { result, stats } = await askByKey(sot, local, suspectsOf(local, keys, i => chosen.get(ids[i]!)!))
      expect(stats.roundTrips).toBe(keys.length === 0 ? 0 : 1)
      expectExact(result, sot, local, keys)
      // `local` is there exactly when every key of the difference kept its row
      const differing = [...result.upsertKeys!, ...result.deletes].map(k => codec.decodeKey(k).id as number)
      expect(result.local !== undefined).toBe(differing.every(id => chosen.get(id) === true))
      // after the fix, every suspect is as the SoT has it; with all keys asked, the whole replica is
      const after = applied(local, result).rowMap(); const want = sot.rowMap()
      for (const k of keys) expect(after.get(hex(k)) === undefined ? undefined : hex(after.get(hex(k))!)).toEqual(want.get(hex(k)) === undefined ? undefined : hex(want.get(hex(k))!))
      if (coverAll) expect(applied(local, result).tree.root).toEqual(sot.tree.root)
    }), { numRuns: 120 })
  })
})

describe('the source refuses a bad keys request', () => {
  const { sot, local, drifted: keys } = drifted()
  const suspects = suspectsOf(local, keys)

  /** Runs the exchange with the request rewritten; the client gets a RemoteError with the malformed-message code, the server ends with it. */
  async function refused (rewrite: (m: Record<string, unknown>) => Record<string, unknown>, message?: RegExp): Promise<void> {
    const { client, served } = ask(sot, local, suspects, { request: m => m.t === 'keys' ? [rewrite(m)] : undefined })
    const err = await client.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(RemoteError)
    expect((err as RemoteError).remoteCode).toBe('CONVERGE_MALFORMED_MESSAGE')
    if (message !== undefined) expect((err as RemoteError).message).toMatch(message)
    await expect(served).rejects.toMatchObject({ code: 'CONVERGE_MALFORMED_MESSAGE' })
    // the source serves the next stream as ever
    const again = await askByKey(sot, local, suspects)
    expectExact(again.result, sot, local, keys)
  }

  const withHeld = (k: Uint8Array) => (m: Record<string, unknown>) => ({ ...m, held: [k, ...(m.held as Uint8Array[]).slice(1)] })
  const withAbsent = (k: Uint8Array) => (m: Record<string, unknown>) => ({ ...m, absent: [k, ...(m.absent as Uint8Array[]).slice(1)] })

  it('a key of the wrong type for its column', async () => {
    await refused(withHeld(pack(['5'])), /keys: a key/)
    await refused(withHeld(pack([5.5])), /keys: a key/)
    await refused(withAbsent(pack([true])), /keys: a key/)
  })

  it('a key with extra values, or none', async () => {
    await refused(withHeld(pack([5, 6])), /keys: a key/)
    await refused(withHeld(pack([])), /keys: a key/)
    await refused(withAbsent(pack([200, 'x'])), /keys: a key/)
  })

  it('a key that is not a msgpack array, or not msgpack at all', async () => {
    await refused(withHeld(pack(5)), /keys: a key/)
    await refused(withHeld(pack('5')), /keys: a key/)
    await refused(withHeld(pack({ id: 5 })), /keys: a key/)
    await refused(withHeld(pack(null)), /keys: a key/)
    await refused(withHeld(new Uint8Array()), /keys: a key/)
    await refused(withHeld(Uint8Array.from([0x91, 0xc1])), /keys: a key/)
  })

  it('a key in another encoding of the right value, or with bytes after it', async () => {
    // [5] with the integer as int32: the same value, a second key
    await refused(withHeld(Uint8Array.from([0x91, 0xd2, 0, 0, 0, 5])), /not in the canonical encoding/)
    await refused(withHeld(Uint8Array.from([0x91, 0x05, 0x00])), /keys: a key/)
  })

  it('entries that are not 8 bytes per held key', async () => {
    await refused(m => ({ ...m, entries: (m.entries as Uint8Array).subarray(0, -1) }), /entries/)
    await refused(m => ({ ...m, entries: (m.entries as Uint8Array).subarray(0, -8) }), /entries/)
    await refused(m => ({ ...m, entries: Buffer.concat([m.entries as Uint8Array, new Uint8Array(8)]) }), /entries/)
    await refused(m => ({ ...m, entries: 'not bytes' }), /entries/)
  })

  it('more than MAX_KEYS_PER_REQUEST keys, in one list or across both', async () => {
    const many = (from: number, n: number): Uint8Array[] => Array.from({ length: n }, (_, i) => key(from + i))
    await refused(m => ({ ...m, absent: many(100_000, MAX_KEYS_PER_REQUEST + 1) }), /absent/)
    await refused(m => ({ ...m, held: many(100_000, MAX_KEYS_PER_REQUEST + 1), entries: new Uint8Array(8 * (MAX_KEYS_PER_REQUEST + 1)) }), /held/)
    // each list within the limit, both together over it
    await refused(m => ({ ...m, absent: many(100_000, MAX_KEYS_PER_REQUEST - 9) }), /more than 16384 keys/)
  })

  it('a keys request whose fields are not what they should be', async () => {
    await refused(m => ({ ...m, held: 'x' }), /held/)
    await refused(m => ({ ...m, absent: [7] }), /absent/)
  })
})

describe('a client that asks by key refuses an answer that does not add up', () => {
  /**
   * Asked: held 0..4 (the same at the source), 5..9 (changed here) and
   * 10_000..10_004 (not at the source), then absent 200..204 (at the source)
   * and 50_000 (nowhere). In `asked` order: positions 0..14 are held, 15.. absent.
   */
  const { sot, local, drifted: keys, same, nowhere } = drifted()
  const suspects = suspectsOf(local, [...same, ...keys, ...nowhere.slice(0, 1)])
  const held = suspects.filter(s => s.entry !== undefined).length
  const position = (id: number): number => keysMessage(suspects).asked.findIndex(s => hex(s.key) === hex(key(id)))
  const positions = (...at: number[]): Uint8Array => { const b = Buffer.alloc(4 * at.length); at.forEach((p, i) => b.writeUInt32BE(p, 4 * i)); return b }

  /** Runs the exchange with the source's answer rewritten; the client must throw `type` and hand back nothing. */
  async function refusedAnswer (rewrite: (m: Record<string, unknown>) => Array<Record<string, unknown> | Uint8Array>, type: new (...args: never[]) => Error, message?: RegExp): Promise<void> {
    const { client, served } = ask(sot, local, suspects, { answer: m => m.t === 'keyed' ? rewrite(m) : undefined })
    served.catch(() => undefined)
    const err = await client.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(type)
    if (message !== undefined) expect((err as Error).message).toMatch(message)
  }
  const rowsOf = (m: Record<string, unknown>): Uint8Array[] => (m.rows as Uint8Array[] | undefined) ?? []

  it('takes the honest answer (the rewriting itself changes nothing)', async () => {
    const { client, served } = ask(sot, local, suspects, { answer: m => m.t === 'keyed' ? [m] : undefined })
    const { result } = await client
    await served
    expectExact(result, sot, local, suspects.map(s => s.key))
    expect(result.deletes.map(hex).sort()).toEqual([10_000, 10_001, 10_002, 10_003, 10_004].map(id => hex(key(id))).sort())
    expect(held).toBe(15)
    expect(position(10_000)).toBeLessThan(held)
    expect(position(200)).toBeGreaterThanOrEqual(held)
  })

  it('a row for a key it did not ask about', async () => {
    await refusedAnswer(m => [{ ...m, rows: [...rowsOf(m), row(50)] }], ProtocolViolationError, /not asked about/)
    // also a key the source lacks and a key asked about in another form (a changed version of an unasked key)
    await refusedAnswer(m => [{ ...m, rows: [row(70, 2), ...rowsOf(m)] }], ProtocolViolationError, /not asked about/)
  })

  it('the same key twice, in one frame or across frames', async () => {
    await refusedAnswer(m => [{ ...m, rows: [...rowsOf(m), rowsOf(m)[0]!] }], ProtocolViolationError, /or twice/)
    // twice in a row, and twice with different rows
    await refusedAnswer(m => [{ ...m, rows: [rowsOf(m)[0]!, ...rowsOf(m)] }], ProtocolViolationError, /or twice/)
    await refusedAnswer(m => [{ ...m, rows: [...rowsOf(m), row(5, 3)] }], ProtocolViolationError, /or twice/)
    await refusedAnswer(m => [{ t: 'keyed', rows: rowsOf(m), more: true }, { ...m, rows: [rowsOf(m)[0]!] }], ProtocolViolationError, /or twice/)
  })

  it('rows out of the order the keys were asked in', async () => {
    await refusedAnswer(m => [{ ...m, rows: [...rowsOf(m)].reverse() }], ProtocolViolationError, /out of the order asked/)
  })

  it('a row that is the same as this side\'s', async () => {
    // (key 0 is the first asked: its row goes first)
    expect(position(0)).toBe(0)
    await refusedAnswer(m => [{ ...m, rows: [row(0), ...rowsOf(m)] }], ProtocolViolationError, /same here/)
    // a changed key's row as it is here
    await refusedAnswer(m => [{ ...m, rows: rowsOf(m).map(r => hex(r) === hex(row(5)) ? row(5, 1) : r) }], ProtocolViolationError, /same here/)
  })

  it('a key it lacks that is out of range: past the held keys, or past everything asked', async () => {
    await refusedAnswer(m => [{ ...m, gone: positions(position(10_000), held) }], ProtocolViolationError, /not among the held keys/)
    await refusedAnswer(m => [{ ...m, gone: positions(position(200)) }], ProtocolViolationError, /not among the held keys/)
    await refusedAnswer(m => [{ ...m, gone: positions(10_000) }], ProtocolViolationError, /not among the held keys/)
    await refusedAnswer(m => [{ ...m, gone: positions(0xffffffff) }], ProtocolViolationError, /not among the held keys/)
  })

  it('keys it lacks out of order, or named twice', async () => {
    const gone = [10_000, 10_001, 10_002, 10_003, 10_004].map(position)
    await refusedAnswer(m => [{ ...m, gone: positions(...[...gone].reverse()) }], ProtocolViolationError, /out of order/)
    await refusedAnswer(m => [{ ...m, gone: positions(gone[0]!, gone[0]!, ...gone.slice(1)) }], ProtocolViolationError, /out of order/)
  })

  it('a key it lacks that it also sent a row for', async () => {
    const gone = [10_000, 10_001, 10_002, 10_003, 10_004].map(position)
    await refusedAnswer(m => [{ ...m, gone: positions(position(5), ...gone) }], ProtocolViolationError, /also says it lacks/)
  })

  it('the keys it lacks in a frame before its last', async () => {
    await refusedAnswer(m => [{ t: 'keyed', gone: m.gone as Uint8Array, more: true }, { t: 'keyed', rows: rowsOf(m) }], ProtocolViolationError, /before its last frame/)
    await refusedAnswer(m => [{ t: 'keyed', rows: rowsOf(m), gone: m.gone as Uint8Array, more: true }, { t: 'keyed', gone: m.gone as Uint8Array }], ProtocolViolationError, /before its last frame/)
  })

  it('a row that is not canonical under the schema', async () => {
    const canonical = row(5)
    expect(canonical[0]).toBe(0x95)
    expect(canonical[1]).toBe(5)
    // the id as int32: the same values, another encoding
    const int32 = Uint8Array.from([0x95, 0xd2, 0, 0, 0, 5, ...canonical.subarray(2)])
    await refusedAnswer(m => [{ ...m, rows: rowsOf(m).map(r => hex(r) === hex(canonical) ? int32 : r) }], InvalidSourceRowError)
    // a value of the wrong type, a column short, not msgpack
    const o = order(5)
    await refusedAnswer(m => [{ ...m, rows: [pack([5, o.customer, 'lots', o.status, (o.updated_at as Date).getTime()]), ...rowsOf(m).slice(1)] }], InvalidSourceRowError)
    await refusedAnswer(m => [{ ...m, rows: [pack([5, o.customer, 1.5, o.status]), ...rowsOf(m).slice(1)] }], InvalidSourceRowError)
    await refusedAnswer(m => [{ ...m, rows: [Uint8Array.from([0x95, 0xc1]), ...rowsOf(m).slice(1)] }], InvalidSourceRowError)
  })

  it('an answer that is not a keyed message', async () => {
    const err = await (async () => {
      const { client } = ask(sot, local, suspects, { answer: m => m.t === 'keyed' ? [{ ...m, gone: Uint8Array.from([0, 0, 1]) }] : undefined })
      return await client.then(() => undefined, (e: unknown) => e)
    })()
    expect(err).toMatchObject({ code: 'CONVERGE_MALFORMED_MESSAGE' })
    await refusedAnswer(() => [{ t: 'reply', rows: [] }], Error, /keyed/)
  })
})
