import { describe, expect, it } from 'vitest'
import { Breakers, RowBudget, type BudgetClock } from '../../src/agent/resilience.ts'
import { AbortedError, ConvergeError } from '../../src/errors.ts'

/** A clock that only moves when something sleeps on it. */
function fakeClock (): BudgetClock & { slept: number[], t: number } {
  const clock = {
    t: 0,
    slept: [] as number[],
    now: () => clock.t,
    sleep: async (ms: number) => { clock.slept.push(ms); clock.t += ms }
  }
  return clock
}

describe('RowBudget', () => {
  it('lets a second of rows through at once, then paces the rest at the rate', async () => {
    const clock = fakeClock()
    const budget = new RowBudget(1000, clock)
    await budget.take(1000)
    expect(clock.t).toBe(0)
    for (let i = 0; i < 5; i++) await budget.take(500)
    // 2,500 more rows at 1,000 rows/s
    expect(clock.t).toBeGreaterThanOrEqual(2500)
    expect(clock.t).toBeLessThanOrEqual(2600)
  })

  it('paces a batch larger than one second by going into debt', async () => {
    const clock = fakeClock()
    const budget = new RowBudget(100, clock)
    await budget.take(100)
    await budget.take(1000) // waits for a full bucket, then owes 900
    await budget.take(100)
    expect(clock.t).toBeGreaterThanOrEqual(10_000)
  })

  it('does nothing without a limit', async () => {
    const clock = fakeClock()
    const budget = new RowBudget(0, clock)
    await budget.take(1_000_000)
    expect(clock.slept).toEqual([])
    expect(budget.limited).toBe(false)
  })
})

describe('Breakers', () => {
  const failing = async (): Promise<never> => { throw new ConvergeError('CONVERGE_STREAM_ENDED', 'stream ended') }

  it('open after N failures in a row, refuse fast with the last error, and let one trial through after the cool-down', async () => {
    const breakers = new Breakers({ failures: 3, coolDownMs: 200 })
    let calls = 0
    const task = async (): Promise<never> => { calls++; return await failing() }
    for (let i = 0; i < 3; i++) await expect(breakers.run('peer:x', task)).rejects.toMatchObject({ code: 'CONVERGE_STREAM_ENDED' })
    expect(breakers.state('peer:x')).toBe('open')
    const refused = await breakers.run('peer:x', task).catch((e: unknown) => e)
    expect(refused).toMatchObject({ code: 'CONVERGE_CIRCUIT_OPEN' })
    expect((refused as Error).message).toMatch(/peer:x failed 3 times in a row \(last: stream ended\)/)
    expect(calls).toBe(3)
    expect(breakers.notClosed()).toEqual([{ name: 'peer:x', state: 'open', lastError: 'stream ended' }])
    // another peer is not affected
    expect(await breakers.run('peer:y', async () => 'ok')).toBe('ok')

    await new Promise(resolve => setTimeout(resolve, 250))
    expect(await breakers.run('peer:x', async () => 'back')).toBe('back')
    expect(breakers.state('peer:x')).toBe('closed')
  })

  it('do not count cancellations or schema refusals against a peer', async () => {
    const breakers = new Breakers({ failures: 2, coolDownMs: 10_000 })
    for (let i = 0; i < 5; i++) {
      await expect(breakers.run('peer:x', async () => { throw new AbortedError() })).rejects.toBeInstanceOf(AbortedError)
      await expect(breakers.run('peer:x', async () => { throw new ConvergeError('CONVERGE_SCHEMA_INCOMPATIBLE', 'no') })).rejects.toMatchObject({ code: 'CONVERGE_SCHEMA_INCOMPATIBLE' })
    }
    expect(breakers.state('peer:x')).toBe('closed')
  })
})
