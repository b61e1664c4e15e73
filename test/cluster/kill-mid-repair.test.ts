import { describe, expect, it } from 'vitest'
import { check, runQuick, SCENARIO_TIMEOUT_MS } from './run-quick.ts'

describe('scenario: kill-mid-repair (quick)', () => {
  it('kill -9 in the middle of a rate-limited repair: the restarted agent finishes it, no fix lost or applied twice', async () => {
    const report = await runQuick('kill-mid-repair')
    const kill = report.faults[0]!
    expect(kill).toMatchObject({ kind: 'kill', target: 'eu-west', fired: true })
    // mid-repair: some rows repaired, not all
    expect(kill.observed.rowsRepairedAtKill).toBeGreaterThanOrEqual(400)
    expect(kill.observed.rowsRepairedAtKill).toBeLessThan(1500)
    const eu = report.regions['eu-west']!
    expect(eu.processes).toBe(2)
    expect(eu.rowsRepaired.total).toBe(1500)
    expect(check(report, 'no fix applied twice: eu-west').passed).toBe(true)
    expect(check(report, 'no fix lost from the audit: eu-west').passed).toBe(true)
    expect(check(report, 'rows equal: eu-west/orders = us-east').passed).toBe(true)
  }, SCENARIO_TIMEOUT_MS)
})
