import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { orderRow, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

const ROWS = 1000
const TOKENS = { victor: 'victor-viewer-token-0003', alice: 'alice-approver-token-0001', ada: 'ada-admin-token-000000004' }
type Who = keyof typeof TOKENS

/** The value of one series in Prometheus text, or undefined. */
function value (text: string, series: string): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

/**
 * The status port's observability endpoints on two real agents (a source of
 * truth and a replica, LevelDB stores, libp2p over loopback): /metrics after
 * a drift and its fix, /drift, /whoami, the cluster view gathered over
 * libp2p, the dashboard's assets, and draining.
 */
describe('status port: metrics, cluster view, dashboard, draining', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let sot: Agent
  let replica: Agent
  let url: string

  beforeAll(async () => {
    dir = await tempDir()
    for (const region of ['sot', 'b']) await withOrdersStore(join(dir.path, region, 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    const tokens = []
    for (const [name, secret] of Object.entries(TOKENS)) {
      const file = join(dir.path, `${name}.token`)
      await writeFile(file, secret)
      await chmod(file, 0o600)
      tokens.push({ name, role: name === 'victor' ? 'viewer' as const : name === 'ada' ? 'admin' as const : 'approver' as const, tokenFile: file })
    }
    sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot'], { status: { port: 0 } }))
    replica = await startAgent(agentConfig(dir.path, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot'], { status: { port: 0, tokens } }))
    url = replica.statusUrl!
    await waitFor('the replica to see its source', () => replica.datasets.get('orders')!.state === 'in-sync', 20_000)
  })
  afterAll(async () => {
    await replica?.stop()
    await sot?.stop()
    await dir?.remove()
  })

  async function call (path: string, who?: Who, body?: unknown): Promise<{ status: number, headers: Headers, text: string, json: () => any }> {
    const res = await fetch(new URL(path, url), {
      method: body === undefined ? 'GET' : 'POST',
      headers: { ...(who === undefined ? {} : { authorization: `Bearer ${TOKENS[who]}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await res.text()
    return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) }
  }

  it('/metrics: a drift found and fixed shows in Prometheus text, with libp2p\'s and the process\'s metrics on the same registry', async () => {
    const dataset = replica.datasets.get('orders')!
    await dataset.store.apply({ upserts: [1, 2, 3].map(id => codec.encodeRow(orderRow(id, 7))), deletes: [codec.encodeKey({ order_id: 10 })], origin: 'test' })
    await waitFor('the fix', () => dataset.counters.fixes === 1 && dataset.state === 'in-sync', 20_000)
    // the per-peer gauges compare with the source's gossiped summary: the replica may have synced before hearing one
    await waitFor('a summary from the source', () => replica.heardSummaries().some(h => h.summary.region === 'sot' && h.summary.dataset === 'orders'), 20_000)

    const res = await call('/metrics')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = res.text
    expect(text).toMatch(/^converge_build_info\{version="0\.1\.0",node_version="[\d.]+",region="b",cluster="test"\} 1$/m)
    expect(value(text, 'converge_repaired_rows_total{dataset="orders",operation="upsert"}')).toBe(4)
    expect(value(text, 'converge_fixes_total{dataset="orders",kind="automatic"}')).toBe(1)
    expect(value(text, 'converge_repaired_bytes_total{dataset="orders"}')).toBeGreaterThan(0)
    expect(value(text, 'converge_time_to_detect_seconds_count{dataset="orders"}')).toBe(1)
    expect(value(text, 'converge_time_to_remediate_seconds_count{dataset="orders"}')).toBe(1)
    expect(value(text, 'converge_syncs_total{dataset="orders",peer="sot",outcome="ok"}')).toBeGreaterThanOrEqual(1)
    expect(value(text, 'converge_sync_bytes_total{dataset="orders",peer="sot",direction="received"}')).toBeGreaterThan(0)
    expect(value(text, 'converge_sync_round_trips_total{dataset="orders",peer="sot"}')).toBeGreaterThan(0)
    expect(value(text, 'converge_drift_rows{dataset="orders",peer="sot"}')).toBe(0)
    expect(value(text, 'converge_diverged_nodes{dataset="orders",peer="sot"}')).toBe(0)
    expect(value(text, 'converge_dataset_state{dataset="orders",state="in-sync"}')).toBe(1)
    expect(value(text, 'converge_last_reconcile_success_timestamp_seconds{dataset="orders"}')).toBeGreaterThan(Date.now() / 1000 - 30)
    expect(value(text, 'converge_reviews_pending{dataset="orders"}')).toBe(0)
    expect(value(text, 'converge_quarantined_datasets')).toBe(0)
    expect(value(text, 'converge_draining')).toBe(0)
    expect(value(text, 'converge_index_page_cache_limit_bytes')).toBe(64 * 1024 * 1024)
    expect(text).toMatch(/^libp2p_connection_manager_connections\{/m)
    expect(text).toMatch(/^process_resident_memory_bytes /m)
    // label values are bounded: datasets, regions and fixed words, never a row key
    const labels = [...text.matchAll(/^converge_\w+\{([^}]*)\}/gm)].flatMap(([, l]) => [...l!.matchAll(/(\w+)="([^"]*)"/g)].map(([, k, v]) => [k!, v!] as const))
    for (const [k, v] of labels) {
      if (k === 'dataset') expect(v).toBe('orders')
      if (k === 'peer') expect(['sot', 'b']).toContain(v)
    }
    // the source counts the sessions it served
    expect(value(await sot.metrics.text(), 'converge_syncs_served_total{dataset="orders"}')).toBeGreaterThanOrEqual(1)

    const drift = (await call('/drift')).json()
    expect(drift.datasets.orders.some((p: [number, number]) => p[1] === 4)).toBe(true)
    expect(drift.datasets.orders.at(-1)[1]).toBe(0)
  })

  it('/whoami names the caller; a bad token is refused', async () => {
    expect((await call('/whoami', 'victor')).json()).toEqual({ name: 'victor', role: 'viewer' })
    expect((await call('/whoami')).status).toBe(401)
    const bad = await fetch(new URL('/whoami', url), { headers: { authorization: 'Bearer not-a-token-of-this-agent' } })
    expect(bad.status).toBe(401)
  })

  it('/cluster: an admin sees the other agent\'s status through this one, gathered over libp2p; others are refused', async () => {
    expect((await call('/cluster')).status).toBe(401)
    const viewer = await call('/cluster', 'victor')
    expect(viewer.status).toBe(403)
    expect(viewer.json().error.code).toBe('FORBIDDEN')
    expect((await call('/cluster', 'alice')).status).toBe(403)
    const res = await call('/cluster', 'ada')
    expect(res.status, res.text).toBe(200)
    const view = res.json()
    expect(view.by.region).toBe('b')
    const regions = view.members.map((m: any) => m.region)
    expect(regions).toEqual(['b', 'sot'])
    const other = view.members.find((m: any) => m.region === 'sot')
    expect(other).toMatchObject({ self: false, ok: true, peerId: sot.peerId })
    expect(other.report.datasets[0]).toMatchObject({ name: 'orders', state: 'source' })
    expect(other.report.peerId).toBe(sot.peerId)
    // the SoT has no status tokens at all: its cluster view is closed
    const closed = await fetch(new URL('/cluster', sot.statusUrl!), { headers: { authorization: `Bearer ${TOKENS.ada}` } })
    expect(closed.status).toBe(403)
    expect(((await closed.json()) as { error: { code: string } }).error.code).toBe('NO_TOKENS')
  })

  it('/dashboard: the page and its assets, with a strict content security policy; other paths 404, other methods 405', async () => {
    const page = await call('/dashboard')
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/)
    expect(page.headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/)
    expect(page.text).toContain('<script src="/dashboard/app.js"')
    expect((await call('/dashboard/app.js')).headers.get('content-type')).toMatch(/^text\/javascript/)
    expect((await call('/dashboard/app.css')).status).toBe(200)
    expect((await call('/dashboard/../server.ts')).status).toBe(404)
    expect((await call('/dashboard/secret.ts')).status).toBe(404)
    const root = await fetch(new URL('/', url), { redirect: 'manual' })
    expect(root.status).toBe(302)
    expect(root.headers.get('location')).toBe('/dashboard')
    const post = await call('/metrics', undefined, {})
    expect(post.status).toBe(405)
    expect(post.json().error.code).toBe('METHOD_NOT_ALLOWED')
  })

  it('/audit?order=desc lists the newest first', async () => {
    const oldest = (await call('/audit?limit=1', 'victor')).json().entries[0]
    const newest = (await call('/audit?limit=1&order=desc', 'victor')).json().entries[0]
    expect(newest.seq).toBeGreaterThan(oldest.seq)
  })

  it('draining: /readyz answers 503, actions are refused with CONVERGE_DRAINING, reads still answer', async () => {
    expect((await call('/readyz')).status).toBe(200)
    await replica.drain()
    const ready = await call('/readyz')
    expect(ready.status).toBe(503)
    expect(ready.json()).toEqual({ ready: false })
    const reconcile = await call('/datasets/orders/reconcile', 'ada', {})
    expect(reconcile.status).toBe(503)
    expect(reconcile.json().error.code).toBe('CONVERGE_DRAINING')
    const rollback = await call('/fixes/any/rollback', 'ada', { reason: 'x' })
    expect(rollback.json().error.code).toBe('CONVERGE_DRAINING')
    // the role is checked before the drain: a viewer learns nothing more
    expect((await call('/reviews/x/approve', 'victor', { reason: 'x' })).json().error.code).toBe('FORBIDDEN')
    expect((await call('/status')).json()).toMatchObject({ ready: false, draining: true })
    expect(value((await call('/metrics')).text, 'converge_draining')).toBe(1)
  })
})
