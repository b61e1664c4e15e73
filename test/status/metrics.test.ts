import { describe, expect, it } from 'vitest'
import { Registry } from 'prom-client'
import { DriftHistory } from '../../src/observability/drift-history.ts'
import { AgentMetrics, type MetricsHost, type ReplicaView } from '../../src/observability/metrics.ts'
import { createProgress } from '../../src/cli/progress.ts'
import { resolveSetting, parseMs } from '../../src/cli/settings.ts'
import { encodeReport, MAX_STATUS_BYTES } from '../../src/status/cluster-view.ts'

/** A replica as the metrics read it, with a tree whose first-level sums are given. */
function replica (name: string, state: string, sums: bigint[] = new Array(16).fill(0n)): ReplicaView {
  return {
    name, state, codec: { fingerprint: 'fp1' }, config: { sourceOfTruth: ['us-east'] },
    partitions: { status: () => [] },
    index: { tree: { rowCount: 100, depth: 2, sum: (_level: number, j: number) => sums[j] ?? 0n } }
  }
}

function host (datasets: ReplicaView[], extra: Partial<MetricsHost> = {}): MetricsHost {
  return {
    region: 'eu-west',
    datasets: new Map(datasets.map(d => [d.name, d])),
    reviews: { pendingCount: (d?: string) => (d === 'orders' ? 2 : 0) },
    summariesRefused: 3,
    peers: () => [{ peerId: '12D3KooWpeer', region: 'us-east', connected: true, lastSummaryAt: 1_700_000_000_000 }],
    ...extra
  }
}

/** The value of one series in the exposition text, or undefined. */
function value (text: string, series: string): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('agent metrics', () => {
  it('names every series with the converge_ prefix and base units, and counts events', async () => {
    const m = new AgentMetrics({ region: 'eu-west', cluster: 'shop', version: '1.2.3', processMetrics: false })
    m.bind(host([replica('orders', 'in-sync'), replica('quarantined-one', 'quarantined')], {
      breakers: { state: name => (name === 'store:orders' ? 'open' : 'closed') },
      pagePool: { bytes: 4096, maxBytes: 65536, hits: 30, misses: 5 }
    }))
    const since = Date.now() - 2000
    m.exchanged('orders', 'us-east', { roundTrips: 4, bytesSent: 100, bytesReceived: 900 }, 7, since)
    m.exchanged('orders', 'us-east', { roundTrips: 2, bytesSent: 10, bytesReceived: 90 }, 7, since) // the same episode: detected once
    m.fixing('orders')
    m.fixApplied('orders', { upserts: [new Uint8Array(10), new Uint8Array(20)], deletes: [new Uint8Array(4)] })
    m.fixApplied('orders', { upserts: [new Uint8Array(5)], deletes: [], reviewId: 'r1' })
    m.syncSucceeded('orders', 'us-east', 7, Date.now() - 50)
    m.level('orders', since, 'us-east')
    m.fixRolledBack('orders')
    m.review('orders', 'raised')
    m.syncFailed('orders', 'us-east')
    const text = await m.text()

    expect(value(text, 'converge_build_info{version="1.2.3",node_version="' + process.versions.node + '",region="eu-west",cluster="shop"}')).toBe(1)
    expect(value(text, 'converge_sync_round_trips_total{dataset="orders",peer="us-east"}')).toBe(6)
    expect(value(text, 'converge_sync_bytes_total{dataset="orders",peer="us-east",direction="received"}')).toBe(990)
    expect(value(text, 'converge_time_to_detect_seconds_count{dataset="orders"}')).toBe(1)
    expect(value(text, 'converge_time_to_detect_seconds_sum{dataset="orders"}')).toBeGreaterThanOrEqual(2)
    expect(value(text, 'converge_time_to_remediate_seconds_count{dataset="orders"}')).toBe(1)
    expect(value(text, 'converge_repaired_rows_total{dataset="orders",operation="upsert"}')).toBe(3)
    expect(value(text, 'converge_repaired_rows_total{dataset="orders",operation="delete"}')).toBe(1)
    expect(value(text, 'converge_repaired_bytes_total{dataset="orders"}')).toBe(35)
    expect(value(text, 'converge_fixes_total{dataset="orders",kind="automatic"}')).toBe(1)
    expect(value(text, 'converge_fixes_total{dataset="orders",kind="review"}')).toBe(1)
    expect(value(text, 'converge_fixes_rolled_back_total{dataset="orders"}')).toBe(1)
    expect(value(text, 'converge_syncs_total{dataset="orders",peer="us-east",outcome="ok"}')).toBe(1)
    expect(value(text, 'converge_syncs_total{dataset="orders",peer="us-east",outcome="error"}')).toBe(1)
    expect(value(text, 'converge_drift_rows{dataset="orders",peer="us-east"}')).toBe(0) // level again
    expect(value(text, 'converge_reviews_pending{dataset="orders"}')).toBe(2)
    expect(value(text, 'converge_reviews_total{dataset="orders",outcome="raised"}')).toBe(1)
    expect(value(text, 'converge_quarantined_datasets')).toBe(1)
    expect(value(text, 'converge_dataset_state{dataset="orders",state="in-sync"}')).toBe(1)
    expect(value(text, 'converge_dataset_state{dataset="orders",state="drifted"}')).toBe(0)
    expect(value(text, 'converge_breaker_state{kind="store",target="orders"}')).toBe(2)
    expect(value(text, 'converge_breaker_state{kind="peer",target="us-east"}')).toBe(0)
    expect(value(text, 'converge_last_reconcile_success_timestamp_seconds{dataset="orders"}')).toBeGreaterThan(Date.now() / 1000 - 60)
    expect(value(text, 'converge_summaries_refused')).toBe(3)
    expect(value(text, 'converge_index_page_cache_bytes')).toBe(4096)
    expect(value(text, 'converge_index_page_cache_limit_bytes')).toBe(65536)
    expect(value(text, 'converge_index_page_cache_lookups_total{result="hit"}')).toBe(30)
    expect(value(text, 'converge_index_page_cache_lookups_total{result="miss"}')).toBe(5)
    expect(value(text, 'converge_peers{connected="true"}')).toBe(1)
    expect(value(text, 'converge_peer_last_summary_timestamp_seconds{peer="us-east"}')).toBe(1_700_000_000)
    // a second remediation needs a new fix: leveling again observes nothing
    m.level('orders', Date.now() - 1000, 'us-east')
    expect(value(await m.text(), 'converge_time_to_remediate_seconds_count{dataset="orders"}')).toBe(1)

    // conventions: every converge_ metric is typed; counters end in _total; no unit-less time or size
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => ({ name: name!, type: type! }))
    for (const { name, type } of types.filter(t => t.name.startsWith('converge_'))) {
      if (type === 'counter') expect(name).toMatch(/_total$/)
      if (/time|duration|latency/.test(name)) expect(name).toMatch(/_seconds$/)
      if (/bytes/.test(name)) expect(name).toMatch(/_bytes(_total)?$/)
    }
  })

  it('counts first-level nodes apart from each peer\'s gossiped summary, under the same schema only', async () => {
    const mine = new Array(16).fill(5n)
    const m = new AgentMetrics({ region: 'eu-west', cluster: 'shop', processMetrics: false })
    const theirs = [...mine]; theirs[3] = 6n; theirs[9] = 7n
    m.bind(host([replica('orders', 'drifted', mine)], {
      heardSummaries: () => [
        { summary: { region: 'us-east', dataset: 'orders', fp: 'fp1', count: 98, children: theirs }, receivedAt: Date.now() },
        { summary: { region: 'ap-south', dataset: 'orders', fp: 'other-schema', count: 1, children: mine }, receivedAt: Date.now() }
      ]
    }))
    const text = await m.text()
    expect(value(text, 'converge_diverged_nodes{dataset="orders",peer="us-east"}')).toBe(2)
    expect(value(text, 'converge_peer_row_count_difference{dataset="orders",peer="us-east"}')).toBe(2)
    expect(text).not.toContain('peer="ap-south"')
  })

  it('keeps a registry per agent, with libp2p\'s metrics and process metrics on it', async () => {
    const a = new AgentMetrics({ region: 'a', cluster: 'c' })
    const b = new AgentMetrics({ region: 'b', cluster: 'c' })
    expect(a.registry).toBeInstanceOf(Registry)
    expect(a.registry).not.toBe(b.registry)
    expect(await a.text()).toMatch(/^process_cpu_user_seconds_total /m)
    expect(typeof a.libp2pMetrics()).toBe('function')
  })
})

describe('drift history', () => {
  it('records changes at once, an unchanged value once per gap, and keeps a bounded ring', () => {
    const h = new DriftHistory(5, 1000)
    h.record('orders', 0, 0)
    h.record('orders', 0, 500) // unchanged within the gap
    h.record('orders', 4, 600)
    h.touch('orders', 2000)
    for (let t = 3000; t < 10_000; t += 1000) h.record('orders', 1, t)
    const points = h.toJSON().orders!
    expect(points).toHaveLength(5)
    expect(points.at(-1)).toEqual([9000, 1])
    expect(h.toJSON(8500).orders).toEqual([[9000, 1]])
  })
})

describe('cluster view frames', () => {
  it('cut a report over the bound down to each dataset\'s essentials', () => {
    const big = { region: 'r', peerId: 'p', datasets: [{ name: 'orders', state: 'drifted', partitions: 'x'.repeat(MAX_STATUS_BYTES) }] }
    const frame = JSON.parse(new TextDecoder().decode(encodeReport(big)))
    expect(frame).toMatchObject({ region: 'r', truncated: true, datasets: [{ name: 'orders', state: 'drifted' }] })
    expect(frame.datasets[0].partitions).toBeUndefined()
  })
})

describe('progress and settings', () => {
  it('draws a progress line on a terminal only, at a bounded rate', () => {
    let t = 0
    const written: string[] = []
    const tty = { isTTY: true, columns: 120, write: (s: string) => { written.push(s) } }
    const p = createProgress('indexing orders', { stream: tty, total: 1000, now: () => t })
    for (let done = 0; done <= 1000; done += 10) { t += 5; p.update(done) }
    p.done()
    expect(written.length).toBeLessThan(20)
    expect(written.at(-1)).toMatch(/^\rindexing orders {2}\[#{24}\] {2}100% {2}1,000\/1,000 rows .*\n$/)
    const pipe = { isTTY: false, write: () => { throw new Error('no output to a pipe') } }
    const quiet = createProgress('indexing', { stream: pipe })
    quiet.update(5); quiet.done()
  })

  it('takes a flag over its environment variable over the config file over the default', () => {
    const spec = { env: 'CONVERGE_X_MS', config: 300, default: 400, parse: parseMs }
    expect(resolveSetting('x', { ...spec, flag: '100' }, { CONVERGE_X_MS: '200' })).toEqual({ value: 100, source: 'flag' })
    expect(resolveSetting('x', spec, { CONVERGE_X_MS: '200' })).toEqual({ value: 200, source: 'env' })
    expect(resolveSetting('x', spec, {})).toEqual({ value: 300, source: 'config' })
    expect(resolveSetting('x', { ...spec, config: undefined }, {})).toEqual({ value: 400, source: 'default' })
    expect(() => resolveSetting('x', spec, { CONVERGE_X_MS: 'soon' })).toThrow(/CONVERGE_X_MS: "soon" is not a whole number/)
  })
})
