import { createWriteStream, mkdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { afterEach, beforeEach } from 'vitest'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent } from '../../src/agent/agent.ts'
import { parseConfig } from '../../src/config/load.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { createLogger, silentLogger, type Logger } from '../../src/observability/logger.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import type { ReplicaStore } from '../../src/stores/replica-store.ts'
import type { DatasetReplica } from '../../src/agent/dataset-replica.ts'
import { ORDERS_SCHEMA, ordersCodec, seedOrders } from '../../cluster/orders.ts'

export async function tempDir (prefix = 'converge-test-'): Promise<{ path: string, remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix))
  return { path, remove: async () => await rm(path, { recursive: true, force: true }) }
}

/** Opens a LevelDB orders store at a path, runs `fn`, closes it. */
export async function withOrdersStore<T> (path: string, fn: (store: LevelStore) => Promise<T>): Promise<T> {
  const store = new LevelStore({ path, codec: ordersCodec })
  await store.open()
  try { return await fn(store) } finally { await store.close() }
}

export function agentConfig (root: string, region: string, peers: Array<{ region: string, address: string }>, sourceOfTruth: string[], extra: Partial<ConfigInput> = {}): ConfigInput {
  return {
    cluster: 'test',
    region,
    dataDir: join(root, region, 'agent'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    peers,
    gossip: { intervalMs: 500 },
    sync: { minIntervalMs: 50, timeoutMs: 60_000 },
    datasets: [{ name: 'orders', schema: ORDERS_SCHEMA, store: { kind: 'level', path: join(root, region, 'orders') }, sourceOfTruth }],
    ...extra
  }
}

/**
 * Agents in tests are silent; CONVERGE_TEST_LOG=DIR appends each one's debug
 * log to DIR/<region>.log, to read after a failure that only shows under load.
 */
function testLogger (region: string): Logger {
  const dir = process.env.CONVERGE_TEST_LOG
  if (dir === undefined || dir === '') return silentLogger
  mkdirSync(dir, { recursive: true })
  return createLogger({ level: 'debug', region, destination: createWriteStream(join(dir, `${region}.log`), { flags: 'a' }) })
}

export async function startAgent (config: ConfigInput): Promise<Agent> {
  const agent = new Agent({ config: parseConfig(config), logger: testLogger(config.region) })
  await agent.start()
  return agent
}

export interface LevelPair {
  sot: Agent
  b: Agent
  /** b's replica of `orders`. */
  replica: DatasetReplica
  /** Whether b's index root is the source's. */
  level: () => boolean
}

/**
 * The source of truth `sot` and a replica `b` on loopback under `dir`, each
 * beside a LevelDB store of the same `rows` orders (b's config extended by
 * `b`), pushed onto `agents` (whoever owns them stops them); resolves once b
 * is level and in sync.
 */
export async function startLevelPair (dir: string, agents: Agent[], options: { rows?: number, b?: Partial<ConfigInput> } = {}): Promise<LevelPair> {
  const rows = options.rows ?? 2000
  for (const region of ['sot', 'b']) await withOrdersStore(join(dir, region, 'orders'), async store => { await seedOrders(store, 0, rows) })
  const sot = await startAgent(agentConfig(dir, 'sot', [], ['sot']))
  agents.push(sot)
  const b = await startAgent(agentConfig(dir, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot'], options.b))
  agents.push(b)
  const replica = b.datasets.get('orders')!
  const root = (a: Agent): { count: number, sum: bigint } => a.datasets.get('orders')!.index.tree.root
  const level = (): boolean => root(b).count === root(sot).count && root(b).sum === root(sot).sum
  await waitFor('b level with the SoT', () => level() && replica.state === 'in-sync')
  return { sot, b, replica, level }
}

/** Stops an agent and starts a new one on its config (its data dir, stores and listen addresses as configured). */
export async function restartAgent (agent: Agent): Promise<Agent> {
  await agent.stop()
  const again = new Agent({ config: agent.config, logger: testLogger(agent.config.region) })
  await again.start()
  return again
}

/** The last lines of an agent's log, for a failed test's message: what it said before it stopped or hung. */
export function logTail (path: string, lines = 15): string[] {
  try { return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines) } catch (err) { return [`(no log: ${(err as Error).message})`] }
}

/** Polls `check` until it holds; on timeout the error says what was awaited and, with `detail`, what was seen instead. */
export async function waitFor (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000, everyMs = 50, detail?: () => unknown): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail === undefined ? '' : `; seen: ${JSON.stringify(detail(), (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`}`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
}

/** Every row of a store, by key in hex. */
export async function allRows (store: ReplicaStore): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for await (const batch of store.scan()) for (const { key, row } of batch) out.set(Buffer.from(key).toString('hex'), Buffer.from(row).toString('hex'))
  return out
}

/**
 * A fresh temporary directory per test and the agents started in it: the
 * hooks it registers stop those agents and remove the directory afterwards,
 * also when the test fails.
 */
export function agentScope (): { dir: string, agents: Agent[] } {
  const scope = { dir: '', agents: [] as Agent[] }
  let remove: (() => Promise<void>) | undefined
  beforeEach(async () => { const d = await tempDir(); scope.dir = d.path; remove = d.remove })
  afterEach(async () => {
    for (const a of scope.agents.splice(0)) await a.stop()
    await remove?.()
  })
  return scope
}
