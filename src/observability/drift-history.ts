/**
 * Rows apart from the source over time, per dataset, for the dashboard's
 * chart: a bounded ring of (time, rows) points kept in memory. A change is
 * recorded at once; an unchanged value at most every MIN_GAP_MS, so a steady
 * dataset costs a point per gap and the ring spans MAX_POINTS gaps at least.
 */

/** Points kept per dataset: 720 at 5 s is an hour of a steady dataset. */
export const MAX_POINTS = 720
/** An unchanged value is recorded again after this long, so the chart's time axis moves on. */
export const MIN_GAP_MS = 5000

export type DriftPoint = [at: number, rows: number]

export class DriftHistory {
  private readonly series = new Map<string, DriftPoint[]>()

  constructor (private readonly maxPoints = MAX_POINTS, private readonly minGapMs = MIN_GAP_MS) {}

  /** Records the rows apart for a dataset now. */
  record (dataset: string, rows: number, now = Date.now()): void {
    let points = this.series.get(dataset)
    if (points === undefined) { points = []; this.series.set(dataset, points) }
    const last = points[points.length - 1]
    if (last !== undefined && last[1] === rows && now - last[0] < this.minGapMs) return
    points.push([now, rows])
    if (points.length > this.maxPoints) points.splice(0, points.length - this.maxPoints)
  }

  /** Repeats the last value now (nothing is known to have changed). */
  touch (dataset: string, now = Date.now()): void {
    const last = this.series.get(dataset)?.at(-1)
    if (last !== undefined) this.record(dataset, last[1], now)
  }

  /** Every dataset's points, oldest first, optionally only those at or after `since`. */
  toJSON (since = 0): Record<string, DriftPoint[]> {
    const out: Record<string, DriftPoint[]> = {}
    for (const [name, points] of this.series) out[name] = points.filter(p => p[0] >= since)
    return out
  }
}
