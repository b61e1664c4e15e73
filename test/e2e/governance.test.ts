import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { orderRow, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, agentScope, allRows, startAgent, waitFor, withOrdersStore } from '../helpers/agents.ts'

const ROWS = 2000
const TOKENS = { alice: 'alice-approver-token-0001', bob: 'bob-approver-token-00002', victor: 'victor-viewer-token-0003', ada: 'ada-admin-token-000000004' }

type DatasetPolicy = Partial<Pick<ConfigInput['datasets'][number], 'rule' | 'tolerance' | 'risk' | 'review'>>

/**
 * Governance between two real agents on LevelDB stores, through the status
 * port with bearer tokens: the policy decides, people approve or reject,
 * and rollbacks undo fixes.
 */
describe('governance: policies, reviews, rollback through the status port', () => {
  const scope = agentScope()

  /** A SoT with ROWS orders and a replica with the same rows, the replica under `policy`. */
  async function cluster (policy: DatasetPolicy): Promise<{ sot: Agent, replica: Agent, url: string }> {
    for (const region of ['sot', 'b']) await withOrdersStore(join(scope.dir, region, 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    const tokens = []
    for (const [name, secret] of Object.entries(TOKENS)) {
      const file = join(scope.dir, `${name}.token`)
      await writeFile(file, secret)
      await chmod(file, 0o600)
      tokens.push({ name, role: name === 'victor' ? 'viewer' as const : name === 'ada' ? 'admin' as const : 'approver' as const, tokenFile: file })
    }
    const sot = await startAgent(agentConfig(scope.dir, 'sot', [], ['sot']))
    scope.agents.push(sot)
    const config = agentConfig(scope.dir, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot'], { status: { port: 0, tokens } })
    Object.assign(config.datasets[0]!, policy)
    const replica = await startAgent(config)
    scope.agents.push(replica)
    await waitFor('the replica to see its source', () => replica.datasets.get('orders')!.state === 'in-sync', 20_000)
    return { sot, replica, url: replica.statusUrl! }
  }

  async function call (url: string, path: string, token?: keyof typeof TOKENS, body?: unknown): Promise<{ status: number, body: any }> {
    const res = await fetch(new URL(path, url), {
      method: body === undefined ? 'GET' : 'POST',
      headers: { ...(token === undefined ? {} : { authorization: `Bearer ${TOKENS[token]}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    return { status: res.status, body: await res.json() }
  }

  /** Drifts the replica behind the agent's back: `changed` rows rewritten, `deleted` rows removed. */
  async function drift (replica: Agent, ids: { changed?: number[], deleted?: number[] }, revision = 9): Promise<void> {
    const store = replica.datasets.get('orders')!.store
    await store.apply({ upserts: (ids.changed ?? []).map(id => codec.encodeRow(orderRow(id, revision))), deletes: (ids.deleted ?? []).map(id => codec.encodeKey({ order_id: id })), origin: 'test' })
  }

  const pending = async (url: string): Promise<any[]> => (await call(url, '/reviews?state=pending', 'victor')).body.reviews
  const sameAsSot = async (sot: Agent, replica: Agent): Promise<boolean> =>
    JSON.stringify([...(await allRows(sot.datasets.get('orders')!.store))].sort()) === JSON.stringify([...(await allRows(replica.datasets.get('orders')!.store))].sort())

  it('the review rule holds every fix for an approver named in the config; roles and names are enforced; approval applies it', async () => {
    const { sot, replica, url } = await cluster({ rule: 'review', review: { approvers: ['alice'] } })
    await drift(replica, { changed: [1, 2, 3], deleted: [10] })
    await waitFor('a review', async () => (await pending(url)).length === 1, 20_000)
    const [review] = await pending(url)
    expect(review).toMatchObject({ dataset: 'orders', upserts: 4, deletes: 0, state: 'pending' })
    expect(review.reasons[0]).toMatch(/review/)
    expect(await sameAsSot(sot, replica)).toBe(false)

    const shown = await call(url, `/reviews/${review.id}`, 'victor')
    expect(shown.status).toBe(200)
    expect(shown.body.diff.upserts.find((u: any) => u.key.order_id === 10)).toMatchObject({ now: null })
    expect(shown.body.diff.upserts.find((u: any) => u.key.order_id === 1).now.status).not.toBe(shown.body.diff.upserts.find((u: any) => u.key.order_id === 1).after.status)

    expect((await call(url, `/reviews/${review.id}/approve`, undefined, { reason: 'x' })).body.error.code).toBe('UNAUTHORIZED')
    expect((await call(url, '/reviews', undefined)).status).toBe(401)
    expect((await call(url, `/reviews/${review.id}/approve`, 'victor', { reason: 'x' })).body.error.code).toBe('FORBIDDEN')
    const bob = await call(url, `/reviews/${review.id}/approve`, 'bob', { reason: 'looks right' })
    expect(bob.status).toBe(403)
    expect(bob.body.error.code).toBe('CONVERGE_NOT_APPROVER')
    expect((await call(url, `/reviews/${review.id}/approve`, 'alice', {})).body.error.code).toBe('BAD_REQUEST')

    const approved = await call(url, `/reviews/${review.id}/approve`, 'alice', { reason: 'checked with billing' })
    expect(approved.status).toBe(200)
    expect(approved.body).toMatchObject({ state: 'applied', decidedBy: 'alice', decisionReason: 'checked with billing' })
    expect(approved.body.fixIds).toHaveLength(1)
    await waitFor('the replica to equal the source', async () => await sameAsSot(sot, replica), 10_000)
    // the approved fix counts among the dataset's fixes, as `converge status` shows them
    expect(replica.datasets.get('orders')!.counters).toMatchObject({ fixes: 1, rowsUpserted: 4, rowsDeleted: 0, reviewsRaised: 1 })
    expect((await call(url, `/reviews/${review.id}/approve`, 'alice', { reason: 'again' })).body.error.code).toBe('CONVERGE_REVIEW_CLOSED')

    const audit = (await call(url, '/audit?dataset=orders&limit=100', 'victor')).body.entries as any[]
    const kinds = audit.map(e => e.kind)
    expect(kinds).toEqual(expect.arrayContaining(['review', 'review-approved', 'intent', 'commit']))
    const commit = audit.find(e => e.kind === 'commit')
    expect(commit).toMatchObject({ by: 'alice', reviewId: review.id, fixId: approved.body.fixIds[0] })
  }, 60_000)

  it('an approval is refused when the rows changed after the fix was proposed; a fresh review follows', async () => {
    const { replica, url } = await cluster({ rule: 'review' })
    await drift(replica, { changed: [5, 6] })
    await waitFor('a review', async () => (await pending(url)).length === 1, 20_000)
    const [first] = await pending(url)
    await drift(replica, { changed: [6, 7] }, 10)
    const refused = await call(url, `/reviews/${first.id}/approve`, 'alice', { reason: 'ok' })
    expect(refused.status).toBe(409)
    expect(refused.body.error.code).toBe('CONVERGE_REVIEW_STALE')
    expect(replica.datasets.get('orders')!.counters.fixes).toBe(0)
    await waitFor('a fresh review', async () => (await pending(url)).some(r => r.id !== first.id && r.upserts === 3), 20_000)
    const all = (await call(url, '/reviews?', 'victor')).body.reviews as any[]
    expect(all.find(r => r.id === first.id).state).toBe('refused')
  }, 60_000)

  it('a rejected fix is not proposed again while the drift is the same, and nothing is applied', async () => {
    const { replica, url } = await cluster({ rule: 'review' })
    await drift(replica, { deleted: [20, 21] })
    await waitFor('a review', async () => (await pending(url)).length === 1, 20_000)
    const [review] = await pending(url)
    const rejected = await call(url, `/reviews/${review.id}/reject`, 'bob', { reason: 'those orders were cancelled on purpose' })
    expect(rejected.body).toMatchObject({ state: 'rejected', decidedBy: 'bob' })
    await replica.datasets.get('orders')!.reconcileNow()
    expect(await pending(url)).toEqual([])
    expect(replica.datasets.get('orders')!.counters.fixes).toBe(0)
  }, 60_000)

  it('risk and tolerance: a large fix goes to review, a small one applies, a tiny one is only reported', async () => {
    const { sot, replica, url } = await cluster({ risk: { maxRows: 10, reviewDeletes: false, history: 10 }, tolerance: { acceptableRows: 2, graceMs: 0, confirmations: 1 } })
    const dataset = replica.datasets.get('orders')!
    const before = dataset.index.tree.root.sum
    await drift(replica, { changed: [100, 101] })
    // the store's change feed delivers the drift to the index in its own time: a sync before that sees no drift
    await waitFor('the index to take the drift', () => dataset.index.tree.root.sum !== before, 10_000)
    await dataset.reconcileNow()
    expect(dataset.counters.fixes).toBe(0)
    expect(dataset.repairer.lastDecision).toMatchObject({ action: 'none', drift: 2 })
    expect(dataset.repairer.lastDecision!.reasons.join()).toMatch(/acceptable/)

    await drift(replica, { changed: [102, 103, 104] })
    await waitFor('the small fix', () => dataset.counters.fixes === 1, 20_000)
    expect(await sameAsSot(sot, replica)).toBe(true)

    await drift(replica, { changed: Array.from({ length: 30 }, (_, i) => 200 + i) })
    await waitFor('a review for the large fix', async () => (await pending(url)).length === 1, 20_000)
    expect((await pending(url))[0].reasons.join()).toMatch(/30 rows/)
    expect(dataset.counters.fixes).toBe(1)
  }, 60_000)

  it('merge keeps local rows with a later event time and local extra rows', async () => {
    const { sot, replica } = await cluster({ rule: 'merge' })
    const store = replica.datasets.get('orders')!.store
    const newer = { ...orderRow(300, 0), status: 'local-edit', updated_at: Date.now() }
    const older = { ...orderRow(301, 0), status: 'stale', updated_at: 0 }
    await store.apply({ upserts: [codec.encodeRow(newer), codec.encodeRow(older), codec.encodeRow(orderRow(ROWS + 5))], deletes: [codec.encodeKey({ order_id: 302 })], origin: 'test' })
    const dataset = replica.datasets.get('orders')!
    await waitFor('the merge fix', () => dataset.counters.fixes >= 1, 20_000)
    const [row300, row301, extra, row302] = await store.get([300, 301, ROWS + 5, 302].map(id => codec.encodeKey({ order_id: id })))
    expect(codec.decodeRow(row300!).status).toBe('local-edit')
    expect(Buffer.compare(row301!, codec.encodeRow(orderRow(301)))).toBe(0)
    expect(extra).toBeDefined()
    expect(Buffer.compare(row302!, codec.encodeRow(orderRow(302)))).toBe(0)
    expect(dataset.repairer.lastDecision!.deferred.keptLocal).toBeGreaterThanOrEqual(1)
    expect(await sameAsSot(sot, replica)).toBe(false)
  }, 60_000)

  it('a rollback by an admin restores the before-images, holds the keys for review, and cannot be repeated', async () => {
    const { sot, replica, url } = await cluster({})
    const dataset = replica.datasets.get('orders')!
    const before = await allRows(dataset.store)
    await drift(replica, { changed: [400, 401], deleted: [402] })
    const drifted = await allRows(dataset.store)
    await waitFor('the fix', async () => dataset.counters.fixes === 1 && await sameAsSot(sot, replica), 20_000)
    const commits = (await call(url, '/audit?kind=commit', 'victor')).body.entries as any[]
    expect(commits).toHaveLength(1)
    const fixId = commits[0].fixId as string
    expect((await call(url, `/fixes/${fixId}`, 'victor')).body.intent.fixId).toBe(fixId)

    expect((await call(url, `/fixes/${fixId}/rollback`, 'alice', { reason: 'wrong snapshot' })).body.error.code).toBe('FORBIDDEN')
    const rolled = await call(url, `/fixes/${fixId}/rollback`, 'ada', { reason: 'wrong snapshot' })
    expect(rolled.status).toBe(200)
    expect(rolled.body).toMatchObject({ rollbackOf: fixId, rows: 3 })
    expect(await allRows(dataset.store)).toEqual(drifted)
    expect(dataset.repairer.heldCount).toBe(3)

    // the next sync sees the drift again, and asks a person instead of undoing the rollback
    await waitFor('a review for the held keys', async () => (await pending(url)).length === 1, 20_000)
    expect((await pending(url))[0].reasons.join()).toMatch(/rolled back|held/)
    // the rollback is counted as one, not as a repair
    expect(dataset.counters).toMatchObject({ fixes: 1, rowsUpserted: 3, rowsDeleted: 0, rollbacks: 1 })
    const again = await call(url, `/fixes/${fixId}/rollback`, 'ada', { reason: 'twice', force: true })
    expect(again.status).toBe(409)
    expect(again.body.error.code).toBe('CONVERGE_FIX_ALREADY_ROLLED_BACK')
    expect((await call(url, '/fixes/no-such-fix/rollback', 'ada', { reason: 'x' })).body.error.code).toBe('CONVERGE_FIX_NOT_FOUND')
    expect((await call(url, '/audit/verify', 'victor')).body).toMatchObject({ ok: true })
    expect(before.size).toBe(ROWS)
  }, 60_000)

  it('a confirmation count waits for the drift to persist over that many rounds', async () => {
    const { sot, replica } = await cluster({ tolerance: { confirmations: 3, graceMs: 0, acceptableRows: 0 } })
    const dataset = replica.datasets.get('orders')!
    await drift(replica, { changed: [500] })
    await waitFor('the first sighting', () => (dataset.repairer.lastDecision?.deferred.unconfirmed ?? 0) === 1, 20_000)
    expect(dataset.counters.fixes).toBe(0)
    expect(dataset.state).toBe('held')
    await waitFor('the fix after three rounds', () => dataset.counters.fixes === 1, 20_000)
    expect(dataset.counters.syncs).toBeGreaterThanOrEqual(3)
    expect(await sameAsSot(sot, replica)).toBe(true)
  }, 60_000)
})
