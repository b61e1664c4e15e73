import { describe, expect, it } from 'vitest'
import { runQuick, SCENARIO_TIMEOUT_MS } from './run-quick.ts'

describe('scenario: slow-wan (quick)', () => {
  it('every link of ap-south at 100 ms RTT and 10 Mbit/s: it converges, and its repair pays the round trips', async () => {
    const report = await runQuick('slow-wan')
    expect(report.faults[0]).toMatchObject({ kind: 'link', target: 'ap-south↔*', fired: true })
    expect(report.faults[0]!.endMs).toBeUndefined() // to the end of the run
    const ap = report.regions['ap-south']!
    expect(ap.roundTrips).toBeGreaterThanOrEqual(3)
    // a sync is a few round trips of 100 ms each, after the summary that started it came over the same link
    expect(ap.remediateMs!.p50).toBeGreaterThanOrEqual(300)
    expect(ap.rowsRepaired.total).toBe(ap.injected.updated + ap.injected.inserted + ap.injected.deleted)
    // the connection between the two runs through whichever link its dialer used: either one may carry it
    const between = report.links.filter(l => l.link === 'ap-south→us-east' || l.link === 'us-east→ap-south')
    expect(between).toHaveLength(2)
    expect(between.reduce((n, l) => n + l.bytesForward + l.bytesBack, 0)).toBeGreaterThan(0)
  }, SCENARIO_TIMEOUT_MS)
})
