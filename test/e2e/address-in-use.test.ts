/**
 * An agent whose listen address or status port another process holds stops
 * at its start with CONVERGE_ADDRESS_IN_USE naming the address and the
 * setting (the listen addresses are tried before the index is built, which
 * for a large store takes minutes), and leaves nothing listening.
 */
import { createServer, type Server } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { seedOrders } from '../../cluster/orders.ts'
import { agentConfig, startAgent, tempDir, withOrdersStore } from '../helpers/agents.ts'

async function hold (): Promise<{ server: Server, port: number }> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as { port: number }).port }
}

describe('an address another process holds', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let held: { server: Server, port: number }
  beforeEach(async () => {
    dir = await tempDir()
    held = await hold()
    await withOrdersStore(`${dir.path}/a/orders`, async store => { await seedOrders(store, 0, 200) })
  })
  afterEach(async () => {
    held.server.close()
    await dir.remove()
  })

  it('the listen address', async () => {
    const config = agentConfig(dir.path, 'a', [], ['a'], { listen: [`/ip4/127.0.0.1/tcp/${held.port}`], status: { host: '127.0.0.1', port: 0 } })
    await expect(startAgent(config)).rejects.toMatchObject({
      code: 'CONVERGE_ADDRESS_IN_USE',
      message: `the listen address /ip4/127.0.0.1/tcp/${held.port} is in use by another process: give \`listen\` in the config another one`
    })
  })

  it('leaves nothing listening: the same config starts once the address is free', async () => {
    const config = agentConfig(dir.path, 'a', [], ['a'], { listen: [`/ip4/127.0.0.1/tcp/${held.port}`], status: { host: '127.0.0.1', port: 0 } })
    await expect(startAgent(config)).rejects.toMatchObject({ code: 'CONVERGE_ADDRESS_IN_USE' })
    await new Promise<void>(resolve => held.server.close(() => resolve()))
    const agent = await startAgent(config)
    try {
      expect(agent.listenAddresses[0]).toContain(`/tcp/${held.port}/`)
    } finally {
      await agent.stop()
    }
  })

  it('the status port', async () => {
    const config = agentConfig(dir.path, 'a', [], ['a'], { status: { host: '127.0.0.1', port: held.port } })
    await expect(startAgent(config)).rejects.toMatchObject({
      code: 'CONVERGE_ADDRESS_IN_USE',
      message: expect.stringContaining(`the status port 127.0.0.1:${held.port} is in use by another process: give status.port`)
    })
  })
})
