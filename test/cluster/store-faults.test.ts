import { describe, expect, it } from 'vitest'
import { check, runQuick, SCENARIO_TIMEOUT_MS } from './run-quick.ts'

describe('scenario: store-faults (quick)', () => {
  it('terminated backends, a locked SQLite file and clocks set off delay the repairs but lose nothing', async () => {
    const report = await runQuick('store-faults')
    const [errors, stall, slowClock, jump] = report.faults
    expect(errors).toMatchObject({ kind: 'store', target: 'eu-west', fired: true })
    expect(errors!.observed.backendsTerminated).toBeGreaterThan(0)
    expect(stall).toMatchObject({ kind: 'store', target: 'ap-south', fired: true })
    expect(slowClock).toMatchObject({ kind: 'clock-skew', target: 'eu-west', fired: true, observed: { skewMs: -90_000 } })
    expect(slowClock!.startMs).toBeLessThan(0) // from the launch
    expect(jump).toMatchObject({ kind: 'clock-skew', target: 'us-east', fired: true, observed: { skewMs: 120_000 } })
    // the report puts eu-west's audit times back on the real clock: a repair does not take -90 s
    expect(report.regions['eu-west']!.remediateMs!.p50).toBeGreaterThanOrEqual(0)
    expect(report.regions['eu-west']!.remediateMs!.max).toBeLessThan(60_000)
    expect(check(report, 'no live-load rows lost: us-east/orders').passed).toBe(true)
    for (const region of ['eu-west', 'ap-south']) expect(check(report, `rows equal: ${region}/orders = us-east`).passed).toBe(true)
  }, SCENARIO_TIMEOUT_MS)
})
