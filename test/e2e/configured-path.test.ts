/**
 * A replica reaches a peer the config names only through the address the
 * config gives (a proxy, a tunnel; in the cluster simulator, the link a
 * fault acts on), never through the addresses that peer announced. Here the
 * configured address is a TCP proxy in front of the source: once the
 * connection is gone and the proxy goes silent, a sync cannot reach the
 * source, though its own listen address (which the replica learned by
 * identify) would answer.
 */
import { describe, expect, it } from 'vitest'
import { peerIdFromString } from '@libp2p/peer-id'
import { LinkProxy } from '../../cluster/link-proxy.ts'
import type { AgentNode } from '../../src/net/node.ts'
import { agentConfig, agentScope, startAgent, waitFor } from '../helpers/agents.ts'

describe('the path to a configured peer', () => {
  const scope = agentScope()

  it('a sync dials the configured address when no connection is open, not the address the peer announced', async () => {
    const sot = await startAgent(agentConfig(scope.dir, 'sot', [], ['sot']))
    scope.agents.push(sot)
    const [, , , , port, , sotId] = sot.listenAddresses[0]!.split('/')
    const proxy = new LinkProxy({ name: 'b→sot', random: Math.random, targetPort: Number(port) })
    const proxyPort = await proxy.listen()
    try {
      const b = await startAgent(agentConfig(scope.dir, 'b', [{ region: 'sot', address: `/ip4/127.0.0.1/tcp/${proxyPort}/p2p/${sotId!}` }], ['sot']))
      scope.agents.push(b)
      const node = (b as unknown as { node: AgentNode }).node
      const id = peerIdFromString(sotId!)
      await waitFor('the replica to hear the source', () => b.sourceOf(b.datasets.get('orders')!.config)?.summary !== undefined, 20_000)
      // the replica knows the source's own address, from identify
      const known = (await node.peerStore.get(id)).addresses.map(a => a.multiaddr.toString())
      expect(known).toContain(`/ip4/127.0.0.1/tcp/${port!}`)

      // the connection drops and the configured path goes silent
      proxy.setState('silent')
      for (const c of node.getConnections(id)) await c.close()
      const attempt = await b.openSyncChannel(sotId!, AbortSignal.timeout(1500)).then(() => 'connected', (err: Error) => err.name)
      expect(attempt).not.toBe('connected')
      expect(node.getConnections(id).filter(c => c.status === 'open')).toEqual([])

      // the path is back: the sync goes through it
      proxy.setState('up')
      const channel = await b.openSyncChannel(sotId!, AbortSignal.timeout(10_000))
      expect(node.getConnections(id).map(c => c.remoteAddr.toString())).toEqual([`/ip4/127.0.0.1/tcp/${proxyPort}/p2p/${sotId!}`])
      await channel.close()
    } finally {
      await proxy.close()
    }
  })
})
