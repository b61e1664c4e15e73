import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { pack, unpack } from 'msgpackr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { applyFixOnce } from '../../src/audit/apply-fix.ts'
import { AuditLog, type AuditEntry } from '../../src/audit/audit-log.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { converge } from '../helpers/cli.ts'
import { tempDir } from '../helpers/agents.ts'
import { crashAfterIntent, hex, openStore, plan, row, type StoreKit } from './fixtures.ts'

const seqKey = (seq: number): Uint8Array => { const k = Buffer.alloc(8); k.writeBigUInt64BE(BigInt(seq)); return k }

/** An agent data dir (DIR/state, as the agent lays it out) holding a few audited fixes. */
async function agentDataDir (root: string, name: string, s: StoreKit): Promise<{ dataDir: string, fixIds: string[] }> {
  const dataDir = join(root, name)
  await mkdir(dataDir, { recursive: true })
  const state = new StateDb(join(dataDir, 'state'))
  await state.open()
  try {
    const audit = new AuditLog(state)
    await audit.open()
    const first = plan({ correlationId: 'cid-one' })
    await applyFixOnce({ audit, store: s.store, fix: first })
    const second = plan({ dataset: 'payments', upserts: [row(5, 3)], deletes: [], correlationId: 'cid-two' })
    await applyFixOnce({ audit, store: s.store, fix: second })
    const third = plan({ upserts: [row(6, 3)], deletes: [], reason: 'approved after a look' })
    await crashAfterIntent(audit, s.store, third)
    return { dataDir, fixIds: [first.fixId, second.fixId, third.fixId] }
  } finally {
    await state.close()
  }
}

describe('converge audit (real child processes)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let s: StoreKit
  let dataDir: string
  let fixIds: string[]
  beforeAll(async () => {
    dir = await tempDir('converge-audit-cli-')
    s = await openStore('level')
    ;({ dataDir, fixIds } = await agentDataDir(dir.path, 'agent', s))
  })
  afterAll(async () => {
    await s.cleanup()
    await dir.remove()
  })

  it('verifies an intact chain', async () => {
    const r = await converge(['audit', 'verify', '--data-dir', dataDir])
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('audit chain intact: 5 entries\n')
    expect(r.code).toBe(0)
    // --data-dir may also come before the subcommand
    expect((await converge(['audit', '--data-dir', dataDir, 'verify'])).stdout).toBe('audit chain intact: 5 entries\n')
  })

  it('lists entries as a table, filtered', async () => {
    const all = await converge(['audit', '--data-dir', dataDir])
    expect(all.code).toBe(0)
    const lines = all.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^SEQ\s+TIME\s+KIND\s+DATASET\s+FIX\s+CID\s+ROWS\s+NOTE$/)
    expect(lines.length).toBe(6)
    expect(lines[1]).toMatch(new RegExp(`^1\\s+\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\s+intent\\s+orders\\s+${fixIds[0]}\\s+cid-one\\s+3$`))
    expect(lines[5]).toMatch(/^5 .* intent\s+orders .* 1\s+approved after a look$/)

    const payments = await converge(['audit', '--data-dir', dataDir, '--dataset', 'payments', '--kind', 'commit'])
    expect(payments.stdout.trimEnd().split('\n').slice(1).map(l => l.split(/\s+/)[0])).toEqual(['4'])
    const latest = await converge(['audit', '--data-dir', dataDir, '--reverse', '--limit', '2'])
    expect(latest.stdout.trimEnd().split('\n').slice(1).map(l => l.split(/\s+/)[0])).toEqual(['5', '4'])
    const none = await converge(['audit', '--data-dir', dataDir, '--since', '2999-01-01'])
    expect([none.code, none.stdout]).toEqual([0, 'no matching audit entries\n'])
  })

  it('notes on a commit how many of its rows the store kept otherwise than written', async () => {
    const other = join(dir.path, 'rewritten')
    await mkdir(other, { recursive: true })
    const state = new StateDb(join(other, 'state'))
    await state.open()
    const fix = plan({ upserts: [row(7, 1), row(8, 1)], deletes: [] })
    try {
      const audit = new AuditLog(state)
      await audit.open()
      await crashAfterIntent(audit, s.store, fix)
      await audit.append({ ...fix, kind: 'commit', stored: [[1, row(8, 2)]] })
    } finally {
      await state.close()
    }
    const r = await converge(['audit', '--data-dir', other, '--kind', 'commit'])
    expect(r.code).toBe(0)
    expect(r.stdout.trimEnd().split('\n')[1]).toMatch(new RegExp(`commit\\s+orders\\s+${fix.fixId}\\s+\\S+\\s+2\\s+1 stored otherwise than written$`))
    const json = JSON.parse((await converge(['audit', '--data-dir', other, '--kind', 'commit', '--json'])).stdout) as { stored: Array<[number, string]> }
    expect(json.stored).toEqual([[1, hex(row(8, 2))]])
  })

  it('prints JSON lines', async () => {
    const r = await converge(['audit', '--data-dir', dataDir, '--fix', fixIds[0]!, '--json'])
    expect(r.code).toBe(0)
    const entries = r.stdout.trimEnd().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
    expect(entries.map(e => [e.seq, e.kind, e.fixId])).toEqual([[1, 'intent', fixIds[0]], [2, 'commit', fixIds[0]]])
    expect(entries[0]!.upserts).toEqual([hex(row(1, 1)), hex(row(11))])
    expect(entries[0]!.before).toEqual([hex(row(1)), null, hex(row(2))])
    const byCid = await converge(['audit', '--data-dir', dataDir, '--cid', 'cid-two', '--json'])
    expect(byCid.stdout.trimEnd().split('\n').map(l => (JSON.parse(l) as { seq: number }).seq)).toEqual([3, 4])
  })

  it('exits 1 when a fix was asked for and the log has none of it; 2 on bad usage', async () => {
    const missing = await converge(['audit', '--data-dir', dataDir, '--fix', 'no-such-fix'])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('no audit entries for fix no-such-fix')
    const bad = [['--since', 'yesterday'], ['--kind', 'nope'], ['--limit', '0'], ['--frobnicate'], ['frobnicate']]
    const codes = await Promise.all(bad.map(async args => (await converge(['audit', '--data-dir', dataDir, ...args])).code))
    expect(codes).toEqual(bad.map(() => 2))
    expect((await converge(['audit'])).code).toBe(2)
    const nowhere = await converge(['audit', 'verify', '--data-dir', join(dir.path, 'no-such-dir')])
    expect(nowhere.code).toBe(2)
    expect(nowhere.stderr).toContain('no data directory')
    await mkdir(join(dir.path, 'empty'))
    const empty = await converge(['audit', '--data-dir', join(dir.path, 'empty')])
    expect(empty.code).toBe(2)
    expect(empty.stderr).toContain('holds no agent state')
  })

  it('refuses, clearly, a data dir whose agent is running', async () => {
    const state = new StateDb(join(dataDir, 'state'))
    await state.open()
    try {
      const r = await converge(['audit', 'verify', '--data-dir', dataDir])
      expect(r.code).toBe(1)
      expect(r.stderr).toBe(`converge: the agent at ${dataDir} is running; ask it over its status port, or stop it [CONVERGE_AGENT_RUNNING]\n`)
    } finally {
      await state.close()
    }
  })

  it('finds a tampered entry: exit 1 and the first broken entry', async () => {
    const { dataDir: tampered } = await agentDataDir(dir.path, 'tampered', s)
    const state = new StateDb(join(tampered, 'state'))
    await state.open()
    const raw = state.sublevel('audit')
    const stored = Buffer.from(await raw.get(seqKey(3)) as Uint8Array)
    // one byte of the entry's dataset name: 'payments' becomes 'paymentz'
    const at = stored.indexOf(Buffer.from('payments'))
    stored[at + 7] = 'z'.charCodeAt(0)
    await raw.put(seqKey(3), stored)
    expect((unpack(stored) as AuditEntry).dataset).toBe('paymentz')
    await state.close()

    const r = await converge(['audit', 'verify', '--data-dir', tampered])
    expect(r.code).toBe(1)
    const [headline, entry] = r.stdout.trimEnd().split('\n')
    expect(headline).toBe('audit chain broken: audit entry 3 was altered (the 2 entries before it verify)')
    expect(JSON.parse(entry!)).toMatchObject({ seq: 3, dataset: 'paymentz' })

    // bytes that no longer decode at all
    const again = new StateDb(join(tampered, 'state'))
    await again.open()
    await again.sublevel('audit').put(seqKey(3), Buffer.from([0xc1, 0x00]))
    await again.sublevel('audit').put(seqKey(4), pack({ junk: true }))
    await again.close()
    const garbled = await converge(['audit', 'verify', '--data-dir', tampered])
    expect(garbled.code).toBe(1)
    expect(garbled.stdout).toBe('audit chain broken: audit entry 3 cannot be decoded (the 2 entries before it verify)\n')
  })

  it('is listed in the help', async () => {
    const r = await converge(['--help'])
    expect(r.stdout).toMatch(/\n\s+audit \[options\]/)
  })
})
