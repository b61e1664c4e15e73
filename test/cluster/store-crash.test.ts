import { describe, expect, it } from 'vitest'
import { serverBinaries } from '../../cluster/private-postgres.ts'
import { check, runQuick, SCENARIO_TIMEOUT_MS } from './run-quick.ts'

/** Each crashed region gets a PostgreSQL server of its own (initdb, pg_ctl): without them this is skipped, except in CI (CI=true). */
const canMakeServers = await serverBinaries() !== undefined || process.env.CI === 'true'

describe.skipIf(!canMakeServers)('scenario: store-crash (quick)', () => {
  it('a replica\'s PostgreSQL server crashing mid-repair, then the source\'s under a live load: every repair finishes, nothing lost or applied twice', async () => {
    const report = await runQuick('store-crash')
    const [replica, source] = report.faults
    expect(replica).toMatchObject({ kind: 'store', target: 'eu-west', fired: true })
    // mid-repair: some rows repaired, not all
    expect(replica!.observed.rowsRepairedAtCrash).toBeGreaterThanOrEqual(400)
    expect(replica!.observed.rowsRepairedAtCrash).toBeLessThan(1500)
    // while down, the agent said what was wrong in its own words, naming the table
    expect((replica!.observed.errorsWhileDown as Record<string, string>)['eu-west/orders']).toMatch(/PostgreSQL is unavailable for public\.orders/)
    expect(replica!.observed.recoveryMs).toBeGreaterThan(0)
    expect(replica!.observed.levelAfterMs).not.toBeNull()
    expect(source).toMatchObject({ kind: 'store', target: 'us-east', fired: true })
    expect(source!.observed.levelAfterMs).not.toBeNull()
    // a replica that asked the source while its store was down was told so by the source, not left with a reset stream
    for (const said of Object.values(source!.observed.errorsWhileDown as Record<string, string>)) expect(said).toMatch(/CONVERGE_STORE_UNAVAILABLE|PostgreSQL is unavailable/)
    const eu = report.regions['eu-west']!
    expect(eu.rowsRepaired.total).toBeGreaterThanOrEqual(1500)
    for (const region of ['eu-west', 'ap-south']) {
      expect(check(report, `no fix applied twice: ${region}`).passed).toBe(true)
      expect(check(report, `no fix lost from the audit: ${region}`).passed).toBe(true)
      expect(check(report, `rows equal: ${region}/orders = us-east`).passed).toBe(true)
    }
    // the load's committed rows survived the source's crash (recovery from its WAL) and reached every replica
    expect(check(report, 'no live-load rows lost: us-east/orders').passed).toBe(true)
    expect(report.load?.errors).toBeGreaterThan(0)
  }, SCENARIO_TIMEOUT_MS)
})
