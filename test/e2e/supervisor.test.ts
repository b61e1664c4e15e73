import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { seedOrders } from '../../cluster/orders.ts'
import { tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }

it('an agent started by a supervisor stops by itself when the supervisor dies abruptly', async () => {
  const dir = await tempDir()
  let pid = 0
  try {
    await withOrdersStore(join(dir.path, 'solo', 'orders'), async store => { await seedOrders(store, 0, 1000) })
    const launcher = new URL('../../cluster/launcher.ts', import.meta.url).pathname
    const orders = new URL('../../cluster/orders.ts', import.meta.url).pathname
    // a supervisor that launches one agent, reports its pid, then dies without stopping it
    const script = join(dir.path, 'supervisor.mts')
    await writeFile(script, `
      import { launchAgent } from ${JSON.stringify(launcher)}
      import { ORDERS_SCHEMA } from ${JSON.stringify(orders)}
      const agent = await launchAgent(${JSON.stringify(dir.path)}, {
        cluster: 'sup', region: 'solo', dataDir: ${JSON.stringify(join(dir.path, 'solo', 'agent'))}, status: { host: '127.0.0.1', port: 0 },
        datasets: [{ name: 'orders', schema: ORDERS_SCHEMA, store: { kind: 'level', path: ${JSON.stringify(join(dir.path, 'solo', 'orders'))} }, sourceOfTruth: ['solo'] }]
      })
      agent.child.stdout.on('data', d => { if (String(d).includes('agent started')) { console.log('PID', agent.child.pid); process.exit(0) } })
    `)
    const tsx = import.meta.resolve('tsx')
    const supervisor = spawn(process.execPath, ['--import', tsx, script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let output = ''
    supervisor.stdout.on('data', d => { output += String(d) })
    await new Promise(resolve => supervisor.once('exit', resolve))
    pid = Number(/PID (\d+)/.exec(output)?.[1])
    expect(pid).toBeGreaterThan(0)
    await waitFor('the orphaned agent to stop', () => !alive(pid), 15_000, 100)
  } finally {
    if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL') // never leave it behind, even when the test fails
    await dir.remove()
  }
})
