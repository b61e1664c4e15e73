/**
 * The status port's request bodies, fed random, truncated, deeply nested and
 * huge-length input over HTTP: every answer is a JSON error with a stable
 * code (400 for what does not parse or fit the schema, 413 past the size
 * bound, declared or actual), never a crash, and the port keeps answering.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { seedOrders } from '../../cluster/orders.ts'
import { agentConfig, startAgent, tempDir, withOrdersStore } from '../helpers/agents.ts'

const TOKEN = 'approver-token-0123456789abcdef'
let dir: Awaited<ReturnType<typeof tempDir>>
let agent: Agent

beforeAll(async () => {
  dir = await tempDir()
  await withOrdersStore(`${dir.path}/a/orders`, async store => { await seedOrders(store, 0, 100) })
  process.env.CONVERGE_TEST_BODIES_TOKEN = TOKEN
  agent = await startAgent(agentConfig(dir.path, 'a', [], ['a'], { status: { port: 0, tokens: [{ name: 'ann', role: 'approver', tokenEnv: 'CONVERGE_TEST_BODIES_TOKEN' }] } }))
}, 60_000)

afterAll(async () => {
  await agent?.stop()
  await dir.remove()
  delete process.env.CONVERGE_TEST_BODIES_TOKEN
})

async function post (body: Uint8Array | string, headers: Record<string, string> = {}): Promise<{ status: number, code: string }> {
  const res = await fetch(`${agent.statusUrl!}/reviews/no-such-review/approve`, { method: 'POST', body, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...headers } })
  const json = await res.json() as { error?: { code?: string } }
  return { status: res.status, code: json.error?.code ?? '' }
}

describe('status-port bodies', () => {
  it('random bytes and random JSON values: 400 with a code, or (a valid body) 404 for the unknown review (property)', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.json({ maxDepth: 4 })), async (body) => {
      const { status, code } = await post(body)
      expect([400, 404]).toContain(status)
      expect(code).toMatch(status === 400 ? /^BAD_REQUEST$/ : /^CONVERGE_REVIEW_NOT_FOUND$/)
    }), { numRuns: 80 })
  })

  it('a valid body cut short anywhere is refused as not JSON', async () => {
    const body = JSON.stringify({ reason: 'checked with billing', force: false })
    for (let cut = 1; cut < body.length; cut += 3) expect(await post(body.slice(0, cut))).toEqual({ status: 400, code: 'BAD_REQUEST' })
  })

  it('deep nesting within the size bound is parsed and refused by the schema; past it, refused by size', async () => {
    expect(await post('['.repeat(30_000) + ']'.repeat(30_000))).toEqual({ status: 400, code: 'BAD_REQUEST' })
    expect(await post(`{"reason":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`)).toEqual({ status: 400, code: 'BAD_REQUEST' })
    expect((await post('['.repeat(100_000))).status).toBe(413)
  })

  it('a huge declared length is refused before the body is read', async () => {
    const res = await new Promise<number>((resolve, reject) => {
      const url = new URL(agent.statusUrl!)
      import('node:http').then(http => {
        const req = http.request({ host: url.hostname, port: url.port, path: '/reviews/x/approve', method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-length': String(2 ** 40) } }, r => { r.resume(); resolve(r.statusCode ?? 0) })
        req.on('error', reject)
        req.write('{')
      }, reject)
    })
    expect(res).toBe(413)
    // and the port answers on
    expect((await fetch(`${agent.statusUrl!}/healthz`)).status).toBe(200)
  })
})
