import { describe, expect, it } from 'vitest'
import { check, runQuick, SCENARIO_TIMEOUT_MS } from './run-quick.ts'

describe('scenario: sot-failover (quick)', () => {
  it('with the source of truth down every region serves from the next, then returns to it; the live load loses nothing', async () => {
    const report = await runQuick('sot-failover')
    const outage = report.faults[0]!
    expect(outage).toMatchObject({ kind: 'sot-outage', target: 'us-east', fired: true })
    expect(outage.observed.failoverMs).toBeTypeOf('number')
    expect(outage.observed.failbackMs).toBeTypeOf('number')
    expect(report.regions['us-east']!.processes).toBe(2)
    // the drift that landed during the outage was repaired from eu-west, the standby source
    expect(report.regions['ap-south']!.rowsRepaired.total).toBeGreaterThan(0)
    expect(report.load!.rowsWritten).toBeGreaterThan(300)
    expect(check(report, 'no live-load rows lost: us-east/orders').passed).toBe(true)
  }, SCENARIO_TIMEOUT_MS)
})
