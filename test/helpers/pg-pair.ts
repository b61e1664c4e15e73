/**
 * Two agents on loopback, the source of truth `sot` and a `replica`, each
 * beside a new PostgreSQL database of its own holding one table, whose
 * schema each agent reads from its catalog.
 */
import type { Agent } from '../../src/agent/agent.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import { agentConfig, restartAgent, startAgent, tempDir } from './agents.ts'
import { createDatabase } from './postgres.ts'

type Database = Awaited<ReturnType<typeof createDatabase>>

export interface PgPair {
  sotDb: Database
  replicaDb: Database
  sot: Agent
  replica: Agent
  /** Whether the replica's index root is the source's. */
  level: () => boolean
  /** Stops the replica's agent and starts it again on the same config, data dir and database. */
  restartReplica: () => Promise<Agent>
  /** Stops both agents, drops both databases and the agents' directory. */
  stop: () => Promise<void>
}

export async function startPgPair (options: {
  dataset: string
  /** Schema-qualified: public.items */
  table: string
  /** Makes the table and its rows in one database, before the agents start (`role` says whose). */
  prepare: (url: string, role: 'sot' | 'replica') => Promise<void>
}): Promise<PgPair> {
  const dir = await tempDir()
  const databases: Database[] = []
  const agents: Agent[] = []
  const stop = async (): Promise<void> => {
    for (const a of [...agents].reverse()) await a.stop()
    for (const db of databases) await db.drop()
    await dir.remove()
  }
  try {
    const sotDb = await createDatabase()
    databases.push(sotDb)
    const replicaDb = await createDatabase()
    databases.push(replicaDb)
    await options.prepare(sotDb.url, 'sot')
    await options.prepare(replicaDb.url, 'replica')
    const config = (region: string, url: string, peers: Array<{ region: string, address: string }>): ConfigInput => ({
      ...agentConfig(dir.path, region, peers, ['sot']),
      datasets: [{ name: options.dataset, schema: { fromCatalog: true }, store: { kind: 'postgres', connectionString: url, table: options.table }, sourceOfTruth: ['sot'] }]
    })
    const sot = await startAgent(config('sot', sotDb.url, []))
    agents.push(sot)
    let replica = await startAgent(config('replica', replicaDb.url, [{ region: 'sot', address: sot.listenAddresses[0]! }]))
    agents.push(replica)
    const root = (a: Agent) => a.datasets.get(options.dataset)!.index.tree.root
    const level = (): boolean => root(replica).sum === root(sot).sum && root(replica).count === root(sot).count
    const restartReplica = async (): Promise<Agent> => {
      agents.splice(agents.indexOf(replica), 1)
      replica = await restartAgent(replica)
      agents.push(replica)
      return replica
    }
    return { sotDb, replicaDb, sot, get replica () { return replica }, level, restartReplica, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
