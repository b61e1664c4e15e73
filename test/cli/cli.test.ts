import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../../cluster/free-port.ts'
import { fetchStatus, launchAgent, stopAgent, type AgentProcess } from '../../cluster/launcher.ts'
import { ORDERS_SCHEMA, seedOrders } from '../../cluster/orders.ts'
import { converge } from '../helpers/cli.ts'
import { tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

describe('the converge command (real child processes)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  beforeAll(async () => { dir = await tempDir() })
  afterAll(async () => { await dir.remove() })

  it('prints help with examples for every command', async () => {
    const top = await converge(['--help'])
    expect(top.code).toBe(0)
    for (const cmd of ['agent', 'keygen', 'status', 'cluster']) expect(top.stdout).toContain(cmd)
    const agent = await converge(['agent', '--help'])
    expect(agent.stdout).toMatch(/Example:\n\s+converge agent --config/)
  })

  it('exits 2 on an unknown command', async () => {
    const r = await converge(['frobnicate'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/unknown command/)
  })

  it('exits 2 and names the field on a bad config', async () => {
    const path = join(dir.path, 'bad.yaml')
    await writeFile(path, 'cluster: prod\nregion: us-east\ndataDir: ./d\ndatasets:\n  - name: orders\n    sourceOfTruth: [mars]\n    store: { kind: level, path: ./o }\n    schema: { columns: [{ name: id, type: integer }], primaryKey: [id] }\n')
    const r = await converge(['agent', '--config', path])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/datasets\.0\.sourceOfTruth\.0: region "mars" is neither this agent nor one of its peers/)
  })

  it('exits 1 with a clear message when a store cannot be reached, leaving nothing running', async () => {
    const path = join(dir.path, 'unreachable.json')
    await writeFile(path, JSON.stringify({
      cluster: 'cli', region: 'solo', dataDir: join(dir.path, 'unreachable'), status: { host: '127.0.0.1', port: await freePort() },
      datasets: [{ name: 'orders', schema: ORDERS_SCHEMA, store: { kind: 'postgres', connectionString: 'postgres://postgres@127.0.0.1:5432/converge_no_such_db', table: 'orders' }, sourceOfTruth: ['solo'] }]
    }))
    const r = await converge(['agent', '--config', path])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/cannot reach PostgreSQL for public\.orders: .*converge_no_such_db.*\[CONVERGE_STORE_UNAVAILABLE\]/)
  })

  it('keygen writes a private key file and prints its peer id', async () => {
    const out = join(dir.path, 'peer.key')
    const r = await converge(['keygen', '--out', out])
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toMatch(/^12D3KooW\w+$/)
    expect((await stat(out)).mode & 0o777).toBe(0o600)
    expect(JSON.parse(await readFile(out, 'utf8')).type).toBe('converge-peer-key')
    const again = await converge(['keygen', '--out', out])
    expect(again.code).toBe(1) // never overwrites a key
  })

  describe('against a running agent process', () => {
    let agent: AgentProcess
    beforeAll(async () => {
      await withOrdersStore(join(dir.path, 'solo', 'orders'), async store => { await seedOrders(store, 0, 500) })
      agent = await launchAgent(dir.path, {
        cluster: 'cli', region: 'solo', dataDir: join(dir.path, 'solo', 'agent'), listen: ['/ip4/127.0.0.1/tcp/0'],
        status: { host: '127.0.0.1', port: await freePort() },
        datasets: [{ name: 'orders', schema: ORDERS_SCHEMA, store: { kind: 'level', path: join(dir.path, 'solo', 'orders') }, sourceOfTruth: ['solo'] }]
      })
      await waitFor('the agent status port', async () => (await fetchStatus(agent)) !== undefined, 30_000, 100)
    })
    afterAll(async () => { await stopAgent(agent) })

    it('status prints a table of datasets', async () => {
      const r = await converge(['status', '--url', agent.statusUrl])
      expect(r.code).toBe(0)
      expect(r.stdout).toMatch(/region solo/)
      expect(r.stdout).toMatch(/orders\s+source\s+solo\s+500\s+[0-9a-f]{16}/)
    })

    it('status --json prints the raw report', async () => {
      const r = await converge(['status', '--url', agent.statusUrl, '--json'])
      expect(JSON.parse(r.stdout).datasets[0].root.count).toBe(500)
    })

    it('stops cleanly on SIGTERM with exit code 0', async () => {
      expect(await stopAgent(agent)).toBe(0)
    })
  })

  it('status exits 1 with a clear message when no agent answers', async () => {
    const r = await converge(['status', '--url', `http://127.0.0.1:${await freePort()}`])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+.*CONVERGE_STATUS_UNREACHABLE/)
  })
})

