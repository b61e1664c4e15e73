import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/observability/logger.ts'
import { RepeatedFailure } from '../../src/observability/repeated-failure.ts'

/** A logger at `level` whose lines are collected, parsed. */
function collected (level: string): { log: ReturnType<typeof createLogger>, lines: () => Promise<Array<Record<string, unknown>>> } {
  const sink = new PassThrough()
  const raw: string[] = []
  sink.on('data', d => raw.push(...String(d).split('\n').filter(l => l !== '')))
  return {
    log: createLogger({ level, destination: sink }),
    lines: async () => { await new Promise(resolve => setImmediate(resolve)); return raw.map(l => JSON.parse(l) as Record<string, unknown>) }
  }
}

describe('a repeated failure', () => {
  it('is logged at error once a minute while it repeats, not once a try, and its end once', async () => {
    const { log, lines } = collected('info')
    let now = 1_000_000
    const failure = new RepeatedFailure({ log, fields: { dataset: 'orders' }, message: 'change feed failed', recoveredMessage: 'change feed following again', now: () => now })
    const down = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })
    // a try every 5 s for 2 minutes and a bit: 26 failures
    for (let t = 0; t <= 125_000; t += 5000) { now = 1_000_000 + t; failure.failed(down) }
    now += 5000
    failure.recovered()
    failure.recovered() // nothing more to say
    const got = await lines()
    expect(got.map(l => [l.level, l.msg, l.failures, l.failingForMs ?? l.failedForMs, l.notLoggedSince])).toEqual([
      [50, 'change feed failed', 1, 0, undefined],
      [50, 'change feed failed', 13, 60_000, 11],
      [50, 'change feed failed', 25, 120_000, 11],
      [30, 'change feed following again', 26, 130_000, undefined]
    ])
    expect(got[0]).toMatchObject({ dataset: 'orders', code: 'ECONNREFUSED', err: 'connect ECONNREFUSED 127.0.0.1:5432' })
    expect(got[3]).toMatchObject({ dataset: 'orders' })
  })

  it('logs a different failure at once, and the repeats in between at debug', async () => {
    const { log, lines } = collected('debug')
    let now = 0
    const failure = new RepeatedFailure({ log, message: 'feed failed', recoveredMessage: 'feed again', now: () => now })
    failure.failed(new Error('connection terminated'))
    now = 5000
    failure.failed(new Error('connection terminated'))
    now = 10_000
    failure.failed(new Error('the database system is starting up'))
    const got = await lines()
    expect(got.map(l => [l.level, l.err, l.failures])).toEqual([
      [50, 'connection terminated', 1],
      [20, 'connection terminated', 2],
      [50, 'the database system is starting up', 3]
    ])
  })

  it('logs at the level it is given', async () => {
    const { log, lines } = collected('info')
    const failure = new RepeatedFailure({ log, level: 'warn', fields: { dataset: 'orders' }, message: 'sync failed', recoveredMessage: 'sync succeeded again', now: () => 0 })
    failure.failed(new Error('dial timed out'), { source: 'us-east' })
    failure.recovered({ source: 'us-east' })
    const got = await lines()
    expect(got.map(l => [l.level, l.msg, l.source, l.dataset])).toEqual([[40, 'sync failed', 'us-east', 'orders'], [30, 'sync succeeded again', 'us-east', 'orders']])
  })

  it('starts over after it ends: the next outage is logged at once', async () => {
    const { log, lines } = collected('info')
    let now = 0
    const failure = new RepeatedFailure({ log, message: 'feed failed', recoveredMessage: 'feed again', now: () => now })
    failure.failed(new Error('down'))
    now = 1000
    failure.recovered()
    now = 2000
    failure.failed(new Error('down'))
    const got = await lines()
    expect(got.map(l => [l.msg, l.failures])).toEqual([['feed failed', 1], ['feed again', 1], ['feed failed', 1]])
  })
})
