/**
 * A source of truth pinned in the config serves as soon as it is connected,
 * before its first summary arrives, but only for as long as a summary may
 * take (three gossip intervals). A connection that stays open without a
 * summary (a partition holds a TCP connection open and silent) is no sign
 * of life: the replica counts its source as gone rather than waiting on it.
 */
import { describe, expect, it } from 'vitest'
import { agentConfig, agentScope, startAgent, waitFor } from '../helpers/agents.ts'

describe('a pinned source that never speaks', () => {
  const scope = agentScope()

  it('serves while its connection is young, then counts as gone though still connected', async () => {
    // the two gossip on different topics (cluster names), so the replica never hears a summary from its source,
    // as when a partition starts before the first one gets through; exchanges still go through
    const sot = await startAgent(agentConfig(scope.dir, 'sot', [], ['sot'], { cluster: 'elsewhere' }))
    scope.agents.push(sot)
    const b = await startAgent(agentConfig(scope.dir, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot']))
    scope.agents.push(b)
    const replica = b.datasets.get('orders')!
    await waitFor('the replica to take its connected source as serving', () => b.sourceOf(replica.config) !== undefined, 10_000, 20)
    await waitFor('the replica to count its silent source as gone', () => replica.state === 'no-source', 10_000, 20,
      () => ({ replica: replica.status(), heard: b.heardSummaries() }))
    // still connected: only its silence counts
    expect(b.heardSummaries().filter(h => h.summary.region === 'sot')).toEqual([])
    expect(b.peers().find(p => p.region === 'sot')).toMatchObject({ connected: true })
  }, 30_000)
})
