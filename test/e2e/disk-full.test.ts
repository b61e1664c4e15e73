/**
 * The agent's own disk full: its data directory (digest index, audit log)
 * on a small tmpfs that another writer fills. No fix may land in the store
 * without its intent in the audit, so while nothing can be written there
 * the replica stays drifted, and says why; once space is free again it
 * repairs without a restart, and the audit holds every fix with its outcome.
 * Needs a tmpfs mount (root); without one the test is skipped, saying so,
 * except in CI (CI=true), where it fails.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, openSync, rmSync, writeSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import type { AuditEntry } from '../../src/audit/audit-log.ts'
import { orderRow, ordersCodec as codec } from '../../cluster/orders.ts'
import { agentScope, allRows, startLevelPair, waitFor } from '../helpers/agents.ts'

/** Mounts a tmpfs of `mib` MiB at `dir`; false where this process may not mount. */
function mountTmpfs (dir: string, mib: number): boolean {
  mkdirSync(dir, { recursive: true })
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** Fills the file system under `dir` with one file until no byte more fits; the file's path. */
function fill (dir: string): string {
  const path = join(dir, 'filler')
  const fd = openSync(path, 'w')
  const chunk = Buffer.alloc(64 * 1024)
  try {
    for (;;) {
      try { writeSync(fd, chunk) } catch { break }
    }
    // the last, partial chunk's room too
    for (;;) {
      try { writeSync(fd, chunk.subarray(0, 512)) } catch { break }
    }
  } finally {
    closeSync(fd)
  }
  return path
}

describe('an agent whose data directory runs out of space', () => {
  const scope = agentScope()

  it('applies no fix it cannot record, says why, and repairs once space is free again', async (context) => {
    const small = join(scope.dir, 'small-disk')
    if (!mountTmpfs(small, 16)) {
      // in CI (root) it must run
      if (process.env.CI === 'true') throw new Error(`cannot mount a tmpfs at ${small}: the disk-full case needs root`)
      context.skip('cannot mount a tmpfs here (needs root): the disk-full case is not tested')
    }
    const agents: Agent[] = []
    try {
      // b's own state (index pages, audit) on the small disk; its replica store elsewhere, as a database would be
      const { sot, b, replica, level } = await startLevelPair(scope.dir, agents, { b: { dataDir: join(small, 'agent') } })
      const auditBefore = await entries(b)

      const filler = fill(small)
      try {
        await replica.store.apply({ upserts: Array.from({ length: 50 }, (_, i) => codec.encodeRow(orderRow(i, 1))), deletes: [], origin: 'drift' })
        await waitFor('a sync that failed', () => replica.counters.syncErrors >= 1, 30_000, 50, () => ({ state: replica.state, lastError: replica.lastError }))
        expect(replica.lastError).toMatch(/no space left on device/i)
        // nothing landed without its intent: the drift is still there, and the audit has no entry more
        expect(level()).toBe(false)
        expect(await entries(b)).toHaveLength(auditBefore.length)
        expect((await allRows(replica.store)).get(Buffer.from(codec.encodeKey({ order_id: 3 })).toString('hex'))).toBe(Buffer.from(codec.encodeRow(orderRow(3, 1))).toString('hex'))
      } finally {
        rmSync(filler)
      }

      await waitFor('b level again once space is free', () => level() && replica.state === 'in-sync', 60_000, 50, () => ({ state: replica.state, lastError: replica.lastError, syncErrors: replica.counters.syncErrors }))
      expect(await allRows(replica.store)).toEqual(await allRows(sot.datasets.get('orders')!.store))
      // every intent written since has its outcome, and the fix that repaired the drift committed
      const audit = (await entries(b)).slice(auditBefore.length)
      const intents = audit.filter(e => e.kind === 'intent')
      const outcomes = new Map(audit.filter(e => e.kind === 'commit' || e.kind === 'abort').map(e => [e.fixId, e.kind]))
      expect(intents.length).toBeGreaterThan(0)
      for (const intent of intents) expect(outcomes.has(intent.fixId)).toBe(true)
      expect([...outcomes.values()]).toContain('commit')
    } finally {
      // the agents first: b's files are on the mount
      for (const a of agents) await a.stop()
      execFileSync('umount', [small], { stdio: 'ignore' })
    }
  }, 120_000)
})

async function entries (agent: Agent): Promise<AuditEntry[]> {
  const out: AuditEntry[] = []
  for await (const e of agent.audit.read()) out.push(e)
  return out
}
