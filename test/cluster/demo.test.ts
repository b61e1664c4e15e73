import { describe, expect, it } from 'vitest'
import { check, runQuick, SCENARIO_TIMEOUT_MS } from './run-quick.ts'

describe('scenario: demo (quick)', () => {
  it('repairs every drifted row of both replicas, checked row for row and in the audits', async () => {
    const report = await runQuick('demo')
    for (const region of ['eu-west', 'ap-south']) {
      const r = report.regions[region]!
      const injected = r.injected.updated + r.injected.inserted + r.injected.deleted
      expect(injected).toBe(50) // 1% of 5,000
      // every drifted row is one repaired row: no more, no less
      expect(r.rowsRepaired.total).toBe(injected)
      expect(r.remediateMs?.n).toBe(injected)
      expect(r.detectMs!.p50).toBeLessThanOrEqual(r.remediateMs!.p50)
      expect(r.bytesReceived).toBeGreaterThan(0)
      expect(check(report, `rows equal: ${region}/orders = us-east`).detail).toBe('5000 rows, row for row')
      expect(check(report, `no fix applied twice: ${region}`).passed).toBe(true)
      expect(check(report, `no fix lost from the audit: ${region}`).passed).toBe(true)
    }
    expect(report.regions['us-east']!.rowsRepaired.total).toBe(0)
    expect(report.convergence.convergenceMs).not.toBeNull()
    expect(report.series.t.length).toBeGreaterThan(3)
    // t0 as a date, to read the ms-from-t0 figures against the agents' logs: at least the agents' startup after the run began, within the run
    const t0 = Date.parse(report.t0)
    const started = Date.parse(report.startedAt)
    expect(t0 - started).toBeGreaterThanOrEqual(report.startupMs)
    expect(t0).toBeLessThanOrEqual(started + report.durationMs)
  }, SCENARIO_TIMEOUT_MS)
})
