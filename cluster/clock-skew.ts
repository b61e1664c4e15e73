/**
 * Loaded into an agent process (`--import`) before the agent: runs its wall
 * clock `CONVERGE_CLUSTER_CLOCK_SKEW_MS` off, and takes a new offset over
 * the IPC channel ({ type: 'converge-cluster/clock-skew', ms }) while it
 * runs. Date.now() and new Date() move; performance.now() and timers do not,
 * just as when a host's clock is set wrong.
 */
let skewMs = Number(process.env.CONVERGE_CLUSTER_CLOCK_SKEW_MS ?? 0)
const RealDate = Date

class SkewedDate extends RealDate {
  constructor (...args: unknown[]) {
    if (args.length === 0) super(RealDate.now() + skewMs)
    else super(...(args as [string | number | Date]))
  }

  static override now (): number { return RealDate.now() + skewMs }
}

globalThis.Date = SkewedDate as DateConstructor

process.on('message', (message: unknown) => {
  const m = message as { type?: string, ms?: unknown } | null
  if (m?.type === 'converge-cluster/clock-skew' && typeof m.ms === 'number') skewMs = m.ms
})
