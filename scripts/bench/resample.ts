/**
 * How far a ratio of two medians could move on another run, from the
 * samples of this one: the bootstrap (resample each side with replacement,
 * take the ratio of the medians, many times over). Section 5 holds the
 * median copy against the median steady round, each from a handful of
 * samples that swing by a third on this machine; the interval says how much
 * of a run-to-run difference that alone explains.
 */
import { rng } from '../../cluster/orders.ts'
import { median } from './timing.ts'

export interface RatioInterval {
  /** The share of resampled ratios inside [low, high], e.g. 0.9. */
  level: number
  resamples: number
  low: number
  high: number
}

export interface ResampleOptions {
  /** Default 10,000. */
  resamples?: number
  /** Default 0.9. */
  level?: number
  /** Fixed by default, so the same samples give the same interval. */
  seed?: number
}

/** The central `level` share of median(numerators) / median(denominators) over bootstrap resamples of each. */
export function medianRatioInterval (numerators: readonly number[], denominators: readonly number[], options: ResampleOptions = {}): RatioInterval {
  const { resamples = 10_000, level = 0.9, seed = 1 } = options
  if (numerators.length === 0 || denominators.length === 0) throw new RangeError('a ratio of medians needs at least one sample on each side')
  if (!(level > 0 && level < 1)) throw new RangeError(`level ${level} is not between 0 and 1`)
  const random = rng(seed)
  const draw = (xs: readonly number[]): number[] => Array.from({ length: xs.length }, () => xs[Math.floor(random() * xs.length)]!)
  const ratios = Array.from({ length: resamples }, () => median(draw(numerators)) / median(draw(denominators))).sort((a, b) => a - b)
  const tail = (1 - level) / 2
  return { level, resamples, low: ratios[Math.floor(tail * (resamples - 1))]!, high: ratios[Math.ceil((1 - tail) * (resamples - 1))]! }
}
