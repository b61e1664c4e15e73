/**
 * When a cluster counts as converged, read off the observer's samples: for
 * the whole run (after the timeline went quiet) and for each one-shot drift
 * batch on its own (a round), so a scenario that drifts several times says
 * how long each took, the first (cold: the agents' code paths not yet run)
 * apart from the later ones (steady: as a long-running sidecar is).
 */
import type { Sample } from './observer.ts'

/** Consecutive samples that must agree before the cluster counts as converged (one could catch a transient). */
const STABLE_SAMPLES = 2

/**
 * Level with the source: every region's root equals the serving source's,
 * and each is in sync (or is the source). `written` holds, per
 * "region/dataset", the store change seq the agent's index must have taken
 * in (the store's head once the timeline is quiet: raiseToHeads): until it
 * has, the agent still shows the roots from before it, which may well agree.
 */
export function converged (s: Sample | undefined, primary: string, datasets: string[], written: ReadonlyMap<string, number> = new Map()): boolean {
  if (s === undefined) return false
  for (const [place, seq] of written) {
    const [region, ds] = place.split('/') as [string, string]
    if ((s.regions[region]?.datasets[ds]?.indexSeq ?? -1) < seq) return false
  }
  return datasets.every(ds => {
    const sot = s.regions[primary]?.datasets[ds]
    if (sot?.sum === undefined || sot.state !== 'source') return false
    return Object.values(s.regions).every(r => {
      const d = r.datasets[ds]
      return d !== undefined && d.sum === sot.sum && d.count === sot.count && (d.state === 'in-sync' || d.state === 'source')
    })
  })
}

/**
 * Raises each place's level in `written` to its store's own head, read once
 * the timeline is quiet (`head`: ReplicaStore.lastSeq of that region's
 * store): the head, not the seq of the last write acknowledged, since a
 * write whose acknowledgement was lost (its store crashed as it committed)
 * may have committed all the same, and until the agent's index has taken it
 * in, the replicas agree with a source that is behind its own store.
 * Returns the places whose head could not be read (a store still coming
 * back), to be read again at the next poll.
 */
export async function raiseToHeads (written: Map<string, number>, places: Iterable<string>, head: (place: string) => Promise<number>): Promise<string[]> {
  const unread: string[] = []
  for (const place of places) {
    try {
      const seq = await head(place)
      written.set(place, Math.max(written.get(place) ?? 0, seq))
    } catch {
      unread.push(place)
    }
  }
  return unread
}

/**
 * When the cluster became level after `from` (and before `until`): found
 * as the first of STABLE_SAMPLES consecutive converged samples, and timed
 * by the agents' own account (levelInstant); undefined when there is none.
 */
export function firstConverged (samples: readonly Sample[], from: number, until: number, level: (s: Sample) => boolean): number | undefined {
  return firstConvergedSample(samples, from, until, level)?.at
}

/** firstConverged, with the sample that showed it. */
export function firstConvergedSample (samples: readonly Sample[], from: number, until: number, level: (s: Sample) => boolean): { sample: Sample, at: number } | undefined {
  let streak = 0
  let first: number | undefined
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]!
    if (s.at < from) continue
    if (s.at >= until) break
    if (level(s)) { streak++; first ??= i } else { streak = 0; first = undefined }
    if (streak >= STABLE_SAMPLES) return { sample: samples[first!]!, at: levelInstant(samples, first!, from) }
  }
  return undefined
}

/**
 * The moment the converged sample `samples[i]` says the cluster became
 * level: the latest time one of its datasets entered 'in-sync' by its
 * agent's clock, when that falls after `from` and after the sample before
 * (which was not level yet), and before the sample after; otherwise the
 * sample's own time. A poll sees a replica level up to a poll interval after
 * it became so; the agent's record of the moment takes that interval out of
 * the figure, and the window keeps an agent whose clock is off (the
 * simulator's clock skew) from moving it by more than a poll.
 */
export function levelInstant (samples: readonly Sample[], i: number, from: number): number {
  const s = samples[i]!
  let latest: number | undefined
  for (const r of Object.values(s.regions)) {
    for (const d of Object.values(r.datasets)) {
      if (d.state === 'in-sync' && d.stateSince !== undefined && (latest === undefined || d.stateSince > latest)) latest = d.stateSince
    }
  }
  const previous = samples[i - 1]
  const after = Math.max(from, previous?.at ?? from)
  const before = samples[i + 1]?.at ?? s.at + (previous === undefined ? 0 : s.at - previous.at)
  return latest !== undefined && latest > after && latest <= before ? latest : s.at
}

/** One region's share of a one-shot drift batch: when its write began and committed, and the change seq it committed at. */
export interface Landing { atMs: number, region: string, dataset: string, startedAt: number, landedAt: number, seq: number }

/** A one-shot drift batch (every entry scheduled at `atMs`), and how long the cluster took to be level again after it landed. */
export interface Round {
  /** The batch's time on the timeline (ms after t0). */
  atMs: number
  /** When its last write committed, ms after t0. */
  landedAtMs: number
  /** From then until converged; null when the cluster was not level before the next batch began (or the run ended). */
  convergenceMs: number | null
  /**
   * CPU (ms) spent meanwhile per region, by its agent and by its PostgreSQL
   * backends: from the last sample up to the commit to the converged sample,
   * so up to a poll interval more than the round at each end. Absent where
   * the samples carry no CPU (no /proc, a server elsewhere).
   */
  cpu?: Record<string, RoundCpu>
}

export interface RoundCpu { agentMs?: number, postgresMs?: number }

/** Each region's CPU between two samples (see Round.cpu); undefined when neither carries any. */
export function cpuBetween (from: Sample | undefined, to: Sample): Record<string, RoundCpu> | undefined {
  if (from === undefined) return undefined
  const out: Record<string, RoundCpu> = {}
  let any = false
  for (const [region, end] of Object.entries(to.regions)) {
    const start = from.regions[region]
    if (start === undefined) continue
    const cpu: RoundCpu = {}
    if (start.cpuMs !== undefined && end.cpuMs !== undefined) cpu.agentMs = end.cpuMs - start.cpuMs
    if (start.postgresCpuMs !== undefined && end.postgresCpuMs !== undefined) cpu.postgresMs = end.postgresCpuMs - start.postgresCpuMs
    if (cpu.agentMs !== undefined || cpu.postgresMs !== undefined) { out[region] = cpu; any = true }
  }
  return any ? out : undefined
}

/**
 * Each one-shot drift batch's convergence, in timeline order: from its last
 * commit until the first converged sample that shows every write of it taken
 * in, before the next batch began writing.
 */
export function roundsOf (landings: readonly Landing[], samples: readonly Sample[], primary: string, datasets: string[], t0: number): Round[] {
  const byAt = new Map<number, Landing[]>()
  for (const l of landings) byAt.set(l.atMs, [...(byAt.get(l.atMs) ?? []), l])
  const batches = [...byAt.entries()].sort((a, b) => a[0] - b[0])
  return batches.map(([atMs, batch], i) => {
    const landedAt = Math.max(...batch.map(l => l.landedAt))
    const next = batches[i + 1]?.[1]
    const until = next === undefined ? Number.POSITIVE_INFINITY : Math.min(...next.map(l => l.startedAt))
    const written = new Map<string, number>()
    for (const l of batch) written.set(`${l.region}/${l.dataset}`, Math.max(written.get(`${l.region}/${l.dataset}`) ?? 0, l.seq))
    const found = firstConvergedSample(samples, landedAt, until, s => converged(s, primary, datasets, written))
    if (found === undefined) return { atMs, landedAtMs: landedAt - t0, convergenceMs: null }
    const cpu = cpuBetween(samples.findLast(s => s.at <= landedAt), found.sample)
    return { atMs, landedAtMs: landedAt - t0, convergenceMs: found.at - landedAt, ...(cpu === undefined ? {} : { cpu }) }
  })
}
