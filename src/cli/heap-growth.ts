/**
 * How far V8 lets an agent's heap grow past what the last full collection
 * found alive before it starts the next one (`--heap-growing-percent`).
 *
 * An agent's work comes in bursts: a repair of 10,000 rows allocates some
 * 130 MB in a second, and what lives through the burst (its rows, their
 * index entries, the fix) is promoted to the old generation, about 30 MB a
 * burst. Under V8's own heuristics the old generation of a replica holding
 * some 60 MB may grow by half before the next full collection, so one
 * started in nearly every repair, and its concurrent marking took about
 * 115 ms of a helper thread's CPU per repair (perf, the section-5
 * scenario of `npm run bench`), on cores the repair needs. Letting the heap
 * grow to three times what is alive makes that one full collection in every
 * few repairs. What is dead is still freed: by that collection, or by V8's
 * memory reducer once the agent has been idle for a while. The heap limit
 * (`--max-old-space-size`) still bounds it.
 */
import { setFlagsFromString } from 'node:v8'
import { ConfigError } from '../errors.ts'

/** The agent's default: the heap may grow to three times what was alive. */
export const DEFAULT_HEAP_GROWTH_PERCENT = 200

/** V8's setting (node --v8-options lists it); a name V8 does not know would only print a warning. */
export const V8_HEAP_GROWTH_FLAG = '--heap-growing-percent'

/** The most accepted: past ten times what is alive, memory, not CPU, is what runs out. */
const MAX_HEAP_GROWTH_PERCENT = 900

/** A whole percentage from 0 (V8's own heuristics) to MAX_HEAP_GROWTH_PERCENT. */
export function parseHeapGrowth (text: string, what: string): number {
  const v = Number(text)
  if (text.trim() === '' || !Number.isInteger(v) || v < 0 || v > MAX_HEAP_GROWTH_PERCENT) {
    throw new ConfigError(`${what}: "${text}" is not a whole percentage from 0 (V8's own heap growth) to ${MAX_HEAP_GROWTH_PERCENT}`)
  }
  return v
}

/**
 * Sets the heap growth for this process from now on; 0 is V8's own
 * heuristics. `converge agent` sets it once the agent has started (its
 * indexes built), so the memory a first build of a large index takes stays
 * what it was measured to be. Process-wide: the command that owns the
 * process sets it, not the Agent, which may share a process with others.
 */
export function applyHeapGrowth (percent: number): void {
  setFlagsFromString(`${V8_HEAP_GROWTH_FLAG}=${percent}`)
}
