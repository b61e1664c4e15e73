/**
 * Runs a ready scenario's quick version (its own `quick` overrides) as the
 * command does, into a temporary directory, and returns the report. A run
 * that fails its checks fails the test with the summary a person would read.
 */
import { expect } from 'vitest'
import { loadScenario } from '../../cluster/scenario.ts'
import { runScenario } from '../../cluster/scenario-runner.ts'
import { formatSummary, type RunReport } from '../../cluster/report.ts'
import { tempDir } from '../helpers/agents.ts'

export const SCENARIO_TIMEOUT_MS = 120_000

export async function runQuick (name: string): Promise<RunReport> {
  const scenario = await loadScenario(new URL(`../../cluster/scenarios/${name}.yaml`, import.meta.url).pathname, { quick: true })
  const dir = await tempDir(`converge-scenario-${name}-`)
  let progress = ''
  try {
    const report = await runScenario(scenario, { outDir: dir.path, out: { write: (t: string) => { progress += t; return true } } })
    expect(report.passed, `${progress}\n${formatSummary(report)}`).toBe(true)
    return report
  } finally {
    await dir.remove()
  }
}

/** The named check, which must exist. */
export function check (report: RunReport, name: string): RunReport['checks'][number] {
  const found = report.checks.find(c => c.name === name)
  expect(found, `no check "${name}" among ${report.checks.map(c => c.name).join(', ')}`).toBeDefined()
  return found!
}

/** A region's states over the run (its first dataset's), each with when it began in ms from t0: what a failed expectation about them shows. */
export function stateTimeline (report: RunReport, region: string): string {
  const { t, regions } = report.series
  const states = Object.values(regions[region]?.states ?? {})[0]
  if (states === undefined) return `no states of ${region} in the report`
  const out: string[] = []
  states.forEach((state, i) => { if (i === 0 || state !== states[i - 1]) out.push(`${state}@${t[i]!}ms`) })
  return `${region}: ${out.join(' ')}`
}
