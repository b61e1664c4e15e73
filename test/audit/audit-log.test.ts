import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pack, unpack } from 'msgpackr'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { AuditLog, type AuditEntry } from '../../src/audit/audit-log.ts'
import { compare, merge, tick } from '../../src/audit/vector-clock.ts'
import { StateDb } from '../../src/index/state-db.ts'

describe('vector clocks', () => {
  it('tick, merge and compare order events causally', () => {
    const a1 = tick({}, 'a')
    const b1 = tick(merge({}, a1), 'b') // b saw a's event
    const c1 = tick({}, 'c')
    expect(b1).toEqual({ a: 1, b: 1 })
    expect(compare(a1, b1)).toBe(-1)
    expect(compare(b1, a1)).toBe(1)
    expect(compare(b1, c1)).toBe(0) // concurrent
    expect(compare(b1, { ...b1 })).toBe(0)
    expect(merge({ a: 3, b: 1 }, { a: 2, c: 5 })).toEqual({ a: 3, b: 1, c: 5 })
  })
})

describe('the audit log', () => {
  let dir: string
  let state: StateDb
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'converge-audit-'))
    state = new StateDb(join(dir, 'state'))
    await state.open()
  })
  afterEach(async () => {
    await state.close()
    await rm(dir, { recursive: true, force: true })
  })

  const record = (n: number) => ({ kind: 'intent' as const, fixId: `fix-${n}`, correlationId: `cid-${n}`, dataset: 'orders', region: 'b', clock: { b: n }, upserts: [new Uint8Array([n])] })

  it('chains entries and verifies them, also after a reopen', async () => {
    let log = new AuditLog(state)
    await log.open()
    for (let n = 1; n <= 3; n++) await log.append(record(n))
    expect(await log.verify()).toBe(3)
    log = new AuditLog(state)
    await log.open()
    await log.append(record(4))
    const entries: AuditEntry[] = []
    for await (const e of log.read()) entries.push(e)
    expect(entries.map(e => e.seq)).toEqual([1, 2, 3, 4])
    expect(entries[3]!.prevHash).toBe(entries[2]!.hash)
    expect(await log.verify()).toBe(4)
  })

  it('finds an edited entry and a removed one', async () => {
    const log = new AuditLog(state)
    await log.open()
    for (let n = 1; n <= 3; n++) await log.append(record(n))
    const entries = state.sublevel('audit')
    const key = (seq: number): Uint8Array => { const k = Buffer.alloc(8); k.writeBigUInt64BE(BigInt(seq)); return k }
    const second = unpack(await entries.get(key(2)) as Uint8Array) as AuditEntry
    await entries.put(key(2), pack({ ...second, dataset: 'payments' }))
    await expect(log.verify()).rejects.toMatchObject({ code: 'CONVERGE_AUDIT_CHAIN_BROKEN', message: 'audit entry 2 was altered' })
    await entries.put(key(2), pack(second))
    expect(await log.verify()).toBe(3)
    await entries.del(key(2))
    await expect(log.verify()).rejects.toMatchObject({ code: 'CONVERGE_AUDIT_CHAIN_BROKEN', message: 'audit entry 2 is missing (found 3)' })
  })
})
