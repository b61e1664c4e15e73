import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Command } from 'commander'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { buildProgram } from '../../src/cli/main.ts'
import { freePort } from '../../cluster/free-port.ts'
import { orderRow, ordersCodec as codec, ORDERS_SCHEMA, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'
import { convergeEnv } from '../helpers/cli-env.ts'

const ADMIN = 'ada-admin-token-000000004'
const VIEWER = 'victor-viewer-token-0003'

const converge = convergeEnv

describe('converge status', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let sot: Agent
  let replica: Agent
  let url: string
  let configFile: string

  beforeAll(async () => {
    dir = await tempDir()
    for (const region of ['sot', 'b']) await withOrdersStore(join(dir.path, region, 'orders'), async store => { await seedOrders(store, 0, 300) })
    const tokens = []
    for (const [name, secret, role] of [['ada', ADMIN, 'admin'], ['victor', VIEWER, 'viewer']] as const) {
      const file = join(dir.path, `${name}.token`)
      await writeFile(file, secret)
      await chmod(file, 0o600)
      tokens.push({ name, role, tokenFile: file })
    }
    sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot']))
    const config = agentConfig(dir.path, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot'], { status: { port: await freePort(), tokens } })
    config.datasets[0]!.rule = 'review'
    replica = await startAgent(config)
    url = replica.statusUrl!
    await waitFor('in sync', () => replica.datasets.get('orders')!.state === 'in-sync', 20_000)
    // an agent config file naming the replica's status port
    configFile = join(dir.path, 'b.json')
    await writeFile(configFile, JSON.stringify({ cluster: 'test', region: 'b', dataDir: join(dir.path, 'elsewhere'), status: config.status, datasets: [{ name: 'orders', schema: ORDERS_SCHEMA, store: { kind: 'level', path: join(dir.path, 'x') }, sourceOfTruth: ['b'] }] }))
  }, 60_000)
  afterAll(async () => {
    await replica?.stop()
    await sot?.stop()
    await dir?.remove()
  })

  it('prints a readable table; --peer names the agent like --url; --check exits 0 when all is in sync', async () => {
    const r = await converge(['status', '--peer', url, '--check'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^region b {2}peer 12D3KooW\w+ {2}ready$/m)
    expect(r.stdout).toMatch(/^DATASET +STATE +SOURCE +ROWS +ROOT +SOURCE ROOT +FIXES +REPAIRED +LAST SYNC +ERROR$/m)
    expect(r.stdout).toMatch(/^orders +in-sync +sot +300 +[0-9a-f]{16} +[0-9a-f]{16} +0 +0 +\d+s ago$/m)
    expect(r.stdout).toMatch(/^12D3KooW\w+ +sot +yes +\d+s ago$/m)
    expect((await converge(['status', '--peer', url, '--url', url])).code).toBe(2)
  })

  it('takes the agent from --url over CONVERGE_URL over the config file', async () => {
    const nobody = `http://127.0.0.1:${await freePort()}`
    // the config file alone
    const fromConfig = await converge(['status', '--config', configFile, '--json'])
    expect(fromConfig.code).toBe(0)
    expect(JSON.parse(fromConfig.stdout).region).toBe('b')
    // the environment over the config file
    const fromEnv = await converge(['status', '--config', configFile], { CONVERGE_URL: nobody })
    expect(fromEnv.code).toBe(1)
    expect(fromEnv.stderr).toContain(`cannot reach ${nobody}`)
    // the flag over both
    const fromFlag = await converge(['status', '--config', configFile, '--url', url, '--json'], { CONVERGE_URL: nobody })
    expect(fromFlag.code).toBe(0)
    const bad = await converge(['status', '--url', 'ftp://x'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--url: "ftp:\/\/x" is not an http\(s\) URL/)
  })

  it('--cluster shows every agent through this one (admin token); a viewer is refused with exit code 1', async () => {
    const r = await converge(['status', '--url', url, '--cluster'], { CONVERGE_TOKEN: ADMIN })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^REGION +ANSWERED +READY +DATASET +STATE/m)
    expect(r.stdout).toMatch(/^b\* +0 ms +yes +orders +in-sync +sot/m)
    expect(r.stdout).toMatch(/^sot +\d+ ms +yes +orders +source +sot +300 /m)
    const json = JSON.parse((await converge(['status', '--url', url, '--cluster', '--json'], { CONVERGE_TOKEN: ADMIN })).stdout)
    expect(json.members.map((m: any) => m.region)).toEqual(['b', 'sot'])
    const viewer = await converge(['status', '--url', url, '--cluster'], { CONVERGE_TOKEN: VIEWER })
    expect(viewer.code).toBe(1)
    expect(viewer.stderr).toMatch(/\[FORBIDDEN\]/)
  })

  it('--check exits 3 when a dataset is not in sync', async () => {
    await replica.datasets.get('orders')!.store.apply({ upserts: [codec.encodeRow(orderRow(5, 4))], deletes: [], origin: 'test' })
    await waitFor('held for review', () => replica.datasets.get('orders')!.state === 'held', 20_000)
    const r = await converge(['status', '--url', url, '--check'])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/not healthy: b\/orders: held/)
    expect(r.stdout).toMatch(/^orders +held/m)
  })

  it('every command has --help with an example', () => {
    const leaves: Command[] = []
    const walk = (c: Command): void => { if (c.commands.length === 0) leaves.push(c); else c.commands.forEach(walk) }
    buildProgram().commands.forEach(walk)
    expect(leaves.map(c => c.name())).toEqual(expect.arrayContaining(['agent', 'status', 'keygen', 'diff', 'demo']))
    for (const c of leaves) {
      let text = ''
      c.configureOutput({ writeOut: s => { text += s } })
      c.outputHelp()
      expect(text, c.name()).toMatch(/Examples?:\n\s+(\S+=\S+ )?converge /)
    }
  })
})
