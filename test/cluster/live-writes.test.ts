import { describe, expect, it } from 'vitest'
import { check, runQuick, SCENARIO_TIMEOUT_MS } from './run-quick.ts'

describe('scenario: live-writes (quick)', () => {
  it('1,000 rows/s on the source during repair: the replicas end level with it and no load row is lost', async () => {
    const report = await runQuick('live-writes')
    const load = report.load!
    expect(load.achievedRowsPerSecond).toBeGreaterThanOrEqual(800)
    expect(load.rowsWritten).toBeGreaterThanOrEqual(3000)
    expect(check(report, 'no live-load rows lost: us-east/orders').passed).toBe(true)
    for (const region of ['eu-west', 'ap-south']) expect(check(report, `rows equal: ${region}/orders = us-east`).passed).toBe(true)
    // the replicas took the load's writes as well as their own drift
    expect(report.regions['eu-west']!.rowsRepaired.total).toBeGreaterThan(1000)
    expect(report.regions['ap-south']!.injected.updated).toBeGreaterThan(report.regions['eu-west']!.injected.updated)
  }, SCENARIO_TIMEOUT_MS)
})
