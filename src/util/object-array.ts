/**
 * An empty array whose elements are already of V8's general kind.
 *
 * A fresh `[]` holds small integers only; the first object, string or null
 * pushed into it turns its kind general. Code TurboFan compiled while such
 * an array had already turned deoptimizes ("not a Smi") when the same push
 * meets a fresh array, and is compiled again; a repair that fills fresh
 * arrays every round so deoptimized a push site a round, and each time
 * recompiled its whole caller (KeyAnswers.accept, 25-90 ms of the compiler's
 * CPU a time, seen with --trace-deopt; keyRequests, whose fresh parts met
 * code that expected turned ones, "wrong map"). An array from here never
 * turns.
 */
export function objectArray<T> (): T[] {
  const out: unknown[] = [undefined]
  out.length = 0
  return out as T[]
}

/** A copy of `items` in an array of the general kind (see objectArray), whatever kind `items` is of. */
export function objectArrayOf<T> (items: Iterable<T>): T[] {
  const out = objectArray<T>()
  for (const item of items) out.push(item)
  return out
}
