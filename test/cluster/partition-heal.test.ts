import { describe, expect, it } from 'vitest'
import { runQuick, SCENARIO_TIMEOUT_MS, stateTimeline } from './run-quick.ts'

describe('scenario: partition-heal (quick)', () => {
  it('the cut-off region cannot repair until the partition heals; then it does, and nothing crossed the cut', async () => {
    const report = await runQuick('partition-heal')
    const cut = report.faults[0]!
    expect(cut).toMatchObject({ kind: 'cut', target: 'eu-west', fired: true })
    expect(cut.observed.bytesAcrossCut).toBe(0)
    // behind the partition it lost its source of truth
    expect(cut.observed.statesDuringCut, `cut ${cut.startMs}-${cut.endMs} ms; ${stateTimeline(report, 'eu-west')}`).toContain('no-source')
    expect(cut.observed.inSyncAfterHealMs).not.toBeNull()
    // drift landed 1 s after t0, the cut held until 5.5 s: eu-west's repair waited for the heal, ap-south's did not
    const eu = report.regions['eu-west']!
    const ap = report.regions['ap-south']!
    expect(eu.remediateMs!.max).toBeGreaterThanOrEqual(2000)
    expect(ap.remediateMs!.max).toBeLessThan(eu.remediateMs!.max)
    expect(eu.rowsRepaired.total).toBe(eu.injected.updated + eu.injected.inserted + eu.injected.deleted)
  }, SCENARIO_TIMEOUT_MS)
})
