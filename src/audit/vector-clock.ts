/**
 * Vector clocks: region → counter. An agent ticks its own entry for every fix
 * and merges the clock the SoT sent in the exchange, so audit entries from
 * different agents can be ordered causally.
 */
export type VectorClock = Record<string, number>

export function merge (a: VectorClock, b: VectorClock): VectorClock {
  const out: VectorClock = { ...a }
  for (const [region, n] of Object.entries(b)) out[region] = Math.max(out[region] ?? 0, n)
  return out
}

export function tick (clock: VectorClock, region: string): VectorClock {
  return { ...clock, [region]: (clock[region] ?? 0) + 1 }
}

/** -1 if a happened before b, 1 if after, 0 if equal or concurrent. */
export function compare (a: VectorClock, b: VectorClock): -1 | 0 | 1 {
  let less = false; let more = false
  for (const region of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[region] ?? 0; const y = b[region] ?? 0
    if (x < y) less = true
    if (x > y) more = true
  }
  return less && !more ? -1 : more && !less ? 1 : 0
}

/** Whether `a` has seen everything `b` has (every counter of a at least b's). */
export function descends (a: VectorClock, b: VectorClock): boolean {
  return Object.entries(b).every(([region, n]) => (a[region] ?? 0) >= n)
}
