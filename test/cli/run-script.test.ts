import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const RUN = fileURLToPath(new URL('../../scripts/run', import.meta.url))

describe('scripts/run', () => {
  it('runs the command with Node 22 or newer', () => {
    const r = spawnSync('bash', [RUN, 'node', '-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8', timeout: 60_000 })
    expect(r.status).toBe(0)
    expect(Number(r.stdout.trim())).toBeGreaterThanOrEqual(22)
  })

  it('says why a Node that will not start does not start, instead of fetching Node again', () => {
    // a V8 flag Node refuses in NODE_OPTIONS: every node binary fails to start
    const r = spawnSync('bash', [RUN, 'node', '-e', ''], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '--always-sparkplug' } })
    expect(r.status).not.toBe(0)
    expect(r.stderr).toMatch(/not allowed in NODE_OPTIONS/)
    expect(r.stderr).not.toMatch(/fetching Node 22/)
  })
})
