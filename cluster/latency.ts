/**
 * Time to detect and to remediate, row by row: each drifted key is matched
 * with the first fix on its region that touched it and was found after the
 * drift could be seen. Detected = when the sync behind that fix found the
 * rows (its "sync found drift" log line, by correlation id; the fix's intent
 * where the line is missing); remediated = its commit (the row is right
 * again).
 *
 * "Could be seen" is the later of the drift landing and both agents being
 * ready (drift written before start cannot be noticed while an index is
 * still being built). Audit times are the agent's clock: a region whose
 * clock the scenario skewed has its times moved back by that skew.
 *
 * The same matching gives the chart's series: drifted rows outstanding per
 * region over time.
 */
import type { FixRecord } from './audit-review.ts'
import type { Injection } from './drift.ts'

export interface Percentiles { n: number, p50: number, p95: number, max: number }

export function percentiles (values: number[]): Percentiles | undefined {
  if (values.length === 0) return undefined
  const s = [...values].sort((a, b) => a - b)
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!
  return { n: s.length, p50: at(0.5), p95: at(0.95), max: s.at(-1)! }
}

export interface RegionLatency {
  detect?: Percentiles
  remediate?: Percentiles
  /** Drifted rows that no fix touched afterwards (the drift was undone by another write, or never repaired). */
  unmatched: number
  /** [time, rows outstanding] steps, times in ms since t0. */
  outstanding: Array<[number, number]>
}

export interface LatencyInput {
  injections: Injection[]
  /** Fixes per region (audit). */
  fixes: Map<string, FixRecord[]>
  /** When each sync found drift, by correlation id, per region (agent logs; agent clock). */
  foundAt: Map<string, Map<string, number>>
  /** When each region's agent was first ready (epoch ms). */
  readyAt: Map<string, number>
  /** Sources of truth per dataset, in order: drift is visible once the serving one is ready too. */
  sourceOf: (dataset: string) => string
  /** The clock offset of a region's agent at a time read on that agent's clock (real = agent time - offset). */
  skewAt: (region: string, agentAt: number) => number
  t0: number
  /** The series starts here (the agents' launch): drift written before shows as outstanding from then. */
  seriesFrom: number
}

export function measure (input: LatencyInput): Map<string, RegionLatency> {
  const out = new Map<string, RegionLatency>()
  const byRegion = new Map<string, Injection[]>()
  for (const i of input.injections) {
    let list = byRegion.get(i.region)
    if (list === undefined) { list = []; byRegion.set(i.region, list) }
    list.push(i)
  }
  for (const [region, injections] of byRegion) {
    // each key's fixes, in intent order, with times on the real clock
    const touches = new Map<string, Array<{ intentAt: number, commitAt: number }>>()
    const found = input.foundAt.get(region)
    for (const f of input.fixes.get(region) ?? []) {
      const detectedAt = found?.get(f.correlationId) ?? f.intentAt
      const intentAt = detectedAt - input.skewAt(region, detectedAt)
      const commitAt = f.commitAt - input.skewAt(region, f.commitAt)
      for (const k of f.keys) {
        const id = `${f.dataset}/${k}`
        let list = touches.get(id)
        if (list === undefined) { list = []; touches.set(id, list) }
        list.push({ intentAt, commitAt })
      }
    }
    for (const list of touches.values()) list.sort((a, b) => a.intentAt - b.intentAt)
    const detect: number[] = []
    const remediate: number[] = []
    const steps: Array<[number, number]> = []
    let unmatched = 0
    for (const inj of injections) {
      const visible = Math.max(inj.at, input.readyAt.get(region) ?? inj.at, input.readyAt.get(input.sourceOf(inj.dataset)) ?? inj.at)
      steps.push([Math.max(inj.at, input.seriesFrom), +1])
      const fix = touches.get(`${inj.dataset}/${inj.key}`)?.find(t => t.intentAt >= visible)
      if (fix === undefined) { unmatched++; continue }
      detect.push(fix.intentAt - visible)
      remediate.push(fix.commitAt - visible)
      steps.push([fix.commitAt, -1])
    }
    steps.sort((a, b) => a[0] - b[0])
    const outstanding: Array<[number, number]> = []
    let level = 0
    for (const [at, delta] of steps) {
      level += delta
      const t = at - input.t0
      if (outstanding.length > 0 && outstanding.at(-1)![0] === t) outstanding.at(-1)![1] = level
      else outstanding.push([t, level])
    }
    const d = percentiles(detect)
    const r = percentiles(remediate)
    out.set(region, { ...(d === undefined ? {} : { detect: d }), ...(r === undefined ? {} : { remediate: r }), unmatched, outstanding })
  }
  return out
}
