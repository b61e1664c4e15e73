import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/observability/logger.ts'

describe('logs', () => {
  it('are JSON lines with the region, and never carry a secret', async () => {
    const sink = new PassThrough()
    const lines: string[] = []
    sink.on('data', d => lines.push(...String(d).split('\n').filter(l => l !== '')))
    const log = createLogger({ level: 'info', region: 'eu-west', destination: sink })
    log.info({ token: 'tok-1', headers: { authorization: 'Bearer tok-2' }, store: { kind: 'postgres', connectionString: 'postgres://u:pw@h/db' }, password: 'pw', cid: 'c-1' }, 'hello')
    log.child({ dataset: 'orders' }).warn({ peer: { psk: 'k', token: 'tok-3' } }, 'child')
    await new Promise(resolve => setImmediate(resolve))
    const [first, second] = lines.map(l => JSON.parse(l))
    expect(first).toMatchObject({ level: 30, region: 'eu-west', msg: 'hello', cid: 'c-1', token: '[redacted]', password: '[redacted]', headers: { authorization: '[redacted]' }, store: { kind: 'postgres', connectionString: '[redacted]' } })
    expect(second).toMatchObject({ region: 'eu-west', dataset: 'orders', peer: { psk: '[redacted]', token: '[redacted]' } })
    expect(lines.join('\n')).not.toMatch(/tok-\d|pw@|"k"/)
  })
})
