import { describe, expect, it } from 'vitest'
import { medianRatioInterval } from '../../scripts/bench/resample.ts'

describe('medianRatioInterval', () => {
  it('collapses to the ratio itself when neither side varies', () => {
    const r = medianRatioInterval([500, 500, 500], [100, 100, 100, 100])
    expect(r).toEqual({ level: 0.9, resamples: 10_000, low: 5, high: 5 })
  })

  it('brackets the ratio of the medians, and widens with the spread of the samples', () => {
    const copies = [6.69, 7.38, 7.0, 7.24, 7.95]
    const tight = [1.3, 1.32, 1.35, 1.36, 1.37, 1.38, 1.4, 1.33, 1.36]
    const loose = [2.0, 1.28, 1.48, 1.16, 1.11, 1.36, 1.25, 1.49, 1.59]
    const point = 7.24 / 1.36
    const a = medianRatioInterval(copies, tight)
    const b = medianRatioInterval(copies, loose)
    for (const r of [a, b]) {
      expect(r.low).toBeLessThan(point)
      expect(r.high).toBeGreaterThan(point)
    }
    expect(b.high - b.low).toBeGreaterThan(a.high - a.low)
  })

  it('gives the same interval for the same samples, and a wider one at a higher level', () => {
    const copies = [4.19, 5.63, 5.34, 4.72, 5.37]
    const rounds = [0.79, 1.01, 1.12, 0.8, 0.99, 1.12, 0.87, 0.95, 0.9]
    expect(medianRatioInterval(copies, rounds)).toEqual(medianRatioInterval(copies, rounds))
    const ninety = medianRatioInterval(copies, rounds)
    const ninetyNine = medianRatioInterval(copies, rounds, { level: 0.99 })
    expect(ninetyNine.low).toBeLessThanOrEqual(ninety.low)
    expect(ninetyNine.high).toBeGreaterThanOrEqual(ninety.high)
    expect(ninetyNine.high - ninetyNine.low).toBeGreaterThan(ninety.high - ninety.low)
  })

  it('refuses an empty side or a level outside (0, 1)', () => {
    expect(() => medianRatioInterval([], [1])).toThrow(/at least one sample/)
    expect(() => medianRatioInterval([1], [1], { level: 1 })).toThrow(/level 1 is not between 0 and 1/)
  })
})
