import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Agent } from '../../src/agent/agent.ts'
import { AuditLog, type AuditEntry } from '../../src/audit/audit-log.ts'
import { parseConfig } from '../../src/config/load.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { StateDb } from '../../src/index/state-db.ts'
import { createLogger } from '../../src/observability/logger.ts'
import { AGENT_SEMI_SPACE_MIB } from '../../src/cli/young-generation.ts'
import { freePort } from '../../cluster/free-port.ts'
import { orderRow, ordersCodec as codec, ORDERS_SCHEMA, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, allRows, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname
const BIN = new URL('../../bin/converge.js', import.meta.url).pathname
const TSX = import.meta.resolve('tsx')
const ROWS = 1000

interface Child { child: ChildProcess, out: string[], exited: Promise<{ code: number | null, at: number }> }

/** `converge agent` as a real child process (no IPC: it stops on signals only); every CONVERGE_* variable but `env`'s removed. */
function agentProcess (configPath: string, flags: string[], env: Record<string, string> = {}, command: string[] = ['--import', TSX, CLI]): Child {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CONVERGE_') && k !== 'NODE_OPTIONS'))
  const child = spawn(process.execPath, [...command, 'agent', '--config', configPath, ...flags], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...base, ...env } })
  const out: string[] = []
  let partial = ''
  const take = (d: Buffer): void => { const lines = (partial + String(d)).split('\n'); partial = lines.pop()!; out.push(...lines) }
  child.stdout!.on('data', take)
  child.stderr!.on('data', take)
  const exited = new Promise<{ code: number | null, at: number }>(resolve => child.once('exit', code => resolve({ code, at: Date.now() })))
  return { child, out, exited }
}

const logs = (c: Child): Array<Record<string, any>> => c.out.flatMap(l => { try { return [JSON.parse(l)] } catch { return [] } })

async function ready (url: string): Promise<number | undefined> {
  try { return (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) })).status } catch { return undefined }
}

/** Every audit entry of a stopped agent, and whether its chain verifies. */
async function offlineAudit (dataDir: string): Promise<{ entries: AuditEntry[], verified: number }> {
  const state = new StateDb(join(dataDir, 'state'))
  await state.open()
  try {
    const audit = new AuditLog(state)
    await audit.open()
    const entries: AuditEntry[] = []
    for await (const e of audit.query({})) entries.push(e)
    return { entries, verified: await audit.verify() }
  } finally {
    await state.close()
  }
}

describe('lifecycle: SIGTERM and SIGINT on a real agent process', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const children: Child[] = []
  const agents: Agent[] = []
  beforeEach(async () => { dir = await tempDir() })
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.child.exitCode === null) c.child.kill('SIGKILL')
    for (const a of agents.splice(0)) await a.stop()
    await dir.remove()
  })

  /** A region's seeded store and its agent config (not yet written: a test may add peers). */
  async function regionConfig (region: string): Promise<{ path: string, url: string, dataDir: string, config: ConfigInput }> {
    await withOrdersStore(join(dir.path, region, 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    const port = await freePort()
    const config: ConfigInput = {
      cluster: 'life', region, dataDir: join(dir.path, region, 'agent'), listen: ['/ip4/127.0.0.1/tcp/0'], status: { host: '127.0.0.1', port },
      gossip: { intervalMs: 300 }, sync: { minIntervalMs: 20, timeoutMs: 10_000 },
      datasets: [{ name: 'orders', schema: ORDERS_SCHEMA, store: { kind: 'level', path: join(dir.path, region, 'orders') }, sourceOfTruth: ['sot'] }]
    }
    return { path: join(dir.path, `${region}.json`), url: `http://127.0.0.1:${port}`, dataDir: config.dataDir, config }
  }

  it('SIGTERM: /readyz turns 503 at once, no new fix starts, the audit is flushed, the process exits 0 within its bound; both agents log each sync\'s correlation id', async () => {
    // the source of truth runs here, logging to a buffer; the replica is a child process
    await withOrdersStore(join(dir.path, 'sot', 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    const sotLog: Array<Record<string, any>> = []
    const sink = new PassThrough()
    sink.on('data', d => { for (const l of String(d).split('\n')) if (l !== '') sotLog.push(JSON.parse(l)) })
    const sot = new Agent({ config: parseConfig(agentConfig(dir.path, 'sot', [], ['sot'], { cluster: 'life', gossip: { intervalMs: 300 } })), logger: createLogger({ level: 'info', region: 'sot', destination: sink }) })
    await sot.start()
    agents.push(sot)

    const replica = await regionConfig('b')
    await writeFile(replica.path, JSON.stringify({ ...replica.config, peers: [{ region: 'sot', address: sot.listenAddresses[0]! }] }))
    const child = agentProcess(replica.path, ['--drain-delay', '1500'], { CONVERGE_DRAIN_DELAY_MS: '60000', CONVERGE_STOP_TIMEOUT_MS: '20000' })
    children.push(child)
    const status = async (): Promise<any> => await (await fetch(`${replica.url}/status`)).json()
    await waitFor('the replica process to be ready and in sync', async () => (await ready(replica.url)) === 200 && (await status()).datasets[0].state === 'in-sync', 30_000, 100)

    // a change at the source is repaired on the replica: one fix
    const sotStore = sot.datasets.get('orders')!.store
    await sotStore.apply({ upserts: [1, 2, 3].map(id => codec.encodeRow(orderRow(id, 5))), deletes: [], origin: 'test' })
    await waitFor('the replica\'s fix', async () => (await status()).datasets[0].counters.fixes === 1 && (await status()).datasets[0].state === 'in-sync', 20_000, 100)

    const signalled = Date.now()
    child.child.kill('SIGTERM')
    await waitFor('/readyz to answer 503', async () => (await ready(replica.url)) === 503, 1000, 10)
    // the flag's 1.5 s drain delay won over the environment's 60 s: meanwhile, another change at the source is left alone
    await sotStore.apply({ upserts: [4, 5].map(id => codec.encodeRow(orderRow(id, 6))), deletes: [], origin: 'test' })
    await new Promise(resolve => setTimeout(resolve, 700))
    expect(await ready(replica.url)).toBe(503)
    const actions = await fetch(`${replica.url}/datasets/orders/reconcile`, { method: 'POST' })
    expect(actions.status).toBeGreaterThanOrEqual(400)

    const { code, at } = await child.exited
    expect(code).toBe(0)
    expect(at - signalled).toBeGreaterThanOrEqual(1400)
    expect(at - signalled).toBeLessThan(10_000)
    const lines = logs(child)
    expect(lines.some(l => l.msg === 'stopping: draining' && l.reason === 'SIGTERM')).toBe(true)
    expect(lines.at(-1)?.msg).toBe('agent stopped')

    // the audit was flushed: one fix, intent and commit, chain intact; nothing in flight
    const { entries, verified } = await offlineAudit(replica.dataDir)
    expect(verified).toBe(entries.length)
    const commits = entries.filter(e => e.kind === 'commit')
    expect(commits).toHaveLength(1)
    expect(entries.filter(e => e.kind === 'intent')).toHaveLength(1)
    // one correlation id across the replica's log, the source's log and the audit
    const cid = commits[0]!.correlationId
    expect(lines.some(l => l.cid === cid && l.msg === 'sync found drift')).toBe(true)
    expect(lines.some(l => l.cid === cid && l.msg === 'fix applied')).toBe(true)
    expect(sotLog.some(l => l.cid === cid && l.msg === 'served sync')).toBe(true)
  }, 60_000)

  it('a stop over its bound exits 1; a second signal exits at once', async () => {
    const solo = await regionConfig('sot')
    await writeFile(solo.path, JSON.stringify(solo.config))
    // --stop-timeout from the environment: the drain delay is longer than the bound
    const slow = agentProcess(solo.path, ['--drain-delay', '20000'], { CONVERGE_STOP_TIMEOUT_MS: '500' })
    children.push(slow)
    await waitFor('the agent to be ready', async () => (await ready(solo.url)) === 200, 30_000, 100)
    const t0 = Date.now()
    slow.child.kill('SIGINT')
    const { code, at } = await slow.exited
    expect(code).toBe(1)
    expect(at - t0).toBeLessThan(5000)
    expect(logs(slow).some(l => l.msg === 'stop took longer than its bound; exiting')).toBe(true)
    expect(logs(slow).find(l => l.msg === 'heap growth set')).toMatchObject({ heapGrowthPercent: 200, from: 'default' })
    // started as node's script, not through bin/converge.js: nothing put it in another process's place
    expect(logs(slow).find(l => l.msg === 'young generation')).toMatchObject({ semiSpaceMiB: null, from: 'V8 default' })

    const impatient = agentProcess(solo.path, ['--drain-delay', '20000', '--stop-timeout', '30000', '--heap-growth', '0'], { CONVERGE_HEAP_GROWTH: '400' })
    children.push(impatient)
    await waitFor('the agent to be ready again', async () => (await ready(solo.url)) === 200, 30_000, 100)
    impatient.child.kill('SIGTERM')
    await waitFor('the drain', async () => (await ready(solo.url)) === 503, 2000, 10)
    const t1 = Date.now()
    impatient.child.kill('SIGINT')
    const second = await impatient.exited
    expect(second.code).toBe(1)
    expect(second.at - t1).toBeLessThan(3000)
    expect(logs(impatient).some(l => l.msg === 'second stop request; exiting now')).toBe(true)
    expect(logs(impatient).find(l => l.msg === 'heap growth set')).toMatchObject({ heapGrowthPercent: 0, from: 'flag' })
  }, 60_000)

  it('bin/converge.js puts an agent started without a young-generation size in the place of one started with it: same pid, its signals, its exit code', async () => {
    const solo = await regionConfig('sot')
    await writeFile(solo.path, JSON.stringify(solo.config))
    const agent = agentProcess(solo.path, [], {}, [BIN])
    children.push(agent)
    await waitFor('the agent to be ready', async () => (await ready(solo.url)) === 200, 30_000, 100)
    expect(logs(agent).find(l => l.msg === 'young generation')).toMatchObject({ semiSpaceMiB: AGENT_SEMI_SPACE_MIB, from: 'command line' })
    // the pid the test started is the agent's: its SIGTERM is a clean stop, exit code 0
    agent.child.kill('SIGTERM')
    expect((await agent.exited).code).toBe(0)
    expect(logs(agent).some(l => l.msg === 'agent stopped')).toBe(true)

    // an operator's own size is kept as given, here from NODE_OPTIONS
    const own = agentProcess(solo.path, [], { NODE_OPTIONS: '--max-semi-space-size=8' }, [BIN])
    children.push(own)
    await waitFor('the agent to be ready again', async () => (await ready(solo.url)) === 200, 30_000, 100)
    expect(logs(own).find(l => l.msg === 'young generation')).toMatchObject({ semiSpaceMiB: 8, from: 'NODE_OPTIONS' })
    own.child.kill('SIGTERM')
    expect((await own.exited).code).toBe(0)
  }, 60_000)

  it('a bad heap growth ends the agent with exit code 2 and names the setting, before it opens anything', async () => {
    const solo = await regionConfig('sot')
    await writeFile(solo.path, JSON.stringify(solo.config))
    const bad = agentProcess(solo.path, [], { CONVERGE_HEAP_GROWTH: 'lots' })
    children.push(bad)
    const { code } = await bad.exited
    expect(code).toBe(2)
    // (the exit can be seen before the last of its output)
    await waitFor('the message', () => bad.out.some(l => l.includes('CONVERGE_HEAP_GROWTH: "lots" is not a whole percentage from 0')), 5000, 20)
    // nothing of the agent's was made: not its data directory (peer key, state, audit), nor its status port
    expect(existsSync(solo.dataDir)).toBe(false)
    expect(await ready(solo.url)).toBeUndefined()
  }, 30_000)

  it('a fix in flight when the agent stops is carried through: its intent has its commit and the rows are written', async () => {
    for (const region of ['sot', 'b']) await withOrdersStore(join(dir.path, region, 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    const sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot']))
    agents.push(sot)
    const b = await startAgent(agentConfig(dir.path, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot']))
    const dataset = b.datasets.get('orders')!
    await waitFor('in sync', () => dataset.state === 'in-sync', 20_000)
    // the replica's store writes slowly: the stop comes while the fix is being written
    const apply = dataset.store.apply.bind(dataset.store)
    let entered!: () => void
    const inFlight = new Promise<void>(resolve => { entered = resolve })
    dataset.store.apply = async (request, options) => {
      if (request.origin === 'converge') { entered(); await new Promise(resolve => setTimeout(resolve, 500)) }
      return await apply(request, options)
    }
    await sot.datasets.get('orders')!.store.apply({ upserts: [7, 8].map(id => codec.encodeRow(orderRow(id, 3))), deletes: [], origin: 'test' })
    await inFlight
    await b.stop()
    const { entries } = await offlineAudit(join(dir.path, 'b', 'agent'))
    const intents = entries.filter(e => e.kind === 'intent')
    expect(intents).toHaveLength(1)
    expect(entries.filter(e => e.kind === 'commit').map(e => e.fixId)).toEqual([intents[0]!.fixId])
    await withOrdersStore(join(dir.path, 'b', 'orders'), async store => {
      expect(await allRows(store)).toEqual(await allRows(sot.datasets.get('orders')!.store))
    })
  }, 60_000)
})
