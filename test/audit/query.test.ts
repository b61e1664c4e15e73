import { pack, unpack } from 'msgpackr'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AuditLog, type AuditEntry, type AuditFilter, type AuditRecord } from '../../src/audit/audit-log.ts'
import { toJsonLine } from '../../src/audit/json-line.ts'
import { entries, hex, openAudit, row, type AuditKit } from './fixtures.ts'

const T0 = Date.UTC(2026, 2, 1, 12)
const MINUTE = 60_000

const record = (over: Partial<AuditRecord>): AuditRecord => ({ kind: 'intent', fixId: 'f', correlationId: 'c', dataset: 'orders', region: 'b', clock: { b: 1 }, ...over })

async function collect (audit: AuditLog, filter: AuditFilter): Promise<number[]> {
  const out: number[] = []
  for await (const e of audit.query(filter)) out.push(e.seq)
  return out
}

const seqKey = (seq: number): Uint8Array => { const k = Buffer.alloc(8); k.writeBigUInt64BE(BigInt(seq)); return k }

describe('querying the audit log', () => {
  let kit: AuditKit
  beforeEach(async () => {
    kit = await openAudit()
    vi.useFakeTimers({ toFake: ['Date'] })
    // seq: 1 intent f1 orders, 2 commit f1, 3 intent f2 payments, 4 abort f2, 5 intent f3 orders (cid c2), 6 review
    const plan: Array<Partial<AuditRecord>> = [
      { kind: 'intent', fixId: 'f1', correlationId: 'c1', upserts: [row(1)], deletes: [], before: [null] },
      { kind: 'commit', fixId: 'f1', correlationId: 'c1', before: [null], storeSeq: 7 },
      { kind: 'intent', fixId: 'f2', correlationId: 'c1', dataset: 'payments', upserts: [], deletes: [new Uint8Array([1, 2])] },
      { kind: 'abort', fixId: 'f2', correlationId: 'c1', dataset: 'payments', reason: 'found not applied at restart' },
      { kind: 'intent', fixId: 'f3', correlationId: 'c2', upserts: [row(3)], deletes: [] },
      { kind: 'review', fixId: 'r1', correlationId: 'c2', reviewId: 'r1', reason: 'too many rows' }
    ]
    for (const [i, over] of plan.entries()) {
      vi.setSystemTime(T0 + i * MINUTE)
      await kit.audit.append(record(over))
    }
  })
  afterEach(async () => {
    vi.useRealTimers()
    await kit.cleanup()
  })

  it('filters by dataset, kind, fix, correlation id and time, each and together', async () => {
    const { audit } = kit
    expect(await collect(audit, {})).toEqual([1, 2, 3, 4, 5, 6])
    expect(await collect(audit, { dataset: 'payments' })).toEqual([3, 4])
    expect(await collect(audit, { kind: 'intent' })).toEqual([1, 3, 5])
    expect(await collect(audit, { kind: 'no-such-kind' })).toEqual([])
    expect(await collect(audit, { fixId: 'f1' })).toEqual([1, 2])
    expect(await collect(audit, { fixId: 'nope' })).toEqual([])
    expect(await collect(audit, { correlationId: 'c2' })).toEqual([5, 6])
    expect(await collect(audit, { since: T0 + 2 * MINUTE })).toEqual([3, 4, 5, 6])
    expect(await collect(audit, { until: T0 + 2 * MINUTE })).toEqual([1, 2])
    expect(await collect(audit, { since: T0 + MINUTE, until: T0 + 4 * MINUTE, dataset: 'orders' })).toEqual([2])
    expect(await collect(audit, { correlationId: 'c1', kind: 'abort' })).toEqual([4])
    expect(await collect(audit, { fixId: 'f2', dataset: 'orders' })).toEqual([])
  })

  it('limits, oldest first or newest first', async () => {
    expect(await collect(kit.audit, { limit: 2 })).toEqual([1, 2])
    expect(await collect(kit.audit, { limit: 2, reverse: true })).toEqual([6, 5])
    expect(await collect(kit.audit, { kind: 'intent', limit: 2, reverse: true })).toEqual([5, 3])
    expect(await collect(kit.audit, { fixId: 'f1', reverse: true })).toEqual([2, 1])
    expect(await collect(kit.audit, { limit: 0 })).toEqual([])
  })

  it('tells what became of a fix, and which fixes are in flight', async () => {
    const f1 = await kit.audit.fixOf('f1')
    expect([f1?.intent.seq, f1?.commit?.seq, f1?.abort]).toEqual([1, 2, undefined])
    const f2 = await kit.audit.fixOf('f2')
    expect([f2?.intent.seq, f2?.commit, f2?.abort?.seq]).toEqual([3, undefined, 4])
    const f3 = await kit.audit.fixOf('f3')
    expect([f3?.intent.seq, f3?.commit, f3?.abort]).toEqual([5, undefined, undefined])
    expect(await kit.audit.fixOf('r1')).toBeUndefined() // a review is no fix
    expect(await kit.audit.fixOf('nope')).toBeUndefined()
    const pending: number[] = []
    for await (const e of kit.audit.pendingFixes()) pending.push(e.seq)
    expect(pending).toEqual([5])
  })

  it('does not mistake a fix whose id extends another\'s for it', async () => {
    await kit.audit.append(record({ fixId: 'f1\u0000x' }))
    await kit.audit.append(record({ fixId: 'f10' }))
    expect(await collect(kit.audit, { fixId: 'f1' })).toEqual([1, 2])
    expect(await collect(kit.audit, { fixId: 'f1\u0000x' })).toEqual([7])
  })

  it('indexes a log written before the index existed on first use', async () => {
    // what an older version left: entries, no index
    const index = kit.state.sublevel('audit-index')
    await index.clear()
    const audit = await kit.reopen()
    expect(await collect(audit, { fixId: 'f1' })).toEqual([1, 2])
    const pending: string[] = []
    for await (const e of audit.pendingFixes()) pending.push(e.fixId)
    expect(pending).toEqual(['f3'])
    await audit.append(record({ kind: 'commit', fixId: 'f3', correlationId: 'c2' }))
    expect((await audit.fixOf('f3'))?.commit?.seq).toBe(7)
    expect(await audit.verify()).toBe(7)
  })

  it('renders an entry as one JSON line: bytes in hex, bigints as strings, fields in a fixed order', async () => {
    const [intent, commit] = await entries(kit.audit)
    const line = toJsonLine(intent!)
    expect(line).not.toContain('\n')
    const parsed = JSON.parse(line) as Record<string, unknown>
    expect(Object.keys(parsed)).toEqual(['seq', 'at', 'kind', 'fixId', 'correlationId', 'dataset', 'region', 'clock', 'upserts', 'deletes', 'before', 'prevHash', 'hash'])
    expect(parsed).toMatchObject({ seq: 1, at: T0, kind: 'intent', upserts: [hex(row(1))], deletes: [], before: [null], clock: { b: 1 } })
    expect(JSON.parse(toJsonLine(commit!))).toMatchObject({ storeSeq: 7, before: [null] })
    // the same entry, whatever order its fields come in, gives the same line; unknown fields follow, by name
    const shuffled = Object.fromEntries(Object.entries({ ...intent!, zeta: 1n, alpha: new Uint8Array([255]) }).reverse()) as unknown as AuditEntry
    const again = JSON.parse(toJsonLine(shuffled)) as Record<string, unknown>
    expect(Object.keys(again).slice(-2)).toEqual(['alpha', 'zeta'])
    expect(again).toMatchObject({ alpha: 'ff', zeta: '1' })
    expect(toJsonLine({ ...intent!, clock: { z: 1, a: 2 } })).toContain('"clock":{"a":2,"z":1}')
  })

  it('checks the chain and says where it breaks: an altered, undecodable, missing or cut-off entry', async () => {
    const { audit } = kit
    const raw = kit.state.sublevel('audit')
    expect(await audit.check()).toEqual({ intact: true, entries: 6 })

    const third = await raw.get(seqKey(3)) as Uint8Array
    await raw.put(seqKey(3), pack({ ...(unpack(third) as AuditEntry), reason: 'nothing to see' }))
    expect(await audit.check()).toMatchObject({ intact: false, entries: 2, seq: 3, problem: 'audit entry 3 was altered', entry: { seq: 3 } })

    await raw.put(seqKey(3), Buffer.from([0xc1]))
    expect(await audit.check()).toMatchObject({ intact: false, entries: 2, seq: 3, problem: 'audit entry 3 cannot be decoded' })
    await raw.put(seqKey(3), third)
    expect(await audit.check()).toEqual({ intact: true, entries: 6 })

    await raw.del(seqKey(6))
    await raw.del(seqKey(5))
    expect(await audit.check()).toMatchObject({ intact: false, entries: 4, seq: 5, problem: 'audit entries 5 to 6 are missing (the log ends at 4)' })
    await expect(audit.verify()).rejects.toMatchObject({ code: 'CONVERGE_AUDIT_CHAIN_BROKEN' })
  })
})
