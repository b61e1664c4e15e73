import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { PARTITION_LEVEL } from '../../src/constants.ts'
import { RowCodec, type Row } from '../../src/digest/row-codec.ts'
import type { DatasetSchema } from '../../src/digest/schema.ts'
import { RowEncodingError } from '../../src/errors.ts'
import { memoryChannelPair } from '../../src/sync/channel.ts'
import { MemoryReplica } from '../../src/sync/memory-view.ts'
import type { NodeRef } from '../../src/sync/narrowing.ts'
import { runClientSync, serveSync } from '../../src/sync/session.ts'
import { nodeOf } from '../../src/tree/merkle-tree.ts'

const eventsSchema: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'day', type: 'string' },
    { name: 'id', type: 'integer' },
    { name: 'payload', type: 'string' }
  ],
  primaryKey: ['day', 'id'],
  ignoreColumns: [],
  partitionColumn: 'day'
}
const codec = new RowCodec(eventsSchema)
const DAYS = Array.from({ length: 12 }, (_, i) => `2026-11-${String(i + 1).padStart(2, '0')}`)
const event = (day: string, id: number, version = 0): Row => ({ day, id, payload: `p${id}-v${version}` })
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const bucketOf = (day: string): number => nodeOf(codec.keyHash(codec.encodeKey({ day, id: 0 })), PARTITION_LEVEL)

async function session (sot: MemoryReplica, local: MemoryReplica, options: { at?: NodeRef, surveyLevel?: number }) {
  const [client, server] = memoryChannelPair()
  const served = serveSync(server, { resolve: () => ({ region: 'sot', codec, view: sot, clock: () => ({ sot: 1 }) }) })
  try {
    return await runClientSync(client, { dataset: 'events', region: 'local', codec, view: local, clock: {}, correlationId: 'test', ...options })
  } finally {
    // a refused open ends the server's side with the same error; the client's is the one to report
    await served.catch(() => undefined)
  }
}

describe('partitioned datasets', () => {
  it('place every row of a partition under one node at the partition level', () => {
    for (const day of DAYS) {
      const buckets = new Set(Array.from({ length: 200 }, (_, id) => nodeOf(codec.keyHash(codec.encodeKey({ day, id })), PARTITION_LEVEL)))
      expect(buckets.size, day).toBe(1)
    }
    expect(new Set(DAYS.map(bucketOf)).size).toBe(DAYS.length)
    // the rest of the key hash still spreads a partition's rows
    const low = new Set(Array.from({ length: 200 }, (_, id) => nodeOf(codec.keyHash(codec.encodeKey({ day: DAYS[0], id })), PARTITION_LEVEL + 2)))
    expect(low.size).toBeGreaterThan(120) // 200 draws from 256 digits pairs: about 139 distinct
  })

  it('keep a tree at least as deep as the partition level, however few rows', () => {
    const small = new MemoryReplica(codec, [codec.encodeRow(event(DAYS[0]!, 1))])
    expect(small.tree.depth).toBe(PARTITION_LEVEL)
  })

  it('change the fingerprint and refuse a partition column outside the key', () => {
    expect(codec.fingerprint).not.toBe(new RowCodec({ ...eventsSchema, partitionColumn: undefined }).fingerprint)
    expect(() => new RowCodec({ ...eventsSchema, partitionColumn: 'payload' })).toThrow(RowEncodingError)
    expect(() => new RowCodec({ ...eventsSchema, partitionColumn: 'payload' })).toThrow(/partition column "payload" must be one of the primary key columns/)
  })

  it('a survey names exactly the drifted partitions, and a session at a partition yields exactly its difference (property)', async () => {
    const base = DAYS.flatMap(day => Array.from({ length: 300 }, (_, id) => event(day, id)))
    const sot = new MemoryReplica(codec, base.map(r => codec.encodeRow(r)))
    const drift = fc.array(fc.record({
      day: fc.constantFrom(...DAYS),
      kind: fc.constantFrom('change', 'delete', 'insert', 'lose-all'),
      id: fc.integer({ min: 0, max: 399 })
    }), { maxLength: 12 })
    await fc.assert(fc.asyncProperty(drift, async changes => {
      const rows = new Map(base.map(r => [`${r.day as string}/${r.id as number}`, r]))
      for (const c of changes) {
        if (c.kind === 'lose-all') { for (const k of [...rows.keys()]) if (k.startsWith(`${c.day}/`)) rows.delete(k) }
        else if (c.kind === 'delete') rows.delete(`${c.day}/${c.id % 300}`)
        else if (c.kind === 'change') rows.set(`${c.day}/${c.id % 300}`, event(c.day, c.id % 300, 1))
        else rows.set(`${c.day}/${300 + c.id}`, event(c.day, 300 + c.id))
      }
      const local = new MemoryReplica(codec, [...rows.values()].map(r => codec.encodeRow(r)))
      const sotRows = sot.rowMap(); const localRows = local.rowMap()
      const driftedDays = DAYS.filter(day => {
        const of = (m: Map<string, Uint8Array>): string[] => [...m.values()].filter(r => codec.decodeRow(r).day === day).map(hex).sort()
        return of(sotRows).join() !== of(localRows).join()
      })

      const survey = await session(sot, local, { surveyLevel: PARTITION_LEVEL })
      expect(survey.result.upserts).toEqual([])
      expect(survey.result.deletes).toEqual([])
      expect(survey.result.diverged.map(n => n.index).sort((a, b) => a - b)).toEqual(driftedDays.map(bucketOf).sort((a, b) => a - b))

      for (const node of survey.result.diverged) {
        const { result } = await session(sot, local, { at: node })
        const day = DAYS.find(d => bucketOf(d) === node.index)!
        const inDay = (m: Map<string, Uint8Array>): Map<string, Uint8Array> => new Map([...m].filter(([, r]) => codec.decodeRow(r).day === day))
        const s = inDay(sotRows); const l = inDay(localRows)
        const wantUpserts = [...s].filter(([k, r]) => l.get(k) === undefined || hex(l.get(k)!) !== hex(r)).map(([, r]) => hex(r)).sort()
        const wantDeletes = [...l.keys()].filter(k => !s.has(k)).sort()
        expect(result.upserts.map(hex).sort(), day).toEqual(wantUpserts)
        expect(result.deletes.map(hex).sort(), day).toEqual(wantDeletes)
        expect(result.unresolved).toBe(0)
      }
    }), { numRuns: 40 })
  })

  it('a session at a partition that agrees ends after the open, and one outside the tree is refused', async () => {
    const rows = DAYS.flatMap(day => Array.from({ length: 50 }, (_, id) => codec.encodeRow(event(day, id))))
    const sot = new MemoryReplica(codec, rows)
    const local = new MemoryReplica(codec, rows)
    const { result, stats } = await session(sot, local, { at: { level: PARTITION_LEVEL, index: bucketOf(DAYS[3]!) } })
    expect(result.upserts.length + result.deletes.length).toBe(0)
    expect(stats.roundTrips).toBe(1)
    expect(sot.tree.depth).toBe(PARTITION_LEVEL)
    const refused = await session(sot, local, { at: { level: PARTITION_LEVEL + 1, index: 0 } }).catch((err: unknown) => err)
    expect(refused).toMatchObject({ code: 'CONVERGE_REMOTE_ERROR', remoteCode: 'CONVERGE_MALFORMED_MESSAGE' })
    expect((refused as Error).message).toMatch(/level 5 is deeper than this tree \(depth 4\)/)
  })
})
