import { describe, expect, it } from 'vitest'
import { runQuick, SCENARIO_TIMEOUT_MS } from './run-quick.ts'

describe('scenario: five-regions-1m (quick: 20,000 rows)', () => {
  it('five agent processes; each of the four replicas repairs its 0.1% drift', async () => {
    const report = await runQuick('five-regions-1m')
    expect(Object.keys(report.regions)).toEqual(['us-east', 'us-west', 'eu-west', 'ap-south', 'sa-east'])
    for (const [name, r] of Object.entries(report.regions)) {
      if (name === 'us-east') continue
      expect(r.injected.updated + r.injected.inserted + r.injected.deleted).toBe(20)
      expect(r.rowsRepaired.total).toBe(20)
      expect(r.roundTrips).toBeGreaterThan(0)
    }
    expect(report.checks.filter(c => c.name.startsWith('rows equal'))).toHaveLength(4)
  }, SCENARIO_TIMEOUT_MS)
})
